//! One backend: its keep-alive connections, its connection cap, and its health marks.
//!
//! Connections are hyper HTTP/1 client connections kept on a LIFO idle stack (the warmest is
//! reused first; the oldest expire). A [`Lease`] holds one connection and one permit of the
//! backend's semaphore for the life of one exchange and gives the connection back only once the
//! response body has been read to its end, so a connection is never shared mid-body and the
//! number of open connections never exceeds `max_connections_per_backend`. hyper-util's pooled
//! client has no such cap and spawns a task per request to watch readiness; this does neither.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use kura_config::{BackendSpec, PoolSpec};
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::ReqBody;
use crate::clock::{ms, now_ms};
use crate::errors::ProxyError;
use crate::metrics::Metrics;

struct IdleConn {
    sender: SendRequest<ReqBody>,
    since_ms: u64,
}

/// A backend of a pool, with its runtime state.
pub struct Backend {
    pub spec: BackendSpec,
    pool_name: Arc<str>,
    /// Set when the host is an IP literal: no resolver call per connection.
    addr: Option<SocketAddr>,
    /// Idle connections per worker slot (see `crate::worker`).
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
    requests: IntCounter,
    metrics: Arc<Metrics>,
}

impl Backend {
    pub fn new(spec: BackendSpec, pool: &PoolSpec, metrics: Arc<Metrics>, slots: usize) -> Self {
        let addr = spec
            .host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, spec.port));
        let requests = metrics
            .upstream_requests
            .with_label_values(&[pool.name.as_str(), spec.url.as_str()]);
        Backend {
            pool_name: pool.name.as_str().into(),
            addr,
            idle: (0..slots.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            permits: Arc::new(Semaphore::new(pool.max_connections_per_backend)),
            in_flight: AtomicUsize::new(0),
            dead_until: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            active_down: AtomicBool::new(false),
            connects: AtomicU64::new(0),
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

    /// This worker's idle stack.
    fn idle_here(&self) -> &Mutex<Vec<IdleConn>> {
        &self.idle[crate::worker::slot() % self.idle.len()]
    }

    /// Records a failed exchange; after `max_fails` in a row the backend is dead for the TTL.
    pub fn record_failure(&self, pool: &PoolSpec, kind: &'static str) {
        self.metrics
            .upstream_errors
            .with_label_values(&[&self.pool_name, self.spec.url.as_str(), kind])
            .inc();
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
        for slot in self.idle.iter() {
            if let Ok(mut idle) = slot.lock() {
                idle.clear();
            }
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
        if let Some(sender) = self.take_idle(pool).await {
            lease.sender = Some(sender);
            lease.reused = true;
            return Ok(lease);
        }
        lease.sender = Some(self.connect(pool.connect_timeout).await?);
        Ok(lease)
    }

    async fn take_idle(&self, pool: &PoolSpec) -> Option<SendRequest<ReqBody>> {
        let oldest_ok = now_ms().saturating_sub(ms(pool.idle_timeout));
        loop {
            let conn = {
                let mut idle = self.idle_here().lock().ok()?;
                let conn = idle.pop()?;
                if conn.since_ms < oldest_ok {
                    // LIFO: everything below is older still.
                    idle.clear();
                    return None;
                }
                conn
            };
            let mut sender = conn.sender;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Opens a new connection (used directly when a reused one turned out stale).
    pub async fn connect(&self, timeout: Duration) -> Result<SendRequest<ReqBody>, ProxyError> {
        let connect = async {
            let stream = match self.addr {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((self.spec.host.as_str(), self.spec.port)).await,
            }
            .map_err(|e| ProxyError::Connect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ProxyError::Connect(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Ok(sender)
        };
        let sender = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ProxyError::Timeout)??;
        self.connects.fetch_add(1, Relaxed);
        Ok(sender)
    }

    pub fn count_request(&self) {
        self.requests.inc();
    }

    fn put_idle(&self, sender: SendRequest<ReqBody>, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle_here().lock()
            && idle.len() < max_idle
        {
            idle.push(IdleConn {
                sender,
                since_ms: now_ms(),
            });
        }
    }
}

/// One connection and one connection slot, held for one exchange.
pub struct Lease {
    sender: Option<SendRequest<ReqBody>>,
    pub backend: Arc<Backend>,
    permit: Option<OwnedSemaphorePermit>,
    /// The connection came from the idle stack (it may have been closed by the peer meanwhile).
    pub reused: bool,
    max_idle: usize,
}

impl Lease {
    pub fn sender(&mut self) -> &mut SendRequest<ReqBody> {
        self.sender
            .as_mut()
            .expect("a lease always holds a sender until released")
    }

    pub fn replace_sender(&mut self, sender: SendRequest<ReqBody>) {
        self.sender = Some(sender);
        self.reused = false;
    }

    /// The response body was read to its end: the connection can serve another exchange.
    pub fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            self.backend.put_idle(sender, self.max_idle);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Dropping an unreleased sender closes its connection: the exchange did not finish
        // cleanly and the connection's state is unknown.
        self.backend.in_flight.fetch_sub(1, Relaxed);
        drop(self.permit.take());
    }
}
