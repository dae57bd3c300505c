//! The cache's request state machine.
//!
//! For a GET or HEAD on a `cache` rule: look the key up (memory, then lower tiers; a Vary
//! record leads to the request's variant), then
//! - fresh → answer from the cache (304 if the client's conditional matches, 206/416 for
//!   ranges, X-Accel-Redirect if configured);
//! - stale within `stale-while-revalidate` → answer stale and revalidate in the background;
//! - stale otherwise → revalidate (coalesced); a 304 refreshes the stored head, a failure
//!   within `stale-if-error` answers stale;
//! - missing → fetch (coalesced) and store, or pass the response through when it may not be
//!   stored.
//!
//! Requests that must not touch the cache (`Cache-Control: no-store`, a `Cookie` on a rule with
//! `cookies = "pass"`, HEAD misses) are passed through. Unsafe methods never reach this
//! module: the proxy forwards them and then calls [`Cache::invalidate`].

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, request};
use http_cache_semantics::BeforeRequest;
use kura_config::{CacheConfig, RuleCache};

use crate::body::CacheBody;
use crate::disk::DiskTier;
use crate::flight::Flights;
use crate::hit_for_pass::{self, HitForPass};
use crate::key;
use crate::memory::MemoryTier;
use crate::object::{Entry, Object};
use crate::origin::{Origin, OriginError};
use crate::policy::{self, CacheStatus, PolicyRequest, RequestDirectives};
use crate::range::{self, Wanted};
use crate::stats::{Capacity, Stats, StatsSnapshot};
use crate::tier::{Source, Storage, Tier};

/// One request for a `cache` rule.
pub struct CacheRequest {
    /// Method, origin-form URI and headers as they would be sent upstream (forwarding headers
    /// and rule edits applied); the client's conditional and Range headers are still in them.
    pub parts: request::Parts,
    /// The primary cache key.
    pub key: key::PrimaryKey,
    /// The matched rule's cache settings (TTL policy, cookies, stale windows, client max-age,
    /// X-Accel-Redirect prefix).
    pub rule: Arc<RuleCache>,
    /// The client's URL as keyed (`scheme://authority/path?query`), for a cluster owner to
    /// derive the rule and key itself. `None` without a cluster, and for what an image rule
    /// asks the cache for (its variants and their originals), which never go to an owner.
    pub target: Option<Arc<str>>,
}

impl CacheRequest {
    /// A copy for a task that outlives the request (a fill, a background revalidation).
    pub(crate) fn copy(&self) -> CacheRequest {
        CacheRequest {
            parts: clone_parts(&self.parts),
            key: self.key.clone(),
            rule: self.rule.clone(),
            target: self.target.clone(),
        }
    }
}

/// The result of a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged(pub usize);

/// The HTTP cache: its tiers, the fetches in flight and its counters. Opened once with
/// [`Cache::open`] and shared as an `Arc`.
pub struct Cache {
    pub(crate) storage: Storage,
    pub(crate) disk: Option<Arc<DiskTier>>,
    pub(crate) flights: Flights,
    pub(crate) stats: Arc<Stats>,
    pub(crate) segment_size: u64,
    pub(crate) prefetch: u32,
    pub(crate) lock_timeout: Duration,
    /// Keys whose last answer could not be stored: their requests pass.
    pub(crate) hit_for_pass: HitForPass,
    /// The tiers' configured sizes (they need a restart to change).
    pub(crate) capacity: Capacity,
}

/// How a stored object can be used for a request.
enum Use {
    Fresh,
    StaleWhileRevalidate(request::Parts),
    Revalidate(request::Parts),
    /// The stored response does not answer this request (e.g. a different variant).
    Mismatch,
}

