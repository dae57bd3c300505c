//! The TOML file as written by an operator: plain serde structs, every field optional
//! where a default exists. Nothing here is validated beyond its type; `validate.rs` turns a
//! [`FileConfig`] into a checked [`crate::Config`]. Keeping the two apart (Sozu's
//! `FileConfig → Config`) lets quick mode on the command line build a `FileConfig` in code and go
//! through exactly the same validation as a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file. Unknown keys are refused so that a typo is an error, not a silent default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[[listeners]]`: where clients connect (at least one is required).
    #[serde(default)]
    pub listeners: Vec<FileListener>,
    /// `[admin]`: the admin API; none without it.
    pub admin: Option<FileAdmin>,
    /// `[server]`: workers, shutdown grace, `Via`, trusted proxies.
    #[serde(default)]
    pub server: FileServer,
    /// `[limits]`: client-facing limits and timeouts.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[logging]`: diagnostic log level and format.
    #[serde(default)]
    pub logging: FileLogging,
    /// `[access_log]`: without it no access log is written.
    pub access_log: Option<FileAccessLog>,
    /// `[error_pages]`: custom error pages; without it kura uses built-in ones.
    pub error_pages: Option<FileErrorPages>,
    /// `[cache]`: storage shared by every caching rule.
    pub cache: Option<FileCache>,
    /// `[shadow]`: shadow traffic settings shared by every rule.
    pub shadow: Option<FileShadow>,
    /// `[cluster]`: sharing the cache with other kura nodes.
    pub cluster: Option<FileCluster>,
    /// `[redis]`: routes from Redis.
    pub redis: Option<FileRedis>,
    /// `[pools.<name>]`: backend pools, by the name rules refer to.
    #[serde(default)]
    pub pools: BTreeMap<String, FilePool>,
    /// `[[vhosts]]`: virtual hosts, matched on the request's host.
    #[serde(default)]
    pub vhosts: Vec<FileVHost>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// `host:port` to bind; port 0 picks a free port (tests).
    pub address: String,
    /// Serve TLS on this listener with these certificates (picked by SNI).
    pub tls: Option<FileTls>,
    /// HTTP/2: offered by ALPN on TLS listeners (default true); on cleartext listeners, HTTP/2
    /// with prior knowledge is accepted beside HTTP/1 (default false).
    pub http2: Option<bool>,
    /// Answer every request with a redirect to the same URL over https.
    pub redirect_to_https: Option<bool>,
    /// Port in the redirect's URL (default 443, left out of the URL).
    pub https_port: Option<u16>,
}

/// `[listeners.tls]`: the listener speaks TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// At least one certificate; the client's SNI name picks one.
    pub certificates: Vec<FileCertificate>,
    /// How often certificate files are checked for changes (0s: only on reload).
    pub reload_interval: Option<String>,
}

/// One certificate of a TLS listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    /// PEM file: the certificate, then its chain.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Names served with this certificate; default the certificate's DNS names.
    pub hosts: Option<Vec<String>>,
    /// The certificate for clients without SNI or with an unknown name (default: the first).
    pub default: Option<bool>,
}

/// Routes from Redis, in Hipache's schema.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRedis {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Full re-read of every frontend, whatever notifications said.
    pub resync_interval: Option<String>,
    /// How long a dead mark written to Redis keeps a backend out (Hipache's deadBackendTTL).
    pub dead_backend_ttl: Option<String>,
    /// A pool of this file whose settings (timeouts, balance, limits) Redis frontends use.
    pub pool_template: Option<String>,
    /// Turn on keyspace notifications with CONFIG SET (needs the permission).
    pub configure_notifications: Option<bool>,
}

/// `[admin]`: the admin API listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `IP:port` the admin API listens on.
    pub address: String,
    /// Bearer token for the admin API (or the `KURA_ADMIN_TOKEN` environment variable):
    /// required for every request that changes state, and for reads with `protect_reads`.
    pub token: Option<String>,
    /// Reads need the token too.
    pub protect_reads: Option<bool>,
    /// Names the admin answers to in `Host` besides IP literals and `localhost`.
    pub hosts: Option<Vec<String>>,
    /// Connections open at once on the admin listener.
    pub max_connections: Option<usize>,
}

