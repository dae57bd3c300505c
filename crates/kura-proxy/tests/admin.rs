//! The admin listener: metrics by vhost and status, latency histogram, upstream errors,
//! backend health, the route table, and unknown endpoints.

use std::time::Duration;

use kura_config::{AccessLogFormat, FileAdmin};
use kura_testkit::config::{Rule, TestConfig};
use kura_testkit::{TestKura, TestOrigin, closed_addr};

/// How long a test waits for what must happen: far more than it takes on a loaded machine,
/// so only a failure runs into it.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn metrics_routes_and_backends() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let kura = TestConfig::new()
        .admin()
        .pool("web", &[o.url()])
        .pool(
            "dead",
            &[
                format!("http://{}", closed_addr()),
                format!("http://{}", closed_addr()),
            ],
        )
        .vhost(&["site.com", "*.site.com"], |v| {
            v.name("site")
                .pool("web")
                .rule(Rule::proxy("dead").path("^/broken"))
        })
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(kura.get("www.site.com", "/").await.status, 200);
    }
    assert_eq!(kura.get("site.com", "/broken").await.status, 502);
    assert_eq!(kura.get("nowhere.com", "/").await.status, 400);

    // A request is counted once its answer is done with, which its client may see first.
    let lines = [
        "kura_requests_total{status=\"200\",vhost=\"site\"} 3",
        "kura_requests_total{status=\"502\",vhost=\"site\"} 1",
        "kura_requests_total{status=\"400\",vhost=\"_unmatched\"} 1",
        "kura_request_duration_seconds_count{vhost=\"site\"} 4",
        "kura_backend_up{backend=\"http://",
        "kura_connections_total 5",
    ];
    kura_testkit::eventually(WAIT, || async {
        let m = kura.metrics().await;
        lines.iter().all(|l| m.contains(l))
    })
    .await;
    let m = kura.metrics().await;
    for line in lines {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(
        m.lines()
            .any(|l| l.starts_with("kura_upstream_errors_total")
                && l.contains("pool=\"dead\"")
                && l.contains("kind=\"connect\"")),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("kura_backend_up")
            && l.contains("pool=\"dead\"")
            && l.ends_with(" 0")),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("kura_backend_up")
            && l.contains("pool=\"web\"")
            && l.ends_with(" 1")),
        "{m}"
    );

    let routes = kura.admin_json("/routes").await;
    assert_eq!(routes["vhosts"][0]["name"], "site");
    assert_eq!(routes["vhosts"][0]["hosts"][1], "*.site.com");
    assert_eq!(routes["vhosts"][0]["rules"][0]["pool"], "dead");
    assert_eq!(routes["vhosts"][0]["rules"][1]["pool"], "web");

    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["web"]["backends"][0]["alive"], true);
    assert_eq!(b["pools"]["dead"]["backends"][0]["alive"], false);

    let r = kura_testkit::get(kura.admin.unwrap(), "127.0.0.1", "/nope").await;
    assert_eq!(r.status, 404);
    // No reload hook in-process: the endpoint says so rather than pretending.
    let req = http::Request::post("/reload")
        .header("host", "127.0.0.1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(
        kura_testkit::send(kura.admin.unwrap(), req).await.status,
        501
    );
}

