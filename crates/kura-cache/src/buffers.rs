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

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Idle buffers kept for reuse (with 2 MiB segments, 32 MiB at most).
pub const POOLED: usize = 4;

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
    /// An empty buffer able to hold `cap` bytes, reused when one is idle.
    pub fn take(&self, cap: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        match reused {
            Some(mut b) => {
                b.reserve(cap);
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    /// `buf` as `Bytes`, given back to the pool once every clone is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent {
            buf,
            pool: self.clone(),
        })
    }

    /// `chunks` joined into one pooled buffer (a single chunk is returned as it is).
    pub fn join(self: &Arc<Self>, chunks: &[Bytes], total: u64) -> Bytes {
        if chunks.len() == 1 {
            return chunks[0].clone();
        }
        let mut buf = self.take(total as usize);
        for c in chunks {
            buf.extend_from_slice(c);
        }
        self.freeze(buf)
    }

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
    fn joining_uses_one_buffer() {
        let pool = Arc::new(BufferPool::default());
        let j = pool.join(&[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")], 4);
        assert_eq!(&j[..], b"abcd");
    }
}
