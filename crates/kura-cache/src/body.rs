//! Response bodies from the cache.
//!
//! A [`CacheBody`] is a small stored body, an origin body passed through, or a segment reader:
//! it walks the segments covering the requested bytes and takes each from memory, a lower
//! tier, or the flight that is receiving it (streaming its bytes as they arrive), or starts
//! that flight. For objects the origin serves in ranges it also starts fetching the next
//! segments ahead of the reader. A reader holds the segment it is sending and at most
//! `prefetch_segments` ahead of it (flights it started or joined, disk reads); per object, no
//! more than `2 × prefetch_segments + 1` fetched segments wait to be stored. Corrupt or missing
//! data ends the body with an error, so the client sees a truncated response rather than
//! wrong bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request;
use http_body::{Body, Frame, SizeHint};

use crate::engine::Cache;
use crate::flight::{Chunk, FlightReader, Seat, SegmentFlight};
use crate::object::{Entry, Object};
use crate::origin::{BoxError, Origin, OriginBody};
use crate::tier::BoxFuture;

/// A response body from the cache: none, one buffer, an origin's body passed through, or a
/// stored object read segment by segment.
pub enum CacheBody {
    /// No body: 304, 416, HEAD, an empty range, an X-Accel-Redirect answer.
    Empty,
    /// The whole body in one buffer (an object's only segment from memory, or a generated
    /// error page); `None` once sent.
    Full(Option<Bytes>),
    /// An origin's body streamed through, nothing stored (passes, non-storable answers).
    Origin(OriginBody),
    /// A stored object's bytes, read segment by segment as they become available.
    Segments(Box<SegmentReader>),
}

impl CacheBody {
    pub(crate) fn segments(
        cache: Arc<Cache>,
        obj: Arc<Object>,
        origin: Arc<dyn Origin>,
        template: Arc<request::Parts>,
        (start, end): (u64, Option<u64>),
        seat: Option<Seat>,
    ) -> CacheBody {
        let first = (start / obj.segment_size) as u32;
        // Take hold of what is being fetched now, so it cannot vanish before it is read.
        let mut ahead = Vec::new();
        if let Some(f) = cache.flights.segment(obj.version, first) {
            ahead.push((first, f));
        }
        let stream = match seat {
            Some(s) => {
                s.moved(first);
                Some(s)
            }
            None => cache
                .flights
                .stream(obj.version)
                .map(|s| Seat::new(&s, first)),
        };
        CacheBody::Segments(Box::new(SegmentReader {
            cache,
            obj,
            origin,
            template,
            pos: start,
            end,
            state: State::Next,
            ahead,
            stream,
            loading: Vec::new(),
        }))
    }
}

