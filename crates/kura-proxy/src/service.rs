//! One request, end to end: host → vhost → rule → pool → response, in phases (as Pingora's
//! request filter, upstream selection, response filter, logging). Every failure becomes a
//! [`ProxyError`] and leaves through one place that picks its status and page.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use kura_config::Action;

use crate::body::{ProxyBody, ReqBody};
use crate::cache_action;
use crate::conn::ConnState;
use crate::errors::ProxyError;
use crate::exchange::{Exchange, LogFields};
use crate::headers;
use crate::router::{RouteInput, Rule};
use crate::shadow_action::{self, ShadowedRequest, Shadowing};
use crate::state::{Runtime, Shared};
use crate::target::{ClientTarget, target_error};
use crate::upgrade;
use crate::upstream::Outgoing;

/// The health endpoint Hipache answered on `Host: __ping__`.
const PING_HOST: &str = "__ping__";

/// One client connection: what its requests need to know, shared by them through one `Arc`
/// per connection (so requests do not touch reference counts shared with other threads).
pub struct ConnInfo {
    pub shared: Arc<Shared>,
    pub client_addr: std::net::IpAddr,
    /// The client's address as a header value, made once per connection.
    pub client_ip: HeaderValue,
    pub scheme: &'static str,
    pub state: Arc<ConnState>,
    /// Answer every request with a redirect to https on this port.
    pub redirect_https: Option<u16>,
    /// The tunnel an upgrade made of this connection, awaited by the connection's task.
    pub tunnel: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ConnInfo {
    pub fn new(
        shared: Arc<Shared>,
        client: SocketAddr,
        scheme: &'static str,
        state: Arc<ConnState>,
    ) -> Self {
        let ip = client.ip().to_canonical().to_string();
        ConnInfo {
            shared,
            client_addr: client.ip().to_canonical(),
            client_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            scheme,
            state,
            redirect_https: None,
            tunnel: std::sync::Mutex::new(None),
        }
    }
}

pub async fn handle(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    conn.state.busy();
    let rt = conn.shared.runtime.load_full();
    let log = conn
        .shared
        .access_log
        .is_some()
        .then(|| log_fields(&conn, &req));
    let mut x = Box::new(Exchange {
        start: Instant::now(),
        conn: conn.clone(),
        vhost: None,
        status: StatusCode::OK,
        upstream: None,
        upstream_time: None,
        log,
    });
    let is_head = req.method() == Method::HEAD;
    let h2 = req.version() == Version::HTTP_2;
    let resp = match proxy(&rt, &conn, req, &mut x).await {
        Ok(r) => r,
        Err(e) => error_response(&rt, &e, is_head),
    };
    x.status = resp.status();
    conn.state.responding();
    let resp = resp.map(|b| b.with_exchange(x));
    if h2 {
        // One stream's closed window must not hold an upstream connection: read ahead into a
        // bounded buffer, and give up after the send timeout.
        let (limit, timeout) = (rt.limits.http2_stream_buffer, rt.limits.send_timeout);
        return Ok(resp.map(|b| b.pumped(limit, timeout)));
    }
    Ok(resp)
}

async fn proxy(
    rt: &Runtime,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadTarget);
    }
    // Forwarding headers are believed only from trusted proxies.
    let trusted = rt.trusts(conn.client_addr);
    let scheme = match trusted {
        true => headers::trusted_scheme(req.headers()).unwrap_or(conn.scheme),
        false => conn.scheme,
    };
    // The one reading of the target: everything below uses its normalised form.
    let target = ClientTarget::read(&req, scheme)?;
    if target.host == PING_HOST {
        return Ok(Response::new(ProxyBody::full("OK\n")));
    }
    if let Some(port) = conn.redirect_https {
        return Ok(redirect_to_https(&req, &target, port));
    }
    // Without Redis frontends the vhost is borrowed from the snapshot (no reference count
    // touched); with them, it is held by its own `Arc` for the request.
    let from_redis;
    let vhost = {
        let dynamic = conn.shared.dynamic.load();
        if dynamic.count() == 0 {
            rt.table
                .lookup(&target.host)
                .ok_or(ProxyError::UnknownHost)?
        } else {
            from_redis = crate::router::lookup(&rt.table.hosts, &dynamic, &target.host)
                .cloned()
                .ok_or(ProxyError::UnknownHost)?;
            &from_redis
        }
    };
    x.vhost = Some(vhost.clone());
    let query = req.uri().query().unwrap_or("");
    let path = target.path(&req);
    let matched = vhost
        .route(&RouteInput {
            vars: target.vars(path, query),
            scheme: target.scheme,
            authority: &target.authority,
        })
        .map_err(target_error)?
        .ok_or(ProxyError::NoRoute)?;
    let rule = matched.rule;
    if let (Some(args), Some(cache)) = (matched.resize, &conn.shared.cache) {
        return crate::resize_action::serve(rt, rule, cache, args, req.method(), req.headers())
            .await;
    }
    let path_and_query = upstream_path(&req, &target, matched.rewritten.as_deref())?;
    // The client's URL as keyed, for a cluster owner to derive the key from.
    let client_url = (rule.action == Action::Cache && conn.shared.cluster.is_some())
        .then(|| target.url(path, query));
    let client_path = rule.shadow.is_some().then(|| target.path(&req).to_string());

    // The body limit: a declared length is checked now; an undeclared one while streaming.
    let mut stream_limit = None;
    let declared = declared_length(&req);
    if let Some(max) = rt.limits.max_body_bytes {
        match declared {
            Some(len) if len > max => return Err(ProxyError::BodyTooLarge),
            Some(_) => {}
            None => stream_limit = Some(max),
        }
    }

    let client_version = req.version();
    // What of the scheme and authority is forwarded is what the rule's key holds.
    let scope = rule.scope;
    let forwarded_host = match (scope.port, scope.host) {
        (true, _) => target.authority_value(),
        (false, true) => HeaderValue::from_str(&target.host).ok(),
        (false, false) => None,
    };
    // Only the protocols the rule relays (WebSocket by default): any other `Upgrade` (`h2c`
    // among them) is dropped with the hop-by-hop headers and the request served as usual.
    let upgrade = upgrade::requested(req.headers())
        .filter(|_| req.version() == Version::HTTP_11)
        .and_then(|v| rule.allowed_upgrade(&v));
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut body = ReqBody::new(body, stream_limit);
    let mut h = parts.headers;
    headers::strip_hop_by_hop(&mut h);
    headers::strip_forwarding(&mut h, trusted);
    if conn.shared.cluster.is_some() {
        // Only members speak the peer protocol: a client cannot steer fetches with it.
        kura_cluster::wire::strip_request(&mut h);
    }
    // The Host forwarded is the one keyed: validated, lowercase, default port left out; none
    // (the backend's own authority) when the key holds no host.
    match &forwarded_host {
        Some(v) => {
            h.insert(header::HOST, v.clone());
        }
        None => {
            h.remove(header::HOST);
        }
    }
    headers::set_forwarded(
        &mut h,
        &conn.client_ip,
        scope.scheme.then_some(target.scheme),
        forwarded_host,
    );
    headers::append_via(
        &mut h,
        if client_version == Version::HTTP_10 {
            &rt.via_10
        } else {
            &rt.via_11
        },
    );
    rule.request_headers.apply(&mut h);

    if let (Some(value), Some(on_client)) = (upgrade, client_upgrade) {
        upgrade::restore(&mut h, value);
        let out = Outgoing {
            method: parts.method,
            path: path_and_query,
            headers: h,
            body,
        };
        return forward_upgrade(rt, conn, rule, out, x, on_client).await;
    }

    let shadowing = match (&rule.shadow, &client_path) {
        (Some(sr), Some(client_path)) if rule.action == Action::Proxy => shadow_action::begin(
            &conn.shared.shadow,
            sr,
            ShadowedRequest {
                method: &parts.method,
                client_path,
                upstream_path: &path_and_query,
                headers: &h,
                declared,
            },
            &mut body,
        ),
        _ => None,
    };

    if rule.action == Action::Cache
        && let (Some(cache), Some(key)) = (&conn.shared.cache, matched.cache_key)
    {
        if parts.method.as_str() == "PURGE" {
            return Ok(cache_action::purge(rt, conn.client_addr, cache, &key).await);
        }
        if matches!(parts.method, Method::GET | Method::HEAD) && body.is_empty() {
            let cached = cache_action::Cached {
                key,
                target: client_url.map(Into::into),
                method: parts.method,
                path: path_and_query,
                headers: h,
            };
            return cache_action::serve(rt, rule, cache, cached).await;
        }
        if cache_action::is_unsafe(&parts.method) {
            let out = Outgoing {
                method: parts.method,
                path: path_and_query,
                headers: h,
                body,
            };
            let resp = forward(rt, rule, out, x, None).await?;
            if resp.status().as_u16() < 400 {
                cache.invalidate(key.as_str()).await;
                for k in cache_action::related_keys(vhost, &target, resp.headers()) {
                    cache.invalidate(k.as_str()).await;
                }
            }
            return Ok(resp);
        }
    }
    let out = Outgoing {
        method: parts.method,
        path: path_and_query,
        headers: h,
        body,
    };
    forward(rt, rule, out, x, shadowing).await
}