/// `[server]`: process-wide runtime settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Worker threads of the runtime; default: one per core.
    pub workers: Option<usize>,
    /// true: one work-stealing runtime for all workers; false: one runtime per worker thread.
    pub work_stealing: Option<bool>,
    /// Time allowed to in-flight requests after SIGTERM/SIGINT.
    pub shutdown_grace: Option<String>,
    /// Token added to `Via` headers.
    pub via: Option<String>,
    /// Peers (IPs or CIDR blocks) whose `Forwarded` / `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[limits]`: client-facing limits and timeouts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Open client connections; further clients wait in the listen backlog (default 10000).
    pub max_connections: Option<usize>,
    /// Bytes of request line plus headers, 431 beyond (at least 1024; default 16KiB).
    pub max_header_bytes: Option<SizeValue>,
    /// Number of request headers, 431 beyond (default 100).
    pub max_headers: Option<usize>,
    /// Request body size, 413 beyond (default 100MiB; 0: unlimited).
    pub max_body_bytes: Option<SizeValue>,
    /// Time for a client to send a whole request head (default 10s).
    pub client_header_timeout: Option<String>,
    /// Time a keep-alive connection may wait for its next request (default 60s).
    pub client_idle_timeout: Option<String>,
    /// An upgraded connection with no bytes either way for this long is closed (default 60s).
    pub websocket_idle_timeout: Option<String>,
    /// A client that accepts no byte of a response for this long is disconnected.
    pub send_timeout: Option<String>,
    /// Upgraded connections (tunnels) open at once.
    pub max_upgraded: Option<usize>,
    /// HTTP/2 streams a client may have open on one connection.
    pub http2_max_concurrent_streams: Option<u32>,
    /// Bytes of an HTTP/2 response kura buffers for a stream whose client stopped reading.
    pub http2_stream_buffer: Option<SizeValue>,
}

/// `[logging]`: diagnostics on standard error.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileLogging {
    /// tracing filter directives, e.g. `info,kura_proxy::upstream=debug`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<String>,
}

/// `[access_log]`: one line per request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    /// A file path, or `-` for standard output.
    pub path: String,
    /// `combined` (nginx combined plus vhost, upstream and timings) or `json`.
    pub format: Option<String>,
    /// Lines kept in memory waiting for the writer before new lines are dropped (and counted).
    pub buffer_lines: Option<usize>,
}

/// `[error_pages]`: custom error pages.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileErrorPages {
    /// Directory holding `<status>.html` files and optionally `default.html`.
    pub dir: String,
}

/// Storage shared by every `cache` rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    /// Memory tier size; 0 disables it.
    pub memory: Option<SizeValue>,
    /// Disk tier directory; without it the cache is memory only.
    pub dir: Option<String>,
    /// Disk usage that starts a cleaning (Casserole's max-disk-usage).
    pub max_disk: Option<SizeValue>,
    /// Disk usage a cleaning goes down to (Casserole's cleaned-disk-usage).
    pub cleaned_disk: Option<SizeValue>,
    /// Objects are fetched from origins and stored in segments of this size.
    pub segment_size: Option<SizeValue>,
    /// Segments fetched ahead of a reader of a large object.
    pub prefetch_segments: Option<u32>,
    /// Client addresses (CIDR or IP) allowed to send PURGE.
    pub purge_allow: Option<Vec<String>>,
    /// How long a request waits for another request's fetch of the same object.
    pub lock_timeout: Option<String>,
    /// Targeted cache-control fields (RFC 9213) kura obeys instead of `Cache-Control`, the
    /// first present one winning; default `["CDN-Cache-Control"]`.
    pub targeted_cache_control: Option<Vec<String>>,
}

