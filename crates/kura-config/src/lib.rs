//! kura's configuration.
//!
//! An operator writes a TOML [`FileConfig`]; [`validate`] checks every field and produces a
//! typed [`Config`] in which every default is filled in and every reference (a rule's pool, a
//! template's capture) is known to resolve. A `Config` is plain data: the proxy compiles its
//! routes into a runtime table and swaps it in atomically, and a later route source (Redis)
//! produces the same [`Routes`] data. Errors name the field (`pools.api.backends[1]`) so that
//! `kura check` and a failed reload can say exactly what is wrong.

mod cache_config;
mod cluster_config;
mod defaults;
mod edge_config;
mod file;
mod image_config;
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
pub use edge_config::{read_certs, read_key};
pub use file::*;
pub use shadow_config::is_safe_method;
pub use template::{KeyScope, Template, TemplateError, Vars};
pub use units::{parse_duration, parse_size};
pub use validate::{parse_backend, parse_host_pattern, validate};

/// A validated configuration. Build one with [`Config::from_file`], [`Config::from_toml`] or
/// [`validate`].
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<AdminConfig>,
    pub server: ServerConfig,
    pub limits: Limits,
    pub logging: LoggingConfig,
    pub access_log: Option<AccessLogConfig>,
    pub error_pages: ErrorPagesConfig,
    pub cache: CacheConfig,
    pub shadow: ShadowConfig,
    pub cluster: Option<ClusterConfig>,
    pub redis: Option<RedisConfig>,
    pub routes: Routes,
}

/// Cluster membership and the peer protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub peering_address: SocketAddr,
    pub members: MemberSource,
    pub secret: String,
    pub peer_timeout: Duration,
    pub peer_down_ttl: Duration,
    /// Connections open at once on the peer listener.
    pub max_connections: usize,
    /// TLS between members (the peer listener and the peer client).
    pub tls: Option<PeerTls>,
}

/// TLS between cluster members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The listener requires client certificates from `ca`; the client presents `cert`.
    pub client_auth: bool,
    /// The name members' certificates are checked against; `None`: the member's IP.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberSource {
    /// Peer addresses, this node's included.
    Static(Vec<SocketAddr>),
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        lease_ttl: Duration,
        /// TLS to etcd: the CA, and an optional client certificate and key.
        tls: Option<EtcdTls>,
        /// etcd user and password.
        auth: Option<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Shadow traffic settings shared by every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    pub queue: usize,
    pub concurrency: usize,
    pub max_request_body: u64,
    pub max_compare_body: u64,
    pub timeout: Duration,
    /// Lowercase header names.
    pub ignore_headers: Vec<String>,
    pub marker_header: HeaderName,
    pub relative_threshold: f64,
    pub absolute_threshold: f64,
    pub max_endpoints: usize,
    pub max_fields: usize,
    pub examples: usize,
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
    pub targets: Vec<ShadowTarget>,
    /// Pool whose differences from the primary are noise.
    pub secondary: Option<String>,
    /// Methods shadowed; empty: any (unsafe ones only with `allow_unsafe`).
    pub methods: Vec<http::Method>,
    pub allow_unsafe: bool,
    pub path: Option<Regex>,
    pub header: Option<(HeaderName, Option<Regex>)>,
    /// 0 to 100.
    pub sample_percent: f64,
    pub sample_by: Option<HeaderName>,
    pub group_by: GroupBy,
    /// Endpoint name for `GroupBy::Rule`.
    pub name: String,
    pub ignore_fields: Vec<String>,
    /// Lowercase; added to `ShadowConfig::ignore_headers`.
    pub ignore_headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ShadowTarget {
    pub name: String,
    pub pool: String,
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
    pub disk: Option<DiskConfig>,
    pub segment_size: u64,
    pub prefetch_segments: u32,
    pub purge_allow: Vec<ipnet::IpNet>,
    pub lock_timeout: Duration,
    /// Targeted cache-control fields obeyed instead of `Cache-Control` (RFC 9213), in order.
    pub targeted_cache_control: Vec<HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub dir: PathBuf,
    /// Cleaning starts above this many bytes.
    pub max_bytes: u64,
    /// Cleaning stops at this many bytes.
    pub cleaned_bytes: u64,
}

/// How one rule caches (Katana's and Casserole's knobs).
#[derive(Debug, Clone)]
pub struct RuleCache {
    /// Key template; `None` is the default `{host}{path}?{query}`.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificates: Vec<CertificateConfig>,
    /// Index into `certificates` of the default one.
    pub default: usize,
    /// Zero: files are re-read only on reload.
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Explicit names (lowercase; `*.x` wildcards); empty: the certificate's DNS names.
    pub hosts: Vec<String>,
    /// Dotted path of this entry, for errors found when loading it.
    pub field: String,
}

