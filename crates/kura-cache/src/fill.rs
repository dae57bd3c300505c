//! Origin fetches that fill the cache, and the pumps that store what they receive.
//!
//! A miss asks the origin for the first segment (`Range: bytes=0-(S-1)`), as nginx's slice
//! module does: a 206 tells the object's length and that the origin serves ranges, so later
//! segments are fetched on their own when a reader needs them; a 200 (an origin ignoring
//! ranges) is cut into segments as it streams. The fetch runs in its own task and publishes its
//! outcome to every request that waited on it, so a client that leaves does not cancel a fill
//! others are waiting for. Segment fetches carry `If-Range` and their answers are checked
//! against the object's length and validators: a changed object is never stitched.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, request};
use http_body_util::BodyExt;

use crate::body::CacheBody;
use crate::engine::{Cache, CacheRequest, clone_parts, template};
use crate::flight::{Joined, Outcome, Seat, SegmentFlight};
use crate::key;
use crate::object::{Entry, Object, VaryRecord};
use crate::origin::{FromPeer, Origin, OriginBody, OriginError};
use crate::policy::{self, CacheStatus, NoStore, RequestDirectives};
use crate::range;
use crate::stats::Stats;

/// What the task that led a fill hands to the request that started it.
enum Led {
    /// Stored; for a whole-body fill, the leading request's seat (taken before the fill ran).
    Stored(Arc<Object>, Option<u16>, Option<Seat>),
    Pass(Response<CacheBody>),
    Failed(OriginError),
}

/// Ends what a fill task leads when the task ends without doing so itself (a panic, or the
/// runtime dropping it at shutdown): waiters get a failure at once instead of waiting
/// `lock_timeout`, readers of a segment see it fail instead of waiting for ever, and the key
/// or segment can be fetched again. On the normal paths everything is already ended and the
/// guard finds nothing to do.
struct TaskGuard {
    cache: Arc<Cache>,
    object: Option<(String, Arc<crate::flight::ObjectFlight>)>,
    segment: Option<(u64, u32, Arc<SegmentFlight>)>,
    stream: Option<u64>,
}