#[tokio::test]
async fn access_log_lines_are_written() {
    let o = TestOrigin::fixed("o", 200, "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestConfig::new()
        .access_log(&log, AccessLogFormat::Combined)
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.name("v").pool("p"))
        .start()
        .await;
    let req = http::Request::get("/page?x=1")
        .header("host", "a.com")
        .header("user-agent", "tester/1.0")
        .header("referer", "http://ref/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(kura_testkit::send(kura.addr, req).await.status, 200);
    let ok = kura_testkit::eventually(WAIT, || async {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count() == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "one line written");
    let line = std::fs::read_to_string(&log).unwrap();
    let re = regex::Regex::new(&format!(
        r#"^127\.0\.0\.1 - - \[[^\]]+\] "GET /page\?x=1 HTTP/1\.1" 200 5 "http://ref/" "tester/1\.0" "a\.com" "v" {} \d+\.\d{{3}} \d+\.\d{{3}} [0-9a-f]{{32}} -$"#,
        regex::escape(&o.addr.to_string())
    ))
    .unwrap();
    assert!(re.is_match(line.trim_end()), "{line}");
}

/// An admin listener with `admin`'s settings, in front of a cache on a dead origin.
fn admin_config(admin: impl FnOnce(&mut FileAdmin)) -> TestConfig {
    TestConfig::new()
        .admin_with(admin)
        .cache_memory("8MiB")
        .pool("p", &[format!("http://{}", closed_addr())])
        .vhost(&["*"], |v| v.fallback(Rule::cache("p")))
}

async fn admin_req(
    kura: &TestKura,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> kura_testkit::Reply {
    let admin = kura.admin.unwrap();
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    kura_testkit::send(
        admin,
        b.body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_web_page_cannot_drive_the_admin_api() {
    let kura = admin_config(|a| a.hosts = Some(vec!["kura-admin.internal".into()]))
        .start()
        .await;
    let admin = kura.admin.unwrap();
    // DNS rebinding: the page's own name in Host is refused; the admin's address, localhost
    // and the listed names are not.
    for (host, status) in [
        ("evil.example", 421),
        ("evil.example:9901", 421),
        ("localhost", 200),
        ("kura-admin.internal", 200),
    ] {
        let r = kura_testkit::get(admin, host, "/routes").await;
        assert_eq!(r.status, status, "Host: {host}");
    }
    // A cross-origin POST (what `fetch(url, {method: 'POST', mode: 'no-cors'})` sends) changes
    // nothing, whichever header gives it away.
    for h in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = admin_req(&kura, "POST", "/purge?all=true", &[h]).await;
        assert_eq!(r.status, 403, "{h:?}: {}", r.text());
    }
    let own = format!("http://{admin}");
    let r = admin_req(&kura, "POST", "/purge?all=true", &[("origin", &own)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // curl sends neither header.
    assert_eq!(
        admin_req(&kura, "POST", "/purge?all=true", &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_admin_token_guards_state_changes_and_optionally_reads() {
    let token = "0123456789abcdef-token";
    let kura = admin_config(|a| a.token = Some(token.into())).start().await;
    let bearer = format!("Bearer {token}");
    let r = admin_req(&kura, "POST", "/purge?all=true", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let wrong = admin_req(
        &kura,
        "POST",
        "/purge?all=true",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = admin_req(
        &kura,
        "POST",
        "/purge?all=true",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(admin_req(&kura, "GET", "/routes", &[]).await.status, 200);

    let kura = admin_config(|a| {
        a.token = Some(token.into());
        a.protect_reads = Some(true);
    })
    .start()
    .await;
    assert_eq!(admin_req(&kura, "GET", "/routes", &[]).await.status, 401);
    let r = admin_req(&kura, "GET", "/routes", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 200);
    // A short token is a configuration error naming the field.
    let err = kura_config::Config::from_toml(
        &admin_config(|a| a.token = Some("short".into())).build(),
        std::path::Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin.token"), "{err}");
}

#[tokio::test]
async fn side_listeners_have_a_connection_cap_and_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let kura = admin_config(|a| a.max_connections = Some(2))
        .limits(|l| l.client_header_timeout = Some("700ms".into()))
        .start()
        .await;
    let admin = kura.admin.unwrap();
    // A client that connects and says nothing is closed after the header timeout.
    let mut silent = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the silent connection is closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // The cap, on a listener whose header timeout cannot free a slot while the test looks.
    let kura = admin_config(|a| a.max_connections = Some(2))
        .limits(|l| l.client_header_timeout = Some("60s".into()))
        .start()
        .await;
    let admin = kura.admin.unwrap();
    // Two slow clients take both slots; a third waits until one goes.
    let mut a = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(admin).await.unwrap();
    a.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    b.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Nothing to wait on for "not served": a time in which it would have been, many times over.
    let third = tokio::time::timeout(
        Duration::from_secs(1),
        kura_testkit::get(admin, "127.0.0.1", "/healthz"),
    )
    .await;
    assert!(
        third.is_err(),
        "a third connection was served beyond the cap"
    );
    drop(a);
    drop(b);
    let r = tokio::time::timeout(WAIT, kura_testkit::get(admin, "127.0.0.1", "/healthz"))
        .await
        .expect("served once a slot is free");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let kura = admin_config(|_| {}).start().await;
    for path in ["/", "/dashboard.js", "/status", "/metrics", "/healthz"] {
        let get = admin_req(&kura, "GET", path, &[]).await;
        let head = admin_req(&kura, "HEAD", path, &[]).await;
        assert_eq!((path, head.status), (path, get.status));
        assert_eq!(get.status, 200, "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
    }
    // HEAD changes nothing: an unknown path is still 404.
    assert_eq!(admin_req(&kura, "HEAD", "/nope", &[]).await.status, 404);
}
