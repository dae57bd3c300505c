//! One backend: its keep-alive connections, its connection cap, and its health marks.
//!
//! Connections are hyper HTTP/1 client connections kept on a LIFO idle stack (the warmest is
//! reused first; the oldest expire). A [`Lease`] holds one connection and one permit of the
//! backend's semaphore for the life of one exchange and gives the connection back only once the
//! response body has been read to its end, so a connection is never shared mid-body and the
//! number of open connections never exceeds `max_connections_per_backend`. hyper-util's pooled
//! client has no such cap and spawns a task per request to watch readiness; this does neither.
//!
//! A plain-TCP HTTP/1.1 connection has no task of its own: whoever holds its lease drives it
//! (the request's task while it waits for the head, the response body as it is read), so an
//! exchange costs no task hand-off, channel wake-up or cross-thread wake. An idle one is driven
//! again when taken, which is when a close by the backend is seen, and by a sweeper task each
//! second while the backend has idle connections: it closes those past their idle time and
//! those the backend closed, so a backend that traffic left holds no sockets open (or in
//! CLOSE_WAIT) for ever. TLS connections, and one carrying an upgrade (its tunnel outlives the
//! exchange), run in a spawned task.
//!
//! HTTP/2 pools keep one multiplexed connection per backend instead of the idle stack (the
//! connection cap then bounds concurrent streams); `https://` backends are reached through
//! rustls (`tls.rs`). HTTP/1 connections are made with upgrades enabled, for WebSocket.

use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kura_config::{BackendSpec, PoolSpec};
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::ReqBody;
use crate::clock::{ms, now_ms};
use crate::control::metrics::Metrics;
use crate::errors::ProxyError;

/// An HTTP/1.1 connection over plain TCP, driven by whoever holds it.
type PlainConn = http1::Connection<TokioIo<TcpStream>, ReqBody>;

/// A connection's request side, HTTP/1.1 or HTTP/2. An HTTP/1.1 one run by a task carries the
/// task's handle, so a connection left mid-exchange can be closed at once; an inline one
/// carries the connection itself (`None` once it has ended), closed when dropped.
pub enum Sender {
    H1(http1::SendRequest<ReqBody>, tokio::task::AbortHandle),
    Inline(http1::SendRequest<ReqBody>, Option<Box<PlainConn>>),
    H2(http2::SendRequest<ReqBody>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s, _) => s.is_closed(),
            Sender::Inline(s, conn) => conn.is_none() || s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Drives an inline connection (writes what is queued, reads what has come); registers
    /// `cx` to be woken when it can go on. Returns whether there was one to drive.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Sender::Inline(_, conn) = self else {
            return false;
        };
        if let Some(c) = conn
            && let Poll::Ready(ended) = c.poll_without_shutdown(cx)
        {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
            // Dropping it closes the socket and fails whatever still waited on it.
            *conn = None;
        }
        true
    }

    /// The same connection run by a task of its own, with upgrades enabled (a tunnel).
    fn detached(self) -> Sender {
        match self {
            Sender::Inline(s, Some(conn)) => {
                let task = tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "upstream connection ended with an error");
                    }
                });
                Sender::H1(s, task.abort_handle())
            }
            other => other,
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s, _) => s.ready().await,
            Sender::Inline(..) => {
                std::future::poll_fn(|cx| {
                    // Driven first: an idle connection notices here that the backend closed it.
                    self.drive(cx);
                    match self {
                        Sender::Inline(s, _) => s.poll_ready(cx),
                        _ => Poll::Ready(Ok(())),
                    }
                })
                .await
            }
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends `req`; on failure before sending, the request comes back in the error.
    pub async fn try_send_request(
        &mut self,
        req: http::Request<ReqBody>,
    ) -> Result<
        http::Response<hyper::body::Incoming>,
        hyper::client::conn::TrySendError<http::Request<ReqBody>>,
    > {
        match self {
            Sender::H1(s, _) => s.try_send_request(req).await,
            Sender::Inline(s, conn) => {
                let mut answer = std::pin::pin!(s.try_send_request(req));
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                        return Poll::Ready(r);
                    }
                    if let Some(c) = conn
                        && let Poll::Ready(ended) = c.poll_without_shutdown(cx)
                    {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "upstream connection ended with an error");
                        }
                        // Dropped: the answer resolves now, with the connection's error.
                        *conn = None;
                        return answer.as_mut().poll(cx);
                    }
                    Poll::Pending
                })
                .await
            }
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

