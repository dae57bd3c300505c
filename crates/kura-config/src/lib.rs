//! kura's configuration.
//!
//! An operator writes a TOML [`FileConfig`]; [`validate`] checks every field and produces a
//! typed [`Config`] in which every default is filled in and every reference (a rule's pool, a
//! template's capture) is known to resolve. A `Config` is plain data: the proxy compiles its
//! [`Routes`] into a runtime table and swaps it in atomically. Routes from Redis do not go
//! through [`Routes`]: from [`RedisConfig`] the proxy reads Hipache's frontends itself and
//! builds a host map of its own (each frontend one vhost proxying every path to a pool made
//! from `pool_template`), swapped on its own and looked up after the file's at each level.
//! Errors name the field (`pools.api.backends[1]`) so that `kura check` and a failed reload
//! can say exactly what is wrong.

#![deny(missing_docs)]

mod cache_config;
mod cluster_config;
mod defaults;
mod edge_config;
mod file;
mod image_config;
mod no_effect;
mod shadow_config;
pub mod target;
mod template;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use regex::Regex;

pub use defaults::*;
pub use edge_config::{PemError, read_certs, read_key};
pub use file::*;
pub use image_config::RESIZE_KEY_VARIABLES;
pub use shadow_config::is_safe_method;
pub use template::{KeyScope, Partial, Template, TemplateError, Vars};
pub use units::{SizePrefixes, UnitError, parse_duration, parse_size, parse_size_with};
pub use validate::{parse_backend, parse_host_pattern, validate};

/// A validated configuration. Build one with [`Config::from_file`], [`Config::from_toml`] or
/// [`validate`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Client-facing listeners, in file order (at least one).
    pub listeners: Vec<ListenerConfig>,
    /// The admin API listener; `None` without `[admin]`.
    pub admin: Option<AdminConfig>,
    /// Runtime settings: workers, shutdown grace, `Via`, trusted proxies.
    pub server: ServerConfig,
    /// Client-facing limits and timeouts.
    pub limits: Limits,
    /// Diagnostic log filter and format.
    pub logging: LoggingConfig,
    /// Where and how requests are logged; `None`: no access log.
    pub access_log: Option<AccessLogConfig>,
    /// Custom error pages; empty without `[error_pages]` (built-in pages are used).
    pub error_pages: ErrorPagesConfig,
    /// Cache storage shared by every caching rule; defaults without `[cache]`.
    pub cache: CacheConfig,
    /// Shadow traffic settings shared by every rule; defaults without `[shadow]`.
    pub shadow: ShadowConfig,
    /// Cache sharing with other kura nodes; `None` without `[cluster]`.
    pub cluster: Option<ClusterConfig>,
    /// Routes read from Redis; `None` without `[redis]`.
    pub redis: Option<RedisConfig>,
    /// Pools and vhosts from the file.
    pub routes: Routes,
}

/// Cluster membership and the peer protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's peer listener (a concrete `IP:port`), also its identity among the members.
    pub peering_address: SocketAddr,
    /// Where the member list comes from.
    pub members: MemberSource,
    /// Shared secret every peer request must carry (at least 16 printable ASCII characters).
    pub secret: String,
    /// How long a node waits for an owner's answer to begin, or between its chunks, before
    /// fetching from the origin itself (default 5 s).
    pub peer_timeout: Duration,
    /// How long a member that refused, failed or was slow is left out of ownership (default 10 s).
    pub peer_down_ttl: Duration,
    /// Connections open at once on the peer listener.
    pub max_connections: usize,
    /// TLS between members (the peer listener and the peer client).
    pub tls: Option<PeerTls>,
}

/// TLS between cluster members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// PEM certificate and chain of this node, served by its peer listener (and presented as a
    /// client certificate with `client_auth`).
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM bundle of the CA members' certificates chain to.
    pub ca: PathBuf,
    /// The listener requires client certificates from `ca`; the client presents `cert`.
    pub client_auth: bool,
    /// The name members' certificates are checked against; `None`: the member's IP.
    pub server_name: Option<String>,
}

