//! The disk tier: one directory of files, bounded by Casserole's two marks (cleaning starts
//! above `max_bytes` and removes the least recently used objects down to `cleaned_bytes`),
//! persistent across restarts, and crash-safe.
//!
//! Written by hand rather than with foyer's disk engine because kura needs what it does not
//! offer: body files that an nginx in front can serve directly (X-Accel-Redirect, Katana), the
//! Casserole watermark semantics, and a per-segment checksum verified before any byte is
//! served. Layout, under `dir/ab/cd/` (the first hex digits of the key's hash):
//!
//! - `<hash>.head`: the entry and its segment table (length and CRC32C of each segment on
//!   disk), a [`Record`];
//! - `<hash>-<version>-<n>.seg`: segment `n`'s raw bytes.
//!
//! Every file is written to a temporary name and renamed into place, so a reader sees a
//! whole file or none; without fsync, a crash can still leave a short or zeroed file, which
//! the checksum catches (the entry is dropped and refetched, never served). Writes go through
//! one writer thread fed by a bounded queue (a full queue drops the write, not the request);
//! reads run on tokio's blocking pool. A segment waiting in the queue is served from the queue,
//! so between its fetch and its write no reader finds it missing and fetches it again.

mod queue;
mod record;
mod writer;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kura_config::DiskConfig;

use queue::Queue;
pub use record::{Record, SegMeta};
use writer::Job;

use crate::key::hash_hex;
use crate::object::{Entry, Object};
use crate::stats::Stats;
use crate::tier::{BoxFuture, Tier};

/// Pending jobs of the writer; segment jobs are further bounded by [`SEGMENT_BUDGET`].
const QUEUE: usize = 1024;

/// Segments waiting to be written (with 2 MiB segments, 32 MiB of memory at most). A fill that
/// finds no room waits; a best-effort write is dropped.
const SEGMENT_BUDGET: usize = 16;

/// What the index knows of one object (or Vary record) on disk.
#[derive(Debug, Clone)]
struct ObjInfo {
    key: String,
    version: u64,
    head_bytes: u64,
    segs: Vec<Option<SegMeta>>,
    /// Milliseconds since the epoch of the last read or write.
    atime: u64,
    /// Its single segment was verified since startup (for X-Accel-Redirect).
    verified: bool,
}

impl ObjInfo {
    fn bytes(&self) -> u64 {
        self.head_bytes + self.segs.iter().flatten().map(|s| s.len).sum::<u64>()
    }
}

#[derive(Default)]
struct Index {
    objects: HashMap<String, ObjInfo>,
    total: u64,
}

struct Inner {
    root: PathBuf,
    /// Buffers segment files are read into.
    buffers: Arc<crate::buffers::BufferPool>,
    max_bytes: u64,
    cleaned_bytes: u64,
    index: Mutex<Index>,
    stats: Arc<Stats>,
    /// Segments queued for the writer, by (key, version, index): readable until written.
    pending: Mutex<HashMap<SegId, Bytes>>,
    /// Keys removed (invalidated), with how many removals the writer has not applied yet:
    /// read as misses meanwhile, so an invalidation takes effect at once whatever the queue
    /// holds.
    removed: Mutex<HashMap<String, u32>>,
}

type SegId = (String, u64, u32);

