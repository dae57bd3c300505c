//! The control side: the admin API and its dashboard, metrics and their collectors, the access
//! log, reloads, routes from Redis, and the cluster's peer listener.

pub mod access_log;
pub mod admin;
pub mod collectors;
pub mod dashboard;
pub mod metrics;
pub mod peer;
pub mod redis_routes;
pub mod reload;
pub mod status;
pub mod traffic;