/// Where a cluster's member list comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberSource {
    /// Peer addresses, this node's included.
    Static(Vec<SocketAddr>),
    /// Members register in etcd under a lease and are discovered by watching a key prefix.
    Etcd {
        /// etcd endpoint URLs (`http://host:port`, or `https://` ones, required with `tls`).
        endpoints: Vec<String>,
        /// Key prefix members register under, as `<prefix><peering_address>` (default
        /// `/kura/members/`).
        prefix: String,
        /// A member whose lease is not renewed for this long leaves the membership (at least 2 s;
        /// default 10 s).
        lease_ttl: Duration,
        /// TLS to etcd: the CA, and an optional client certificate and key.
        tls: Option<EtcdTls>,
        /// etcd user and password.
        auth: Option<(String, String)>,
    },
}

/// TLS to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM bundle of the CA etcd's certificate is checked against.
    pub ca: PathBuf,
    /// Client certificate and private key (PEM paths) presented to etcd; `None`: no client
    /// certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Shadow traffic settings shared by every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    /// Jobs of one rule waiting for a slot; more are dropped and counted (default 256).
    pub queue: usize,
    /// Jobs of one rule in progress at once (default 32).
    pub concurrency: usize,
    /// Bytes of request body copied to shadows; larger requests are not shadowed (default 256 KiB).
    pub max_request_body: u64,
    /// Bytes of each answer kept for comparison; a longer answer is compared by its length and a
    /// hash of the kept start (default 256 KiB).
    pub max_compare_body: u64,
    /// Time a copy (or the second primary) has to answer whole before it counts as a timeout
    /// (default 10 s).
    pub timeout: Duration,
    /// Lowercase header names.
    pub ignore_headers: Vec<String>,
    /// Header set on every copy to the target's name (`secondary` on the second primary's); default
    /// `x-kura-shadow`.
    pub marker_header: HeaderName,
    /// How much more often, relatively, a field must differ against a candidate than in the noise
    /// to count as a regression (0.2: 20% more; default 0.2).
    pub relative_threshold: f64,
    /// The same margin in absolute terms, a fraction from 0 to 1 (0.03: 3 points; default 0.03).
    pub absolute_threshold: f64,
    /// How much slower (or faster), relatively, a candidate must be than the primary at a
    /// latency quantile to be reported so (0.2: 20%; default 0.2).
    pub latency_relative_threshold: f64,
    /// The same margin as a duration, so that jitter is not called a change (default 1 ms).
    pub latency_absolute_threshold: Duration,
    /// Endpoints kept in the report; later ones are counted under `(other)` (default 1000).
    pub max_endpoints: usize,
    /// Differing fields itemised per endpoint; further ones are only counted (default 200).
    pub max_fields: usize,
    /// Example pairs kept per field, the latest ones (default 5).
    pub examples: usize,
    /// JSON-lines file receiving every exchange that differed; `None`: none is written.
    pub diff_log: Option<PathBuf>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            queue: DEFAULT_SHADOW_QUEUE,
            concurrency: DEFAULT_SHADOW_CONCURRENCY,
            max_request_body: DEFAULT_SHADOW_MAX_REQUEST_BODY,
            max_compare_body: DEFAULT_SHADOW_MAX_COMPARE_BODY,
            timeout: DEFAULT_SHADOW_TIMEOUT,
            ignore_headers: DEFAULT_SHADOW_IGNORE_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            marker_header: HeaderName::from_static(DEFAULT_SHADOW_MARKER_HEADER),
            relative_threshold: DEFAULT_SHADOW_RELATIVE_THRESHOLD,
            absolute_threshold: DEFAULT_SHADOW_ABSOLUTE_THRESHOLD,
            latency_relative_threshold: DEFAULT_SHADOW_LATENCY_RELATIVE_THRESHOLD,
            latency_absolute_threshold: DEFAULT_SHADOW_LATENCY_ABSOLUTE_THRESHOLD,
            max_endpoints: DEFAULT_SHADOW_MAX_ENDPOINTS,
            max_fields: DEFAULT_SHADOW_MAX_FIELDS,
            examples: DEFAULT_SHADOW_EXAMPLES,
            diff_log: None,
        }
    }
}