impl Cache {
    /// Opens the tiers `cfg` describes (the disk tier's index is loaded before this returns).
    pub async fn open(cfg: &CacheConfig) -> io::Result<Arc<Cache>> {
        let stats = Arc::new(Stats::default());
        let flights = Flights::default();
        let disk = match &cfg.disk {
            Some(d) => {
                let d = d.clone();
                let s = stats.clone();
                let buffers = flights.buffers.clone();
                let tier = tokio::task::spawn_blocking(move || DiskTier::open(&d, s, buffers))
                    .await
                    .map_err(io::Error::other)??;
                Some(Arc::new(tier))
            }
            None => None,
        };
        let lower: Vec<Arc<dyn Tier>> = disk.iter().map(|d| d.clone() as Arc<dyn Tier>).collect();
        Ok(Arc::new(Cache {
            storage: Storage {
                memory: (cfg.memory_bytes > 0).then(|| MemoryTier::new(cfg.memory_bytes)),
                lower,
                stats: stats.clone(),
                memory_object_limit: cfg.memory_bytes / 8,
            },
            disk,
            flights,
            stats,
            segment_size: cfg.segment_size,
            prefetch: cfg.prefetch_segments,
            lock_timeout: cfg.lock_timeout,
            hit_for_pass: HitForPass::new(hit_for_pass::MAX_MARKS, hit_for_pass::MARK_TTL),
            capacity: Capacity::of(cfg),
        }))
    }

