//! Recycled segment buffers.
//!
//! Every segment read from disk and every segment assembled from an origin's chunks needs one
//! buffer of up to `segment_size` bytes, allocated on one thread and freed on another when the
//! last client has sent it. Left to the allocator, that churn either keeps freed buffers in
//! per-thread arenas (glibc: 586 MiB resident after three 1 GiB transfers with a 256 MiB
//! memory tier) or pays page faults on every fresh mapping (pinning glibc's mmap threshold
//! made disk hits ~2× slower). A small pool hands the same buffers out again: a `Bytes` made
//! from a pooled buffer gives it back when its last clone drops. The pool keeps at most
//! [`POOLED`] idle buffers, so what it holds is bounded too.
//!
//! A buffer must also fit what it holds: a segment kept in the memory tier keeps its whole
//! allocation alive. So a pooled buffer is lent only for a segment of at least half its size,
//! and small segments (an object's last one, small objects) are copied into a buffer of their
//! own size rather than kept as a slice of a connection's read buffer, which would pin that
//! buffer (up to hundreds of KiB) for as long as the entry lives. Found by the soak run: with
//! tens of thousands of 1 KiB objects in a 128 MiB tier, the process held over 1 GiB.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Idle buffers kept for reuse, each at most one segment long (with 2 MiB segments, 8 MiB at
/// most).
pub const POOLED: usize = 4;

/// Below this, a segment is always copied into a buffer of its own size.
pub const OWNED_FROM: usize = 256 * 1024;

/// Idle segment buffers for reuse; one per cache, shared by the disk tier's reads and the
/// joining of fetched segments.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// A buffer lent out by the pool; returns to it when dropped.
struct Lent {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Ok(mut free) = self.pool.free.lock()
            && free.len() < POOLED
        {
            free.push(buf);
        }
    }
}

impl BufferPool {
    /// An empty buffer able to hold `cap` bytes: an idle pooled one when `cap` is at least
    /// half its size, else a new one of exactly `cap`.
    pub fn take(&self, cap: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| {
            let i = f
                .iter()
                .position(|b| b.capacity() >= cap && b.capacity() / 2 <= cap)?;
            Some(f.swap_remove(i))
        });
        reused.unwrap_or_else(|| Vec::with_capacity(cap))
    }

    /// `buf` as `Bytes`, given back to the pool once every clone is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent {
            buf,
            pool: self.clone(),
        })
    }

    /// `chunks` joined into one buffer that fits them. A single chunk of at least
    /// [`OWNED_FROM`] bytes is returned as it is (it is most of the buffer it slices); a
    /// smaller one is copied, so it pins nothing larger than itself.
    pub fn join(self: &Arc<Self>, chunks: &[Bytes], total: u64) -> Bytes {
        if chunks.len() == 1 && chunks[0].len() >= OWNED_FROM {
            return chunks[0].clone();
        }
        if (total as usize) < OWNED_FROM {
            let mut buf = Vec::with_capacity(total as usize);
            for c in chunks {
                buf.extend_from_slice(c);
            }
            return Bytes::from(buf);
        }
        let mut buf = self.take(total as usize);
        for c in chunks {
            buf.extend_from_slice(c);
        }
        self.freeze(buf)
    }

    /// Idle buffers held now (at most [`POOLED`]).
    pub fn idle(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_clone_drops() {
        let pool = Arc::new(BufferPool::default());
        let mut b = pool.take(1024);
        b.extend_from_slice(b"hello");
        let ptr = b.as_ptr();
        let bytes = pool.freeze(b);
        let clone = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a clone still holds it");
        assert_eq!(&clone[..], b"el");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(1024);
        assert_eq!(again.as_ptr(), ptr, "the same buffer is reused");
        assert!(again.is_empty());
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        let pool = Arc::new(BufferPool::default());
        let all: Vec<Bytes> = (0..POOLED + 5)
            .map(|_| pool.freeze(pool.take(16)))
            .collect();
        drop(all);
        assert_eq!(pool.idle(), POOLED);
    }

    #[test]
    fn a_small_segment_never_holds_a_large_buffer() {
        let pool = Arc::new(BufferPool::default());
        // A large buffer goes back to the pool...
        drop(pool.freeze(pool.take(2 << 20)));
        assert_eq!(pool.idle(), 1);
        // ...and is not lent for a small segment.
        let small = pool.take(1024);
        assert!(small.capacity() < 4096, "{}", small.capacity());
        assert_eq!(pool.idle(), 1);
        // A small slice of a large buffer is copied when kept.
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let kept = pool.join(&[big.slice(0..1000)], 1000);
        assert_ne!(kept.as_ptr(), big.as_ptr());
        assert_eq!(kept.len(), 1000);
    }

    #[test]
    fn joining_uses_one_buffer() {
        let pool = Arc::new(BufferPool::default());
        let j = pool.join(&[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")], 4);
        assert_eq!(&j[..], b"abcd");
    }
}
