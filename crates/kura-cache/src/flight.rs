//! Coalescing: one origin fetch per object and per segment, however many requests want it.
//!
//! An [`ObjectFlight`] is a fetch of an object's head (a miss or a revalidation); requests that
//! arrive meanwhile wait for its outcome instead of fetching. A [`SegmentFlight`] is a segment
//! being received: its bytes are kept as they arrive (at most one segment, so memory stays
//! bounded) and every reader streams them at once, without waiting for the segment to
//! complete. A [`StreamFill`] tracks a whole-body origin response being cut into segments,
//! for origins that do not serve ranges.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{Notify, futures::OwnedNotified, watch};

use crate::buffers::BufferPool;
use crate::object::Object;

/// The outcome of an object fetch, for the requests that waited on it.
#[derive(Clone)]
pub enum Outcome {
    /// Stored (or revalidated): read it from the cache.
    Stored(Arc<Object>),
    /// Not stored: each waiting request goes to the origin itself.
    Pass,
    /// The fetch failed: the origin's error, which every waiter answers with.
    Failed(crate::OriginError),
}

/// A fetch of one object's head in progress (a miss or a revalidation); its leader
/// publishes the [`Outcome`] to the requests that wait on it.
pub struct ObjectFlight {
    tx: watch::Sender<Option<Outcome>>,
}

impl ObjectFlight {
    /// Publishes the outcome to every waiter, present and future.
    pub fn finish(&self, outcome: Outcome) {
        let _ = self.tx.send(Some(outcome));
    }

    /// A receiver of the outcome; it holds `None` until [`ObjectFlight::finish`].
    pub fn subscribe(&self) -> watch::Receiver<Option<Outcome>> {
        self.tx.subscribe()
    }

    /// An outcome has been published.
    pub fn is_finished(&self) -> bool {
        self.tx.borrow().is_some()
    }
}

struct SegState {
    chunks: Vec<Bytes>,
    bytes: u64,
    /// `Some(true)` complete, `Some(false)` failed.
    done: Option<bool>,
}

/// A segment being received from an origin: its chunks are kept as they arrive, for every
/// reader to stream, until it completes or fails.
pub struct SegmentFlight {
    state: Mutex<SegState>,
    notify: Arc<Notify>,
}

