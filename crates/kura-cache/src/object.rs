//! What the cache stores: an [`Object`] is one version of one response (status, headers,
//! policy, length) whose body lives in segments of `segment_size` bytes, stored separately and
//! keyed by the object's `version`. A primary key holds either an object or, when the response
//! varies, a [`Entry::Vary`] record naming the headers its variants are keyed by.
//!
//! Objects are immutable once built (`Arc`); a revalidation or a completed length makes a new
//! `Object` with the same version (same body), a changed body a new version.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_cache_semantics::CachePolicy;

/// One stored response.
#[derive(Debug, Clone)]
pub struct Object {
    /// The full (primary or variant) key; compared on read to rule out hash collisions.
    pub key: String,
    /// Names this body; segments are stored under `(version, index)`.
    pub version: u64,
    /// The status answered with (a 206 to the first-segment request is stored as 200).
    pub status: StatusCode,
    /// Headers sent to clients: the origin's, less hop-by-hop headers and `Age` (its `Date` is
    /// kept as received, or as a 304 refreshed it); `Age` and `Cache-Status` are set at send.
    pub headers: HeaderMap,
    /// RFC 9111 rules for reuse, built from the response as adjusted by the rule's TTL policy.
    pub policy: CachePolicy,
    /// Body length, when known (always, once the body is complete).
    pub length: Option<u64>,
    /// Bytes per segment, fixed when stored; only the last segment may be shorter.
    pub segment_size: u64,
    /// The origin serves byte ranges of it: missing segments can be fetched on their own.
    pub ranged: bool,
    /// When it was stored, or last refreshed by a 304.
    pub stored_at: SystemTime,
    /// The end of freshness (with the rule's TTL policy applied).
    pub fresh_until: SystemTime,
    /// `Age` at `stored_at`.
    pub age_at_store: Duration,
    /// How long past freshness it may be served while revalidating in the background.
    pub stale_while_revalidate: Duration,
    /// How long past freshness it may be served when the origin fails.
    pub stale_if_error: Duration,
    /// `must-revalidate`, `proxy-revalidate` or `no-cache`: never served stale.
    pub must_revalidate: bool,
    /// May answer requests carrying `Authorization` (`public`, `s-maxage`, `must-revalidate`).
    pub allows_auth: bool,
}

impl Object {
    /// Number of segments, when the length is known (an empty body has none).
    pub fn segment_count(&self) -> Option<u32> {
        self.length
            .map(|len| len.div_ceil(self.segment_size).min(u32::MAX as u64) as u32)
    }

    /// Byte offset of segment `i`.
    pub fn segment_start(&self, i: u32) -> u64 {
        i as u64 * self.segment_size
    }

    /// Expected length of segment `i` when the object length is known.
    pub fn segment_len(&self, i: u32) -> Option<u64> {
        let len = self.length?;
        let start = self.segment_start(i);
        (start < len).then(|| (len - start).min(self.segment_size))
    }

    /// Its age at `now`: `age_at_store` plus the time since `stored_at` (sent as `Age`).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.age_at_store
            .saturating_add(now.duration_since(self.stored_at).unwrap_or_default())
    }

    /// Whether `now` is before `fresh_until` (no request directives considered).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// How long it has been stale (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// Seconds of freshness left, negative once stale (for `Cache-Status: ttl`).
    pub fn ttl_secs(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(d) => d.as_secs().min(i64::MAX as u64) as i64,
            Err(e) => -(e.duration().as_secs().min(i64::MAX as u64) as i64),
        }
    }

    /// The stored `ETag`, if any.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }

    /// The stored `Last-Modified`, if any.
    pub fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(header::LAST_MODIFIED)
    }

    /// The validator for `If-Range`: a strong ETag, else Last-Modified.
    pub fn if_range_validator(&self) -> Option<HeaderValue> {
        match self.etag() {
            Some(e) if !e.as_bytes().starts_with(b"W/") => Some(e.clone()),
            _ => self.last_modified().cloned(),
        }
    }

    /// Bytes the object's head takes in memory (for the memory tier's weigher): the headers,
    /// and the policy, which keeps its own copy of them, their parsed directives and the
    /// request headers it reads later, plus the key (also the tier's) and the entry's own
    /// overhead. Measured, not guessed: a head with eight common headers costs about 3.5 KiB
    /// (policy, headers, object, entry); this estimate gives 3.6 KiB.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        (1024 + 2 * self.key.len() + 5 * headers).min(u32::MAX as usize) as u32
    }
}

/// What a key maps to.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A stored response, under its primary key or, when it varies, its variant key.
    Object(Arc<Object>),
    /// The response at this primary key varies on these request headers (sorted, lowercase).
    Vary(Arc<VaryRecord>),
}

/// What a primary key holds when its response varies: the request headers that pick the
/// variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryRecord {
    /// The primary key it is stored under.
    pub key: String,
    /// The `Vary` header names, lowercase and sorted, fed to [`crate::key::variant_key`].
    pub names: Vec<HeaderName>,
}

impl Entry {
    /// The full key the entry is stored under.
    pub fn key(&self) -> &str {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Vary(v) => &v.key,
        }
    }

    /// Estimated bytes it takes in memory (the memory tier's weigher).
    pub fn weight(&self) -> u32 {
        match self {
            Entry::Object(o) => o.weight(),
            Entry::Vary(v) => 128 + v.key.len() as u32,
        }
    }
}
