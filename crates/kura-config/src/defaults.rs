//! Every default in one place, so `docs/configuration.md` and the code cannot drift apart
//! unnoticed (a test in `tests.rs` checks the documented values against these).

use std::time::Duration;

pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_VIA: &str = "kura";
/// Work stealing keeps tail latency low when the cores are shared with other busy processes;
/// thread-per-core (false) is cheaper per request on cores kura has to itself.
pub const DEFAULT_WORK_STEALING: bool = true;

pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Smaller header limits would refuse ordinary browser requests.
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's proxy_read_timeout: a WebSocket silent both ways this long is closed.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `send_timeout`.
/// Connections open at once on the admin listener.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Connections open at once on the cluster's peer listener.
pub const DEFAULT_PEER_MAX_CONNECTIONS: usize = 256;
/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN: usize = 16;
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_UPGRADED: usize = 1024;
/// `Upgrade` protocols a rule relays unless it says otherwise.
pub const DEFAULT_UPGRADES: &[&str] = &["websocket"];
/// nginx's `http2_max_concurrent_streams`.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
pub const DEFAULT_HTTP2_STREAM_BUFFER: u64 = 256 * 1024;

pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_HTTPS_PORT: u16 = 443;

pub const DEFAULT_REDIS_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Hipache's deadBackendTTL.
pub const DEFAULT_REDIS_DEAD_BACKEND_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_REDIS_CONFIGURE_NOTIFICATIONS: bool = true;

pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_ACCESS_LOG_BUFFER_LINES: usize = 65_536;
/// Error pages larger than this are refused, to keep memory bounded.
pub const MAX_ERROR_PAGE_BYTES: u64 = 1024 * 1024;

pub const DEFAULT_MAX_CONNECTIONS_PER_BACKEND: usize = 256;
pub const DEFAULT_MAX_IDLE_PER_BACKEND: usize = 128;
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_DEAD_BACKEND_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_FAILS: u32 = 1;
pub const DEFAULT_RETRIES: u32 = 2;

pub const DEFAULT_HEALTH_PATH: &str = "/";
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

pub const DEFAULT_CACHE_MEMORY: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_DISK: u64 = 1024 * 1024 * 1024;
/// Default cleaned-to mark, as a fraction of `max_disk` (Casserole: 800M of 1G).
pub const DEFAULT_CLEANED_DISK_RATIO: f64 = 0.8;
pub const DEFAULT_SEGMENT_SIZE: u64 = 2 * 1024 * 1024;
pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
pub const MAX_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_PREFETCH_SEGMENTS: u32 = 4;
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CACHE_KEY: &str = "{scheme}://{authority}{path}?{query}";
/// Targeted cache-control fields obeyed by default (RFC 9213).
pub const DEFAULT_TARGETED_CACHE_CONTROL: &[&str] = &["cdn-cache-control"];

pub const DEFAULT_SHADOW_QUEUE: usize = 256;
pub const DEFAULT_SHADOW_CONCURRENCY: usize = 32;
/// With the queue and concurrency defaults, shadowing holds at most ~300 MiB even when every
/// body is at the limit.
pub const DEFAULT_SHADOW_MAX_REQUEST_BODY: u64 = 256 * 1024;
pub const DEFAULT_SHADOW_MAX_COMPARE_BODY: u64 = 256 * 1024;
pub const DEFAULT_SHADOW_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHADOW_MARKER_HEADER: &str = "x-kura-shadow";
/// Diffy's defaults: 20% relative, 3 points absolute.
pub const DEFAULT_SHADOW_RELATIVE_THRESHOLD: f64 = 0.2;
pub const DEFAULT_SHADOW_ABSOLUTE_THRESHOLD: f64 = 0.03;
pub const DEFAULT_SHADOW_MAX_ENDPOINTS: usize = 1000;
pub const DEFAULT_SHADOW_MAX_FIELDS: usize = 200;
pub const DEFAULT_SHADOW_EXAMPLES: usize = 5;
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

pub const DEFAULT_ETCD_PREFIX: &str = "/kura/members/";
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PEER_DOWN_TTL: Duration = Duration::from_secs(10);
/// Shorter secrets are refused: the peer listener trusts whoever knows it.
pub const MIN_CLUSTER_SECRET_LEN: usize = 16;

pub const DEFAULT_WHOHAS_TTL: Duration = Duration::from_secs(600);
pub const DEFAULT_WHOHAS_ENTRIES: u64 = 100_000;

/// Katana's thumb_max_width / thumb_max_height / thumb_max_quality / thumb_default_quality.
pub const DEFAULT_RESIZE_MAX_WIDTH: u32 = 1920;
pub const DEFAULT_RESIZE_MAX_HEIGHT: u32 = 1080;
pub const DEFAULT_RESIZE_MAX_QUALITY: u8 = 90;
pub const DEFAULT_RESIZE_DEFAULT_QUALITY: u8 = 75;
pub const DEFAULT_RESIZE_MAX_DPR: f32 = 4.0;
pub const DEFAULT_RESIZE_MAX_SOURCE_PIXELS: u64 = 50_000_000;
pub const DEFAULT_RESIZE_MAX_SOURCE_BYTES: u64 = 50 * 1024 * 1024;
pub const DEFAULT_RESIZE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SIGNATURE_CAPTURE: &str = "signature";