/// Caching policy of one rule (`action = "cache"`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRuleCache {
    /// Cache-key template; default the URL as keyed, `{scheme}://{authority}{path}?{query}`.
    pub key: Option<String>,
    /// Responses fresh for less than this are not stored (default 0s).
    pub min_ttl: Option<String>,
    /// Freshness of responses that state none, instead of the Last-Modified heuristic.
    pub default_ttl: Option<String>,
    /// Freshness of every storable response, whatever it says (`no-store` and `private` still
    /// apply).
    pub force_ttl: Option<String>,
    /// `Cache-Control: max-age` sent to clients instead of the origin's (Katana's
    /// external_expires).
    pub client_max_age: Option<String>,
    /// For responses without the directive: how long past freshness a response is served while it
    /// is revalidated (default 0s).
    pub stale_while_revalidate: Option<String>,
    /// For responses without the directive: how long past freshness a response is served when the
    /// origin fails (default 0s).
    pub stale_if_error: Option<String>,
    /// `X-Accel-Redirect` location prefix under which disk hits are handed to an nginx in front
    /// (needs `cache.dir`).
    pub accel_redirect: Option<String>,
    /// Requests carrying `Cookie`: `origin` (default), `pass` or `ignore`.
    pub cookies: Option<String>,
}

/// `[pools.<name>]`: a set of backends with balancing and health settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    /// Backend URLs, `http://host[:port][/base]` or `https://…` (required unless `clusters`).
    #[serde(default)]
    pub backends: Vec<String>,
    /// Katana's origin: clusters holding different files, each of replica nodes. The cluster
    /// holding a file is found by HEAD requests (who-has) and remembered. Instead of `backends`.
    pub clusters: Option<Vec<FileOriginCluster>>,
    /// How long a file's cluster is remembered.
    pub whohas_ttl: Option<String>,
    /// Files whose cluster is remembered at most.
    pub whohas_entries: Option<u64>,
    /// `round_robin`, `random` or `least_conn`.
    pub balance: Option<String>,
    /// Requests in flight to one backend at once (default 256).
    pub max_connections_per_backend: Option<usize>,
    /// Idle keep-alive connections kept per backend (default 128).
    pub max_idle_per_backend: Option<usize>,
    /// How long an idle connection is kept for reuse (default 60s).
    pub idle_timeout: Option<String>,
    /// Time to open a connection to a backend (default 5s).
    pub connect_timeout: Option<String>,
    /// Time from sending a request to the response head (default 60s).
    pub response_timeout: Option<String>,
    /// How long a backend marked dead by passive health is skipped (default 30s).
    pub dead_backend_ttl: Option<String>,
    /// Consecutive failures that mark a backend dead (default 1).
    pub max_fails: Option<u32>,
    /// 5xx statuses counted as backend failures (default none).
    pub dead_on_status: Option<Vec<u16>>,
    /// Further attempts on other backends (default 2).
    pub retries: Option<u32>,
    /// Send the client's `Host` upstream rather than the backend's `host:port` (default true).
    pub preserve_host: Option<bool>,
    /// Active health checks; none by default.
    pub health_check: Option<FileHealthCheck>,
    /// Speak HTTP/2 to the backends (prior knowledge on http://, ALPN on https://).
    pub http2: Option<bool>,
    /// PEM bundle of CAs trusted for https:// backends (default: the Mozilla roots).
    pub tls_ca: Option<String>,
}

/// One cluster of a who-has pool (`pools.<name>.clusters`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileOriginCluster {
    /// Replica nodes: backend URLs.
    pub nodes: Vec<String>,
    /// Headers sent with every request to this cluster (e.g. `Host`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[pools.<name>.health_check]`: active `GET` probes of every backend.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    /// Path probed, after the backend's base path (default `/`).
    pub path: Option<String>,
    /// Time between probes (default 5s; more than 0).
    pub interval: Option<String>,
    /// Time allowed to each probe (default 2s).
    pub timeout: Option<String>,
    /// Passes in a row that bring a failing backend back (default 2).
    pub healthy_threshold: Option<u32>,
    /// Failures in a row that take a backend out of rotation (default 3).
    pub unhealthy_threshold: Option<u32>,
    /// `Host` header of the probes (default the backend's `host:port`).
    pub host: Option<String>,
}

