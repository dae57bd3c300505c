//! Helpers shared by the crate's unit tests.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, StatusCode};
use http_cache_semantics::CachePolicy;

use crate::object::Object;

/// A fresh ranged object of `len` bytes in segments of `seg`, with a random version.
pub fn object(key: &str, len: u64, seg: u64) -> Arc<Object> {
    let req = Request::get("http://a/x").body(()).unwrap();
    let mut h = HeaderMap::new();
    h.insert("cache-control", "max-age=60".parse().unwrap());
    h.insert("content-type", "text/plain".parse().unwrap());
    let res = http::Response::builder()
        .status(200)
        .header("cache-control", "max-age=60")
        .body(())
        .unwrap();
    let now = SystemTime::now();
    Arc::new(Object {
        key: key.into(),
        version: fastrand::u64(1..),
        status: StatusCode::OK,
        headers: h,
        policy: CachePolicy::new(&req, &res),
        length: Some(len),
        segment_size: seg,
        ranged: true,
        stored_at: now,
        fresh_until: now + Duration::from_secs(60),
        age_at_store: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        must_revalidate: false,
        allows_auth: false,
    })
}
