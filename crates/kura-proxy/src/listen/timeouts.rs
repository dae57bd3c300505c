//! Per-connection timeouts hyper does not give separately: `client_header_timeout` (a request
//! head must arrive whole within it once it started, or once the connection opened) and
//! `client_idle_timeout` (a keep-alive connection may wait this long for its next request).
//! hyper's own `header_read_timeout` starts when hyper begins waiting for a head, which on a
//! keep-alive connection is right after the previous response, so it cannot tell the two apart.
//!
//! The connection moves through phases kept in atomics: `Head` (bytes of a request head are
//! arriving, or the connection is new), `Busy` (a request is being served), `Idle` (between
//! requests). [`WatchedIo`] notices the first bytes of a new head; the service marks `Busy`; the
//! response body's completion marks `Idle`. The connection task checks the deadline only when
//! its timer fires, so the hot path costs one relaxed load per read.
//!
//! `send_timeout` (nginx's) bounds a client that stops reading: [`WatchedIo`] notes when a write
//! is refused (the socket buffer is full) and when one succeeds; a connection whose writes stay
//! refused for the timeout is closed, which drops everything its responses held (upstream
//! leases, backend connection slots, cache readers).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock::{ms, now_ms};

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

const NOT_CUT: u8 = 0;
const CUT_REFUSED: u8 = 1;
const CUT_NO_PROGRESS: u8 = 2;

/// Whose doing an answer's cut for the send timeout was (see [`ConnState::send_cut`]).
#[derive(Debug, PartialEq, Eq)]
pub enum SendCut {
    /// The client did not take the bytes the answer had for it.
    Client,
    /// The answer had nothing to send: its upstream sent nothing for the timeout.
    UpstreamStalled,
}

/// What the timer found when it fired.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Check again after this long.
    Later(Duration),
    HeaderTimeout,
    IdleTimeout,
    SendTimeout,
}

pub struct ConnState {
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// Requests in progress (HTTP/2 runs several at once).
    active: AtomicU32,
    /// HTTP/2: bytes between requests (pings, window updates) are not a new request head.
    multiplexed: AtomicBool,
    /// An HTTP/2 request was seen (cleartext listeners learn the protocol from the first
    /// request): a handover drains such a connection with a GOAWAY.
    http2: AtomicBool,
    /// Clock ms since which writes have been refused (0: the last write went through).
    blocked_since_ms: AtomicU64,
    /// Responses whose head is out and whose body is not finished.
    responding: AtomicU32,
    /// Clock ms of the last write that went through, or of the start of responding.
    progress_ms: AtomicU64,
    /// Whether the connection was cut for the send timeout, and how (`CUT_*`): the answers
    /// it carried then were cut by it.
    cut_for_send: AtomicU8,
}

impl ConnState {
    /// A new connection starts in the head phase: a client that connects and sends nothing is
    /// held to the header timeout.
    pub fn new() -> Self {
        ConnState {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(now_ms()),
            active: AtomicU32::new(0),
            multiplexed: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            blocked_since_ms: AtomicU64::new(0),
            responding: AtomicU32::new(0),
            progress_ms: AtomicU64::new(0),
            cut_for_send: AtomicU8::new(NOT_CUT),
        }
    }

    /// An HTTP/2 connection: idle only when no stream is in progress; the header timeout
    /// applies to the first request only.
    pub fn multiplexed() -> Self {
        let s = Self::new();
        s.multiplexed.store(true, Relaxed);
        s
    }

    /// The connection speaks HTTP/2 (a request of that version arrived on it).
    pub fn saw_http2(&self) {
        self.http2.store(true, Relaxed);
    }

