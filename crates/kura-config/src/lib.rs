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
mod pool_config;
mod route_spec;
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

use http::HeaderName;
use regex::Regex;

pub use defaults::*;
pub use edge_config::{PemError, read_certs, read_key};
pub use file::*;
pub use image_config::RESIZE_KEY_VARIABLES;
pub use pool_config::parse_backend;
pub use route_spec::*;
pub use shadow_config::is_safe_method;
pub use template::{KeyScope, Partial, Template, TemplateError, Vars};
pub use units::{SizePrefixes, UnitError, parse_duration, parse_size, parse_size_with};
pub use validate::{parse_host_pattern, validate};

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
