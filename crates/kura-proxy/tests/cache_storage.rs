//! The cache's storage through a real server: segments fetched by range and coalesced, client
//! ranges served from segments, origins that ignore ranges, objects that change between
//! segments, and the disk tier (restart, corruption, watermarks, X-Accel-Redirect).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kura_config::SizeValue;
use kura_testkit::config::{CachePolicy, Rule, TestConfig};
use kura_testkit::origin::{pattern_byte, ranged};
use kura_testkit::{Client, get_request};

const SEG: u64 = 64 * 1024;

/// Every host cached from `origin` with `policy`, in segments of 64 KiB.
fn config(origin: &str, policy: CachePolicy) -> TestConfig {
    TestConfig::new()
        .admin()
        .cache_storage(|c| c.segment_size = Some(SizeValue::Text("64KiB".into())))
        .pool("o", &[origin])
        .vhost(&["*"], |v| v.fallback(Rule::cache("o").policy(policy)))
}

fn expected(version: u64, start: u64, end: u64) -> Vec<u8> {
    (start..end).map(|o| pattern_byte(version, o)).collect()
}

async fn get_range(
    addr: std::net::SocketAddr,
    path: &str,
    range: Option<&str>,
) -> kura_testkit::Reply {
    let mut b = http::Request::get(path).header("host", "a.com");
    if let Some(r) = range {
        b = b.header("range", r);
    }
    kura_testkit::send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn concurrent_clients_share_one_fetch_per_segment() {
    let size = 16 * SEG + 1000; // 17 segments, the last one short
    let (o, st) = ranged("o", size, "max-age=3600").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = kura.addr;
        tasks.push(tokio::spawn(async move {
            kura_testkit::get(addr, "a.com", "/big").await
        }));
    }
    let want = expected(1, 0, size);
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as u64, size);
        assert!(r.body[..] == want[..], "bytes differ");
    }
    let ranges = st.range_requests();
    let mut counts: HashMap<Option<String>, usize> = HashMap::new();
    for r in &ranges {
        *counts.entry(r.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 17, "one request per segment: {counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert!(
        counts.keys().all(|k| k.is_some()),
        "no whole-object fetch: {counts:?}"
    );
    // A later client is served from the cache alone.
    let r = kura.get("a.com", "/big").await;
    assert!(r.body[..] == want[..]);
    assert_eq!(st.range_requests().len(), 17);
}

#[tokio::test]
async fn client_ranges_fetch_only_the_segments_they_need() {
    let size = 20 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    let start = 7 * SEG + 100;
    let r = get_range(
        kura.addr,
        "/r",
        Some(&format!("bytes={start}-{}", start + 99)),
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {start}-{}/{size}", start + 99).as_str())
    );
    assert!(r.body[..] == expected(1, start, start + 100)[..]);
    let mut ranges: Vec<String> = st.range_requests().into_iter().flatten().collect();
    ranges.sort();
    // The first segment (to learn the object) and the one holding the range; prefetching
    // ahead of the reader may add the next ones, but never the ones before.
    assert!(
        ranges.contains(&format!("bytes=0-{}", SEG - 1)),
        "{ranges:?}"
    );
    assert!(
        ranges.contains(&format!("bytes={}-{}", 7 * SEG, 8 * SEG - 1)),
        "{ranges:?}"
    );
    for skipped in 1..7 {
        let r = format!("bytes={}-{}", skipped * SEG, (skipped + 1) * SEG - 1);
        assert!(
            !ranges.contains(&r),
            "segment {skipped} fetched: {ranges:?}"
        );
    }
    // Unsatisfiable and malformed ranges.
    let r = get_range(kura.addr, "/r", Some(&format!("bytes={size}-"))).await;
    assert_eq!(r.status, 416);
    let r = get_range(kura.addr, "/r", Some("bytes=oops")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, size);
}

#[tokio::test]
async fn an_origin_that_ignores_ranges_still_streams_and_caches() {
    let size = 5 * SEG + 123;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    st.honor_range.store(false, SeqCst);
    let kura = config(&o.url(), CachePolicy::new()).start().await;
    let want = expected(1, 0, size);
    let r = kura.get("a.com", "/nr").await;
    assert_eq!(r.status, 200);
    assert!(r.body[..] == want[..]);
    let r = kura.get("a.com", "/nr").await;
    assert!(r.header("cache-status").unwrap().contains("hit"));
    assert!(r.body[..] == want[..]);
    let r = get_range(kura.addr, "/nr", Some("bytes=100-199")).await;
    assert_eq!(r.status, 206);
    assert!(r.body[..] == want[100..200]);
    assert_eq!(st.range_requests().len(), 1, "one origin request in all");
}

