//! Image routes end to end, on images the tests generate: a Katana-style and an imgproxy-style
//! URL expressed by configuration alone, variants cached apart from their source (the origin
//! sees the source once), ETag and 304, Accept negotiation with `Vary`, limits → 400, signatures,
//! the not-found image, bad sources, and a who-has origin of clusters that finds the file and
//! survives a dead node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kura_testkit::origin::full;
use kura_testkit::{TestKura, TestOrigin, closed_addr, send};

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 90]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// An origin serving `files` (GET and HEAD) with an ETag and an hour of freshness, counting
/// GETs and HEADs.
struct Files {
    origin: TestOrigin,
    gets: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

async fn files(name: &str, files: Vec<(&str, Vec<u8>)>) -> Files {
    let map: Arc<HashMap<String, Bytes>> = Arc::new(
        files
            .into_iter()
            .map(|(p, b)| (p.to_string(), Bytes::from(b)))
            .collect(),
    );
    let gets = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(AtomicUsize::new(0));
    let (g, h) = (gets.clone(), heads.clone());
    let origin = TestOrigin::start(
        name,
        Arc::new(move |seen| {
            let map = map.clone();
            if seen.method == "HEAD" {
                h.fetch_add(1, SeqCst);
            } else {
                g.fetch_add(1, SeqCst);
            }
            Box::pin(async move {
                match map.get(seen.uri.as_str()) {
                    Some(b) => {
                        let mut r = full(200, b.clone());
                        let etag = format!("\"{}\"", b.len());
                        r.headers_mut().insert("etag", etag.parse().unwrap());
                        r.headers_mut()
                            .insert("cache-control", "max-age=3600".parse().unwrap());
                        r
                    }
                    None => full(404, "missing"),
                }
            })
        }),
    )
    .await;
    Files {
        origin,
        gets,
        heads,
    }
}

async fn get(kura: &TestKura, path: &str, headers: &[(&str, &str)]) -> kura_testkit::Reply {
    let mut req = Request::get(path).header("host", "img.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(kura.addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

fn dims(body: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(body).unwrap_or_else(|e| panic!("not an image: {e}"));
    (img.width(), img.height())
}

const KATANA: &str = r#"
[[vhosts.rules]]
path = "^/images/resize-(?P<w>[0-9]+)x(?P<h>[0-9]+)(?:-(?P<fit>[a-z]+))?(?:-q(?P<q>[0-9]+))?/(?P<src>.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
height = "{h}"
fit = "{fit}"
quality = "{q}"
fit_aliases = { f = "fill", c = "cover" }
"#;

fn config(store: &str, rules: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[cache]
memory = "64MiB"
[pools.store]
backends = ["{store}"]
{extra}
[[vhosts]]
hosts = ["img.test"]
{rules}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn katana_urls_resize_and_cache_source_and_variants_apart() {
    let store = files("store", vec![("/photos/a.jpg", jpeg(1200, 800))]).await;
    let kura = TestKura::start(&config(&store.origin.url(), KATANA, "")).await;

    let r = get(&kura, "/images/resize-300x200-f-q80/photos/a.jpg", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(dims(&r.body), (300, 200));
    let etag = r.header("etag").unwrap().to_string();
    assert!(r.header("last-modified").is_some() || r.header("etag").is_some());

    // The same variant again: from the cache, no origin request, not transformed again.
    let again = get(&kura, "/images/resize-300x200-f-q80/photos/a.jpg", &[]).await;
    assert_eq!(again.body, r.body);
    assert!(
        again.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        again.headers
    );
    // Another variant: the source comes from the cache, so the origin still saw one GET.
    let other = get(&kura, "/images/resize-150x150-c/photos/a.jpg", &[]).await;
    assert_eq!(dims(&other.body), (150, 150));
    let contain = get(&kura, "/images/resize-150x150/photos/a.jpg", &[]).await;
    assert_eq!(dims(&contain.body), (150, 100));
    assert_eq!(
        store.gets.load(SeqCst),
        1,
        "one source fetch for three variants"
    );

    // Conditional request on the variant.
    let nm = get(
        &kura,
        "/images/resize-300x200-f-q80/photos/a.jpg",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(nm.status, 304);

    // Limits: 400 with the reason.
    let big = get(&kura, "/images/resize-5000x200/photos/a.jpg", &[]).await;
    assert_eq!(big.status, 400);
    assert!(
        big.text().contains("above the limit of 1920"),
        "{}",
        big.text()
    );
    let q = get(&kura, "/images/resize-300x200-q99/photos/a.jpg", &[]).await;
    assert_eq!(q.status, 400);
    let fit = get(&kura, "/images/resize-300x200-zz/photos/a.jpg", &[]).await;
    assert_eq!(fit.status, 400);
    // HEAD of a variant.
    let head = send(
        kura.addr,
        Request::head("/images/resize-300x200-f-q80/photos/a.jpg")
            .header("host", "img.test")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imgproxy_urls_with_signatures() {
    let store = files("store", vec![("/p/b.jpg", jpeg(800, 600))]).await;
    let rules = r#"
[[vhosts.rules]]
path = "^/(?P<signature>[^/]+)/rs:(?P<fit>fit|fill|force):(?P<w>[0-9]+):(?P<h>[0-9]+)(?:/q:(?P<q>[0-9]+))?/plain/(?P<src>[^@]+)(?:@(?P<fmt>[a-z]+))?$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
height = "{h}"
fit = "{fit}"
quality = "{q}"
format = "{fmt}"
default_format = "auto"
fit_aliases = { fit = "contain", fill = "cover", force = "fill" }
[vhosts.rules.resize.signature]
keys = ["6f6c64", "736563726574"]
salts = ["01", "68656c6c6f"]
"#;
    let kura = TestKura::start(&config(&store.origin.url(), rules, "")).await;
    let signer =
        kura_image::Signer::from_hex(&["736563726574".into()], &["68656c6c6f".into()]).unwrap();
    let path = "/rs:fill:200:200/q:70/plain/p/b.jpg@webp";
    let sig = signer.sign(path);

    let ok = get(&kura, &format!("/{sig}{path}"), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("content-type"), Some("image/webp"));
    assert_eq!(dims(&ok.body), (200, 200));
    let bad = get(&kura, &format!("/AAAA{path}"), &[]).await;
    assert_eq!(bad.status, 403);
    let other = get(
        &kura,
        &format!("/{sig}/rs:fill:300:200/q:70/plain/p/b.jpg@webp"),
        &[],
    )
    .await;
    assert_eq!(other.status, 403, "a signature covers its own path only");
    let unsigned = get(&kura, &format!("/unsafe{path}"), &[]).await;
    assert_eq!(unsigned.status, 403);
    // Without @ext the client's Accept decides (default_format = "auto").
    let bare = "/rs:fit:100:100/plain/p/b.jpg";
    let r = get(
        &kura,
        &format!("/{}{bare}", signer.sign(bare)),
        &[("accept", "image/avif,image/webp,*/*")],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(dims(&r.body), (100, 75));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_format_follows_accept_and_varies() {
    let store = files("store", vec![("/c.jpg", jpeg(640, 480))]).await;
    let rules = r#"
[[vhosts.rules]]
path = "^/w(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
format = "auto"
"#;
    let kura = TestKura::start(&config(&store.origin.url(), rules, "")).await;
    let chrome = "image/avif,image/webp,image/apng,*/*;q=0.8";
    let webp = get(&kura, "/w320/c.jpg", &[("accept", chrome)]).await;
    assert_eq!(webp.header("content-type"), Some("image/webp"));
    assert_eq!(webp.header("vary"), Some("Accept"));
    assert_eq!(dims(&webp.body), (320, 240));
    let old = get(&kura, "/w320/c.jpg", &[("accept", "*/*")]).await;
    assert_eq!(old.header("content-type"), Some("image/jpeg"));
    assert_eq!(dims(&old.body), (320, 240));
    // Each variant cached under its own key: both hit now.
    for accept in [chrome, "*/*"] {
        let r = get(&kura, "/w320/c.jpg", &[("accept", accept)]).await;
        assert!(r.header("cache-status").unwrap().contains("hit"));
    }
    assert_eq!(store.gets.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_bad_sources() {
    let avif = kura_image::transform(
        &jpeg(32, 32),
        &kura_image::Params::parse(
            &kura_image::Raw::default(),
            &kura_image::ImageLimits::default(),
            &Default::default(),
        )
        .unwrap(),
        kura_image::Chosen::Fixed(kura_image::Format::Avif),
        &kura_image::ImageLimits::default(),
    )
    .unwrap()
    .bytes;
    let store = files(
        "store",
        vec![
            ("/text.jpg", b"I am not a picture".to_vec()),
            ("/pic.avif", avif),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("404.jpg"), jpeg(100, 100)).unwrap();
    let rules = format!(
        r#"
[[vhosts.rules]]
path = "^/(?P<mode>nf|nf200)/w(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{{src}}"
width = "{{w}}"
not_found_source = "{}"
[[vhosts.rules]]
path = "^/plain/w(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{{src}}"
width = "{{w}}"
"#,
        dir.path().join("404.jpg").display()
    );
    let kura = TestKura::start(&config(&store.origin.url(), &rules, "")).await;
    let nf = get(&kura, "/nf/w50/nothing.jpg", &[]).await;
    assert_eq!(nf.status, 404);
    assert_eq!(nf.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        dims(&nf.body),
        (50, 50),
        "the not-found image at the asked size"
    );
    let plain = get(&kura, "/plain/w50/nothing.jpg", &[]).await;
    assert_eq!(plain.status, 404);
    let text = get(&kura, "/plain/w50/text.jpg", &[]).await;
    assert_eq!(text.status, 502);
    assert!(
        text.text().contains("not a decodable image"),
        "{}",
        text.text()
    );
    let avif = get(&kura, "/plain/w16/pic.avif", &[]).await;
    assert_eq!(avif.status, 415, "{}", avif.text());
    let m = kura.metrics().await;
    assert!(
        m.contains("kura_image_transforms_total{result=\"unsupported\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kura_image_transforms_total{result=\"bad_source\"} 1"),
        "{m}"
    );

    // not_found_as_200.
    let rules200 = rules.replace(
        "not_found_source =",
        "not_found_as_200 = true\nnot_found_source =",
    );
    let kura = TestKura::start(&config(&store.origin.url(), &rules200, "")).await;
    let nf = get(&kura, "/nf200/w40/nothing.jpg", &[]).await;
    assert_eq!(nf.status, 200);
    assert_eq!(dims(&nf.body), (40, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_has_finds_the_cluster_with_the_file_and_survives_a_dead_node() {
    let a1 = files("a1", vec![("/a/one.jpg", jpeg(400, 300))]).await;
    let a2 = files("a2", vec![("/a/one.jpg", jpeg(400, 300))]).await;
    let b1 = files("b1", vec![("/b/two.jpg", jpeg(300, 300))]).await;
    let dead = format!("http://{}", closed_addr());
    let pool = format!(
        r#"[pools.origin]
whohas_ttl = "1m"
[[pools.origin.clusters]]
nodes = ["{}", "{dead}", "{}"]
headers = {{ host = "filer-a.test" }}
[[pools.origin.clusters]]
nodes = ["{}"]"#,
        a1.origin.url(),
        a2.origin.url(),
        b1.origin.url()
    );
    let rules = r#"
[[vhosts.rules]]
path = "^/r/w(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "origin"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
[[vhosts.rules]]
path = "^/raw/(?P<rest>.*)$"
pool = "origin"
rewrite = "/{rest}"
"#;
    let toml = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[cache]
memory = "64MiB"
{pool}
[[vhosts]]
hosts = ["img.test"]
{rules}
"#
    );
    let kura = TestKura::start(&toml).await;
    let two = get(&kura, "/r/w100/b/two.jpg", &[]).await;
    assert_eq!(two.status, 200, "{}", two.text());
    assert_eq!(dims(&two.body), (100, 100));
    assert_eq!(
        b1.gets.load(SeqCst),
        1,
        "fetched from the cluster that has it"
    );
    assert_eq!(a1.gets.load(SeqCst) + a2.gets.load(SeqCst), 0);
    let one = get(&kura, "/r/w100/a/one.jpg", &[]).await;
    assert_eq!(dims(&one.body), (100, 75));
    assert_eq!(a1.gets.load(SeqCst) + a2.gets.load(SeqCst), 1);
    let a_seen = a1.origin.last().or(a2.origin.last()).unwrap();
    assert_eq!(
        a_seen.headers["host"], "filer-a.test",
        "the cluster's headers"
    );

    // The location is remembered: a plain proxy rule for the same file (`/raw/a/one.jpg` is
    // rewritten to `/a/one.jpg`) probes nothing new.
    let heads = a1.heads.load(SeqCst) + a2.heads.load(SeqCst) + b1.heads.load(SeqCst);
    assert!(heads >= 2, "the first requests probed ({heads} HEADs)");
    let raw = get(&kura, "/raw/a/one.jpg", &[]).await;
    assert_eq!(raw.status, 200);
    assert_eq!(dims(&raw.body), (400, 300));
    assert_eq!(
        a1.heads.load(SeqCst) + a2.heads.load(SeqCst) + b1.heads.load(SeqCst),
        heads,
        "no new probes for a remembered file"
    );
    // A file nobody has: the first cluster's own 404.
    let missing = get(&kura, "/raw/zzz.jpg", &[]).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_source_urls_are_checked_against_allowed_hosts_and_local_addresses() {
    let store = files("store", vec![("/d.jpg", jpeg(200, 100))]).await;
    let rule = |extra: &str| {
        format!(
            r#"
[[vhosts.rules]]
path = "^/u/w(?P<w>[0-9]+)/(?P<url>https?://.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "{{url}}"
width = "{{w}}"
{extra}
"#
        )
    };
    let url = format!("/u/w50/{}/d.jpg", store.origin.url());
    // Loopback (as every private or special address) is refused unless allowed.
    let kura = TestKura::start(&config(&store.origin.url(), &rule(""), "")).await;
    let r = get(&kura, &url, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("private or special"), "{}", r.text());
    // Allowed, but the host is not in the list.
    let kura = TestKura::start(&config(
        &store.origin.url(),
        &rule("allow_local_sources = true\nallowed_sources = [\"images.example.com\"]"),
        "",
    ))
    .await;
    assert_eq!(get(&kura, &url, &[]).await.status, 403);
    // Both allowed.
    let kura = TestKura::start(&config(
        &store.origin.url(),
        &rule("allow_local_sources = true\nallowed_sources = [\"127.0.0.1\"]"),
        "",
    ))
    .await;
    let ok = get(&kura, &url, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(dims(&ok.body), (50, 25));
}

/// `kura_image_transforms_total{result="ok"}` as a number.
async fn transforms(kura: &TestKura) -> u64 {
    kura.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("kura_image_transforms_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_routes_do_no_work_for_free() {
    let src = jpeg(400, 300);
    let store = files("store", vec![("/p/a.jpg", src.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("404.jpg"), jpeg(100, 100)).unwrap();
    let rules = format!(
        r#"
[[vhosts.rules]]
path = "^/i/w(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "/{{src}}"
width = "{{w}}"
not_found_source = "{}"
"#,
        dir.path().join("404.jpg").display()
    );
    let kura = TestKura::start(&config(&store.origin.url(), &rules, "")).await;
    // A HEAD miss transforms once, and the GET after it is a hit.
    let head = send(
        kura.addr,
        Request::head("/i/w100/p/a.jpg")
            .header("host", "img.test")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let get1 = get(&kura, "/i/w100/p/a.jpg", &[]).await;
    assert_eq!(dims(&get1.body), (100, 75));
    assert!(get1.header("cache-status").unwrap().contains("hit"));
    assert_eq!(transforms(&kura).await, 1, "HEAD then GET: one transform");
    // The not-found image is transformed once per variant, however many misses ask for it.
    for _ in 0..3 {
        let nf = get(&kura, "/i/w60/p/missing.jpg", &[]).await;
        assert_eq!(nf.status, 404);
        assert_eq!(dims(&nf.body), (60, 60));
    }
    assert_eq!(transforms(&kura).await, 2);
    // `w0`: nothing would change, so the original passes through byte for byte, untransformed.
    let same = get(&kura, "/i/w0/p/a.jpg", &[]).await;
    assert_eq!(same.status, 200);
    assert!(same.body[..] == src[..]);
    assert_eq!(transforms(&kura).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_sources_reach_only_the_public_internet_and_say_little() {
    let store = files(
        "store",
        vec![("/d.jpg", jpeg(200, 100)), ("/e.jpg", jpeg(200, 100))],
    )
    .await;
    let rule = |extra: &str| {
        format!(
            r#"
[[vhosts.rules]]
path = "^/u/w(?P<w>[0-9]+)/(?P<url>https?://.+)$"
action = "resize"
pool = "store"
[vhosts.rules.resize]
source = "{{url}}"
width = "{{w}}"
{extra}
"#
        )
    };
    let kura = TestKura::start(&config(&store.origin.url(), &rule(""), "")).await;
    // Private, CGNAT, metadata and unspecified addresses, as literals (no DNS involved; IPv6
    // ranges are covered by `image_source`'s unit test).
    for inside in [
        "http://10.255.255.1/x.jpg",
        "http://100.64.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.0.1/x.jpg",
        "http://0.0.0.0/x.jpg",
    ] {
        let r = get(&kura, &format!("/u/w50/{inside}"), &[]).await;
        assert_eq!(r.status, 403, "{inside}: {}", r.text());
    }
    // Allowed local sources: one keep-alive pool per source host, reused across originals.
    let kura = TestKura::start(&config(
        &store.origin.url(),
        &rule("allow_local_sources = true"),
        "",
    ))
    .await;
    for f in ["d.jpg", "e.jpg"] {
        let r = get(&kura, &format!("/u/w50/{}/{f}", store.origin.url()), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(store.gets.load(SeqCst), 2);
    assert_eq!(store.origin.connections(), 1, "one kept-alive connection");
    // What answered on a port is not told: a closed port and a 500 read the same.
    let failing = TestOrigin::failing("bad", 500).await;
    let closed = closed_addr();
    let a = get(&kura, &format!("/u/w50/{}/x.jpg", failing.url()), &[]).await;
    let b = get(&kura, &format!("/u/w50/http://{closed}/x.jpg"), &[]).await;
    assert_eq!((a.status, b.status), (502, 502));
    assert_eq!(a.text(), b.text());
    assert!(!a.text().contains("500") && !b.text().to_lowercase().contains("refused"));
}
