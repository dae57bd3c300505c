//! The admin listener: the dashboard, Prometheus metrics, the live route table, backend
//! health, and reload.
//! It runs on its own address (keep it on loopback or a private network) and shares the
//! server's state read-only, except for the reload hook, purges and the shadow reset.
//!
//! Because a browser on the operator's machine can reach it, every request is checked
//! ([`Access`]) before it is routed:
//! - `Host` must be an IP literal, `localhost` or a name in `admin.hosts` (DNS rebinding: a
//!   page served from an attacker's name cannot read the API through that name);
//! - a request that changes state (`POST`) is refused when a browser says it comes from
//!   another origin (`Origin` not this listener, `Sec-Fetch-Site` not same-origin), so a page's
//!   `fetch(..., {mode: 'no-cors'})` purges nothing;
//! - with `admin.token` (or `KURA_ADMIN_TOKEN`), state changes need `Authorization: Bearer
//!   <token>`, and reads too with `admin.protect_reads` (not the dashboard's static files,
//!   which hold no data: its script asks for the token and sends it).
//!
//! Connections are capped (`admin.max_connections`) and held to `[limits]`' header, idle and
//! send timeouts (`side.rs`).
//!
//! | method | path        | answer                                                   |
//! |--------|-------------|----------------------------------------------------------|
//! | GET    | `/`         | the dashboard (`dashboard.rs`)                           |
//! | GET    | `/status`   | JSON: version, uptime, Redis and etcd state (`status.rs`) |
//! | GET    | `/traffic`  | JSON: requests per vhost over the last minutes (`traffic.rs`) |
//! | GET    | `/metrics`  | Prometheus text format                                   |
//! | GET    | `/healthz`  | `ok`                                                     |
//! | GET    | `/routes`   | JSON: vhosts, their hosts and rules                      |
//! | GET    | `/backends` | JSON: every pool's backends, alive or dead, connections  |
//! | POST   | `/reload`   | reloads the configuration file (as SIGHUP)               |
//! | GET    | `/cache`    | JSON: cache counters, sizes and the tiers' configured sizes |
//! | POST   | `/purge?url=URL` | purges the entry (and variants) URL maps to         |
//! | POST   | `/purge?key=K` | purges the entries whose key is K (template keys, images) |
//! | POST   | `/purge?prefix=P` | purges every cache key starting with P             |
//! | POST   | `/purge?all=true` | empties the cache                                  |
//! | GET    | `/cluster`  | JSON: members, etcd contact, peer-tier counters          |
//! | GET    | `/shadow`   | JSON: shadow counters and the per-endpoint report        |
//! | GET    | `/shadow.html` | the shadow report as a page                           |
//! | POST   | `/shadow/reset` | forgets the shadow report (counters stay)            |

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::control::dashboard;
use crate::control::traffic::{self, Traffic};
use crate::listen::side::Tracked;

use crate::clock::now_ms;
use crate::state::Shared;
use crate::upstream::Pool;

/// Who may do what on the admin listener.
pub(crate) struct Access {
    token: Option<String>,
    protect_reads: bool,
    hosts: Vec<String>,
    /// This listener's port, for comparing a browser's `Origin`.
    port: u16,
}

impl Access {
    pub(crate) fn new(cfg: &kura_config::AdminConfig, port: u16) -> Self {
        Access {
            token: cfg.token.clone(),
            protect_reads: cfg.protect_reads,
            hosts: cfg.hosts.clone(),
            port,
        }
    }