/// Shadowing of one rule.
#[derive(Debug, Clone)]
pub struct RuleShadow {
    /// Candidates each selected request is copied to (at least one).
    pub targets: Vec<ShadowTarget>,
    /// Pool whose differences from the primary are noise.
    pub secondary: Option<String>,
    /// Methods shadowed; empty: any (unsafe ones only with `allow_unsafe`).
    pub methods: Vec<http::Method>,
    /// Unsafe methods (`POST`, `PUT`, `DELETE`, …) may be copied (default false).
    pub allow_unsafe: bool,
    /// Only requests whose path matches; `None`: every path.
    pub path: Option<Regex>,
    /// Only requests carrying this header, its value matching the regex when one is given.
    pub header: Option<(HeaderName, Option<Regex>)>,
    /// 0 to 100.
    pub sample_percent: f64,
    /// Sample by a hash of this header's value (the same value always in or out); `None`, or the
    /// header absent: at random.
    pub sample_by: Option<HeaderName>,
    /// How exchanges are grouped into report endpoints (default by rule).
    pub group_by: GroupBy,
    /// Endpoint name for `GroupBy::Rule`.
    pub name: String,
    /// JSON paths (`$.meta.id`, `$.items[*].at`) never compared, with everything below them.
    pub ignore_fields: Vec<String>,
    /// Lowercase; added to `ShadowConfig::ignore_headers`.
    pub ignore_headers: Vec<String>,
}

/// One candidate a shadowed request is copied to.
#[derive(Debug, Clone)]
pub struct ShadowTarget {
    /// Name in reports and in the marker header (default the pool's name).
    pub name: String,
    /// Pool the copies are sent to.
    pub pool: String,
    /// Edits of the copy sent to this target, applied after the rule's own.
    pub request_headers: HeaderEdits,
}

/// How shadowed exchanges are grouped into endpoints in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Method and the rule's name.
    Rule,
    /// Method and the path with ids (numbers, UUIDs, long hex) replaced by `{id}`.
    Path,
}

/// The cache's storage, shared by every `cache` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Memory tier bytes (0: no memory tier).
    pub memory_bytes: u64,
    /// The disk tier; `None`: the cache is memory only.
    pub disk: Option<DiskConfig>,
    /// Bytes per segment, the unit of fetching and storage (64 KiB to 64 MiB; default 2 MiB).
    pub segment_size: u64,
    /// Segments fetched ahead of a client reading a large object (default 4; 0: each when reached).
    pub prefetch_segments: u32,
    /// Client addresses allowed to send `PURGE` to a cache rule; others get 403.
    pub purge_allow: Vec<ipnet::IpNet>,
    /// How long a request waits for another request's fetch of the same object before going to
    /// the origin itself, without storing (default 30 s).
    pub lock_timeout: Duration,
    /// Targeted cache-control fields obeyed instead of `Cache-Control` (RFC 9213), in order.
    pub targeted_cache_control: Vec<HeaderName>,
}

/// The cache's disk tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Directory of the cached files (relative paths resolved against the config file's directory).
    pub dir: PathBuf,
    /// Cleaning starts above this many bytes.
    pub max_bytes: u64,
    /// Cleaning stops at this many bytes.
    pub cleaned_bytes: u64,
}

