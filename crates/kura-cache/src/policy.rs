//! RFC 9111 decisions for a shared cache.
//!
//! `http-cache-semantics` decides storability (methods, statuses, `no-store`, `private`,
//! `Authorization`), freshness lifetime and age (max-age, s-maxage, Expires, the 10 %
//! Last-Modified heuristic, `no-cache`), request directives (max-age, min-fresh, max-stale,
//! no-cache), Vary matching and the revalidation request. Written here, because it lacks them:
//! the rule's TTL policy (min, default, forced), `stale-while-revalidate` / `stale-if-error`
//! (RFC 5861), client conditional requests answered from the cache, the merge of a 304 into
//! stored headers (RFC 9111 §4.3.4, done on the client-facing headers so the crate's own
//! rewriting of `Date` never reaches clients), and `Cache-Status` (RFC 9211).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, request};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};
use kura_config::{CookiePolicy, RuleCache};

/// Cache-Control directives as (lowercase name, value) pairs.
pub fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CACHE_CONTROL) {
        let Ok(s) = v.to_str() else { continue };
        for part in split_directives(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_string())),
                None => (part, None),
            };
            out.push((name.to_ascii_lowercase(), value));
        }
    }
    out
}

/// Splits on commas outside quoted strings (`no-cache="a, b"` is one directive).
fn split_directives(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn has(d: &[(String, Option<String>)], name: &str) -> bool {
    d.iter().any(|(n, _)| n == name)
}

/// The greatest delta-seconds kura represents: larger values, and values that overflow, are
/// taken as this (RFC 9111 §1.2.2), so no time arithmetic can overflow.
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A delta-seconds value (digits only), saturated at [`MAX_DELTA_SECONDS`]; `None` if it is
/// not one.
pub fn delta_seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS)),
    )
}

fn seconds(d: &[(String, Option<String>)], name: &str) -> Option<Duration> {
    d.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(delta_seconds)
        .map(Duration::from_secs)
}

/// `now + d`, or a far future when that does not fit.
pub fn later(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(MAX_DELTA_SECONDS)))
        .unwrap_or(now)
}

/// The directives of the first targeted cache-control field (RFC 9213) in `names` that is
/// present and valid, when there is one: kura then obeys it instead of `Cache-Control` and
/// `Expires` (both still reach clients untouched).
pub fn targeted_directives(
    headers: &HeaderMap,
    names: &[HeaderName],
) -> Option<Vec<(String, Option<String>)>> {
    names.iter().find_map(|name| {
        let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
        if values.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for v in values {
            let s = v.to_str().ok()?;
            for member in split_directives(s) {
                let member = member.trim();
                if member.is_empty() {
                    continue;
                }
                let (key, value) = match member.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"').to_string())),
                    None => (member, None),
                };
                // A Structured Field dictionary key: lowercase, starting with a letter or `*`.
                let valid_key = key
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
                    && key.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'_' | b'-' | b'.' | b'*')
                    });
                if !valid_key {
                    return None;
                }
                out.push((key.to_string(), value));
            }
        }
        (!out.is_empty()).then_some(out)
    })
}

/// The request as the policy crate sees it. The URI and host are those the object was stored
/// with: a rule's key template may deliberately map several URLs to one entry.
pub struct PolicyRequest<'a> {
    /// The method (GET for a HEAD answered from a stored GET).
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a http::Uri,
    /// The request headers: directives, conditionals, Vary values.
    pub headers: &'a HeaderMap,
}

