//! Listeners and connections: accept under the `max_connections` cap (further clients wait in
//! the kernel's backlog, as nginx's `worker_connections`), hand each connection to
//! `connection.rs` (TLS, HTTP/1.1 or HTTP/2, the header, idle and send timeouts), and drain
//! gracefully on shutdown: stop
//! accepting, let in-flight requests finish within the grace period, then drop what remains.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
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
use crate::listen::sockets::{self, Inherited, Listening, Role};
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
    /// A duplicate of every listening socket, for a successor; dropped at a handover.
    listening: Mutex<Vec<Listening>>,
}

/// Binds every listener (and the admin listener) and starts serving: `server.workers` worker
/// threads (default: one per core) accept and serve; the admin listener and health checks run
/// on the caller's runtime.
pub async fn start(config: Config) -> io::Result<ServerHandle> {
    start_with(config, Inherited::default()).await
}

/// As [`start`], listening on the `inherited` sockets where they match a listener (see
/// [`Inherited::take`]) and binding the others; inherited sockets that match nothing are
/// closed.
pub async fn start_with(config: Config, mut inherited: Inherited) -> io::Result<ServerHandle> {
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
    // bind. Work stealing: one socket per listener, accepted on the shared runtime. Inherited
    // sockets are all accepted on, however many workers there are.
    let socket_sets = if per_core { workers } else { 1 };
    let mut sets: Vec<Vec<(std::net::TcpListener, Arc<ListenerMode>)>> =
        (0..socket_sets).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    let mut listening = Vec::new();
    // Whether each listener's sockets were inherited or bound, for its log line.
    let mut bound = Vec::new();
    let mut tls_listeners = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let tls = match &l.tls {
            Some(t) => {
                let tl = Arc::new(TlsListener::new(t, l.http2).map_err(io::Error::other)?);
                tl.watch(shared.stopped.clone());
                tls_listeners.push(tl.clone());
                Some(tl)
            }
            None => None,
        };
        let mode = Arc::new(ListenerMode {
            tls,
            h2c: l.http2 && l.tls.is_none(),
            redirect_https: l.redirect_https,
        });
        let taken = inherited.take(Role::Listener(i), l.address);
        let from = if taken.is_empty() {
            "bound"
        } else {
            "inherited"
        };
        let sockets = sockets::for_listener(l.address, socket_sets, taken)?;
        let addr = sockets[0].local_addr()?;
        for (j, socket) in sockets.into_iter().enumerate() {
            listening.push(Listening {
                role: Role::Listener(i),
                configured: l.address,
                socket: socket.try_clone()?,
            });
            sets[j % socket_sets].push((socket, mode.clone()));
        }
        addrs.push(addr);
        bound.push(from);
    }
    let mut threads = Vec::new();
    if per_core {
        // `max_connections` is split evenly among workers (as nginx's worker_connections): a
        // worker stops accepting when its share is in use, and its clients wait in the backlog.
        let share = config.limits.max_connections.div_ceil(workers).max(1);
        for (i, sockets) in sets.into_iter().enumerate() {
            let shared = shared.clone();
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
                        run_runtime(rt, sockets, shared, limit, tracker)
                    })?,
            );
        }
    } else {
        let shared = shared.clone();
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
                    run_runtime(rt, sockets, shared, limit, tracker)
                })?,
        );
    }
    let admin_addr = match &config.admin {
        Some(a) => {
            let socket = sockets::for_side(a.address, inherited.take(Role::Admin, a.address))?;
            listening.push(Listening {
                role: Role::Admin,
                configured: a.address,
                socket: socket.try_clone()?,
            });
            let listener = TcpListener::from_std(socket)?;
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
            let address = c.peering_address;
            let socket = sockets::for_side(address, inherited.take(Role::Peer, address))?;
            listening.push(Listening {
                role: Role::Peer,
                configured: address,
                socket: socket.try_clone()?,
            });
            let listener = TcpListener::from_std(socket)?;
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
    inherited.close_rest();
    // Once every listener, the admin and peer ones included, is bound: a watcher of the log
    // (tests, scripts) that saw these lines finds the others already there.
    for (addr, from) in addrs.iter().zip(bound) {
        tracing::info!(address = %addr, workers, work_stealing = !per_core, socket = from, "kura listening");
    }
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
        listening: Mutex::new(listening),
    })
}

/// Runs accept loops for `sockets` on `rt` until the server is stopped.
fn run_runtime(
    rt: io::Result<tokio::runtime::Runtime>,
    sockets: Vec<(std::net::TcpListener, Arc<ListenerMode>)>,
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
        for (socket, mode) in sockets {
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

    /// Duplicates of every socket the server listens on (client listeners, one per worker when
    /// thread-per-core, then the admin and peer listeners), to hand to a successor. Empty
    /// after [`ServerHandle::begin_handover`].
    pub fn listening_sockets(&self) -> io::Result<Vec<Listening>> {
        let listening = self.listening.lock().unwrap_or_else(|p| p.into_inner());
        listening
            .iter()
            .map(|l| {
                Ok(Listening {
                    role: l.role,
                    configured: l.configured,
                    socket: l.socket.try_clone()?,
                })
            })
            .collect()
    }

    /// A successor serves on the same sockets: stop accepting (the successor accepts what
    /// waits in the queues) and start draining. Unlike a shutdown's drain, an idle HTTP/1
    /// connection is not closed (a request may be on its way, and would fail): it stays open
    /// until its next response, which says `Connection: close`, or until the grace period
    /// ends; HTTP/2 connections get a GOAWAY. Finish with [`ServerHandle::shutdown`].
    pub fn begin_handover(&self) {
        self.shared.handed_over.store(true, Ordering::Relaxed);
        self.shared.shutdown.cancel();
        self.listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Stops accepting, waits up to the grace period for in-flight requests, then drops the
    /// remaining connections.
    pub async fn shutdown(mut self) {
        tracing::info!(grace = ?self.grace, "shutting down: draining connections");
        self.shared.shutdown.cancel();
        // The duplicates too: once the accept loops let go, new clients are refused instead of
        // waiting in a queue nobody accepts from.
        self.listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
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
