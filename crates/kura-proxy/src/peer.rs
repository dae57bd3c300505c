//! The owner's side of the cluster's peer protocol (see `kura_cluster::wire`): an HTTP/2
//! listener on `cluster.peering_address` that answers other members' fetches through this
//! node's cache, so that a segment is fetched from the origin once, by its owner, and shared.
//!
//! A request without the shared secret gets 403. The rule is named by its place in the route
//! table (members run the same configuration); one that is not a cache rule gets 421. The
//! answer carries the body's CRC32C as a trailer.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kura_cache::{BoxError, CacheBody, CacheRequest};
use kura_cluster::wire;
use kura_config::Action;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::state::Shared;

type PeerBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    while let Some(stream) = crate::admin::next_connection(&listener, &shared).await {
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tracker.spawn(async move {
            let svc_shared = shared.clone();
            let svc = service_fn(move |req| {
                let shared = svc_shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(4 * 1024 * 1024)
                .initial_connection_window_size(16 * 1024 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shared.force.cancelled() => {}
            }
        });
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response<PeerBody> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(why.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<PeerBody> {
    let Some(cluster) = &shared.cluster else {
        return refuse(StatusCode::NOT_FOUND, "no cluster\n");
    };
    if !wire::secret_matches(req.headers().get(wire::SECRET), &cluster.secret) {
        cluster.stats.refused.fetch_add(1, Relaxed);
        return refuse(StatusCode::FORBIDDEN, "peer secret missing or wrong\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "peers fetch with GET or HEAD\n",
        );
    }
    let (Some(cache), Some(key)) = (
        &shared.cache,
        req.headers()
            .get(wire::KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    ) else {
        return refuse(StatusCode::BAD_REQUEST, "no cache key\n");
    };
    let rt = shared.runtime.load_full();
    let rule = req
        .headers()
        .get(wire::RULE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(':'))
        .and_then(|(v, r)| Some((v.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
        .and_then(|(v, r)| rt.table.vhosts.get(v)?.rules.get(r));
    let Some(rule) = rule.filter(|r| r.action == Action::Cache) else {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "no such cache rule here (do the members run the same configuration?)\n",
        );
    };
    let Some(policy) = rule.cache.clone() else {
        return refuse(StatusCode::MISDIRECTED_REQUEST, "not a cache rule\n");
    };
    cluster.stats.served.fetch_add(1, Relaxed);
    let (mut parts, _) = req.into_parts();
    // Keep the hop count: a fill this request causes must not be forwarded forever.
    let hops = parts.headers.get(wire::HOPS).cloned();
    wire::strip_request(&mut parts.headers);
    if let Some(h) = hops {
        parts.headers.insert(wire::HOPS, h);
    }
    let pq = parts.uri.path_and_query().cloned();
    parts.uri = pq
        .map(http::Uri::from)
        .unwrap_or_else(|| http::Uri::from_static("/"));
    parts.version = http::Version::HTTP_11;
    parts.extensions.insert(kura_cache::PeerRequest);
    let creq = CacheRequest {
        parts,
        key,
        rule: policy,
    };
    match cache.serve(creq, rule.origin.clone()).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.version = http::Version::HTTP_2;
            if let Ok(v) = HeaderValue::from_str(&cluster.membership.me) {
                parts.headers.insert(wire::OWNER, v);
            }
            let body: CacheBody = body;
            Response::from_parts(parts, wire::CrcBody::new(body).boxed_unsync())
        }
        Err(e) => {
            let mut r = refuse(e.status, "origin failed\n");
            *r.status_mut() = e.status;
            r
        }
    }
}
