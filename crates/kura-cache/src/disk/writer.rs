//! The disk tier's single writer: applies queued writes, removals and purges in order, keeps
//! the index and the byte total, and cleans down to the low mark when the high mark is
//! passed, a batch at a time between the queued jobs. Also the startup scan that rebuilds the
//! index from the files.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::record::{Record, SegMeta};
use super::{Inner, ObjInfo, QUEUE, now_ms, seg_name};
use crate::key::hash_hex;
use crate::stats::Stats;

pub enum Job {
    PutEntry(Box<Record>),
    PutSegment {
        key: String,
        version: u64,
        index: u32,
        data: Bytes,
        /// Held until the segment is written: bounds the memory queued segments take.
        permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// A segment found corrupt: forget it so it is fetched again.
    DropSegment {
        key: String,
        version: u64,
        index: u32,
    },
    Remove(String),
    PurgePrefix(String, oneshot::Sender<usize>),
    PurgeAll(oneshot::Sender<usize>),
    Evict,
    Flush(oneshot::Sender<()>),
    /// Stops the writer until the sender is dropped (tests: a slow disk on demand).
    #[cfg(test)]
    Hold(std::sync::mpsc::Receiver<()>),
}

pub fn spawn(inner: Arc<Inner>) -> io::Result<SyncSender<Job>> {
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("kura-disk-writer".into())
        .spawn(move || run(inner, rx))?;
    Ok(tx)
}

fn run(inner: Arc<Inner>, rx: Receiver<Job>) {
    // Heads whose segment table changed: rewritten once per batch of jobs, not per segment.
    let mut dirty: HashSet<String> = HashSet::new();
    let mut cleaning = Cleaning::default();
    loop {
        // While cleaning, queued writes go first and cleaning goes on between them; otherwise
        // the writer sleeps until a job comes.
        let first = if cleaning.busy() {
            match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        };
        let mut next = first;
        while let Some(job) = next.take() {
            handle(&inner, job, &mut dirty, &mut cleaning);
            if dirty.len() >= 64 {
                flush_dirty(&inner, &mut dirty);
            }
            next = rx.try_recv().ok();
        }
        flush_dirty(&inner, &mut dirty);
        clean_step(&inner, &mut cleaning);
    }
}

fn handle(inner: &Inner, job: Job, dirty: &mut HashSet<String>, cleaning: &mut Cleaning) {
    match job {
        Job::PutEntry(r) => {
            dirty.remove(&hash_hex(&r.key));
            put_entry(inner, *r);
        }
        Job::PutSegment {
            key,
            version,
            index,
            data,
            permit,
        } => {
            if let Some(hash) = put_segment(inner, &key, version, index, &data) {
                dirty.insert(hash);
            }
            // Written (and indexed) or given up: either way no longer served from the queue.
            inner.pending().remove(&(key, version, index));
            drop(permit);
        }
        Job::DropSegment {
            key,
            version,
            index,
        } => drop_segment(inner, &key, version, index),
        Job::Remove(key) => {
            // Applied below: the key may be read again (a later store is not hidden).
            let _removed = RemovedOnDrop(inner, &key);
            let hash = hash_hex(&key);
            dirty.remove(&hash);
            let matches = inner
                .lock()
                .objects
                .get(&hash)
                .is_some_and(|i| i.key == key);
            if matches {
                delete_object(inner, &hash);
            } else if let Ok(bytes) = std::fs::read(inner.head_path(&hash))
                && Record::decode(&bytes).is_some_and(|r| r.key == key)
            {
                // Not indexed (or indexed under another key): remove the head if it is ours.
                let _ = std::fs::remove_file(inner.head_path(&hash));
            }
        }
        Job::PurgePrefix(prefix, reply) => {
            let hashes: Vec<String> = inner
                .lock()
                .objects
                .iter()
                .filter(|(_, i)| i.key.starts_with(&prefix))
                .map(|(h, _)| h.clone())
                .collect();
            for h in &hashes {
                dirty.remove(h);
                delete_object(inner, h);
            }
            let _ = reply.send(hashes.len());
        }
        Job::PurgeAll(reply) => {
            let hashes: Vec<String> = inner.lock().objects.keys().cloned().collect();
            for h in &hashes {
                delete_object(inner, h);
            }
            dirty.clear();
            let _ = reply.send(hashes.len());
        }
        Job::Evict => {}
        Job::Flush(reply) => {
            flush_dirty(inner, dirty);
            while clean_step(inner, cleaning) {}
            let _ = reply.send(());
        }
        #[cfg(test)]
        Job::Hold(release) => {
            let _ = release.recv();
        }
    }
}

/// Forgets a key's pending removal once the writer has applied it.
struct RemovedOnDrop<'a>(&'a Inner, &'a str);

impl Drop for RemovedOnDrop<'_> {
    fn drop(&mut self) {
        let mut removed = self.0.removed();
        if let Some(n) = removed.get_mut(self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                removed.remove(self.1);
            }
        }
    }
}

