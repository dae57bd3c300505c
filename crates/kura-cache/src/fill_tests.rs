//! Fills: a fill task that dies must not leave its key locked (the drop guard ends the
//! flight), and a fill's outcome is counted once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kura_config::{CacheConfig, CookiePolicy, RuleCache};

use crate::key::{PrimaryKey, RuleId};
use crate::origin::{Origin, OriginBody, OriginError};
use crate::tier::BoxFuture;
use crate::{Cache, CacheRequest};

/// Panics on its first `panics` fetches, then answers 200 with `max-age=60`; each fetch goes
/// on only once `go` holds `true`.
struct Dying {
    calls: AtomicUsize,
    panics: usize,
    go: tokio::sync::watch::Receiver<bool>,
}

impl Origin for Dying {
    fn fetch(
        &self,
        _req: http::request::Parts,
    ) -> BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let n = self.calls.fetch_add(1, SeqCst);
        let panics = self.panics;
        let mut go = self.go.clone();
        Box::pin(async move {
            // Held until the test has a second request waiting on this fetch.
            let _ = go.wait_for(|go| *go).await;
            if n < panics {
                panic!("origin handler died");
            }
            let mut r = Response::new(
                Full::new(Bytes::from_static(b"ok"))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
            r.headers_mut()
                .insert("cache-control", "max-age=60".parse().unwrap());
            r.headers_mut()
                .insert("content-length", "2".parse().unwrap());
            Ok(r)
        })
    }
}

fn config() -> CacheConfig {
    CacheConfig {
        memory_bytes: 1 << 20,
        disk: None,
        segment_size: 64 * 1024,
        prefetch_segments: 1,
        purge_allow: Vec::new(),
        lock_timeout: Duration::from_secs(30),
        targeted_cache_control: Vec::new(),
    }
}

fn request() -> CacheRequest {
    let rule = RuleCache {
        key: None,
        min_ttl: Duration::ZERO,
        default_ttl: None,
        force_ttl: None,
        client_max_age: None,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        accel_redirect: None,
        cookies: CookiePolicy::Origin,
        targeted_cache_control: Vec::new(),
    };
    CacheRequest {
        parts: Request::get("/x").body(()).unwrap().into_parts().0,
        key: PrimaryKey::url(RuleId(7), "http", "a.test", "/x", ""),
        rule: Arc::new(rule),
        target: None,
    }
}

/// Yields until `cond` holds; panics after 10 s.
async fn until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "the condition never held");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_fill_task_that_panics_ends_its_flight() {
    let cache = Cache::open(&config()).await.unwrap();
    let (go, gone) = tokio::sync::watch::channel(false);
    let origin = Arc::new(Dying {
        calls: AtomicUsize::new(0),
        panics: 1,
        go: gone,
    });
    let start = Instant::now();
    let (a, b) = tokio::join!(cache.serve(request(), origin.clone()), async {
        // Once the leader's fetch has begun, a second request joins its flight; the fetch
        // dies only then.
        until(|| origin.calls.load(SeqCst) > 0).await;
        let joined = async {
            until(|| cache.stats().coalesced > 0).await;
            go.send_replace(true);
        };
        tokio::join!(cache.serve(request(), origin.clone()), joined).0
    });
    // The leader and the request that waited on it both fail at once (not after the 30 s
    // lock timeout).
    assert_eq!(a.err().map(|e| e.status), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(b.err().map(|e| e.status), Some(StatusCode::BAD_GATEWAY));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    // The key is not locked: the next request fetches and stores.
    let c = cache.serve(request(), origin.clone()).await.unwrap();
    assert_eq!(c.status(), StatusCode::OK);
    let body = c.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert!(start.elapsed() < Duration::from_secs(15));
}

/// Answers a ranged GET with its slice (206) and a plain one whole (200), always `no-store`.
struct Unstorable {
    len: usize,
}

impl Origin for Unstorable {
    fn fetch(
        &self,
        req: http::request::Parts,
    ) -> BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let len = self.len;
        let range = req
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes=0-"))
            .and_then(|v| v.parse::<usize>().ok());
        Box::pin(async move {
            let (status, body_len) = match range {
                Some(last) => (StatusCode::PARTIAL_CONTENT, (last + 1).min(len)),
                None => (StatusCode::OK, len),
            };
            let mut r = Response::new(
                Full::new(Bytes::from(vec![b'x'; body_len]))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert("cache-control", "no-store".parse().unwrap());
            h.insert("content-length", body_len.into());
            if status == StatusCode::PARTIAL_CONTENT {
                let cr = format!("bytes 0-{}/{len}", body_len - 1);
                h.insert("content-range", cr.parse().unwrap());
            }
            Ok(r)
        })
    }
}

#[tokio::test]
async fn a_large_unstorable_ranged_answer_counts_one_pass() {
    let cache = Cache::open(&config()).await.unwrap();
    // Larger than one segment (64 KiB): the first answer is dropped and the object refetched
    // whole, which is the one pass.
    let len = 200 * 1024;
    let resp = cache
        .serve(request(), Arc::new(Unstorable { len }))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), len);
    let s = cache.stats();
    assert_eq!(s.passes, 1, "one request passed once");
    assert_eq!(s.origin_fetches, 2, "the ranged fetch and the plain one");
    assert_eq!(s.stored, 0);
}