impl TaskGuard {
    fn new(cache: &Arc<Cache>) -> Self {
        TaskGuard {
            cache: cache.clone(),
            object: None,
            segment: None,
            stream: None,
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let flights = &self.cache.flights;
        if let Some((key, f)) = &self.object {
            if !f.is_finished() {
                f.finish(Outcome::Failed(OriginError::described(
                    StatusCode::BAD_GATEWAY,
                    "cache fill task ended",
                )));
            }
            flights.end_object(key, f);
        }
        if let Some((version, index, f)) = &self.segment
            && !f.is_done()
        {
            f.finish(false, &flights.buffers);
            flights.end_segment_flight(*version, *index, f);
        }
        if let Some(version) = self.stream {
            if let Some(s) = flights.stream(version) {
                s.finish();
            }
            flights.end_stream(version);
            flights.fail_segments_of(version);
        }
    }
}

impl Cache {
    /// Fetches and stores (or passes through) a missing or changed object; coalesced per key.
    pub(crate) async fn fill(
        self: &Arc<Self>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        reval: Option<(Arc<Object>, request::Parts)>,
    ) -> Result<Response<CacheBody>, OriginError> {
        let flight_key = match &reval {
            Some((obj, _)) => obj.key.clone(),
            None => req.key.as_str().to_string(),
        };
        let revalidating = reval.is_some();
        match self.flights.join_object(&flight_key) {
            Joined::Follow(f) => {
                Stats::inc(&self.stats.coalesced);
                let mut rx = f.subscribe();
                let outcome = {
                    match tokio::time::timeout(self.lock_timeout, rx.wait_for(|o| o.is_some()))
                        .await
                    {
                        Ok(Ok(o)) => o.clone(),
                        _ => None,
                    }
                };
                match outcome {
                    Some(Outcome::Stored(obj)) if self.answers(&obj, req) => {
                        let status = CacheStatus {
                            fwd: Some(if revalidating { "stale" } else { "miss" }),
                            collapsed: true,
                            ..Default::default()
                        };
                        Ok(self
                            .respond(&obj, req, origin, status, SystemTime::now())
                            .await)
                    }
                    Some(Outcome::Failed(e)) => Err(e),
                    // Not stored, another variant, or the leader is too slow: fetch alone.
                    _ => self.pass(req, origin, "miss").await,
                }
            }
            Joined::Lead(f) => {
                // A fill that ended between this request's lookup and now has stored the
                // object: use it rather than fetching again.
                if !revalidating
                    && let Some((obj, _)) = self.lookup(req).await
                    && obj.is_fresh(SystemTime::now())
                    && self.answers(&obj, req)
                {
                    f.finish(Outcome::Stored(obj.clone()));
                    self.flights.end_object(&flight_key, &f);
                    let status = CacheStatus {
                        hit: true,
                        ttl: Some(obj.ttl_secs(SystemTime::now())),
                        ..Default::default()
                    };
                    return Ok(self
                        .respond(&obj, req, origin, status, SystemTime::now())
                        .await);
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                let cache = self.clone();
                let task_req = req.copy();
                let task_origin = origin.clone();
                spawn_in_span(async move {
                    let mut guard = TaskGuard::new(&cache);
                    guard.object = Some((flight_key.clone(), f.clone()));
                    let led = cache.lead(&task_req, task_origin, reval).await;
                    let outcome = match &led {
                        Led::Stored(o, _, _) => Outcome::Stored(o.clone()),
                        Led::Pass(_) => Outcome::Pass,
                        Led::Failed(e) => Outcome::Failed(e.clone()),
                    };
                    f.finish(outcome);
                    cache.flights.end_object(&flight_key, &f);
                    let _ = tx.send(led);
                });
                match rx.await {
                    Ok(Led::Stored(obj, fwd_status, seat)) => {
                        let status = CacheStatus {
                            fwd: Some(if revalidating { "stale" } else { "miss" }),
                            fwd_status,
                            stored: true,
                            ..Default::default()
                        };
                        Ok(self
                            .respond_seated(&obj, req, origin, status, SystemTime::now(), seat)
                            .await)
                    }
                    Ok(Led::Pass(resp)) => Ok(resp),
                    Ok(Led::Failed(e)) => Err(e),
                    Err(_) => Err(OriginError::described(
                        StatusCode::BAD_GATEWAY,
                        "cache fill task ended",
                    )),
                }
            }
        }
    }

    /// Whether a stored object answers this request (its variant is the request's, and it
    /// may be served to it).
    fn answers(&self, obj: &Object, req: &CacheRequest) -> bool {
        if !crate::engine::may_serve(obj, req) {
            return false;
        }
        match key::vary_names(&obj.headers) {
            Some(names) if names.is_empty() => obj.key == req.key.as_str(),
            Some(names) => {
                key::variant_key(req.key.as_str(), &names, &req.parts.headers) == obj.key
            }
            None => false,
        }
    }

    /// The leader's fetch: ask the origin, then store or pass what it says.
    async fn lead(
        self: &Arc<Self>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        reval: Option<(Arc<Object>, request::Parts)>,
    ) -> Led {
        let base = template(req);
        let mut parts = clone_parts(&base);
        if let Some((_, r)) = &reval {
            for h in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
                if let Some(v) = r.headers.get(&h) {
                    parts.headers.insert(h, v.clone());
                }
            }
        }
        let first = self.segment_size - 1;
        parts.headers.insert(
            header::RANGE,
            HeaderValue::from_str(&format!("bytes=0-{first}")).expect("ascii"),
        );
        Stats::inc(&self.stats.origin_fetches);
        let resp = match origin.fetch(parts).await {
            Ok(r) => r,
            Err(e) => return Led::Failed(e),
        };
        let (head, body) = resp.into_parts();
        match head.status {
            StatusCode::NOT_MODIFIED => match &reval {
                Some((obj, _)) => self.refresh(req, obj, &head.headers),
                // A 304 nobody asked for: pass it on.
                None => Led::Pass(Response::from_parts(head, CacheBody::Origin(body))),
            },
            StatusCode::PARTIAL_CONTENT => self.accept_partial(req, origin, head, body).await,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Usually an empty object (`bytes */0`): ask again without a range.
                Stats::inc(&self.stats.origin_fetches);
                match origin.fetch(clone_parts(&base)).await {
                    Ok(r) => {
                        let (h, b) = r.into_parts();
                        self.accept_whole(req, h, b)
                    }
                    Err(e) => Led::Failed(e),
                }
            }
            _ => self.accept_whole(req, head, body),
        }
    }

