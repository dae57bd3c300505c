//! Nothing a patient client holds outlives its limits: one test per resource a slow or
//! stalled client used to pin (issue "no client can exhaust kura"). Each pool here has one
//! connection slot, so a slot that is never given back shows as a `503` for the next client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use kura_testkit::origin::{Seen, full, stream_response};
use kura_testkit::ws::EchoServer;
use kura_testkit::{TestKura, TestOrigin, TokioIo, eventually, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn config(origin: &str, limits: &str, pool: &str) -> String {
    let slots = if pool.contains("max_connections_per_backend") {
        ""
    } else {
        "max_connections_per_backend = 1"
    };
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
http2 = true
[admin]
address = "127.0.0.1:0"
[limits]
{limits}
[pools.p]
backends = ["{origin}"]
{slots}
connect_timeout = "500ms"
{pool}
[[vhosts]]
hosts = ["*"]
pool = "p"
"#
    )
}

/// A second client gets its answer (not a 503) within `within`.
async fn slot_comes_back(kura: &TestKura, within: Duration) -> bool {
    eventually(within, || async {
        kura.get("a.test", "/small").await.status == 200
    })
    .await
}

// 2. A client that stops reading is cut off after the send timeout, and its upstream
// connection and slot are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let origin = TestOrigin::streaming("big", 256 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestKura::start(&config(
        &origin.url(),
        "send_timeout = \"1s\"",
        &format!("[access_log]\npath = {log:?}\nformat = \"json\""),
    ))
    .await;
    let mut stalled = TcpStream::connect(kura.addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    // Once its answer's head arrives, the stalled client (which then reads no more) holds the
    // only slot: the next client waits, then gets 503...
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stalled.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before its head");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    assert_eq!(kura.get("a.test", "/small").await.status, 503);
    // ...until the send timeout ends the stalled connection.
    assert!(slot_comes_back(&kura, Duration::from_secs(5)).await);
    let m = kura.metrics().await;
    assert!(
        m.contains("kura_connection_timeouts_total{kind=\"send\"} 1"),
        "{m}"
    );
    // The access log says why the stalled answer (a 200) was cut.
    let cut = eventually(Duration::from_secs(3), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("/big") && l.contains("client/send_timeout"))
        })
    })
    .await;
    assert!(
        cut,
        "{:?}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

// 4. After an early answer (the origin answered before reading the body) a connection still
// carrying a slow upload is not handed to the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_uploading_is_not_reused() {
    // An origin that answers 401 at once, without reading the body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let mut r = http::Response::new(Full::new(Bytes::from_static(b"no")));
                    *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let kura = TestKura::start(&config(
        &format!("http://{origin}"),
        "",
        "max_idle_per_backend = 4",
    ))
    .await;
    // A client uploads 1 MiB very slowly.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for _ in 0..100 {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![b'x'; 64]))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut uploader = kura_testkit::Client::connect(kura.addr).await;
    let slow = Request::post("/upload")
        .header("host", "a.test")
        .header("content-length", (1 << 20).to_string())
        .body(StreamBody::new(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
        )))
        .unwrap();
    let early = uploader.send_streaming(slow).await;
    assert_eq!(early.status(), 401);
    // The next request must not wait behind the upload on the same upstream connection.
    let start = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(5), kura.get("a.test", "/next"))
        .await
        .expect("the next request is not stuck behind an upload");
    assert_eq!(next.status, 401);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// An HTTP/2 client whose streams' flow-control windows are closed: it never reads a body.
async fn h2_that_never_reads(
    kura: &TestKura,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(kura.addr).await.unwrap();
    let (h2, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(0)
        .initial_connection_window_size(65535)
        .adaptive_window(false)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    h2
}

// 3. An HTTP/2 client with a closed flow-control window pins no upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_http2_window_gives_its_upstream_connection_back() {
    let origin = TestOrigin::streaming("big", 8 << 20).await;
    let kura = TestKura::start(&config(
        &origin.url(),
        "send_timeout = \"1s\"\nhttp2_stream_buffer = \"64KiB\"",
        "",
    ))
    .await;
    let mut h2 = h2_that_never_reads(&kura).await;
    let mut streams = Vec::new();
    for i in 0..3 {
        let req = Request::get(format!("http://a.test/big{i}"))
            .body(Empty::new())
            .unwrap();
        h2.ready().await.unwrap();
        streams.push(h2.send_request(req));
    }
    // One stream has the pool's only slot (the others got 503); its client reads nothing.
    let mut held = Vec::new();
    for s in streams.drain(..) {
        let r = tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .expect("a response head")
            .unwrap();
        if r.status() == 200 {
            held.push(r);
        }
    }
    assert_eq!(held.len(), 1);
    // Within the send timeout (plus the buffer) the slot comes back for an HTTP/1 client.
    assert!(slot_comes_back(&kura, Duration::from_secs(6)).await);
    drop(held);
}

