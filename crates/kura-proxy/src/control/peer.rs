//! The owner's side of the cluster's peer protocol (see `kura_cluster::wire`): an HTTP/2
//! listener on `cluster.peering_address` that answers other members' fetches through this
//! node's cache, so that a segment is fetched from the origin once, by its owner, and shared.
//!
//! A request without the shared secret gets 403. The owner routes the client URL the asker
//! sends through its own table and derives rule, key and upstream path itself; when its rule
//! identity or key differs from the asker's (members running different configurations), or
//! the URL maps to no cache rule, the answer is 421 and the asker fetches from the origin.
//! The answer carries the body's CRC32C as a trailer.

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
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::state::Shared;

type PeerBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    max_connections: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let cap = Arc::new(tokio::sync::Semaphore::new(max_connections));
    while let Some(conn) = crate::listen::side::next(&listener, &shared, &cap, true).await {
        let shared = shared.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            // The whole connection (its slot under the cap included) lives as long as this task.
            let conn = conn;
            let svc_shared = shared.clone();
            let state = conn.state.clone();
            let svc = service_fn(move |req| {
                let shared = svc_shared.clone();
                let state = state.clone();
                state.busy();
                async move {
                    let resp = handle(&shared, req).await;
                    Ok::<_, Infallible>(resp.map(|b| crate::listen::side::Tracked::new(b, &state)))
                }
            });
            let limits = shared.runtime.load().limits.clone();
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .initial_stream_window_size(4 * 1024 * 1024)
                .initial_connection_window_size(16 * 1024 * 1024)
                .max_concurrent_streams(limits.http2_max_concurrent_streams)
                .timer(hyper_util::rt::TokioTimer::new());
            match &tls {
                None => {
                    let c = builder.serve_connection(TokioIo::new(conn.stream), svc);
                    crate::listen::connection::drive(
                        c,
                        |c| c.graceful_shutdown(),
                        &shared,
                        &conn.state,
                        &limits,
                        conn.peer,
                    )
                    .await;
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(conn.stream);
                    let stream =
                        match tokio::time::timeout(limits.client_header_timeout, handshake).await {
                            Ok(Ok(s)) => s,
                            _ => {
                                tracing::debug!(peer = %conn.peer, "peer TLS handshake failed");
                                if let Some(c) = &shared.cluster {
                                    c.stats.refused.fetch_add(1, Relaxed);
                                }
                                return;
                            }
                        };
                    let c = builder.serve_connection(TokioIo::new(stream), svc);
                    crate::listen::connection::drive(
                        c,
                        |c| c.graceful_shutdown(),
                        &shared,
                        &conn.state,
                        &limits,
                        conn.peer,
                    )
                    .await;
                }
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
    let cache = &shared.cache;
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let rt = shared.runtime.load_full();
    // The owner derives rule and key from the client's URL through its own routes; the
    // asker's names for them are only compared, never used.
    let Some(derived) = header(wire::URL).and_then(|url| derive(&rt, url)) else {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "no cache rule here for this URL\n",
        );
    };
    if header(wire::RULE) != Some(derived.rule.id.hex().as_str())
        || header(wire::KEY) != Some(derived.key.as_str())
    {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "rule or key differs here (do the members run the same configuration?)\n",
        );
    }
    let action = derived.action;
    cluster.stats.served.fetch_add(1, Relaxed);
    let (mut parts, _) = req.into_parts();
    // Keep the hop count: a fill this request causes must not be forwarded forever.
    let hops = parts.headers.get(wire::HOPS).cloned();
    wire::strip_request(&mut parts.headers);
    if let Some(h) = hops {
        parts.headers.insert(wire::HOPS, h);
    }
    // The path sent upstream is the owner's own, as the key is.
    parts.uri = http::Uri::from(derived.upstream);
    parts.version = http::Version::HTTP_11;
    parts.extensions.insert(kura_cache::PeerRequest);
    let creq = CacheRequest {
        parts,
        key: derived.key,
        rule: action.policy.clone(),
        target: Some(derived.url.into()),
    };
    match cache.serve(creq, action.origin.clone()).await {
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

/// What the owner makes of a client URL: its rule and cache action, key and upstream path.
struct Derived<'a> {
    rule: &'a crate::route::table::Rule,
    action: &'a crate::action::CacheAction,
    key: kura_cache::key::PrimaryKey,
    upstream: http::uri::PathAndQuery,
    url: String,
}

fn derive<'a>(rt: &'a crate::state::Runtime, url: &str) -> Option<Derived<'a>> {
    let u = crate::route::target::ParsedUrl::parse(url)?;
    let vhost = rt.table.lookup(&u.host)?;
    let m = vhost
        .route(&crate::route::table::RouteInput {
            vars: u.vars(),
            scheme: u.scheme,
            authority: &u.authority,
        })
        .ok()??;
    let crate::route::table::Plan::Cache(action, key) = m.plan else {
        return None;
    };
    let query = (!u.query.is_empty()).then_some(u.query.as_str());
    let upstream =
        crate::route::target::path_and_query(m.rewritten.as_deref().unwrap_or(&u.path), query)
            .ok()?;
    Some(Derived {
        rule: m.rule,
        action,
        key,
        upstream,
        url: url.to_string(),
    })
}