    /// `None` when `req` may proceed; else the refusal.
    fn check<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        let h = req.headers();
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| kura_config::target::Authority::parse(v).ok());
        let host_ok = host.as_ref().is_some_and(|a| {
            a.host == "localhost"
                || a.host.starts_with('[')
                || a.host.parse::<std::net::Ipv4Addr>().is_ok()
                || self.hosts.contains(&a.host)
        });
        if !host_ok {
            return Some(json_reply(
                StatusCode::MISDIRECTED_REQUEST,
                json!({"error": "Host is not this admin listener (see admin.hosts)"}),
            ));
        }
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
        if changes {
            let same_origin = match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
                None => true,
                Some(o) => {
                    let authority = o.split_once("://").map_or("", |(_, a)| a);
                    host.as_ref().is_some_and(|a| {
                        kura_config::target::Authority::parse(authority).is_ok_and(|o| {
                            o.host == a.host && o.port.or(Some(80)) == a.port.or(Some(self.port))
                        })
                    })
                }
            };
            let fetch_site_ok = h
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v == "same-origin" || v == "none");
            if !same_origin || !fetch_site_ok {
                return Some(json_reply(
                    StatusCode::FORBIDDEN,
                    json!({"error": "cross-origin requests may not change state"}),
                ));
            }
        }
        // The dashboard's files are static: a browser opening the page cannot send a token.
        let public = !changes && dashboard::asset(req.uri().path()).is_some();
        if let Some(token) = &self.token
            && (changes || (self.protect_reads && !public))
        {
            let given = h
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let ok = given.is_some_and(|g| {
                g.len() == token.len()
                    && g.bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            });
            if !ok {
                let mut r = json_reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "this needs the admin token (Authorization: Bearer …)"}),
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Some(r);
            }
        }
        None
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cfg: kura_config::AdminConfig,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let access = Arc::new(Access::new(&cfg, port));
    let cap = Arc::new(Semaphore::new(cfg.max_connections));
    let traffic = Arc::new(Traffic::new(&shared.metrics));
    tracker.spawn(traffic::run(
        traffic.clone(),
        shared.metrics.clone(),
        shared.shutdown.clone(),
    ));
    while let Some(conn) = crate::listen::side::next(&listener, &shared, &cap, false).await {
        let shared = shared.clone();
        let access = access.clone();
        let traffic = traffic.clone();
        tracker.spawn(async move {
            // The whole connection (its slot under the cap included) lives as long as this task.
            let conn = conn;
            let svc_shared = shared.clone();
            let state = conn.state.clone();
            let svc = service_fn(move |req| {
                let shared = svc_shared.clone();
                let access = access.clone();
                let traffic = traffic.clone();
                let state = state.clone();
                state.busy();
                async move {
                    let resp = match access.check(&req) {
                        Some(refused) => refused,
                        None => route(&shared, &traffic, req).await,
                    };
                    Ok::<_, Infallible>(resp.map(|b| Tracked::new(b, &state)))
                }
            });
            let limits = shared.runtime.load().limits.clone();
            let mut builder = http1::Builder::new();
            builder
                .header_read_timeout(None)
                .max_buf_size(limits.max_header_bytes.max(8192));
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
        });
    }
}

async fn route(
    shared: &Shared,
    traffic: &Traffic,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // HEAD is GET without the body (hyper leaves it out and keeps the length).
    if req.method() == Method::HEAD {
        *req.method_mut() = Method::GET;
    }
    if req.method() == Method::GET
        && let Some((ctype, body)) = dashboard::asset(req.uri().path())
    {
        return dashboard::serve(ctype, body);
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => json_reply(StatusCode::OK, super::status::report(shared)),
        (&Method::GET, "/traffic") => json_reply(StatusCode::OK, traffic.report(&shared.metrics)),
        (&Method::GET, "/cache") => {
            let mut v = json!(shared.cache.stats());
            if let (Some(o), Ok(serde_json::Value::Object(c))) = (
                v.as_object_mut(),
                serde_json::to_value(shared.cache.capacity()),
            ) {
                o.extend(c);
            }
            json_reply(StatusCode::OK, v)
        }
        (&Method::POST, "/purge") => purge(shared, req.uri().query().unwrap_or("")).await,
        (&Method::GET, "/cluster") => match &shared.cluster {
            Some(c) => json_reply(StatusCode::OK, json!(c.snapshot())),
            None => json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no cluster configured"}),
            ),
        },
        (&Method::GET, "/shadow") => json_reply(StatusCode::OK, shared.shadow.report_json()),
        (&Method::GET, "/shadow.html") => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            shared.shadow.report_html(),
        ),
        (&Method::POST, "/shadow/reset") => {
            shared.shadow.reset();
            json_reply(StatusCode::OK, json!({"reset": true}))
        }
        (&Method::GET, "/metrics") => {
            refresh_gauges(shared);
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                shared.metrics.encode(),
            )
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/routes") => json_reply(StatusCode::OK, routes(shared)),
        (&Method::GET, "/backends") => json_reply(StatusCode::OK, backends(shared)),
        (&Method::POST, "/reload") => match shared.reload_hook.get() {
            None => json_reply(
                StatusCode::NOT_IMPLEMENTED,
                json!({"error": "this server has no configuration file to reload"}),
            ),
            Some(reload) => match reload() {
                Ok(report) => json_reply(
                    StatusCode::OK,
                    json!({
                        "reloaded": true,
                        "summary": report.summary,
                        "needs_restart": report.needs_restart,
                    }),
                ),
                Err(e) => json_reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({
                        "reloaded": false,
                        "error": e.to_string(),
                        // Each refused field on its own, for tools (empty when the file
                        // validated but the table could not be built).
                        "fields": match &e {
                            crate::state::ReloadError::Invalid(c) => c
                                .errors
                                .iter()
                                .map(|f| json!({"field": f.field, "message": f.message}))
                                .collect(),
                            _ => Vec::new(),
                        },
                    }),
                ),
            },
        },
        _ => json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such admin endpoint"}),
        ),
    }
}

