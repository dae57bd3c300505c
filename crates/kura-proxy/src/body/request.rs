//! A client's request body on its way to an upstream ([`ReqBody`]). It enforces the body size
//! limit on bodies whose length was not declared up front (declared ones are checked before
//! any upstream contact), and it records, in a [`BodyFault`] shared with the pool and the
//! lease, whether it failed by the client's doing (too large, malformed chunk, client gone:
//! the answer is 413/400 and no backend is marked dead for it) and whether it was sent to its
//! end (a connection still carrying it is never handed to the next request).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::errors::ProxyError;

pub use kura_cache::BoxError;

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