impl RequestLike for PolicyRequest<'_> {
    /// A copy in its own allocation, never a clone: the policy keeps this URI for as long as
    /// the object lives, and a request's URI is a slice of its connection's read buffer (hyper
    /// parses in place), so a clone would pin that whole buffer (8 KiB and more) per stored
    /// object, unseen by the memory tier's weigher. A soak showed it: 245 MiB of client read
    /// buffers alive at the peak, behind 60 open connections.
    fn uri(&self) -> http::Uri {
        detached_uri(self.uri)
    }
    fn is_same_uri(&self, _other: &http::Uri) -> bool {
        // The cache key already decided this is the same resource.
        true
    }
    fn method(&self) -> &Method {
        self.method
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

struct PolicyResponse<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl ResponseLike for PolicyResponse<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

/// The outcome of evaluating a response for storage.
pub struct Verdict {
    /// Fields not to store (named by qualified `no-cache="…"` or `private="…"`).
    pub strip: Vec<HeaderName>,
    /// The crate's policy, kept in the object for later reuse decisions.
    pub policy: CachePolicy,
    /// The end of freshness: now plus the policy's time to live.
    pub fresh_until: SystemTime,
    /// The response's age on arrival.
    pub age_at_store: Duration,
    /// The response's `stale-while-revalidate`, else the rule's (zero when cookie-bound).
    pub stale_while_revalidate: Duration,
    /// The response's `stale-if-error`, else the rule's (zero when cookie-bound).
    pub stale_if_error: Duration,
    /// Never served stale: `must-revalidate`, `proxy-revalidate`, a plain `no-cache`, or
    /// `Pragma: no-cache` without `Cache-Control`.
    pub must_revalidate: bool,
    /// The origin shares it with requests carrying `Authorization` (`public`, `s-maxage`,
    /// `must-revalidate`).
    pub allows_auth: bool,
}

/// Why a response is not stored (for logs and `Cache-Status: detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStore {
    /// RFC 9111 forbids it (no-store, private, status, method...).
    NotStorable,
    /// `Vary: *`.
    VaryStar,
    /// Fresh for less than the rule's `min_ttl`.
    BelowMinTtl,
    /// Carries `Set-Cookie` without `public` or `s-maxage`: a session, not a shared document.
    SetCookie,
    /// A response to a request with `Authorization` the origin did not mark shareable
    /// (`public`, `s-maxage`, `must-revalidate`: RFC 9111 §3.5).
    Authorization,
    /// A response to a request with `Cookie` the origin did not make cacheable itself (the
    /// rule's `cookies = "origin"`).
    Cookie,
}

impl NoStore {
    /// The reason as a `Cache-Status` detail token.
    pub fn detail(self) -> &'static str {
        match self {
            NoStore::NotStorable => "not-storable",
            NoStore::VaryStar => "vary-star",
            NoStore::BelowMinTtl => "below-min-ttl",
            NoStore::SetCookie => "set-cookie",
            NoStore::Authorization => "authorization",
            NoStore::Cookie => "cookie",
        }
    }
}

/// Evaluates `status`/`headers` (a response to `req`) under the rule's policy.
///
/// Who may see a stored response is decided by the origin alone: the rule's TTLs change how
/// long an object lives, never whether a response to a request with `Authorization` (or, by
/// default, `Cookie`) is shared.
pub fn evaluate(
    req: &request::Parts,
    status: StatusCode,
    headers: &HeaderMap,
    rule: &RuleCache,
    now: SystemTime,
) -> Result<Verdict, NoStore> {
    // Interim answers are never a stored response (RFC 9110 §15.2).
    if status.is_informational() {
        return Err(NoStore::NotStorable);
    }
    let targeted = targeted_directives(headers, &rule.targeted_cache_control);
    let d = match &targeted {
        Some(t) => t.clone(),
        None => directives(headers),
    };
    if crate::key::vary_names(headers).is_none() {
        return Err(NoStore::VaryStar);
    }
    if headers.contains_key(header::SET_COOKIE) && !has(&d, "public") && !has(&d, "s-maxage") {
        return Err(NoStore::SetCookie);
    }
    let origin_shares = has(&d, "public") || has(&d, "s-maxage") || has(&d, "must-revalidate");
    if req.headers.contains_key(header::AUTHORIZATION) && !origin_shares {
        return Err(NoStore::Authorization);
    }
    let explicit = has(&d, "max-age")
        || has(&d, "s-maxage")
        || (targeted.is_none() && headers.contains_key(header::EXPIRES));
    let cookie_bound =
        rule.cookies == CookiePolicy::Origin && req.headers.contains_key(header::COOKIE);
    if cookie_bound && !explicit && !has(&d, "public") {
        return Err(NoStore::Cookie);
    }
    // The commonest refusal, decided before a policy is built (what every remembered pass of
    // a `no-store` URL asks again): `no-store`, or a bare `private` in a shared cache. The
    // policy would refuse both the same way.
    if has(&d, "no-store") || d.iter().any(|(n, v)| n == "private" && v.is_none()) {
        return Err(NoStore::NotStorable);
    }
    let (view, strip) = policy_view(headers, &d, targeted.is_some(), rule, !cookie_bound);
    let policy_headers = owned(view.as_ref().unwrap_or(headers));
    let policy = CachePolicy::new_options(
        &PolicyRequest {
            method: &req.method,
            uri: &req.uri,
            headers: &policy_request_headers(&req.headers, headers),
        },
        &PolicyResponse {
            status,
            headers: &policy_headers,
        },
        now,
        CacheOptions {
            shared: true,
            ..Default::default()
        },
    );
    if !policy.is_storable() {
        return Err(NoStore::NotStorable);
    }
    let ttl = policy.time_to_live(now);
    if ttl < rule.min_ttl {
        return Err(NoStore::BelowMinTtl);
    }
    let unqualified_no_cache = d.iter().any(|(n, v)| n == "no-cache" && v.is_none());
    let must_revalidate = has(&d, "must-revalidate")
        || has(&d, "proxy-revalidate")
        || unqualified_no_cache
        || (targeted.is_none()
            && !headers.contains_key(header::CACHE_CONTROL)
            && headers
                .get(header::PRAGMA)
                .is_some_and(|p| p.as_bytes().windows(8).any(|w| w == b"no-cache")));
    Ok(Verdict {
        strip,
        age_at_store: policy.age(now),
        fresh_until: later(now, ttl),
        // The rule's stale windows are operator policy too: a cookie-bound answer is served
        // stale only as far as the origin itself allowed.
        stale_while_revalidate: seconds(&d, "stale-while-revalidate").unwrap_or(if cookie_bound {
            Duration::ZERO
        } else {
            rule.stale_while_revalidate
        }),
        stale_if_error: seconds(&d, "stale-if-error").unwrap_or(if cookie_bound {
            Duration::ZERO
        } else {
            rule.stale_if_error
        }),
        must_revalidate,
        allows_auth: origin_shares,
        policy,
    })
}