/// One `[[vhosts]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileVHost {
    /// Name used in logs and metrics; defaults to the first host.
    pub name: Option<String>,
    /// `example.com`, `*.example.com` or `*`.
    pub hosts: Vec<String>,
    /// Shortcut: a pool for every path no rule matched.
    pub pool: Option<String>,
    /// With `pool`: the action of that fallback rule (`proxy` or `cache`).
    pub action: Option<String>,
    /// With `pool` and `action = "cache"`: its caching policy.
    pub cache: Option<FileRuleCache>,
    /// With `pool`: shadowing of that fallback rule.
    pub shadow: Option<FileRuleShadow>,
    /// With `pool`: the `Upgrade` protocols that fallback rule relays.
    pub upgrades: Option<Vec<String>>,
    /// `[[vhosts.rules]]`, tried in order.
    #[serde(default)]
    pub rules: Vec<FileRule>,
}

/// One `[[vhosts.rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Regex matched against the request path (no query); default matches every path.
    pub path: Option<String>,
    /// `proxy` (default), `cache` or `resize`.
    pub action: Option<String>,
    /// Pool matched requests go to (required).
    pub pool: String,
    /// Template for the upstream path: `{name}` or `{1}` insert captures, `{{` is a brace.
    pub rewrite: Option<String>,
    /// Edits of the request sent upstream.
    #[serde(default)]
    pub request_headers: FileHeaderEdits,
    /// Edits of the response sent to the client.
    #[serde(default)]
    pub response_headers: FileHeaderEdits,
    /// Caching policy (for `action = "cache"`).
    pub cache: Option<FileRuleCache>,
    /// Requests of this rule copied to shadow backends and compared.
    pub shadow: Option<FileRuleShadow>,
    /// Image parameters and limits (for `action = "resize"`).
    pub resize: Option<FileRuleResize>,
    /// `Upgrade` protocols relayed (case-insensitive); default `["websocket"]`.
    pub upgrades: Option<Vec<String>>,
}

/// An image rule: where the original is and which captures give the parameters. Every
/// parameter is a template over the rule's path captures (`"{w}"`), or a fixed value.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRuleResize {
    /// The original: a path on the rule's pool (`"/{src}"`), or an absolute `http(s)://` URL.
    pub source: String,
    /// Cache-key template of the variants (Katana's `cache_path_resized`): the path's
    /// captures, the request's built-ins and the normalised parameters (`{width}`, `{params}`,
    /// ...). Default: the original's key plus the normalised parameters.
    pub variant_key: Option<String>,
    /// Cache-key template of the originals (Katana's `cache_path_source`): the path's captures
    /// and the request's built-ins. Default: where the original is fetched from.
    pub source_key: Option<String>,
    /// Output width in CSS pixels (multiplied by `dpr`).
    pub width: Option<String>,
    /// Output height in CSS pixels (multiplied by `dpr`).
    pub height: Option<String>,
    /// `contain` (default), `cover` or `fill`, or a word of `fit_aliases`.
    pub fit: Option<String>,
    /// Where `cover` crops: `center` (default), `north`, `south`, `east`, `west`, `ne`, ...
    pub gravity: Option<String>,
    /// Output quality, 1 to `max_quality` (default `default_quality`).
    pub quality: Option<String>,
    /// `jpeg`, `png`, `webp`, `avif`, `auto` (by Accept); default `default_format`.
    pub format: Option<String>,
    /// The format when `format` is absent or expands to nothing: `source` (the original's
    /// kind; the default), `auto`, or a format name.
    pub default_format: Option<String>,
    /// Device pixel ratio, above 0 and at most `max_dpr` (default 1).
    pub dpr: Option<String>,
    /// URL words for fits, e.g. `{ f = "fill", force = "fill", fill = "cover" }`.
    #[serde(default)]
    pub fit_aliases: BTreeMap<String, String>,
    /// Largest output width in pixels, after DPR (default 1920).
    pub max_width: Option<u32>,
    /// Largest output height in pixels, after DPR (default 1080).
    pub max_height: Option<u32>,
    /// Highest quality accepted, 1 to 100 (default 90).
    pub max_quality: Option<u8>,
    /// Quality when none is given, 1 to `max_quality` (default 75).
    pub default_quality: Option<u8>,
    /// Largest device pixel ratio accepted (default 4).
    pub max_dpr: Option<f32>,
    /// Sources with more pixels are refused before decoding (default 50000000).
    pub max_source_pixels: Option<u64>,
    /// Larger sources are refused (default 50MiB).
    pub max_source_bytes: Option<SizeValue>,
    /// Transforms running at once for this rule (default: the number of cores).
    pub max_concurrent: Option<usize>,
    /// Time allowed to wait for a transform slot and to transform.
    pub timeout: Option<String>,
    /// An image answered (resized) when the original is missing (Katana's not_found_source).
    pub not_found_source: Option<String>,
    /// Answer that image with 200 instead of 404.
    pub not_found_as_200: Option<bool>,
    /// imgproxy-style signed URLs.
    pub signature: Option<FileSignature>,
    /// Hosts absolute source URLs may name (`example.com`, `*.example.com`); default any.
    pub allowed_sources: Option<Vec<String>>,
    /// Allow absolute source URLs resolving to loopback or link-local addresses.
    pub allow_local_sources: Option<bool>,
}