struct IdleConn {
    sender: Sender,
    /// Not reused after this (clock ms): the pool's idle timeout, or the upstream's own
    /// `Keep-Alive: timeout` less a margin, whichever comes first.
    expires_ms: u64,
}

/// Margin under an upstream's announced keep-alive timeout: a request sent on a connection the
/// upstream is about to close fails and, with a streamed body, cannot be replayed.
const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// How often a backend's idle connections are swept while it has any.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// A backend of a pool, with its runtime state.
pub struct Backend {
    pub spec: BackendSpec,
    pool_name: Arc<str>,
    /// Set when the host is an IP literal: no resolver call per connection.
    addr: Option<SocketAddr>,
    /// For `https://` backends.
    tls: Option<tokio_rustls::TlsConnector>,
    http2: bool,
    /// HTTP/2: the shared connection.
    shared_h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    /// Idle connections per worker slot (see `crate::listen::worker`).
    idle: Box<[Mutex<Vec<IdleConn>>]>,
    permits: Arc<Semaphore>,
    /// Exchanges in progress (least-connections balancing reads this).
    pub in_flight: AtomicUsize,
    /// Clock ms until which passive health keeps the backend out; 0 when alive.
    dead_until: AtomicU64,
    fails: AtomicU32,
    /// Set by active health checks.
    pub active_down: AtomicBool,
    /// Connections opened, for tests and the admin API.
    pub connects: AtomicU64,
    /// A sweeper task watches the idle stacks (see [`Backend::watch_idle`]).
    sweeping: AtomicBool,
    requests: IntCounter,
    metrics: Arc<Metrics>,
}