/// How one rule caches (Katana's and Casserole's knobs).
#[derive(Debug, Clone)]
pub struct RuleCache {
    /// Key template; `None` is the default, the URL as keyed:
    /// `{scheme}://{authority}{path}?{query}`.
    pub key: Option<Template>,
    /// Responses fresh for less than this are not stored.
    pub min_ttl: Duration,
    /// Freshness for responses that carry none.
    pub default_ttl: Option<Duration>,
    /// Freshness used whatever the response says.
    pub force_ttl: Option<Duration>,
    /// `Cache-Control: max-age` sent to clients instead of the origin's (Katana's external_expires).
    pub client_max_age: Option<Duration>,
    /// Defaults for responses without the directive.
    pub stale_while_revalidate: Duration,
    /// For responses without the directive: how long past freshness a stored response is served
    /// when the origin fails (default 0).
    pub stale_if_error: Duration,
    /// X-Accel-Redirect prefix: hits on disk answer with the file's internal path.
    pub accel_redirect: Option<String>,
    /// What requests carrying `Cookie` get.
    pub cookies: CookiePolicy,
    /// Targeted cache-control fields, from `[cache]` (the same for every rule).
    pub targeted_cache_control: Vec<HeaderName>,
}

/// What a cache rule does with requests that carry `Cookie`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CookiePolicy {
    /// Served from the cache; their responses are stored only when the origin itself made
    /// them cacheable (`max-age`, `s-maxage`, `Expires` or `public`): the rule's TTLs and
    /// heuristic freshness never make a response to a cookie-carrying request shared.
    #[default]
    Origin,
    /// Passed to the origin, never answered from nor stored in the cache (Varnish's default).
    Pass,
    /// Treated like any request (nginx's default): the rule's TTLs apply.
    Ignore,
}

/// One client-facing listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address bound (port 0: a free port).
    pub address: SocketAddr,
    /// TLS settings; `None`: cleartext HTTP.
    pub tls: Option<TlsConfig>,
    /// TLS: offer h2 by ALPN. Cleartext: accept HTTP/2 with prior knowledge.
    pub http2: bool,
    /// Redirect every request to https on this port.
    pub redirect_https: Option<u16>,
}

impl ListenerConfig {
    /// A plain HTTP/1 listener.
    pub fn plain(address: SocketAddr) -> Self {
        ListenerConfig {
            address,
            tls: None,
            http2: false,
            redirect_https: None,
        }
    }
}

/// TLS of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificates served, chosen by the client's SNI name (at least one).
    pub certificates: Vec<CertificateConfig>,
    /// Index into `certificates` of the default one.
    pub default: usize,
    /// Zero: files are re-read only on reload.
    pub reload_interval: Duration,
}

/// One certificate of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    /// PEM file: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM file: the certificate's private key.
    pub key: PathBuf,
    /// Explicit names (lowercase; `*.x` wildcards); empty: the certificate's DNS names.
    pub hosts: Vec<String>,
    /// Dotted path of this entry, for errors found when loading it.
    pub field: String,
}

/// Routes from Redis in Hipache's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (`rediss://` for TLS).
    pub url: String,
    /// Period of the full re-read of every frontend and dead mark (default 10 s).
    pub resync_interval: Duration,
    /// How long a dead mark keeps a backend out, and the TTL of the `dead:` keys kura writes
    /// (default 30 s).
    pub dead_backend_ttl: Duration,
    /// Settings of Redis frontends' pools (backends and name replaced).
    pub pool_template: PoolSpec,
    /// Turn on keyspace notifications with `CONFIG SET` (default true).
    pub configure_notifications: bool,
}

/// The admin API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address the admin API listens on.
    pub address: SocketAddr,
    /// Required (as `Authorization: Bearer …`) for requests that change state.
    pub token: Option<String>,
    /// Reads require the token too.
    pub protect_reads: bool,
    /// Lowercase names accepted in `Host`, besides IP literals and `localhost`.
    pub hosts: Vec<String>,
    /// Connections open at once on the admin listener (default 64).
    pub max_connections: usize,
}

