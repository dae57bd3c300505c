//! `GET /status` on the admin listener: what is running and what it is connected to, in one
//! small answer (the dashboard's header): version, start time and uptime, the configuration's
//! generation, and the Redis route source's and etcd's connection state (`null` when not
//! configured).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::state::Shared;

/// The answer of `GET /status`.
pub fn report(shared: &Shared) -> Value {
    let now = SystemTime::now();
    let started_ms = shared
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let uptime = now
        .duration_since(shared.started)
        .map_or(0, |d| d.as_secs());
    let redis = shared.redis.get().map(|m| {
        json!({
            "connected": m.up.get() == 1,
            "frontends": m.frontends.get(),
            "errors": m.errors.get(),
            "resyncs": m.resyncs.get(),
        })
    });
    let cluster = shared.cluster.as_ref().map(|c| c.snapshot());
    // -1: the member list is static, there is no etcd.
    let etcd = cluster
        .as_ref()
        .filter(|s| s.etcd_up >= 0)
        .map(|s| json!({ "connected": s.etcd_up == 1 }));
    let rt = shared.runtime.load();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_ms": started_ms,
        "uptime_seconds": uptime,
        "config_generation": rt.generation,
        "vhosts": rt.table.vhosts.len(),
        "redis_frontends": shared.dynamic.load().count(),
        "redis": redis,
        "etcd": etcd,
        "cluster": cluster.is_some(),
    })
}
