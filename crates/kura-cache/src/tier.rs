//! The storage trait and the stack of tiers: memory first, then the lower tiers in order
//! (the disk; the cluster is not a tier but an [`Origin`](crate::Origin) wrapper, whose
//! answers are kept in memory only, see [`Storage::put_segment`]). Lookups walk down
//! and promote what they find into memory; writes go to every tier (lower tiers queue them and
//! never block the request path).

use std::sync::Arc;

use bytes::Bytes;

use crate::memory::MemoryTier;
use crate::object::{Entry, Object};
use crate::stats::Stats;

pub use kura_http::BoxFuture;

/// A storage tier below memory.
pub trait Tier: Send + Sync + 'static {
    /// Label for hit counters and `Cache-Status` details.
    fn name(&self) -> &'static str;
    /// The entry stored under exactly `key`.
    fn get_entry(&self, key: &str) -> BoxFuture<'static, Option<Entry>>;
    /// Segment `index` of `obj`, verified (a corrupt one is dropped and `None` returned).
    fn get_segment(&self, obj: &Arc<Object>, index: u32) -> BoxFuture<'static, Option<Bytes>>;
    /// Cheap, best-effort: whether `get_segment` would likely find it.
    fn has_segment(&self, obj: &Object, index: u32) -> bool;
    /// Stores `entry` under its key, replacing what was there (best effort: may be queued or
    /// dropped).
    fn put_entry(&self, entry: &Entry);
    /// Stores a segment if the tier has room now (dropped otherwise: promotions, best effort).
    fn put_segment(&self, obj: &Arc<Object>, index: u32, data: &Bytes);
    /// Stores a segment, waiting for room: fills call this, so a slow tier slows the fill
    /// rather than losing data.
    fn put_segment_wait(
        &self,
        obj: &Arc<Object>,
        index: u32,
        data: &Bytes,
    ) -> BoxFuture<'static, ()> {
        self.put_segment(obj, index, data);
        Box::pin(std::future::ready(()))
    }
    /// Removes the entry under exactly `key`, with the segments of its object.
    fn remove(&self, key: &str);
    /// Removes entries whose key starts with `prefix`; returns how many.
    fn purge_prefix(&self, prefix: &str) -> BoxFuture<'static, usize>;
    /// Removes everything; returns how many entries it held.
    fn purge_all(&self) -> BoxFuture<'static, usize>;
}

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The memory tier.
    Memory,
    /// A tier below memory, by its [`Tier::name`].
    Lower(&'static str),
}

/// The tier stack the engine reads and writes: memory, then the lower tiers in order.
pub struct Storage {
    /// The memory tier; `None` when `memory_bytes` is 0.
    pub memory: Option<MemoryTier>,
    /// Tiers below memory, looked up in order (the disk, when configured).
    pub lower: Vec<Arc<dyn Tier>>,
    /// The cache's counters (here, [`Stats::segments_stored`]).
    pub stats: Arc<Stats>,
    /// Objects longer than this keep their segments out of memory when a lower tier holds
    /// them: a large download would only churn the memory tier and evict its hot small set.
    pub memory_object_limit: u64,
}

impl Storage {
    /// The memory tier only: no await, for the hit fast path.
    pub fn entry_hot(&self, key: &str) -> Option<Entry> {
        self.memory.as_ref()?.entry(key)
    }

    /// The entry under `key` from the first tier holding it, and that tier; an entry found
    /// lower is promoted into memory.
    pub async fn entry(&self, key: &str) -> Option<(Entry, Source)> {
        if let Some(e) = self.entry_hot(key) {
            return Some((e, Source::Memory));
        }
        self.entry_below(key).await
    }

    /// The entry under `key` from the tiers below memory (promoted into memory when found):
    /// for a caller that already looked in memory. The promotion never replaces what memory
    /// holds: a fill may have stored a newer version while the lower tier was being read.
    pub async fn entry_below(&self, key: &str) -> Option<(Entry, Source)> {
        for tier in &self.lower {
            if let Some(e) = tier.get_entry(key).await {
                if let Some(m) = &self.memory {
                    m.promote_entry(&e);
                }
                return Some((e, Source::Lower(tier.name())));
            }
        }
        None
    }

    /// Segment `index` of `obj` from the memory tier only: no await, for the hit fast path.
    pub fn segment_hot(&self, obj: &Object, index: u32) -> Option<Bytes> {
        self.memory.as_ref()?.segment(obj, index)
    }

    /// Whether `obj`'s segments belong in the memory tier.
    fn in_memory(&self, obj: &Object) -> bool {
        self.lower.is_empty() || obj.length.is_none_or(|l| l <= self.memory_object_limit)
    }

    /// Where `obj`'s body is read from when its head is in memory.
    pub fn body_source(&self, obj: &Object) -> Source {
        match self.lower.first() {
            Some(t) if !self.in_memory(obj) => Source::Lower(t.name()),
            _ => Source::Memory,
        }
    }