/// Process-wide runtime settings (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Runtime worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// One work-stealing runtime shared by the workers (true), or one single-threaded runtime
    /// per worker with its own listening socket (false: thread-per-core, for dedicated cores).
    pub work_stealing: bool,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The pseudonym in `Via` headers (`1.1 kura`).
    pub via: String,
    /// Peers whose forwarding headers are kept (`X-Forwarded-For` appended to, their
    /// `X-Forwarded-Proto` taken as the scheme); from anyone else they are removed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Client-facing limits. Each maps to a precise status: headers → 431, body → 413.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes of request line plus headers (431 beyond).
    pub max_header_bytes: usize,
    /// Number of request headers (431 beyond).
    pub max_headers: usize,
    /// Request body bytes (413 beyond); `None` is unlimited.
    pub max_body_bytes: Option<u64>,
    /// Time for a client to send a whole request head, counted from the connection's opening or
    /// from the first byte of a later request.
    pub client_header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub client_idle_timeout: Duration,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// A response the client accepts no byte of for this long ends its connection.
    pub send_timeout: Duration,
    /// Upgraded connections (WebSocket tunnels) open at once; more get 503.
    pub max_upgraded: usize,
    /// HTTP/2 streams one client connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: bytes of a response buffered for a stream the client does not read; past them
    /// and `send_timeout`, the stream is reset and its upstream released.
    pub http2_stream_buffer: u64,
}

/// Format of diagnostic log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line.
    Json,
}

/// Diagnostic logging (`[logging]`); `RUST_LOG`, when set, overrides the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// tracing `EnvFilter` directives (`info,kura_proxy::upstream=debug`).
    pub level: String,
    /// Line format (default text).
    pub format: LogFormat,
}

/// Format of access log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx's combined format followed by host, vhost, upstream and timings (the default).
    Combined,
    /// The same fields, one JSON object per line.
    Json,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (`path = "-"`).
    Stdout,
    /// A file appended to (relative paths resolved against the config file's directory).
    File(PathBuf),
}

/// The access log (`[access_log]`): one line per request, written by a dedicated thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where lines are written.
    pub target: AccessLogTarget,
    /// Line format (default combined).
    pub format: AccessLogFormat,
    /// Lines queued for the writer; beyond them new lines are dropped and counted (default 65536).
    pub buffer_lines: usize,
}

/// Custom error pages read from a directory at load time (so a reload picks up edits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPagesConfig {
    /// Directory the pages were read from; `None` without `[error_pages]`.
    pub dir: Option<PathBuf>,
    /// `<status>.html` files by status.
    pub pages: BTreeMap<u16, String>,
    /// `default.html`, used for statuses without their own page.
    pub default: Option<String>,
}

/// Everything the route table is compiled from. Produced by the file and, later, by other
/// route sources.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Pools by name.
    pub pools: BTreeMap<String, PoolSpec>,
    /// Virtual hosts, in file order.
    pub vhosts: Vec<VHostSpec>,
}

/// How a pool picks a backend among those in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each in turn (the default).
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The one with the fewest requests in flight, ties taken in turn.
    LeastConn,
}

impl Balance {
    /// The name as written in the file (`round_robin`, `random`, `least_conn`).
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::Random => "random",
            Balance::LeastConn => "least_conn",
        }
    }
}

/// One backend URL, split once so the request path never parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// As written, for logs and metrics.
    pub url: String,
    /// `host:port` (port always present).
    pub authority: String,
    /// Lowercase host name or IP address (IPv6 without brackets): what is resolved and connected
    /// to, and the TLS server name.
    pub host: String,
    /// The URL's port, else 80 for `http://` and 443 for `https://`.
    pub port: u16,
    /// Path prefix prepended to every upstream path, without a trailing `/` (often empty).
    pub base_path: String,
    /// `https://`: TLS to the backend.
    pub tls: bool,
    /// The address to connect to, when it was resolved and checked ahead (image sources): the
    /// connection goes there, never to a second resolution of `host`.
    pub pinned: Option<std::net::SocketAddr>,
}