impl SegmentFlight {
    fn new() -> Self {
        SegmentFlight {
            state: Mutex::new(SegState {
                chunks: Vec::new(),
                bytes: 0,
                done: None,
            }),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Appends a received chunk and wakes the readers.
    pub fn push(&self, chunk: Bytes) {
        if let Ok(mut s) = self.state.lock() {
            s.bytes += chunk.len() as u64;
            s.chunks.push(chunk);
        }
        self.notify.notify_waiters();
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }

    /// Completed or failed.
    pub fn is_done(&self) -> bool {
        self.state.lock().map(|s| s.done.is_some()).unwrap_or(true)
    }

    /// Marks the segment complete (or failed) and returns its bytes joined (in a buffer from
    /// `pool`), when complete.
    pub fn finish(&self, ok: bool, pool: &Arc<BufferPool>) -> Option<Bytes> {
        let joined = match self.state.lock() {
            Ok(mut s) => {
                s.done = Some(ok);
                let joined = ok.then(|| pool.join(&s.chunks, s.bytes));
                if let Some(j) = &joined {
                    // Readers still index chunks: keep their boundaries, but as slices of the
                    // joined buffer, so the connection's read buffers are freed now (a single
                    // small chunk too: it slices a read buffer larger than itself).
                    let mut at = 0;
                    for c in s.chunks.iter_mut() {
                        let len = c.len();
                        *c = j.slice(at..at + len);
                        at += len;
                    }
                }
                joined
            }
            Err(_) => None,
        };
        self.notify.notify_waiters();
        joined
    }

    /// A reader from the segment's first byte (chunks already received included).
    pub fn reader(self: &Arc<Self>) -> FlightReader {
        FlightReader {
            flight: self.clone(),
            next: 0,
            waiter: None,
        }
    }
}

/// Streams a segment flight's bytes from the beginning as they arrive.
pub struct FlightReader {
    flight: Arc<SegmentFlight>,
    next: usize,
    waiter: Option<Pin<Box<OwnedNotified>>>,
}

/// What a reader gets next.
pub enum Chunk {
    /// The next chunk of the segment's bytes.
    Data(Bytes),
    /// The segment is complete and every chunk has been read.
    End,
    /// The fetch failed or was abandoned: the segment will not complete.
    Failed,
}

impl FlightReader {
    /// The next chunk, the end or the failure; `Pending` (woken on the next push or finish)
    /// while none is there yet.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Chunk> {
        loop {
            // Register interest before looking, so a push between the look and the wait is
            // not missed.
            if self.waiter.is_none() {
                let mut w = Box::pin(self.flight.notify.clone().notified_owned());
                w.as_mut().enable();
                self.waiter = Some(w);
            }
            {
                let Ok(s) = self.flight.state.lock() else {
                    return Poll::Ready(Chunk::Failed);
                };
                if self.next < s.chunks.len() {
                    let c = s.chunks[self.next].clone();
                    self.next += 1;
                    return Poll::Ready(Chunk::Data(c));
                }
                match s.done {
                    Some(true) => return Poll::Ready(Chunk::End),
                    Some(false) => return Poll::Ready(Chunk::Failed),
                    None => {}
                }
            }
            let w = self.waiter.as_mut().expect("set above");
            match w.as_mut().poll(cx) {
                Poll::Ready(()) => self.waiter = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

use std::future::Future as _;

/// Completed segments a whole-body fill keeps in flight for readers behind it; readers further
/// behind read from storage.
pub const STREAM_WINDOW: u32 = 4;

struct StreamState {
    /// The segment in flight (earlier ones are complete).
    started: Option<u32>,
    finished: bool,
    /// Segment flights readers may still need (bounded by the window).
    retained: BTreeMap<u32, Arc<SegmentFlight>>,
    /// Reader id → the segment it is at.
    readers: HashMap<u64, u32>,
    next_id: u64,
}

/// A whole-body fill (origin without range support): its segments can only come from this one
/// response. It runs at the origin's (and the storage's) speed, never at a reader's: it keeps
/// the last [`STREAM_WINDOW`] segments in flight for readers close behind, and readers further
/// behind read what is stored (memory or disk), or fetch again if it was evicted.
pub struct StreamFill {
    state: Mutex<StreamState>,
    notify: Arc<Notify>,
}

impl StreamFill {
    fn new() -> Self {
        StreamFill {
            state: Mutex::new(StreamState {
                started: None,
                finished: false,
                retained: BTreeMap::new(),
                readers: HashMap::new(),
                next_id: 0,
            }),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Segment `index` is now in flight.
    pub fn started(&self, index: u32, flight: Arc<SegmentFlight>) {
        {
            let mut s = self.lock();
            s.started = Some(index);
            s.retained.insert(index, flight);
            prune(&mut s);
        }
        self.notify.notify_waiters();
    }

    /// Marks the fill ended (body read to the end, or failed) and wakes readers waiting on it.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.notify.notify_waiters();
    }

    /// The flight of segment `index`, if it is still kept.
    pub fn segment(&self, index: u32) -> Option<Arc<SegmentFlight>> {
        self.lock().retained.get(&index).cloned()
    }

    /// Segment `index` has been produced already (or the fill ended without it).
    pub fn is_past(&self, index: u32) -> bool {
        let s = self.lock();
        s.finished || s.started.is_some_and(|i| i > index)
    }

    /// Registers a reader at segment `at`; returns its id.
    pub fn register(&self, at: u32) -> u64 {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.readers.insert(id, at);
        id
    }

    /// The reader moved to segment `at`.
    pub fn moved(&self, id: u64, at: u32) {
        {
            let mut s = self.lock();
            s.readers.insert(id, at);
            prune(&mut s);
        }
        self.notify.notify_waiters();
    }

    /// Removes reader `id` (its seat was dropped), releasing segments only it still needed.
    pub fn unregister(&self, id: u64) {
        {
            let mut s = self.lock();
            s.readers.remove(&id);
            prune(&mut s);
        }
        self.notify.notify_waiters();
    }

    /// Waits until segment `index` is in flight or complete, or the fill has ended.
    pub async fn wait_for(&self, index: u32) {
        loop {
            let mut w = Box::pin(self.notify.clone().notified_owned());
            w.as_mut().enable();
            {
                let s = self.lock();
                if s.started.is_some_and(|i| i >= index) || s.finished {
                    return;
                }
            }
            w.await;
        }
    }
}

/// A reader's place in a whole-body fill; leaving (drop) lets the fill run on.
pub struct Seat {
    stream: Arc<StreamFill>,
    id: u64,
}

impl Seat {
    /// Seats a new reader in `stream` at segment `at`.
    pub fn new(stream: &Arc<StreamFill>, at: u32) -> Seat {
        Seat {
            id: stream.register(at),
            stream: stream.clone(),
        }
    }

    /// The reader is now at segment `at`: the fill may release the segments behind it.
    pub fn moved(&self, at: u32) {
        self.stream.moved(self.id, at);
    }

    /// The whole-body fill this seat is in.
    pub fn stream(&self) -> &Arc<StreamFill> {
        &self.stream
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.stream.unregister(self.id);
    }
}

/// Drops retained flights no reader can still need (all but the one in flight when no
/// reader is left), and any more than [`STREAM_WINDOW`] behind the one in flight: a reader
/// that far behind reads its segments from storage, so a slow reader costs no memory here.
fn prune(s: &mut StreamState) {
    let started = s.started.unwrap_or(0);
    let keep_from = match s.readers.values().min() {
        Some(&slowest) => slowest.max(started.saturating_sub(STREAM_WINDOW)),
        None => started,
    };
    s.retained.retain(|&i, _| i >= keep_from);
}

/// Every flight in progress.
#[derive(Default)]
pub struct Flights {
    /// Buffers segments are joined into.
    pub buffers: Arc<BufferPool>,
    objects: Mutex<HashMap<String, Arc<ObjectFlight>>>,
    segments: Mutex<HashMap<(u64, u32), Arc<SegmentFlight>>>,
    /// Woken whenever a segment flight ends (its segment stored or dropped).
    segment_ended: Notify,
    streams: Mutex<HashMap<u64, Arc<StreamFill>>>,
}

/// Either the caller now leads the fetch, or it follows one.
pub enum Joined<T> {
    /// None was in progress: the caller started this one and must finish and end it.
    Lead(Arc<T>),
    /// One was in progress: the caller waits on it or reads from it.
    Follow(Arc<T>),
}

impl Flights {
    /// Joins the fetch of the object under `key`, starting one if none is in progress.
    pub fn join_object(&self, key: &str) -> Joined<ObjectFlight> {
        let mut m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = m.get(key) {
            return Joined::Follow(f.clone());
        }
        let (tx, _) = watch::channel(None);
        let f = Arc::new(ObjectFlight { tx });
        m.insert(key.to_string(), f.clone());
        Joined::Lead(f)
    }

    /// Forgets `flight` if it is still the one for `key`, so the next miss fetches again.
    pub fn end_object(&self, key: &str, flight: &Arc<ObjectFlight>) {
        let mut m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            m.remove(key);
        }
    }

    /// The flight of segment `index` of object `version`, if one is in progress.
    pub fn segment(&self, version: u64, index: u32) -> Option<Arc<SegmentFlight>> {
        let m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(version, index)).cloned()
    }

    /// Joins the flight of segment `index` of object `version`, starting one if there is none.
    pub fn join_segment(&self, version: u64, index: u32) -> Joined<SegmentFlight> {
        let mut m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = m.get(&(version, index)) {
            return Joined::Follow(f.clone());
        }
        let f = Arc::new(SegmentFlight::new());
        m.insert((version, index), f.clone());
        Joined::Lead(f)
    }

    /// Forgets the flight of segment `index` of `version`, whichever it is, and wakes
    /// [`Flights::wait_segment_room`].
    pub fn end_segment(&self, version: u64, index: u32) {
        let mut m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&(version, index));
        drop(m);
        self.segment_ended.notify_waiters();
    }

    /// Ends `flight` if it is still the flight of `(version, index)`.
    pub fn end_segment_flight(&self, version: u64, index: u32, flight: &Arc<SegmentFlight>) {
        let mut m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(&(version, index))
            .is_some_and(|f| Arc::ptr_eq(f, flight))
        {
            m.remove(&(version, index));
        }
        drop(m);
        self.segment_ended.notify_waiters();
    }

    /// Fails and ends every unfinished segment flight of `version` (its whole-body fill task
    /// ended without finishing them).
    pub fn fail_segments_of(&self, version: u64) {
        let mut m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let open: Vec<(u64, u32)> = m
            .iter()
            .filter(|((v, _), f)| *v == version && !f.is_done())
            .map(|(k, _)| *k)
            .collect();
        for k in open {
            if let Some(f) = m.remove(&k) {
                f.finish(false, &self.buffers);
            }
        }
        drop(m);
        self.segment_ended.notify_waiters();
    }

    /// Segment flights of one object version not yet ended: fetching, or fetched and waiting
    /// for a slow tier (disk) to take them.
    pub fn segments_of(&self, version: u64) -> usize {
        let m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        m.keys().filter(|(v, _)| *v == version).count()
    }

    /// Waits until fewer than `limit` segment flights of `version` are unended: a reader that
    /// outruns the disk waits here instead of piling fetched segments up in memory.
    pub async fn wait_segment_room(&self, version: u64, limit: usize) {
        loop {
            let ended = self.segment_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.segments_of(version) < limit {
                return;
            }
            ended.await;
        }
    }

    /// Registers a new whole-body fill for object `version` (replacing any earlier one).
    pub fn start_stream(&self, version: u64) -> Arc<StreamFill> {
        let f = Arc::new(StreamFill::new());
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(version, f.clone());
        f
    }

    /// The whole-body fill of object `version`, while it is registered.
    pub fn stream(&self, version: u64) -> Option<Arc<StreamFill>> {
        let m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&version).cloned()
    }

    /// Forgets the whole-body fill of `version`; seated readers keep their handle to it.
    pub fn end_stream(&self, version: u64) {
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&version);
    }

    /// Segment flights in progress (for tests and reports).
    pub fn segments_in_flight(&self) -> usize {
        self.segments.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_stream_chunks_as_they_arrive_and_see_the_end() {
        let flights = Flights::default();
        let Joined::Lead(f) = flights.join_segment(1, 0) else {
            panic!("first join leads")
        };
        assert!(matches!(flights.join_segment(1, 0), Joined::Follow(_)));
        let mut r = f.reader();
        f.push(Bytes::from_static(b"ab"));
        let first = std::future::poll_fn(|cx| r.poll_chunk(cx)).await;
        assert!(matches!(first, Chunk::Data(b) if &b[..] == b"ab"));
        let f2 = f.clone();
        let waiter = tokio::spawn(async move {
            let mut r = f2.reader();
            let mut got = Vec::new();
            loop {
                match std::future::poll_fn(|cx| r.poll_chunk(cx)).await {
                    Chunk::Data(b) => got.extend_from_slice(&b),
                    Chunk::End => return got,
                    Chunk::Failed => panic!("failed"),
                }
            }
        });
        tokio::task::yield_now().await;
        f.push(Bytes::from_static(b"cd"));
        let joined = f.finish(true, &flights.buffers).unwrap();
        assert_eq!(&joined[..], b"abcd");
        assert_eq!(waiter.await.unwrap(), b"abcd");
        let second = std::future::poll_fn(|cx| r.poll_chunk(cx)).await;
        // Chunks read after the finish are slices of the joined buffer: the originals (the
        // connection's read buffers) are not kept alive beside it.
        let Chunk::Data(b) = second else {
            panic!("second chunk")
        };
        assert_eq!(&b[..], b"cd");
        assert_eq!(b.as_ptr(), joined[2..].as_ptr());
        assert!(matches!(
            std::future::poll_fn(|cx| r.poll_chunk(cx)).await,
            Chunk::End
        ));
    }

    #[tokio::test]
    async fn waiting_for_segment_room_ends_when_a_flight_of_that_version_ends() {
        let flights = Arc::new(Flights::default());
        let _a = flights.join_segment(7, 0);
        let _b = flights.join_segment(7, 1);
        let _other = flights.join_segment(8, 0);
        assert_eq!(flights.segments_of(7), 2);
        // Below the limit: no wait.
        flights.wait_segment_room(7, 3).await;
        let f2 = flights.clone();
        let mut waiter = tokio::spawn(async move { f2.wait_segment_room(7, 2).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "two of version 7 are unended");
        flights.end_segment(8, 0);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(
            !waiter.is_finished(),
            "another version's end does not make room"
        );
        flights.end_segment(7, 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut waiter)
            .await
            .expect("room made")
            .unwrap();
    }

    #[tokio::test]
    async fn failed_flights_fail_their_readers() {
        let flights = Flights::default();
        let Joined::Lead(f) = flights.join_segment(2, 3) else {
            panic!()
        };
        let mut r = f.reader();
        assert!(f.finish(false, &flights.buffers).is_none());
        assert!(matches!(
            std::future::poll_fn(|cx| r.poll_chunk(cx)).await,
            Chunk::Failed
        ));
    }
}
