//! Backend pools: balancing, passive health, bounded retries and timeouts.
//!
//! [`Pool::send`] picks a backend (round robin, random or least connections among those in
//! rotation), sends the request over a leased keep-alive connection, and on failure retries on a
//! backend not yet tried. A request is retried when it was never sent (connection refused, no
//! free slot), or when it is idempotent and has no body (so it can be rebuilt); a request whose
//! body was already streamed cannot be replayed and fails with its error.

mod backend;
pub mod health;
pub mod origin;
mod tls;
mod whohas;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use kura_config::{Balance, PoolSpec};

pub use backend::{Backend, Lease};

use crate::body::ReqBody;
use crate::clock::now_ms;
use crate::control::metrics::Metrics;
use crate::errors::ProxyError;

/// A pool of backends with shared settings and balancing state.
pub struct Pool {
    pub spec: PoolSpec,
    pub backends: Vec<Arc<Backend>>,
    rr: AtomicUsize,
    /// Told (backend index, TTL) when passive health marks a backend dead: a Redis frontend
    /// shares the mark with other instances through Redis.
    pub on_dead: OnceLock<Box<dyn Fn(usize, Duration) + Send + Sync>>,
    /// A pool of clusters (Katana's origin): requests go to the cluster that has the file.
    whohas: Option<whohas::WhoHas>,
}

/// A request ready for the upstream: the path is final except for the backend's base path.
pub struct Outgoing {
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: HeaderMap,
    pub body: ReqBody,
}

/// The upstream's answer, with the lease to release once its body is read.
pub struct Answer {
    pub response: Response<Incoming>,
    pub lease: Lease,
}

impl Pool {
    /// A pool whose backends keep `slots` idle stacks (worker threads + 1).
    pub fn new(spec: PoolSpec, metrics: Arc<Metrics>, slots: usize) -> Arc<Self> {
        let tls = tls::client_config(&spec);
        let backends = spec
            .backends
            .iter()
            .map(|b| {
                Arc::new(Backend::new(
                    b.clone(),
                    &spec,
                    tls.as_ref(),
                    metrics.clone(),
                    slots,
                ))
            })
            .collect();
        let whohas =
            (!spec.whohas.is_empty()).then(|| whohas::WhoHas::new(&spec, metrics.clone(), slots));
        let pool = Self::build(spec, backends, whohas);
        if pool.spec.health_check.is_some() && pool.whohas.is_none() {
            health::spawn(&pool);
        }
        pool
    }

    /// The tls configuration `spec`'s backends need (for backends made outside [`Pool::new`]).
    pub fn tls_for(spec: &PoolSpec) -> Option<Arc<rustls::ClientConfig>> {
        tls::client_config(spec)
    }

    /// A pool over existing backends (shared with other pools: one set of connections and one
    /// health state per backend URL, as Redis frontends use).
    pub fn with_backends(spec: PoolSpec, backends: Vec<Arc<Backend>>) -> Arc<Self> {
        let pool = Self::build(spec, backends, None);
        if pool.spec.health_check.is_some() {
            health::spawn(&pool);
        }
        pool
    }

    fn build(
        spec: PoolSpec,
        backends: Vec<Arc<Backend>>,
        whohas: Option<whohas::WhoHas>,
    ) -> Arc<Self> {
        Arc::new(Pool {
            spec,
            backends,
            rr: AtomicUsize::new(0),
            on_dead: OnceLock::new(),
            whohas,
        })
    }

    /// The groups of a who-has pool (each a pool of its replicas); empty otherwise.
    pub fn whohas_groups(&self) -> &[Arc<Pool>] {
        self.whohas.as_ref().map(|w| w.groups()).unwrap_or(&[])
    }

    /// `HEAD path` on backend `i` only (who-has probes): the status, or `None` if it failed.
    pub async fn head_on(
        &self,
        i: usize,
        path: &PathAndQuery,
        headers: &HeaderMap,
    ) -> Option<http::StatusCode> {
        let backend = self.backends.get(i)?;
        let mut req = build_request(Outgoing {
            method: Method::HEAD,
            path: path.clone(),
            headers: headers.clone(),
            body: ReqBody::empty(),
        });
        self.target(&mut req, backend, path);
        match self.attempt(backend, req).await {
            Ok(answer) => {
                let status = answer.response.status();
                backend.record_success();
                // A HEAD answer has no body: the connection is free again.
                answer.lease.release();
                Some(status)
            }
            Err(f) => {
                if let Some(kind) = f.kind {
                    self.failed(i, kind);
                }
                None
            }
        }
    }

    fn failed(&self, i: usize, kind: &'static str) {
        if self.backends[i].record_failure(&self.spec, kind)
            && let Some(report) = self.on_dead.get()
        {
            report(i, self.spec.dead_backend_ttl);
        }
    }