/// An answer whose head promises 100 bytes: one chunk comes, then nothing more.
fn one_chunk_then_nothing() -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let chunk = futures_util::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first")))
    });
    let body = StreamBody::new(chunk.chain(futures_util::stream::pending()));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert("content-length", "100".parse().unwrap());
    r
}

// 3b. An HTTP/2 stream the client resets gives its upstream connection back at once, not after
// the send timeout: whether its read-ahead buffer was full or its upstream had stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_http2_stream_gives_its_upstream_connection_back_at_once() {
    let origin = TestOrigin::start(
        "o",
        Arc::new(|seen: Seen| {
            Box::pin(async move {
                match seen.uri.as_str() {
                    "/big" => stream_response(8 << 20),
                    "/stall" => one_chunk_then_nothing(),
                    _ => full(200, "small"),
                }
            })
        }),
    )
    .await;
    let kura = TestKura::start(&config(
        &origin.url(),
        "send_timeout = \"30s\"\nhttp2_stream_buffer = \"64KiB\"",
        "",
    ))
    .await;
    let mut h2 = h2_that_never_reads(&kura).await;
    for path in ["/big", "/stall"] {
        let req = Request::get(format!("http://a.test{path}"))
            .body(Empty::new())
            .unwrap();
        h2.ready().await.unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        // The stream holds the pool's only slot...
        assert_eq!(kura.get("a.test", "/small").await.status, 503, "{path}");
        // ...until the client resets it (dropping the response cancels the stream).
        drop(resp);
        assert!(
            slot_comes_back(&kura, Duration::from_secs(3)).await,
            "{path}: the slot was held after the reset"
        );
    }
}

/// A WebSocket through kura to the echo server (which first says the path).
async fn websocket(kura: &TestKura, path: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(kura.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://a.test{path}"), tcp)
        .await
        .unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(path));
    ws
}

