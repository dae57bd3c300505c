//! A response body on its way to the client ([`ProxyBody`]): an upstream body (whose
//! keep-alive lease is released the moment its last byte is read), a cached one, or a small
//! generated one; for HTTP/2, read ahead into a bounded buffer (by a task, unless the body was
//! already whole when its head was answered). It counts bytes and, when dropped, completes the
//! exchange's record (metrics, access log). Nothing here buffers a body beyond that bound.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::request::BoxError;
use crate::context::Exchange;
use crate::errors::ProxyError;
use crate::upstream::Lease;

enum Kind {
    Full(Option<Bytes>),
    Cache(kura_cache::CacheBody),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
    /// Frames in hand: an HTTP/2 body read whole when its head was answered (see
    /// [`ProxyBody::pumped`]), or a broken body's error held back one poll (see `poll_frame`).
    Read(VecDeque<Result<Frame<Bytes>, BoxError>>),
    /// Read ahead by a task into a bounded buffer (HTTP/2, see [`ProxyBody::pumped`]): the
    /// frames read before the task started, then the task's.
    Pumped {
        early: VecDeque<Result<Frame<Bytes>, BoxError>>,
        rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
        room: Arc<tokio::sync::Semaphore>,
        limit: usize,
        /// What the early frames held beyond `limit` (the last one read can pass it): given
        /// back to nobody, so the buffer stays within `limit` once they are sent.
        owed: usize,
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
    /// A broken body's error is held back one poll (see `poll_frame`; set by
    /// [`ProxyBody::for_client`]).
    hold_error: bool,
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            exchange: None,
            sent: 0,
            capture: None,
            hold_error: false,
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
            hold_error: false,
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
            hold_error: false,
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

    /// For an HTTP/2 stream: this body is read ahead into a buffer of at most `limit` bytes,
    /// so a stream whose client stops reading (flow-control window closed) holds only that.
    /// What has already arrived is read at once; a body that is whole by then (a small answer
    /// usually is: it came with its head) is kept as it is read, and its upstream connection
    /// or cache reader is free now. Otherwise a task reads the rest, and when the buffer stays
    /// full for `timeout`, it drops the body (releasing its upstream connection and slot, or
    /// its cache reader) and the stream ends with an error (hyper resets it). Bodies already
    /// complete are returned as they are.
    pub fn pumped(mut self, limit: u64, timeout: std::time::Duration) -> Self {
        if self.is_end_stream() || matches!(self.kind, Kind::Full(_)) {
            return self;
        }
        let limit = limit.clamp(1, u32::MAX as u64) as usize;
        let hint = self.size_hint();
        // Polled without a waker to keep: whatever is pending is polled again by the task,
        // which registers its own.
        let mut cx = Context::from_waker(Waker::noop());
        let mut early = VecDeque::new();
        let mut held = 0usize;
        let whole = loop {
            if held >= limit {
                break false;
            }
            match Pin::new(&mut self).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    held += frame.data_ref().map_or(0, |d| d.len().clamp(1, limit));
                    early.push_back(Ok(frame));
                    if self.is_end_stream() {
                        break true;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    early.push_back(Err(e));
                    break true;
                }
                Poll::Ready(None) => break true,
                Poll::Pending => break false,
            }
        };
        if whole {
            // Dropped here: the exchange is complete, its bytes counted.
            drop(self);
            return ProxyBody {
                kind: Kind::Read(early),
                exchange: None,
                sent: 0,
                capture: None,
                hold_error: false,
            };
        }
        let hold_error = self.hold_error;
        let room = Arc::new(tokio::sync::Semaphore::new(limit.saturating_sub(held)));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task_room = room.clone();
        // The stream's end (a reset, the connection gone) drops the receiver: the task stops
        // then, wherever it waits (for room, for the upstream), so the body's upstream
        // connection and slot, or its cache reader, are released at once.
        let gone = tx.clone();
        let pump = async move {
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
                            if let Some(x) = inner.exchange.as_mut() {
                                x.note_body_error(ProxyError::SendTimeout);
                            }
                            let _ = tx.try_send(Err(Box::new(SendTimedOut) as BoxError));
                            return;
                        }
                    }
                }
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                () = pump => {}
                () = gone.closed() => {}
            }
        });
        ProxyBody {
            kind: Kind::Pumped {
                early,
                rx,
                room,
                limit,
                owed: held.saturating_sub(limit),
                hint,
                done: false,
            },
            exchange: None,
            sent: 0,
            capture: None,
            hold_error,
        }
    }

    /// Attaches the record completed when this body is done or dropped.
    pub fn with_exchange(mut self, exchange: Box<Exchange>) -> Self {
        self.exchange = Some(exchange);
        self
    }

    /// The answer to the client, in `version` with `headers`: a broken body's error is then
    /// held back one poll, so hyper writes out the head and the bytes read before the error
    /// ends the connection, and the client sees the answer cut (a length short, no last
    /// chunk, a reset stream). Not for an HTTP/1.0 client of a body without a length: its
    /// body ends with the connection, so the cut would look like a whole (maybe empty)
    /// answer; the error then ends the connection at once, with nothing of the answer sent
    /// unless hyper had already flushed some.
    pub fn for_client(mut self, version: Version, headers: &HeaderMap) -> Self {
        self.hold_error = version >= Version::HTTP_11
            || headers.contains_key(CONTENT_LENGTH)
            || self.size_hint().exact().is_some();
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

/// Reads an upstream body, driving its connection when the lease holds it inline: read first
/// (so the body wants data), then drive, then read what driving delivered.
fn poll_upstream(
    inner: &mut Incoming,
    lease: &mut Option<Lease>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    let polled = Pin::new(&mut *inner).poll_frame(cx);
    if polled.is_pending() && lease.as_mut().is_some_and(|l| l.drive(cx)) {
        return Pin::new(inner).poll_frame(cx);
    }
    polled
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
            Kind::Cache(b) => {
                let polled = Pin::new(b).poll_frame(cx);
                if let Poll::Ready(Some(Err(e))) = &polled
                    && let Some(x) = this.exchange.as_mut()
                {
                    // A pass's origin or a fill broke after the head was relayed.
                    x.note_body_error(ProxyError::Upstream(format!(
                        "the cached answer broke after the head: {e}"
                    )));
                }
                polled
            }
            Kind::Upstream { inner, lease } => match poll_upstream(inner, lease, cx) {
                Poll::Ready(None) => {
                    if let Some(lease) = lease.take() {
                        lease.release();
                    }
                    Poll::Ready(None)
                }
                // Trailers end a body, and hyper's server reads no further (no `None` would
                // come): the connection is free now.
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                    if let Some(lease) = lease.take() {
                        lease.release();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    // The upstream broke mid-body: its connection is not reusable. It may
                    // have been aborted because the client's request body failed.
                    let client_fault = lease.take().and_then(|l| l.client_fault());
                    if let Some(x) = this.exchange.as_mut() {
                        x.note_upstream_error(&e, client_fault);
                    }
                    Poll::Ready(Some(Err(Box::new(e) as BoxError)))
                }
                other => other.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
            },
            Kind::Read(frames) => Poll::Ready(frames.pop_front()),
            Kind::Pumped {
                early,
                rx,
                room,
                limit,
                owed,
                done,
                ..
            } => match early
                .pop_front()
                .map_or_else(|| rx.poll_recv(cx), |f| Poll::Ready(Some(f)))
            {
                Poll::Ready(Some(frame)) => {
                    if let Ok(f) = &frame
                        && let Some(d) = f.data_ref()
                    {
                        let back = d.len().clamp(1, *limit);
                        let paid = back.min(*owed);
                        *owed -= paid;
                        room.add_permits(back - paid);
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
        // Whether the answer waits for its upstream (see `ConnState::send_cut`): not when its
        // client has not sent all of its request body yet (the backend may wait for it).
        let waits = match &this.kind {
            Kind::Cache(_) => Some(polled.is_pending()),
            Kind::Upstream { lease, .. } => {
                Some(polled.is_pending() && !lease.as_ref().is_some_and(Lease::uploading))
            }
            _ => None,
        };
        if let (Some(waits), Some(x)) = (waits, this.exchange.as_mut()) {
            x.note_body_poll(waits);
        }
        let polled = match polled {
            // A broken body's error is held back one poll (hyper writes out what it holds, the
            // head and the last frames, when the body is pending): the client then sees the
            // answer cut short, with its status and headers, instead of no answer at all. The
            // error still ends the exchange; only an answer whose framing shows the cut holds
            // it back (see [`ProxyBody::for_client`]).
            Poll::Ready(Some(Err(e))) if this.hold_error && !matches!(this.kind, Kind::Read(_)) => {
                this.capture = None;
                this.kind = Kind::Read(VecDeque::from([Err(e)]));
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            other => other,
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
                // Trailers end a body too (hyper's server reads no further after them).
                if this.capture.is_some()
                    && (frame.is_trailers() || this.is_end_stream())
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
            Kind::Read(frames) => frames.is_empty(),
            Kind::Pumped { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Cache(b) => b.size_hint(),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Read(frames) => {
                let mut len = 0u64;
                for f in frames {
                    match f {
                        Ok(f) => len += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => return SizeHint::default(),
                    }
                }
                SizeHint::with_exact(len)
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use kura_cache::CacheBody;

    use super::{Kind, ProxyBody};
    use crate::body::request::BoxError;

    /// A body fed by a channel: what is sent before `pumped` has arrived, the rest comes later.
    fn fed() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, ProxyBody) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let stream = tokio_stream_from(rx).map(|b| Ok::<_, BoxError>(Frame::data(b)));
        let body = StreamBody::new(stream).boxed_unsync();
        (tx, ProxyBody::cache(CacheBody::Origin(body)))
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    ) -> impl futures_util::Stream<Item = Bytes> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_body_whole_when_answered_is_read_without_a_task() {
        let body = ProxyBody::cache(CacheBody::Full(Some(Bytes::from_static(b"small"))));
        let body = body.pumped(64 << 10, Duration::from_secs(1));
        assert!(matches!(body.kind, Kind::Read(_)));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "small");

        // The same when it came in several frames and the end was seen.
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"ab")).unwrap();
        tx.send(Bytes::from_static(b"cd")).unwrap();
        drop(tx);
        let body = body.pumped(64 << 10, Duration::from_secs(1));
        assert!(matches!(body.kind, Kind::Read(_)));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn a_body_still_coming_is_pumped_after_what_had_arrived() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"first ")).unwrap();
        let body = body.pumped(64 << 10, Duration::from_secs(1));
        match &body.kind {
            Kind::Pumped { early, .. } => assert_eq!(early.len(), 1),
            _ => panic!("not pumped"),
        }
        tx.send(Bytes::from_static(b"then ")).unwrap();
        tx.send(Bytes::from_static(b"the rest")).unwrap();
        drop(tx);
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            "first then the rest"
        );
    }

    #[tokio::test]
    async fn reading_ahead_stops_at_the_limit() {
        let (tx, body) = fed();
        for _ in 0..8 {
            tx.send(Bytes::from(vec![b'x'; 1024])).unwrap();
        }
        // 2 KiB read now, the rest by the task.
        let body = body.pumped(2048, Duration::from_secs(1));
        match &body.kind {
            Kind::Pumped { early, .. } => assert_eq!(early.len(), 2),
            _ => panic!("not pumped"),
        }
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 8 * 1024);
    }

    #[tokio::test]
    async fn the_frame_read_past_the_limit_does_not_widen_the_buffer() {
        use http_body_util::BodyExt;
        let (tx, body) = fed();
        // The second frame takes what was read at once past the 2048-byte limit.
        tx.send(Bytes::from(vec![b'x'; 1500])).unwrap();
        tx.send(Bytes::from(vec![b'x'; 1500])).unwrap();
        let mut body = body.pumped(2048, Duration::from_secs(1));
        for _ in 0..2 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.data_ref().map(|d| d.len()), Some(1500));
        }
        // Both sent, nothing more read: the task may read ahead the limit again, no more.
        match &body.kind {
            Kind::Pumped { room, .. } => assert_eq!(room.available_permits(), 2048),
            _ => panic!("not pumped"),
        }
        tx.send(Bytes::from_static(b"end")).unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "end");
    }
}