    /// A 304 to a revalidation: the stored body is still good; refresh its head.
    fn refresh(&self, req: &CacheRequest, obj: &Arc<Object>, fresh: &HeaderMap) -> Led {
        Stats::inc(&self.stats.revalidated);
        let mut merged = policy::merge_304(&obj.headers, fresh);
        let now = SystemTime::now();
        match policy::evaluate(&req.parts, obj.status, &merged, &req.rule, now) {
            Ok(v) => {
                for f in &v.strip {
                    merged.remove(f);
                }
                let refreshed = Arc::new(Object {
                    headers: merged,
                    policy: v.policy,
                    stored_at: now,
                    fresh_until: v.fresh_until,
                    age_at_store: v.age_at_store,
                    stale_while_revalidate: v.stale_while_revalidate,
                    stale_if_error: v.stale_if_error,
                    must_revalidate: v.must_revalidate,
                    allows_auth: v.allows_auth,
                    ..(**obj).clone()
                });
                self.storage.put_entry(&Entry::Object(refreshed.clone()));
                Led::Stored(refreshed, Some(304), None)
            }
            Err(_) => {
                // No longer storable: answer from the old body this once, then forget it.
                self.storage.remove(&obj.key);
                let once = Arc::new(Object {
                    headers: merged,
                    fresh_until: now,
                    ..(**obj).clone()
                });
                Led::Stored(once, Some(304), None)
            }
        }
    }

    /// A 206 to the first-segment request.
    async fn accept_partial(
        self: &Arc<Self>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        head: http::response::Parts,
        body: OriginBody,
    ) -> Led {
        let cr = head
            .headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(range::parse_content_range);
        let total = match cr {
            Some(c)
                if c.start == 0
                    && c.total
                        .is_some_and(|t| c.end + 1 == t.min(self.segment_size)) =>
            {
                c.total.unwrap_or(0)
            }
            // An unexpected range: start over without one, streaming through.
            _ => return self.refetch_plain(req, origin).await,
        };
        let mut headers = head.headers.clone();
        headers.remove(header::CONTENT_RANGE);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        let now = SystemTime::now();
        match policy::evaluate(&req.parts, StatusCode::OK, &headers, &req.rule, now) {
            Ok(v) => {
                let obj = self.store_head(req, StatusCode::OK, headers, v, Some(total), true, now);
                let segment = match self.flights.join_segment(obj.version, 0) {
                    Joined::Lead(f) => f,
                    Joined::Follow(_) => return Led::Stored(obj, Some(206), None),
                };
                let cache = self.clone();
                let o = obj.clone();
                let lower = head.extensions.get::<FromPeer>().is_none();
                spawn_in_span(async move {
                    let mut guard = TaskGuard::new(&cache);
                    guard.segment = Some((o.version, 0, segment.clone()));
                    cache.pump_segment(&o, 0, body, segment, lower).await
                });
                Led::Stored(obj, Some(206), None)
            }
            Err(reason) if total <= self.segment_size => {
                // The whole (small) body came: hand it over as a 200.
                self.count_pass(req, StatusCode::OK, reason);
                let mut parts = head;
                parts.status = StatusCode::OK;
                parts.headers = headers;
                parts
                    .headers
                    .insert("cache-status", pass_status(200, reason));
                Led::Pass(Response::from_parts(parts, CacheBody::Origin(body)))
            }
            Err(reason) => {
                // The plain refetch is the pass (and counts it): counted here too, one request
                // would be two passes.
                tracing::debug!(?reason, "response not stored");
                self.hit_for_pass.note(&req.key, StatusCode::OK, reason);
                drop(body);
                self.refetch_plain(req, origin).await
            }
        }
    }

