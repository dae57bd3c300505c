//! Shared server state. [`Runtime`] is the immutable snapshot the request path reads (route
//! table, limits, error pages), swapped whole through an `ArcSwap` on reload; a request holds
//! the snapshot it started with until it ends. Pools survive a reload when their definition is
//! unchanged, so keep-alive connections and health marks are not lost to an unrelated edit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use http::HeaderValue;
use kura_config::{Config, Limits, Routes};
use tokio_util::sync::CancellationToken;

use crate::action::upgrade::Tunnels;
use crate::control::access_log::AccessLog;
use crate::control::metrics::{Metrics, UNMATCHED_VHOST, VHostCounters};
use crate::errors::ErrorPages;
use crate::route::table::{BuildError, HostMap, Parts, RouteTable};
use crate::upstream::Pool;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// One line: what is now running.
    pub summary: String,
    /// Fields changed in the file that only a restart applies.
    pub needs_restart: Vec<String>,
}

/// Reloads the configuration; `Ok` says what changed, `Err` why the old one is kept. Set by
/// the binary, which knows the configuration file.
pub type ReloadHook = Arc<dyn Fn() -> Result<ReloadReport, ReloadError> + Send + Sync>;

impl From<BuildError> for ReloadError {
    fn from(e: BuildError) -> Self {
        ReloadError::Build(e)
    }
}

/// Why a reload kept the running configuration. Like kura's other error types, its message
/// includes its cause's, and the cause is a field rather than a `source()` (printing the chain
/// would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not validate (each field's error is in [`kura_config::ConfigError`]).
    #[error(transparent)]
    Invalid(#[from] kura_config::ConfigError),
    /// The routes validated but their table could not be built.
    #[error("route table not built: {0}")]
    Build(BuildError),
    /// A listener's certificate files changed into a set that cannot be used (the previous
    /// certificates stay).
    #[error("TLS certificates not reloaded: {0}")]
    Tls(crate::listen::tls::TlsError),
    /// The server the reloader belonged to has stopped.
    #[error("the server has stopped")]
    Stopped,
}

/// What a request reads: one consistent version of everything reloadable.
pub struct Runtime {
    pub table: RouteTable,
    pub limits: Limits,
    pub pages: ErrorPages,
    /// `Via` values for HTTP/1.0 and HTTP/1.1 messages.
    pub via_10: HeaderValue,
    pub via_11: HeaderValue,
    /// Counts reloads; 1 for the first table.
    pub generation: u64,
    /// Client networks allowed to send PURGE.
    pub purge_allow: Vec<ipnet::IpNet>,
    /// Peers whose forwarding headers are believed (`server.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Runtime {
    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    /// Frontends from Redis, swapped by the Redis source on its own (empty without one).
    pub dynamic: ArcSwap<HostMap>,
    pub metrics: Arc<Metrics>,
    pub access_log: Option<Arc<AccessLog>>,
    /// Pools by name, reused across reloads when unchanged.
    pools: Mutex<BTreeMap<String, Arc<Pool>>>,
    /// Cancelled to begin a graceful shutdown.
    pub shutdown: CancellationToken,
    /// Cancelled when the grace period is over: remaining connections are dropped.
    pub force: CancellationToken,
    /// What `POST /reload` on the admin listener runs.
    pub reload_hook: OnceLock<ReloadHook>,
    /// Cancelled once shutdown is complete: worker runtimes stop.
    pub stopped: CancellationToken,
    /// Set when a successor took the listening sockets over: the drain keeps idle HTTP/1
    /// connections open until their next response (`ServerHandle::begin_handover`).
    pub handed_over: std::sync::atomic::AtomicBool,
    /// Worker threads + 1 (the control runtime): idle-connection slots per backend.
    pub slots: usize,
    /// Counters for requests that matched no vhost.
    pub unmatched: Arc<VHostCounters>,
    /// The cache shared by every `cache` and `resize` rule (its storage settings need a
    /// restart).
    pub cache: Arc<kura_cache::Cache>,
    /// The shadow engine shared by every rule with a `shadow` table (its settings need a
    /// restart).
    pub shadow: Arc<kura_shadow::Shadow>,
    /// Cluster membership and the peer tier, when `[cluster]` is configured (restart to change).
    pub cluster: Option<Arc<kura_cluster::Cluster>>,
    /// Slots for upgraded connections (`limits.max_upgraded`, restart to change).
    pub tunnels: Tunnels,
    /// Every address kura listens on (client, admin, peer listeners), once bound: store-fed
    /// backends may not point there.
    pub own_addrs: OnceLock<Vec<std::net::SocketAddr>>,
    /// The Redis route source's state (connected, frontends, errors), set when it starts: the
    /// admin API's `/status` reads it.
    pub(crate) redis: OnceLock<Arc<crate::control::redis_routes::RedisMetrics>>,
    /// When this server started (`/status`: start time and uptime).
    pub started: std::time::SystemTime,
}