    /// The counters now, with the memory tier's size (admin API `/cache`, Prometheus metrics).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(self.storage.memory_bytes())
    }

    /// The tiers' configured sizes: the memory tier's and the disk tier's two marks (admin API
    /// `/cache`, the dashboard).
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Waits for queued disk writes (tests and shutdown).
    pub async fn flush(&self) {
        if let Some(m) = &self.storage.memory {
            m.sync();
        }
        if let Some(d) = &self.disk {
            d.flush().await;
        }
    }

    /// Segment fetches in progress across all objects (tests and reports).
    pub fn segments_in_flight(&self) -> usize {
        self.flights.segments_in_flight()
    }

    /// How many segments of one object may be fetched and not yet stored at once: the reader's
    /// read-ahead twice over, so a reader keeps ahead of the origin while a slow disk holds it
    /// back instead of letting fetched segments pile up in memory.
    pub(crate) fn segment_flight_limit(&self) -> usize {
        2 * self.prefetch as usize + 1
    }

    /// Answers a GET or HEAD for a `cache` rule.
    pub async fn serve(
        self: &Arc<Self>,
        req: CacheRequest,
        origin: Arc<dyn Origin>,
    ) -> Result<Response<CacheBody>, OriginError> {
        let dirs = policy::request_directives(&req.parts.headers);
        let cookie_pass = req.rule.cookies == kura_config::CookiePolicy::Pass
            && req.parts.headers.contains_key(header::COOKIE);
        if dirs.no_store || cookie_pass {
            return self.pass(&req, origin, "bypass").await;
        }
        let now = SystemTime::now();
        if let Some((obj, source)) = self.lookup(&req).await
            && may_serve(&obj, &req)
        {
            match self.usable(&obj, &req, &dirs, now) {
                Use::Fresh => {
                    self.count_hit(&obj, source);
                    let status = CacheStatus {
                        hit: true,
                        ttl: Some(obj.ttl_secs(now)),
                        ..Default::default()
                    };
                    return Ok(self.respond(&obj, &req, origin, status, now).await);
                }
                Use::StaleWhileRevalidate(reval) => {
                    self.count_hit(&obj, source);
                    Stats::inc(&self.stats.stale_served);
                    self.spawn_revalidation(&obj, &req, origin.clone(), reval);
                    let status = CacheStatus {
                        hit: true,
                        ttl: Some(obj.ttl_secs(now)),
                        detail: Some("stale-while-revalidate"),
                        ..Default::default()
                    };
                    return Ok(self.respond(&obj, &req, origin, status, now).await);
                }
                Use::Revalidate(reval) => {
                    return self.revalidate(obj, &req, origin, reval, &dirs).await;
                }
                Use::Mismatch => {}
            }
        }
        if dirs.only_if_cached {
            return Ok(generated(
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: not cached",
            ));
        }
        Stats::inc(&self.stats.misses);
        if req.parts.method == Method::HEAD {
            return self.pass(&req, origin, "miss").await;
        }
        if let Some(marked) = self.hit_for_pass.remembers(&req.key) {
            return self.pass_remembered(&req, origin, marked).await;
        }
        self.fill(&req, origin, None).await
    }

    /// The stored object for the request's key (following a Vary record).
    pub(crate) async fn lookup(&self, req: &CacheRequest) -> Option<(Arc<Object>, Source)> {
        let (entry, source) = match self.storage.entry_hot(req.key.as_str()) {
            Some(e) => (e, Source::Memory),
            None => self.storage.entry_below(req.key.as_str()).await?,
        };
        match entry {
            Entry::Object(o) => Some((o, source)),
            Entry::Vary(v) => {
                let vk = key::variant_key(req.key.as_str(), &v.names, &req.parts.headers);
                let (entry, source) = match self.storage.entry_hot(&vk) {
                    Some(e) => (e, Source::Memory),
                    None => self.storage.entry_below(&vk).await?,
                };
                match entry {
                    Entry::Object(o) => Some((o, source)),
                    Entry::Vary(_) => None,
                }
            }
        }
    }

    /// Counts a hit by the tier its body comes from: an object too large for memory is a disk
    /// hit even though its head is kept in memory.
    fn count_hit(&self, obj: &Object, source: Source) {
        let source = match source {
            Source::Memory => self.storage.body_source(obj),
            lower => lower,
        };
        let c = match source {
            Source::Memory => &self.stats.hits_memory,
            Source::Lower("disk") => &self.stats.hits_disk,
            Source::Lower(_) => &self.stats.hits_other,
        };
        Stats::inc(c);
    }

    fn usable(
        &self,
        obj: &Object,
        req: &CacheRequest,
        dirs: &RequestDirectives,
        now: SystemTime,
    ) -> Use {
        // The common case needs no policy evaluation: a plain request, a fresh object.
        if !dirs.has_directives && obj.is_fresh(now) {
            return Use::Fresh;
        }
        // HEAD is answered from a stored GET; the policy sees the GET it was stored for.
        let method = if req.parts.method == Method::HEAD {
            &Method::GET
        } else {
            &req.parts.method
        };
        let preq = PolicyRequest {
            method,
            uri: &req.parts.uri,
            headers: &req.parts.headers,
        };
        match obj.policy.before_request(&preq, now) {
            BeforeRequest::Fresh(_) => Use::Fresh,
            BeforeRequest::Stale { request, matches } => {
                if !matches {
                    return Use::Mismatch;
                }
                let swr_ok = !obj.must_revalidate
                    && !dirs.no_cache
                    && !obj.is_fresh(now)
                    && obj.staleness(now) <= obj.stale_while_revalidate
                    && !obj.stale_while_revalidate.is_zero();
                if swr_ok {
                    Use::StaleWhileRevalidate(request)
                } else {
                    Use::Revalidate(request)
                }
            }
        }
    }

    /// Forwards the request as is and streams the answer back, storing nothing.
    pub(crate) async fn pass(
        &self,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        fwd: &'static str,
    ) -> Result<Response<CacheBody>, OriginError> {
        let status = CacheStatus {
            fwd: Some(fwd),
            ..Default::default()
        };
        self.forward(req, origin, status, |_| {}).await
    }

    /// A pass for a key whose last answer could not be stored: the request goes as the client
    /// sent it, not coalesced and without the fill's first-segment Range. Any storable answer
    /// (a 206 to a Range client too) lifts the mark, so the next request fills again; only a
    /// whole 200 that still may not be stored renews it, so answers shaped by one client's
    /// request (206, 304, 412, 416) or an error status never keep the key passing.
    async fn pass_remembered(
        &self,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        marked: std::time::Instant,
    ) -> Result<Response<CacheBody>, OriginError> {
        Stats::inc(&self.stats.passes_remembered);
        let status = CacheStatus {
            fwd: Some("miss"),
            detail: Some("pass-remembered"),
            ..Default::default()
        };
        self.forward(req, origin, status, |head| {
            let now = SystemTime::now();
            match policy::evaluate(&req.parts, head.status, &head.headers, &req.rule, now) {
                Ok(_) => self.hit_for_pass.forget(&req.key),
                Err(reason) => {
                    self.hit_for_pass
                        .renew(&req.key, head.status, reason, marked);
                }
            }
        })
        .await
    }

    /// Sends the request as it is, lets `inspect` see the answer's head, and streams the
    /// answer back with `status` (its `fwd-status` filled in), storing nothing.
    async fn forward(
        &self,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        mut status: CacheStatus,
        inspect: impl FnOnce(&http::response::Parts),
    ) -> Result<Response<CacheBody>, OriginError> {
        Stats::inc(&self.stats.passes);
        Stats::inc(&self.stats.origin_fetches);
        let mut parts = clone_parts(&req.parts);
        parts.extensions.insert(fetch_info(req, true));
        let resp = origin.fetch(parts).await?;
        let (mut parts, body) = resp.into_parts();
        inspect(&parts);
        status.fwd_status = Some(parts.status.as_u16());
        parts.headers.insert("cache-status", status.value());
        Ok(Response::from_parts(parts, CacheBody::Origin(body)))
    }

    /// Builds the answer from a stored object.
    pub(crate) async fn respond(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        status: CacheStatus,
        now: SystemTime,
    ) -> Response<CacheBody> {
        self.respond_seated(obj, req, origin, status, now, None)
            .await
    }

    /// As [`Cache::respond`], with the reader's seat in a whole-body fill, if it has one.
    pub(crate) async fn respond_seated(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        status: CacheStatus,
        now: SystemTime,
        seat: Option<crate::flight::Seat>,
    ) -> Response<CacheBody> {
        let h = &req.parts.headers;
        let age = HeaderValue::from(obj.age(now).as_secs());
        let conditional =
            h.contains_key(header::IF_NONE_MATCH) || h.contains_key(header::IF_MODIFIED_SINCE);
        if conditional && obj.status == StatusCode::OK && policy::not_modified(h, &obj.headers) {
            let mut r = Response::new(CacheBody::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = policy::not_modified_headers(&obj.headers);
            r.headers_mut().insert(header::AGE, age);
            r.headers_mut().insert("cache-status", status.value());
            self.client_max_age(&mut r, &req.rule, now);
            return r;
        }
        let mut headers = obj.headers.clone();
        headers.insert(header::AGE, age);
        headers.insert("cache-status", status.value());
        let mut code = obj.status;
        let mut span = obj.length.map(|len| (0, len));
        if obj.status == StatusCode::OK
            && let Some(len) = obj.length
            && let Some(spec) = h
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range::parse)
            && if_range_holds(h, obj)
        {
            match spec.resolve(len) {
                Wanted::Part { start, end } => {
                    code = StatusCode::PARTIAL_CONTENT;
                    span = Some((start, end + 1));
                    headers.insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                            .expect("ascii"),
                    );
                }
                Wanted::Unsatisfiable => {
                    let mut r = Response::new(CacheBody::Empty);
                    *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
                    );
                    r.headers_mut().insert("cache-status", status.value());
                    return r;
                }
                Wanted::Full => {}
            }
        }
        if let Some((start, end)) = span {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        }
        let mut r = Response::new(CacheBody::Empty);
        *r.status_mut() = code;
        *r.headers_mut() = headers;
        self.client_max_age(&mut r, &req.rule, now);
        if req.parts.method == Method::HEAD {
            return r;
        }
        if code == StatusCode::OK
            && let (Some(prefix), Some(disk)) = (&req.rule.accel_redirect, &self.disk)
            && let Some(path) = disk.accel_path(obj).await
        {
            let h = r.headers_mut();
            h.remove(header::CONTENT_LENGTH);
            if let Ok(v) = HeaderValue::from_str(&format!("{prefix}/{path}")) {
                h.insert("x-accel-redirect", v);
            }
            return r;
        }
        *r.body_mut() = match span {
            Some((start, end)) if start == end => CacheBody::Empty,
            Some((start, end)) => {
                match (obj.segment_count(), self.storage.segment_hot(obj, 0)) {
                    // A single segment in memory: no reader machinery.
                    (Some(1), Some(b)) => {
                        CacheBody::Full(Some(b.slice(start as usize..end as usize)))
                    }
                    _ => CacheBody::segments(
                        self.clone(),
                        obj.clone(),
                        origin,
                        template(req),
                        (start, Some(end)),
                        seat,
                    ),
                }
            }
            None => CacheBody::segments(
                self.clone(),
                obj.clone(),
                origin,
                template(req),
                (0, None),
                seat,
            ),
        };
        r
    }

    /// Applies the rule's client max-age (Katana's external_expires).
    /// Only `max-age` and `s-maxage` are replaced: who may cache the answer downstream
    /// (`private`, `no-store`, `no-cache`…) stays the origin's word.
    fn client_max_age(&self, r: &mut Response<CacheBody>, rule: &RuleCache, now: SystemTime) {
        if let Some(age) = rule.client_max_age {
            let h = r.headers_mut();
            let mut parts: Vec<String> = policy::directives(h)
                .into_iter()
                .filter(|(n, _)| n != "max-age" && n != "s-maxage")
                .map(|(n, v)| match v {
                    Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => format!("{n}={v}"),
                    Some(v) => format!("{n}=\"{v}\""),
                    None => n,
                })
                .collect();
            parts.push(format!("max-age={}", age.as_secs()));
            if let Ok(v) = HeaderValue::from_str(&parts.join(", ")) {
                h.insert(header::CACHE_CONTROL, v);
            }
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(policy::later(now, age)))
            {
                h.insert(header::EXPIRES, v);
            }
        }
    }

    /// Removes what is stored for `primary` and its variants (after an unsafe method).
    pub async fn invalidate(&self, primary: &str) {
        Stats::inc(&self.stats.invalidations);
        if let Some((Entry::Vary(_), _)) = self.storage.entry(primary).await {
            self.storage
                .purge_prefix(&format!("{primary}{}", key::VARIANT_SEP))
                .await;
        }
        self.storage.remove(primary);
    }

    /// Purges one key (with its variants).
    pub async fn purge_key(&self, primary: &str) -> Purged {
        let found = self.storage.entry(primary).await.is_some();
        self.invalidate(primary).await;
        Purged(usize::from(found))
    }

    /// Purges every key starting with `prefix`.
    pub async fn purge_prefix(&self, prefix: &str) -> Purged {
        Purged(self.storage.purge_prefix(prefix).await)
    }

    /// Empties every tier; the count is the largest number of entries any tier held.
    pub async fn purge_all(&self) -> Purged {
        Purged(self.storage.purge_all().await)
    }

    /// Builds a generated answer (errors the cache itself decides).
    pub fn error_response(status: StatusCode, message: &str) -> Response<CacheBody> {
        generated(status, message)
    }
}

