//! One request, read top to bottom as its phases (Pingora's request filter, upstream, response
//! filter and logging, in kura's words):
//!
//! 1. **head** ([`handle`], [`read_target`]): the request id and span are made, the target is
//!    read once and normalised; the ping host and https redirects are answered here.
//! 2. **route** (`route::table`): host → vhost (the file's, then Redis's) → first matching
//!    rule → its [`Plan`] (with the cache key or image arguments it makes of the request).
//! 3. **action** (`action::*`): a proxy rule forwards (with shadow copies and upgrades), a
//!    cache rule answers GET and HEAD through the cache (PURGE and unsafe methods around it),
//!    a resize rule serves an image; the request to forward is [`prepare`]d once for them.
//! 4. **finish** ([`finish`]): every answer an action made leaves through this one function
//!    (hop-by-hop headers, `Via`, the rule's response headers, HTTP/1.1); every failure leaves
//!    through [`error_response`] as its status and page.
//! 5. **log**: the response body carries the [`Exchange`]; when the body ends or is dropped
//!    the connection ([`ConnInfo`], an [`ExchangeSink`]) records it in metrics and the access
//!    log and becomes idle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tracing::Instrument;

use crate::action::cache::{self, CacheAction, Cached};
use crate::action::proxy::{self, ClientSide, ProxyAction};
use crate::action::{Reply, resize, upgrade};
use crate::body::{ProxyBody, ReqBody};
use crate::context::{Exchange, ExchangeSink, LogFields};
use crate::control::access_log::Entry;
use crate::errors::{ProxyError, Side};
use crate::headers;
use crate::listen::timeouts::{ConnState, SendCut};
use crate::route::table::{Plan, RouteInput, Rule, VHost};
use crate::route::target::{ClientTarget, path_and_query, target_error};
use crate::state::{Runtime, Shared};
use crate::upstream::Outgoing;

/// The health endpoint Hipache answered on `Host: __ping__`.
const PING_HOST: &str = "__ping__";

/// The request id header: believed from trusted proxies, set on every upstream request.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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

/// Phase 5: a finished exchange goes into the metrics and the access log, and the
/// connection is idle again.
impl ExchangeSink for ConnInfo {
    fn complete(&self, x: &Exchange, bytes_sent: u64) {
        let elapsed = x.start.elapsed();
        let shared = &self.shared;
        let counters = x.counters.as_deref().unwrap_or(&shared.unmatched);
        counters.record(&shared.metrics, x.status, elapsed.as_secs_f64());
        if let (Some(log), Some(f)) = (&shared.access_log, &x.log) {
            // An answer unfinished when its connection was cut for the send timeout was cut by
            // it (its head went out with the backend's status): its client's doing, unless
            // its upstream had sent nothing since the last write.
            let cut = match x.error {
                Some(_) => None,
                None => self
                    .state
                    .send_cut(x.body_waiting_since_ms)
                    .map(|cut| match cut {
                        SendCut::Client => ProxyError::SendTimeout,
                        SendCut::UpstreamStalled => ProxyError::Upstream(
                            "the body stalled: nothing came for limits.send_timeout".into(),
                        ),
                    }),
            };
            let error = x.error.as_ref().or(cut.as_ref());
            log.log(&Entry {
                client: &f.client,
                method: &f.method,
                target: &f.target,
                version: f.version,
                status: x.status.as_u16(),
                bytes_sent,
                referer: &f.referer,
                user_agent: &f.user_agent,
                host: &f.host,
                vhost: &counters.name,
                upstream: x.upstream.as_deref().unwrap_or(""),
                request_time: elapsed,
                upstream_time: x.upstream_time,
                request_id: x.id.to_str().unwrap_or("-"),
                error,
            });
        }
        self.state.idle();
    }
}