    /// Asks again without the added Range and passes the answer through.
    async fn refetch_plain(&self, req: &CacheRequest, origin: Arc<dyn Origin>) -> Led {
        match self.pass(req, origin, "miss").await {
            Ok(r) => Led::Pass(r),
            Err(e) => Led::Failed(e),
        }
    }

    /// A whole response (200, or any other status).
    fn accept_whole(
        self: &Arc<Self>,
        req: &CacheRequest,
        head: http::response::Parts,
        body: OriginBody,
    ) -> Led {
        let now = SystemTime::now();
        let length =
            if head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
                Some(0)
            } else {
                head.headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
        match policy::evaluate(&req.parts, head.status, &head.headers, &req.rule, now) {
            Ok(v) => {
                let obj = self.store_head(req, head.status, head.headers, v, length, false, now);
                // The first segment's flight exists before anyone can look for it.
                let stream = self.flights.start_stream(obj.version);
                let first = self.lead_segment(&obj, 0);
                stream.started(0, first.clone());
                // The request that led the fill reads it: seated before the fill can run ahead.
                let seat = Seat::new(&stream, 0);
                let cache = self.clone();
                let o = obj.clone();
                let lower = head.extensions.get::<FromPeer>().is_none();
                spawn_in_span(async move {
                    let mut guard = TaskGuard::new(&cache);
                    guard.stream = Some(o.version);
                    cache.pump_stream(&o, body, first, lower).await;
                    stream.finish();
                    cache.flights.end_stream(o.version);
                });
                Led::Stored(obj, Some(head.status.as_u16()), Some(seat))
            }
            Err(reason) => {
                self.count_pass(req, head.status, reason);
                let mut parts = head;
                parts
                    .headers
                    .insert("cache-status", pass_status(parts.status.as_u16(), reason));
                Led::Pass(Response::from_parts(parts, CacheBody::Origin(body)))
            }
        }
    }

    fn count_pass(&self, req: &CacheRequest, status: StatusCode, reason: NoStore) {
        Stats::inc(&self.stats.passes);
        self.hit_for_pass.note(&req.key, status, reason);
        tracing::debug!(?reason, "response not stored");
    }

    /// Stores the head (and a Vary record if the response varies) and returns the object.
    #[allow(clippy::too_many_arguments)]
    fn store_head(
        &self,
        req: &CacheRequest,
        status: StatusCode,
        mut headers: HeaderMap,
        v: policy::Verdict,
        length: Option<u64>,
        ranged: bool,
        now: SystemTime,
    ) -> Arc<Object> {
        let names: Vec<http::HeaderName> = headers
            .keys()
            .filter(|n| crate::is_hop_by_hop(n))
            .cloned()
            .collect();
        for n in names {
            headers.remove(n);
        }
        // Kept for the entry's life: not slices of the origin connection's read buffer.
        let mut headers = policy::owned(&headers);
        headers.remove(header::AGE);
        for f in &v.strip {
            headers.remove(f);
        }
        let vary = key::vary_names(&headers).unwrap_or_default();
        let obj_key = if vary.is_empty() {
            req.key.as_str().to_string()
        } else {
            key::variant_key(req.key.as_str(), &vary, &req.parts.headers)
        };
        let obj = Arc::new(Object {
            key: obj_key,
            version: fastrand::u64(1..),
            status,
            headers,
            policy: v.policy,
            length,
            segment_size: self.segment_size,
            ranged,
            stored_at: now,
            fresh_until: v.fresh_until,
            age_at_store: v.age_at_store,
            stale_while_revalidate: v.stale_while_revalidate,
            stale_if_error: v.stale_if_error,
            must_revalidate: v.must_revalidate,
            allows_auth: v.allows_auth,
        });
        if !vary.is_empty() {
            self.storage.put_entry(&Entry::Vary(Arc::new(VaryRecord {
                key: req.key.as_str().to_string(),
                names: vary,
            })));
        }
        self.storage.put_entry(&Entry::Object(obj.clone()));
        Stats::inc(&self.stats.stored);
        obj
    }

