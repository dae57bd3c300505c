//! Listeners and connections: accept under the `max_connections` cap (further clients wait in
//! the kernel's backlog, as nginx's `worker_connections`), hand each connection to
//! `connection.rs` (TLS, HTTP/1.1 or HTTP/2, the header, idle and send timeouts), and drain
//! gracefully on shutdown: stop
//! accepting, let in-flight requests finish within the grace period, then drop what remains.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kura_config::Config;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::control::access_log::AccessLog;
use crate::control::admin;
use crate::control::metrics::Metrics;
use crate::control::reload::Reloader;
use crate::listen::connection::{self, ListenerMode};
use crate::listen::tls::TlsListener;
use crate::state::ReloadHook;
use crate::state::Shared;

/// A running server. Call [`ServerHandle::shutdown`] to drain it; dropping the handle stops
/// it at once.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    /// The configuration the server started with: what a reload cannot change is compared
    /// with it.
    started: Arc<Config>,
    tls: Vec<Arc<TlsListener>>,
    grace: Duration,
    tracker: TaskTracker,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Binds every listener (and the admin listener) and starts serving: `server.workers` worker
/// threads (default: one per core) accept and serve; the admin listener and health checks run
/// on the caller's runtime.
pub async fn start(config: Config) -> io::Result<ServerHandle> {
    let workers = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let metrics = Arc::new(Metrics::new());
    let access_log = match &config.access_log {
        Some(cfg) => Some(Arc::new(AccessLog::start(
            cfg,
            metrics.access_log_dropped.clone(),
        )?)),
        None => None,
    };
    let cache = kura_cache::Cache::open(&config.cache).await?;
    metrics.register_cache(cache.clone());
    let shadow = kura_shadow::Shadow::start(&config.shadow)?;
    metrics.register_shadow(shadow.clone());
    let cluster = match &config.cluster {
        Some(c) => Some(
            kura_cluster::Cluster::start(c, config.cache.segment_size).map_err(io::Error::other)?,
        ),
        None => None,
    };
    if let Some(c) = &cluster {
        metrics.register_cluster(c.clone());
    }
    let shared = Arc::new(Shared::new(
        &config, metrics, access_log, workers, cache, shadow, cluster,
    ));
    let tracker = TaskTracker::new();
    let per_core = !config.server.work_stealing;
    // Thread-per-core: one socket per listener per worker, all on the same port
    // (SO_REUSEPORT), the kernel spreading new connections; port 0 is resolved by the first
    // bind. Work stealing: one socket per listener, accepted on the shared runtime.
    let socket_sets = if per_core { workers } else { 1 };
    let mut sets: Vec<Vec<std::net::TcpListener>> = (0..socket_sets).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    let mut modes = Vec::new();
    let mut tls_listeners = Vec::new();
    for l in &config.listeners {
        let tls = match &l.tls {
            Some(t) => {
                let tl = Arc::new(TlsListener::new(t, l.http2).map_err(io::Error::other)?);
                tl.watch(shared.stopped.clone());
                tls_listeners.push(tl.clone());
                Some(tl)
            }
            None => None,
        };
        modes.push(Arc::new(ListenerMode {
            tls,
            h2c: l.http2 && l.tls.is_none(),
            redirect_https: l.redirect_https,
        }));
        // One socket per worker runtime: with several, they share the port (SO_REUSEPORT),
        // after a check that no other process holds it (it would share the traffic).
        let shared = sets.len() > 1;
        if shared && l.address.port() != 0 {
            drop(bind(l.address, false)?);
        }
        let first = bind(l.address, shared)?;
        let addr = first.local_addr()?;
        sets[0].push(first);
        for sockets in sets.iter_mut().skip(1) {
            sockets.push(bind(addr, true)?);
        }
        addrs.push(addr);
        tracing::info!(address = %addr, workers, work_stealing = !per_core, "kura listening");
    }
    let mut threads = Vec::new();
    if per_core {
        // `max_connections` is split evenly among workers (as nginx's worker_connections): a
        // worker stops accepting when its share is in use, and its clients wait in the backlog.
        let share = config.limits.max_connections.div_ceil(workers).max(1);
        for (i, sockets) in sets.into_iter().enumerate() {
            let shared = shared.clone();
            let modes = modes.clone();
            let limit = Arc::new(Semaphore::new(share));
            let tracker = tracker.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("kura-worker-{}", i + 1))
                    .spawn(move || {
                        crate::listen::worker::set_slot(i + 1);
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build();
                        run_runtime(rt, sockets, modes, shared, limit, tracker)
                    })?,
            );
        }
    } else {
        let shared = shared.clone();
        let modes = modes.clone();
        let limit = Arc::new(Semaphore::new(config.limits.max_connections));
        let tracker = tracker.clone();
        let sockets = sets.pop().unwrap_or_default();
        threads.push(
            std::thread::Builder::new()
                .name("kura-workers".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .thread_name("kura-worker")
                        // Every worker shares one idle-connection slot.
                        .on_thread_start(|| crate::listen::worker::set_slot(1))
                        .enable_all()
                        .build();
                    run_runtime(rt, sockets, modes, shared, limit, tracker)
                })?,
        );
    }
    let admin_addr = match &config.admin {
        Some(a) => {
            let listener = TcpListener::from_std(bind(a.address, false)?)?;
            let addr = listener.local_addr()?;
            tracker.spawn(admin::serve(
                listener,
                shared.clone(),
                tracker.clone(),
                a.clone(),
            ));
            tracing::info!(address = %addr, "admin listening");
            Some(addr)
        }
        None => None,
    };
    let peer_addr = match &config.cluster {
        Some(c) => {
            let listener = TcpListener::from_std(bind(c.peering_address, false)?)?;
            let addr = listener.local_addr()?;
            let tls = match &c.tls {
                Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                    kura_cluster::tls::server_config(t).map_err(io::Error::other)?,
                )),
                None => None,
            };
            tracker.spawn(crate::control::peer::serve(
                listener,
                shared.clone(),
                tracker.clone(),
                c.max_connections,
                tls,
            ));
            tracing::info!(address = %addr, "peer listener for the cluster");
            Some(addr)
        }
        None => None,
    };
    // Store-fed routes start once every listener is bound: their backends are checked
    // against kura's own addresses.
    let mut own: Vec<SocketAddr> = addrs.clone();
    own.extend(admin_addr);
    own.extend(peer_addr);
    if let Ok(mut o) = shared.metrics.own_listeners.write() {
        *o = own.clone();
    }
    let _ = shared.own_addrs.set(own);
    if let Some(redis) = &config.redis {
        crate::control::redis_routes::spawn(redis.clone(), shared.clone(), &tracker)
            .map_err(io::Error::other)?;
    }
    Ok(ServerHandle {
        peer_addr,
        shared,
        addrs,
        admin_addr,
        tls: tls_listeners,
        grace: config.server.shutdown_grace,
        started: Arc::new(config),
        tracker,
        threads,
    })
}

