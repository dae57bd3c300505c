//! Streaming bodies in both directions; nothing here buffers a body whole.
//!
//! - [`ReqBody`] carries a client's request body to the upstream, enforcing the body size limit
//!   on bodies whose length was not declared up front (declared ones are checked before any
//!   upstream contact). When the body fails by the client's doing (too large, malformed chunk,
//!   client gone) it says so in a [`BodyFault`], so the answer is 413/400 and no backend is
//!   marked dead for it.
//! - [`ProxyBody`] carries a response to the client: an upstream body (whose keep-alive lease
//!   is released the moment its last byte is read) or a small generated one. It counts bytes
//!   and, when dropped, completes the exchange's record (metrics, access log).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::errors::ProxyError;
use crate::exchange::Exchange;
use crate::upstream::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body was larger than `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// Why a request body stopped, when the fault was the client's, and whether it was sent to its
/// end: shared between the body (which sets both), the pool (which must not blame a backend
/// for a client's fault) and the lease (which must not hand out a connection still carrying
/// the previous request's body).
#[derive(Default)]
pub struct BodyFault(AtomicU8, AtomicBool);

const FAULT_NONE: u8 = 0;
const FAULT_TOO_LARGE: u8 = 1;
const FAULT_CLIENT: u8 = 2;

impl BodyFault {
    /// The client's fault as an error, if the body failed because of the client.
    pub fn error(&self) -> Option<ProxyError> {
        match self.0.load(Relaxed) {
            FAULT_TOO_LARGE => Some(ProxyError::BodyTooLarge),
            FAULT_CLIENT => Some(ProxyError::BadBody),
            _ => None,
        }
    }

    fn set(&self, fault: u8) {
        let _ = self.0.compare_exchange(FAULT_NONE, fault, Relaxed, Relaxed);
    }

    /// The body was read to its end (and so written to the upstream).
    pub fn finished(&self) -> bool {
        self.1.load(Relaxed)
    }

    fn finish(&self) {
        self.1.store(true, Relaxed);
    }
}

/// A request body on its way to an upstream.
pub struct ReqBody {
    inner: Option<Incoming>,
    /// A body held in memory (shadow copies); used when `inner` is `None`.
    full: Option<Bytes>,
    /// Byte limit checked while streaming (bodies of undeclared length).
    max: Option<u64>,
    seen: u64,
    fault: Option<Arc<BodyFault>>,
    /// The copy kept for shadow targets.
    tee: Option<kura_shadow::BodyTee>,
}

impl ReqBody {
    pub fn empty() -> Self {
        ReqBody {
            inner: None,
            full: None,
            max: None,
            seen: 0,
            fault: None,
            tee: None,
        }
    }

    /// A body already in memory.
    pub fn bytes(b: Bytes) -> Self {
        ReqBody {
            full: (!b.is_empty()).then_some(b),
            ..Self::empty()
        }
    }

    /// Stops keeping a copy (nobody will read it).
    pub fn untee(&mut self) {
        self.tee = None;
    }

    /// Keeps a copy of the body as it streams, up to `limit` bytes (for shadow targets).
    pub fn tee(&mut self, limit: u64) -> kura_shadow::BodyCopy {
        let (tee, copy) = kura_shadow::BodyTee::new(limit);
        self.tee = Some(tee);
        copy
    }

    /// Streams `inner`; more than `max` bytes fail the body as too large.
    pub fn new(inner: Incoming, max: Option<u64>) -> Self {
        if inner.is_end_stream() {
            return Self::empty();
        }
        ReqBody {
            inner: Some(inner),
            max,
            fault: Some(Arc::new(BodyFault::default())),
            ..Self::empty()
        }
    }

    /// No body at all (so a request can be rebuilt and retried).
    pub fn is_empty(&self) -> bool {
        self.inner.is_none() && self.full.is_none()
    }

    /// Where a client-caused failure of this body will be recorded.
    pub fn fault(&self) -> Option<Arc<BodyFault>> {
        self.fault.clone()
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.full.take().map(|b| Ok(Frame::data(b))));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(max), Some(data)) = (this.max, frame.data_ref()) {
                    this.seen += data.len() as u64;
                    if this.seen > max {
                        if let Some(f) = &this.fault {
                            f.set(FAULT_TOO_LARGE);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(max)))));
                    }
                }
                let ended = this.inner.as_ref().is_some_and(|b| b.is_end_stream());
                if let Some(tee) = &mut this.tee {
                    if let Some(data) = frame.data_ref() {
                        tee.push(data);
                    }
                    if ended {
                        tee.finish();
                    }
                }
                if ended && let Some(f) = &this.fault {
                    f.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(f) = &this.fault {
                    f.set(FAULT_CLIENT);
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                if let Some(tee) = &mut this.tee {
                    tee.finish();
                }
                if let Some(f) = &this.fault {
                    f.finish();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => b.is_end_stream(),
            None => self.full.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.full) {
            (Some(b), _) => b.size_hint(),
            (None, Some(b)) => SizeHint::with_exact(b.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

enum Kind {
    Full(Option<Bytes>),
    Cache(kura_cache::CacheBody),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
    /// Read ahead by a task into a bounded buffer (HTTP/2, see [`ProxyBody::pumped`]).
    Pumped {
        rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
        room: Arc<tokio::sync::Semaphore>,
        limit: usize,
        hint: SizeHint,
        done: bool,
    },
}

/// The client stopped reading an HTTP/2 stream for `send_timeout` with its buffer full.
#[derive(Debug, thiserror::Error)]
#[error("the client accepted no byte of the response for the send timeout")]
pub struct SendTimedOut;

/// A response body on its way to the client.
pub struct ProxyBody {
    kind: Kind,
    exchange: Option<Box<Exchange>>,
    sent: u64,
    /// The copy of this answer kept for a shadow comparison.
    capture: Option<Box<kura_shadow::Capture>>,
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            exchange: None,
            sent: 0,
            capture: None,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A body served by the cache.
    pub fn cache(body: kura_cache::CacheBody) -> Self {
        ProxyBody {
            kind: Kind::Cache(body),
            exchange: None,
            sent: 0,
            capture: None,
        }
    }

    pub fn upstream(inner: Incoming, lease: Lease) -> Self {
        let mut body = ProxyBody {
            kind: Kind::Upstream {
                inner,
                lease: Some(lease),
            },
            exchange: None,
            sent: 0,
            capture: None,
        };
        body.release_if_done();
        body
    }

    /// Keeps a copy of this body for a shadow comparison (handed over when it ends whole).
    pub fn with_capture(mut self, capture: kura_shadow::Capture) -> Self {
        let mut capture = Box::new(capture);
        if self.is_end_stream() {
            capture.finish();
        } else {
            self.capture = Some(capture);
        }
        self
    }

    /// For an HTTP/2 stream: a task reads this body ahead into a buffer of at most `limit`
    /// bytes, so a stream whose client stops reading (flow-control window closed) holds only
    /// that; when the buffer stays full for `timeout`, the task drops the body (releasing its
    /// upstream connection and slot, or its cache reader) and the stream ends with an error
    /// (hyper resets it). Bodies already complete are returned as they are.
    pub fn pumped(self, limit: u64, timeout: std::time::Duration) -> Self {
        if self.is_end_stream() || matches!(self.kind, Kind::Full(_)) {
            return self;
        }
        let limit = limit.clamp(1, u32::MAX as u64) as usize;
        let hint = self.size_hint();
        let room = Arc::new(tokio::sync::Semaphore::new(limit));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task_room = room.clone();
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            let mut inner = self;
            while let Some(frame) = inner.frame().await {
                let len = frame
                    .as_ref()
                    .ok()
                    .and_then(|f| f.data_ref())
                    .map_or(0, |d| d.len().clamp(1, limit));
                if len > 0 {
                    match tokio::time::timeout(timeout, task_room.acquire_many(len as u32)).await {
                        Ok(Ok(p)) => p.forget(),
                        _ => {
                            let _ = tx.try_send(Err(Box::new(SendTimedOut) as BoxError));
                            return;
                        }
                    }
                }
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        });
        ProxyBody {
            kind: Kind::Pumped {
                rx,
                room,
                limit,
                hint,
                done: false,
            },
            exchange: None,
            sent: 0,
            capture: None,
        }
    }

    /// Attaches the record completed when this body is done or dropped.
    pub fn with_exchange(mut self, exchange: Box<Exchange>) -> Self {
        self.exchange = Some(exchange);
        self
    }

    fn release_if_done(&mut self) {
        if let Kind::Upstream { inner, lease } = &mut self.kind
            && inner.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Cache(b) => Pin::new(b).poll_frame(cx),
            Kind::Upstream { inner, lease } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    if let Some(lease) = lease.take() {
                        lease.release();
                    }
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    // The upstream broke mid-body: its connection is not reusable.
                    lease.take();
                    if let Some(x) = this.exchange.as_mut() {
                        x.note_upstream_error(&e);
                    }
                    Poll::Ready(Some(Err(Box::new(e) as BoxError)))
                }
                other => other.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
            },
            Kind::Pumped {
                rx,
                room,
                limit,
                done,
                ..
            } => match rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    if let Ok(f) = &frame
                        && let Some(d) = f.data_ref()
                    {
                        room.add_permits(d.len().clamp(1, *limit));
                    }
                    Poll::Ready(Some(frame))
                }
                Poll::Ready(None) => {
                    *done = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if let Some(c) = &mut this.capture {
                        c.push(data);
                    }
                }
                this.release_if_done();
                if this.capture.is_some()
                    && this.is_end_stream()
                    && let Some(mut c) = this.capture.take()
                {
                    c.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(mut c) = this.capture.take() {
                    c.finish();
                }
            }
            // A broken body is never compared: the capture is dropped unfinished.
            Poll::Ready(Some(Err(_))) => this.capture = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Cache(b) => b.is_end_stream(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
            Kind::Pumped { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Cache(b) => b.size_hint(),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Pumped { hint, .. } => *hint,
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.release_if_done();
        if let Some(x) = self.exchange.take() {
            x.complete(self.sent);
        }
    }
}
