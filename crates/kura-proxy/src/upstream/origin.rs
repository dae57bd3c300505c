//! A backend pool as the cache's origin: cache fills go through the same balancing, passive
//! health, retries and keep-alive connections as proxied requests. [`fetch_from_pool`] is
//! also what shadow copies use.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Response, Version, request};
use http_body_util::BodyExt;
use kura_cache::{Origin, OriginBody, OriginError};

use crate::body::{ProxyBody, ReqBody};
use crate::errors::ProxyError;
use crate::headers;
use crate::upstream::{Outgoing, Pool};

pub struct PoolOrigin(pub Arc<Pool>);

impl Origin for PoolOrigin {
    fn fetch(
        &self,
        req: request::Parts,
    ) -> kura_cache::tier::BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let pool = self.0.clone();
        Box::pin(async move {
            fetch_from_pool(&pool, req, ReqBody::empty())
                .await
                .map_err(OriginError::from)
        })
    }
}

/// Sends a request made in kura (not a client's) to `pool` and returns the answer with its
/// hop-by-hop headers removed and its body streaming (the lease released at its end).
pub(crate) async fn fetch_from_pool(
    pool: &Pool,
    req: request::Parts,
    body: ReqBody,
) -> Result<Response<OriginBody>, ProxyError> {
    let path = req
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let answer = pool
        .send(Outgoing {
            method: req.method,
            path,
            headers: req.headers,
            body,
        })
        .await?;
    let (mut parts, body) = answer.response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = ProxyBody::upstream(body, answer.lease);
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}