    /// Index of the next backend to try, skipping `tried` and those out of rotation.
    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        let n = self.backends.len();
        let now = now_ms();
        let ok = |i: &usize| !tried.contains(i) && self.backends[*i].is_available(now);
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0).filter(ok);
        }
        let start = match self.spec.balance {
            Balance::Random => fastrand::usize(..n),
            Balance::RoundRobin | Balance::LeastConn => self.rr.fetch_add(1, Relaxed),
        };
        let mut order = (0..n).map(|k| (start + k) % n).filter(ok);
        match self.spec.balance {
            Balance::RoundRobin | Balance::Random => order.next(),
            // `min_by_key` keeps the first minimum, so ties rotate with `start`.
            Balance::LeastConn => order.min_by_key(|&i| self.backends[i].in_flight.load(Relaxed)),
        }
    }

    /// Sends `out` to a backend, retrying as the module doc describes. A who-has pool first
    /// finds the cluster holding the path.
    pub async fn send(&self, out: Outgoing) -> Result<Answer, ProxyError> {
        if let Some(w) = &self.whohas {
            let cluster = w.locate(&out.path, &out.headers).await;
            return Box::pin(cluster.send(out)).await;
        }
        let replayable = is_idempotent(&out.method) && out.body.is_empty();
        let fault = out.body.fault();
        let path = out.path.clone();
        let template = (replayable && self.spec.retries > 0)
            .then(|| (out.method.clone(), out.headers.clone()));
        let mut req = Some(build_request(out));
        let mut tried: Vec<usize> = Vec::new();
        let mut last_err = ProxyError::NoBackend;
        for attempt in 0..=self.spec.retries {
            let Some(i) = self.select(&tried) else { break };
            tried.push(i);
            let backend = &self.backends[i];
            let mut request = match req.take() {
                Some(r) => r,
                None => match &template {
                    Some((m, h)) => build_request(Outgoing {
                        method: m.clone(),
                        path: path.clone(),
                        headers: h.clone(),
                        body: ReqBody::empty(),
                    }),
                    None => break,
                },
            };
            self.target(&mut request, backend, &path);
            let last_attempt = attempt == self.spec.retries;
            match self.attempt(backend, request).await {
                Ok(answer) => {
                    let status = answer.response.status().as_u16();
                    if self.spec.dead_on_status.contains(&status) {
                        self.failed(i, "status");
                        if template.is_some() && !last_attempt && self.select(&tried).is_some() {
                            last_err = ProxyError::Upstream(format!("status {status}"));
                            continue;
                        }
                    } else {
                        backend.record_success();
                    }
                    return Ok(answer);
                }
                Err(Failure {
                    error,
                    kind,
                    unsent,
                    stale,
                }) => {
                    // The client's body failed (too large, malformed, cut off): not the
                    // backend's doing, and nothing to retry.
                    if let Some(client_error) = fault.as_ref().and_then(|f| f.error()) {
                        return Err(client_error);
                    }
                    if let Some(kind) = kind {
                        self.failed(i, kind);
                    }
                    tracing::debug!(pool = %self.spec.name, backend = %backend.spec.url, %error, "upstream attempt failed");
                    if stale {
                        // The same backend may take the retry, on a fresh connection.
                        tried.pop();
                    }
                    last_err = error;
                    req = unsent;
                }
            }
        }
        Err(last_err)
    }

    /// Points the request at `backend`: its base path before `path` and, unless the host is
    /// preserved, its authority as `Host`.
    fn target(&self, req: &mut Request<ReqBody>, backend: &Backend, path: &PathAndQuery) {
        let base = &backend.spec.base_path;
        let full_path = if base.is_empty() {
            path.clone()
        } else {
            let mut full = String::with_capacity(base.len() + path.as_str().len());
            full.push_str(base);
            full.push_str(path.as_str());
            PathAndQuery::try_from(full).unwrap_or_else(|_| path.clone())
        };
        if (!self.spec.preserve_host || !req.headers().contains_key(header::HOST))
            && let Ok(v) = HeaderValue::from_str(&backend.spec.authority)
        {
            req.headers_mut().insert(header::HOST, v);
        }
        for (name, value) in &self.spec.set_headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        *req.uri_mut() = if self.spec.http2 {
            // HTTP/2 carries the target as :scheme, :authority and :path; the authority is the
            // Host the backend would have seen over HTTP/1.1.
            let authority = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(&backend.spec.authority)
                .to_string();
            *req.version_mut() = Version::HTTP_2;
            Uri::builder()
                .scheme(if backend.spec.tls { "https" } else { "http" })
                .authority(authority)
                .path_and_query(full_path.clone())
                .build()
                .unwrap_or_else(|_| Uri::from(full_path))
        } else {
            Uri::from(full_path)
        };
    }

    async fn attempt(
        &self,
        backend: &Arc<Backend>,
        request: Request<ReqBody>,
    ) -> Result<Answer, Failure> {
        let mut lease = match backend.checkout(&self.spec).await {
            Ok(l) => l,
            Err(error) => {
                let kind = match error {
                    ProxyError::PoolExhausted => None,
                    ProxyError::Timeout => Some("connect_timeout"),
                    _ => Some("connect"),
                };
                return Err(Failure {
                    error,
                    kind,
                    unsent: Some(request),
                    stale: false,
                });
            }
        };
        backend.count_request();
        let upgrade = request.headers().contains_key(header::UPGRADE);
        if upgrade {
            lease.detach_for_upgrade();
        }
        let body = request.body().fault();
        lease.carries(body.clone());
        let timeout = self.spec.response_timeout;
        let result = tokio::time::timeout(timeout, lease.sender().try_send_request(request)).await;
        let result = match result {
            // Still uploading the client's body when the time ran out: the client is slow, not
            // the backend (which must not be marked dead for it).
            Err(_) if body.as_ref().is_some_and(|b| !b.finished()) => {
                return Err(Failure {
                    error: ProxyError::BodyTimeout,
                    kind: None,
                    unsent: None,
                    stale: false,
                });
            }
            Err(_) => return Err(Failure::sent(ProxyError::Timeout, "timeout")),
            Ok(Ok(response)) => {
                lease.note_keep_alive(response.headers());
                return Ok(Answer { response, lease });
            }
            Ok(Err(e)) => e,
        };
        let mut e = result;
        let Some(request) = e.take_message() else {
            if lease.reused {
                // Sent on a kept-alive connection that the backend closed meanwhile: a stale
                // connection, not a failing backend.
                backend.clear_idle();
                return Err(Failure {
                    error: ProxyError::Upstream(e.into_error().to_string()),
                    kind: None,
                    unsent: None,
                    stale: true,
                });
            }
            return Err(Failure::sent(
                ProxyError::Upstream(e.into_error().to_string()),
                "reset",
            ));
        };
        if !lease.reused {
            return Err(Failure {
                error: ProxyError::Upstream(e.into_error().to_string()),
                kind: Some("connect"),
                unsent: Some(request),
                stale: false,
            });
        }
        // A kept-alive connection the backend had closed: not the backend's fault, and the
        // request was not sent, so try once more on a fresh connection.
        match backend.connect(self.spec.connect_timeout).await {
            Ok(sender) => {
                lease.replace_sender(sender);
                if upgrade {
                    lease.detach_for_upgrade();
                }
            }
            Err(error) => {
                return Err(Failure {
                    error,
                    kind: Some("connect"),
                    unsent: Some(request),
                    stale: false,
                });
            }
        }
        match tokio::time::timeout(timeout, lease.sender().try_send_request(request)).await {
            Err(_) => Err(Failure::sent(ProxyError::Timeout, "timeout")),
            Ok(Ok(response)) => {
                lease.note_keep_alive(response.headers());
                Ok(Answer { response, lease })
            }
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                Err(Failure {
                    error: ProxyError::Upstream(e.into_error().to_string()),
                    kind: Some("reset"),
                    unsent,
                    stale: false,
                })
            }
        }
    }
}