/// `h` with every value copied out: values hyper parsed are slices of a connection's read
/// buffer, and a stored copy would keep that whole buffer alive as long as the entry lives.
pub fn owned(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, value) in h {
        let mut v = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        v.set_sensitive(value.is_sensitive());
        out.append(name.clone(), v);
    }
    out
}

/// `uri` copied into an allocation of its own (see [`owned`] for headers, and why).
pub fn detached_uri(uri: &http::Uri) -> http::Uri {
    http::Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// The request headers a stored policy keeps: only those it reads later (`Host`,
/// `Cache-Control`, `Pragma`, whether there was an `Authorization`, and the ones the response
/// varies on), as owned copies. The rest (cookies, user agents, credentials) has no business in the cache's
/// memory or on its disk.
fn policy_request_headers(req: &HeaderMap, resp: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::HOST, header::CACHE_CONTROL, header::PRAGMA] {
        for v in req.get_all(&name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                out.append(name.clone(), v);
            }
        }
    }
    if req.contains_key(header::AUTHORIZATION) {
        out.insert(header::AUTHORIZATION, HeaderValue::from_static("present"));
    }
    for name in crate::key::vary_names(resp).unwrap_or_default() {
        for v in req.get_all(&name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                out.append(name.clone(), v);
            }
        }
    }
    out
}

/// The `Age` to use, read as RFC 9111 §5.1 says: one field line holding delta-seconds, or a
/// list of them (`0,7200`), of which the first member counts. Anything else (non-numeric,
/// negative, fractional, a parameter, a list member that is not bare digits, two field lines)
/// is invalid (`Err`), and kura takes the response as stale on arrival: the reading that can
/// cost a revalidation but never serves an old answer as fresh, and the one the public
/// conformance suite requires. `Ok(None)`: no `Age`.
fn age_value(ages: &[&HeaderValue]) -> Result<Option<u64>, ()> {
    match ages {
        [] => Ok(None),
        [one] => {
            let mut first = None;
            for member in one.as_bytes().split(|&b| b == b',') {
                let n = std::str::from_utf8(member)
                    .ok()
                    .and_then(delta_seconds)
                    .filter(|_| !member.is_empty() && member.iter().all(u8::is_ascii_digit))
                    .ok_or(())?;
                first.get_or_insert(n);
            }
            Ok(first)
        }
        _ => Err(()),
    }
}

