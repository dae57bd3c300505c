//! Hit-for-pass through a real server: after an answer that may not be stored, requests for
//! the same key go to the origin as the client sent them (no fill Range, no coalescing), until
//! an answer turns out storable; answers refused for the request's own credentials mark
//! nothing.

use std::sync::{Arc, Mutex};

use kura_testkit::TestOrigin;
use kura_testkit::config::{CachePolicy, Rule, TestConfig};
use kura_testkit::origin::{Seen, full};

/// An origin answering with whatever Cache-Control `cc` holds now, recording the Range header
/// of each request it gets.
async fn switchable(cc: Arc<Mutex<&'static str>>) -> (TestOrigin, Arc<Mutex<Vec<Option<String>>>>) {
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let o = TestOrigin::start(
        "o",
        Arc::new(move |s: Seen| {
            seen.lock().unwrap().push(
                s.headers
                    .get("range")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            let cc = *cc.lock().unwrap();
            Box::pin(async move {
                let mut r = full(200, "payload");
                r.headers_mut().insert("cache-control", cc.parse().unwrap());
                r
            })
        }),
    )
    .await;
    (o, ranges)
}

fn config(origin: &str) -> TestConfig {
    TestConfig::new()
        .admin()
        .pool("o", &[origin])
        .vhost(&["*"], |v| {
            v.fallback(Rule::cache("o").policy(CachePolicy::new()))
        })
}

#[tokio::test]
async fn an_unstorable_answer_makes_the_next_requests_plain_passes_until_it_changes() {
    let cc = Arc::new(Mutex::new("no-store"));
    let (o, ranges) = switchable(cc.clone()).await;
    let kura = config(&o.url()).start().await;

    // The first miss goes through the fill: a first-segment Range, refused as not storable.
    let r = kura.get("a.com", "/n").await;
    assert_eq!(r.text(), "payload");
    let status = r.header("cache-status").unwrap().to_string();
    assert!(status.contains("detail=not-storable"), "{status}");
    assert!(
        ranges.lock().unwrap()[0].is_some(),
        "the fill asks for a range"
    );

    // The next ones pass as the client sent them: no Range added.
    for _ in 0..3 {
        let r = kura.get("a.com", "/n").await;
        assert_eq!(r.text(), "payload");
        let status = r.header("cache-status").unwrap().to_string();
        assert!(status.contains("fwd=miss"), "{status}");
        assert!(status.contains("detail=hit-for-pass"), "{status}");
    }
    assert_eq!(ranges.lock().unwrap()[1..], [None, None, None]);
    // Another URL is not affected.
    let r = kura.get("a.com", "/other").await;
    assert!(r.header("cache-status").unwrap().contains("not-storable"));

    // The object changes: the pass that sees it storable lifts the mark, the next request
    // fills and stores, the one after is a hit.
    *cc.lock().unwrap() = "max-age=300";
    let r = kura.get("a.com", "/n").await;
    assert!(r.header("cache-status").unwrap().contains("hit-for-pass"));
    let r = kura.get("a.com", "/n").await;
    let status = r.header("cache-status").unwrap().to_string();
    assert!(status.contains("stored"), "{status}");
    let r = kura.get("a.com", "/n").await;
    let status = r.header("cache-status").unwrap().to_string();
    assert!(status.contains("hit"), "{status}");

    let m = kura.metrics().await;
    assert!(
        m.lines()
            .any(|l| l == "kura_cache_passes_remembered_total 4"),
        "{m}"
    );
}

#[tokio::test]
async fn an_answer_refused_for_the_requests_credentials_marks_nothing() {
    // `max-age` without `public`: not shareable for a request with Authorization (RFC 9111
    // §3.5), storable for anyone else. A client with credentials must not make the URL a pass
    // for everybody.
    let cc = Arc::new(Mutex::new("max-age=300"));
    let (o, _) = switchable(cc).await;
    let kura = config(&o.url()).start().await;
    let r = kura_testkit::send(
        kura.addr,
        http::Request::get("/a")
            .header("host", "a.com")
            .header("authorization", "Bearer x")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    let status = r.header("cache-status").unwrap().to_string();
    assert!(status.contains("detail=authorization"), "{status}");
    let r = kura.get("a.com", "/a").await;
    let status = r.header("cache-status").unwrap().to_string();
    assert!(status.contains("stored"), "{status}");
    assert!(!status.contains("hit-for-pass"), "{status}");
}
