//! Where an image rule stores, through the real server: `resize.variant_key` and
//! `resize.source_key` (Katana's `cache_path_resized` and `cache_path_source`) put a variant
//! and its original under the keys their templates say, as the admin's purge by key shows (the
//! templated key purged, the next request misses; the original purged, the origin is asked
//! again); two URLs whose template expands alike share one entry; a template too coarse to tell
//! two images apart still never serves one for the other (nor poisons an original); and the
//! same templates on two vhosts never meet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kura_testkit::origin::full;
use kura_testkit::{TestKura, TestOrigin, send};

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % 251) as u8, 90, 160])
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// An origin serving `files` with an hour of freshness, counting GETs and noting whether a
/// request ever carried kura's internal identity header.
struct Files {
    origin: TestOrigin,
    gets: Arc<AtomicUsize>,
    leaked: Arc<AtomicBool>,
}

async fn files(name: &str, files: Vec<(&str, Vec<u8>)>) -> Files {
    let map: Arc<HashMap<String, Bytes>> = Arc::new(
        files
            .into_iter()
            .map(|(p, b)| (p.to_string(), Bytes::from(b)))
            .collect(),
    );
    let gets = Arc::new(AtomicUsize::new(0));
    let leaked = Arc::new(AtomicBool::new(false));
    let (g, l) = (gets.clone(), leaked.clone());
    let origin = TestOrigin::start(
        name,
        Arc::new(move |seen| {
            if seen.method == "GET" {
                g.fetch_add(1, SeqCst);
            }
            if seen.headers.contains_key("kura-image-identity") {
                l.store(true, SeqCst);
            }
            let body = map.get(seen.uri.as_str()).cloned();
            Box::pin(async move {
                match body {
                    Some(b) => {
                        let mut r = full(200, b);
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
        leaked,
    }
}

const RULE: &str = r#"
[[vhosts.rules]]
path = "^/(?:images|img)/resize-(?P<w>[0-9]+)x(?P<h>[0-9]+)(?:-q(?P<q>[0-9]+))?/(?P<src>.+)$"
action = "resize"
pool = "{pool}"
[vhosts.rules.resize]
source = "/{{src}}"
width = "{{w}}"
height = "{{h}}"
quality = "{{q}}"
variant_key = "{variant}"
source_key = "{source}"
"#;

/// A server with one vhost per `(host, pool URL)`, each with the image rule and the templates.
async fn kura(vhosts: &[(&str, &str)], variant: &str, source: &str) -> TestKura {
    let mut text = String::from(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[cache]\nmemory = \"64MiB\"\n",
    );
    for (i, (_, url)) in vhosts.iter().enumerate() {
        text.push_str(&format!("[pools.p{i}]\nbackends = [\"{url}\"]\n"));
    }
    for (i, (host, _)) in vhosts.iter().enumerate() {
        text.push_str(&format!("[[vhosts]]\nhosts = [\"{host}\"]\n"));
        text.push_str(
            &RULE
                .replace("{pool}", &format!("p{i}"))
                .replace("{variant}", variant)
                .replace("{source}", source)
                .replace("{{", "{")
                .replace("}}", "}"),
        );
    }
    TestKura::start(&text).await
}

async fn get(kura: &TestKura, host: &str, path: &str) -> kura_testkit::Reply {
    let req = Request::get(path).header("host", host);
    send(kura.addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

fn dims(r: &kura_testkit::Reply) -> (u32, u32) {
    assert_eq!(r.status, 200, "{}", r.text());
    let img = image::load_from_memory(&r.body).unwrap_or_else(|e| panic!("not an image: {e}"));
    (img.width(), img.height())
}

fn hit(r: &kura_testkit::Reply) -> bool {
    let status = r.header("cache-status").unwrap_or("");
    status.contains("hit") && !status.contains("fwd=")
}

/// `POST /purge?key=…` on the admin listener: how many entries went.
async fn purge_key(kura: &TestKura, key: &str) -> u64 {
    let admin = kura.admin.unwrap();
    let req = Request::post(format!("/purge?key={key}"))
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(admin, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["purged"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn katana_key_templates_store_where_they_say() {
    let store = files("store", vec![("/photos/a.jpg", jpeg(1200, 800))]).await;
    let kura = kura(
        &[("img.test", &store.origin.url())],
        "resized/{width}x{height}-q{quality}/{src}",
        "source/{src}",
    )
    .await;

    let first = get(&kura, "img.test", "/images/resize-300x200-q75/photos/a.jpg").await;
    assert_eq!(dims(&first), (300, 200));
    assert!(!hit(&first));
    assert_eq!(store.gets.load(SeqCst), 1);
    // Another URL whose template expands alike (the default quality is 75): the same entry.
    let same = get(&kura, "img.test", "/img/resize-300x200/photos/a.jpg").await;
    assert!(hit(&same), "{:?}", same.headers);
    assert_eq!(same.body, first.body);
    // The identity header stays inside kura.
    assert!(!same.header("vary").unwrap_or("").contains("identity"));
    assert!(!store.leaked.load(SeqCst));

    // The variant is stored under exactly the templated key.
    assert_eq!(purge_key(&kura, "resized/300x200-q75/photos/a.jp").await, 0);
    assert_eq!(
        purge_key(&kura, "resized/300x200-q75/photos/a.jpg").await,
        1
    );
    let after = get(&kura, "img.test", "/img/resize-300x200/photos/a.jpg").await;
    assert!(!hit(&after), "{:?}", after.headers);
    assert_eq!(dims(&after), (300, 200));
    // ... made again from the original kept under its own key: the origin was not asked.
    assert_eq!(store.gets.load(SeqCst), 1);
    assert!(hit(&get(
        &kura,
        "img.test",
        "/img/resize-300x200/photos/a.jpg"
    )
    .await));

    // The original is stored under `source/{src}`: purged there (and the variant again), the
    // next request goes to the origin.
    assert_eq!(purge_key(&kura, "source/photos/a.jpg").await, 1);
    assert_eq!(
        purge_key(&kura, "resized/300x200-q75/photos/a.jpg").await,
        1
    );
    let refetched = get(&kura, "img.test", "/images/resize-300x200/photos/a.jpg").await;
    assert_eq!(dims(&refetched), (300, 200));
    assert_eq!(store.gets.load(SeqCst), 2);
    // The key given to the admin is normalised like the rule's own keys.
    assert_eq!(purge_key(&kura, "source/x/../photos/a.jpg").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coarse_template_never_serves_one_image_for_another() {
    let store = files(
        "store",
        vec![
            ("/photos/a.jpg", jpeg(1200, 800)),
            ("/photos/b.jpg", jpeg(400, 400)),
        ],
    )
    .await;
    // Every size of an image under one key, and every original under one constant key.
    let kura = kura(
        &[("img.test", &store.origin.url())],
        "thumbs/{src}",
        "originals",
    )
    .await;

    assert_eq!(
        dims(&get(&kura, "img.test", "/images/resize-300x200/photos/a.jpg").await),
        (300, 200)
    );
    // Another size of the same image: not the stored one.
    assert_eq!(
        dims(&get(&kura, "img.test", "/images/resize-150x150/photos/a.jpg").await),
        (150, 100)
    );
    // Another image under the same original key: its own pixels, not a's.
    assert_eq!(
        dims(&get(&kura, "img.test", "/images/resize-300x200/photos/b.jpg").await),
        (200, 200)
    );
    assert_eq!(store.gets.load(SeqCst), 2);
    // Each is kept: all three are hits now.
    for (path, want) in [
        ("/images/resize-300x200/photos/a.jpg", (300, 200)),
        ("/images/resize-150x150/photos/a.jpg", (150, 100)),
        ("/images/resize-300x200/photos/b.jpg", (200, 200)),
    ] {
        let r = get(&kura, "img.test", path).await;
        assert!(hit(&r), "{path}: {:?}", r.headers);
        assert_eq!(dims(&r), want, "{path}");
    }
    assert!(!store.leaked.load(SeqCst));
    // Purging the templated key removes every image stored under it, and only those.
    assert_eq!(purge_key(&kura, "thumbs/photos/a.jpg").await, 1);
    assert!(!hit(&get(
        &kura,
        "img.test",
        "/images/resize-150x150/photos/a.jpg"
    )
    .await));
    assert!(hit(&get(
        &kura,
        "img.test",
        "/images/resize-300x200/photos/b.jpg"
    )
    .await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_templates_on_two_vhosts_never_meet() {
    let a = files("a", vec![("/photos/x.jpg", jpeg(1200, 800))]).await;
    let b = files("b", vec![("/photos/x.jpg", jpeg(600, 600))]).await;
    let kura = kura(
        &[("a.test", &a.origin.url()), ("b.test", &b.origin.url())],
        "resized/{width}x{height}/{src}",
        "source/{src}",
    )
    .await;
    let path = "/images/resize-300x200/photos/x.jpg";
    assert_eq!(dims(&get(&kura, "a.test", path).await), (300, 200));
    // b's rule expands the same keys, in its own namespace: b's image, from b's origin.
    let from_b = get(&kura, "b.test", path).await;
    assert!(!hit(&from_b));
    assert_eq!(dims(&from_b), (200, 200));
    assert_eq!((a.gets.load(SeqCst), b.gets.load(SeqCst)), (1, 1));
    assert_eq!(dims(&get(&kura, "a.test", path).await), (300, 200));
    // A purge by key names both rules' entries.
    assert_eq!(purge_key(&kura, "resized/300x200/photos/x.jpg").await, 2);
}