/// Serves one request: its phases inside its span, then the response with its exchange
/// attached (and, for HTTP/2, read ahead into a bounded buffer).
pub async fn handle(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    conn.state.busy();
    let rt = conn.shared.runtime.load_full();
    let trusted = rt.trusts(conn.client_addr);
    let id = request_id(&req, trusted);
    let span = tracing::info_span!("request", id = %id.to_str().unwrap_or("-"));
    let log = conn
        .shared
        .access_log
        .is_some()
        .then(|| log_fields(&conn, &req));
    let mut x = Box::new(Exchange {
        start: std::time::Instant::now(),
        id,
        sink: conn.clone(),
        counters: None,
        status: StatusCode::OK,
        upstream: None,
        upstream_time: None,
        log,
        error: None,
        span: span.clone(),
        body_waiting_since_ms: 0,
    });
    let is_head = req.method() == Method::HEAD;
    let version = req.version();
    let h2 = version == Version::HTTP_2;
    if h2 {
        conn.state.saw_http2();
    }
    // Boxed: the phases' future is kilobytes, and hyper moves the request's future (into its
    // dispatcher, into an HTTP/2 stream's task) before polling it; a box is moved as a pointer.
    let mut resp = match Box::pin(phases(&rt, &conn, req, trusted, &mut x).instrument(span)).await {
        Ok(r) => r,
        Err(e) => {
            let resp = error_response(&rt, &e, is_head);
            x.error = Some(e);
            resp
        }
    };
    x.status = resp.status();
    if !h2
        && conn.shared.shutdown.is_cancelled()
        && resp.status() != StatusCode::SWITCHING_PROTOCOLS
    {
        // Draining: the connection's last response. The client opens its next connection
        // with the server that now accepts (see `ServerHandle::begin_handover`).
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    conn.state.responding();
    let (parts, body) = resp.into_parts();
    let body = body.with_exchange(x).for_client(version, &parts.headers);
    let resp = Response::from_parts(parts, body);
    if h2 {
        // One stream's closed window must not hold an upstream connection: read ahead into a
        // bounded buffer, and give up after the send timeout.
        let (limit, timeout) = (rt.limits.http2_stream_buffer, rt.limits.send_timeout);
        return Ok(resp.map(|b| b.pumped(limit, timeout)));
    }
    Ok(resp)
}

/// Phases 1 to 4: head, route, action, finish.
async fn phases(
    rt: &Runtime,
    conn: &ConnInfo,
    req: Request<Incoming>,
    trusted: bool,
    x: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    // 1. The head.
    let target = read_target(conn, &req, trusted)?;
    if target.host == PING_HOST {
        return Ok(Response::new(ProxyBody::full("OK\n")));
    }
    if let Some(port) = conn.redirect_https {
        return Ok(redirect_to_https(&req, &target, port));
    }

    // 2. Route. Without Redis frontends the vhost is borrowed from the snapshot (no reference
    // count touched); with them, it is held by its own `Arc` for the request.
    let from_redis;
    let vhost = {
        let dynamic = conn.shared.dynamic.load();
        if dynamic.count() == 0 {
            rt.table
                .lookup(&target.host)
                .ok_or(ProxyError::UnknownHost)?
        } else {
            from_redis = crate::route::table::lookup(&rt.table.hosts, &dynamic, &target.host)
                .cloned()
                .ok_or(ProxyError::UnknownHost)?;
            &from_redis
        }
    };
    x.counters = Some(vhost.counters.clone());
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

    // 3. The action.
    let reply = match matched.plan {
        Plan::Resize(action, args) => {
            resize::serve(action, *args, req.method(), req.headers()).await?
        }
        Plan::Proxy(action) => {
            let client_path = action.shadow.is_some().then(|| path.to_string());
            let p = prepare(rt, conn, req, &target, rule, matched.rewritten, trusted, x)?;
            match p.upgrade {
                Some(u) => open_upgrade(rt, conn, rule, p.out, u, x).await?,
                None => serve_proxy(conn, rule, action, p, client_path, x).await?,
            }
        }
        Plan::Cache(action, key) => {
            // The client's URL as keyed, for a cluster owner to derive the key from.
            let url = conn
                .shared
                .cluster
                .is_some()
                .then(|| target.url(path, query));
            let p = prepare(rt, conn, req, &target, rule, matched.rewritten, trusted, x)?;
            match p.upgrade {
                Some(u) => open_upgrade(rt, conn, rule, p.out, u, x).await?,
                None => {
                    let c = CacheCall {
                        action,
                        key,
                        url,
                        vhost,
                        target: &target,
                    };
                    serve_cache(rt, conn, rule, c, p.out, x).await?
                }
            }
        }
    };

    // 4. Finish.
    Ok(finish(rt, rule, reply))
}

/// The request's target, with the scheme a trusted proxy says the client used.
fn read_target(
    conn: &ConnInfo,
    req: &Request<Incoming>,
    trusted: bool,
) -> Result<ClientTarget, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadTarget);
    }
    // Forwarding headers are believed only from trusted proxies.
    let scheme = match trusted {
        true => headers::trusted_scheme(req.headers()).unwrap_or(conn.scheme),
        false => conn.scheme,
    };
    // The one reading of the target: everything below uses its normalised form.
    ClientTarget::read(req, scheme)
}

