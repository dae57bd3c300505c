//! Cache counters: plain atomics, read by the admin API and turned into Prometheus metrics by
//! the proxy. Hits are counted by the tier their body came from.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The cache's counters, shared by the engine and the tiers; read as a [`StatsSnapshot`].
#[derive(Default, Debug)]
pub struct Stats {
    /// Hits whose body came from memory.
    pub hits_memory: AtomicU64,
    /// Hits whose body came from disk (also when only the head was in memory).
    pub hits_disk: AtomicU64,
    /// Hits whose body came from another lower tier (none today: the disk is the only one).
    pub hits_other: AtomicU64,
    /// Requests no stored response could answer (then fetched, or passed for HEAD).
    pub misses: AtomicU64,
    /// Responses stored (objects, not segments).
    pub stored: AtomicU64,
    /// Responses forwarded without storing (uncacheable, or a request that bypasses).
    pub passes: AtomicU64,
    /// Passes made at once because an earlier answer for the key could not be stored
    /// (hit-for-pass; also counted in `passes`).
    pub passes_remembered: AtomicU64,
    /// Answers whose body kura ended early after sending the head (a segment lost and not
    /// fetched again, or the origin failed mid-body): the client sees a short body.
    pub bodies_cut: AtomicU64,
    /// Revalidations the origin answered with 304.
    pub revalidated: AtomicU64,
    /// Stale answers: within `stale-while-revalidate`, or `stale-if-error` on origin failure.
    pub stale_served: AtomicU64,
    /// Requests that waited for another request's fetch instead of fetching.
    pub coalesced: AtomicU64,
    /// Requests (and segment fetches) sent to origins.
    pub origin_fetches: AtomicU64,
    /// Body bytes fills received from origins (passes not counted).
    pub origin_bytes: AtomicU64,
    /// Fetched segments kept by a tier (a peer's segment too large for memory is not counted:
    /// it is kept nowhere on this node).
    pub segments_stored: AtomicU64,
    /// Entries found torn or corrupt on disk (dropped and refetched).
    pub corrupt: AtomicU64,
    /// Objects removed from disk by cleaning (above `max_bytes`, down to `cleaned_bytes`).
    pub disk_evictions: AtomicU64,
    /// Bytes on disk now: a gauge, set by the disk tier.
    pub disk_bytes: AtomicU64,
    /// Disk writes dropped because the writer's queue or segment budget was full.
    pub disk_write_drops: AtomicU64,
    /// Calls to [`crate::Cache::invalidate`]: after unsafe methods, and per purged key.
    pub invalidations: AtomicU64,
}

/// A point-in-time copy, for reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// [`Stats::hits_memory`]: hits whose body came from memory.
    pub hits_memory: u64,
    /// [`Stats::hits_disk`]: hits whose body came from disk.
    pub hits_disk: u64,
    /// [`Stats::hits_other`]: hits from another lower tier.
    pub hits_other: u64,
    /// [`Stats::misses`]: requests no stored response could answer.
    pub misses: u64,
    /// [`Stats::stored`]: responses stored.
    pub stored: u64,
    /// [`Stats::passes`]: responses forwarded without storing.
    pub passes: u64,
    /// [`Stats::passes_remembered`]: passes made because of an earlier unstorable answer.
    pub passes_remembered: u64,
    /// [`Stats::bodies_cut`]: bodies ended early after their head was sent.
    pub bodies_cut: u64,
    /// [`Stats::revalidated`]: revalidations answered 304.
    pub revalidated: u64,
    /// [`Stats::stale_served`]: stale answers sent.
    pub stale_served: u64,
    /// [`Stats::coalesced`]: requests that waited on another's fetch.
    pub coalesced: u64,
    /// [`Stats::origin_fetches`]: requests sent to origins.
    pub origin_fetches: u64,
    /// [`Stats::origin_bytes`]: body bytes fills received.
    pub origin_bytes: u64,
    /// [`Stats::segments_stored`]: fetched segments stored.
    pub segments_stored: u64,
    /// [`Stats::corrupt`]: torn or corrupt disk entries dropped.
    pub corrupt: u64,
    /// [`Stats::disk_evictions`]: objects cleaned off disk.
    pub disk_evictions: u64,
    /// [`Stats::disk_bytes`]: bytes on disk (a gauge).
    pub disk_bytes: u64,
    /// [`Stats::disk_write_drops`]: disk writes dropped.
    pub disk_write_drops: u64,
    /// [`Stats::invalidations`]: invalidations.
    pub invalidations: u64,
    /// Bytes the memory tier holds (approximate; a gauge).
    pub memory_bytes: u64,
}

/// The tiers' configured sizes, beside the counters in reports: what the memory tier may hold
/// and the disk tier's two marks (cleaning starts above `disk_max_bytes` and stops at
/// `disk_cleaned_bytes`). `None` for a tier that is not configured.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Capacity {
    /// The memory tier's size (`cache.memory`); `None` without a memory tier.
    pub memory_max_bytes: Option<u64>,
    /// Cleaning starts above this (`cache.max_disk`); `None` without a disk tier.
    pub disk_max_bytes: Option<u64>,
    /// Cleaning stops at this (`cache.cleaned_disk`); `None` without a disk tier.
    pub disk_cleaned_bytes: Option<u64>,
}

impl Capacity {
    /// The sizes `cfg` gives its tiers.
    pub fn of(cfg: &kura_config::CacheConfig) -> Capacity {
        Capacity {
            memory_max_bytes: (cfg.memory_bytes > 0).then_some(cfg.memory_bytes),
            disk_max_bytes: cfg.disk.as_ref().map(|d| d.max_bytes),
            disk_cleaned_bytes: cfg.disk.as_ref().map(|d| d.cleaned_bytes),
        }
    }
}

impl Stats {
    /// Adds one to counter `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Reads every counter; `memory_bytes` is the memory tier's size, which the caller measures.
    pub fn snapshot(&self, memory_bytes: u64) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Relaxed);
        StatsSnapshot {
            hits_memory: l(&self.hits_memory),
            hits_disk: l(&self.hits_disk),
            hits_other: l(&self.hits_other),
            misses: l(&self.misses),
            stored: l(&self.stored),
            passes: l(&self.passes),
            passes_remembered: l(&self.passes_remembered),
            bodies_cut: l(&self.bodies_cut),
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