#[tokio::test]
async fn a_changed_object_is_never_stitched() {
    let size = 10 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    let kura = config(&o.url(), CachePolicy::new())
        .cache_storage(|c| c.prefetch_segments = Some(0))
        .start()
        .await;
    // Learn the object (segment 0 only).
    let r = get_range(kura.addr, "/chg", Some("bytes=0-9")).await;
    assert!(r.body[..] == expected(1, 0, 10)[..]);
    // The origin's object changes; a later segment is asked for with If-Range.
    st.version.store(2, SeqCst);
    let mut client = Client::connect(kura.addr).await;
    let mut req = get_request("a.com", "/chg");
    req.headers_mut().insert(
        "range",
        format!("bytes={}-{}", 5 * SEG, 5 * SEG + 9)
            .parse()
            .unwrap(),
    );
    let resp = client.send_streaming(req).await;
    let body = resp.into_body().collect().await;
    assert!(
        body.is_err(),
        "the body is cut, not stitched from two versions"
    );
    // The cut is counted where an operator sees it.
    assert_eq!(kura.admin_json("/cache").await["bodies_cut"], 1);
    let m = kura.metrics().await;
    assert!(
        m.lines().any(|l| l == "kura_cache_bodies_cut_total 1"),
        "{m}"
    );
    // The entry was dropped: the next request gets the new version whole.
    let r = kura.get("a.com", "/chg").await;
    assert_eq!(r.status, 200);
    assert!(r.body[..] == expected(2, 0, size)[..]);
}

fn files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart() {
    let size = 3 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    let dir = tempfile::tempdir().unwrap();
    let kura = config(&o.url(), CachePolicy::new())
        .cache_dir(dir.path())
        .start()
        .await;
    assert_eq!(kura.get("a.com", "/p").await.body.len() as u64, size);
    kura.handle.cache().flush().await;
    kura.handle.shutdown().await;

    let kura = config(&o.url(), CachePolicy::new())
        .cache_dir(dir.path())
        .start()
        .await;
    let r = kura.get("a.com", "/p").await;
    assert!(r.body[..] == expected(1, 0, size)[..]);
    assert!(r.header("cache-status").unwrap().contains("hit"), "{r:?}");
    assert_eq!(st.range_requests().len(), 3, "nothing fetched again");
    assert_eq!(kura.admin_json("/cache").await["hits_disk"], 1);
}

#[tokio::test]
async fn corrupt_disk_data_is_refetched_never_served() {
    let size = 2 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    let dir = tempfile::tempdir().unwrap();
    // Disk only, so that every read goes to the files.
    let kura = config(&o.url(), CachePolicy::new())
        .cache_storage(|c| c.memory = Some(SizeValue::Bytes(0)))
        .cache_dir(dir.path())
        .start()
        .await;
    kura.get("a.com", "/z").await;
    kura.handle.cache().flush().await;
    let segs = files(dir.path(), ".seg");
    assert_eq!(segs.len(), 2);
    for s in &segs {
        let mut data = std::fs::read(s).unwrap();
        data[100] ^= 0xff;
        std::fs::write(s, data).unwrap();
    }
    let r = kura.get("a.com", "/z").await;
    // Either the bad segment was found before the answer started (refetched and served), or
    // the body was cut; it is never the corrupt bytes.
    if r.status == 200 && r.body.len() as u64 == size {
        assert!(r.body[..] == expected(1, 0, size)[..]);
    }
    let stats = kura.admin_json("/cache").await;
    assert!(stats["corrupt"].as_u64().unwrap() >= 1, "{stats}");
    let r = kura.get("a.com", "/z").await;
    assert!(r.body[..] == expected(1, 0, size)[..]);
    assert!(st.range_requests().len() > 2, "refetched");
}

#[tokio::test]
async fn the_disk_is_cleaned_between_its_marks() {
    let (o, _) = ranged("o", 40 * 1024, "max-age=3600").await;
    let dir = tempfile::tempdir().unwrap();
    let kura = config(&o.url(), CachePolicy::new())
        .cache_memory("1MiB")
        .cache_dir(dir.path())
        .cache_storage(|c| {
            c.max_disk = Some(SizeValue::Text("300KiB".into()));
            c.cleaned_disk = Some(SizeValue::Text("150KiB".into()));
        })
        .start()
        .await;
    let c = kura.handle.cache();
    for i in 0..20 {
        assert_eq!(kura.get("a.com", &format!("/o/{i}")).await.status, 200);
        c.flush().await;
    }
    let stats = kura.admin_json("/cache").await;
    let bytes = stats["disk_bytes"].as_u64().unwrap();
    assert!(bytes <= 300 * 1024, "{stats}");
    assert!(stats["disk_evictions"].as_u64().unwrap() > 0, "{stats}");
    let on_disk: u64 = files(dir.path(), "")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 300 * 1024, "{on_disk}");
}

