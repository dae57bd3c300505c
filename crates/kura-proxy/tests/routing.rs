//! Routing through a real server: hosts, wildcards, path rules with captures and rewrites,
//! header edits, forwarding headers, the ping host and error pages.

use kura_testkit::TestOrigin;
use kura_testkit::config::{Rule, TestConfig};

#[tokio::test]
async fn hosts_and_wildcards_pick_their_vhost() {
    let exact = TestOrigin::fixed("exact", 200, "exact").await;
    let deep = TestOrigin::fixed("deep", 200, "deep").await;
    let wild = TestOrigin::fixed("wild", 200, "wild").await;
    let any = TestOrigin::fixed("any", 200, "any").await;
    let kura = TestConfig::new()
        .pool("exact", &[exact.url()])
        .pool("deep", &[deep.url()])
        .pool("wild", &[wild.url()])
        .pool("any", &[any.url()])
        .vhost(&["www.example.com"], |v| v.pool("exact"))
        .vhost(&["*.api.example.com"], |v| v.pool("deep"))
        .vhost(&["*.example.com"], |v| v.pool("wild"))
        .vhost(&["*"], |v| v.pool("any"))
        .start()
        .await;
    for (host, want) in [
        ("www.example.com", "exact"),
        ("WWW.Example.COM:8080", "exact"),
        ("v1.api.example.com", "deep"),
        ("a.v1.api.example.com", "deep"),
        ("api.example.com", "wild"),
        ("shop.example.com", "wild"),
        ("example.com", "any"),
        ("elsewhere.org", "any"),
    ] {
        let r = kura.get(host, "/").await;
        assert_eq!((r.status, r.text().as_str()), (200, want), "host {host}");
    }
}

#[tokio::test]
async fn unknown_host_gets_400_no_application_configured() {
    let o = TestOrigin::fixed("o", 200, "x").await;
    let kura = TestConfig::new()
        .pool("p", &[o.url()])
        .vhost(&["known.com"], |v| v.pool("p"))
        .start()
        .await;
    let r = kura.get("unknown.com", "/").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("no application configured"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(o.requests(), 0);
}

#[tokio::test]
async fn ping_host_answers_without_a_vhost() {
    let kura = TestConfig::new()
        .pool("p", &["http://127.0.0.1:1"])
        .vhost(&["a.com"], |v| v.pool("p"))
        .start()
        .await;
    let r = kura.get("__ping__", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "OK\n");
}

#[tokio::test]
async fn path_rules_match_in_order_and_rewrite_with_captures() {
    let api = TestOrigin::echo("api").await;
    let web = TestOrigin::echo("web").await;
    let kura = TestConfig::new()
        .pool("api", &[api.url()])
        .pool("web", &[format!("{}/base/", web.url())])
        .vhost(&["site.com"], |v| {
            v.rule(
                Rule::proxy("api")
                    .path("^/api/v(?P<version>[0-9]+)/(?P<rest>.*)$")
                    .rewrite("/{rest}?v={version}"),
            )
            .rule(Rule::proxy("web").path("^/api/"))
            .rule(
                Rule::proxy("web")
                    .path("^/img/(?P<file>[^/]+)$")
                    .rewrite("/static/images/{file}"),
            )
        })
        .start()
        .await;

    let r = kura.get("site.com", "/api/v3/users/42?sort=asc").await;
    assert_eq!(r.header("x-origin"), Some("api"));
    assert_eq!(r.json()["uri"], "/users/42?v=3&sort=asc");

    // Second rule: no rewrite, but the backend's base path is prepended.
    let r = kura.get("site.com", "/api/other?q=1").await;
    assert_eq!(r.header("x-origin"), Some("web"));
    assert_eq!(r.json()["uri"], "/base/api/other?q=1");

    let r = kura.get("site.com", "/img/cat.jpg?w=2").await;
    assert_eq!(r.json()["uri"], "/base/static/images/cat.jpg?w=2");

    // No rule matches and the vhost has no fallback pool.
    let r = kura.get("site.com", "/elsewhere").await;
    assert_eq!(r.status, 404);
    assert_eq!(api.requests() + web.requests(), 3);
}

#[tokio::test]
async fn forwarding_headers_via_and_hop_by_hop() {
    let o = TestOrigin::echo("o").await;
    let kura = TestConfig::new()
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let req = http::Request::get("/x")
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-kept", "1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = kura_testkit::send(kura.addr, req).await;
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(h["host"][0], "shop.example.com", "host is preserved");
    // The client is no trusted proxy: its claimed chain is dropped, not extended.
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-forwarded-host"][0], "shop.example.com");
    assert_eq!(h["via"][0], "1.1 kura");
    assert_eq!(h["x-kept"][0], "1");
    for gone in ["x-private", "keep-alive", "te"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    // The response gets a Via too.
    assert_eq!(r.header("via"), Some("1.1 kura"));
}

#[tokio::test]
async fn header_edits_per_rule_and_host_rewrite() {
    let o = TestOrigin::echo("o").await;
    let kura = TestConfig::new()
        .pool_with("p", &[o.url()], |p| p.preserve_host(false))
        .vhost(&["*"], |v| {
            v.rule(
                Rule::proxy("p")
                    .request_set("x-team", "blue")
                    .request_add("x-tag", "added")
                    .request_remove("cookie")
                    .response_set("x-served-by", "kura")
                    .response_remove("x-origin"),
            )
        })
        .start()
        .await;
    let req = http::Request::get("/")
        .header("host", "a.com")
        .header("cookie", "session=1")
        .header("x-tag", "client")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = kura_testkit::send(kura.addr, req).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-team"][0], "blue");
    assert_eq!(h["x-tag"], serde_json::json!(["client", "added"]));
    assert!(h.get("cookie").is_none());
    assert_eq!(h["host"][0], o.addr.to_string(), "preserve_host = false");
    assert_eq!(r.header("x-served-by"), Some("kura"));
    assert!(r.header("x-origin").is_none());
}

#[tokio::test]
async fn custom_error_pages_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("502.html"), "<h1>we are down</h1>").unwrap();
    std::fs::write(dir.path().join("default.html"), "<h1>something else</h1>").unwrap();
    let kura = TestConfig::new()
        .error_pages(dir.path())
        .pool("dead", &[format!("http://{}", kura_testkit::closed_addr())])
        .vhost(&["a.com"], |v| v.pool("dead"))
        .start()
        .await;
    let r = kura.get("a.com", "/").await;
    assert_eq!((r.status, r.text().as_str()), (502, "<h1>we are down</h1>"));
    let r = kura.get("b.com", "/").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "<h1>something else</h1>")
    );
}

#[tokio::test]
async fn http10_client_without_host_uses_the_catch_all() {
    let o = TestOrigin::echo("o").await;
    let kura = TestConfig::new()
        .pool("p", &[o.url()])
        .vhost(&["*"], |v| v.pool("p"))
        .start()
        .await;
    let out = kura_testkit::raw(
        kura.addr,
        b"GET /old HTTP/1.0\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    assert!(out.contains("\"uri\":\"/old\""), "{out}");
    // HTTP/1.1 without Host is malformed.
    let out = kura_testkit::raw(
        kura.addr,
        b"GET / HTTP/1.1\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}
