//! Mock origins: real HTTP/1.1 servers on port 0 whose behaviour a test picks (fixed, slow,
//! held until released, failing, echoing, streaming, resetting) and which count what reached
//! them.

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

mod held;
pub use held::Release;

/// A mock origin's response body.
pub type Body = BoxBody<Bytes, Infallible>;
/// What a mock origin does: called with each request it received, returns the response.
pub type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// What the origin saw of one request; the body was read whole (test bodies are small) unless
/// the handler is a streaming sink.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request target as received: path and query for an origin-form request.
    pub uri: String,
    /// The HTTP version it arrived with.
    pub version: http::Version,
    /// The request headers as they reached the origin.
    pub headers: http::HeaderMap,
    /// The request body; for a sink origin ([`TestOrigin::sink`]), its length in bytes as text.
    pub body: Bytes,
}

/// Counters of an origin.
#[derive(Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Requests received.
    pub requests: AtomicUsize,
    /// Requests being handled now, and the most ever handled at once.
    pub in_flight: AtomicUsize,
    /// The most requests handled at once.
    pub max_in_flight: AtomicUsize,
    /// Request body bytes received, over all requests.
    pub body_bytes: AtomicU64,
    /// The last request received.
    pub last: Mutex<Option<Seen>>,
}

/// A running mock origin; when dropped it stops listening and closes its connections.
pub struct TestOrigin {
    /// Where it listens, on loopback.
    pub addr: SocketAddr,
    /// Its name, sent back in `x-origin` on every response.
    pub name: String,
    /// What reached it.
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
        self.stop.cancel();
    }
}

/// A response with `status` and the whole `body`; panics when `status` is not 100–999.
pub fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    r
}

impl TestOrigin {
    /// `http://ADDR`, as a backend in a test configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(SeqCst)
    }

    /// Requests received so far.
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
    pub async fn start(name: &str, handler: Handler) -> TestOrigin {
        Self::start_inner(name, handler, false).await
    }

    async fn start_inner(name: &str, handler: Handler, sink: bool) -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        Self::serve(listener, name, handler, sink)
    }

    /// An origin running `handler` on `listener`, which the caller bound (for example inside
    /// another network namespace, see `netns`).
    pub fn start_on(listener: std::net::TcpListener, name: &str, handler: Handler) -> TestOrigin {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let listener = TcpListener::from_std(listener).expect("listener in the runtime");
        Self::serve(listener, name, handler, false)
    }

    fn serve(listener: TcpListener, name: &str, handler: Handler, sink: bool) -> TestOrigin {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let origin_name = name.to_string();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, SeqCst);
                let st = st.clone();
                let handler = handler.clone();
                let name = origin_name.clone();
                let stopped = stopped.clone();
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
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.cancelled() => {}
                    }
                });
            }
        });
        TestOrigin {
            addr,
            name: name.to_string(),
            stats,
            task,
            stop,
        }
    }

    /// Answers every request with `status` and `body`.
    pub async fn fixed(name: &str, status: u16, body: &'static str) -> TestOrigin {
        Self::start(
            name,
            Arc::new(move |_| Box::pin(async move { full(status, body) })),
        )
        .await
    }

    /// Waits `delay`, then answers 200 with `body`.
    pub async fn slow(name: &str, delay: Duration, body: &'static str) -> TestOrigin {
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
    pub async fn failing(name: &str, status: u16) -> TestOrigin {
        Self::fixed(name, status, "failing").await
    }

    /// Answers with a JSON description of the request: method, uri, headers, body length.
    pub async fn echo(name: &str) -> TestOrigin {
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

    /// The adversarial echo of the cache-safety tests: answers with the request as JSON
    /// (method, uri, headers) and takes its answer's `Cache-Control`, `Age`, `Location` and
    /// status from the query parameters `cc`, `age`, `loc` and `st` (percent-decoded; `HOST`
    /// in `loc` becomes the Host the origin saw), and any other header from `h.<name>=<value>`.
    /// Every answer has a unique `x-serial`.
    pub async fn reflect(name: &str) -> TestOrigin {
        let serial = Arc::new(AtomicU64::new(0));
        Self::start(
            name,
            Arc::new(move |seen: Seen| {
                let n = serial.fetch_add(1, SeqCst);
                Box::pin(async move {
                    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for (k, v) in &seen.headers {
                        headers
                            .entry(k.to_string())
                            .or_default()
                            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                    }
                    let query = seen.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
                    let param = |name: &str| {
                        query
                            .split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| decode(v))
                    };
                    let host = seen
                        .headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let v = serde_json::json!({
                        "method": seen.method,
                        "uri": seen.uri,
                        "headers": headers,
                        "serial": n,
                    });
                    let status = param("st").and_then(|s| s.parse().ok()).unwrap_or(200);
                    let mut r = full(status, v.to_string());
                    let h = r.headers_mut();
                    h.insert("content-type", "application/json".parse().unwrap());
                    h.insert("x-serial", n.into());
                    if let Some(cc) = param("cc").and_then(|v| v.parse().ok()) {
                        h.insert("cache-control", cc);
                    }
                    if let Some(age) = param("age").and_then(|v| v.parse().ok()) {
                        h.insert("age", age);
                    }
                    // `h.<name>=<value>`: any other response header.
                    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                        if let Some(name) = k.strip_prefix("h.")
                            && let (Ok(n), Ok(v)) = (
                                http::HeaderName::from_bytes(name.as_bytes()),
                                http::HeaderValue::from_str(&decode(v)),
                            )
                        {
                            h.append(n, v);
                        }
                    }
                    if let Some(loc) = param("loc")
                        .map(|l| l.replace("HOST", &host))
                        .and_then(|v| v.parse().ok())
                    {
                        h.insert("location", loc);
                    }
                    r
                })
            }),
        )
        .await
    }

    /// Streams `total` bytes in 64 KiB chunks, generated on the fly (no buffer of that size).
    pub async fn streaming(name: &str, total: u64) -> TestOrigin {
        Self::start(
            name,
            Arc::new(move |_| Box::pin(async move { stream_response(total) })),
        )
        .await
    }

    /// Reads request bodies chunk by chunk, counting them, and answers with the count.
    pub async fn sink(name: &str) -> TestOrigin {
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
    /// Where it listens, on loopback.
    pub addr: SocketAddr,
    /// Connections accepted so far.
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

    /// `http://ADDR`, as a backend in a test configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
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
    /// Its address, on loopback; connecting to it times out.
    pub addr: SocketAddr,
    _listener: std::net::TcpListener,
    _held: Vec<std::net::TcpStream>,
}