    /// Whether the connection is known to speak HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2.load(Relaxed) || self.multiplexed.load(Relaxed)
    }

    pub fn busy(&self) {
        self.active.fetch_add(1, Relaxed);
        self.phase.store(BUSY, Relaxed);
    }

    /// A response head is ready: from now until its body is done (`idle`), the connection
    /// must make write progress within the send timeout. This covers what a refused write
    /// does not: an HTTP/2 stream whose window stays closed is never written at all.
    pub fn responding(&self) {
        if self.responding.fetch_add(1, Relaxed) == 0 {
            self.progress_ms.store(now_ms(), Relaxed);
        }
    }

    pub fn idle(&self) {
        let _ = self
            .responding
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        if self.active.fetch_sub(1, Relaxed) <= 1 {
            self.active.store(0, Relaxed);
            self.since_ms.store(now_ms(), Relaxed);
            self.phase.store(IDLE, Relaxed);
        }
    }

    /// The connection is being cut for the send timeout (see [`Check::SendTimeout`]): its
    /// writes were refused that long, or nothing was written for a response that long.
    pub fn cut_for_send_timeout(&self) {
        let how = if self.blocked_since_ms.load(Relaxed) != 0 {
            CUT_REFUSED
        } else {
            CUT_NO_PROGRESS
        };
        self.cut_for_send.store(how, Relaxed);
    }

    /// For an answer still unfinished: whether its connection was cut for the send timeout,
    /// and whose doing that was. `waiting_since_ms` is since when its body has been waiting
    /// for its upstream (0: it was not). Writes refused are the client's; with nothing
    /// written, an answer whose upstream sent nothing since the last write that went through
    /// had nothing to write (its upstream stalled), any other had bytes its client did not
    /// take (an HTTP/2 stream's closed window).
    pub fn send_cut(&self, waiting_since_ms: u64) -> Option<SendCut> {
        match self.cut_for_send.load(Relaxed) {
            NOT_CUT => None,
            CUT_REFUSED => Some(SendCut::Client),
            _ if waiting_since_ms != 0 && waiting_since_ms <= self.progress_ms.load(Relaxed) => {
                Some(SendCut::UpstreamStalled)
            }
            _ => Some(SendCut::Client),
        }
    }

    pub fn check(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
        send_timeout: Duration,
    ) -> Check {
        let now = now_ms();
        if self.responding.load(Relaxed) > 0
            && now.saturating_sub(self.progress_ms.load(Relaxed)) >= ms(send_timeout)
        {
            return Check::SendTimeout;
        }
        let blocked = self.blocked_since_ms.load(Relaxed);
        let send_left = match blocked {
            0 => ms(send_timeout),
            since => {
                let waited = now.saturating_sub(since);
                if waited >= ms(send_timeout) {
                    return Check::SendTimeout;
                }
                ms(send_timeout) - waited
            }
        };
        let elapsed = now.saturating_sub(self.since_ms.load(Relaxed));
        let (limit, expired) = match self.phase.load(Relaxed) {
            HEAD => (ms(header_timeout), Check::HeaderTimeout),
            IDLE => (ms(idle_timeout), Check::IdleTimeout),
            _ => {
                let next = ms(header_timeout.min(idle_timeout)).min(send_left);
                return Check::Later(Duration::from_millis(next));
            }
        };
        if elapsed >= limit {
            expired
        } else {
            Check::Later(Duration::from_millis((limit - elapsed).min(send_left)))
        }
    }
}

/// Told by [`WatchedIo`] whenever bytes are read, and whether writes go through.
pub trait ReadObserver {
    fn bytes_arrived(&self);
    /// A write was refused (the peer is not reading); `now` is the clock in ms.
    fn write_blocked(&self) {}
    /// A write went through.
    fn write_done(&self) {}
}

impl ReadObserver for ConnState {
    fn bytes_arrived(&self) {
        if self.phase.load(Relaxed) == IDLE && !self.multiplexed.load(Relaxed) {
            self.since_ms.store(now_ms(), Relaxed);
            self.phase.store(HEAD, Relaxed);
        }
    }

    fn write_blocked(&self) {
        if self.blocked_since_ms.load(Relaxed) == 0 {
            self.blocked_since_ms.store(now_ms().max(1), Relaxed);
        }
    }

