//! Test helpers for kura's integration tests: mock origins ([`origin`]), a kura server started
//! in-process on port 0 ([`TestKura`]) from a configuration built in code ([`config`]), the
//! real `kura` binary as a child process ([`KuraProcess`]), small HTTP clients (one
//! connection per call, a keep-alive connection, raw bytes over TCP), and headless Chromium
//! for pages ([`browser`]).

#![deny(missing_docs)]

pub mod browser;
pub mod captured;
pub mod config;
pub mod etcd;
pub mod origin;
pub mod process;
pub mod redis;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use hyper_util::rt::TokioIo;
pub use origin::{Blackhole, Resetting, TestOrigin, closed_addr};
pub use process::KuraProcess;

/// A kura server running inside the test process.
pub struct TestKura {
    /// The running server (reload, shutdown, cache, metrics); dropping it stops the server.
    pub handle: kura_proxy::ServerHandle,
    /// The first listener's address, where [`TestKura::get`] sends.
    pub addr: SocketAddr,
    /// The admin listener's address, when the configuration has one.
    pub admin: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl TestKura {
    /// Starts kura from TOML text. Listener addresses should use port 0. Tests usually build
    /// the text with [`config::TestConfig`] (whose `start` calls this).
    pub async fn start(toml: &str) -> TestKura {
        let dir = tempfile::tempdir().unwrap();
        let config = kura_config::Config::from_toml(toml, dir.path())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{toml}"));
        Self::start_config(config, dir).await
    }

    /// Starts kura from a validated `config`, keeping `dir` (usually the base directory its
    /// relative paths were resolved against) until the server is dropped.
    pub async fn start_config(config: kura_config::Config, dir: tempfile::TempDir) -> TestKura {
        let handle = kura_proxy::start(config).await.expect("kura starts");
        TestKura {
            addr: handle.addrs()[0],
            admin: handle.admin_addr(),
            handle,
            _dir: dir,
        }
    }

    /// The temporary directory kept with the server: the configuration's base directory when
    /// started from TOML.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// GET `path` with `Host: host` on a new connection.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        get(self.addr, host, path).await
    }

    /// GET on the admin listener, body parsed as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = get(self.admin.expect("admin configured"), "127.0.0.1", path).await;
        serde_json::from_slice(&r.body).expect("admin JSON")
    }

    /// The admin listener's `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> String {
        let r = get(
            self.admin.expect("admin configured"),
            "127.0.0.1",
            "/metrics",
        )
        .await;
        String::from_utf8(r.body.to_vec()).unwrap()
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body, as received (not decoded).
    pub body: Bytes,
}

impl Reply {
    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics, showing the body, when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The first value of header `name`, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Request bodies the test clients send: anything that yields `Bytes` and cannot fail.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// One keep-alive client connection.
pub struct Client {
    sender: SendRequest<ClientBody>,
}

impl Client {
    /// Opens an HTTP/1.1 connection to `addr`; panics when it cannot.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { sender }
    }

    /// Sends `req` and returns the response with its body still streaming.
    pub async fn send_streaming<B>(&mut self, req: Request<B>) -> Response<Incoming>
    where
        B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        self.sender.ready().await.expect("connection ready");
        self.sender
            .send_request(req.map(BodyExt::boxed))
            .await
            .expect("response head")
    }

    /// Sends `req` and reads the whole response; an error means the connection failed
    /// (closed, reset, malformed answer).
    pub async fn send<B>(&mut self, req: Request<B>) -> Result<Reply, hyper::Error>
    where
        B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req.map(BodyExt::boxed)).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// GET `path` with `Host: host` on this connection.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, hyper::Error> {
        self.send(get_request(host, path)).await
    }
}

/// A GET of `path` with `Host: host` and an empty body.
pub fn get_request(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Sends `req` on a new connection and reads the whole response.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    Client::connect(addr)
        .await
        .send(req)
        .await
        .expect("request succeeds at the HTTP level")
}

/// GET `path` with `Host: host` on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    send(addr, get_request(host, path)).await
}

/// Writes `bytes` and reads until the server closes or `wait` passes; returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
