//! RFC 9111 behaviour of `cache` rules through a real server: fresh hits, revalidation with
//! 304 updates, Vary, conditional requests, no-store, invalidation, HEAD, stale-if-error,
//! stale-while-revalidate, the rule's TTL policy, coalescing, ranges, purge and key templates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use kura_testkit::config::{CachePolicy, Rule, TestConfig};
use kura_testkit::origin::{Seen, full};
use kura_testkit::{TestOrigin, eventually};

/// How long a test waits for what must happen: far more than it takes on a loaded machine,
/// so only a failure runs into it.
const WAIT: Duration = Duration::from_secs(10);

/// Every host cached from `origin` with `policy`; PURGE allowed from loopback.
fn config(origin: &str, policy: CachePolicy) -> TestConfig {
    TestConfig::new()
        .admin()
        .cache_storage(|c| c.purge_allow = Some(vec!["127.0.0.1".into()]))
        .pool("o", &[origin])
        .vhost(&["*"], |v| v.fallback(Rule::cache("o").policy(policy)))
}

/// An origin answering every request with `cc` as Cache-Control and a counter in the body.
async fn counting(cc: &'static str) -> (TestOrigin, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let o = TestOrigin::start(
        "o",
        Arc::new(move |_s: Seen| {
            let i = c.fetch_add(1, SeqCst) + 1;
            Box::pin(async move {
                let mut r = full(200, format!("body {i}"));
                if !cc.is_empty() {
                    r.headers_mut().insert("cache-control", cc.parse().unwrap());
                }
                r
            })
        }),
    )
    .await;
    (o, n)
}

fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "a.com");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn fresh_responses_are_served_from_the_cache() {
    let (o, n) = counting("max-age=100").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    let first = kura.get("a.com", "/x").await;
    assert_eq!(first.text(), "body 1");
    assert!(
        first.header("cache-status").unwrap().contains("fwd=miss"),
        "{first:?}"
    );
    let second = kura.get("a.com", "/x").await;
    assert_eq!(second.text(), "body 1");
    let cs = second.header("cache-status").unwrap();
    assert!(cs.contains("hit") && cs.contains("ttl="), "{cs}");
    assert!(second.header("age").is_some());
    assert_eq!(n.load(SeqCst), 1);
    // Another path is another entry.
    assert_eq!(kura.get("a.com", "/y").await.text(), "body 2");
    let m = kura.metrics().await;
    assert!(
        m.contains("kura_cache_hits_total{tier=\"memory\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn stale_responses_are_revalidated_and_a_304_updates_the_stored_headers() {
    let seen_inm = Arc::new(AtomicUsize::new(0));
    let s2 = seen_inm.clone();
    let o = TestOrigin::start(
        "o",
        Arc::new(move |seen: Seen| {
            let s2 = s2.clone();
            Box::pin(async move {
                if seen
                    .headers
                    .get("if-none-match")
                    .is_some_and(|v| v == "\"e1\"")
                {
                    s2.fetch_add(1, SeqCst);
                    let mut r = full(304, "");
                    r.headers_mut()
                        .insert("cache-control", "max-age=100".parse().unwrap());
                    r.headers_mut().insert("x-fresh", "yes".parse().unwrap());
                    r.headers_mut().insert("etag", "\"e1\"".parse().unwrap());
                    return r;
                }
                let mut r = full(200, "v1");
                r.headers_mut()
                    .insert("cache-control", "max-age=1".parse().unwrap());
                r.headers_mut().insert("etag", "\"e1\"".parse().unwrap());
                r.headers_mut().insert("x-fresh", "no".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    assert_eq!(kura.get("a.com", "/r").await.header("x-fresh"), Some("no"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = kura.get("a.com", "/r").await;
    assert_eq!(r.text(), "v1", "the stored body is kept");
    assert_eq!(
        r.header("x-fresh"),
        Some("yes"),
        "headers updated by the 304"
    );
    assert!(r.header("cache-status").unwrap().contains("fwd-status=304"));
    assert_eq!(seen_inm.load(SeqCst), 1);
    // Fresh again for 100 s: no origin contact.
    let r = kura.get("a.com", "/r").await;
    assert!(r.header("cache-status").unwrap().contains("hit"));
    assert_eq!(o.requests(), 2);
}

#[tokio::test]
async fn vary_keeps_one_variant_per_header_value() {
    let o = TestOrigin::start(
        "o",
        Arc::new(|seen: Seen| {
            Box::pin(async move {
                let ae = seen
                    .headers
                    .get("accept-encoding")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let mut r = full(200, format!("enc={ae}"));
                r.headers_mut()
                    .insert("cache-control", "max-age=100".parse().unwrap());
                r.headers_mut()
                    .insert("vary", "Accept-Encoding".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    let get = |ae: &'static str| {
        kura_testkit::send(kura.addr, req("GET", "/v", &[("accept-encoding", ae)]))
    };
    assert_eq!(get("gzip").await.text(), "enc=gzip");
    assert_eq!(get("br").await.text(), "enc=br");
    let again = get("gzip").await;
    assert_eq!(again.text(), "enc=gzip");
    assert!(again.header("cache-status").unwrap().contains("hit"));
    assert_eq!(get("br").await.text(), "enc=br");
    assert_eq!(o.requests(), 2);
}

#[tokio::test]
async fn vary_star_is_never_stored() {
    let o = TestOrigin::start(
        "o",
        Arc::new(|_s: Seen| {
            Box::pin(async move {
                let mut r = full(200, "x");
                r.headers_mut()
                    .insert("cache-control", "max-age=100".parse().unwrap());
                r.headers_mut().insert("vary", "*".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    kura.get("a.com", "/s").await;
    kura.get("a.com", "/s").await;
    assert_eq!(o.requests(), 2);
}

#[tokio::test]
async fn conditional_client_requests_get_304_from_the_cache() {
    let o = TestOrigin::start(
        "o",
        Arc::new(|_s: Seen| {
            Box::pin(async move {
                let mut r = full(200, "content");
                let h = r.headers_mut();
                h.insert("cache-control", "max-age=100".parse().unwrap());
                h.insert("etag", "\"abc\"".parse().unwrap());
                h.insert(
                    "last-modified",
                    "Sun, 01 Nov 2026 00:00:00 GMT".parse().unwrap(),
                );
                r
            })
        }),
    )
    .await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    assert_eq!(kura.get("a.com", "/c").await.text(), "content");
    let r = kura_testkit::send(kura.addr, req("GET", "/c", &[("if-none-match", "\"abc\"")])).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("\"abc\""));
    let r = kura_testkit::send(kura.addr, req("GET", "/c", &[("if-none-match", "\"zzz\"")])).await;
    assert_eq!((r.status, r.text().as_str()), (200, "content"));
    let r = kura_testkit::send(
        kura.addr,
        req(
            "GET",
            "/c",
            &[("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT")],
        ),
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(o.requests(), 1);
}

#[tokio::test]
async fn no_store_and_private_responses_are_not_stored() {
    for cc in ["no-store", "private, max-age=100"] {
        let (o, n) = counting(cc).await;
        let kura = config(&o.url(), CachePolicy::new()).start().await;
        assert_eq!(kura.get("a.com", "/p").await.text(), "body 1");
        let r = kura.get("a.com", "/p").await;
        assert_eq!(r.text(), "body 2", "{cc}");
        let status = r.header("cache-status").unwrap();
        assert!(!status.contains("stored"), "{status}");
        // The first answer marked the key: the second request was a plain pass.
        assert!(status.contains("detail=pass-remembered"), "{status}");
        assert_eq!(n.load(SeqCst), 2);
    }
    // A request with no-store bypasses the cache.
    let (o, n) = counting("max-age=100").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    kura.get("a.com", "/q").await;
    let r = kura_testkit::send(
        kura.addr,
        req("GET", "/q", &[("cache-control", "no-store")]),
    )
    .await;
    assert_eq!(r.text(), "body 2");
    assert_eq!(n.load(SeqCst), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url_and_its_location() {
    let o = TestOrigin::start(
        "o",
        Arc::new(|seen: Seen| {
            Box::pin(async move {
                if seen.method == "POST" {
                    let mut r = full(201, "created");
                    r.headers_mut()
                        .insert("location", "/items/2".parse().unwrap());
                    return r;
                }
                let mut r = full(200, format!("get {}", seen.uri));
                r.headers_mut()
                    .insert("cache-control", "max-age=100".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    kura.get("a.com", "/items").await;
    kura.get("a.com", "/items/2").await;
    assert_eq!(o.requests(), 2);
    kura.get("a.com", "/items").await;
    assert_eq!(o.requests(), 2, "cached");
    let r = kura_testkit::send(kura.addr, req("POST", "/items", &[])).await;
    assert_eq!(r.status, 201);
    assert_eq!(o.requests(), 3);
    kura.get("a.com", "/items").await;
    kura.get("a.com", "/items/2").await;
    assert_eq!(
        o.requests(),
        5,
        "both the URL and the Location were invalidated"
    );
}

#[tokio::test]
async fn head_is_answered_from_a_cached_get() {
    let (o, n) = counting("max-age=100").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    kura.get("a.com", "/h").await;
    let r = kura_testkit::send(kura.addr, req("HEAD", "/h", &[])).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("6"));
    assert!(r.header("cache-status").unwrap().contains("hit"));
    assert_eq!(n.load(SeqCst), 1);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_is_down() {
    let (o, _) = counting("max-age=1").await;
    let url = o.url();
    let kura = config(&url, CachePolicy::new().stale_if_error("60s"))
        .start()
        .await;
    let strict = config(&url, CachePolicy::new()).start().await;
    assert_eq!(kura.get("a.com", "/e").await.text(), "body 1");
    assert_eq!(strict.get("a.com", "/e").await.text(), "body 2");
    drop(o); // the origin goes away
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = kura.get("a.com", "/e").await;
    assert_eq!((r.status, r.text().as_str()), (200, "body 1"));
    assert!(
        r.header("cache-status").unwrap().contains("stale-if-error"),
        "{r:?}"
    );
    // Without stale-if-error, the failure shows.
    assert_eq!(strict.get("a.com", "/e").await.status, 502);
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let (o, n) = counting("max-age=1, stale-while-revalidate=30").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    assert_eq!(kura.get("a.com", "/w").await.text(), "body 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = kura.get("a.com", "/w").await;
    assert_eq!(r.text(), "body 1", "stale, at once");
    assert!(
        r.header("cache-status")
            .unwrap()
            .contains("stale-while-revalidate")
    );
    assert!(eventually(WAIT, || async { n.load(SeqCst) >= 2 }).await);
    // The refreshed body replaces the stale one. It is fresh for only a second, so on a slow
    // machine a later refresh may already have replaced it in turn: any body after the first.
    assert!(
        eventually(WAIT, || async {
            let t = kura.get("a.com", "/w").await.text();
            t.starts_with("body ") && t != "body 1"
        })
        .await
    );
}

#[tokio::test]
async fn rule_ttl_policy() {
    // min_ttl: fresh for less is not stored.
    let (o, n) = counting("max-age=10").await;
    let kura = config(&o.url(), CachePolicy::new().min_ttl("60s"))
        .start()
        .await;
    let r = kura.get("a.com", "/m").await;
    assert!(
        r.header("cache-status")
            .unwrap()
            .contains("detail=below-min-ttl"),
        "{r:?}"
    );
    // The key is remembered: the next request is a plain pass.
    let r = kura.get("a.com", "/m").await;
    assert!(
        r.header("cache-status")
            .unwrap()
            .contains("detail=pass-remembered"),
        "{r:?}"
    );
    assert_eq!(n.load(SeqCst), 2);
    // default_ttl: applies when the origin says nothing.
    let (o, n) = counting("").await;
    let kura = config(&o.url(), CachePolicy::new().default_ttl("100s"))
        .start()
        .await;
    kura.get("a.com", "/d").await;
    assert!(
        kura.get("a.com", "/d")
            .await
            .header("cache-status")
            .unwrap()
            .contains("hit")
    );
    assert_eq!(n.load(SeqCst), 1);
    // force_ttl: overrides the origin's freshness.
    let (o, n) = counting("max-age=0").await;
    let kura = config(&o.url(), CachePolicy::new().force_ttl("100s"))
        .start()
        .await;
    kura.get("a.com", "/f").await;
    kura.get("a.com", "/f").await;
    assert_eq!(n.load(SeqCst), 1);
    // client_max_age: what clients are told.
    let (o, _) = counting("max-age=1000").await;
    let kura = config(&o.url(), CachePolicy::new().client_max_age("30s"))
        .start()
        .await;
    let r = kura.get("a.com", "/c").await;
    assert_eq!(r.header("cache-control"), Some("max-age=30"));
    assert!(r.header("expires").is_some());
}

#[tokio::test]
async fn concurrent_misses_make_one_origin_request() {
    // The origin answers once all 50 are in: the 49 that came second waited on the first's
    // fetch, however slowly the machine let them arrive.
    let (o, release) = TestOrigin::held("o", "shared").await;
    let kura = config(&o.url(), CachePolicy::new().default_ttl("100s"))
        .start()
        .await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let addr = kura.addr;
        tasks.push(tokio::spawn(async move {
            kura_testkit::get(addr, "a.com", "/slow").await
        }));
    }
    assert!(
        eventually(WAIT, || async {
            kura.admin_json("/cache").await["coalesced"] == 49
        })
        .await,
        "{}",
        kura.admin_json("/cache").await
    );
    release.release();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "shared"));
    }
    assert_eq!(o.requests(), 1);
    let stats = kura.admin_json("/cache").await;
    assert_eq!(stats["coalesced"], 49);
}

#[tokio::test]
async fn ranges_from_the_cache() {
    let (o, n) = counting("max-age=100").await; // body "body 1" (6 bytes)
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    kura.get("a.com", "/g").await;
    let range = |v: &'static str| kura_testkit::send(kura.addr, req("GET", "/g", &[("range", v)]));
    let r = range("bytes=1-3").await;
    assert_eq!((r.status, r.text().as_str()), (206, "ody"));
    assert_eq!(r.header("content-range"), Some("bytes 1-3/6"));
    let r = range("bytes=-2").await;
    assert_eq!((r.status, r.text().as_str()), (206, " 1"));
    let r = range("bytes=10-").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */6"));
    let r = range("bytes=nonsense").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "body 1"),
        "malformed Range is ignored"
    );
    assert_eq!(n.load(SeqCst), 1);
}

#[tokio::test]
async fn purge_by_admin_and_by_method() {
    let (o, n) = counting("max-age=100").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    for p in ["/a/1", "/a/2", "/b/1"] {
        kura.get("a.com", p).await;
    }
    assert_eq!(n.load(SeqCst), 3);
    let admin = kura.admin.unwrap();
    let post = |q: String| {
        kura_testkit::send(
            admin,
            http::Request::post(q)
                .header("host", "127.0.0.1")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    let r = post("/purge?url=http%3A%2F%2Fa.com%2Fa%2F1".into()).await;
    assert_eq!(r.json()["purged"], 1, "{}", r.text());
    kura.get("a.com", "/a/1").await;
    kura.get("a.com", "/a/2").await;
    assert_eq!(n.load(SeqCst), 4, "only /a/1 was refetched");
    let r = post("/purge?prefix=a.com/a/".into()).await;
    assert!(r.json()["purged"].as_u64().unwrap() >= 1);
    kura.get("a.com", "/a/2").await;
    kura.get("a.com", "/b/1").await;
    assert_eq!(n.load(SeqCst), 5);
    post("/purge?all=true".into()).await;
    kura.get("a.com", "/b/1").await;
    assert_eq!(n.load(SeqCst), 6);

    // PURGE from an allowed address.
    let r = kura_testkit::send(kura.addr, req("PURGE", "/b/1", &[])).await;
    assert_eq!(r.status, 200);
    let r = kura_testkit::send(kura.addr, req("PURGE", "/b/1", &[])).await;
    assert_eq!(r.status, 404);
    // And refused elsewhere.
    let (o2, _) = counting("max-age=100").await;
    let closed = config(&o2.url(), CachePolicy::new())
        .cache_storage(|c| c.purge_allow = Some(vec!["10.0.0.0/8".into()]))
        .start()
        .await;
    let r = kura_testkit::send(closed.addr, req("PURGE", "/x", &[])).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn key_templates_share_entries_between_urls() {
    let (o, n) = counting("max-age=100").await;
    let kura = TestConfig::new()
        .pool("o", &[o.url()])
        .vhost(&["*"], |v| {
            v.rule(
                Rule::cache("o")
                    .path("^/(v1|v2)/img/(?P<file>[^/]+)$")
                    .policy(CachePolicy::new().key("img/{file}")),
            )
        })
        .start()
        .await;
    assert_eq!(kura.get("a.com", "/v1/img/cat.png").await.text(), "body 1");
    assert_eq!(kura.get("b.com", "/v2/img/cat.png").await.text(), "body 1");
    assert_eq!(kura.get("a.com", "/v1/img/dog.png").await.text(), "body 2");
    assert_eq!(n.load(SeqCst), 2);
}

#[tokio::test]
async fn an_answer_cut_after_its_head_reaches_the_client_cut_and_is_not_stored() {
    // An origin that sends a head and part of the body, then closes: through a `cache` rule
    // the client still gets the status, headers and bytes that came, then a close before the
    // announced end; the cut answer is never stored (the next request goes to the origin).
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\nhello"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\n5\r\nhello\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nCache-Control: no-store\r\nETag: \"v1\"\r\n\r\nhello"[..],
    ] {
        let (origin, conns) = kura_testkit::origin::cut(answer).await;
        let kura = config(&format!("http://{origin}"), CachePolicy::new())
            .start()
            .await;
        for round in 1..=2 {
            let got = kura_testkit::raw(
                kura.addr,
                b"GET /file HTTP/1.1\r\nHost: a.com\r\n\r\n",
                WAIT,
            )
            .await;
            kura_testkit::origin::assert_cut_short(&got, "hello");
            assert!(
                got.to_ascii_lowercase().contains("etag: \"v1\""),
                "round {round}: {got:?}"
            );
            assert_eq!(conns.load(SeqCst), round, "the cut answer was served from the cache");
        }
    }
}
