//! Shadowing on the request path: decide whether a request is copied, hand the copy to the
//! background engine ([`kura_shadow::Shadow`]), and tee the request body and the primary's
//! answer as they stream. All of it is a few clones and a `try_send`: the primary is never
//! waited on by the shadows, and a full queue only drops the copy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use kura_http::BoxError;
use kura_shadow::{
    Answer, BodySource, Capture, DropReason, Job, Shadow, ShadowBody, ShadowRule, Upstream,
};
use tokio::sync::oneshot;

use crate::body::{ProxyBody, ReqBody};
use crate::upstream::Pool;
use crate::upstream::origin::fetch_from_pool;

/// A pool as a shadow target: the same balancing, health and keep-alive as proxied requests.
pub struct PoolUpstream(pub Arc<Pool>);

impl Upstream for PoolUpstream {
    fn send(
        &self,
        req: Request<Bytes>,
    ) -> kura_shadow::rule::BoxFuture<'static, Result<Response<ShadowBody>, BoxError>> {
        let pool = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            fetch_from_pool(&pool, parts, ReqBody::bytes(body))
                .await
                .map_err(BoxError::from)
        })
    }
}

/// A request being shadowed: where the primary's answer goes once it has streamed whole.
pub struct Shadowing {
    tx: oneshot::Sender<Answer>,
    limit: u64,
    elapsed: Option<Duration>,
}

impl Shadowing {
    /// Notes the primary's time from handing the request to its pool to the response head
    /// (compared with the candidates' times, taken the same way).
    pub fn answered_in(mut self, elapsed: Option<Duration>) -> Shadowing {
        self.elapsed = elapsed;
        self
    }

    /// Tees the primary's answer (`headers` as the upstream sent them) into the comparison.
    pub fn capture(self, status: StatusCode, headers: HeaderMap, body: ProxyBody) -> ProxyBody {
        let capture = Capture::new(status, headers, self.elapsed, self.limit, self.tx);
        body.with_capture(capture)
    }
}

/// What the shadow of one request needs to know about it.
pub struct ShadowedRequest<'a> {
    pub method: &'a Method,
    /// The client's path (selection and endpoint names use it).
    pub client_path: &'a str,
    /// Path, query and headers as they go to the primary.
    pub upstream_path: &'a PathAndQuery,
    pub headers: &'a HeaderMap,
    /// The declared body length, if any.
    pub declared: Option<u64>,
}

/// Copies the request to the rule's shadow targets if it is selected; the returned
/// [`Shadowing`] must capture the primary's answer.
pub fn begin(
    shadow: &Shadow,
    rule: &Arc<ShadowRule>,
    req: ShadowedRequest<'_>,
    body: &mut ReqBody,
) -> Option<Shadowing> {
    if !rule.selects(req.method, req.client_path, req.headers) {
        return None;
    }
    if !rule.has_room() {
        // Full: drop before copying anything.
        shadow.drop_selected(DropReason::QueueFull);
        return None;
    }
    let settings = shadow.settings();
    let body_source = if body.is_empty() {
        BodySource::Ready(Bytes::new())
    } else if req.declared.is_some_and(|n| n > settings.max_request_body) {
        shadow.drop_selected(DropReason::BodyTooLarge);
        return None;
    } else {
        BodySource::Pending(body.tee(settings.max_request_body))
    };
    let (tx, primary) = Capture::channel();
    let job = Job {
        rule: rule.clone(),
        endpoint: rule.endpoint(req.method, req.client_path),
        method: req.method.clone(),
        uri: Uri::from(req.upstream_path.clone()),
        headers: req.headers.clone(),
        body: body_source,
        primary,
        span: tracing::Span::current(),
    };
    if !shadow.submit(job) {
        body.untee();
        return None;
    }
    Some(Shadowing {
        tx,
        limit: settings.max_compare_body,
        elapsed: None,
    })
}
