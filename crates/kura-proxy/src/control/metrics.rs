//! Prometheus metrics for one server instance. A registry per instance (not the global one) so
//! that several servers in one test process do not share counters. Label values are bounded:
//! vhost names come from the route table, never from a client's Host header.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Names used when a request matched no vhost.
pub const UNMATCHED_VHOST: &str = "_unmatched";

pub struct Metrics {
    pub registry: Registry,
    /// Not a metric: the addresses this server listens on, read by every backend connection
    /// of this server (the metrics registry is the one per-server value every pool already
    /// holds). See [`Metrics::reaches_own_listener`].
    pub own_listeners: std::sync::RwLock<Vec<std::net::SocketAddr>>,
    /// Requests answered, by vhost name and status code.
    pub requests: IntCounterVec,
    /// Seconds from request head to the last body byte sent, by vhost.
    pub request_duration: HistogramVec,
    /// Requests sent to a backend (attempts, including retries).
    pub upstream_requests: IntCounterVec,
    /// Failed upstream attempts by kind (connect, timeout, status, reset...).
    pub upstream_errors: IntCounterVec,
    /// 1 when a backend is in rotation, 0 while marked dead or failing health checks.
    pub backend_up: IntGaugeVec,
    /// Backends marked dead by passive health.
    pub backend_marked_dead: IntCounterVec,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Client connections accepted.
    pub connections_total: IntCounter,
    /// Connections closed by the header or idle timeout.
    pub connection_timeouts: IntCounterVec,
    /// TLS connections that failed before a request, by kind (handshake, plain_http, ...).
    pub tls_handshake_errors: IntCounterVec,
    /// Upgraded (WebSocket) connections open now.
    pub upgraded_connections: IntGauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Configuration reloads by result (ok, error).
    pub config_reloads: IntCounterVec,
    /// Image transforms by result (ok, bad_source, unsupported, busy, timeout, error).
    pub image_transforms: IntCounterVec,
    /// Seconds per successful image transform (decode, resize, encode).
    pub image_transform_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("kura".into()), None).expect("static prefix");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by vhost and status"),
            &["vhost", "status"],
        )
        .expect("static metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request head to last response byte, by vhost",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["vhost"],
        )
        .expect("static metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new("upstream_requests_total", "Attempts sent to backends"),
            &["pool", "backend"],
        )
        .expect("static metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new("upstream_errors_total", "Failed upstream attempts, by kind"),
            &["pool", "backend", "kind"],
        )
        .expect("static metric");
        let backend_up = IntGaugeVec::new(
            Opts::new("backend_up", "1 if the backend is in rotation"),
            &["pool", "backend"],
        )
        .expect("static metric");
        let backend_marked_dead = IntCounterVec::new(
            Opts::new(
                "backend_marked_dead_total",
                "Times a backend was marked dead",
            ),
            &["pool", "backend"],
        )
        .expect("static metric");
        let connections = IntGauge::new("connections", "Client connections open").expect("m");
        let connections_total =
            IntCounter::new("connections_total", "Client connections accepted").expect("m");
        let connection_timeouts = IntCounterVec::new(
            Opts::new(
                "connection_timeouts_total",
                "Client connections closed by a timeout",
            ),
            &["kind"],
        )
        .expect("static metric");
        let tls_handshake_errors = IntCounterVec::new(
            Opts::new(
                "tls_handshake_errors_total",
                "TLS connections that failed before a request, by kind",
            ),
            &["kind"],
        )
        .expect("static metric");
        let upgraded_connections = IntGauge::new(
            "upgraded_connections",
            "Upgraded (WebSocket) connections open now",
        )
        .expect("static metric");
        let access_log_dropped = IntCounter::new(
            "access_log_dropped_total",
            "Access log lines dropped because the writer fell behind",
        )
        .expect("m");
        let config_reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Configuration reloads by result"),
            &["result"],
        )
        .expect("static metric");
        let image_transforms = IntCounterVec::new(
            Opts::new("image_transforms_total", "Image transforms by result"),
            &["result"],
        )
        .expect("static metric");
        let image_transform_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "image_transform_seconds",
                "Time of successful image transforms (decode, resize, encode)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("static metric");
        for c in [
            Box::new(image_transforms.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(image_transform_seconds.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(backend_up.clone()),
            Box::new(backend_marked_dead.clone()),
            Box::new(connections.clone()),
            Box::new(connections_total.clone()),
            Box::new(connection_timeouts.clone()),
            Box::new(tls_handshake_errors.clone()),
            Box::new(upgraded_connections.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(config_reloads.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            own_listeners: std::sync::RwLock::new(Vec::new()),
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_errors,
            backend_up,
            backend_marked_dead,
            connections,
            connections_total,
            connection_timeouts,
            tls_handshake_errors,
            upgraded_connections,
            access_log_dropped,
            config_reloads,
            image_transforms,
            image_transform_seconds,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Metrics {
    /// Whether a connection from `local` to `peer` reached one of this server's listeners: the
    /// same port, and the listener's address, or (for a listener on all interfaces) an address
    /// of this host (loopback, or the connection's own local address). Backend connections
    /// check it, so no spelling of an address (`127.1`, a decimal IP, a name resolving to this
    /// host) reaches the admin API, the peer protocol or kura itself.
    pub fn reaches_own_listener(
        &self,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    ) -> bool {
        let Ok(own) = self.own_listeners.read() else {
            return false;
        };
        let p = peer.ip().to_canonical();
        own.iter().any(|o| {
            o.port() == peer.port()
                && (o.ip().to_canonical() == p
                    || (o.ip().is_unspecified()
                        && (p.is_loopback() || p == local.ip().to_canonical())))
        })
    }
}

/// The `kind` label values of `kura_upstream_errors_total`.
pub const UPSTREAM_ERROR_KINDS: &[&str] =
    &["connect", "connect_timeout", "reset", "status", "timeout"];

impl Metrics {
    /// Drops the series of a backend that left the routes (a Redis frontend removed, an image
    /// source pool evicted), so series do not pile up with churn.
    pub fn forget_backend(&self, pool: &str, backend: &str) {
        let _ = self.upstream_requests.remove_label_values(&[pool, backend]);
        let _ = self.backend_up.remove_label_values(&[pool, backend]);
        let _ = self
            .backend_marked_dead
            .remove_label_values(&[pool, backend]);
        for kind in UPSTREAM_ERROR_KINDS {
            let _ = self
                .upstream_errors
                .remove_label_values(&[pool, backend, kind]);
        }
    }

    /// Exposes the cache's counters (read at scrape time).
    pub fn register_cache(&self, cache: Arc<kura_cache::Cache>) {
        if let Err(e) = self.registry.register(Box::new(CacheCollector::new(cache))) {
            tracing::warn!(error = %e, "cache metrics not registered");
        }
    }
}

/// Prometheus view of [`kura_cache::StatsSnapshot`].
struct CacheCollector {
    cache: Arc<kura_cache::Cache>,
    descs: Vec<prometheus::core::Desc>,
}

/// (name, help) of each cache counter, in the order `cache_values` returns them.
const CACHE_COUNTERS: [(&str, &str); 15] = [
    ("cache_misses_total", "Requests the cache did not have"),
    ("cache_stored_total", "Responses stored"),
    ("cache_passes_total", "Responses forwarded without storing"),
    (
        "cache_passes_remembered_total",
        "Passes made at once because an earlier answer for the key could not be stored",
    ),
    (
        "cache_revalidations_total",
        "Stored responses revalidated with a 304",
    ),
    (
        "cache_stale_served_total",
        "Stale responses served (while revalidating or on error)",
    ),
    (
        "cache_coalesced_total",
        "Requests that waited for another request's fetch",
    ),
    (
        "cache_origin_fetches_total",
        "Requests and segment fetches sent to origins",
    ),
    (
        "cache_origin_bytes_total",
        "Body bytes received from origins by cache fills",
    ),
    (
        "cache_segments_stored_total",
        "Segments kept in at least one tier (memory or disk)",
    ),
    (
        "cache_corrupt_total",
        "Corrupt or torn entries found on disk and dropped",
    ),
    (
        "cache_disk_evictions_total",
        "Objects removed from disk by cleaning",
    ),
    (
        "cache_invalidations_total",
        "Invalidations after unsafe methods and purges",
    ),
    (
        "cache_disk_write_drops_total",
        "Disk writes dropped because the disk writer's queue was full",
    ),
    (
        "cache_bodies_cut_total",
        "Answers whose body kura ended early after sending the head",
    ),
];

fn cache_values(s: &kura_cache::StatsSnapshot) -> [u64; 15] {
    [
        s.misses,
        s.stored,
        s.passes,
        s.passes_remembered,
        s.revalidated,
        s.stale_served,
        s.coalesced,
        s.origin_fetches,
        s.origin_bytes,
        s.segments_stored,
        s.corrupt,
        s.disk_evictions,
        s.invalidations,
        s.disk_write_drops,
        s.bodies_cut,
    ]
}

impl CacheCollector {
    fn new(cache: Arc<kura_cache::Cache>) -> Self {
        let mut descs = Vec::new();
        for m in Self::build(&kura_cache::StatsSnapshot::default(), cache.capacity()) {
            descs.extend(m.desc().into_iter().cloned());
        }
        CacheCollector { cache, descs }
    }

    fn build(
        s: &kura_cache::StatsSnapshot,
        capacity: kura_cache::Capacity,
    ) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut out: Vec<Box<dyn prometheus::core::Collector>> = Vec::new();
        let hits = IntCounterVec::new(
            Opts::new(
                "cache_hits_total",
                "Requests answered from the cache, by tier",
            ),
            &["tier"],
        )
        .expect("static metric");
        hits.with_label_values(&["memory"]).inc_by(s.hits_memory);
        hits.with_label_values(&["disk"]).inc_by(s.hits_disk);
        hits.with_label_values(&["other"]).inc_by(s.hits_other);
        out.push(Box::new(hits));
        for ((name, help), v) in CACHE_COUNTERS.iter().zip(cache_values(s)) {
            let c = IntCounter::new(*name, *help).expect("static metric");
            c.inc_by(v);
            out.push(Box::new(c));
        }
        for (name, help, v) in [
            (
                "cache_memory_bytes",
                "Bytes in the memory tier",
                s.memory_bytes,
            ),
            ("cache_disk_bytes", "Bytes in the disk tier", s.disk_bytes),
        ] {
            let g = IntGauge::new(name, help).expect("static metric");
            g.set(v as i64);
            out.push(Box::new(g));
        }
        // The configured sizes, for ratios and alerts (only for the tiers that exist).
        for (name, help, v) in [
            (
                "cache_memory_max_bytes",
                "The memory tier's size (cache.memory)",
                capacity.memory_max_bytes,
            ),
            (
                "cache_disk_max_bytes",
                "Disk usage above which cleaning starts (cache.max_disk)",
                capacity.disk_max_bytes,
            ),
            (
                "cache_disk_cleaned_bytes",
                "Disk usage cleaning goes down to (cache.cleaned_disk)",
                capacity.disk_cleaned_bytes,
            ),
        ] {
            if let Some(v) = v {
                let g = IntGauge::new(name, help).expect("static metric");
                g.set(i64::try_from(v).unwrap_or(i64::MAX));
                out.push(Box::new(g));
            }
        }
        out
    }
}

impl prometheus::core::Collector for CacheCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let s = self.cache.stats();
        Self::build(&s, self.cache.capacity())
            .iter()
            .flat_map(|m| m.collect())
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Drops a vhost's request series (every status and its latency histogram): its frontend
    /// left the routes.
    pub fn forget_vhost(&self, name: &str) {
        for code in 100u16..=999 {
            if let Ok(status) = StatusCode::from_u16(code) {
                let _ = self.requests.remove_label_values(&[name, status.as_str()]);
            }
        }
        let _ = self.request_duration.remove_label_values(&[name]);
    }
}

/// Statuses whose per-vhost counters are kept resolved (others go through the label lookup).
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 413, 500, 502, 503, 504,
];

/// A vhost's request counters and latency histogram, resolved once and then updated without
/// hashing label values on every request.
pub struct VHostCounters {
    pub name: Arc<str>,
    duration: OnceLock<Histogram>,
    statuses: [OnceLock<IntCounter>; COMMON_STATUSES.len()],
}

impl VHostCounters {
    pub fn new(name: Arc<str>) -> Self {
        VHostCounters {
            name,
            duration: OnceLock::new(),
            statuses: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub fn record(&self, metrics: &Metrics, status: StatusCode, seconds: f64) {
        let name: &str = &self.name;
        match COMMON_STATUSES.iter().position(|s| *s == status.as_u16()) {
            Some(i) => self.statuses[i]
                .get_or_init(|| metrics.requests.with_label_values(&[name, status.as_str()]))
                .inc(),
            None => metrics
                .requests
                .with_label_values(&[name, status.as_str()])
                .inc(),
        }
        self.duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[name]))
            .observe(seconds);
    }
}