#[tokio::test]
async fn x_accel_redirect_names_the_cached_file() {
    let (o, _) = ranged("o", 5000, "max-age=3600").await;
    let dir = tempfile::tempdir().unwrap();
    let kura = config(&o.url(), CachePolicy::new().accel_redirect("/kura-cache"))
        .cache_dir(dir.path())
        .start()
        .await;
    let first = kura.get("a.com", "/img.jpg").await;
    // Normally the body; a redirect already if the file reached the disk first.
    assert!(first.body.len() == 5000 || first.header("x-accel-redirect").is_some());
    // The segment reaches the disk a moment after the client has its bytes (a moment that
    // can be long on a loaded machine).
    let cache = kura.handle.cache();
    let mut r = kura.get("a.com", "/img.jpg").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if r.header("x-accel-redirect").is_some() {
            break;
        }
        cache.flush().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        r = kura.get("a.com", "/img.jpg").await;
    }
    let accel = r
        .header("x-accel-redirect")
        .expect("redirect header")
        .to_string();
    assert!(r.body.is_empty());
    let rel = accel.strip_prefix("/kura-cache/").unwrap();
    let file = std::fs::read(dir.path().join(rel)).unwrap();
    assert!(file[..] == expected(1, 0, 5000)[..], "the file is the body");
    assert_eq!(r.header("etag"), Some("\"v1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_never_holds_a_whole_body_fill_and_loses_nothing() {
    // 64 MiB from an origin that ignores ranges, a memory tier of 1 MiB. One client reads a
    // frame and stalls; another reads the same object meanwhile: it gets it whole at the
    // origin's speed (the fill does not wait for the stalled one). The stalled client then
    // gets every byte right: what it missed is read from storage or fetched again.
    let size = 1024 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    st.honor_range.store(false, SeqCst);
    // What the stalled client missed may take a loaded machine longer than the default 60 s
    // send timeout to fetch again; the test is about bytes, not that timeout.
    let kura = config(&o.url(), CachePolicy::new())
        .cache_memory("1MiB")
        .limits(|l| l.send_timeout = Some("10m".into()))
        .start()
        .await;
    let mut slow = Client::connect(kura.addr).await;
    let resp = slow.send_streaming(get_request("a.com", "/slow")).await;
    let mut body = resp.into_body();
    let mut got = Vec::with_capacity(size as usize);
    if let Some(frame) = body.frame().await {
        got.extend_from_slice(frame.expect("a first frame").data_ref().unwrap());
    }
    // Held by the stalled reader, it would never finish; the bound is for a loaded machine.
    let fast = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        kura.get("a.com", "/slow"),
    )
    .await
    .expect("a second reader is not held by the stalled one");
    assert_eq!(fast.body.len() as u64, size);
    assert!(fast.body[..] == expected(1, 0, size)[..]);
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.expect("no byte is lost").data_ref() {
            got.extend_from_slice(d);
        }
    }
    assert_eq!(got.len() as u64, size);
    assert!(got[..] == expected(1, 0, size)[..]);
}

#[tokio::test]
async fn a_whole_body_object_that_no_longer_fits_is_read_again_from_the_origin() {
    // Memory of 1 MiB for a 4 MiB object from an origin without ranges: after the fill, most
    // segments are gone. A later reader still gets the whole, right body (refetched whole).
    let size = 64 * SEG;
    let (o, st) = ranged("o", size, "max-age=3600").await;
    st.honor_range.store(false, SeqCst);
    let kura = config(&o.url(), CachePolicy::new())
        .cache_memory("1MiB")
        .start()
        .await;
    let want = expected(1, 0, size);
    assert!(kura.get("a.com", "/gone").await.body[..] == want[..]);
    kura.handle.cache().flush().await;
    let r = kura.get("a.com", "/gone").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body[..] == want[..],
        "the second reader got the right bytes"
    );
    assert!(
        st.range_requests().len() >= 2,
        "the object was fetched again"
    );
}

#[tokio::test]
async fn with_a_disk_tier_large_objects_skip_memory_and_small_ones_stay() {
    // Memory 1 MiB: objects up to an eighth of it (128 KiB) are kept in memory too; larger
    // ones live on disk only, so one big download cannot flush every small hot object.
    let (big, _) = ranged("o", 8 * SEG, "max-age=3600").await;
    let (small, _) = ranged("o", SEG, "max-age=3600").await;
    let dir = tempfile::tempdir().unwrap();
    let kb = config(&big.url(), CachePolicy::new())
        .cache_memory("1MiB")
        .cache_dir(dir.path())
        .start()
        .await;
    assert_eq!(kb.get("a.com", "/big").await.body.len() as u64, 8 * SEG);
    kb.handle.cache().flush().await;
    let s = kb.admin_json("/cache").await;
    assert!(s["memory_bytes"].as_u64().unwrap() < SEG, "{s}");
    let r = kb.get("a.com", "/big").await;
    assert!(r.body[..] == expected(1, 0, 8 * SEG)[..]);
    let s = kb.admin_json("/cache").await;
    assert_eq!(s["hits_disk"], 1, "{s}");
    kb.handle.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let ks = config(&small.url(), CachePolicy::new())
        .cache_memory("1MiB")
        .cache_dir(dir.path())
        .start()
        .await;
    ks.get("a.com", "/small").await;
    ks.handle.cache().flush().await;
    let s = ks.admin_json("/cache").await;
    assert!(s["memory_bytes"].as_u64().unwrap() >= SEG, "{s}");
    ks.get("a.com", "/small").await;
    assert_eq!(ks.admin_json("/cache").await["hits_memory"], 1);
}
