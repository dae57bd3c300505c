//! `kura_redis_*` metrics: whether the source is connected, how many frontends it serves, and
//! counts of resyncs, events, errors, bad entries and dead marks shared.

use prometheus::{IntCounter, IntGauge, Registry};

pub struct RedisMetrics {
    pub up: IntGauge,
    pub frontends: IntGauge,
    pub resyncs: IntCounter,
    pub events: IntCounter,
    pub errors: IntCounter,
    pub bad_entries: IntCounter,
    pub dead_marks_written: IntCounter,
}

impl RedisMetrics {
    pub fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("static metric");
        let m = RedisMetrics {
            up: gauge(
                "redis_up",
                "1 while the Redis route source is connected and in sync",
            ),
            frontends: gauge("redis_frontends", "Frontends served from Redis"),
            resyncs: counter("redis_resyncs_total", "Full re-reads of the Redis routes"),
            events: counter("redis_events_total", "Change notifications received"),
            errors: counter(
                "redis_errors_total",
                "Redis sessions that ended in an error",
            ),
            bad_entries: counter(
                "redis_bad_entries_total",
                "Redis keys or items skipped because they were malformed",
            ),
            dead_marks_written: counter(
                "redis_dead_marks_written_total",
                "Dead backend marks written to Redis for other instances",
            ),
        };
        for c in [
            Box::new(m.up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.frontends.clone()),
            Box::new(m.resyncs.clone()),
            Box::new(m.events.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.bad_entries.clone()),
            Box::new(m.dead_marks_written.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "redis metric not registered");
            }
        }
        m
    }
}