/// Active health checks of a pool's backends: `GET` probes on a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// Path probed, after the backend's base path (default `/`).
    pub path: String,
    /// Time between probes (default 5 s).
    pub interval: Duration,
    /// Time allowed to each probe (default 2 s).
    pub timeout: Duration,
    /// Passes in a row that bring a failing backend back (default 2).
    pub healthy_threshold: u32,
    /// Failures in a row that take a backend out of rotation (default 3).
    pub unhealthy_threshold: u32,
    /// `Host` header of the probe; default the backend's authority.
    pub host: Option<String>,
}

/// A pool of backends with its balancing, connection and health settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// The `[pools.<name>]` key (`<pool>#<index>` for a who-has cluster, `redis:<host>` for a Redis
    /// frontend).
    pub name: String,
    /// Backends requests are balanced over; empty for a who-has pool (see `clusters`).
    pub backends: Vec<BackendSpec>,
    /// How a backend is chosen (default round robin).
    pub balance: Balance,
    /// Requests in flight to one backend at once; more wait up to `connect_timeout`, then get
    /// 503 (default 256).
    pub max_connections_per_backend: usize,
    /// Idle keep-alive connections kept per backend (default 128).
    pub max_idle_per_backend: usize,
    /// How long an idle connection is kept for reuse (default 60 s; 0 keeps none).
    pub idle_timeout: Duration,
    /// Time to open a connection, and to wait for a free slot (default 5 s).
    pub connect_timeout: Duration,
    /// Time from sending a request to the response head (default 60 s).
    pub response_timeout: Duration,
    /// How long a backend marked dead by passive health is skipped (default 30 s).
    pub dead_backend_ttl: Duration,
    /// Consecutive failures that mark a backend dead (default 1).
    pub max_fails: u32,
    /// 5xx statuses counted as backend failures (default none).
    pub dead_on_status: Vec<u16>,
    /// Further attempts on other backends after a failed one (default 2).
    pub retries: u32,
    /// Send the client's `Host` upstream; false sends the backend's `host:port` (default true).
    pub preserve_host: bool,
    /// Active health checks; `None`: passive health only.
    pub health_check: Option<HealthCheckSpec>,
    /// HTTP/2 to the backends (else HTTP/1.1).
    pub http2: bool,
    /// CAs for https:// backends; `None`: the Mozilla roots (webpki-roots).
    pub tls_ca: Option<PathBuf>,
    /// Who-has groups (`pools.<name>.clusters`, Katana's clusters of replica nodes that hold
    /// different files); empty for a plain pool. Not kura's peer cache (`[cluster]`).
    pub whohas: Vec<WhoHasGroup>,
    /// How long a path's cluster is remembered (default 10 min).
    pub whohas_ttl: Duration,
    /// Paths whose cluster is remembered at most (default 100000).
    pub whohas_entries: u64,
    /// Headers set on every request to this pool (a cluster's, in who-has sub-pools).
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
}

/// How a vhost is matched against the request's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `example.com` (lowercase, no port).
    Exact(String),
    /// `*.example.com`, stored as `example.com`.
    Wildcard(String),
    /// `*`.
    Any,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// A virtual host: the hosts it serves and its rules.
#[derive(Debug, Clone)]
pub struct VHostSpec {
    /// Name in logs, metrics and the admin API (default the first host).
    pub name: String,
    /// Host patterns served.
    pub hosts: Vec<HostPattern>,
    /// Rules tried in order; the vhost's `pool` fallback, if any, comes last.
    pub rules: Vec<RuleSpec>,
}

/// The kind of a rule, without its settings (see [`RuleAction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward to the pool.
    Proxy,
    /// Answer `GET`/`HEAD` through the cache.
    Cache,
    /// Serve resized images.
    Resize,
}