/// A listening socket on `addr`; `reuse_port` lets this process's other workers bind it too.
fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Runs accept loops for `sockets` on `rt` until the server is stopped.
fn run_runtime(
    rt: io::Result<tokio::runtime::Runtime>,
    sockets: Vec<std::net::TcpListener>,
    modes: Vec<Arc<ListenerMode>>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime not started");
            return;
        }
    };
    rt.block_on(async move {
        for (socket, mode) in sockets.into_iter().zip(modes) {
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    tracker.spawn(accept_loop(
                        listener,
                        mode,
                        shared.clone(),
                        limit.clone(),
                        tracker.clone(),
                    ));
                }
                Err(e) => tracing::error!(error = %e, "listener not registered"),
            }
        }
        shared.stopped.cancelled().await;
    });
}

impl ServerHandle {
    /// Addresses the listeners are bound to, in configuration order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The cluster's peer listener, when `[cluster]` is configured.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The server's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The cache shared by `cache` and `resize` rules.
    pub fn cache(&self) -> Arc<kura_cache::Cache> {
        self.shared.cache.clone()
    }

    /// Swaps in the routes, pools, limits and error pages of `config`; see [`Reloader::apply`].
    pub fn reload(&self, config: &Config) -> Result<Vec<String>, crate::state::ReloadError> {
        self.reloader().apply(config)
    }

    /// A handle that reloads this server, for signal handlers, file watchers and hooks. It does
    /// not keep the server alive.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(
            Arc::downgrade(&self.shared),
            self.started.clone(),
            self.tls.clone(),
        )
    }

    /// What `POST /reload` on the admin listener runs. Only the first hook set is kept.
    pub fn set_reload_hook(&self, hook: ReloadHook) {
        let _ = self.shared.reload_hook.set(hook);
    }

    /// Reopens the access log file (SIGUSR1).
    pub fn reopen_access_log(&self) {
        if let Some(log) = &self.shared.access_log {
            log.reopen();
        }
    }

    /// Stops accepting, waits up to the grace period for in-flight requests, then drops the
    /// remaining connections.
    pub async fn shutdown(mut self) {
        tracing::info!(grace = ?self.grace, "shutting down: draining connections");
        self.shared.shutdown.cancel();
        if let Some(c) = &self.shared.cluster {
            c.stop();
        }
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: closing remaining connections");
            self.shared.force.cancel();
            self.tracker.wait().await;
        }
        if let Some(log) = &self.shared.access_log {
            log.flush(Duration::from_secs(5));
        }
        self.shared.stopped.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        tracing::info!("shutdown complete");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Without a graceful shutdown, stop everything now (worker threads included).
        if let Some(c) = &self.shared.cluster {
            c.stop();
        }
        self.shared.shutdown.cancel();
        self.shared.force.cancel();
        self.shared.stopped.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    mode: Arc<ListenerMode>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        tracker.spawn(connection::serve(
            shared.clone(),
            mode.clone(),
            stream,
            peer,
            permit,
        ));
    }
}
