//! Mock origins: real HTTP/1.1 servers on port 0 whose behaviour a test picks (fixed, slow,
//! failing, echoing, streaming, resetting) and which count what reached them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// What the origin saw of one request; the body was read whole (test bodies are small) unless
/// the handler is a streaming sink.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Counters of an origin.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    /// Requests being handled now, and the most ever handled at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub body_bytes: AtomicU64,
    pub last: Mutex<Option<Seen>>,
}

/// A running mock origin; stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    pub name: String,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    r
}

impl Origin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(SeqCst)
    }

    /// The most requests this origin ever handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(SeqCst)
    }

    /// The last request that reached this origin.
    pub fn last(&self) -> Option<Seen> {
        self.stats.last.lock().unwrap().clone()
    }

    /// An origin running `handler`; every response carries `x-origin: <name>`.
    pub async fn start(name: &str, handler: Handler) -> Origin {
        Self::start_inner(name, handler, false).await
    }

    async fn start_inner(name: &str, handler: Handler, sink: bool) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let origin_name = name.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, SeqCst);
                let st = st.clone();
                let handler = handler.clone();
                let name = origin_name.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        let handler = handler.clone();
                        let name = name.clone();
                        async move {
                            st.requests.fetch_add(1, SeqCst);
                            let now = st.in_flight.fetch_add(1, SeqCst) + 1;
                            st.max_in_flight.fetch_max(now, SeqCst);
                            let (parts, body) = req.into_parts();
                            let body = if sink {
                                drain(body, &st).await
                            } else {
                                let b = body
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                st.body_bytes.fetch_add(b.len() as u64, SeqCst);
                                b
                            };
                            let seen = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                version: parts.version,
                                headers: parts.headers,
                                body,
                            };
                            *st.last.lock().unwrap() = Some(seen.clone());
                            let mut resp = handler(seen).await;
                            st.in_flight.fetch_sub(1, SeqCst);
                            resp.headers_mut()
                                .insert("x-origin", name.parse().expect("ascii name"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            name: name.to_string(),
            stats,
            task,
        }
    }

    /// Answers every request with `status` and `body`.
    pub async fn fixed(name: &str, status: u16, body: &'static str) -> Origin {
        Self::start(
            name,
            Arc::new(move |_| Box::pin(async move { full(status, body) })),
        )
        .await
    }

    /// Waits `delay`, then answers 200 with `body`.
    pub async fn slow(name: &str, delay: Duration, body: &'static str) -> Origin {
        Self::start(
            name,
            Arc::new(move |_| {
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    full(200, body)
                })
            }),
        )
        .await
    }

    /// Answers every request with `status` (a failing backend).
    pub async fn failing(name: &str, status: u16) -> Origin {
        Self::fixed(name, status, "failing").await
    }

    /// Answers with a JSON description of the request: method, uri, headers, body length.
    pub async fn echo(name: &str) -> Origin {
        Self::start(
            name,
            Arc::new(move |seen: Seen| {
                Box::pin(async move {
                    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for (k, v) in &seen.headers {
                        headers
                            .entry(k.to_string())
                            .or_default()
                            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                    }
                    let v = serde_json::json!({
                        "method": seen.method,
                        "uri": seen.uri,
                        "headers": headers,
                        "body_len": seen.body.len(),
                    });
                    let mut r = full(200, v.to_string());
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    r
                })
            }),
        )
        .await
    }

    /// Streams `total` bytes in 64 KiB chunks, generated on the fly (no buffer of that size).
    pub async fn streaming(name: &str, total: u64) -> Origin {
        Self::start(
            name,
            Arc::new(move |_| Box::pin(async move { stream_response(total) })),
        )
        .await
    }

    /// Reads request bodies chunk by chunk, counting them, and answers with the count.
    pub async fn sink(name: &str) -> Origin {
        Self::start_inner(
            name,
            Arc::new(|seen: Seen| {
                Box::pin(async move { full(200, String::from_utf8_lossy(&seen.body).into_owned()) })
            }),
            true,
        )
        .await
    }
}

async fn drain(mut body: Incoming, st: &Stats) -> Bytes {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    st.body_bytes.fetch_add(n, SeqCst);
    Bytes::from(n.to_string())
}

/// A 200 response of `total` generated bytes with a Content-Length.
pub fn stream_response(total: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'k'; CHUNK as usize]);
    let n = total.div_ceil(CHUNK);
    let stream = futures_util::stream::iter(0..n).map(move |i| {
        let len = CHUNK.min(total - i * CHUNK) as usize;
        Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-length", total.to_string().parse().unwrap());
    r
}

/// A listener that accepts connections and closes them at once, counting them: a backend
/// that is up at the TCP level but broken.
pub struct Resetting {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Resetting {
    /// Closes each connection as soon as it is accepted.
    pub async fn start() -> Resetting {
        Self::start_inner(false).await
    }

    /// Reads the request head first, then closes: the request was sent, no answer came.
    pub async fn after_request() -> Resetting {
        Self::start_inner(true).await
    }

    async fn start_inner(read_first: bool) -> Resetting {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, SeqCst);
                if read_first {
                    tokio::spawn(async move {
                        let mut seen = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        drop(stream);
                    });
                } else {
                    drop(stream);
                }
            }
        });
        Resetting {
            addr,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }
}

impl Drop for Resetting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on (bound then released).
pub fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full and never drained: new connections hang in SYN-SENT,
/// so a client's connect times out (a backend host that is down or firewalled).
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: std::net::TcpListener,
    _held: Vec<std::net::TcpStream>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .expect("bind");
        socket.listen(0).expect("listen");
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr().unwrap();
        // Fill the queue; later SYNs are dropped by the kernel.
        let held = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100))
                    .ok()
            })
            .collect();
        Blackhole {
            addr,
            _listener: listener,
            _held: held,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
