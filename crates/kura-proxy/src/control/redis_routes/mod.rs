//! Routes from Redis, compatible with Hipache's schema: [`schema`] reads and writes the keys,
//! `source` keeps the live table in sync, [`store`] is what `kura routes` runs.

mod metrics;
pub mod schema;
mod source;
pub mod store;

pub(crate) use metrics::RedisMetrics;
pub(crate) use source::spawn;