/// Routes from Redis in Hipache's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub resync_interval: Duration,
    pub dead_backend_ttl: Duration,
    /// Settings of Redis frontends' pools (backends and name replaced).
    pub pool_template: PoolSpec,
    pub configure_notifications: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// Required (as `Authorization: Bearer …`) for requests that change state.
    pub token: Option<String>,
    /// Reads require the token too.
    pub protect_reads: bool,
    /// Lowercase names accepted in `Host`, besides the listener's address and `localhost`.
    pub hosts: Vec<String>,
    pub max_connections: usize,
}

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
    /// Time for a client to send a whole request head once its first byte arrived.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// tracing `EnvFilter` directives (`info,kura_proxy::upstream=debug`).
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Combined,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    pub format: AccessLogFormat,
    pub buffer_lines: usize,
}

/// Custom error pages read from a directory at load time (so a reload picks up edits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPagesConfig {
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
    pub pools: BTreeMap<String, PoolSpec>,
    pub vhosts: Vec<VHostSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    LeastConn,
}

impl Balance {
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
    pub host: String,
    pub port: u16,
    /// Path prefix prepended to every upstream path, without a trailing `/` (often empty).
    pub base_path: String,
    /// `https://`: TLS to the backend.
    pub tls: bool,
    /// The address to connect to, when it was resolved and checked ahead (image sources): the
    /// connection goes there, never to a second resolution of `host`.
    pub pinned: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// `Host` header of the probe; default the backend's authority.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub backends: Vec<BackendSpec>,
    pub balance: Balance,
    pub max_connections_per_backend: usize,
    pub max_idle_per_backend: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub dead_backend_ttl: Duration,
    pub max_fails: u32,
    pub dead_on_status: Vec<u16>,
    pub retries: u32,
    pub preserve_host: bool,
    pub health_check: Option<HealthCheckSpec>,
    /// HTTP/2 to the backends (else HTTP/1.1).
    pub http2: bool,
    /// CAs for https:// backends; `None`: the Mozilla roots (webpki-roots).
    pub tls_ca: Option<PathBuf>,
    /// Who-has clusters (Katana's origins); empty for a plain pool.
    pub clusters: Vec<ClusterSpec>,
    pub whohas_ttl: Duration,
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

#[derive(Debug, Clone)]
pub struct VHostSpec {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Proxy,
    Cache,
    Resize,
}

impl Action {
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
    Proxy { shadow: Option<RuleShadow> },
    /// Answer `GET`/`HEAD` through the cache with this policy.
    Cache(RuleCache),
    /// Serve resized images; `cache` is the variants' (and originals') policy.
    Resize {
        cache: RuleCache,
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

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub path: Regex,
    pub action: RuleAction,
    pub pool: String,
    pub rewrite: Option<Template>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// `Upgrade` protocols relayed (lowercase tokens); others are answered as plain requests.
    pub upgrades: Vec<String>,
}

/// An image rule, validated (templates compiled against the rule's path regex).
#[derive(Debug, Clone)]
pub struct RuleResize {
    pub source: Template,
    pub width: Option<Template>,
    pub height: Option<Template>,
    pub fit: Option<Template>,
    pub gravity: Option<Template>,
    pub quality: Option<Template>,
    pub format: Option<Template>,
    pub dpr: Option<Template>,
    /// Used when the format expands to nothing (`source`, `auto` or a format name).
    pub default_format: String,
    pub fit_aliases: BTreeMap<String, String>,
    pub max_width: u32,
    pub max_height: u32,
    pub max_quality: u8,
    pub default_quality: u8,
    pub max_dpr: f32,
    pub max_source_pixels: u64,
    pub max_source_bytes: u64,
    pub max_concurrent: usize,
    pub timeout: Duration,
    /// The not-found image's bytes, read at load time.
    pub not_found: Option<std::sync::Arc<Vec<u8>>>,
    pub not_found_as_200: bool,
    pub signature: Option<SignatureConfig>,
    /// Lowercase host patterns; empty: any host.
    pub allowed_sources: Vec<HostPattern>,
    pub allow_local_sources: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureConfig {
    pub keys: Vec<String>,
    pub salts: Vec<String>,
    pub capture: String,
}

/// One cluster of a who-has origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub backends: Vec<BackendSpec>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Header edits applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
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
    pub field: String,
    pub message: String,
}

/// Every problem found in a configuration (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<FieldError>,
}

impl ConfigError {
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
