//! The `cache` rule action: GET and HEAD go through [`kura_cache::Cache`]; `PURGE` is
//! accepted from the addresses in `cache.purge_allow`; unsafe methods are forwarded and then
//! invalidate what the cache holds for the URL (and for same-host `Location` /
//! `Content-Location`, RFC 9111 §4.4).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use kura_cache::{Cache, CacheRequest};
use kura_config::Vars;

use crate::body::ProxyBody;
use crate::errors::ProxyError;
use crate::headers;
use crate::origin::proxy_error;
use crate::router::{Rule, VHost};
use crate::state::Runtime;

/// Answers a GET or HEAD through the cache.
pub async fn serve(
    rt: &Runtime,
    rule: &Rule,
    cache: &Arc<Cache>,
    key: String,
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Some(policy) = rule.cache.clone() else {
        return Err(ProxyError::NoRoute);
    };
    let mut parts = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .map_err(|_| ProxyError::BadTarget)?
        .into_parts()
        .0;
    parts.headers = headers;
    let req = CacheRequest {
        parts,
        key,
        rule: policy,
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
    key: &str,
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
        let n = cache.purge_key(key).await.0;
        let status = if n > 0 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        (status, serde_json::json!({"purged": n, "key": key}))
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

/// Keys to invalidate after an unsafe request answered with `resp_headers`: the request's own,
/// and those of `Location` / `Content-Location` when they point at the same host.
pub fn related_keys(vhost: &VHost, host: &str, resp_headers: &HeaderMap) -> Vec<String> {
    let mut keys = Vec::new();
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(loc) = resp_headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(uri) = loc.parse::<http::Uri>() else {
            continue;
        };
        if let Some(h) = uri.host()
            && !h.eq_ignore_ascii_case(host)
        {
            continue;
        }
        if !uri.path().starts_with('/') {
            continue;
        }
        let vars = Vars {
            host,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
        };
        if let Some(m) = vhost.route(vars.path, &vars)
            && let Some(k) = m.cache_key
        {
            keys.push(k);
        }
    }
    keys
}

/// The cache key a URL maps to under the current routes (admin purge by URL).
pub fn key_for_url(rt: &Runtime, url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let vhost = rt.table.lookup(&host)?;
    let vars = Vars {
        host: &host,
        path: uri.path(),
        query: uri.query().unwrap_or(""),
    };
    vhost.route(vars.path, &vars)?.cache_key
}