/// Writes the segment tables the index holds into their head files.
fn flush_dirty(inner: &Inner, dirty: &mut HashSet<String>) {
    for hash in dirty.drain() {
        let segs = match inner.lock().objects.get(&hash) {
            Some(info) => info.segs.clone(),
            None => continue,
        };
        rewrite_head(inner, &hash, |table| *table = segs);
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

fn put_entry(inner: &Inner, mut record: Record) {
    let hash = hash_hex(&record.key);
    let version = record.version();
    // The same object version keeps its segments; anything else replaces the old files.
    let keep = {
        let idx = inner.lock();
        idx.objects
            .get(&hash)
            .filter(|i| i.key == record.key && i.version == version && version != 0)
            .map(|i| i.segs.clone())
    };
    if keep.is_none() && inner.lock().objects.contains_key(&hash) {
        delete_object(inner, &hash);
    }
    let segs = keep.unwrap_or_default();
    if let Some(o) = record.object.as_mut() {
        o.segments = segs.clone();
    }
    let bytes = record.encode();
    if let Err(e) = write_atomic(&inner.head_path(&hash), &bytes) {
        tracing::warn!(error = %e, "cache head not written to disk");
        return;
    }
    let mut idx = inner.lock();
    let info = ObjInfo {
        key: record.key.clone(),
        version,
        head_bytes: bytes.len() as u64,
        segs,
        atime: now_ms(),
        verified: false,
    };
    let added = info.bytes();
    if let Some(old) = idx.objects.insert(hash, info) {
        idx.total = idx.total.saturating_sub(old.bytes());
    }
    idx.total += added;
    inner.set_disk_bytes(idx.total);
}

/// Writes a segment file and records it in the index; returns the object's hash, whose head
/// file is then out of date (rewritten in batches by the caller).
fn put_segment(inner: &Inner, key: &str, version: u64, index: u32, data: &Bytes) -> Option<String> {
    let hash = hash_hex(key);
    let known = inner
        .lock()
        .objects
        .get(&hash)
        .is_some_and(|i| i.key == key && i.version == version && version != 0);
    if !known {
        // The object was replaced, evicted or never written: the segment has no home.
        return None;
    }
    let path = inner.seg_path(&hash, version, index);
    if let Err(e) = write_atomic(&path, data) {
        tracing::warn!(error = %e, "cache segment not written to disk");
        return None;
    }
    let meta = SegMeta {
        len: data.len() as u64,
        crc: crc32c::crc32c(data),
    };
    let mut idx = inner.lock();
    let total = idx.total;
    let Some(info) = idx.objects.get_mut(&hash).filter(|i| i.version == version) else {
        drop(idx);
        let _ = std::fs::remove_file(&path);
        return None;
    };
    let before = info.bytes();
    if info.segs.len() <= index as usize {
        info.segs.resize(index as usize + 1, None);
    }
    info.segs[index as usize] = Some(meta);
    info.atime = now_ms();
    let after = info.bytes();
    idx.total = total.saturating_sub(before) + after;
    inner.set_disk_bytes(idx.total);
    Some(hash)
}

fn drop_segment(inner: &Inner, key: &str, version: u64, index: u32) {
    let hash = hash_hex(key);
    let known = inner
        .lock()
        .objects
        .get(&hash)
        .is_some_and(|i| i.key == key && i.version == version);
    if !known {
        return;
    }
    let _ = std::fs::remove_file(inner.seg_path(&hash, version, index));
    rewrite_head(inner, &hash, |segs| {
        if let Some(s) = segs.get_mut(index as usize) {
            *s = None;
        }
    });
}

/// Applies `edit` to the segment table in the head file and the index. False when the head
/// is gone or unreadable (the object is then removed).
fn rewrite_head(inner: &Inner, hash: &str, edit: impl FnOnce(&mut Vec<Option<SegMeta>>)) -> bool {
    let path = inner.head_path(hash);
    let record = std::fs::read(&path).ok().and_then(|b| Record::decode(&b));
    let Some(mut record) = record else {
        delete_object(inner, hash);
        return false;
    };
    let Some(obj) = record.object.as_mut() else {
        return false;
    };
    edit(&mut obj.segments);
    let segs = obj.segments.clone();
    let bytes = record.encode();
    if write_atomic(&path, &bytes).is_err() {
        return false;
    }
    let mut idx = inner.lock();
    let total = idx.total;
    let Some(info) = idx.objects.get_mut(hash) else {
        return false;
    };
    let before = info.bytes();
    info.segs = segs;
    info.head_bytes = bytes.len() as u64;
    info.atime = now_ms();
    let after = info.bytes();
    idx.total = total.saturating_sub(before) + after;
    inner.set_disk_bytes(idx.total);
    true
}

fn delete_object(inner: &Inner, hash: &str) {
    let info = {
        let mut idx = inner.lock();
        let info = idx.objects.remove(hash);
        if let Some(i) = &info {
            idx.total = idx.total.saturating_sub(i.bytes());
        }
        inner.set_disk_bytes(idx.total);
        info
    };
    let _ = std::fs::remove_file(inner.head_path(hash));
    if let Some(info) = info {
        for (i, s) in info.segs.iter().enumerate() {
            if s.is_some() {
                let _ = std::fs::remove_file(inner.seg_path(hash, info.version, i as u32));
            }
        }
    }
}

/// Objects removed per cleaning step: between steps the writer takes the jobs queued meanwhile,
/// so cleaning tens of thousands of files never stalls writes (they would be dropped).
pub(super) const CLEAN_BATCH: usize = 64;

/// A cleaning in progress: the least recently used objects chosen when the high mark was
/// passed, not yet removed.
#[derive(Default)]
pub(super) struct Cleaning {
    /// (hash, its last use when chosen), least recently used first.
    victims: std::collections::VecDeque<(u128, u64)>,
    removed: u64,
}

impl Cleaning {
    fn busy(&self) -> bool {
        !self.victims.is_empty()
    }
}

/// One step of cleaning: above the high mark with nothing chosen, chooses the least recently
/// used objects down to the low mark (the index is only read under its lock; the sort is done
/// outside it); then removes up to [`CLEAN_BATCH`] of them. An object used since it was
/// chosen is kept. Returns whether cleaning has more to do.
pub(super) fn clean_step(inner: &Inner, cleaning: &mut Cleaning) -> bool {
    if !cleaning.busy() {
        choose_victims(inner, cleaning);
        if !cleaning.busy() {
            return false;
        }
    }
    for _ in 0..CLEAN_BATCH {
        let Some((hash, chosen_at)) = cleaning.victims.pop_front() else {
            break;
        };
        let hash = format!("{hash:032x}");
        let unused = inner
            .lock()
            .objects
            .get(&hash)
            .is_some_and(|i| i.atime <= chosen_at);
        if unused {
            delete_object(inner, &hash);
            cleaning.removed += 1;
        }
    }
    if cleaning.busy() {
        return true;
    }
    let n = std::mem::take(&mut cleaning.removed);
    inner
        .stats
        .disk_evictions
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(evicted = n, "disk cache cleaned to its low mark");
    false
}

fn choose_victims(inner: &Inner, cleaning: &mut Cleaning) {
    // (last use, bytes, hash): 32 bytes an object, no allocation per object.
    let (mut by_age, total): (Vec<(u64, u64, u128)>, u64) = {
        let idx = inner.lock();
        if idx.total <= inner.max_bytes {
            return;
        }
        let all = idx
            .objects
            .iter()
            .filter_map(|(h, i)| Some((i.atime, i.bytes(), u128::from_str_radix(h, 16).ok()?)))
            .collect();
        (all, idx.total)
    };
    by_age.sort_unstable_by_key(|&(atime, _, _)| atime);
    let mut left = total;
    for (atime, bytes, hash) in by_age {
        if left <= inner.cleaned_bytes {
            break;
        }
        left = left.saturating_sub(bytes);
        cleaning.victims.push_back((hash, atime));
    }
}

/// Rebuilds the index from the files; returns (objects, bytes).
pub fn scan(inner: &Inner) -> io::Result<(usize, u64)> {
    let mut segs_seen = Vec::new();
    for a in read_dir(&inner.root)? {
        for b in read_dir(&a)? {
            for f in read_dir(&b)? {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(&f);
                } else if let Some(hash) = name.strip_suffix(".head") {
                    index_head(inner, hash, &f);
                } else if name.ends_with(".seg") {
                    segs_seen.push(f);
                }
            }
        }
    }
    // Segments whose head does not list them (a crash between the two writes) are orphans.
    for f in segs_seen {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let listed = parse_seg_name(name).is_some_and(|(hash, version, index)| {
            inner.lock().objects.get(hash).is_some_and(|i| {
                i.version == version
                    && i.segs
                        .get(index as usize)
                        .copied()
                        .flatten()
                        .is_some_and(|m| {
                            std::fs::metadata(&f)
                                .map(|md| md.len() == m.len)
                                .unwrap_or(false)
                        })
            })
        });
        if !listed {
            let _ = std::fs::remove_file(&f);
        }
    }
    let idx = inner.lock();
    inner.set_disk_bytes(idx.total);
    Ok((idx.objects.len(), idx.total))
}

fn index_head(inner: &Inner, hash: &str, path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let Some(record) = Record::decode(&bytes).filter(|r| hash_hex(&r.key) == hash) else {
        Stats::inc(&inner.stats.corrupt);
        let _ = std::fs::remove_file(path);
        return;
    };
    let version = record.version();
    // Keep only segments whose files are there with the right size; content is checked on read.
    let segs: Vec<Option<SegMeta>> = record
        .segments()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.filter(|m| {
                std::fs::metadata(inner.seg_path(hash, version, i as u32))
                    .map(|md| md.len() == m.len)
                    .unwrap_or(false)
            })
        })
        .collect();
    let info = ObjInfo {
        key: record.key.clone(),
        version,
        head_bytes: bytes.len() as u64,
        segs,
        atime: now_ms(),
        verified: false,
    };
    let mut idx = inner.lock();
    idx.total += info.bytes();
    idx.objects.insert(hash.to_string(), info);
}

fn parse_seg_name(name: &str) -> Option<(&str, u64, u32)> {
    let stem = name.strip_suffix(".seg")?;
    let mut parts = stem.splitn(3, '-');
    let hash = parts.next()?;
    let version = u64::from_str_radix(parts.next()?, 16).ok()?;
    let index = parts.next()?.parse().ok()?;
    (seg_name(hash, version, index) == name).then_some((hash, version, index))
}

fn read_dir(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect())
}