impl Action {
    /// The name as written in the file's `action` (`proxy`, `cache`, `resize`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Proxy => "proxy",
            Action::Cache => "cache",
            Action::Resize => "resize",
        }
    }
}

/// What a rule does, with what only that action needs: the combinations validation allows,
/// and no other.
#[derive(Debug, Clone)]
pub enum RuleAction {
    /// Forward to the pool, copying a share of requests to shadow targets.
    Proxy {
        /// Shadowing of the rule's requests; `None`: not shadowed.
        shadow: Option<RuleShadow>,
    },
    /// Answer `GET`/`HEAD` through the cache with this policy.
    Cache(RuleCache),
    /// Serve resized images; `cache` is the variants' (and originals') policy.
    Resize {
        /// Caching policy of the originals and the variants.
        cache: RuleCache,
        /// Image parameters and limits.
        resize: Box<RuleResize>,
    },
}

impl RuleAction {
    /// Which action this is.
    pub fn kind(&self) -> Action {
        match self {
            RuleAction::Proxy { .. } => Action::Proxy,
            RuleAction::Cache(_) => Action::Cache,
            RuleAction::Resize { .. } => Action::Resize,
        }
    }

    /// The caching policy, for `cache` and `resize` rules.
    pub fn cache(&self) -> Option<&RuleCache> {
        match self {
            RuleAction::Cache(c) | RuleAction::Resize { cache: c, .. } => Some(c),
            RuleAction::Proxy { .. } => None,
        }
    }

    /// Mutable access to the caching policy (filled in after validation).
    pub fn cache_mut(&mut self) -> Option<&mut RuleCache> {
        match self {
            RuleAction::Cache(c) | RuleAction::Resize { cache: c, .. } => Some(c),
            RuleAction::Proxy { .. } => None,
        }
    }

    /// The shadowing, for `proxy` rules.
    pub fn shadow(&self) -> Option<&RuleShadow> {
        match self {
            RuleAction::Proxy { shadow } => shadow.as_ref(),
            _ => None,
        }
    }

    /// The image settings, for `resize` rules.
    pub fn resize(&self) -> Option<&RuleResize> {
        match self {
            RuleAction::Resize { resize, .. } => Some(resize.as_ref()),
            _ => None,
        }
    }
}

/// One rule of a vhost, validated.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Matched against the normalised request path, without the query.
    pub path: Regex,
    /// What the rule does, with that action's settings.
    pub action: RuleAction,
    /// Pool matched requests go to.
    pub pool: String,
    /// Template of the upstream path; `None`: the request's path.
    pub rewrite: Option<Template>,
    /// Edits of the request sent upstream.
    pub request_headers: HeaderEdits,
    /// Edits of the response sent to the client.
    pub response_headers: HeaderEdits,
    /// `Upgrade` protocols relayed (lowercase tokens); others are answered as plain requests.
    pub upgrades: Vec<String>,
}