/// The disk tier: files under one directory, an in-memory index of them, and the writer
/// thread that applies queued writes. A [`Tier`] below memory.
pub struct DiskTier {
    inner: Arc<Inner>,
    jobs: Queue,
    /// One permit per segment waiting in the queue (released by the writer).
    budget: Arc<tokio::sync::Semaphore>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Inner {
    fn dir(&self, hash: &str) -> PathBuf {
        self.root.join(&hash[0..2]).join(&hash[2..4])
    }

    fn head_path(&self, hash: &str) -> PathBuf {
        self.dir(hash).join(format!("{hash}.head"))
    }

    fn seg_path(&self, hash: &str, version: u64, index: u32) -> PathBuf {
        self.dir(hash).join(seg_name(hash, version, index))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn removed(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.removed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<SegId, Bytes>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A segment still waiting in the writer's queue.
    fn pending_segment(&self, obj: &Object, index: u32) -> Option<Bytes> {
        self.pending()
            .get(&(obj.key.clone(), obj.version, index))
            .cloned()
    }

    /// Forgets queued segments whose key `drop` selects (removed or purged objects).
    fn forget_pending(&self, drop: impl Fn(&str) -> bool) {
        self.pending().retain(|(k, _, _), _| !drop(k));
    }

    /// Reads and checks the head file of `key`.
    fn read_head(&self, key: &str) -> Option<Record> {
        if self.removed().contains_key(key) {
            return None;
        }
        let hash = hash_hex(key);
        let bytes = std::fs::read(self.head_path(&hash)).ok()?;
        match Record::decode(&bytes) {
            Some(r) if r.key == key => {
                let mut idx = self.lock();
                let t = now_ms();
                if let Some(info) = idx.objects.get_mut(&hash) {
                    info.atime = t;
                }
                Some(r)
            }
            Some(_) => None, // another key with the same hash: a miss
            None => {
                Stats::inc(&self.stats.corrupt);
                tracing::warn!(key, "corrupt cache head on disk: dropped");
                None
            }
        }
    }

    /// The segment's metadata, if this version of the object has it on disk.
    fn seg_meta(&self, obj: &Object, index: u32) -> Option<SegMeta> {
        let hash = hash_hex(&obj.key);
        let idx = self.lock();
        let info = idx.objects.get(&hash)?;
        if info.version != obj.version || info.key != obj.key {
            return None;
        }
        info.segs.get(index as usize).copied().flatten()
    }

    /// Reads segment `index` and checks its length and checksum.
    fn read_segment(&self, obj: &Object, index: u32) -> Result<Option<Bytes>, ()> {
        let Some(meta) = self.seg_meta(obj, index) else {
            return Ok(None);
        };
        let hash = hash_hex(&obj.key);
        let mut data = self.buffers.take(meta.len as usize);
        let read = std::fs::File::open(self.seg_path(&hash, obj.version, index))
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut data));
        if read.is_err() || data.len() as u64 != meta.len || crc32c::crc32c(&data) != meta.crc {
            return Err(());
        }
        Ok(Some(self.buffers.freeze(data)))
    }
}

fn seg_name(hash: &str, version: u64, index: u32) -> String {
    format!("{hash}-{version:016x}-{index}.seg")
}

impl DiskTier {
    /// Opens (creating it if needed) the cache directory and indexes what it holds. Blocking:
    /// call from a blocking context. Leftover temporary files and orphan segments are removed.
    pub fn open(
        cfg: &DiskConfig,
        stats: Arc<Stats>,
        buffers: Arc<crate::buffers::BufferPool>,
    ) -> io::Result<DiskTier> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cache dir {}: {e}", cfg.dir.display()))
        })?;
        let inner = Arc::new(Inner {
            root: cfg.dir.clone(),
            buffers,
            max_bytes: cfg.max_bytes,
            cleaned_bytes: cfg.cleaned_bytes,
            index: Mutex::new(Index::default()),
            stats,
            pending: Mutex::default(),
            removed: Mutex::default(),
        });
        let scanned = writer::scan(&inner)?;
        tracing::info!(
            dir = %cfg.dir.display(),
            objects = scanned.0,
            bytes = scanned.1,
            "disk cache loaded"
        );
        let jobs = Queue::new(writer::spawn(inner.clone())?)?;
        let tier = DiskTier {
            inner,
            jobs,
            budget: Arc::new(tokio::sync::Semaphore::new(SEGMENT_BUDGET)),
        };
        // A cache already above its mark (e.g. the limits were lowered) is cleaned at once.
        tier.enqueue(Job::Evict);
        Ok(tier)
    }

    /// Queues a job that must not be dropped (see [`Queue::send_surely`]).
    fn send_surely(&self, job: Job) {
        self.jobs.send_surely(job);
    }

    fn enqueue(&self, job: Job) {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Stats::inc(&self.inner.stats.disk_write_drops),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits until every queued write is done (tests, shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_surely(Job::Flush(tx));
        let _ = rx.await;
    }

    /// Bytes of head and segment files the index counts: the total compared with the marks.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().total
    }

    /// The cache directory every file lives under.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// For X-Accel-Redirect: the path, relative to the cache directory, of the file holding
    /// the whole body of `obj` (single-segment objects only), verified once per process.
    pub async fn accel_path(&self, obj: &Arc<Object>) -> Option<String> {
        if obj.segment_count()? > 1 {
            return None;
        }
        let hash = hash_hex(&obj.key);
        let verified = {
            let idx = self.inner.lock();
            let info = idx.objects.get(&hash)?;
            if info.version != obj.version || info.segs.first().copied().flatten().is_none() {
                return None;
            }
            info.verified
        };
        if !verified {
            let inner = self.inner.clone();
            let o = obj.clone();
            let ok = tokio::task::spawn_blocking(move || inner.read_segment(&o, 0))
                .await
                .ok()?;
            match ok {
                Ok(Some(_)) => {
                    if let Some(info) = self.inner.lock().objects.get_mut(&hash) {
                        info.verified = true;
                    }
                }
                Ok(None) => return None,
                Err(()) => {
                    Stats::inc(&self.inner.stats.corrupt);
                    self.enqueue(Job::DropSegment {
                        key: obj.key.clone(),
                        version: obj.version,
                        index: 0,
                    });
                    return None;
                }
            }
        }
        Some(format!(
            "{}/{}/{}",
            &hash[0..2],
            &hash[2..4],
            seg_name(&hash, obj.version, 0)
        ))
    }
}