/// A request as it will be forwarded, and what the actions read of the client's side.
struct Prepared {
    out: Outgoing,
    /// The body length the client declared, if any.
    declared: Option<u64>,
    /// An upgrade the rule relays: the protocols to ask for, and the client's connection.
    upgrade: Option<(HeaderValue, OnUpgrade)>,
}

/// Builds the request the rule's pool gets: path rewritten, body limited, hop-by-hop and
/// untrusted forwarding headers gone, `Host`, `X-Forwarded-*`, `Via` and the request id set,
/// the rule's request headers applied.
#[allow(clippy::too_many_arguments)]
fn prepare(
    rt: &Runtime,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    target: &ClientTarget,
    rule: &Rule,
    rewritten: Option<String>,
    trusted: bool,
    x: &Exchange,
) -> Result<Prepared, ProxyError> {
    let path = upstream_path(&req, target, rewritten.as_deref())?;
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
        .and_then(|v| rule.allowed_upgrade(&v))
        .map(|v| (v, hyper::upgrade::on(&mut req)));
    let (parts, body) = req.into_parts();
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
    h.insert(X_REQUEST_ID, x.id.clone());
    rule.request_headers.apply(&mut h);
    if let Some((value, _)) = &upgrade {
        upgrade::restore(&mut h, value.clone());
    }
    Ok(Prepared {
        out: Outgoing {
            method: parts.method,
            path,
            headers: h,
            body: ReqBody::new(body, stream_limit),
        },
        declared,
        upgrade,
    })
}

/// The proxy action: forward, with shadow copies when the rule has them.
async fn serve_proxy(
    conn: &ConnInfo,
    rule: &Rule,
    action: &ProxyAction,
    p: Prepared,
    client_path: Option<String>,
    x: &mut Exchange,
) -> Result<Reply, ProxyError> {
    let client = ClientSide {
        path: client_path.as_deref().unwrap_or(""),
        declared: p.declared,
    };
    action
        .serve(&rule.pool, &conn.shared.shadow, p.out, client, x)
        .await
}

/// What the cache action needs of routing.
struct CacheCall<'a> {
    action: &'a CacheAction,
    key: kura_cache::key::PrimaryKey,
    /// The client's URL as keyed (for cluster owners).
    url: Option<String>,
    vhost: &'a VHost,
    target: &'a ClientTarget,
}

/// The cache action: PURGE, GET and HEAD through the cache; other methods are forwarded, and
/// unsafe ones that succeed invalidate what is stored for the URL.
async fn serve_cache(
    rt: &Runtime,
    conn: &ConnInfo,
    rule: &Rule,
    c: CacheCall<'_>,
    out: Outgoing,
    x: &mut Exchange,
) -> Result<Reply, ProxyError> {
    if out.method.as_str() == "PURGE" {
        return Ok(cache::purge(c.action, &rt.purge_allow, conn.client_addr, &c.key).await);
    }
    if matches!(out.method, Method::GET | Method::HEAD) && out.body.is_empty() {
        let cached = Cached {
            key: c.key,
            target: c.url.map(Into::into),
            method: out.method,
            path: out.path,
            headers: out.headers,
        };
        return cache::serve(c.action, cached).await;
    }
    let invalidates = cache::is_unsafe(&out.method);
    let reply = proxy::forward(&rule.pool, out, x).await?;
    if invalidates && reply.status().as_u16() < 400 {
        let related = c.vhost.related_keys(c.target, reply.headers());
        cache::invalidate(c.action, &c.key, related).await;
    }
    Ok(reply)
}