/// An image rule, validated (templates compiled against the rule's path regex).
#[derive(Debug, Clone)]
pub struct RuleResize {
    /// The original: a path on the rule's pool, or an absolute `http(s)://` URL.
    pub source: Template,
    /// Key template of the stored variants (late variables: [`RESIZE_KEY_VARIABLES`]);
    /// `None`: the original's key plus the normalised parameters.
    pub variant_key: Option<Template>,
    /// Key template of the stored originals; `None`: where the original is fetched from.
    pub source_key: Option<Template>,
    /// Output width in CSS pixels (multiplied by `dpr`); `None`: not given.
    pub width: Option<Template>,
    /// Output height in CSS pixels (multiplied by `dpr`); `None`: not given.
    pub height: Option<Template>,
    /// `contain`, `cover`, `fill` or a word of `fit_aliases`; `None`: `contain`.
    pub fit: Option<Template>,
    /// Where `cover` crops; `None`: `center`.
    pub gravity: Option<Template>,
    /// Output quality, 1 to `max_quality`; `None`: `default_quality`.
    pub quality: Option<Template>,
    /// Output format (`jpeg`, `png`, `webp`, `avif` or `auto`); `None`: `default_format`.
    pub format: Option<Template>,
    /// Device pixel ratio, above 0 and at most `max_dpr`; `None`: 1.
    pub dpr: Option<Template>,
    /// Used when the format expands to nothing (`source`, `auto` or a format name).
    pub default_format: String,
    /// URL words standing for `contain`, `cover` or `fill`.
    pub fit_aliases: BTreeMap<String, String>,
    /// Largest output width in pixels, after DPR (default 1920).
    pub max_width: u32,
    /// Largest output height in pixels, after DPR (default 1080).
    pub max_height: u32,
    /// Highest quality accepted, 1 to 100 (default 90).
    pub max_quality: u8,
    /// Quality when none is given, 1 to `max_quality` (default 75).
    pub default_quality: u8,
    /// Largest device pixel ratio accepted (default 4).
    pub max_dpr: f32,
    /// Sources with more pixels are refused from their header, before decoding (default 50
    /// million).
    pub max_source_pixels: u64,
    /// Sources larger than this many bytes are refused (default 50 MiB).
    pub max_source_bytes: u64,
    /// Transforms of this rule running at once (default the number of cores).
    pub max_concurrent: usize,
    /// Time to get a transform slot and transform (default 10 s).
    pub timeout: Duration,
    /// The not-found image's bytes, read at load time.
    pub not_found: Option<std::sync::Arc<Vec<u8>>>,
    /// Answer the not-found image with 200 instead of 404 (default false).
    pub not_found_as_200: bool,
    /// URL signature checking; `None`: URLs are not signed.
    pub signature: Option<SignatureConfig>,
    /// Lowercase host patterns; empty: any host.
    pub allowed_sources: Vec<HostPattern>,
    /// Absolute source URLs may resolve to loopback, private or other special addresses
    /// (default false).
    pub allow_local_sources: bool,
}

/// imgproxy-style signed URLs of an image rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureConfig {
    /// Hex HMAC-SHA256 keys; several allow rotation (any verifies).
    pub keys: Vec<String>,
    /// Hex salts, one per key, in the same order.
    pub salts: Vec<String>,
    /// Path capture holding the signature; the signed text is the path after it (default
    /// `signature`).
    pub capture: String,
}

/// One cluster of a who-has origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoHasGroup {
    /// Replica nodes of the cluster.
    pub backends: Vec<BackendSpec>,
    /// Headers set on every request to this cluster (e.g. `Host`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Header edits applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Headers removed.
    pub remove: Vec<HeaderName>,
    /// Headers replaced (or created).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Values appended, keeping existing ones.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// True when there is nothing to edit.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the edits to `headers`.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// One problem in a configuration, with the dotted path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field (`pools.api.backends[1]`), or the line of a TOML syntax error.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every problem found in a configuration (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order found (at least one).
    pub errors: Vec<FieldError>,
}

impl ConfigError {
    /// An error with one problem.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a TOML file. Relative paths inside it (error pages, access
    /// log) are resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
    }

    /// Parses and validates TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let file = parse_toml(text)?;
        validate(&file, base_dir)
    }
}

/// Parses TOML into a [`FileConfig`] without validating it. The error names the key and line.
pub fn parse_toml(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let field = toml_error_field(text, &e).unwrap_or_else(|| "(file)".to_string());
        ConfigError::single(field, e.message().trim().to_string())
    })
}

/// Best effort: the line of the TOML error, for the field column.
fn toml_error_field(text: &str, e: &toml::de::Error) -> Option<String> {
    let span = e.span()?;
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
    Some(format!("line {line} `{snippet}`"))
}

#[cfg(test)]
mod tests;