impl Backend {
    pub fn new(
        spec: BackendSpec,
        pool: &PoolSpec,
        tls: Option<&Arc<rustls::ClientConfig>>,
        metrics: Arc<Metrics>,
        slots: usize,
    ) -> Self {
        let addr = spec.pinned.or_else(|| {
            spec.host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, spec.port))
        });
        let requests = metrics
            .upstream_requests
            .with_label_values(&[pool.name.as_str(), spec.url.as_str()]);
        Backend {
            pool_name: pool.name.as_str().into(),
            addr,
            tls: tls
                .filter(|_| spec.tls)
                .map(|c| tokio_rustls::TlsConnector::from(c.clone())),
            http2: pool.http2,
            shared_h2: Mutex::new(None),
            idle: (0..slots.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            permits: Arc::new(Semaphore::new(pool.max_connections_per_backend)),
            in_flight: AtomicUsize::new(0),
            dead_until: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            active_down: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
            requests,
            metrics,
            spec,
        }
    }

    /// In rotation: not marked dead by passive health and not failing active checks.
    pub fn is_available(&self, now: u64) -> bool {
        !self.active_down.load(Relaxed) && self.dead_until.load(Relaxed) <= now
    }

    /// Milliseconds left of a dead mark (0 when alive).
    pub fn dead_for_ms(&self) -> u64 {
        self.dead_until.load(Relaxed).saturating_sub(now_ms())
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|s| s.lock().map(|v| v.len()).unwrap_or(0))
            .sum()
    }

    /// Makes sure a sweeper watches the idle stacks while any connection waits in them: one
    /// task per backend, which ends once the stacks are empty.
    fn watch_idle(self: &Arc<Self>) {
        // Read first: while a sweeper runs (the common case under traffic) nothing is written,
        // so the flag's cache line is not bounced between workers at every release.
        if self.sweeping.load(SeqCst) || self.sweeping.swap(true, SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(sweep_idle(weak));
    }

    /// Closes the idle connections past their time and those the backend closed (each is
    /// driven once, without a waker, to read what came meanwhile); returns how many are left.
    fn sweep(&self) -> usize {
        let now = now_ms();
        let mut cx = Context::from_waker(Waker::noop());
        let mut left = 0;
        for slot in self.idle.iter() {
            let Ok(mut idle) = slot.lock() else { continue };
            idle.retain_mut(|c| {
                if c.expires_ms <= now {
                    return false;
                }
                c.sender.drive(&mut cx);
                !c.sender.is_closed()
            });
            left += idle.len();
        }
        left
    }

    /// This worker's idle stack.
    fn idle_here(&self) -> &Mutex<Vec<IdleConn>> {
        &self.idle[crate::listen::worker::slot() % self.idle.len()]
    }

    /// Records a failed exchange; after `max_fails` in a row the backend is dead for the TTL
    /// (returns true when this failure marked it). The only backend of a pool is never taken
    /// out (as nginx): there is nowhere else to go, and a transient error would become an
    /// outage for the whole TTL.
    pub fn record_failure(&self, pool: &PoolSpec, kind: &'static str) -> bool {
        self.metrics
            .upstream_errors
            .with_label_values(&[&self.pool_name, self.spec.url.as_str(), kind])
            .inc();
        if pool.backends.len() <= 1 {
            return false;
        }
        let fails = self.fails.fetch_add(1, Relaxed) + 1;
        if fails >= pool.max_fails {
            self.fails.store(0, Relaxed);
            self.mark_dead(pool.dead_backend_ttl);
            tracing::warn!(
                pool = %self.pool_name,
                backend = %self.spec.url,
                kind,
                ttl = ?pool.dead_backend_ttl,
                "backend marked dead"
            );
            return true;
        }
        false
    }

    /// Forgets every idle connection (the backend closed them, e.g. it restarted).
    pub fn clear_idle(&self) {
        if let Ok(mut shared) = self.shared_h2.lock() {
            *shared = None;
        }
        for slot in self.idle.iter() {
            if let Ok(mut idle) = slot.lock() {
                idle.clear();
            }
        }
    }

    /// Takes the backend out of rotation for `ttl`.
    pub fn mark_dead(&self, ttl: Duration) {
        self.dead_until.store(now_ms() + ms(ttl), Relaxed);
        self.metrics
            .backend_marked_dead
            .with_label_values(&[&self.pool_name, self.spec.url.as_str()])
            .inc();
        // Idle connections to a dead backend are not worth keeping.
        self.clear_idle();
    }

    /// Applies a dead mark read from a shared store: out of rotation for `remaining` (zero:
    /// back in rotation now).
    pub fn set_dead_for(&self, remaining: Duration) {
        if remaining.is_zero() {
            self.dead_until.store(0, Relaxed);
        } else {
            self.dead_until.store(now_ms() + ms(remaining), Relaxed);
            self.clear_idle();
        }
    }

    pub fn record_success(&self) {
        if self.fails.load(Relaxed) != 0 {
            self.fails.store(0, Relaxed);
        }
    }

    /// A connection for one exchange: an idle one if any is usable, else a new one. Waits for
    /// a free slot under the connection cap for at most the connect timeout.
    pub async fn checkout(self: &Arc<Self>, pool: &PoolSpec) -> Result<Lease, ProxyError> {
        self.in_flight.fetch_add(1, Relaxed);
        let mut lease = Lease {
            sender: None,
            backend: self.clone(),
            permit: None,
            reused: false,
            max_idle: pool.max_idle_per_backend,
            idle_for: pool.idle_timeout,
            body: None,
        };
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                match tokio::time::timeout(
                    pool.connect_timeout,
                    self.permits.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => return Err(ProxyError::PoolExhausted),
                }
            }
        };
        lease.permit = Some(permit);
        if let Some(sender) = self.take_idle(pool.connect_timeout).await {
            lease.sender = Some(sender);
            lease.reused = true;
            return Ok(lease);
        }
        lease.sender = Some(self.connect(pool.connect_timeout).await?);
        Ok(lease)
    }

    async fn take_idle(&self, wait: Duration) -> Option<Sender> {
        if self.http2 {
            let shared = self.shared_h2.lock().ok()?.clone()?;
            if shared.is_closed() {
                return None;
            }
            return Some(Sender::H2(shared));
        }
        let now = now_ms();
        loop {
            let conn = {
                let mut idle = self.idle_here().lock().ok()?;
                let conn = idle.pop()?;
                if conn.expires_ms <= now {
                    continue;
                }
                conn
            };
            let mut sender = conn.sender;
            if sender.is_closed() {
                continue;
            }
            // A kept connection is ready at once; one that is not (still busy, half-closed)
            // is dropped after `wait` rather than holding the request.
            if let Ok(Ok(())) = tokio::time::timeout(wait, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    /// Opens a new connection (used directly when a reused one turned out stale). An HTTP/2
    /// connection becomes the backend's shared one.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ProxyError> {
        let connect = async {
            let stream = match self.addr {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((self.spec.host.as_str(), self.spec.port)).await,
            }
            .map_err(|e| ProxyError::Connect(e.to_string()))?;
            // Never one of kura's own listeners, however the address was written.
            if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr())
                && self.metrics.reaches_own_listener(local, peer)
            {
                return Err(ProxyError::Connect(
                    "the backend is one of kura's own listeners".into(),
                ));
            }
            let _ = stream.set_nodelay(true);
            match &self.tls {
                None if !self.http2 => {
                    let (sender, conn) = http1::Builder::new()
                        .handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| ProxyError::Connect(e.to_string()))?;
                    Ok(Sender::Inline(sender, Some(Box::new(conn))))
                }
                None => self.handshake(stream).await,
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(self.spec.host.clone())
                        .map_err(|e| ProxyError::Connect(format!("TLS server name: {e}")))?;
                    let stream = tls
                        .connect(name, stream)
                        .await
                        .map_err(|e| ProxyError::Connect(format!("TLS: {e}")))?;
                    self.handshake(stream).await
                }
            }
        };
        // Boxed: the connect, TLS and handshake futures are kilobytes, and every request's
        // future would otherwise carry them inline (and move them) for the rare new connection.
        let sender = tokio::time::timeout(timeout, Box::pin(connect))
            .await
            .map_err(|_| ProxyError::Timeout)??;
        self.connects.fetch_add(1, Relaxed);
        if let Sender::H2(s) = &sender
            && let Ok(mut shared) = self.shared_h2.lock()
        {
            *shared = Some(s.clone());
        }
        Ok(sender)
    }

    async fn handshake<T>(&self, io: T) -> Result<Sender, ProxyError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let failed = |e: hyper::Error| ProxyError::Connect(e.to_string());
        if self.http2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(io))
                .await
                .map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended with an error");
                }
            });
            return Ok(Sender::H2(sender));
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(failed)?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Sender::H1(sender, task.abort_handle()))
    }

    /// Drops this backend's metric series (it left the routes).
    pub fn forget_metrics(&self) {
        self.metrics
            .forget_backend(&self.pool_name, self.spec.url.as_str());
    }

    pub fn count_request(&self) {
        self.requests.inc();
    }

    /// Keeps `sender` for reuse; returns whether it was kept.
    fn put_idle(&self, sender: Sender, max_idle: usize, idle_for: Duration) -> bool {
        if sender.is_closed() || idle_for.is_zero() || sender.is_h2() {
            // HTTP/2 connections stay shared; nothing to give back.
            return false;
        }
        if let Ok(mut idle) = self.idle_here().lock()
            && idle.len() < max_idle
        {
            idle.push(IdleConn {
                sender,
                expires_ms: now_ms() + ms(idle_for),
            });
            return true;
        }
        false
    }
}