/// imgproxy-style signed URLs of an image rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSignature {
    /// Hex keys; several for rotation (each with the salt at the same place).
    pub keys: Vec<String>,
    /// Hex salts, one per key, in the same order.
    pub salts: Vec<String>,
    /// The path capture holding the signature (default `signature`). The signed text is the
    /// request path after that capture's end.
    pub capture: Option<String>,
}

/// Shadow traffic settings shared by every rule (queue, limits, comparison, reports).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileShadow {
    /// Shadowed requests waiting for a free slot; more are dropped (and counted).
    pub queue: Option<usize>,
    /// Shadowed requests in progress at once.
    pub concurrency: Option<usize>,
    /// Request bodies up to this size are copied to shadows; larger requests are not shadowed.
    pub max_request_body: Option<SizeValue>,
    /// Response bodies are compared up to this size (beyond it: length and hash of the start).
    pub max_compare_body: Option<SizeValue>,
    /// A shadow (or second primary) that has not answered whole within this is abandoned.
    pub timeout: Option<String>,
    /// Response headers never compared (replaces the default list).
    pub ignore_headers: Option<Vec<String>>,
    /// Header added to every shadow request; its value names the target.
    pub marker_header: Option<String>,
    /// Diffy's thresholds: how clearly a field must differ more than the noise.
    pub relative_threshold: Option<f64>,
    /// The same margin in absolute terms, a fraction from 0 to 1 (default 0.03: 3 points).
    pub absolute_threshold: Option<f64>,
    /// How much slower (or faster), relatively, a candidate must be at a quantile to be called
    /// so (default 0.2: 20%).
    pub latency_relative_threshold: Option<f64>,
    /// The same margin as a duration (default `1ms`).
    pub latency_absolute_threshold: Option<String>,
    /// Report bounds.
    pub max_endpoints: Option<usize>,
    /// Differing fields itemised per endpoint (default 200).
    pub max_fields: Option<usize>,
    /// Example pairs kept per field (default 5).
    pub examples: Option<usize>,
    /// A JSON-lines file receiving every exchange that differed.
    pub diff_log: Option<String>,
}

