//! kura's data plane: the HTTP server, the request phases, the route table and the upstream
//! pools, plus the admin listener, metrics and the access log.
//!
//! Start a server with [`start`] (it binds its listeners, port 0 allowed) and keep the returned
//! [`ServerHandle`] to reload its configuration, reopen its access log, or shut it down
//! gracefully. The binary (`crates/kura`) adds the CLI, signals and the config file watcher.

mod access_log;
pub mod admin;
mod body;
mod cache_action;
mod clock;
mod collectors;
mod conn;
mod connection;
mod errors;
mod exchange;
mod headers;
mod image_source;
pub mod metrics;
mod origin;
mod peer;
pub mod redis_routes;
mod reload;
mod resize_action;
mod resize_origin;
mod router;
mod server;
mod service;
mod shadow_action;
mod side;
mod state;
pub mod target;
mod tls;
mod upgrade;
mod upstream;
pub mod worker;

pub use admin::{ReloadHook, ReloadReport};
pub use errors::ProxyError;
pub use kura_cache;
pub use reload::Reloader;
pub use server::{ServerHandle, start};