/// One connection and one connection slot, held for one exchange.
pub struct Lease {
    sender: Option<Sender>,
    pub backend: Arc<Backend>,
    permit: Option<OwnedSemaphorePermit>,
    /// The connection came from the idle stack (it may have been closed by the peer meanwhile).
    pub reused: bool,
    max_idle: usize,
    /// How long the connection may wait idle once released.
    idle_for: Duration,
    /// The request body being written on this connection, when it has one: until it is sent
    /// to its end the connection is busy, even when the response (an early 401 or 413) is done.
    body: Option<Arc<crate::body::BodyFault>>,
}

impl Lease {
    /// Ties the connection to the request body it carries.
    pub fn carries(&mut self, body: Option<Arc<crate::body::BodyFault>>) {
        self.body = body;
    }

    /// The client's fault, when the request body this connection carries failed by the
    /// client's doing (too large, malformed, cut off): the connection was aborted for it.
    pub fn client_fault(&self) -> Option<crate::errors::ProxyError> {
        self.body.as_ref().and_then(|b| b.error())
    }

    /// The request body this connection carries is still coming from the client (the
    /// backend may be waiting for it before it answers more).
    pub fn uploading(&self) -> bool {
        self.body.as_ref().is_some_and(|b| !b.finished())
    }

    pub fn sender(&mut self) -> &mut Sender {
        self.sender
            .as_mut()
            .expect("a lease always holds a sender until released")
    }