    /// Reads one segment's response body into its flight, then stores it.
    pub(crate) async fn pump_segment(
        &self,
        obj: &Arc<Object>,
        index: u32,
        mut body: OriginBody,
        flight: Arc<SegmentFlight>,
        lower: bool,
    ) {
        let expected = obj.segment_len(index);
        let mut ok = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        self.stats
                            .origin_bytes
                            .fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        flight.push(d.clone());
                    }
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && expected.is_some_and(|e| e != flight.bytes()) {
            ok = false;
        }
        match flight.finish(ok, &self.flights.buffers) {
            Some(data) => self.storage.put_segment(obj, index, &data, lower).await,
            None => {
                tracing::warn!(key = %obj.key, index, "segment fetch failed or had the wrong length");
                self.storage.remove(&obj.key);
            }
        }
        self.flights.end_segment(obj.version, index);
    }

    /// Cuts a whole-body response into segments as it streams, storing each.
    async fn pump_stream(
        &self,
        obj: &Arc<Object>,
        mut body: OriginBody,
        first: Arc<SegmentFlight>,
        lower: bool,
    ) {
        let size = self.segment_size as usize;
        let stream = self.flights.stream(obj.version);
        let mut index = 0u32;
        let mut total = 0u64;
        let mut current = first;
        let mut filled = 0usize;
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                failed = true;
                break;
            };
            let Some(mut data) = frame.into_data().ok() else {
                continue;
            };
            self.stats
                .origin_bytes
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            total += data.len() as u64;
            while !data.is_empty() {
                let room = size - filled;
                let part: Bytes = data.split_to(room.min(data.len()));
                filled += part.len();
                current.push(part);
                if filled == size {
                    self.complete_segment(obj, index, &current, lower).await;
                    index += 1;
                    filled = 0;
                    current = self.lead_segment(obj, index);
                    if let Some(s) = &stream {
                        s.started(index, current.clone());
                    }
                }
            }
        }
        if failed || obj.length.is_some_and(|l| l != total) {
            current.finish(false, &self.flights.buffers);
            self.flights.end_segment(obj.version, index);
            tracing::warn!(key = %obj.key, "origin body ended early: entry dropped");
            self.storage.remove(&obj.key);
            return;
        }
        if filled > 0 {
            self.complete_segment(obj, index, &current, lower).await;
        } else {
            // The body ended on a boundary: the open segment is empty and is not stored.
            current.finish(true, &self.flights.buffers);
            self.flights.end_segment(obj.version, index);
        }
        if obj.length.is_none() {
            // Now the length is known: store it, so readers know where the body ends.
            let complete = Arc::new(Object {
                length: Some(total),
                ..(**obj).clone()
            });
            self.storage.put_entry(&Entry::Object(complete));
        }
    }

    fn lead_segment(&self, obj: &Object, index: u32) -> Arc<SegmentFlight> {
        match self.flights.join_segment(obj.version, index) {
            Joined::Lead(f) | Joined::Follow(f) => f,
        }
    }

    async fn complete_segment(
        &self,
        obj: &Arc<Object>,
        index: u32,
        flight: &SegmentFlight,
        lower: bool,
    ) {
        let data = flight.finish(true, &self.flights.buffers);
        // Readers stream from the flight until it leaves the map: store first.
        if let Some(data) = data {
            self.storage.put_segment(obj, index, &data, lower).await;
        }
        self.flights.end_segment(obj.version, index);
    }

    /// Starts (or joins) the fetch of segment `index` of a ranged object.
    pub(crate) fn fetch_segment(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        index: u32,
        template: &Arc<request::Parts>,
        origin: &Arc<dyn Origin>,
    ) -> Arc<SegmentFlight> {
        let flight = match self.flights.join_segment(obj.version, index) {
            Joined::Follow(f) => return f,
            Joined::Lead(f) => f,
        };
        let cache = self.clone();
        let obj = obj.clone();
        let origin = origin.clone();
        let mut parts = clone_parts(template);
        let f = flight.clone();
        spawn_in_span(async move {
            let mut guard = TaskGuard::new(&cache);
            guard.segment = Some((obj.version, index, f.clone()));
            let start = obj.segment_start(index);
            let Some(len) = obj.segment_len(index) else {
                f.finish(false, &cache.flights.buffers);
                cache.flights.end_segment(obj.version, index);
                return;
            };
            let end = start + len - 1;
            parts.method = Method::GET;
            parts.headers.insert(
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={start}-{end}")).expect("ascii"),
            );
            if let Some(v) = obj.if_range_validator() {
                parts.headers.insert(header::IF_RANGE, v);
            }
            Stats::inc(&cache.stats.origin_fetches);
            let resp = match origin.fetch(parts).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(key = %obj.key, index, error = %e, "segment fetch failed");
                    f.finish(false, &cache.flights.buffers);
                    cache.flights.end_segment(obj.version, index);
                    return;
                }
            };
            let (head, body) = resp.into_parts();
            if !segment_matches(&obj, &head, start, end) {
                tracing::warn!(key = %obj.key, index, status = %head.status, "origin object changed between segments: entry dropped");
                f.finish(false, &cache.flights.buffers);
                cache.flights.end_segment(obj.version, index);
                cache.storage.remove(&obj.key);
                return;
            }
            let lower = head.extensions.get::<FromPeer>().is_none();
            cache.pump_segment(&obj, index, body, f, lower).await;
        });
        flight
    }

    /// Revalidates in the background (stale-while-revalidate); coalesced with other fills.
    pub(crate) fn spawn_revalidation(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        reval: request::Parts,
    ) {
        let cache = self.clone();
        let req = req.copy();
        let obj = obj.clone();
        spawn_in_span(async move {
            let _ = cache.fill(&req, origin, Some((obj, reval))).await;
        });
    }

    /// Revalidates a stale object before answering; stale-if-error covers origin failures.
    pub(crate) async fn revalidate(
        self: &Arc<Self>,
        obj: Arc<Object>,
        req: &CacheRequest,
        origin: Arc<dyn Origin>,
        reval: request::Parts,
        dirs: &RequestDirectives,
    ) -> Result<Response<CacheBody>, OriginError> {
        let now = SystemTime::now();
        let may_serve_stale = !obj.must_revalidate
            && !dirs.no_cache
            && !obj.stale_if_error.is_zero()
            && obj.staleness(now) <= obj.stale_if_error;
        let result = self
            .fill(req, origin.clone(), Some((obj.clone(), reval)))
            .await;
        let failed = match &result {
            Err(e) => Some(e.status.as_u16()),
            Ok(r) if r.status().is_server_error() => Some(r.status().as_u16()),
            Ok(_) => None,
        };
        match failed {
            Some(code) if may_serve_stale => {
                Stats::inc(&self.stats.stale_served);
                let status = CacheStatus {
                    fwd: Some("stale"),
                    fwd_status: Some(code),
                    ttl: Some(obj.ttl_secs(now)),
                    detail: Some("stale-if-error"),
                    ..Default::default()
                };
                Ok(self.respond(&obj, req, origin, status, now).await)
            }
            _ => result,
        }
    }
}

/// Whether a segment answer is the expected slice of the same object.
fn segment_matches(obj: &Object, head: &http::response::Parts, start: u64, end: u64) -> bool {
    if head.status != StatusCode::PARTIAL_CONTENT {
        return false;
    }
    let cr = head
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(range::parse_content_range);
    let Some(cr) = cr else { return false };
    if cr.start != start || cr.end != end || cr.total != obj.length {
        return false;
    }
    let same = |name: header::HeaderName| match (obj.headers.get(&name), head.headers.get(&name)) {
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
        _ => true,
    };
    same(header::ETAG) && same(header::LAST_MODIFIED)
}

fn pass_status(code: u16, reason: NoStore) -> HeaderValue {
    CacheStatus {
        fwd: Some("miss"),
        fwd_status: Some(code),
        detail: Some(reason.detail()),
        ..Default::default()
    }
    .value()
}

#[cfg(test)]
#[path = "fill_tests.rs"]
mod tests;

/// Spawns a fill's task inside the span of the request that started it: its events (origin
/// failures, stores, aborts) carry that request's id.
pub(crate) fn spawn_in_span<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    tokio::spawn(f.in_current_span())
}