/// Whether a stored object may answer this request at all: one stored without the origin's
/// leave to share it with authenticated users (`public`, `s-maxage`, `must-revalidate`) never
/// answers a request carrying `Authorization`. Every path that hands a stored object to a
/// request (lookup, a coalesced fill, a fill that found the object stored) asks this.
pub(crate) fn may_serve(obj: &Object, req: &CacheRequest) -> bool {
    obj.allows_auth || !req.parts.headers.contains_key(header::AUTHORIZATION)
}

/// What an origin learns of the cache's fetch (made only when a fetch may happen, so hits
/// do not pay for it).
fn fetch_info(req: &CacheRequest, pass: bool) -> crate::origin::FetchInfo {
    crate::origin::FetchInfo {
        key: req.key.as_str().into(),
        rule: req.key.rule(),
        target: req.target.clone(),
        pass,
        prefetch: req
            .parts
            .extensions
            .get::<crate::origin::PeerRequest>()
            .is_none(),
    }
}

/// The request sent to origins for this request's fills: no client conditionals, no Range.
pub(crate) fn template(req: &CacheRequest) -> Arc<request::Parts> {
    let mut t = clone_parts(&req.parts);
    t.extensions.insert(fetch_info(req, false));
    for h in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        t.headers.remove(h);
    }
    t.method = Method::GET;
    Arc::new(t)
}