/// Sends the request to the rule's pool and streams the answer back (teeing it into the
/// shadow comparison when the request is shadowed).
async fn forward(
    rt: &Runtime,
    rule: &Rule,
    out: Outgoing,
    x: &mut Exchange,
    shadowing: Option<Shadowing>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let sent_at = Instant::now();
    let answer = rule.pool.send(out).await?;
    x.upstream_time = Some(sent_at.elapsed());
    x.upstream = Some(answer.lease.backend.spec.authority.as_str().into());
    Ok(respond(rt, rule, answer, shadowing))
}

/// Sends an upgrade request; a 101 answer becomes a tunnel between the two connections, any
/// other answer is returned as usual.
async fn forward_upgrade(
    rt: &Runtime,
    conn: &ConnInfo,
    rule: &Rule,
    out: Outgoing,
    x: &mut Exchange,
    on_client: hyper::upgrade::OnUpgrade,
) -> Result<Response<ProxyBody>, ProxyError> {
    if rule.pool.spec.http2 {
        return Err(ProxyError::Upstream(
            "an upgrade (WebSocket) needs an HTTP/1.1 pool".into(),
        ));
    }
    // Tunnels are counted: one more than `limits.max_upgraded` is refused before any backend
    // is asked.
    let Ok(slot) = conn.shared.upgrades.clone().try_acquire_owned() else {
        return Err(ProxyError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many upgraded connections".into(),
        ));
    };
    let sent_at = Instant::now();
    let mut answer = rule.pool.send(out).await?;
    x.upstream_time = Some(sent_at.elapsed());
    x.upstream = Some(answer.lease.backend.spec.authority.as_str().into());
    if answer.response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(respond(rt, rule, answer, None));
    }
    // The backend must have switched to a protocol the rule relays.
    let chosen = answer
        .response
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| !p.contains(',') && rule.relays_protocol(p));
    if !chosen {
        return Err(ProxyError::Upstream(
            "the backend switched to a protocol the rule does not relay".into(),
        ));
    }
    let on_upstream = hyper::upgrade::on(&mut answer.response);
    let (mut parts, _) = answer.response.into_parts();
    let value = upgrade::requested(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(v) = value {
        upgrade::restore(&mut parts.headers, v);
    }
    rule.response_headers.apply(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let tunnel = upgrade::spawn_tunnel(
        on_client,
        on_upstream,
        upgrade::Held {
            lease: answer.lease,
            slot,
        },
        rt.limits.websocket_idle_timeout,
        conn.shared.clone(),
    );
    // The client connection's task waits for its tunnel: the connection stays counted in
    // `max_connections` and tracked by shutdown until the tunnel closes.
    if let Ok(mut t) = conn.tunnel.lock() {
        *t = Some(tunnel);
    }
    Ok(Response::from_parts(parts, ProxyBody::empty()))
}

/// `301` (GET, HEAD) or `308` to the same URL over https.
fn redirect_to_https(req: &Request<Incoming>, t: &ClientTarget, port: u16) -> Response<ProxyBody> {
    let host = &t.host;
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == kura_config::DEFAULT_HTTPS_PORT {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// The client's response from the backend's answer.
fn respond(
    rt: &Runtime,
    rule: &Rule,
    answer: crate::upstream::Answer,
    shadowing: Option<Shadowing>,
) -> Response<ProxyBody> {
    let (mut parts, body) = answer.response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let mut body = ProxyBody::upstream(body, answer.lease);
    if let Some(s) = shadowing {
        body = s.capture(parts.status, parts.headers.clone(), body);
    }
    headers::append_via(
        &mut parts.headers,
        if parts.version == Version::HTTP_10 {
            &rt.via_10
        } else {
            &rt.via_11
        },
    );
    // The client connection has its own version; an HTTP/1.0 upstream must not downgrade it.
    parts.version = Version::HTTP_11;
    rule.response_headers.apply(&mut parts.headers);
    Response::from_parts(parts, body)
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    use http_body::Body as _;
    let hint = req.body().size_hint();
    if req.body().is_end_stream() {
        return Some(0);
    }
    hint.exact()
}

/// The path and query for the upstream: the rewritten path (which may carry its own query)
/// with the client's query kept, or the client's normalised path and query.
fn upstream_path(
    req: &Request<Incoming>,
    target: &ClientTarget,
    rewritten: Option<&str>,
) -> Result<PathAndQuery, ProxyError> {
    match rewritten {
        None if !target.path_changed() => match req.uri().path_and_query() {
            Some(pq) => Ok(pq.clone()),
            None => Ok(PathAndQuery::from_static("/")),
        },
        _ => cache_action::path_and_query(
            rewritten.unwrap_or_else(|| target.path(req)),
            req.uri().query(),
        ),
    }
}

fn log_fields(conn: &ConnInfo, req: &Request<Incoming>) -> LogFields {
    let header = |n: header::HeaderName| {
        req.headers()
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    LogFields {
        client: String::from_utf8_lossy(conn.client_ip.as_bytes()).into_owned(),
        method: req.method().as_str().to_string(),
        target: req.uri().to_string(),
        version: match req.version() {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        },
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
        host: header(header::HOST),
    }
}

fn error_response(rt: &Runtime, e: &ProxyError, is_head: bool) -> Response<ProxyBody> {
    let status = e.status();
    if status.is_server_error() {
        tracing::debug!(error = %e, %status, "request failed");
    }
    let page = rt.pages.page(status, &e.to_string());
    let len = page.len();
    let mut resp = Response::new(if is_head {
        ProxyBody::empty()
    } else {
        ProxyBody::full(page)
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if e.closes_connection() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
