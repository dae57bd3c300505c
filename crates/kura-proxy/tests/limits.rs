//! Client-facing limits and malformed input through a real server: each limit answers with its
//! own status, malformed requests get 400, and slow or idle clients are cut off.

use std::time::{Duration, Instant};

use kura_config::{FileLimits, FileServer, SizeValue};
use kura_testkit::config::TestConfig;
use kura_testkit::{Client, TestKura, TestOrigin, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every host proxied to `origin`, with `limits` applied to kura's defaults.
async fn kura_with(origin: &TestOrigin, limits: impl FnOnce(&mut FileLimits)) -> TestKura {
    TestConfig::new()
        .limits(limits)
        .pool("p", &[origin.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await
}

fn size(text: &str) -> Option<SizeValue> {
    Some(SizeValue::Text(text.to_string()))
}

/// How long a client waits for an answer or a close that must come: far more than it takes on
/// a loaded machine (these connections close, so waiting costs nothing when all is well).
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn oversized_headers_get_431() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let kura = kura_with(&o, |l| {
        l.max_header_bytes = size("4KiB");
        l.max_headers = Some(20);
    })
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: {}\r\n\r\n",
        "x".repeat(5000)
    );
    let out = raw(kura.addr, big.as_bytes(), WAIT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.com\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw(kura.addr, many.as_bytes(), WAIT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    // Within the limits, all is well.
    let out = raw(
        kura.addr,
        b"GET / HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(o.requests(), 1);
}

#[tokio::test]
async fn declared_oversized_body_gets_413_without_reaching_the_origin() {
    let o = TestOrigin::echo("o").await;
    let kura = kura_with(&o, |l| l.max_body_bytes = Some(SizeValue::Bytes(1000))).await;
    let out = raw(
        kura.addr,
        b"POST /up HTTP/1.1\r\nHost: a.com\r\nContent-Length: 5000\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert_eq!(o.requests(), 0);

    let ok = format!(
        "POST /up HTTP/1.1\r\nHost: a.com\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "b".repeat(1000)
    );
    let out = raw(kura.addr, ok.as_bytes(), WAIT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"body_len\":1000"), "{out}");
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let o = TestOrigin::sink("o").await;
    let kura = kura_with(&o, |l| l.max_body_bytes = Some(SizeValue::Bytes(10000))).await;
    let mut req =
        String::from("POST /up HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        req.push_str(&format!("1000\r\n{}\r\n", "c".repeat(4096)));
    }
    req.push_str("0\r\n\r\n");
    let out = raw(kura.addr, req.as_bytes(), WAIT).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // A chunked body under the limit streams through whole.
    let mut req = String::from(
        "POST /up HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..2 {
        req.push_str(&format!("1000\r\n{}\r\n", "c".repeat(4096)));
    }
    req.push_str("0\r\n\r\n");
    let out = raw(kura.addr, req.as_bytes(), WAIT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.ends_with("8192"),
        "origin counted the streamed bytes: {out}"
    );
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let kura = kura_with(&o, |_| {}).await;
    for bad in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.com\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.com\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ] {
        let out = raw(kura.addr, bad, WAIT).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{:?} got {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // The server is fine afterwards.
    assert_eq!(kura.get("a.com", "/").await.status, 200);
}

#[tokio::test]
async fn malformed_chunked_body_is_400_and_does_not_blame_the_backend() {
    let o = TestOrigin::sink("o").await;
    let kura = TestConfig::new()
        .admin()
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let out = raw(
        kura.addr,
        b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n",
        WAIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["p"]["backends"][0]["alive"], true);
    assert_eq!(kura.get("a.com", "/").await.status, 200);
}

#[tokio::test]
async fn slow_header_is_cut_off_by_the_header_timeout() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    // The idle timeout is far from the header timeout: a close before the bound below is the
    // header timeout's, however loaded the machine.
    let kura = kura_with(&o, |l| {
        l.client_header_timeout = Some("300ms".into());
        l.client_idle_timeout = Some("60s".into());
    })
    .await;
    // Timed from before the connection, so the server's clock cannot have started earlier.
    let t = Instant::now();
    let mut s = TcpStream::connect(kura.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.c").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // A connection that sends nothing at all is held to the header timeout too.
    let t = Instant::now();
    let mut s = TcpStream::connect(kura.addr).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    assert_eq!(o.requests(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let kura = kura_with(&o, |l| {
        l.client_header_timeout = Some("200ms".into());
        l.client_idle_timeout = Some("800ms".into());
    })
    .await;
    // Timed from before the request: the idle clock starts after the answer, so the close
    // cannot come sooner than 800 ms after this, however late the client reads the answer.
    let t = Instant::now();
    let mut s = TcpStream::connect(kura.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle longer than the header timeout: the idle timeout applies, not the header one.
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("closed within the wait")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(750) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
}

async fn max_connections_hold(server: FileServer) {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let kura = TestConfig::new()
        .edit(|f| f.server = server)
        .limits(|l| l.max_connections = Some(2))
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let mut c1 = Client::connect(kura.addr).await;
    let mut c2 = Client::connect(kura.addr).await;
    assert_eq!(c1.get("a.com", "/").await.unwrap().status, 200);
    assert_eq!(c2.get("a.com", "/").await.unwrap().status, 200);
    let addr = kura.addr;
    let third = tokio::spawn(async move { kura_testkit::get(addr, "a.com", "/").await.status });
    // Nothing to wait on for "not served": a time in which it would have been, many times over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(c1);
    let status = tokio::time::timeout(WAIT, third)
        .await
        .expect("served")
        .unwrap();
    assert_eq!(status, 200);
    drop(c2);
}

#[tokio::test]
async fn max_connections_holds_further_clients_until_one_leaves() {
    max_connections_hold(FileServer {
        workers: Some(2),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn max_connections_holds_per_core_too() {
    // Per core, the limit is split among workers: one worker holds all of it.
    max_connections_hold(FileServer {
        workers: Some(1),
        work_stealing: Some(false),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn keep_alive_and_pipelined_requests_on_one_connection() {
    let o = TestOrigin::echo("o").await;
    let kura = kura_with(&o, |_| {}).await;
    let out = raw(
        kura.addr,
        b"GET /1 HTTP/1.1\r\nHost: a.com\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.find("\"uri\":\"/1\"").unwrap() < out.find("\"uri\":\"/2\"").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_cannot_bind_a_port_that_is_in_use() {
    let origin = TestOrigin::fixed("o", 200, "ok").await;
    let first = TestConfig::new()
        .admin()
        .pool("p", &[origin.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let admin = first.admin.unwrap();
    let config = |listen: std::net::SocketAddr, admin: &str, server: &str| {
        let text = format!(
            "[[listeners]]\naddress = \"{listen}\"\n{admin}\n{server}\n[pools.p]\nbackends = [\"{}\"]\n[[vhosts]]\nhosts = [\"*\"]\npool = \"p\"\n",
            origin.url()
        );
        kura_config::Config::from_toml(&text, std::path::Path::new(".")).unwrap()
    };
    // Work-stealing (one socket), thread-per-core (one socket per worker, shared with
    // SO_REUSEPORT inside the process only), and an admin address in use: all refused, none
    // joins the running server's traffic.
    for (admin_text, server) in [
        ("", ""),
        ("", "[server]\nworkers = 2\nwork_stealing = false"),
    ] {
        let e = kura_proxy::start(config(first.addr, admin_text, server))
            .await
            .err()
            .expect("the port is taken");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    }
    let free = kura_testkit::etcd::free_addr("127.0.0.1");
    let e = kura_proxy::start(config(free, &format!("[admin]\naddress = \"{admin}\""), ""))
        .await
        .err()
        .expect("the admin port is taken");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    // The running server still answers every request.
    for _ in 0..10 {
        assert_eq!(first.get("any.test", "/").await.status, 200);
    }
}
