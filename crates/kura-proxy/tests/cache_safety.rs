//! The shared cache under attack, through the real server: one test per way a hit could leak
//! a user's answer, serve an attacker's, or a header could take a key down. The origin is the
//! adversarial echo (`TestOrigin::reflect`): it answers with the request it saw as JSON and takes
//! `Cache-Control`, `Age`, `Location` and its status from the query (`cc`, `age`, `loc`, `st`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kura_config::CookiePolicy;
use kura_testkit::config::{CachePolicy, Resize, Rule, TestConfig};
use kura_testkit::{Reply, TestKura, TestOrigin, raw, send};

/// How long a raw client waits for an answer and the close after it: far more than it takes
/// on a loaded machine (these connections close, so waiting costs nothing when all is well).
const WAIT: Duration = Duration::from_secs(10);

/// The vhost `v.test` (and its subdomains) on `origin`: `/api/` proxied with a rewrite, `/k/`
/// cached under a key template, everything else cached with `cache`.
fn config(origin: &str, cache: CachePolicy) -> TestConfig {
    TestConfig::new()
        .admin()
        .cache_memory("64MiB")
        .pool("app", &[origin])
        .vhost(&["v.test", "*.v.test"], |v| {
            v.pool("app")
                .rule(
                    Rule::proxy("app")
                        .path("^/api/(?P<rest>.*)$")
                        .rewrite("/v2/{rest}"),
                )
                .rule(
                    Rule::cache("app")
                        .path("^/k/(?P<rest>.*)$")
                        .policy(CachePolicy::new().key("{host}/k/{rest}")),
                )
                .rule(Rule::cache("app").path("^/").policy(cache))
        })
}

async fn start(cache: CachePolicy) -> (TestOrigin, TestKura) {
    let origin = TestOrigin::reflect("o").await;
    let kura = config(&origin.url(), cache).start().await;
    (origin, kura)
}