/// Several kura nodes sharing one cache.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// `IP:port` of this node's peer listener; also its identity among the members.
    pub peering_address: String,
    /// Static members (`IP:port` peer addresses); this node is added if missing.
    pub peers: Option<Vec<String>>,
    /// etcd endpoints (`http://host:port`): members register and are discovered there.
    pub etcd: Option<Vec<String>>,
    /// Key prefix of the members in etcd (default `/kura/members/`).
    pub etcd_prefix: Option<String>,
    /// A member whose lease is not renewed for this long leaves the membership.
    pub lease_ttl: Option<String>,
    /// Shared secret every peer request must carry.
    pub secret: String,
    /// How long a node waits for an owner's answer before fetching from the origin itself.
    pub peer_timeout: Option<String>,
    /// How long a peer that failed is left out of ownership.
    pub peer_down_ttl: Option<String>,
    /// Connections open at once on the peer listener.
    pub max_connections: Option<usize>,
    /// TLS between members: this node's certificate and key (PEM) for its peer listener and,
    /// with `tls_client_auth`, as its client certificate; the CA members' certificates chain to.
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// PEM bundle of the CA members' certificates chain to.
    pub tls_ca: Option<String>,
    /// Members must present a certificate from `tls_ca` (default true with TLS).
    pub tls_client_auth: Option<bool>,
    /// The name members' certificates carry; default: each member's IP address.
    pub tls_server_name: Option<String>,
    /// TLS to etcd (`https://` endpoints): the CA, and an optional client certificate and key.
    pub etcd_ca: Option<String>,
    /// PEM client certificate for etcd (with `etcd_key` and `etcd_ca`).
    pub etcd_cert: Option<String>,
    /// PEM private key of `etcd_cert`.
    pub etcd_key: Option<String>,
    /// etcd authentication; the password may come from `KURA_ETCD_PASSWORD` instead.
    pub etcd_user: Option<String>,
    /// Password of `etcd_user`.
    pub etcd_password: Option<String>,
}

/// Shadowing of one rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRuleShadow {
    /// The candidate backends, each a pool.
    pub targets: Vec<FileShadowTarget>,
    /// A pool running the primary's code: its differences from the primary are the noise.
    pub secondary: Option<String>,
    /// Methods shadowed; default any safe method (GET, HEAD, OPTIONS, TRACE).
    pub methods: Option<Vec<String>>,
    /// Allow POST, PUT, PATCH, DELETE and other unsafe methods to be shadowed.
    pub allow_unsafe: Option<bool>,
    /// Only paths matching this regex.
    pub path: Option<String>,
    /// Only requests with this header matching a regex.
    pub header: Option<FileHeaderMatch>,
    /// Share of the matching requests shadowed, 0 to 100.
    pub sample_percent: Option<f64>,
    /// Sample by a hash of this header (the same user always in or out); default random.
    pub sample_by: Option<String>,
    /// How endpoints are named in reports: `rule` (default) or `path`.
    pub group_by: Option<String>,
    /// The endpoint name with `group_by = "rule"`; default the rule's path regex.
    pub name: Option<String>,
    /// JSON fields never compared, as paths (`$.meta.request_id`, `$.items[*].updated_at`).
    pub ignore_fields: Option<Vec<String>>,
    /// Response headers never compared, in addition to `shadow.ignore_headers`.
    pub ignore_headers: Option<Vec<String>>,
}

/// One candidate of a rule's shadow (an entry of `targets`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileShadowTarget {
    /// Pool the copies are sent to (required).
    pub pool: String,
    /// Name in reports and in the marker header; default the pool's name.
    pub name: Option<String>,
    /// Edits of the request sent to this target (after the rule's own).
    #[serde(default)]
    pub request_headers: FileHeaderEdits,
}

/// A header a request must carry to be shadowed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileHeaderMatch {
    /// The header that must be present.
    pub name: String,
    /// Regex the header's value must match; default any value (the header is present).
    pub value: Option<String>,
}

/// Header edits, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileHeaderEdits {
    /// Replace (or create) these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these values, keeping existing ones.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A size written either as a number of bytes or as a string with a unit (`"100MiB"`, `"1G"`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SizeValue {
    /// A plain number of bytes.
    Bytes(u64),
    /// A number with a unit, read by [`crate::parse_size`].
    Text(String),
}
