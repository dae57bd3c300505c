//! A backend pool as the cache's origin: cache fills go through the same balancing, passive
//! health, retries and keep-alive connections as proxied requests.

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
                    body: ReqBody::empty(),
                })
                .await
                .map_err(|e| OriginError::new(e.status(), e.to_string()))?;
            let (mut parts, body) = answer.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            parts.version = Version::HTTP_11;
            let body = ProxyBody::upstream(body, answer.lease);
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        })
    }
}

/// The proxy error an origin failure stands for.
pub fn proxy_error(e: OriginError) -> ProxyError {
    match e.status.as_u16() {
        504 => ProxyError::Timeout,
        503 => ProxyError::PoolExhausted,
        _ => ProxyError::Upstream(e.message),
    }
}
