//! The `cache` rule action: GET and HEAD go through [`kura_cache::Cache`]; `PURGE` is
//! accepted from the addresses in `cache.purge_allow`; unsafe methods are forwarded and then
//! invalidate what the cache holds for the URL (and for same-host `Location` /
//! `Content-Location`, RFC 9111 §4.4).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use kura_cache::key::PrimaryKey;
use kura_cache::{Cache, CacheRequest};

use crate::body::ProxyBody;
use crate::errors::ProxyError;
use crate::headers;
use crate::origin::proxy_error;
use crate::router::{RouteInput, Rule, VHost};
use crate::state::Runtime;
use crate::target::{ClientTarget, ParsedUrl};

/// A GET or HEAD for the cache, as it would be forwarded.
pub struct Cached {
    pub key: PrimaryKey,
    /// The client's URL as keyed.
    pub target: Option<Arc<str>>,
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: HeaderMap,
}

/// Answers a GET or HEAD through the cache.
pub async fn serve(
    rt: &Runtime,
    rule: &Rule,
    cache: &Arc<Cache>,
    c: Cached,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Some(policy) = rule.cache.clone() else {
        return Err(ProxyError::NoRoute);
    };
    let mut parts = Request::builder()
        .method(c.method)
        .uri(c.path)
        .body(())
        .map_err(|_| ProxyError::BadTarget)?
        .into_parts()
        .0;
    parts.headers = c.headers;
    let req = CacheRequest {
        parts,
        key: c.key,
        rule: policy,
        target: c.target,
    };
    let resp = cache
        .serve(req, rule.origin.clone())
        .await
        .map_err(proxy_error)?;
    let (mut parts, body) = resp.into_parts();
    headers::append_via(&mut parts.headers, &rt.via_11);
    parts.version = Version::HTTP_11;
    rule.response_headers.apply(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::cache(body)))
}

/// `PURGE` on a cache rule: removes the URL's entry when the client may purge.
pub async fn purge(
    rt: &Runtime,
    client: IpAddr,
    cache: &Arc<Cache>,
    key: &PrimaryKey,
) -> Response<ProxyBody> {
    let allowed = rt
        .purge_allow
        .iter()
        .any(|n| n.contains(&client.to_canonical()));
    let (status, body) = if !allowed {
        (
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "PURGE is not allowed from this address"}),
        )
    } else {
        let n = cache.purge_key(key.as_str()).await.0;
        let status = if n > 0 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        (
            status,
            serde_json::json!({"purged": n, "key": key.as_str()}),
        )
    };
    let mut r = Response::new(ProxyBody::full(format!("{body}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Methods after whose success stored responses for the URL are invalidated.
pub fn is_unsafe(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Keys to invalidate after an unsafe request answered with `resp_headers`: those of
/// `Location` / `Content-Location` when they point at the same host (RFC 9111 §4.4).
pub fn related_keys(vhost: &VHost, t: &ClientTarget, resp_headers: &HeaderMap) -> Vec<PrimaryKey> {
    let mut keys = Vec::new();
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(loc) = resp_headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(uri) = loc.parse::<http::Uri>() else {
            continue;
        };
        if let Some(h) = uri.host()
            && !h.eq_ignore_ascii_case(&t.host)
        {
            continue;
        }
        let Ok(path) = kura_config::target::normalize_path(uri.path()) else {
            continue;
        };
        let input = RouteInput {
            vars: t.vars(&path, uri.query().unwrap_or("")),
            scheme: t.scheme,
            authority: &t.authority,
        };
        if let Ok(Some(m)) = vhost.route(&input)
            && let Some(k) = m.cache_key
        {
            keys.push(k);
        }
    }
    keys
}

/// The cache key a URL maps to under the current routes (admin purge by URL).
pub fn key_for_url(rt: &Runtime, url: &str) -> Option<PrimaryKey> {
    let u = ParsedUrl::parse(url)?;
    let vhost = rt.table.lookup(&u.host)?;
    let input = RouteInput {
        vars: u.vars(),
        scheme: u.scheme,
        authority: &u.authority,
    };
    vhost.route(&input).ok()??.cache_key
}

/// `path` with `query` appended (after `&` when `path` has its own query already).
pub fn path_and_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let mut s = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    s.push_str(path);
    if let Some(q) = query {
        s.push(if path.contains('?') { '&' } else { '?' });
        s.push_str(q);
    }
    PathAndQuery::try_from(s).map_err(|_| ProxyError::BadTarget)
}

/// Purges, in every cache rule of the current routes, the URL keys starting with `prefix`
/// (`host/path` matches both schemes; `https://host/path` one) and the template keys
/// starting with it. Returns how many entries went.
pub async fn purge_prefix(rt: &Runtime, cache: &Cache, prefix: &str) -> usize {
    use kura_cache::key::KeyKind;
    let mut raw = Vec::new();
    for vhost in &rt.table.vhosts {
        for rule in vhost.rules.iter().filter(|r| r.cache.is_some()) {
            let url = PrimaryKey::prefix(rule.id, KeyKind::Url);
            if prefix.starts_with("http://") || prefix.starts_with("https://") {
                raw.push(format!("{url}{prefix}"));
            } else {
                raw.push(format!("{url}http://{prefix}"));
                raw.push(format!("{url}https://{prefix}"));
            }
            raw.push(format!(
                "{}{prefix}",
                PrimaryKey::prefix(rule.id, KeyKind::Template)
            ));
        }
    }
    raw.sort();
    raw.dedup();
    let mut n = 0;
    for p in raw {
        n += cache.purge_prefix(&p).await.0;
    }
    n
}