// 5. Tunnels are counted, hold their backend slot, are tracked by shutdown, and only the
// protocols a rule lists are relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_are_counted_and_hold_their_slots() {
    let echo = EchoServer::start().await;
    let kura = TestKura::start(&config(
        &echo.url(),
        "max_upgraded = 1",
        "max_connections_per_backend = 2",
    ))
    .await;
    let mut ws = websocket(&kura, "/one").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    // A second tunnel is one too many.
    let tcp = TcpStream::connect(kura.addr).await.unwrap();
    let second = tokio_tungstenite::client_async("ws://a.test/two", tcp).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second tunnel was opened: {other:?}"),
    }
    // The open tunnel still holds one of the backend's two slots.
    let b = kura.admin_json("/backends").await;
    assert!(b.to_string().contains("\"in_flight\":1"), "{b}");
    ws.close(None).await.unwrap();
    drop(ws);
    assert!(
        eventually(Duration::from_secs(3), || async {
            kura.admin_json("/backends")
                .await
                .to_string()
                .contains("\"in_flight\":0")
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_is_relayed_unless_the_rule_says_otherwise() {
    let origin = TestOrigin::echo("o").await;
    let kura = TestKura::start(&config(&origin.url(), "", "")).await;
    let r = raw(
        kura.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(!r.to_ascii_lowercase().contains("upgrade"), "{r}");
    // h2c cannot be listed at all.
    let bad = config(&origin.url(), "", "")
        .replace("pool = \"p\"\n", "pool = \"p\"\nupgrades = [\"h2c\"]\n");
    let err = kura_config::Config::from_toml(&bad, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("upgrades[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_end_within_the_shutdown_grace() {
    let echo = EchoServer::start().await;
    let kura = TestKura::start(&format!(
        "{}\n[server]\nshutdown_grace = \"1500ms\"\n",
        config(&echo.url(), "", "")
    ))
    .await;
    let mut ws = websocket(&kura, "/chat").await;
    let started = Instant::now();
    let shutdown = tokio::spawn(async move { kura.handle.shutdown().await });
    // During the grace period the tunnel still works...
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    // ...and shutdown waits for it, then closes it at the end of the grace.
    shutdown.await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let after = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    assert!(
        !matches!(after, Ok(Some(Ok(Message::Text(_))))),
        "{after:?}"
    );
}

// 3c. A stream cut for the send timeout says so in the access log (its head went out as 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_cut_for_the_send_timeout_is_logged_as_the_clients() {
    let origin = TestOrigin::streaming("big", 8 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestKura::start(&config(
        &origin.url(),
        "send_timeout = \"1s\"\nhttp2_stream_buffer = \"64KiB\"",
        &format!("[access_log]\npath = {log:?}\nformat = \"json\""),
    ))
    .await;
    let mut h2 = h2_that_never_reads(&kura).await;
    let req = Request::get("http://a.test/big")
        .body(Empty::new())
        .unwrap();
    h2.ready().await.unwrap();
    let held = tokio::time::timeout(Duration::from_secs(5), h2.send_request(req))
        .await
        .expect("a response head")
        .unwrap();
    assert_eq!(held.status(), 200);
    let logged = eventually(Duration::from_secs(6), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("client/send_timeout"))
    })
    .await;
    assert!(
        logged,
        "{:?}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(held);
}

// 3d. An answer whose upstream went quiet after its head is cut by the send timeout too
// (nothing is written for it), but its client was reading: the access log blames the
// upstream, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_because_its_upstream_stalled_is_not_logged_as_the_clients() {
    let origin = TestOrigin::start(
        "o",
        Arc::new(|_: Seen| Box::pin(async { one_chunk_then_nothing() })),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestKura::start(&config(
        &origin.url(),
        "send_timeout = \"1s\"",
        &format!(
            "max_connections_per_backend = 4\n[access_log]\npath = {log:?}\nformat = \"json\""
        ),
    ))
    .await;
    let h1 = raw(
        kura.addr,
        b"GET /h1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(10),
    );
    let h2 = async {
        let tcp = TcpStream::connect(kura.addr).await.unwrap();
        let (mut h2, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("http://a.test/h2").body(Empty::new()).unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        // Read all that comes: the chunk, then the cut.
        let read = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await;
        assert!(matches!(read, Ok(Err(_))), "the answer was not cut");
    };
    let (h1, ()) = tokio::join!(h1, h2);
    assert!(
        h1.starts_with("HTTP/1.1 200") && h1.ends_with("first"),
        "{h1}"
    );
    for v in logged_lines(&log, 2).await {
        let line = v.to_string();
        assert_eq!(v["status"], 200, "{line}");
        assert_eq!(v["error"]["kind"], "upstream/failed", "{line}");
        assert!(
            v["error"]["cause"].as_str().unwrap().contains("stalled"),
            "{line}"
        );
    }
}

// 3e. The same silence while the client still owes its request body (a backend that answers
// as it reads, the upload stalled) is the client's doing: a client cannot blame a backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_while_its_client_still_uploads_is_logged_as_the_clients() {
    use tokio::io::AsyncReadExt;
    // Answers at once, then waits for the rest of the body before sending more.
    let (origin, _) = kura_testkit::origin::raw(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst")
            .await;
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestKura::start(&config(
        &format!("http://{origin}"),
        "send_timeout = \"1s\"",
        &format!("[access_log]\npath = {log:?}\nformat = \"json\""),
    ))
    .await;
    let mut client = TcpStream::connect(kura.addr).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("first"),
        "{answer}"
    );
    let v = &logged_lines(&log, 1).await[0];
    assert_eq!(v["error"]["kind"], "client/send_timeout", "{v}");
}

/// The access log's lines once it has `n` of them, as JSON.
async fn logged_lines(log: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let logged = eventually(Duration::from_secs(3), || async {
        std::fs::read_to_string(log).is_ok_and(|t| t.lines().count() == n)
    })
    .await;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(logged, "{n} lines expected:\n{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
