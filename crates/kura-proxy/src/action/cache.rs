//! The `cache` rule action ([`CacheAction`], built once per route table with its policy, key
//! template and origin): GET and HEAD go through [`kura_cache::Cache`]; `PURGE` is accepted
//! from the addresses in `cache.purge_allow`; unsafe methods are forwarded by the proxy action
//! and then invalidate what the cache holds for the URL (and for same-host `Location` /
//! `Content-Location`, RFC 9111 §4.4, found by the route table).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use kura_cache::key::{PrimaryKey, RuleId};
use kura_cache::{Cache, CacheRequest, Origin};
use kura_config::target::TargetError;
use kura_config::{RuleCache, Vars};

use crate::action::Reply;
use crate::body::ProxyBody;
use crate::errors::ProxyError;

/// A cache rule ready to serve.
pub struct CacheAction {
    /// The server's cache (shared by every rule; its storage needs a restart to change).
    pub cache: Arc<Cache>,
    pub policy: Arc<RuleCache>,
    /// The pool (behind the cluster's peer tier, when there is one) as the cache's origin.
    pub origin: Arc<dyn Origin>,
}

impl CacheAction {
    /// The primary key of a request: the policy's template's, or the URL's.
    pub fn key(
        &self,
        rule: RuleId,
        caps: Option<&regex::Captures<'_>>,
        vars: &Vars<'_>,
        scheme: &str,
        authority: &str,
    ) -> Result<PrimaryKey, TargetError> {
        Ok(match &self.policy.key {
            Some(t) => PrimaryKey::template(rule, &t.expand_checked(caps, vars)?),
            None => PrimaryKey::url(rule, scheme, authority, vars.path, vars.query),
        })
    }
}

/// A GET or HEAD for the cache, as it would be forwarded.
pub struct Cached {
    pub key: PrimaryKey,
    /// The client's URL as keyed.
    pub target: Option<Arc<str>>,
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: HeaderMap,
}

/// Answers a GET or HEAD through the cache; the response is finished by the request phases.
pub async fn serve(action: &CacheAction, c: Cached) -> Result<Reply, ProxyError> {
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
        rule: action.policy.clone(),
        target: c.target,
    };
    let resp = action
        .cache
        .serve(req, action.origin.clone())
        .await
        .map_err(ProxyError::from)?;
    Ok(Reply::cached(resp))
}

/// After an unsafe method succeeded: what the cache holds under `key` and `related` (the
/// keys of same-host `Location` / `Content-Location`) is invalidated.
pub async fn invalidate(action: &CacheAction, key: &PrimaryKey, related: Vec<PrimaryKey>) {
    action.cache.invalidate(key.as_str()).await;
    for k in related {
        action.cache.invalidate(k.as_str()).await;
    }
}

/// `PURGE` on a cache rule: removes the URL's entry when the client may purge.
pub async fn purge(
    action: &CacheAction,
    purge_allow: &[ipnet::IpNet],
    client: IpAddr,
    key: &PrimaryKey,
) -> Reply {
    let allowed = purge_allow
        .iter()
        .any(|n| n.contains(&client.to_canonical()));
    let (status, body) = if !allowed {
        (
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "PURGE is not allowed from this address"}),
        )
    } else {
        let n = action.cache.purge_key(key.as_str()).await.0;
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
    Reply::Generated(r)
}

/// Methods after whose success stored responses for the URL are invalidated.
pub fn is_unsafe(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}