pub(crate) fn clone_parts(p: &request::Parts) -> request::Parts {
    let mut b = http::Request::builder()
        .method(p.method.clone())
        .uri(p.uri.clone())
        .version(p.version);
    if let Some(h) = b.headers_mut() {
        *h = p.headers.clone();
    }
    if let Some(info) = p.extensions.get::<crate::origin::FetchInfo>() {
        b = b.extension(info.clone());
    }
    if let Some(peer) = p.extensions.get::<crate::origin::PeerRequest>() {
        b = b.extension(*peer);
    }
    b.body(()).expect("valid parts").into_parts().0
}

/// `If-Range` absent, or matching the stored validator exactly (a strong ETag or the date).
fn if_range_holds(h: &http::HeaderMap, obj: &Object) -> bool {
    match h.get(header::IF_RANGE) {
        None => true,
        Some(v) => {
            let v = v.as_bytes();
            if v.starts_with(b"\"") {
                obj.etag().is_some_and(|e| e.as_bytes() == v)
            } else if v.starts_with(b"W/") {
                false
            } else {
                obj.last_modified().is_some_and(|lm| lm.as_bytes() == v)
            }
        }
    }
}

fn generated(status: StatusCode, message: &str) -> Response<CacheBody> {
    let mut r = Response::new(CacheBody::Full(Some(Bytes::from(format!("{message}\n")))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}