    /// Segment `index` of `obj` from the first tier holding it, and that tier; one found lower
    /// is copied into memory when the object's segments belong there.
    pub async fn segment(&self, obj: &Arc<Object>, index: u32) -> Option<(Bytes, Source)> {
        if let Some(b) = self.segment_hot(obj, index) {
            return Some((b, Source::Memory));
        }
        for tier in &self.lower {
            if let Some(b) = tier.get_segment(obj, index).await {
                if let Some(m) = &self.memory
                    && self.in_memory(obj)
                {
                    m.put_segment(obj, index, &b);
                }
                return Some((b, Source::Lower(tier.name())));
            }
        }
        None
    }

    /// Whether the memory tier holds the segment.
    pub fn has_segment_hot(&self, obj: &Object, index: u32) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|m| m.has_segment(obj, index))
    }

    /// Whether a tier below memory holds the segment (best effort).
    pub fn has_segment_lower(&self, obj: &Object, index: u32) -> bool {
        self.lower.iter().any(|t| t.has_segment(obj, index))
    }

    /// Whether some tier holds the segment (best effort).
    pub fn has_segment(&self, obj: &Object, index: u32) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|m| m.has_segment(obj, index))
            || self.lower.iter().any(|t| t.has_segment(obj, index))
    }

    /// Stores `entry` in every tier.
    pub fn put_entry(&self, entry: &Entry) {
        if let Some(m) = &self.memory {
            m.put_entry(entry);
        }
        for tier in &self.lower {
            tier.put_entry(entry);
        }
    }

    /// Stores a fetched segment in every tier, waiting for room in slow ones. With `lower`
    /// false (a segment another cluster member owns and stores), only in memory, and only for
    /// objects small enough to be hot there: the owner keeps large ones, and this node's
    /// memory stays for what it owns.
    pub async fn put_segment(&self, obj: &Arc<Object>, index: u32, data: &Bytes, lower: bool) {
        if !lower {
            // Counted only when kept: a large peer segment is stored nowhere on this node.
            if let Some(m) = &self.memory
                && obj.length.is_some_and(|l| l <= self.memory_object_limit)
            {
                Stats::inc(&self.stats.segments_stored);
                m.put_segment(obj, index, data);
            }
            return;
        }
        Stats::inc(&self.stats.segments_stored);
        let mut in_memory = false;
        if let Some(m) = &self.memory
            && self.in_memory(obj)
        {
            m.put_segment(obj, index, data);
            // moka may turn a new segment away (admission) or evict it at once: only one it
            // kept makes the lower copy optional.
            in_memory = m.has_segment(obj, index);
        }
        for tier in &self.lower {
            if in_memory {
                // Served from memory already: a busy tier drops this copy (counted) rather
                // than hold the fill, and with it the object and its origin read buffer, in an
                // unbounded line of fills waiting for the disk.
                tier.put_segment(obj, index, data);
            } else {
                tier.put_segment_wait(obj, index, data).await;
            }
        }
    }

    /// Removes the entry under `key` from every tier.
    pub fn remove(&self, key: &str) {
        if let Some(m) = &self.memory {
            m.remove(key);
        }
        for tier in &self.lower {
            tier.remove(key);
        }
    }

    /// Removes everything under `prefix`; returns the largest count any tier reported
    /// (each tier counts the entries it held). Memory is emptied first, so the purge takes
    /// effect there at once, and again once the lower tiers are done: a lookup meanwhile may
    /// have brought a doomed entry back up from a lower tier that had not yet applied the purge
    /// (its writer busy), and nothing purged may outlive the purge.
    pub async fn purge_prefix(&self, prefix: &str) -> usize {
        let mut n = self.memory.as_ref().map_or(0, |m| m.purge_prefix(prefix));
        for tier in &self.lower {
            n = n.max(tier.purge_prefix(prefix).await);
        }
        if !self.lower.is_empty()
            && let Some(m) = &self.memory
        {
            m.purge_prefix(prefix);
        }
        n
    }

    /// Empties every tier; returns the largest entry count any tier reported. Memory first
    /// and last, as [`Storage::purge_prefix`].
    pub async fn purge_all(&self) -> usize {
        let mut n = self.memory.as_ref().map_or(0, |m| m.purge_all());
        for tier in &self.lower {
            n = n.max(tier.purge_all().await);
        }
        if !self.lower.is_empty()
            && let Some(m) = &self.memory
        {
            m.purge_all();
        }
        n
    }

    /// Bytes the memory tier holds (0 without one).
    pub fn memory_bytes(&self) -> u64 {
        self.memory.as_ref().map_or(0, |m| m.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskTier;
    use crate::test_util::object;

    /// A memory tier of `memory` bytes (objects up to `limit` in it) over a 1 GiB disk tier
    /// in `dir`; the stats both count into.
    async fn with_disk(
        dir: &std::path::Path,
        memory: u64,
        limit: u64,
    ) -> (Storage, Arc<DiskTier>, Arc<Stats>) {
        let cfg = kura_config::DiskConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 30,
            cleaned_bytes: 1 << 29,
        };
        let stats = Arc::new(Stats::default());
        let s2 = stats.clone();
        let disk = tokio::task::spawn_blocking(move || DiskTier::open(&cfg, s2, Arc::default()))
            .await
            .unwrap()
            .unwrap();
        let disk = Arc::new(disk);
        let storage = Storage {
            memory: Some(MemoryTier::new(memory)),
            lower: vec![disk.clone() as Arc<dyn Tier>],
            stats: stats.clone(),
            memory_object_limit: limit,
        };
        (storage, disk, stats)
    }

    #[tokio::test]
    async fn segments_another_member_owns_stay_off_disk_and_out_of_memory_when_large() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, disk, _) = with_disk(dir.path(), 64 << 20, 8 << 20).await;
        let data = Bytes::from(vec![7u8; 1024]);
        let small = object("a.com/small", 1024, 1024);
        let large = object("a.com/large", 64 << 20, 1024);
        let own = object("a.com/own", 1024, 1024);
        for o in [&small, &large, &own] {
            storage.put_entry(&Entry::Object(o.clone()));
        }
        storage.put_segment(&small, 0, &data, false).await;
        storage.put_segment(&large, 0, &data, false).await;
        storage.put_segment(&own, 0, &data, true).await;
        disk.flush().await;
        assert!(
            storage.has_segment_hot(&small, 0),
            "a small peer object stays hot"
        );
        assert!(
            !storage.has_segment_lower(&small, 0),
            "but never on this node's disk"
        );
        assert!(
            !storage.has_segment(&large, 0),
            "a large peer object is the owner's to keep"
        );
        assert!(
            storage.has_segment_lower(&own, 0),
            "what this node owns goes to disk"
        );
    }

    #[tokio::test]
    async fn a_peer_segment_kept_nowhere_is_not_counted_as_stored() {
        let stats = Arc::new(Stats::default());
        let storage = Storage {
            memory: Some(MemoryTier::new(64 << 20)),
            lower: Vec::new(),
            stats: stats.clone(),
            memory_object_limit: 8 << 20,
        };
        let data = Bytes::from(vec![7u8; 1024]);
        let large = object("a.com/large", 64 << 20, 1024);
        storage.put_entry(&Entry::Object(large.clone()));
        storage.put_segment(&large, 0, &data, false).await;
        assert!(!storage.has_segment(&large, 0), "stored nowhere");
        assert_eq!(stats.snapshot(0).segments_stored, 0);
        let small = object("a.com/small", 1024, 1024);
        storage.put_entry(&Entry::Object(small.clone()));
        storage.put_segment(&small, 0, &data, false).await;
        assert!(storage.has_segment_hot(&small, 0));
        assert_eq!(stats.snapshot(0).segments_stored, 1);
    }

    /// Puts segments of `large` until one waits for room in the (stopped) disk's queue;
    /// returns that segment's index.
    async fn fill_the_disk_queue(storage: &Storage, large: &Arc<Object>, data: &Bytes) -> u32 {
        let mut i = 0;
        while tokio::time::timeout(
            std::time::Duration::from_millis(50),
            storage.put_segment(large, i, data, true),
        )
        .await
        .is_ok()
        {
            i += 1;
            assert!(i < 1000, "the disk's budget never filled");
        }
        i
    }

    #[tokio::test]
    async fn a_busy_disk_never_holds_a_fill_whose_segment_is_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, disk, stats) = with_disk(dir.path(), 64 << 20, 8 << 20).await;
        let data = Bytes::from(vec![7u8; 1024]);
        let small = object("a.com/small", 1024, 1024);
        let large = object("a.com/large", 64 << 20, 1024);
        for o in [&small, &large] {
            storage.put_entry(&Entry::Object(o.clone()));
        }
        // The disk stops; large segments fill its queue's budget.
        let release = disk.hold();
        let i = fill_the_disk_queue(&storage, &large, &data).await;
        // A small object is in memory: its fill goes on, the disk copy is dropped and counted.
        let before = stats
            .disk_write_drops
            .load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            storage.put_segment(&small, 0, &data, true),
        )
        .await
        .expect("a fill whose segment is in memory does not wait for the disk");
        assert!(storage.has_segment_hot(&small, 0));
        assert_eq!(
            stats
                .disk_write_drops
                .load(std::sync::atomic::Ordering::Relaxed),
            before + 1
        );
        // A large one lives only on disk: its fill waits for room, losing nothing.
        let wait = storage.put_segment(&large, i + 1, &data, true);
        drop(release);
        tokio::time::timeout(std::time::Duration::from_secs(20), wait)
            .await
            .expect("room comes back once the disk writes again");
        disk.flush().await;
        assert!(storage.has_segment_lower(&large, i + 1));
    }

    #[tokio::test]
    async fn a_segment_memory_turns_away_waits_for_the_disk() {
        // moka admits a new segment only if it is seen more often than what it would evict:
        // with a hot set in memory, a new object's segment is not kept there, and its disk
        // copy is then the only one.
        let dir = tempfile::tempdir().unwrap();
        let (storage, disk, _) = with_disk(dir.path(), 64 << 10, 8 << 10).await;
        let data = Bytes::from(vec![7u8; 4096]);
        // A hot set fills memory and is read often.
        let hot = object("a.com/hot", 15 * 4096, 4096);
        let m = storage.memory.as_ref().unwrap();
        for i in 0..15 {
            m.put_segment(&hot, i, &data);
        }
        for _ in 0..20 {
            for i in 0..15 {
                assert!(storage.segment_hot(&hot, i).is_some());
            }
        }
        let small = object("a.com/small", 4096, 4096);
        let large = object("a.com/large", 64 << 20, 4096);
        for o in [&small, &large] {
            storage.put_entry(&Entry::Object(o.clone()));
        }
        // The disk stops and its queue's budget fills.
        let release = disk.hold();
        fill_the_disk_queue(&storage, &large, &data).await;
        let mut fill = std::pin::pin!(storage.put_segment(&small, 0, &data, true));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), fill.as_mut())
            .await
            .is_err();
        assert!(!storage.has_segment_hot(&small, 0), "memory turned it away");
        assert!(waited, "a segment memory did not keep waits for the disk");
        drop(release);
        tokio::time::timeout(std::time::Duration::from_secs(20), fill)
            .await
            .expect("room comes back once the disk writes again");
        disk.flush().await;
        assert!(storage.has_segment_lower(&small, 0), "stored on disk");
    }

    /// A lookup that reads the disk while a purge waits for the busy disk writer promotes the
    /// doomed entry into memory: the purge must still leave memory without it.
    #[tokio::test]
    async fn a_lookup_during_a_purge_does_not_bring_the_entry_back() {
        for all in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (storage, disk, _) = with_disk(dir.path(), 64 << 20, 8 << 20).await;
            let o = object("a.com/x", 1024, 1024);
            storage.put_entry(&Entry::Object(o.clone()));
            disk.flush().await;
            // Not in memory (evicted): a request reads the head from disk.
            storage.memory.as_ref().unwrap().remove("a.com/x");
            // The disk writer is busy: the purge waits for it.
            let release = disk.hold();
            let mut purge = std::pin::pin!(async {
                if all {
                    storage.purge_all().await
                } else {
                    storage.purge_prefix("a.com/").await
                }
            });
            std::future::poll_fn(|cx| {
                assert!(purge.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            // A request arrives meanwhile and finds the head still on disk.
            assert!(storage.entry("a.com/x").await.is_some());
            drop(release);
            assert_eq!(purge.await, 1);
            assert!(
                storage.entry_hot("a.com/x").is_none(),
                "purge_all={all}: the purged entry outlived the purge in memory"
            );
            assert!(storage.entry("a.com/x").await.is_none());
        }
    }

    /// A lookup that reads the disk while a fill stores a newer version in memory: the
    /// request gets what it read, and memory keeps the newer version.
    #[tokio::test]
    async fn a_promotion_never_replaces_a_newer_entry_in_memory() {
        let version = |e: Option<Entry>| match e {
            Some(Entry::Object(o)) => o.version,
            _ => 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let (storage, disk, _) = with_disk(dir.path(), 64 << 20, 8 << 20).await;
        let old = object("a.com/x", 1024, 1024);
        storage.put_entry(&Entry::Object(old.clone()));
        disk.flush().await;
        storage.memory.as_ref().unwrap().remove("a.com/x");
        let mut lookup = std::pin::pin!(storage.entry_below("a.com/x"));
        std::future::poll_fn(|cx| {
            assert!(
                lookup.as_mut().poll(cx).is_pending(),
                "the disk read is under way"
            );
            std::task::Poll::Ready(())
        })
        .await;
        let new = object("a.com/x", 2048, 1024);
        assert_ne!(new.version, old.version);
        storage
            .memory
            .as_ref()
            .unwrap()
            .put_entry(&Entry::Object(new.clone()));
        let (found, _) = lookup.await.expect("found on disk");
        assert_eq!(version(Some(found)), old.version);
        assert_eq!(
            version(storage.entry_hot("a.com/x")),
            new.version,
            "the older version from disk replaced the newer one in memory"
        );
    }
}