impl Tier for DiskTier {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn get_entry(&self, key: &str) -> BoxFuture<'static, Option<Entry>> {
        let inner = self.inner.clone();
        let key = key.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.read_head(&key).and_then(|r| r.to_entry()))
                .await
                .ok()
                .flatten()
        })
    }

    fn get_segment(&self, obj: &Arc<Object>, index: u32) -> BoxFuture<'static, Option<Bytes>> {
        if let Some(b) = self.inner.pending_segment(obj, index) {
            return Box::pin(std::future::ready(Some(b)));
        }
        let inner = self.inner.clone();
        let obj = obj.clone();
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let o = obj.clone();
            let i2 = inner.clone();
            match tokio::task::spawn_blocking(move || i2.read_segment(&o, index)).await {
                Ok(Ok(found)) => found,
                Ok(Err(())) => {
                    Stats::inc(&inner.stats.corrupt);
                    tracing::warn!(key = %obj.key, index, "corrupt cache segment on disk: dropped");
                    let _ = jobs.try_send(Job::DropSegment {
                        key: obj.key.clone(),
                        version: obj.version,
                        index,
                    });
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn has_segment(&self, obj: &Object, index: u32) -> bool {
        self.inner.pending_segment(obj, index).is_some()
            || self.inner.seg_meta(obj, index).is_some()
    }

    fn put_entry(&self, entry: &Entry) {
        if let Some(record) = Record::from_entry(entry, Vec::new()) {
            self.enqueue(Job::PutEntry(Box::new(record)));
        }
    }

    fn put_segment(&self, obj: &Arc<Object>, index: u32, data: &Bytes) {
        match self.budget.clone().try_acquire_owned() {
            Ok(permit) => queue_segment(
                &self.inner,
                &self.jobs,
                (obj.key.clone(), obj.version, index),
                data.clone(),
                permit,
            ),
            Err(_) => Stats::inc(&self.inner.stats.disk_write_drops),
        }
    }

    fn put_segment_wait(
        &self,
        obj: &Arc<Object>,
        index: u32,
        data: &Bytes,
    ) -> BoxFuture<'static, ()> {
        let budget = self.budget.clone();
        let jobs = self.jobs.clone();
        let inner = self.inner.clone();
        let id = (obj.key.clone(), obj.version, index);
        let data = data.clone();
        Box::pin(async move {
            let Ok(permit) = budget.acquire_owned().await else {
                return;
            };
            queue_segment(&inner, &jobs, id, data, permit);
        })
    }

    fn remove(&self, key: &str) {
        self.inner.forget_pending(|k| k == key);
        *self.inner.removed().entry(key.to_string()).or_insert(0) += 1;
        // An invalidation is never dropped (the key already reads as a miss).
        self.send_surely(Job::Remove(key.to_string()));
    }

    fn purge_prefix(&self, prefix: &str) -> BoxFuture<'static, usize> {
        self.inner.forget_pending(|k| k.starts_with(prefix));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_surely(Job::PurgePrefix(prefix.to_string(), tx));
        Box::pin(async move { rx.await.unwrap_or(0) })
    }

    fn purge_all(&self) -> BoxFuture<'static, usize> {
        self.inner.forget_pending(|_| true);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_surely(Job::PurgeAll(tx));
        Box::pin(async move { rx.await.unwrap_or(0) })
    }
}

/// Queues a segment for the writer; readable from the queue until it is written.
fn queue_segment(
    inner: &Inner,
    jobs: &Queue,
    id: SegId,
    data: Bytes,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    inner.pending().insert(id.clone(), data.clone());
    let job = Job::PutSegment {
        key: id.0.clone(),
        version: id.1,
        index: id.2,
        data,
        permit,
    };
    match jobs.try_send(job) {
        Ok(()) => {}
        Err(e) => {
            inner.pending().remove(&id);
            if let TrySendError::Full(_) = e {
                Stats::inc(&inner.stats.disk_write_drops);
            }
        }
    }
}

#[cfg(test)]
impl DiskTier {
    /// Stops the writer until the returned sender is dropped (a slow disk, on demand).
    pub(crate) fn hold(&self) -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel();
        self.send_surely(Job::Hold(held));
        release
    }
}

impl Inner {
    fn set_disk_bytes(&self, total: u64) {
        self.stats.disk_bytes.store(total, Relaxed);
    }
}

#[cfg(test)]
mod tests;
