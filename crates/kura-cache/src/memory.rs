//! The memory tier: `moka`, bounded in bytes.
//!
//! moka's admission is W-TinyLFU: a new entry displaces a resident one only if it has been
//! seen more often, so a one-off scan of many objects cannot flush the hot set (the
//! "scan-resistant" requirement). foyer offers a comparable in-memory cache but is built around
//! its own hybrid disk engine, whereas kura needs the disk tier to be files nginx can serve
//! (X-Accel-Redirect) and a cluster tier between memory and disk; moka is the better fit for
//! memory alone. Keys are hashes of the cache key (no allocation per lookup); the full key is
//! kept in the value and compared by the caller.

use bytes::Bytes;
use moka::sync::Cache as Moka;

use crate::object::{Entry, Object};

#[derive(Clone, Copy, Hash, PartialEq, Eq)]
enum MemKey {
    Entry(u128),
    Segment(u64, u32),
}

#[derive(Clone)]
enum MemVal {
    Entry(Entry),
    Segment(Bytes),
}

/// Entries and segments in one moka cache, bounded in bytes; always the first tier.
pub struct MemoryTier {
    cache: Moka<MemKey, MemVal>,
}

fn entry_key(key: &str) -> MemKey {
    MemKey::Entry(xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

impl MemoryTier {
    /// A tier of at most `max_bytes`, as its weigher counts them: [`Entry::weight`] for an
    /// entry, the length plus 256 for a segment.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &MemKey, v: &MemVal| match v {
                MemVal::Entry(e) => e.weight(),
                // The bytes, and the entry and `Bytes` that hold them.
                MemVal::Segment(b) => (b.len() + 256).min(u32::MAX as usize) as u32,
            })
            .build();
        MemoryTier { cache }
    }

    /// The entry stored under exactly `key` (another key with the same hash is a miss).
    pub fn entry(&self, key: &str) -> Option<Entry> {
        match self.cache.get(&entry_key(key)) {
            Some(MemVal::Entry(e)) if e.key() == key => Some(e),
            _ => None,
        }
    }

    /// Stores `entry` under its key, replacing what was there.
    pub fn put_entry(&self, entry: &Entry) {
        self.cache
            .insert(entry_key(entry.key()), MemVal::Entry(entry.clone()));
    }

    /// Stores `entry` read from a lower tier, unless memory already holds one under its slot
    /// (stored meanwhile by a fill: newer than what the lower tier had).
    pub fn promote_entry(&self, entry: &Entry) {
        self.cache
            .entry(entry_key(entry.key()))
            .or_insert_with(|| MemVal::Entry(entry.clone()));
    }

    /// Segment `index` of `obj`'s version, if held.
    pub fn segment(&self, obj: &Object, index: u32) -> Option<Bytes> {
        match self.cache.get(&MemKey::Segment(obj.version, index)) {
            Some(MemVal::Segment(b)) => Some(b),
            _ => None,
        }
    }

    /// Whether segment `index` of `obj`'s version is held.
    pub fn has_segment(&self, obj: &Object, index: u32) -> bool {
        self.cache
            .contains_key(&MemKey::Segment(obj.version, index))
    }

    /// Stores segment `index` of `obj`'s version, then runs moka's pending evictions.
    pub fn put_segment(&self, obj: &Object, index: u32, data: &Bytes) {
        self.cache.insert(
            MemKey::Segment(obj.version, index),
            MemVal::Segment(data.clone()),
        );
        // moka evicts in deferred housekeeping; a burst of large segments would otherwise sit
        // in its write log beyond the byte limit. A segment is big enough to pay for it.
        self.cache.run_pending_tasks();
    }

    /// Removes the entry under `key` (its segments are left to eviction).
    pub fn remove(&self, key: &str) {
        self.cache.invalidate(&entry_key(key));
    }

    /// Removes entries whose key starts with `prefix` and returns how many (segments of
    /// removed objects are left to eviction: no key reaches them any more).
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        let victims: Vec<MemKey> = self
            .cache
            .iter()
            .filter(|(_, v)| matches!(v, MemVal::Entry(e) if e.key().starts_with(prefix)))
            .map(|(k, _)| *k)
            .collect();
        for k in &victims {
            self.cache.invalidate(k);
        }
        victims.len()
    }

    /// Empties the tier; returns how many entries (not segments) it held.
    pub fn purge_all(&self) -> usize {
        let n = self
            .cache
            .iter()
            .filter(|(_, v)| matches!(v, MemVal::Entry(_)))
            .count();
        self.cache.invalidate_all();
        n
    }

    /// Bytes held (approximate: moka applies pending work lazily).
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Applies pending inserts and invalidations now (tests and reports).
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::object;

    const SEG: usize = 64 * 1024;

    #[test]
    fn bytes_stay_under_the_limit() {
        let m = MemoryTier::new(1 << 20);
        let data = Bytes::from(vec![7u8; SEG]);
        for _ in 0..100 {
            m.put_segment(&object("k", SEG as u64, SEG as u64), 0, &data);
        }
        m.sync();
        assert!(m.bytes() <= 1 << 20, "{}", m.bytes());
        assert!(m.bytes() >= (SEG as u64) * 8, "still holds what fits");
    }

    #[test]
    fn a_scan_of_one_off_objects_does_not_flush_the_hot_set() {
        let m = MemoryTier::new(1 << 20); // room for 15 segments
        let data = Bytes::from(vec![1u8; SEG]);
        let hot: Vec<_> = (0..8)
            .map(|i| object(&format!("hot{i}"), SEG as u64, SEG as u64))
            .collect();
        for o in &hot {
            m.put_segment(o, 0, &data);
        }
        // The hot set is read often.
        for _ in 0..5 {
            for o in &hot {
                assert!(m.segment(o, 0).is_some());
            }
        }
        m.sync();
        // A crawler reads 200 other objects once each.
        for i in 0..200 {
            let o = object(&format!("scan{i}"), SEG as u64, SEG as u64);
            m.put_segment(&o, 0, &data);
            let _ = m.segment(&o, 0);
        }
        m.sync();
        let kept = hot.iter().filter(|o| m.has_segment(o, 0)).count();
        assert!(kept >= 7, "only {kept} of 8 hot segments survived the scan");
    }
}