/// Why a cached body stopped early.
#[derive(Debug, thiserror::Error)]
#[error("cached body unavailable: {0}")]
pub struct BodyError(&'static str);

enum Acquired {
    Data(Bytes),
    Flight(Arc<SegmentFlight>),
    /// The object fetched again whole (origins without ranges): its body from offset 0.
    Refetched(OriginBody),
    End,
    Lost(&'static str),
}

enum State {
    Next,
    Acquiring(u32, BoxFuture<'static, Acquired>),
    Reading {
        reader: FlightReader,
        seg_start: u64,
        seg_pos: u64,
    },
    /// Reading a refetched whole body; `at` is the offset of its next byte.
    Passing {
        body: OriginBody,
        at: u64,
    },
    Done,
}

/// Sends a byte span of a stored object segment by segment, taking each from memory, a lower
/// tier, the flight receiving it, or a fetch it starts (see the module docs).
pub struct SegmentReader {
    cache: Arc<Cache>,
    obj: Arc<Object>,
    origin: Arc<dyn Origin>,
    template: Arc<request::Parts>,
    /// Absolute offset of the next byte to send.
    pos: u64,
    /// Offset after the last byte to send, when known.
    end: Option<u64>,
    state: State,
    /// Flights of segments this reader fetched ahead (ranged objects), held until read.
    ahead: Vec<(u32, Arc<SegmentFlight>)>,
    /// Its place in the whole-body fill it follows.
    stream: Option<Seat>,
    /// Segments being read ahead from lower tiers (disk), held until read.
    loading: Vec<(u32, tokio::task::JoinHandle<Option<Bytes>>)>,
}

impl SegmentReader {
    /// Counts and logs a body this reader ends early (the client gets a short body: its
    /// connection is closed), and returns the error that ends it.
    fn cut(&self, why: &'static str) -> BoxError {
        crate::stats::Stats::inc(&self.cache.stats.bodies_cut);
        tracing::warn!(key = %self.obj.key, at = self.pos, why, "cached body ended early");
        Box::new(BodyError(why))
    }

    /// The part of `data` (which starts at `at`) this reader still has to send.
    fn take(&mut self, data: &Bytes, at: u64) -> Option<Bytes> {
        let data_end = at + data.len() as u64;
        let until = self.end.map_or(data_end, |e| e.min(data_end));
        if self.pos >= until || self.pos < at {
            return None;
        }
        let s = (self.pos - at) as usize;
        let e = (until - at) as usize;
        self.pos = until;
        Some(data.slice(s..e))
    }
}

/// Finds segment `index`: stored, in flight, or fetched now.
async fn acquire(
    cache: Arc<Cache>,
    obj: Arc<Object>,
    index: u32,
    template: Arc<request::Parts>,
    origin: Arc<dyn Origin>,
    seated: Option<Arc<crate::flight::StreamFill>>,
) -> Acquired {
    let mut obj = obj;
    // The fill this reader is seated in, even once it has left the flights map: it still holds
    // the segments the reader has not read.
    let stream_of = |cache: &Cache, v: u64| seated.clone().or_else(|| cache.flights.stream(v));
    let mut refreshed = false;
    let mut rechecked = false;
    loop {
        if let Some(len) = obj.length
            && obj.segment_start(index) >= len
        {
            return Acquired::End;
        }
        if let Some(f) = cache.flights.segment(obj.version, index) {
            return Acquired::Flight(f);
        }
        if let Some(f) = stream_of(&cache, obj.version).and_then(|s| s.segment(index)) {
            return Acquired::Flight(f);
        }
        if let Some((b, _)) = cache.storage.segment(&obj, index).await {
            return Acquired::Data(b);
        }
        if let Some(f) = cache.flights.segment(obj.version, index) {
            return Acquired::Flight(f);
        }
        if obj.ranged && obj.length.is_some() {
            if cache.flights.segments_of(obj.version) >= cache.segment_flight_limit() {
                // Fetched segments are still waiting for the disk: let it catch up first.
                cache
                    .flights
                    .wait_segment_room(obj.version, cache.segment_flight_limit())
                    .await;
                continue;
            }
            return Acquired::Flight(cache.fetch_segment(&obj, index, &template, &origin));
        }
        if let Some(stream) = stream_of(&cache, obj.version) {
            if !stream.is_past(index) {
                // A whole-body fill is still producing segments: wait for this one.
                stream.wait_for(index).await;
                continue;
            }
            if !rechecked {
                // The fill moved past it while this looked elsewhere: look once more.
                rechecked = true;
                continue;
            }
        }
        if !refreshed {
            // The fill is over: its final head may tell where the body ends.
            refreshed = true;
            if let Some((Entry::Object(o), _)) = cache.storage.entry(&obj.key).await
                && o.version == obj.version
                && o.length.is_some()
            {
                obj = o;
                continue;
            }
        }
        break;
    }
    // The segment is gone and cannot be fetched alone: drop the entry so the next request
    // stores the object again, and read this one from a fresh whole-body fetch (the same
    // version only: its validators and length must match).
    cache.storage.remove(&obj.key);
    if obj.ranged {
        return Acquired::Lost("segment no longer stored");
    }
    crate::stats::Stats::inc(&cache.stats.origin_fetches);
    match origin.fetch(crate::engine::clone_parts(&template)).await {
        Ok(resp) if resp.status() == obj.status && same_version(&obj, resp.headers()) => {
            Acquired::Refetched(resp.into_body())
        }
        _ => Acquired::Lost("segment no longer stored and the object changed"),
    }
}

/// Whether a fresh response is the same version as `obj` (validators and length agree).
fn same_version(obj: &Object, h: &http::HeaderMap) -> bool {
    let same = |n: http::header::HeaderName| obj.headers.get(&n) == h.get(&n);
    let len = h
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    same(http::header::ETAG)
        && same(http::header::LAST_MODIFIED)
        && (obj.length.is_none() || len == obj.length)
}

impl SegmentReader {
    /// Keeps the next segments coming while this one is sent: reads ahead those a lower tier
    /// (disk) holds, and for ranged objects fetches (or joins) those no tier holds. Forgets
    /// the ones already passed.
    fn prefetch(&mut self, index: u32) {
        self.ahead.retain(|(i, _)| *i >= index);
        self.loading.retain(|(i, _)| *i >= index);
        if self
            .template
            .extensions
            .get::<crate::origin::FetchInfo>()
            .is_some_and(|f| !f.prefetch)
        {
            return;
        }
        let Some(count) = self.obj.segment_count() else {
            return;
        };
        for j in index + 1..=index.saturating_add(self.cache.prefetch) {
            if j >= count {
                break;
            }
            if self.ahead.iter().any(|(i, _)| *i == j) || self.loading.iter().any(|(i, _)| *i == j)
            {
                continue;
            }
            if let Some(f) = self.cache.flights.segment(self.obj.version, j) {
                self.ahead.push((j, f));
                continue;
            }
            let storage = &self.cache.storage;
            if storage.has_segment_hot(&self.obj, j) {
                continue;
            }
            if storage.has_segment_lower(&self.obj, j) {
                let cache = self.cache.clone();
                let obj = self.obj.clone();
                let load = crate::fill::spawn_in_span(async move {
                    cache.storage.segment(&obj, j).await.map(|(b, _)| b)
                });
                self.loading.push((j, load));
                continue;
            }
            if self.obj.ranged
                && self.cache.flights.segments_of(self.obj.version)
                    < self.cache.segment_flight_limit()
            {
                let f = self
                    .cache
                    .fetch_segment(&self.obj, j, &self.template, &self.origin);
                self.ahead.push((j, f));
            }
        }
    }

    /// A flight this reader already holds for segment `index`.
    fn held(&mut self, index: u32) -> Option<Arc<SegmentFlight>> {
        if let Some(p) = self.ahead.iter().position(|(i, _)| *i == index) {
            return Some(self.ahead.swap_remove(p).1);
        }
        let seat = self.stream.as_ref()?;
        seat.moved(index);
        seat.stream().segment(index)
    }
}

impl Body for SegmentReader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Next => {
                    if this.end.is_some_and(|e| this.pos >= e) {
                        this.state = State::Done;
                        continue;
                    }
                    let index = (this.pos / this.obj.segment_size) as u32;
                    this.prefetch(index);
                    let at = this.obj.segment_start(index);
                    if let Some(p) = this.loading.iter().position(|(i, _)| *i == index) {
                        // Read ahead from disk: wait for it (or look again if it came back empty).
                        let (_, load) = this.loading.swap_remove(p);
                        let fallback = acquire(
                            this.cache.clone(),
                            this.obj.clone(),
                            index,
                            this.template.clone(),
                            this.origin.clone(),
                            this.stream.as_ref().map(|seat| seat.stream().clone()),
                        );
                        let fut = async move {
                            match load.await {
                                Ok(Some(b)) => Acquired::Data(b),
                                _ => fallback.await,
                            }
                        };
                        this.state = State::Acquiring(index, Box::pin(fut));
                        continue;
                    }
                    if let Some(f) = this.held(index) {
                        this.state = State::Reading {
                            reader: f.reader(),
                            seg_start: at,
                            seg_pos: at,
                        };
                        continue;
                    }
                    // Fast path: the segment is in memory.
                    if let Some(b) = this.cache.storage.segment_hot(&this.obj, index) {
                        if let Some(out) = this.finish_segment(&b, at) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        continue;
                    }
                    let fut = acquire(
                        this.cache.clone(),
                        this.obj.clone(),
                        index,
                        this.template.clone(),
                        this.origin.clone(),
                        this.stream.as_ref().map(|seat| seat.stream().clone()),
                    );
                    this.state = State::Acquiring(index, Box::pin(fut));
                }
                State::Acquiring(index, fut) => {
                    let index = *index;
                    let acquired = match fut.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(a) => a,
                    };
                    let at = this.obj.segment_start(index);
                    match acquired {
                        Acquired::Data(b) => {
                            this.state = State::Next;
                            if let Some(out) = this.finish_segment(&b, at) {
                                return Poll::Ready(Some(Ok(Frame::data(out))));
                            }
                        }
                        Acquired::Flight(f) => {
                            this.state = State::Reading {
                                reader: f.reader(),
                                seg_start: at,
                                seg_pos: at,
                            };
                        }
                        Acquired::Refetched(body) => {
                            // No longer following the fill: do not hold it back.
                            this.stream = None;
                            this.state = State::Passing { body, at: 0 };
                        }
                        Acquired::End => {
                            this.state = State::Done;
                        }
                        Acquired::Lost(why) => {
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(this.cut(why))));
                        }
                    }
                }
                State::Reading {
                    reader,
                    seg_start,
                    seg_pos,
                } => match reader.poll_chunk(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Chunk::Data(c)) => {
                        let at = *seg_pos;
                        *seg_pos += c.len() as u64;
                        if let Some(out) = this.take(&c, at) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Poll::Ready(Chunk::End) => {
                        let got = *seg_pos - *seg_start;
                        let end_of_object = got < this.obj.segment_size;
                        if end_of_object && this.end.is_none() {
                            this.end = Some(*seg_pos);
                        }
                        this.state = if end_of_object && this.pos >= *seg_pos {
                            State::Done
                        } else {
                            State::Next
                        };
                    }
                    Poll::Ready(Chunk::Failed) => {
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(this.cut("origin fetch failed"))));
                    }
                },
                State::Passing { body, at } => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            let start = *at;
                            *at += data.len() as u64;
                            if let Some(out) = this.take(&data, start) {
                                return Poll::Ready(Some(Ok(Frame::data(out))));
                            }
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.state = State::Done;
                        this.cut("refetched body failed");
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {
                        let short = this.end.is_some_and(|e| this.pos < e);
                        this.state = State::Done;
                        if short {
                            return Poll::Ready(Some(Err(this.cut("refetched body ended early"))));
                        }
                    }
                },
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.end {
            Some(e) => SizeHint::with_exact(e.saturating_sub(self.pos)),
            None => SizeHint::default(),
        }
    }
}

impl SegmentReader {
    /// Sends the wanted part of a whole segment `b` at `at`; a short segment ends the object.
    fn finish_segment(&mut self, b: &Bytes, at: u64) -> Option<Bytes> {
        if (b.len() as u64) < self.obj.segment_size && self.end.is_none() {
            self.end = Some(at + b.len() as u64);
        }
        self.take(b, at)
    }
}

impl Body for CacheBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            CacheBody::Empty => Poll::Ready(None),
            CacheBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            CacheBody::Origin(b) => Pin::new(b).poll_frame(cx),
            CacheBody::Segments(r) => Pin::new(r.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            CacheBody::Empty => true,
            CacheBody::Full(b) => b.is_none(),
            CacheBody::Origin(b) => b.is_end_stream(),
            CacheBody::Segments(r) => matches!(r.state, State::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            CacheBody::Empty => SizeHint::with_exact(0),
            CacheBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            CacheBody::Origin(b) => b.size_hint(),
            CacheBody::Segments(r) => r.size_hint(),
        }
    }
}