    pub fn replace_sender(&mut self, sender: Sender) {
        self.sender = Some(sender);
        self.reused = false;
    }

    /// Drives the connection if it is inline (see the module doc); the response body calls
    /// this each time it is read.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.sender.as_mut().is_some_and(|s| s.drive(cx))
    }

    /// Before sending an upgrade request: the connection gets a task of its own, which hands
    /// it over to the tunnel after a `101`.
    pub fn detach_for_upgrade(&mut self) {
        if let Some(s) = self.sender.take() {
            self.sender = Some(s.detached());
        }
    }

    /// Applies the upstream's `Keep-Alive: timeout=N` (seconds) from a response.
    pub fn note_keep_alive(&mut self, headers: &http::HeaderMap) {
        let timeout = headers
            .get("keep-alive")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .filter_map(|p| p.trim().strip_prefix("timeout="))
                    .find_map(|t| t.trim().parse::<u64>().ok())
            });
        if let Some(secs) = timeout {
            let announced = Duration::from_secs(secs).saturating_sub(KEEP_ALIVE_MARGIN);
            self.idle_for = self.idle_for.min(announced);
        }
    }

    /// The response body was read to its end: the connection can serve another exchange,
    /// unless the request's body is still being written (an early answer), in which case the
    /// connection is closed rather than handed to a request that would wait behind it.
    pub fn release(mut self) {
        if self.body.as_ref().is_some_and(|b| !b.finished()) {
            // Dropping the lease (below) closes the connection.
            return;
        }
        if let Some(sender) = self.sender.take()
            && self.backend.put_idle(sender, self.max_idle, self.idle_for)
        {
            self.backend.watch_idle();
        }
    }
}

/// The sweeper of one backend's idle connections: every [`IDLE_SWEEP`] until none is left
/// (or the backend left the routes).
async fn sweep_idle(backend: Weak<Backend>) {
    loop {
        tokio::time::sleep(IDLE_SWEEP).await;
        let Some(b) = backend.upgrade() else { return };
        if b.sweep() == 0 {
            b.sweeping.store(false, SeqCst);
            // A connection put back since the sweep found the flag still set and started no
            // sweeper: go on for it, unless another one started meanwhile.
            if b.idle_count() == 0 || b.sweeping.swap(true, SeqCst) {
                return;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // An unreleased HTTP/1.1 connection is closed now: the exchange did not finish cleanly
        // (or its request body is still being written), so its state is unknown, and it must
        // not go on using the backend outside the slot it gives back.
        if let Some(Sender::H1(_, task)) = self.sender.take() {
            task.abort();
        }
        self.backend.in_flight.fetch_sub(1, Relaxed);
        drop(self.permit.take());
    }
}
