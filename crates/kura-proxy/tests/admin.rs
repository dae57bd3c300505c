//! The admin listener: metrics by vhost and status, latency histogram, upstream errors,
//! backend health, the route table, and unknown endpoints.

use kura_testkit::{Origin, TestKura, closed_addr};

#[tokio::test]
async fn metrics_routes_and_backends() {
    let o = Origin::fixed("o", 200, "ok").await;
    let kura = TestKura::start(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[pools.web]
backends = ["{}"]
[pools.dead]
backends = ["http://{}", "http://{}"]
[[vhosts]]
name = "site"
hosts = ["site.com", "*.site.com"]
pool = "web"
[[vhosts.rules]]
path = "^/broken"
pool = "dead"
"#,
        o.url(),
        closed_addr(),
        closed_addr()
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(kura.get("www.site.com", "/").await.status, 200);
    }
    assert_eq!(kura.get("site.com", "/broken").await.status, 502);
    assert_eq!(kura.get("nowhere.com", "/").await.status, 400);

    let m = kura.metrics().await;
    for line in [
        "kura_requests_total{status=\"200\",vhost=\"site\"} 3",
        "kura_requests_total{status=\"502\",vhost=\"site\"} 1",
        "kura_requests_total{status=\"400\",vhost=\"_unmatched\"} 1",
        "kura_request_duration_seconds_count{vhost=\"site\"} 4",
        "kura_backend_up{backend=\"http://",
        "kura_connections_total 5",
    ] {
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

    let r = kura_testkit::get(kura.admin.unwrap(), "admin", "/nope").await;
    assert_eq!(r.status, 404);
    // No reload hook in-process: the endpoint says so rather than pretending.
    let req = http::Request::post("/reload")
        .header("host", "admin")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(
        kura_testkit::send(kura.admin.unwrap(), req).await.status,
        501
    );
}

#[tokio::test]
async fn access_log_lines_are_written() {
    let o = Origin::fixed("o", 200, "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let kura = TestKura::start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[access_log]\npath = \"{}\"\n[pools.p]\nbackends = [\"{}\"]\n[[vhosts]]\nname = \"v\"\nhosts = [\"*\"]\npool = \"p\"\n",
        log.display(),
        o.url()
    ))
    .await;
    let req = http::Request::get("/page?x=1")
        .header("host", "a.com")
        .header("user-agent", "tester/1.0")
        .header("referer", "http://ref/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(kura_testkit::send(kura.addr, req).await.status, 200);
    let ok = kura_testkit::eventually(std::time::Duration::from_secs(3), || async {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count() == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "one line written");
    let line = std::fs::read_to_string(&log).unwrap();
    let re = regex::Regex::new(&format!(
        r#"^127\.0\.0\.1 - - \[[^\]]+\] "GET /page\?x=1 HTTP/1\.1" 200 5 "http://ref/" "tester/1\.0" "a\.com" "v" {} \d+\.\d{{3}} \d+\.\d{{3}}$"#,
        regex::escape(&o.addr.to_string())
    ))
    .unwrap();
    assert!(re.is_match(line.trim_end()), "{line}");
}