/// An upgrade: a tunnel when the backend switches, which the client connection's task waits
/// for (the connection stays counted in `max_connections` and tracked by shutdown).
async fn open_upgrade(
    rt: &Runtime,
    conn: &ConnInfo,
    rule: &Rule,
    out: Outgoing,
    (_, on_client): (HeaderValue, OnUpgrade),
    x: &mut Exchange,
) -> Result<Reply, ProxyError> {
    let (reply, tunnel) = upgrade::open(
        &rule.pool,
        out,
        on_client,
        &conn.shared.tunnels,
        rt.limits.websocket_idle_timeout,
        |p| rule.relays_protocol(p),
        x,
    )
    .await?;
    if let (Some(t), Ok(mut slot)) = (tunnel, conn.tunnel.lock()) {
        *slot = Some(t);
    }
    Ok(reply)
}

/// Phase 4: the client's response from an action's answer. Everything relayed loses its
/// hop-by-hop headers (a shadowed answer is teed into the comparison as it is then), gets
/// `Via` for the version it was received with and the rule's response headers, and goes out
/// as HTTP/1.1 whatever the upstream spoke (the client connection has its own version).
fn finish(rt: &Runtime, rule: &Rule, reply: Reply) -> Response<ProxyBody> {
    let (mut parts, body, received) = match reply {
        Reply::Generated(r) => return r,
        Reply::Relayed {
            response,
            received,
            shadowing,
        } => {
            let (mut parts, mut body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            if let Some(s) = shadowing {
                body = s.capture(parts.status, parts.headers.clone(), body);
            }
            (parts, body, received)
        }
        Reply::Switched { response, upgrade } => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            upgrade::restore(&mut parts.headers, upgrade);
            let received = parts.version;
            (parts, body, received)
        }
    };
    let via = match received {
        Version::HTTP_10 => &rt.via_10,
        _ => &rt.via_11,
    };
    headers::append_via(&mut parts.headers, via);
    parts.version = Version::HTTP_11;
    rule.response_headers.apply(&mut parts.headers);
    Response::from_parts(parts, body)
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
        _ => path_and_query(
            rewritten.unwrap_or_else(|| target.path(req)),
            req.uri().query(),
        ),
    }
}

/// The longest `X-Request-Id` kept from a trusted proxy.
const MAX_REQUEST_ID: usize = 128;

/// The request's id: a trusted proxy's `X-Request-Id` when it is the only one and short,
/// visible ASCII (with two, which one the proxy set is unknown); otherwise one made here (32
/// hex digits: this process's random prefix and a counter).
fn request_id(req: &Request<Incoming>, trusted: bool) -> HeaderValue {
    let mut ids = req.headers().get_all(X_REQUEST_ID).iter();
    if trusted
        && let Some(v) = ids.next()
        && ids.next().is_none()
        && (1..=MAX_REQUEST_ID).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    new_request_id()
}

fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Relaxed);
    let mut buf = [0u8; 32];
    hex(*PREFIX, &mut buf[..16]);
    hex(n, &mut buf[16..]);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("-"))
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
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
        target: logged_target(req.uri()),
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

/// The target as logged: an absolute-form target's userinfo (credentials) is left out.
fn logged_target(uri: &http::Uri) -> String {
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            let host = a.as_str().rsplit('@').next().unwrap_or_default();
            let scheme = uri
                .scheme_str()
                .map(|s| format!("{s}://"))
                .unwrap_or_default();
            let rest = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
            format!("{scheme}{host}{rest}")
        }
        _ => uri.to_string(),
    }
}

/// A failure as the client sees it: its status and page (no body for HEAD), never stored,
/// and the connection closed when the request was malformed or its body left unread.
fn error_response(rt: &Runtime, e: &ProxyError, is_head: bool) -> Response<ProxyBody> {
    let status = e.status();
    if status.is_server_error() {
        tracing::debug!(error = %e, kind = e.kind(), %status, "request failed");
    }
    let detail = match e.side() {
        Side::Client => e.to_string(),
        Side::Upstream => format!("upstream: {e}"),
        Side::Internal => format!("kura: {e}"),
    };
    let page = rt.pages.page(status, &detail);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_targets_leave_credentials_out() {
        let t = |s: &str| logged_target(&s.parse().unwrap());
        assert_eq!(t("http://user:pw@echo.test/a?b"), "http://echo.test/a?b");
        assert_eq!(t("http://u@echo.test:81/"), "http://echo.test:81/");
        assert_eq!(t("/plain?x=@y"), "/plain?x=@y");
        assert_eq!(t("http://echo.test/p@q"), "http://echo.test/p@q");
    }

    #[test]
    fn made_request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        // The same process prefix, a different counter.
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16]);
    }
}
