//! Every default in one place, so `docs/configuration.md` and the code cannot drift apart
//! unnoticed (a test in `tests.rs` checks the documented values against these).

use std::time::Duration;

/// `server.shutdown_grace`: how long in-flight requests may run after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// `server.via`: the pseudonym kura gives itself in `Via` headers.
pub const DEFAULT_VIA: &str = "kura";
/// Work stealing keeps tail latency low when the cores are shared with other busy processes;
/// thread-per-core (false) is cheaper per request on cores kura has to itself.
pub const DEFAULT_WORK_STEALING: bool = true;

/// `limits.max_connections`: open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `limits.max_header_bytes`: bytes of request line plus headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Smaller header limits would refuse ordinary browser requests.
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
/// `limits.max_headers`: number of request headers.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// `limits.max_body_bytes`: bytes of a request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
/// `limits.client_header_timeout`: time for a client to send a whole request head.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.client_idle_timeout`: time a keep-alive connection may wait for its next request.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's proxy_read_timeout: a WebSocket silent both ways this long is closed.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once on the admin listener.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Connections open at once on the cluster's peer listener.
pub const DEFAULT_PEER_MAX_CONNECTIONS: usize = 256;
/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN: usize = 16;
/// `limits.send_timeout` (nginx's `send_timeout`): how long a client may accept no byte of a
/// response before its connection is closed.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// `limits.max_upgraded`: upgraded connections (WebSocket tunnels) open at once.
pub const DEFAULT_MAX_UPGRADED: usize = 1024;
/// `Upgrade` protocols a rule relays unless it says otherwise.
pub const DEFAULT_UPGRADES: &[&str] = &["websocket"];
/// nginx's `http2_max_concurrent_streams`.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// `limits.http2_stream_buffer`: response bytes buffered for an HTTP/2 stream whose client does not
/// read.
pub const DEFAULT_HTTP2_STREAM_BUFFER: u64 = 256 * 1024;

/// `listeners.tls.reload_interval`: how often certificate files are checked for changes.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// `listeners.https_port`: the port in an https redirect's URL.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// `redis.resync_interval`: period of the full re-read of the Redis routes.
pub const DEFAULT_REDIS_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Hipache's deadBackendTTL.
pub const DEFAULT_REDIS_DEAD_BACKEND_TTL: Duration = Duration::from_secs(30);
/// `redis.configure_notifications`: turn on keyspace notifications with `CONFIG SET`.
pub const DEFAULT_REDIS_CONFIGURE_NOTIFICATIONS: bool = true;

/// `logging.level`: tracing filter directives.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `access_log.buffer_lines`: lines queued for the access log writer.
pub const DEFAULT_ACCESS_LOG_BUFFER_LINES: usize = 65_536;
/// Error pages larger than this are refused, to keep memory bounded.
pub const MAX_ERROR_PAGE_BYTES: u64 = 1024 * 1024;

/// `pools.<name>.max_connections_per_backend`: requests in flight to one backend.
pub const DEFAULT_MAX_CONNECTIONS_PER_BACKEND: usize = 256;
/// `pools.<name>.max_idle_per_backend`: idle keep-alive connections kept per backend.
pub const DEFAULT_MAX_IDLE_PER_BACKEND: usize = 128;
/// `pools.<name>.idle_timeout`: how long an idle upstream connection is kept for reuse.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `pools.<name>.connect_timeout`: time to open an upstream connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `pools.<name>.response_timeout`: time from sending a request to the response head.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// `pools.<name>.dead_backend_ttl`: how long a backend marked dead is skipped.
pub const DEFAULT_DEAD_BACKEND_TTL: Duration = Duration::from_secs(30);
/// `pools.<name>.max_fails`: consecutive failures that mark a backend dead.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// `pools.<name>.retries`: further attempts on other backends.
pub const DEFAULT_RETRIES: u32 = 2;

/// `health_check.path`: the path active health checks probe.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// `health_check.interval`: time between probes.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `health_check.timeout`: time allowed to each probe.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// `health_check.healthy_threshold`: passes in a row that bring a backend back.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// `health_check.unhealthy_threshold`: failures in a row that take a backend out.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

/// `cache.memory`: bytes of the memory tier.
pub const DEFAULT_CACHE_MEMORY: u64 = 256 * 1024 * 1024;
/// `cache.max_disk`: disk usage, in bytes, that starts a cleaning.
pub const DEFAULT_MAX_DISK: u64 = 1024 * 1024 * 1024;
/// Default cleaned-to mark, as a fraction of `max_disk` (Casserole: 800M of 1G).
pub const DEFAULT_CLEANED_DISK_RATIO: f64 = 0.8;
/// `cache.segment_size`: bytes per segment, the unit of fetching and storage.
pub const DEFAULT_SEGMENT_SIZE: u64 = 2 * 1024 * 1024;
/// The smallest `cache.segment_size` accepted, in bytes.
pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
/// The largest `cache.segment_size` accepted, in bytes.
pub const MAX_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// `cache.prefetch_segments`: segments fetched ahead of a client reading a large object.
pub const DEFAULT_PREFETCH_SEGMENTS: u32 = 4;
/// `cache.lock_timeout`: how long a request waits for another's fetch of the same object.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The cache key of a rule without `key`: the URL as keyed. The proxy builds that key directly;
/// this text is what the documentation shows (and a test checks).
pub const DEFAULT_CACHE_KEY: &str = "{scheme}://{authority}{path}?{query}";
/// Targeted cache-control fields obeyed by default (RFC 9213).
pub const DEFAULT_TARGETED_CACHE_CONTROL: &[&str] = &["cdn-cache-control"];