async fn get(kura: &TestKura, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(kura.addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

fn seen_header(r: &Reply, name: &str) -> Option<String> {
    r.json()["headers"][name][0].as_str().map(str::to_string)
}

fn is_hit(r: &Reply) -> bool {
    r.header("cache-status").is_some_and(|s| s.contains("hit"))
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// 1. Authorization is never shared, whatever the operator's TTLs say.
#[tokio::test]
async fn authorization_answers_are_never_shared() {
    for policy in [
        CachePolicy::new().default_ttl("5m"),
        CachePolicy::new().force_ttl("5m"),
        CachePolicy::new()
            .min_ttl("1s")
            .default_ttl("5m")
            .client_max_age("1h"),
    ] {
        let (_o, kura) = start(policy.clone()).await;
        let alice = get(&kura, "v.test", "/me", &[("authorization", "Bearer alice")]).await;
        assert_eq!(
            seen_header(&alice, "authorization").as_deref(),
            Some("Bearer alice")
        );
        let anon = get(&kura, "v.test", "/me", &[]).await;
        assert_eq!(
            seen_header(&anon, "authorization"),
            None,
            "{policy:?}: {}",
            anon.text()
        );
        let bob = get(&kura, "v.test", "/me", &[("authorization", "Bearer bob")]).await;
        assert_eq!(
            seen_header(&bob, "authorization").as_deref(),
            Some("Bearer bob"),
            "{policy:?}"
        );
        assert!(!is_hit(&bob), "{policy:?}: {:?}", bob.headers);
    }
}

#[tokio::test]
async fn authorization_answers_the_origin_made_public_are_shared() {
    let (_o, kura) = start(CachePolicy::new().default_ttl("5m")).await;
    let path = "/doc?cc=public%2C%20max-age%3D60";
    let a = get(&kura, "v.test", path, &[("authorization", "Bearer alice")]).await;
    let b = get(&kura, "v.test", path, &[("authorization", "Bearer bob")]).await;
    assert!(is_hit(&b), "{:?}", b.headers);
    assert_eq!(a.header("x-serial"), b.header("x-serial"));
}

#[tokio::test]
async fn cookie_requests_follow_the_rules_cookie_policy() {
    // Default (`origin`): the rule's TTL does not share a cookie-bound answer.
    let (origin, kura) = start(CachePolicy::new().default_ttl("5m")).await;
    let a = get(&kura, "v.test", "/home", &[("cookie", "session=alice")]).await;
    let b = get(&kura, "v.test", "/home", &[]).await;
    assert_ne!(a.header("x-serial"), b.header("x-serial"));
    assert_eq!(seen_header(&b, "cookie"), None);
    assert_eq!(origin.requests(), 2);
    // ...but what the origin itself made cacheable is.
    let path = "/own?cc=max-age%3D60";
    let c = get(&kura, "v.test", path, &[("cookie", "session=alice")]).await;
    let d = get(&kura, "v.test", path, &[("cookie", "session=bob")]).await;
    assert!(is_hit(&d));
    assert_eq!(c.header("x-serial"), d.header("x-serial"));

    // `pass` (Varnish): cookie requests bypass the cache entirely.
    let (origin, kura) = start(
        CachePolicy::new()
            .default_ttl("5m")
            .cookies(CookiePolicy::Pass),
    )
    .await;
    get(&kura, "v.test", "/own?cc=max-age%3D60", &[]).await;
    let e = get(
        &kura,
        "v.test",
        "/own?cc=max-age%3D60",
        &[("cookie", "s=1")],
    )
    .await;
    assert!(e.header("cache-status").unwrap().contains("bypass"));
    assert_eq!(origin.requests(), 2);

    // `ignore` (nginx): the rule's TTL applies as to any request.
    let (origin, kura) = start(
        CachePolicy::new()
            .default_ttl("5m")
            .cookies(CookiePolicy::Ignore),
    )
    .await;
    get(&kura, "v.test", "/home", &[("cookie", "s=1")]).await;
    let f = get(&kura, "v.test", "/home", &[]).await;
    assert!(is_hit(&f));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_cookie_bound_answer_is_not_shared_by_the_rules_stale_windows() {
    // The origin made it cacheable but stale at once; the rule would serve stale for an hour.
    let (origin, kura) = start(
        CachePolicy::new()
            .stale_while_revalidate("1h")
            .stale_if_error("1d"),
    )
    .await;
    let path = "/account?cc=max-age%3D0";
    let alice = get(&kura, "v.test", path, &[("cookie", "session=alice")]).await;
    assert_eq!(
        seen_header(&alice, "cookie").as_deref(),
        Some("session=alice")
    );
    let anon = get(&kura, "v.test", path, &[]).await;
    assert_eq!(seen_header(&anon, "cookie"), None, "{:?}", anon.headers);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_304_never_puts_one_clients_set_cookie_into_the_shared_copy() {
    let origin = TestOrigin::start(
        "reval",
        std::sync::Arc::new(|seen: kura_testkit::origin::Seen| {
            Box::pin(async move {
                let mut r = if seen.headers.contains_key("if-none-match") {
                    let who = seen
                        .headers
                        .get("cookie")
                        .and_then(|c| c.to_str().ok())
                        .unwrap_or("nobody")
                        .to_string();
                    let mut r = kura_testkit::origin::full(304, "");
                    r.headers_mut()
                        .insert("set-cookie", format!("session-for-{who}").parse().unwrap());
                    // Fresh for long after the refresh, so the next request is a hit however
                    // late it comes.
                    r.headers_mut()
                        .insert("cache-control", "public, max-age=3600".parse().unwrap());
                    r
                } else {
                    let mut r = kura_testkit::origin::full(200, "page");
                    r.headers_mut()
                        .insert("cache-control", "public, max-age=1".parse().unwrap());
                    r
                };
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&origin.url(), CachePolicy::new()).start().await;
    get(&kura, "v.test", "/p", &[]).await;
    // Stale after a second; stale it stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let alice = get(&kura, "v.test", "/p", &[("cookie", "id=alice")]).await;
    assert_eq!(alice.status, 200);
    let anon = get(&kura, "v.test", "/p", &[]).await;
    assert!(is_hit(&anon), "{:?}", anon.headers);
    assert_eq!(anon.header("set-cookie"), None, "{:?}", anon.headers);
}

#[tokio::test]
async fn client_max_age_keeps_who_may_cache_downstream() {
    let (_o, kura) = start(CachePolicy::new().client_max_age("1d")).await;
    let path = "/cm?cc=private&h.cdn-cache-control=max-age%3D300";
    get(&kura, "v.test", path, &[]).await;
    let r = get(&kura, "v.test", path, &[]).await;
    assert!(is_hit(&r));
    let cc = r.header("cache-control").unwrap();
    assert!(
        cc.contains("private") && cc.contains("max-age=86400"),
        "{cc}"
    );
}

// 2. What changes the answer is in the key: the port, the scheme.
#[tokio::test]
async fn the_host_port_is_keyed_as_it_is_forwarded() {
    let (_o, kura) = start(CachePolicy::new().default_ttl("5m")).await;
    let path = "/r?loc=http%3A%2F%2FHOST%2Fx";
    let with_port = get(&kura, "v.test:1234", path, &[]).await;
    assert_eq!(
        seen_header(&with_port, "x-forwarded-host").as_deref(),
        Some("v.test:1234")
    );
    let plain = get(&kura, "v.test", path, &[]).await;
    assert!(!is_hit(&plain), "{:?}", plain.headers);
    assert_eq!(
        seen_header(&plain, "x-forwarded-host").as_deref(),
        Some("v.test")
    );
    // A key template (`{host}/k/{rest}`) holds the host without its port: the port is then not
    // forwarded either, so both spellings are truly one resource.
    let t = get(
        &kura,
        "v.test:1234",
        "/k/a?cc=max-age%3D60&loc=http%3A%2F%2FHOST%2Fx",
        &[],
    )
    .await;
    assert_eq!(
        seen_header(&t, "x-forwarded-host").as_deref(),
        Some("v.test")
    );
    assert_eq!(seen_header(&t, "x-forwarded-proto"), None);
    assert!(!seen_header(&t, "host").unwrap().contains("1234"));
    let t2 = get(
        &kura,
        "v.test",
        "/k/a?cc=max-age%3D60&loc=http%3A%2F%2FHOST%2Fx",
        &[],
    )
    .await;
    assert!(is_hit(&t2), "{:?}", t2.headers);
    // The default port is the same resource, spelled another way.
    let default_port = get(&kura, "V.TEST:80", path, &[]).await;
    assert!(is_hit(&default_port));
    assert_eq!(default_port.header("x-serial"), plain.header("x-serial"));
}

#[tokio::test]
async fn the_scheme_is_keyed_and_only_trusted_proxies_set_it() {
    let origin = TestOrigin::reflect("o").await;
    let trusting = config(&origin.url(), CachePolicy::new().default_ttl("5m"))
        .trusted_proxies(&["127.0.0.0/8"])
        .start()
        .await;
    let https = get(&trusting, "v.test", "/s", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(
        seen_header(&https, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    let http = get(&trusting, "v.test", "/s", &[]).await;
    assert!(!is_hit(&http), "an https answer served for http");
    assert_eq!(
        seen_header(&http, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    // A trusted proxy's address chain is kept and extended.
    let chain = get(
        &trusting,
        "v.test",
        "/c",
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(
        seen_header(&chain, "x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    // Only the address and the scheme: what a front proxy relays of its own clients' headers
    // (host, port, prefix, URL) does not reach the origin.
    let relayed = get(
        &trusting,
        "v.test",
        "/c",
        &[
            ("forwarded", "host=evil;proto=https"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-prefix", "/evil"),
            ("x-original-url", "/admin"),
        ],
    )
    .await;
    let h = &relayed.json()["headers"];
    for gone in ["forwarded", "x-forwarded-prefix", "x-original-url"] {
        assert!(h.get(gone).is_none(), "{gone}: {h}");
    }
    assert_eq!(h["x-forwarded-host"][0], "v.test");

    // From an untrusted client the header is not believed: both share the http entry.
    let (_o, kura) = start(CachePolicy::new().default_ttl("5m")).await;
    let a = get(&kura, "v.test", "/s", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(
        seen_header(&a, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    let b = get(&kura, "v.test", "/s", &[]).await;
    assert!(is_hit(&b));
}

#[tokio::test]
async fn userinfo_in_an_absolute_target_is_refused() {
    let (origin, kura) = start(CachePolicy::new().default_ttl("5m")).await;
    let r = raw(
        kura.addr,
        b"GET http://user:pw@v.test/x HTTP/1.1\r\nHost: v.test\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert_eq!(origin.requests(), 0);
}

// 3. The key and the upstream request see the same path.
#[tokio::test]
async fn dot_segments_and_escapes_are_normalised_before_keying_and_forwarding() {
    let (_o, kura) = start(CachePolicy::new()).await;
    for spelling in [
        "/a/../p?cc=max-age%3D300",
        "/a/%2e%2E/p?cc=max-age%3D300",
        "/./%70?cc=max-age%3D300",
    ] {
        let r = raw(
            kura.addr,
            format!("GET {spelling} HTTP/1.1\r\nHost: v.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            WAIT,
        )
        .await;
        assert_eq!(status_of(&r), 200, "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
        let seen: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(seen["uri"], "/p?cc=max-age%3D300", "{spelling}");
    }
    let p = get(&kura, "v.test", "/p?cc=max-age%3D300", &[]).await;
    assert!(is_hit(&p));
    assert_eq!(p.json()["uri"], "/p?cc=max-age%3D300");
    // A raw backslash or a broken escape is a 400.
    for bad in ["/a\\b", "/a%zz", "/a%2"] {
        let r = raw(
            kura.addr,
            format!("GET {bad} HTTP/1.1\r\nHost: v.test\r\nConnection: close\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        assert_eq!(status_of(&r), 400, "{bad}: {r}");
    }
}

#[tokio::test]
async fn captures_cannot_escape_their_templates_prefix() {
    let (origin, kura) = start(CachePolicy::new()).await;
    let ok = get(&kura, "v.test", "/api/users/7", &[]).await;
    assert_eq!(ok.json()["uri"], "/v2/users/7");
    for escape in [
        "/api/..%2f..%2fadmin",
        "/api/%252e%252e/admin",
        "/api/x/..%5cadmin",
        "/k/..%2F..%2Fother.test/secret",
        "/api/%00",
        "/api/x/..;/admin",
        "/api/x/..%3B/admin",
    ] {
        let r = get(&kura, "v.test", escape, &[]).await;
        assert_eq!(r.status, 400, "{escape}: {}", r.text());
    }
    assert_eq!(origin.requests(), 1);
}

// 4. Host is validated; keys of different rules and kinds never meet.
#[tokio::test]
async fn malformed_hosts_are_refused() {
    let (origin, kura) = start(CachePolicy::new()).await;
    for host in [
        "a.test/x",
        "http:/",
        "v.test:99999",
        "v test",
        "[::1",
        "u@v.test",
    ] {
        let r = raw(
            kura.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        assert_eq!(status_of(&r), 400, "Host: {host}: {r}");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_originals_live_where_no_client_url_reaches() {
    // A 2x2 JPEG original on the `storage` pool, behind a resize rule; a catch-all cache vhost
    // whose default key used to spell `storage/orig/x.jpg` for `Host: storage`.
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 80)
        .encode(&[0u8; 12], 2, 2, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let jpeg = Bytes::from(jpeg);
    let store = TestOrigin::start(
        "storage",
        std::sync::Arc::new(move |_| {
            let jpeg = jpeg.clone();
            Box::pin(async move {
                let mut r = kura_testkit::origin::full(200, jpeg);
                r.headers_mut()
                    .insert("cache-control", "max-age=3600".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let app = TestOrigin::reflect("app").await;
    let kura = TestConfig::new()
        .cache_memory("64MiB")
        .pool("storage", &[store.url()])
        .pool("app", &[app.url()])
        .vhost(&["img.test"], |v| {
            v.pool("storage").rule(
                Rule::resize("storage", Resize::new("/{src}").width("1")).path("^/r/(?P<src>.+)$"),
            )
        })
        .vhost(&["*"], |v| {
            v.fallback(Rule::cache("app").policy(CachePolicy::new().default_ttl("5m")))
        })
        .start()
        .await;
    let img = get(&kura, "img.test", "/r/orig/x.jpg", &[]).await;
    assert_eq!(img.status, 200, "{}", img.text());
    assert_eq!(store.requests(), 1);
    let r = get(&kura, "storage", "/orig/x.jpg", &[]).await;
    assert_ne!(r.header("content-type"), Some("image/jpeg"));
    assert!(!is_hit(&r), "{:?}", r.headers);
    assert_eq!(app.requests(), 1);
    // `Host: http:/` (which used to spell an absolute source's key) is not a host at all.
    let r = raw(
        kura.addr,
        b"GET /10.0.0.5/secret HTTP/1.1\r\nHost: http:/\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&r), 400);
}

// 5. No arithmetic from the network can panic or stall.
#[tokio::test]
async fn huge_ages_and_lifetimes_neither_panic_nor_lock_the_key() {
    let (_o, kura) = start(CachePolicy::new()).await;
    let age = "/age?cc=max-age%3D60&age=18446744073709551615";
    for _ in 0..3 {
        let r = get(&kura, "v.test", age, &[]).await;
        assert_eq!(r.status, 200);
        // An Age beyond 2^31 is taken as 2^31: stale on arrival, never fresh.
        assert!(!is_hit(&r));
    }
    let forever = "/forever?cc=max-age%3D9999999999999999999";
    let first = get(&kura, "v.test", forever, &[]).await;
    assert_eq!(first.status, 200);
    let start = Instant::now();
    let second = get(&kura, "v.test", forever, &[]).await;
    // A locked key would hold the request for the 30 s lock timeout.
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(is_hit(&second), "{:?}", second.headers);
    let ttl: i64 = second
        .header("cache-status")
        .and_then(|s| s.split("ttl=").nth(1))
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(ttl <= 1 << 31, "{ttl}");
    // Ten digits are no exception: every delta-seconds above 2^31 is 2^31.
    let ten = "/ten?cc=max-age%3D9999999999";
    get(&kura, "v.test", ten, &[]).await;
    let r = get(&kura, "v.test", ten, &[]).await;
    let ttl: i64 = r
        .header("cache-status")
        .and_then(|s| s.split("ttl=").nth(1))
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(ttl <= 1 << 31, "{ttl}");
}

#[tokio::test]
async fn config_values_that_would_overflow_are_errors_naming_the_field() {
    let origin = TestOrigin::reflect("o").await;
    let bad = config(&origin.url(), CachePolicy::new().force_ttl("1000000000y")).build();
    let err = kura_config::Config::from_toml(&bad, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache.force_ttl"), "{err}");
    let bad = config(&origin.url(), CachePolicy::new())
        .raw("[pools.app]\nhealth_check = { path = \"/\", interval = \"0s\" }")
        .build();
    let err = kura_config::Config::from_toml(&bad, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("health_check.interval"), "{err}");
}

// 6. Forwarding headers are trusted only from trusted peers.
#[tokio::test]
async fn forwarding_headers_from_clients_are_dropped() {
    let (_o, kura) = start(CachePolicy::new()).await;
    let r = get(
        &kura,
        "v.test",
        "/f",
        &[
            ("forwarded", "host=evil; proto=https"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "10.9.9.9"),
            ("x-original-url", "/admin"),
        ],
    )
    .await;
    let h = &r.json()["headers"];
    for gone in [
        "forwarded",
        "x-forwarded-port",
        "x-real-ip",
        "x-original-url",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the origin: {h}");
    }
    assert_eq!(h["x-forwarded-host"][0], "v.test");
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    // HTTP/1.0 without Host: the client's X-Forwarded-Host does not survive either.
    let r = raw(
        kura.addr,
        b"GET /f HTTP/1.0\r\nX-Forwarded-Host: evil\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(!r.contains("evil"), "{r}");
}

// 8. Targeted cache control (RFC 9213).
#[tokio::test]
async fn cdn_cache_control_wins_and_reaches_clients_untouched() {
    let origin = TestOrigin::start(
        "cdn",
        std::sync::Arc::new(|_| {
            Box::pin(async {
                let mut r = kura_testkit::origin::full(200, "x");
                r.headers_mut()
                    .insert("cache-control", "no-store".parse().unwrap());
                r.headers_mut()
                    .insert("cdn-cache-control", "max-age=60".parse().unwrap());
                r
            })
        }),
    )
    .await;
    let kura = config(&origin.url(), CachePolicy::new()).start().await;
    get(&kura, "v.test", "/t", &[]).await;
    let r = get(&kura, "v.test", "/t", &[]).await;
    assert!(is_hit(&r), "{:?}", r.headers);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("cdn-cache-control"), Some("max-age=60"));
    assert_eq!(origin.requests(), 1);
}