/// Whether `b` is one of kura's own listeners `own`: the same port, and the same address, a
/// loopback one, or any address when the listener is bound to all interfaces. A name other
/// than `localhost` is not resolved here.
pub fn is_own(b: &kura_config::BackendSpec, own: &[std::net::SocketAddr]) -> bool {
    let ip = match b.pinned {
        Some(a) => Some(a.ip()),
        None if b.host == "localhost" => Some(std::net::IpAddr::from([127, 0, 0, 1])),
        None => b.host.parse::<std::net::IpAddr>().ok(),
    };
    let Some(ip) = ip.map(|i| i.to_canonical()) else {
        return false;
    };
    own.iter().any(|o| {
        o.port() == b.port
            && (o.ip().to_canonical() == ip
                || ip.is_loopback()
                || ip.is_unspecified()
                || o.ip().is_unspecified())
    })
}

impl Shared {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        access_log: Option<Arc<AccessLog>>,
        workers: usize,
        cache: Arc<kura_cache::Cache>,
        shadow: Arc<kura_shadow::Shadow>,
        cluster: Option<Arc<kura_cluster::Cluster>>,
    ) -> Self {
        let force = CancellationToken::new();
        let tunnels = Tunnels::new(
            config.limits.max_upgraded,
            metrics.upgraded_connections.clone(),
            force.clone(),
        );
        let shared = Shared {
            runtime: ArcSwap::from_pointee(Runtime {
                table: RouteTable::default(),
                limits: config.limits.clone(),
                pages: ErrorPages::new(&config.error_pages),
                via_10: HeaderValue::from_static("1.0 kura"),
                via_11: HeaderValue::from_static("1.1 kura"),
                generation: 0,
                purge_allow: Vec::new(),
                trusted_proxies: Vec::new(),
            }),
            dynamic: ArcSwap::from_pointee(HostMap::default()),
            metrics,
            access_log,
            pools: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            force,
            reload_hook: OnceLock::new(),
            stopped: CancellationToken::new(),
            handed_over: std::sync::atomic::AtomicBool::new(false),
            slots: workers + 1,
            unmatched: Arc::new(VHostCounters::new(UNMATCHED_VHOST.into())),
            cache,
            shadow,
            cluster,
            tunnels,
            own_addrs: OnceLock::new(),
            redis: OnceLock::new(),
            started: std::time::SystemTime::now(),
        };
        if let Err(e) = shared.apply(config) {
            tracing::error!(error = %e, "route table not built");
        }
        shared
    }

    /// Builds a snapshot from `config` and swaps it in; `Err` (and the running snapshot
    /// kept) when the route table cannot be built.
    pub fn apply(&self, config: &Config) -> Result<(), BuildError> {
        let pools = self.pools_for(&config.routes);
        let parts = Parts {
            cache: &self.cache,
            shadow: self.shadow.settings(),
            cluster: self.cluster.as_ref(),
            metrics: &self.metrics,
        };
        let table = RouteTable::build(&config.routes, &pools, &parts)?;
        self.keep_pools(pools);
        let via = |v: &str| {
            HeaderValue::from_str(&format!("{v} {}", config.server.via))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 kura"))
        };
        let generation = self.runtime.load().generation + 1;
        self.runtime.store(Arc::new(Runtime {
            table,
            limits: config.limits.clone(),
            pages: ErrorPages::new(&config.error_pages),
            via_10: via("1.0"),
            via_11: via("1.1"),
            generation,
            purge_allow: config.cache.purge_allow.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
        }));
        Ok(())
    }

    /// Pools for `routes`, reusing the running pool of each unchanged definition (the
    /// registry is replaced by [`Shared::keep_pools`] once their table is built).
    fn pools_for(&self, routes: &Routes) -> BTreeMap<String, Arc<Pool>> {
        let registry = self.registry();
        let mut next = BTreeMap::new();
        for (name, spec) in &routes.pools {
            let pool = match registry.get(name) {
                Some(p) if p.spec == *spec => p.clone(),
                _ => Pool::new(spec.clone(), self.metrics.clone(), self.slots),
            };
            next.insert(name.clone(), pool);
        }
        next
    }

    /// Makes `pools` the running set (a failed build leaves the previous one in place).
    fn keep_pools(&self, pools: BTreeMap<String, Arc<Pool>>) {
        *self.registry() = pools;
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Pool>>> {
        match self.pools.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