/// The headers the policy crate should judge, when they differ from the response's, and the
/// fields not to store. The crate matches directive names case-sensitively, treats a qualified
/// `no-cache="f"` / `private="f"` like the plain directive, reads the first number of an
/// invalid `Age` and does unchecked time arithmetic on the numbers it reads; RFC 9111 says
/// names are case-insensitive (§5.2), the qualified forms only forbid storing (or reusing
/// without revalidation) the listed fields (§5.2.2.4, §5.2.2.7), an invalid `Age` makes the
/// response stale here, and delta-seconds saturate at 2^31 (§1.2.2). A targeted field
/// (`targeted`) replaces `Cache-Control` and `Expires`. When `operator_ttl` is set, the
/// rule's forced TTL replaces the response's freshness and its default TTL fills in when the
/// response has none.
fn policy_view(
    headers: &HeaderMap,
    d: &[(String, Option<String>)],
    targeted: bool,
    rule: &RuleCache,
    operator_ttl: bool,
) -> (Option<HeaderMap>, Vec<HeaderName>) {
    let qualified =
        |n: &str, v: &Option<String>| matches!(n, "no-cache" | "private") && v.is_some();
    let mut strip = Vec::new();
    for (n, v) in d {
        if qualified(n, v) {
            for f in v.as_deref().unwrap_or("").split(',') {
                if let Ok(h) = HeaderName::from_bytes(f.trim().to_ascii_lowercase().as_bytes()) {
                    strip.push(h);
                }
            }
        }
    }
    let cc_raw: Vec<&[u8]> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let mixed_case = cc_raw.iter().any(|v| v.iter().any(u8::is_ascii_uppercase));
    let ages: Vec<&HeaderValue> = headers.get_all(header::AGE).iter().collect();
    let age = age_value(&ages);
    let bad_age = age.is_err();
    // The crate reads only a bare number, unchecked: give it the one to use when it differs.
    let rewrite_age = match (&age, ages.first()) {
        (Ok(Some(n)), Some(raw)) => raw.as_bytes() != n.to_string().as_bytes(),
        _ => false,
    };
    // Numbers the crate would read unchecked: keep every delta-seconds within range.
    let big_number = d.iter().any(|(_, v)| {
        v.as_deref()
            .and_then(delta_seconds)
            .is_some_and(|n| n >= MAX_DELTA_SECONDS)
    });
    let explicit = has(d, "max-age")
        || has(d, "s-maxage")
        || (!targeted && headers.contains_key(header::EXPIRES));
    let ttl = match (rule.force_ttl, rule.default_ttl) {
        _ if !operator_ttl => None,
        (Some(force), _) => Some(force),
        (None, Some(default)) if !explicit => Some(default),
        _ => None,
    };
    if !mixed_case
        && strip.is_empty()
        && !bad_age
        && !rewrite_age
        && !big_number
        && !targeted
        && ttl.is_none()
    {
        return (None, strip);
    }
    let mut h = headers.clone();
    let mut parts: Vec<String> = Vec::new();
    if targeted {
        h.remove(header::EXPIRES);
        h.remove(header::PRAGMA);
    }
    if let Some(ttl) = ttl {
        parts.push(format!("s-maxage={}", ttl.as_secs().min(MAX_DELTA_SECONDS)));
        h.remove(header::EXPIRES);
        h.remove(header::PRAGMA);
    }
    for (n, v) in d {
        let replaced = ttl.is_some()
            && matches!(
                n.as_str(),
                "max-age" | "s-maxage" | "no-cache" | "must-revalidate"
            );
        if replaced || qualified(n, v) {
            continue;
        }
        parts.push(match v {
            Some(v) => match delta_seconds(v) {
                Some(secs) => format!("{n}={secs}"),
                None => format!("{n}={v}"),
            },
            None => n.clone(),
        });
    }
    h.remove(header::CACHE_CONTROL);
    if !parts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&parts.join(", "))
    {
        h.insert(header::CACHE_CONTROL, v);
    }
    match age {
        // Older than any freshness lifetime: stale from the start.
        Err(()) => {
            h.insert(header::AGE, HeaderValue::from(MAX_DELTA_SECONDS));
        }
        Ok(Some(n)) if rewrite_age => {
            h.insert(header::AGE, HeaderValue::from(n));
        }
        Ok(_) => {}
    }
    (Some(h), strip)
}

/// Whether the client's conditional headers are satisfied by the stored response, so the
/// answer is 304 (RFC 9110 §13.2.2: If-None-Match first, If-Modified-Since only without it).
pub fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        if inm.trim() == "*" {
            return true;
        }
        let Some(etag) = stored.get(header::ETAG).and_then(|e| e.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let ours = weak(etag);
        return inm.split(',').any(|t| weak(t) == ours);
    }
    if let Some(ims) = req.get(header::IF_MODIFIED_SINCE) {
        let since = ims
            .to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok());
        let modified = stored
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        if let (Some(since), Some(modified)) = (since, modified) {
            return modified <= since;
        }
    }
    false
}

/// Headers a 304 carries (RFC 9110 §15.4.5), taken from the stored response.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::LAST_MODIFIED,
        header::VARY,
    ] {
        for v in stored.get_all(&name) {
            h.append(name.clone(), v.clone());
        }
    }
    h
}