struct Failure {
    error: ProxyError,
    /// The failure counted against the backend's health, if any.
    kind: Option<&'static str>,
    /// The request, when it was never sent and can go elsewhere as is.
    unsent: Option<Request<ReqBody>>,
    /// A reused connection turned out closed: the same backend may be tried again.
    stale: bool,
}

impl Failure {
    fn sent(error: ProxyError, kind: &'static str) -> Self {
        Failure {
            error,
            kind: Some(kind),
            unsent: None,
            stale: false,
        }
    }
}

fn build_request(out: Outgoing) -> Request<ReqBody> {
    let mut req = Request::new(out.body);
    *req.method_mut() = out.method;
    *req.uri_mut() = Uri::from(out.path);
    *req.headers_mut() = out.headers;
    *req.version_mut() = Version::HTTP_11;
    req
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pool_selects_nothing_in_every_mode() {
        for balance in [Balance::RoundRobin, Balance::Random, Balance::LeastConn] {
            let spec = PoolSpec {
                name: "empty".into(),
                backends: Vec::new(),
                balance,
                max_connections_per_backend: 1,
                max_idle_per_backend: 1,
                idle_timeout: std::time::Duration::from_secs(1),
                connect_timeout: std::time::Duration::from_secs(1),
                response_timeout: std::time::Duration::from_secs(1),
                dead_backend_ttl: std::time::Duration::from_secs(1),
                max_fails: 1,
                dead_on_status: Vec::new(),
                retries: 2,
                preserve_host: true,
                health_check: None,
                http2: false,
                tls_ca: None,
                whohas: Vec::new(),
                whohas_ttl: std::time::Duration::from_secs(1),
                whohas_entries: 1,
                set_headers: Vec::new(),
            };
            let pool = Pool::new(spec, Arc::new(Metrics::new()), 1);
            assert_eq!(pool.select(&[]), None);
        }
    }
}
