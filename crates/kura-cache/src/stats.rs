//! Cache counters: plain atomics, read by the admin API and turned into Prometheus metrics by
//! the proxy. Hits are counted per tier so the cluster tier can report its share later.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub struct Stats {
    pub hits_memory: AtomicU64,
    pub hits_disk: AtomicU64,
    pub hits_other: AtomicU64,
    pub misses: AtomicU64,
    /// Responses stored (objects, not segments).
    pub stored: AtomicU64,
    /// Responses forwarded without storing (uncacheable, or a request that bypasses).
    pub passes: AtomicU64,
    pub revalidated: AtomicU64,
    pub stale_served: AtomicU64,
    /// Requests that waited for another request's fetch instead of fetching.
    pub coalesced: AtomicU64,
    /// Requests (and segment fetches) sent to origins.
    pub origin_fetches: AtomicU64,
    pub origin_bytes: AtomicU64,
    pub segments_stored: AtomicU64,
    /// Entries found torn or corrupt on disk (dropped and refetched).
    pub corrupt: AtomicU64,
    pub disk_evictions: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub disk_write_drops: AtomicU64,
    pub invalidations: AtomicU64,
}

/// A point-in-time copy, for reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StatsSnapshot {
    pub hits_memory: u64,
    pub hits_disk: u64,
    pub hits_other: u64,
    pub misses: u64,
    pub stored: u64,
    pub passes: u64,
    pub revalidated: u64,
    pub stale_served: u64,
    pub coalesced: u64,
    pub origin_fetches: u64,
    pub origin_bytes: u64,
    pub segments_stored: u64,
    pub corrupt: u64,
    pub disk_evictions: u64,
    pub disk_bytes: u64,
    pub disk_write_drops: u64,
    pub invalidations: u64,
    pub memory_bytes: u64,
}

impl Stats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, memory_bytes: u64) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Relaxed);
        StatsSnapshot {
            hits_memory: l(&self.hits_memory),
            hits_disk: l(&self.hits_disk),
            hits_other: l(&self.hits_other),
            misses: l(&self.misses),
            stored: l(&self.stored),
            passes: l(&self.passes),
            revalidated: l(&self.revalidated),
            stale_served: l(&self.stale_served),
            coalesced: l(&self.coalesced),
            origin_fetches: l(&self.origin_fetches),
            origin_bytes: l(&self.origin_bytes),
            segments_stored: l(&self.segments_stored),
            corrupt: l(&self.corrupt),
            disk_evictions: l(&self.disk_evictions),
            disk_bytes: l(&self.disk_bytes),
            disk_write_drops: l(&self.disk_write_drops),
            invalidations: l(&self.invalidations),
            memory_bytes,
        }
    }
}