/// `shadow.queue`: jobs of one rule waiting for a slot.
pub const DEFAULT_SHADOW_QUEUE: usize = 256;
/// `shadow.concurrency`: jobs of one rule in progress at once.
pub const DEFAULT_SHADOW_CONCURRENCY: usize = 32;
/// With the queue and concurrency defaults, shadowing holds at most ~300 MiB per shadowed rule
/// with one target, even when every body is at the limit.
pub const DEFAULT_SHADOW_MAX_REQUEST_BODY: u64 = 256 * 1024;
/// `shadow.max_compare_body`: bytes of each answer kept for comparison.
pub const DEFAULT_SHADOW_MAX_COMPARE_BODY: u64 = 256 * 1024;
/// `shadow.timeout`: time a copy has to answer whole.
pub const DEFAULT_SHADOW_TIMEOUT: Duration = Duration::from_secs(10);
/// `shadow.marker_header`: the header naming the target on every copy.
pub const DEFAULT_SHADOW_MARKER_HEADER: &str = "x-kura-shadow";
/// Diffy's defaults: 20% relative, 3 points absolute.
pub const DEFAULT_SHADOW_RELATIVE_THRESHOLD: f64 = 0.2;
/// `shadow.absolute_threshold`, a fraction (0.03: 3 points).
pub const DEFAULT_SHADOW_ABSOLUTE_THRESHOLD: f64 = 0.03;
/// `shadow.latency_relative_threshold`: a candidate is slower (or faster) at a quantile when
/// its time differs from the primary's by at least this fraction (0.2: 20%)...
pub const DEFAULT_SHADOW_LATENCY_RELATIVE_THRESHOLD: f64 = 0.2;
/// `shadow.latency_absolute_threshold`: ... and by at least this much, so that sub-millisecond
/// jitter is not called a change.
pub const DEFAULT_SHADOW_LATENCY_ABSOLUTE_THRESHOLD: Duration = Duration::from_millis(1);
/// `shadow.max_endpoints`: endpoints kept in the report.
pub const DEFAULT_SHADOW_MAX_ENDPOINTS: usize = 1000;
/// `shadow.max_fields`: differing fields itemised per endpoint.
pub const DEFAULT_SHADOW_MAX_FIELDS: usize = 200;
/// `shadow.examples`: example pairs kept per field.
pub const DEFAULT_SHADOW_EXAMPLES: usize = 5;
/// A rule shadow's `sample_percent`: the share of matching requests copied, in percent.
pub const DEFAULT_SHADOW_SAMPLE_PERCENT: f64 = 100.0;
/// Response headers that differ between any two deployments, or are compared through the body.
pub const DEFAULT_SHADOW_IGNORE_HEADERS: &[&str] = &[
    "date",
    "server",
    "age",
    "via",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "x-request-id",
    "x-runtime",
    "set-cookie",
    "expires",
    "last-modified",
    "etag",
];

/// `cluster.etcd_prefix`: the key prefix members register under in etcd.
pub const DEFAULT_ETCD_PREFIX: &str = "/kura/members/";
/// `cluster.lease_ttl`: how long a member whose lease is not renewed stays in the membership.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// `cluster.peer_timeout`: how long to wait for an owner's answer before going to the origin.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// `cluster.peer_down_ttl`: how long a failed member is left out of ownership.
pub const DEFAULT_PEER_DOWN_TTL: Duration = Duration::from_secs(10);
/// Shorter secrets are refused: the peer listener trusts whoever knows it.
pub const MIN_CLUSTER_SECRET_LEN: usize = 16;

/// `pools.<name>.whohas_ttl`: how long a path's cluster is remembered.
pub const DEFAULT_WHOHAS_TTL: Duration = Duration::from_secs(600);
/// `pools.<name>.whohas_entries`: paths whose cluster is remembered at most.
pub const DEFAULT_WHOHAS_ENTRIES: u64 = 100_000;

/// Katana's thumb_max_width / thumb_max_height / thumb_max_quality / thumb_default_quality.
pub const DEFAULT_RESIZE_MAX_WIDTH: u32 = 1920;
/// `resize.max_height`: the largest output height in pixels, after DPR.
pub const DEFAULT_RESIZE_MAX_HEIGHT: u32 = 1080;
/// `resize.max_quality`: the highest quality accepted (1 to 100).
pub const DEFAULT_RESIZE_MAX_QUALITY: u8 = 90;
/// `resize.default_quality`: the quality when a URL gives none.
pub const DEFAULT_RESIZE_DEFAULT_QUALITY: u8 = 75;
/// `resize.max_dpr`: the largest device pixel ratio accepted.
pub const DEFAULT_RESIZE_MAX_DPR: f32 = 4.0;
/// `resize.max_source_pixels`: sources with more pixels are refused before decoding.
pub const DEFAULT_RESIZE_MAX_SOURCE_PIXELS: u64 = 50_000_000;
/// `resize.max_source_bytes`: larger sources are refused.
pub const DEFAULT_RESIZE_MAX_SOURCE_BYTES: u64 = 50 * 1024 * 1024;
/// `resize.timeout`: time to get a transform slot and transform.
pub const DEFAULT_RESIZE_TIMEOUT: Duration = Duration::from_secs(10);
/// `resize.signature.capture`: the path capture holding a URL's signature.
pub const DEFAULT_SIGNATURE_CAPTURE: &str = "signature";
