//! The request id through the real server: made by kura unless a trusted proxy sent a usable
//! one, sent on the upstream request and on shadow copies, written in the access log, and
//! carried by the events of the request's span, including those of its cache fill and its
//! shadow copies, which run in tasks of their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kura_config::AccessLogFormat;
use kura_testkit::captured::Captured;
use kura_testkit::config::{Rule, Shadow, TestConfig};
use kura_testkit::origin::full;
use kura_testkit::{TestOrigin, closed_addr, eventually};

/// How long a test waits for what must happen (a log line, an answer, a close): far more than
/// it takes on a loaded machine, so only a failure runs into it.
const WAIT: Duration = Duration::from_secs(10);

fn get(host: &str, path: &str, id: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", host);
    if let Some(id) = id {
        b = b.header("x-request-id", id);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn seen_id(o: &TestOrigin) -> String {
    let seen = o.last().expect("the origin was asked");
    let id = seen.headers.get("x-request-id").expect("an id upstream");
    id.to_str().unwrap().to_string()
}

fn is_made_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn an_untrusted_request_id_is_replaced_and_the_log_names_the_one_sent() {
    let o = TestOrigin::fixed("o", 200, "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestConfig::new()
        .access_log(&log, AccessLogFormat::Combined)
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let r = kura_testkit::send(kura.addr, get("a.com", "/", Some("client-chosen"))).await;
    assert_eq!(r.status, 200);
    let first = seen_id(&o);
    assert!(is_made_id(&first), "{first}");
    kura_testkit::send(kura.addr, get("a.com", "/", None)).await;
    let second = seen_id(&o);
    assert!(is_made_id(&second) && second != first, "{first} {second}");

    let written = eventually(WAIT, || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    assert!(written, "two lines logged");
    let text = std::fs::read_to_string(&log).unwrap();
    // The id, then the error label (`-`: none).
    let ends: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.rsplit(' ').take(2).collect())
        .collect();
    assert_eq!(ends, [["-", first.as_str()], ["-", second.as_str()]]);
}

#[tokio::test]
async fn failures_are_logged_with_their_side_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestConfig::new()
        .access_log(&log, AccessLogFormat::Json)
        .pool("p", &[format!("http://{}", closed_addr())])
        .vhost(&["a.com"], |v| v.pool("p"))
        .start()
        .await;
    assert_eq!(
        kura_testkit::send(kura.addr, get("a.com", "/", None))
            .await
            .status,
        502
    );
    assert_eq!(
        kura_testkit::send(kura.addr, get("b.com", "/", None))
            .await
            .status,
        400
    );
    let written = eventually(WAIT, || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    assert!(written, "two lines logged");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["error"]["side"], "upstream");
    assert_eq!(lines[0]["error"]["kind"], "upstream/connect");
    assert!(
        lines[0]["error"]["cause"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["error"]["side"], "client");
    assert_eq!(lines[1]["error"]["kind"], "client/unknown_host");
}

/// The access log's only line, once written, as JSON.
async fn the_one_json_line(log: &std::path::Path) -> serde_json::Value {
    let written = eventually(WAIT, || async {
        std::fs::read_to_string(log).is_ok_and(|t| t.lines().count() == 1)
    })
    .await;
    assert!(written, "one line logged");
    serde_json::from_str(std::fs::read_to_string(log).unwrap().trim()).unwrap()
}

/// The access log's line for a `GET` whose answer's body breaks after its head: the origin
/// announces 1,000 bytes, sends 100 and closes; `cache` puts a cache rule in front of it.
async fn logged_for_a_body_broken_after_its_head(cache: bool) -> serde_json::Value {
    let (origin, _) = kura_testkit::origin::cut(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nCache-Control: max-age=60\r\n\r\n\
          xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestConfig::new()
        .access_log(&log, AccessLogFormat::Json)
        .cache_memory("16MiB")
        .pool("p", &[format!("http://{origin}")])
        .vhost(&["a.com"], |v| match cache {
            true => v.fallback(Rule::cache("p")),
            false => v.pool("p"),
        })
        .start()
        .await;
    let answer =
        kura_testkit::raw(kura.addr, b"GET /f HTTP/1.1\r\nHost: a.com\r\n\r\n", WAIT).await;
    // The client's connection is cut after the head and the bytes that came.
    kura_testkit::origin::assert_cut_short(&answer, "xxxx");
    let line = the_one_json_line(&log).await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["error"]["kind"], "upstream/failed", "{line}");
    line
}

#[tokio::test]
async fn a_body_that_breaks_after_its_head_is_logged_as_an_upstream_failure() {
    let line = logged_for_a_body_broken_after_its_head(false).await;
    let cause = line["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("broke after the head"), "{line}");
}

#[tokio::test]
async fn a_client_body_over_the_limit_after_the_head_is_logged_as_the_clients_fault() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An origin that answers as soon as it has the request's head (announcing 100,000 bytes,
    // sending 10) and reads the request's body meanwhile.
    let (origin, _) = kura_testkit::origin::raw(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
            .await;
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestConfig::new()
        .access_log(&log, AccessLogFormat::Json)
        .limits(|l| l.max_body_bytes = Some(kura_config::SizeValue::Bytes(1000)))
        .pool("p", &[format!("http://{origin}")])
        .vhost(&["a.com"], |v| v.pool("p"))
        .start()
        .await;
    // A chunked upload (its length undeclared, so checked as it streams): a first chunk, the
    // answer's head, then a chunk that takes the body over the limit.
    let mut c = tokio::net::TcpStream::connect(kura.addr).await.unwrap();
    c.write_all(
        b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("the answer's head in time")
            .unwrap();
        assert!(n > 0, "the head came before the connection closed");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let _ = c
        .write_all(format!("1000\r\n{}\r\n", "x".repeat(4096)).as_bytes())
        .await;
    let line = the_one_json_line(&log).await;
    assert_eq!(line["status"], 200);
    // The backend did nothing wrong: the body the client sent was too large.
    assert_eq!(line["error"]["kind"], "client/body_too_large", "{line}");
}

#[tokio::test]
async fn a_trusted_proxy_id_reaches_the_origin_and_the_shadow_copy() {
    let primary = TestOrigin::fixed("primary", 200, "ok").await;
    let shadow = TestOrigin::fixed("shadow", 200, "ok").await;
    let kura = TestConfig::new()
        .trusted_proxies(&["127.0.0.0/8"])
        .pool("p", &[primary.url()])
        .pool("s", &[shadow.url()])
        .vhost(&["*"], |v| {
            v.fallback(Rule::proxy("p").shadow(Shadow::to(&["s"])))
        })
        .start()
        .await;
    let r = kura_testkit::send(kura.addr, get("a.com", "/x", Some("edge-7f3a"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(seen_id(&primary), "edge-7f3a");
    let copied = eventually(WAIT, || async {
        shadow
            .last()
            .and_then(|s| s.headers.get("x-request-id").cloned())
            .is_some_and(|v| v == "edge-7f3a")
    })
    .await;
    assert!(copied, "the shadow copy carries the same id");

    // Even from a trusted proxy, an id that is too long or not visible ASCII is replaced.
    let long = "a".repeat(129);
    for bad in [long.as_str(), "two words", ""] {
        kura_testkit::send(kura.addr, get("a.com", "/x", Some(bad))).await;
        let id = seen_id(&primary);
        assert!(is_made_id(&id), "{bad:?} → {id}");
    }
    // Two ids (a client's passed along beside the proxy's): which is the proxy's is unknown,
    // so neither is kept.
    let req = Request::get("/x")
        .header("host", "a.com")
        .header("x-request-id", "client-chosen")
        .header("x-request-id", "proxy-made")
        .body(Full::new(Bytes::new()))
        .unwrap();
    kura_testkit::send(kura.addr, req).await;
    let id = seen_id(&primary);
    assert!(is_made_id(&id), "two ids → {id}");
}

#[tokio::test]
async fn events_of_the_fill_and_of_shadow_copies_carry_the_request_id() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let o = TestOrigin::start(
        "o",
        Arc::new(|_| {
            Box::pin(async {
                let mut r = full(200, "not for keeping");
                r.headers_mut()
                    .insert("cache-control", "no-store".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = TestConfig::new()
        .pool("p", &[o.url()])
        .pool("gone", &[format!("http://{}", closed_addr())])
        .vhost(&["cached.test"], |v| v.rule(Rule::cache("p").path("^/")))
        .vhost(&["shadowed.test"], |v| {
            v.fallback(Rule::proxy("p").shadow(Shadow::to(&["gone"])))
        })
        .start()
        .await;

    // A cache fill runs in a task of its own: its "not stored" event is in the request's span.
    let r = kura_testkit::send(kura.addr, get("cached.test", "/a", None)).await;
    assert_eq!(r.status, 200);
    let id = seen_id(&o);
    let found = eventually(WAIT, || async {
        !logs.lines_with("response not stored").is_empty()
    })
    .await;
    assert!(found, "the fill logged:\n{}", logs.text());
    for line in logs.lines_with("response not stored") {
        assert!(line.contains(&format!("id={id}")), "{line}");
    }

    // A shadow copy runs on the shadow engine's tasks: its failure names the request too.
    let r = kura_testkit::send(kura.addr, get("shadowed.test", "/b", None)).await;
    assert_eq!(r.status, 200);
    let id = seen_id(&o);
    let failed = eventually(WAIT, || async {
        logs.lines_with("shadow request failed")
            .iter()
            .any(|l| l.contains(&format!("id={id}")))
    })
    .await;
    assert!(failed, "the shadow copy logged:\n{}", logs.text());
}

#[tokio::test]
async fn a_cached_answer_that_breaks_after_its_head_is_logged_as_an_upstream_failure() {
    let line = logged_for_a_body_broken_after_its_head(true).await;
    let cause = line["error"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("cached answer broke after the head"),
        "{line}"
    );
}
