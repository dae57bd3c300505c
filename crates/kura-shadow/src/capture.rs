//! Copies taken on the request path, without holding it up: [`BodyTee`] keeps the request
//! body as it streams to the primary (up to `max_request_body`), [`Capture`] keeps the
//! primary's answer as it streams to the client (up to `max_compare_body`). Both only clone
//! `Bytes` handles and hand the result to the background job through a oneshot channel when
//! the body ends; one that never ends (client gone, upstream broken) is dropped and the job
//! learns the copy is incomplete.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;

use crate::compare::Answer;

/// Up to `limit` bytes, kept as the `Bytes` chunks that arrived.
pub(crate) struct Chunks {
    chunks: Vec<Bytes>,
    kept: usize,
    limit: usize,
}

impl Chunks {
    pub(crate) fn new(limit: u64) -> Chunks {
        Chunks {
            chunks: Vec::new(),
            kept: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }
    }

    /// Keeps what fits; returns whether everything fitted.
    pub(crate) fn push(&mut self, data: &Bytes) -> bool {
        let room = self.limit - self.kept;
        if data.len() <= room {
            self.kept += data.len();
            self.chunks.push(data.clone());
            true
        } else {
            if room > 0 {
                self.chunks.push(data.slice(..room));
                self.kept += room;
            }
            false
        }
    }

    pub(crate) fn join(self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(self.kept);
                for c in &self.chunks {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        }
    }
}

/// The request body's copy: `Some(body)` when it ended within the limit, `None` when it grew
/// past it (the request is then not shadowed).
pub struct BodyTee {
    chunks: Option<Chunks>,
    tx: Option<oneshot::Sender<Option<Bytes>>>,
}

/// Where a [`BodyTee`]'s copy arrives: `Some(body)` when the body ended within the limit,
/// `None` when it outgrew it, and an error when the tee was dropped before the end.
pub type BodyCopy = oneshot::Receiver<Option<Bytes>>;

impl BodyTee {
    /// A tee keeping up to `limit` bytes (`max_request_body`), and the receiver its copy will
    /// arrive on.
    pub fn new(limit: u64) -> (BodyTee, BodyCopy) {
        let (tx, rx) = oneshot::channel();
        (
            BodyTee {
                chunks: Some(Chunks::new(limit)),
                tx: Some(tx),
            },
            rx,
        )
    }

    /// Copies one chunk of the body as it passes; the first chunk past the limit makes the
    /// copy `None` at once.
    pub fn push(&mut self, data: &Bytes) {
        if let Some(c) = &mut self.chunks
            && !c.push(data)
        {
            self.chunks = None;
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(None);
            }
        }
    }

    /// The body ended: hand the copy over.
    pub fn finish(&mut self) {
        if let (Some(c), Some(tx)) = (self.chunks.take(), self.tx.take()) {
            let _ = tx.send(Some(c.join()));
        }
    }
}

/// The primary's answer as the client received it.
pub struct Capture {
    status: StatusCode,
    headers: HeaderMap,
    chunks: Chunks,
    length: u64,
    elapsed: Option<Duration>,
    tx: Option<oneshot::Sender<Answer>>,
}

/// Where a [`Capture`]'s answer arrives, once the body has ended; an error when the capture
/// was dropped first (the answer is then never compared).
pub type PrimaryAnswer = oneshot::Receiver<Answer>;

impl Capture {
    /// A capture for the answer `tx` waits for; `elapsed` is the primary's time to this head.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        elapsed: Option<Duration>,
        limit: u64,
        tx: oneshot::Sender<Answer>,
    ) -> Capture {
        Capture {
            status,
            headers,
            chunks: Chunks::new(limit),
            length: 0,
            elapsed,
            tx: Some(tx),
        }
    }

    /// The channel a capture hands its answer through: the sender for [`Capture::new`], the
    /// receiver for the job.
    pub fn channel() -> (oneshot::Sender<Answer>, PrimaryAnswer) {
        oneshot::channel()
    }

    /// Copies one chunk of the answer as it passes: the start up to the limit is kept, the
    /// whole length counted.
    pub fn push(&mut self, data: &Bytes) {
        self.length += data.len() as u64;
        self.chunks.push(data);
    }

    /// The body ended whole: hand the answer over (once).
    pub fn finish(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let chunks = std::mem::replace(&mut self.chunks, Chunks::new(0));
        let _ = tx.send(Answer {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body: chunks.join(),
            length: self.length,
            elapsed: self.elapsed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_handed_over_whole() {
        let (mut tee, rx) = BodyTee::new(10);
        tee.push(&Bytes::from_static(b"hello "));
        tee.push(&Bytes::from_static(b"you"));
        tee.finish();
        assert_eq!(rx.await.unwrap().as_deref(), Some(&b"hello you"[..]));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_at_once_and_a_dropped_one_is_incomplete() {
        let (mut tee, rx) = BodyTee::new(4);
        tee.push(&Bytes::from_static(b"hello"));
        assert_eq!(rx.await.unwrap(), None);
        tee.finish();
        let (tee, rx) = BodyTee::new(4);
        drop(tee);
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn the_primary_answer_keeps_the_start_and_the_whole_length() {
        let (tx, rx) = Capture::channel();
        let elapsed = Some(Duration::from_millis(12));
        let mut c = Capture::new(StatusCode::OK, HeaderMap::new(), elapsed, 4, tx);
        c.push(&Bytes::from_static(b"abc"));
        c.push(&Bytes::from_static(b"defg"));
        c.finish();
        c.finish();
        let a = rx.await.unwrap();
        assert_eq!(&a.body[..], b"abcd");
        assert_eq!(a.length, 7);
        assert_eq!(
            a.elapsed, elapsed,
            "the primary's time travels with its answer"
        );
        assert!(a.truncated());
        let (tx, rx) = Capture::channel();
        drop(Capture::new(StatusCode::OK, HeaderMap::new(), None, 4, tx));
        assert!(rx.await.is_err(), "an unfinished answer is never compared");
    }
}