impl Blackhole {
    /// Listens with a backlog of 0 and fills the queue with connections it never accepts.
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

    /// `http://ADDR`, as a backend in a test configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// State of a [`ranged`] origin, shared with the test.
pub struct RangedState {
    /// Object version: changes the bytes and the ETag.
    pub version: AtomicU64,
    /// Whether Range requests are honoured (false: always 200, whole body).
    pub honor_range: std::sync::atomic::AtomicBool,
    /// The `Range` header of every GET (None for whole-object requests), in order.
    pub ranges: Mutex<Vec<Option<String>>>,
    /// Extra response headers.
    pub headers: Mutex<Vec<(String, String)>>,
    /// The object's length in bytes.
    pub size: u64,
}

impl RangedState {
    /// The `Range` header of every request received, in order (`None` for a whole request).
    pub fn range_requests(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

/// The byte at `offset` of version `version` of a ranged origin's object.
pub fn pattern_byte(version: u64, offset: u64) -> u8 {
    ((offset.wrapping_mul(7).wrapping_add(version)) % 251) as u8
}

/// An origin serving one generated object of `size` bytes on every path, with an ETag, the
/// given Cache-Control, and real Range / If-Range support (206, Content-Range, 416).
pub async fn ranged(
    name: &str,
    size: u64,
    cache_control: &'static str,
) -> (TestOrigin, Arc<RangedState>) {
    let (state, handler) = ranged_handler(size, cache_control);
    (TestOrigin::start(name, handler).await, state)
}

/// [`ranged`] on a listener the caller bound.
pub fn ranged_on(
    listener: std::net::TcpListener,
    name: &str,
    size: u64,
    cache_control: &'static str,
) -> (TestOrigin, Arc<RangedState>) {
    let (state, handler) = ranged_handler(size, cache_control);
    (TestOrigin::start_on(listener, name, handler), state)
}

fn ranged_handler(size: u64, cache_control: &'static str) -> (Arc<RangedState>, Handler) {
    let state = Arc::new(RangedState {
        version: AtomicU64::new(1),
        honor_range: std::sync::atomic::AtomicBool::new(true),
        ranges: Mutex::new(Vec::new()),
        headers: Mutex::new(Vec::new()),
        size,
    });
    let st = state.clone();
    let handler: Handler = Arc::new(move |seen: Seen| {
        let st = st.clone();
        Box::pin(async move { ranged_response(&st, &seen, cache_control) })
    });
    (state, handler)
}

fn ranged_response(st: &RangedState, seen: &Seen, cache_control: &'static str) -> Response<Body> {
    let version = st.version.load(SeqCst);
    let etag = format!("\"v{version}\"");
    let range = seen
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if seen.method == "GET" {
        st.ranges.lock().unwrap().push(range.clone());
    }
    if seen
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        let mut r = full(304, "");
        r.headers_mut().insert("etag", etag.parse().unwrap());
        r.headers_mut()
            .insert("cache-control", cache_control.parse().unwrap());
        return r;
    }
    let if_range_ok = seen
        .headers
        .get("if-range")
        .is_none_or(|v| v.to_str().ok() == Some(etag.as_str()));
    let parsed = range
        .as_deref()
        .filter(|_| st.honor_range.load(SeqCst) && if_range_ok)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                st.size.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            Some((a, b.min(st.size.saturating_sub(1))))
        });
    let (status, start, end) = match parsed {
        Some((a, _)) if a >= st.size => {
            let mut r = full(416, "");
            r.headers_mut().insert(
                "content-range",
                format!("bytes */{}", st.size).parse().unwrap(),
            );
            return r;
        }
        Some((a, b)) => (206, a, b + 1),
        None => (200, 0, st.size),
    };
    let mut r = generated_body(version, start, end);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    let h = r.headers_mut();
    h.insert("etag", etag.parse().unwrap());
    h.insert("cache-control", cache_control.parse().unwrap());
    h.insert("accept-ranges", "bytes".parse().unwrap());
    if status == 206 {
        h.insert(
            "content-range",
            format!("bytes {}-{}/{}", start, end - 1, st.size)
                .parse()
                .unwrap(),
        );
    }
    for (k, v) in st.headers.lock().unwrap().iter() {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// A buffer from which any run of up to `len` pattern bytes is a slice: the pattern repeats
/// every 251 bytes, so the bytes at `offset` start at index `offset % 251`.
pub fn pattern_buffer(version: u64, len: usize) -> Bytes {
    Bytes::from(
        (0..len as u64 + 251)
            .map(|i| pattern_byte(version, i))
            .collect::<Vec<u8>>(),
    )
}

/// A response streaming bytes `start..end` of version `version` of the pattern.
fn generated_body(version: u64, start: u64, end: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let buf = pattern_buffer(version, CHUNK as usize);
    let n = (end - start).div_ceil(CHUNK);
    let stream = futures_util::stream::iter(0..n).map(move |i| {
        let s = start + i * CHUNK;
        let e = (s + CHUNK).min(end);
        let at = (s % 251) as usize;
        Ok::<_, Infallible>(Frame::data(buf.slice(at..at + (e - s) as usize)))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-length", (end - start).to_string().parse().unwrap());
    r
}

/// Decodes `%XX` and `+` in a query value.
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A hand-written origin for behaviour hyper would not produce: each accepted connection is
/// given to `serve` in a task of its own. Returns its address and a count of the connections it
/// accepted.
pub async fn raw<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, conns)
}

/// An origin that reads a request, writes `answer` (a head and the start of its body) and
/// closes the connection: an answer cut short. Returns its address and a count of the
/// connections it accepted.
pub async fn cut(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    raw(move |mut s| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(answer).await;
    })
    .await
}

/// Asserts that `got`, a raw HTTP/1.x answer read to its connection's close, is a `200` cut
/// short as a client can tell: its head, `seen` in its body, and framing that shows the cut
/// (fewer bytes than its `Content-Length`, or no last chunk), never an answer that looks whole.
pub fn assert_cut_short(got: &str, seen: &str) {
    let lower = got.to_ascii_lowercase();
    assert!(
        lower.starts_with("http/1.1 200") || lower.starts_with("http/1.0 200"),
        "{got:?}"
    );
    let (head, body) = lower.split_once("\r\n\r\n").unwrap_or((&lower, ""));
    assert!(body.contains(&seen.to_ascii_lowercase()), "{got:?}");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => assert!(body.len() < n, "the whole length came: {got:?}"),
        None => {
            assert!(
                head.contains("transfer-encoding: chunked"),
                "no framing: {got:?}"
            );
            assert!(
                !body.contains("0\r\n\r\n"),
                "a cut answer framed as whole: {got:?}"
            );
        }
    }
}

/// An origin answering every bodiless request, on keep-alive connections, with a chunked
/// `hello world` that ends with a trailer (`x-sum: 11`). Returns its address and a count of
/// the connections it accepted.
pub async fn trailers() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            // One answer per request head.
            while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..i + 4);
                let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                    trailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n";
                if s.write_all(answer).await.is_err() {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
    })
    .await
}
