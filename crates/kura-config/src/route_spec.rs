//! The validated routing types: pools and their backends, vhosts, rules and what each rule
//! does ([`RuleAction`]), with the header edits they apply. Produced by `validate.rs` (and,
//! for Redis frontends, by the proxy from a pool template); compiled by the proxy into its
//! route table. Split from `lib.rs`, which keeps the process-wide sections.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use regex::Regex;

use crate::*;

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