    fn write_done(&self) {
        if self.blocked_since_ms.load(Relaxed) != 0 {
            self.blocked_since_ms.store(0, Relaxed);
        }
        if self.responding.load(Relaxed) > 0 {
            self.progress_ms.store(now_ms(), Relaxed);
        }
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream that tells its observer when bytes arrive: the connection's [`ConnState`] (a new
/// request head on an idle connection), or a tunnel's activity clock (`upgrade.rs`).
pub struct WatchedIo<T, O: ReadObserver = ConnState> {
    inner: T,
    state: std::sync::Arc<O>,
}

impl<T, O: ReadObserver> WatchedIo<T, O> {
    pub fn new(inner: T, state: std::sync::Arc<O>) -> Self {
        WatchedIo { inner, state }
    }

    fn note_write(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Pending => self.state.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.state.write_done(),
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncRead + Unpin, O: ReadObserver> AsyncRead for WatchedIo<T, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin, O: ReadObserver> AsyncWrite for WatchedIo<T, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_pick_their_timeout() {
        let s = ConnState::new();
        let h = Duration::from_secs(10);
        let i = Duration::from_secs(60);
        let w = Duration::from_secs(600);
        assert!(matches!(s.check(h, i, w), Check::Later(d) if d <= h));
        assert_eq!(s.check(Duration::ZERO, i, w), Check::HeaderTimeout);
        s.busy();
        assert_eq!(
            s.check(Duration::ZERO, Duration::ZERO, w),
            Check::Later(Duration::ZERO)
        );
        s.idle();
        assert_eq!(s.check(h, Duration::ZERO, w), Check::IdleTimeout);
        assert!(matches!(s.check(Duration::ZERO, i, w), Check::Later(d) if d > h));
        s.bytes_arrived();
        assert_eq!(s.check(Duration::ZERO, i, w), Check::HeaderTimeout);
    }

    #[test]
    fn writes_refused_for_the_send_timeout_end_the_connection() {
        let s = ConnState::new();
        s.busy();
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(60));
        s.write_blocked();
        assert!(
            matches!(s.check(h, i, Duration::from_secs(5)), Check::Later(d) if d <= Duration::from_secs(5))
        );
        assert_eq!(s.check(h, i, Duration::ZERO), Check::SendTimeout);
        s.write_done();
        assert!(matches!(
            s.check(h, i, Duration::from_secs(5)),
            Check::Later(_)
        ));
    }

    #[test]
    fn a_send_cut_blames_whoever_held_the_answer_up() {
        let s = ConnState::new();
        s.busy();
        s.responding();
        assert_eq!(s.send_cut(0), None);
        s.cut_for_send_timeout();
        // Nothing was written: a body waiting for its upstream since the last write stalled;
        // one that got bytes after it (never written), or was not waiting, is the client's.
        let progress = s.progress_ms.load(Relaxed);
        assert_eq!(s.send_cut(progress), Some(SendCut::UpstreamStalled));
        assert_eq!(s.send_cut(progress + 1), Some(SendCut::Client));
        assert_eq!(s.send_cut(0), Some(SendCut::Client));
        // Writes refused are the client's, whatever the body waited for.
        let r = ConnState::new();
        r.busy();
        r.responding();
        r.write_blocked();
        r.cut_for_send_timeout();
        assert_eq!(r.send_cut(1), Some(SendCut::Client));
    }

    #[test]
    fn a_response_that_makes_no_progress_ends_the_connection() {
        // An HTTP/2 stream with a closed window: no write is even attempted.
        let s = ConnState::multiplexed();
        s.busy();
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(60));
        // Waiting for the upstream is not sending.
        assert!(matches!(s.check(h, i, Duration::ZERO), Check::Later(_)));
        s.responding();
        assert_eq!(s.check(h, i, Duration::ZERO), Check::SendTimeout);
        assert!(matches!(
            s.check(h, i, Duration::from_secs(5)),
            Check::Later(_)
        ));
        s.idle();
        assert!(matches!(s.check(h, i, Duration::ZERO), Check::Later(_)));
    }
}