/// Headers a 304 must not change in the stored response (RFC 9111 §3.2: they describe the
/// stored body, which a 304 does not carry).
const NOT_UPDATED_BY_304: [&str; 7] = [
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "content-range",
    "content-md5",
    "etag",
    "age",
];

/// The stored headers updated with a 304's: each header present in the 304 replaces all stored
/// instances of it, except those that describe the stored body (`Content-Length`, `ETag`,
/// `Age`… see `NOT_UPDATED_BY_304`), hop-by-hop headers and `Set-Cookie`, which are ignored.
pub fn merge_304(stored: &HeaderMap, fresh: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in fresh {
        // A 304 answers one client's revalidation: its `Set-Cookie` is that client's, never
        // the shared copy's.
        if NOT_UPDATED_BY_304.contains(&name.as_str())
            || crate::is_hop_by_hop(name)
            || name == header::SET_COOKIE
        {
            continue;
        }
        if !replaced.contains(&name) {
            out.remove(name);
            replaced.push(name);
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Whether the 304 belongs to the stored response (RFC 9111 §4.3.4 selection).
pub fn validator_matches(stored: &HeaderMap, fresh: &HeaderMap) -> bool {
    fn get(h: &HeaderMap, n: HeaderName) -> Option<&str> {
        h.get(n).and_then(|v| v.to_str().ok()).map(str::trim)
    }
    match (get(stored, header::ETAG), get(fresh, header::ETAG)) {
        (Some(a), Some(b)) => a.trim_start_matches("W/") == b.trim_start_matches("W/"),
        (None, Some(_)) => false,
        _ => match (
            get(stored, header::LAST_MODIFIED),
            get(fresh, header::LAST_MODIFIED),
        ) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) | (None, None) => true,
            (None, Some(_)) => false,
        },
    }
}

/// What the request asks of the cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestDirectives {
    /// `no-store`: passed through, the cache neither read nor written.
    pub no_store: bool,
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`): never answered stale.
    pub no_cache: bool,
    /// `only-if-cached`: a miss is answered 504, not fetched.
    pub only_if_cached: bool,
    /// Any directive or `Pragma` at all: freshness then needs the policy, not `fresh_until` alone.
    pub has_directives: bool,
}

/// Reads what the request's `Cache-Control` (and `Pragma`) ask of the cache.
pub fn request_directives(headers: &HeaderMap) -> RequestDirectives {
    let d = directives(headers);
    let pragma_no_cache = !headers.contains_key(header::CACHE_CONTROL)
        && headers
            .get(header::PRAGMA)
            .is_some_and(|p| p.as_bytes().windows(8).any(|w| w == b"no-cache"));
    RequestDirectives {
        no_store: has(&d, "no-store"),
        no_cache: has(&d, "no-cache") || pragma_no_cache,
        only_if_cached: has(&d, "only-if-cached"),
        has_directives: !d.is_empty() || headers.contains_key(header::PRAGMA),
    }
}

/// `Cache-Status` (RFC 9211) parameters for one answer.
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    /// `hit`: answered from a stored response.
    pub hit: bool,
    /// `uri-miss`, `vary-miss`, `miss`, `request`, `stale`, `bypass`.
    pub fwd: Option<&'static str>,
    /// `fwd-status`: the status the origin answered with.
    pub fwd_status: Option<u16>,
    /// `ttl`: seconds of freshness left, negative once stale.
    pub ttl: Option<i64>,
    /// `stored`: this request's fetch stored the response.
    pub stored: bool,
    /// `collapsed`: the request waited on another request's fetch.
    pub collapsed: bool,
    /// `detail`: why, e.g. `stale-while-revalidate` or a [`NoStore::detail`] token.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The field value: `kura`, then each parameter set (e.g. `kura; hit; ttl=60`).
    pub fn value(&self) -> HeaderValue {
        use std::fmt::Write as _;
        // One buffer sized for the longest common value, written in place: this runs for
        // every answer through a cache rule.
        let mut s = String::with_capacity(64);
        s.push_str("kura");
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(f);
        }
        if let Some(st) = self.fwd_status {
            let _ = write!(s, "; fwd-status={st}");
        }
        if let Some(t) = self.ttl {
            let _ = write!(s, "; ttl={t}");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            s.push_str("; detail=");
            s.push_str(d);
        }
        // Every part above is ASCII without controls; the fallback is never taken.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
            .unwrap_or(HeaderValue::from_static("kura"))
    }
}

#[cfg(test)]
mod tests;