/// `POST /purge?url=…`, `?key=…`, `?prefix=…` or `?all=true`.
async fn purge(shared: &Shared, query: &str) -> Response<Full<Bytes>> {
    let cache = &shared.cache;
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    if let Some(url) = param("url") {
        let rt = shared.runtime.load();
        let Some(key) = rt.table.key_for_url(&url) else {
            return json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no cache rule matches this URL", "url": url}),
            );
        };
        let n = cache.purge_key(key.as_str()).await.0;
        return json_reply(StatusCode::OK, json!({"purged": n, "key": key.as_str()}));
    }
    if let Some(text) = param("key") {
        let keys = shared.runtime.load().table.keys_named(&text);
        let mut n = 0;
        for k in keys {
            n += cache.purge_key(k.as_str()).await.0;
        }
        return json_reply(StatusCode::OK, json!({"purged": n, "key": text}));
    }
    if let Some(prefix) = param("prefix") {
        let prefixes = shared.runtime.load().table.purge_prefixes(&prefix);
        let mut n = 0;
        for p in prefixes {
            n += cache.purge_prefix(&p).await.0;
        }
        return json_reply(StatusCode::OK, json!({"purged": n, "prefix": prefix}));
    }
    if param("all").as_deref() == Some("true") {
        let n = cache.purge_all().await.0;
        return json_reply(StatusCode::OK, json!({"purged": n, "all": true}));
    }
    json_reply(
        StatusCode::BAD_REQUEST,
        json!({"error": "give url=URL, key=KEY, prefix=URL_PREFIX or all=true"}),
    )
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn refresh_gauges(shared: &Shared) {
    let rt = shared.runtime.load();
    let now = now_ms();
    shared.metrics.backend_up.reset();
    for pool in rt.table.pools.values() {
        for b in &pool.backends {
            shared
                .metrics
                .backend_up
                .with_label_values(&[pool.spec.name.as_str(), b.spec.url.as_str()])
                .set(i64::from(b.is_available(now)));
        }
    }
}

fn routes(shared: &Shared) -> serde_json::Value {
    let rt = shared.runtime.load();
    let vhosts: Vec<_> = rt
        .table
        .vhosts
        .iter()
        .map(|v| {
            json!({
                "name": &*v.name,
                "hosts": v.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "rules": v.rules.iter().map(|r| json!({
                    "id": r.id.hex(),
                    "path": r.path.as_str(),
                    "action": r.action.kind().as_str(),
                    "pool": r.pool.spec.name,
                    "rewrite": r.rewrite.as_ref().map(|t| t.source()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let dynamic = shared.dynamic.load();
    json!({
        "generation": rt.generation,
        "vhosts": vhosts,
        "redis_frontends": dynamic.count(),
    })
}

fn backends(shared: &Shared) -> serde_json::Value {
    let rt = shared.runtime.load();
    let now = now_ms();
    let dynamic = shared.dynamic.load();
    let redis_pools: Vec<(String, Arc<Pool>)> = dynamic
        .vhosts()
        .flat_map(|v| {
            v.rules
                .iter()
                .map(|r| (r.pool.spec.name.clone(), r.pool.clone()))
        })
        .collect();
    let pools: serde_json::Map<String, serde_json::Value> = rt
        .table
        .pools
        .iter()
        .chain(redis_pools.iter().map(|(n, p)| (n, p)))
        // A who-has pool's clusters are listed as `<pool>#<index>`.
        .flat_map(|(name, pool)| {
            std::iter::once((name, pool))
                .chain(pool.whohas_groups().iter().map(|c| (&c.spec.name, c)))
        })
        .map(|(name, pool)| {
            let list: Vec<_> = pool
                .backends
                .iter()
                .map(|b| {
                    json!({
                        "url": b.spec.url,
                        "alive": b.is_available(now),
                        "dead_for_ms": b.dead_for_ms(),
                        "health_check_down": b.active_down.load(Relaxed),
                        "in_flight": b.in_flight.load(Relaxed),
                        "idle_connections": b.idle_count(),
                        "connections_opened": b.connects.load(Relaxed),
                    })
                })
                .collect();
            (
                name.clone(),
                json!({ "balance": pool.spec.balance.as_str(), "backends": list }),
            )
        })
        .collect();
    json!({ "pools": pools })
}

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(
            super::percent_decode("http%3A%2F%2Fa.com%2Fx%20y+z"),
            "http://a.com/x y z"
        );
        assert_eq!(super::percent_decode("100%"), "100%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}
