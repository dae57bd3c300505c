//! Streaming bodies in both directions; nothing here buffers a body whole.
//!
//! - [`ReqBody`] carries a client's request body to the upstream, enforcing the body size limit
//!   on bodies whose length was not declared up front (declared ones are checked before any
//!   upstream contact) and recording that the limit was hit so the answer can be 413.
//! - [`ProxyBody`] carries a response to the client: an upstream body (whose keep-alive lease
//!   is released the moment its last byte is read) or a small generated one. It counts bytes
//!   and, when dropped, completes the exchange's record (metrics, access log).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::exchange::Exchange;
use crate::upstream::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body was larger than `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// A request body on its way to an upstream.
pub struct ReqBody {
    inner: Option<Incoming>,
    limit: Option<Limit>,
}

struct Limit {
    max: u64,
    seen: u64,
    hit: Arc<AtomicBool>,
}

impl ReqBody {
    pub fn empty() -> Self {
        ReqBody {
            inner: None,
            limit: None,
        }
    }

    /// Streams `inner`; if `limit` is set, more than `max` bytes fail the body and set `hit`.
    pub fn new(inner: Incoming, limit: Option<(u64, Arc<AtomicBool>)>) -> Self {
        if inner.is_end_stream() {
            return Self::empty();
        }
        ReqBody {
            inner: Some(inner),
            limit: limit.map(|(max, hit)| Limit { max, seen: 0, hit }),
        }
    }

    /// No body at all (so a request can be rebuilt and retried).
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
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
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(limit), Some(data)) = (this.limit.as_mut(), frame.data_ref()) {
                    limit.seen += data.len() as u64;
                    if limit.seen > limit.max {
                        limit.hit.store(true, Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
}

/// A response body on its way to the client.
pub struct ProxyBody {
    kind: Kind,
    exchange: Option<Box<Exchange>>,
    sent: u64,
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            exchange: None,
            sent: 0,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub fn upstream(inner: Incoming, lease: Lease) -> Self {
        let mut body = ProxyBody {
            kind: Kind::Upstream {
                inner,
                lease: Some(lease),
            },
            exchange: None,
            sent: 0,
        };
        body.release_if_done();
        body
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
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.sent += data.len() as u64;
            }
            this.release_if_done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
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
