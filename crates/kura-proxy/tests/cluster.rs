//! The cluster cache with a real etcd and three kura nodes on 127.0.0.1-3: the origin serves
//! each 2 MiB segment once for the whole cluster, a node dying mid-download costs the other
//! nodes' clients nothing, a node joining takes its share, an etcd outage keeps the last
//! membership, and peer requests need the shared secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use kura_testkit::etcd::{Etcd, free_addr};
use kura_testkit::origin::{RangedState, pattern_buffer, ranged};
use kura_testkit::{Client, TestKura, TestOrigin, eventually, get_request};

const MIB: u64 = 1024 * 1024;
const SECRET: &str = "test-secret-0123456789";
const SETTLE: Duration = Duration::from_secs(15);

enum Members<'a> {
    Etcd(&'a str),
    Static(&'a [String]),
}

/// A node's configuration. Its lease and `peer_timeout` (10 s each) outlast the stalls of a
/// loaded machine: a lease lost or an owner given up on would have a segment fetched twice,
/// which the tests count.
fn node_config(ip: &str, peering: &str, members: &Members<'_>, origin: &str) -> String {
    let source = match members {
        Members::Etcd(url) => format!("etcd = [\"{url}\"]\nlease_ttl = \"10s\""),
        Members::Static(peers) => format!(
            "peers = [{}]",
            peers
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        r#"
[[listeners]]
address = "{ip}:0"
[admin]
address = "{ip}:0"
[cache]
memory = "64MiB"
[cluster]
peering_address = "{peering}"
secret = "{SECRET}"
peer_timeout = "10s"
{source}
[pools.origin]
backends = ["{origin}"]
[[vhosts]]
hosts = ["*"]
pool = "origin"
action = "cache"
"#
    )
}

/// `n` nodes on 127.0.0.1..n sharing `origin`, registered in etcd at `etcd`.
async fn nodes(n: usize, etcd: &str, origin: &TestOrigin) -> Vec<TestKura> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(start_node(i, &Members::Etcd(etcd), origin).await);
    }
    out
}

async fn start_node(i: usize, members: &Members<'_>, origin: &TestOrigin) -> TestKura {
    let ip = format!("127.0.0.{i}");
    let peering = free_addr(&ip).to_string();
    TestKura::start(&node_config(&ip, &peering, members, &origin.url())).await
}

async fn cluster_view(node: &TestKura) -> serde_json::Value {
    node.admin_json("/cluster").await
}

async fn wait_members(nodes: &[&TestKura], n: usize) {
    for node in nodes {
        assert!(
            eventually(SETTLE, || async {
                cluster_view(node).await["members"].as_array().map(Vec::len) == Some(n)
            })
            .await,
            "membership never reached {n}: {}",
            cluster_view(node).await
        );
    }
}

/// Downloads `path` from `node`, checking every byte; `pace` slows the reader down.
async fn download(
    node: std::net::SocketAddr,
    path: &str,
    size: u64,
    pace: Option<Duration>,
    progress: Arc<AtomicU64>,
) {
    let mut client = Client::connect(node).await;
    let resp = client.send_streaming(get_request("files.test", path)).await;
    assert_eq!(resp.status(), 200, "{path} from {node}");
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    let pattern = pattern_buffer(1, 1 << 20);
    let mut body = resp.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| panic!("{path} from {node} broke at {offset}: {e}"));
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for chunk in data.chunks(1 << 20) {
            let at = (offset % 251) as usize;
            assert!(
                chunk == &pattern[at..at + chunk.len()],
                "wrong bytes at {offset} from {node}"
            );
            offset += chunk.len() as u64;
        }
        progress.store(offset, SeqCst);
        if let Some(p) = pace {
            tokio::time::sleep(p).await;
        }
    }
    assert_eq!(offset, size, "{path} from {node}");
}

/// Every segment of an object of `size` was fetched from the origin exactly once, by range.
fn each_segment_once(st: &RangedState, size: u64) {
    let all = st.range_requests();
    assert!(
        all.iter().all(Option::is_some),
        "a whole-object request reached the origin"
    );
    let ranges: Vec<String> = all.into_iter().flatten().collect();
    let mut sorted = ranges.clone();
    sorted.sort();
    sorted.dedup();
    let twice: Vec<&String> = sorted
        .iter()
        .filter(|r| ranges.iter().filter(|x| x == r).count() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "fetched more than once: {twice:?} ({} requests)",
        ranges.len()
    );
    assert_eq!(
        ranges.len() as u64,
        size.div_ceil(2 * MIB),
        "every segment fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_serves_each_segment_once_for_the_whole_cluster() {
    let etcd = Etcd::start();
    let size = 100 * MIB;
    let (origin, st) = ranged("origin", size, "max-age=3600").await;
    let nodes = nodes(3, &etcd.url, &origin).await;
    let refs: Vec<&TestKura> = nodes.iter().collect();
    wait_members(&refs, 3).await;

    let tasks: Vec<_> = nodes
        .iter()
        .map(|n| tokio::spawn(download(n.addr, "/big.iso", size, None, Arc::default())))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for n in &nodes {
        eprintln!("{}", cluster_view(n).await);
    }
    each_segment_once(&st, size);
    // Nothing of the peer protocol reaches the origin.
    let last = origin.last().unwrap();
    assert!(
        last.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-kura-peer")),
        "{:?}",
        last.headers
    );
    for n in &nodes {
        let v = cluster_view(n).await;
        assert!(v["peer_answers"].as_u64().unwrap() > 0, "{v}");
        assert!(
            v["served"].as_u64().unwrap() > 0,
            "every node owns some segments: {v}"
        );
        assert_eq!(v["etcd_up"], 1);
        let m = n.metrics().await;
        assert!(m.contains("kura_cluster_members 3"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_costs_the_other_nodes_clients_nothing() {
    let size = 100 * MIB;
    let (origin, _st) = ranged("origin", size, "max-age=3600").await;
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let peers: Vec<String> = ips.iter().map(|ip| free_addr(ip).to_string()).collect();
    let mut nodes = Vec::new();
    for (ip, peering) in ips.iter().zip(&peers) {
        nodes.push(
            TestKura::start(&node_config(
                ip,
                peering,
                &Members::Static(&peers),
                &origin.url(),
            ))
            .await,
        );
    }
    let victim = nodes.pop().unwrap();
    let progress: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = nodes
        .iter()
        .zip(&progress)
        .map(|(n, p)| {
            tokio::spawn(download(
                n.addr,
                "/big.iso",
                size,
                Some(Duration::from_millis(3)),
                p.clone(),
            ))
        })
        .collect();
    assert!(
        eventually(SETTLE, || async {
            progress.iter().all(|p| p.load(SeqCst) >= 10 * MIB)
                && cluster_view(&victim).await["served"].as_u64() > Some(0)
        })
        .await,
        "downloads started, the victim serving its share: {}",
        cluster_view(&victim).await
    );
    let victim_served = cluster_view(&victim).await["served"].as_u64().unwrap();
    drop(victim);
    for t in tasks {
        t.await
            .expect("the download completes with the right bytes");
    }
    assert!(
        victim_served > 0,
        "the killed node was serving its share before it died"
    );
    let after: u64 = {
        let v = cluster_view(&nodes[0]).await;
        v["peer_errors"]["connect"].as_u64().unwrap()
            + v["peer_errors"]["body"].as_u64().unwrap()
            + v["peer_errors"]["timeout"].as_u64().unwrap()
    };
    let down = cluster_view(&nodes[0]).await["down"].clone();
    assert!(
        after > 0 || down.as_array().is_some_and(|d| !d.is_empty()),
        "the failure was noticed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share_and_an_etcd_outage_keeps_the_membership() {
    let mut etcd = Etcd::start();
    let url = etcd.url.clone();
    let size = 60 * MIB;
    let (origin, st) = ranged("origin", size, "max-age=3600").await;
    let first = start_node(1, &Members::Etcd(&url), &origin).await;
    let second = start_node(2, &Members::Etcd(&url), &origin).await;
    wait_members(&[&first, &second], 2).await;
    let third = start_node(3, &Members::Etcd(&url), &origin).await;
    wait_members(&[&first, &second, &third], 3).await;

    download(first.addr, "/a.iso", size, None, Arc::default()).await;
    each_segment_once(&st, size);
    let v = cluster_view(&third).await;
    assert!(
        v["served"].as_u64().unwrap() > 0,
        "the new node owns a share: {v}"
    );

    // etcd goes away: the membership stays, and so does the one-fetch-per-segment rule.
    etcd.kill();
    assert!(
        eventually(SETTLE, || async {
            cluster_view(&first).await["etcd_up"] == 0
        })
        .await
    );
    // A new path is a new object (the origin serves the same bytes on every path).
    let before = st.range_requests().len();
    for n in [&first, &second, &third] {
        assert_eq!(
            cluster_view(n).await["members"].as_array().unwrap().len(),
            3
        );
    }
    let tasks: Vec<_> = [&first, &second, &third]
        .iter()
        .map(|n| tokio::spawn(download(n.addr, "/b.iso", size, None, Arc::default())))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let new: Vec<Option<String>> = st.range_requests()[before..].to_vec();
    let mut distinct = new.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        new.len(),
        "with etcd down, still one fetch per segment"
    );
    assert_eq!(new.len() as u64, size.div_ceil(2 * MIB));
    let m = first.metrics().await;
    assert!(m.contains("kura_cluster_etcd_up 0"), "{m}");
}

#[tokio::test]
async fn peer_requests_need_the_secret() {
    let (origin, _st) = ranged("origin", 3 * MIB, "max-age=3600").await;
    let peering = free_addr("127.0.0.1").to_string();
    let node = TestKura::start(&node_config(
        "127.0.0.1",
        &peering,
        &Members::Static(std::slice::from_ref(&peering)),
        &origin.url(),
    ))
    .await;
    let addr = node.handle.peer_addr().unwrap();
    let client = kura_cluster::client::PeerClient::default();
    let routes = node.admin_json("/routes").await;
    let rule = routes["vhosts"][0]["rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("{rule}:u:http://files.test/x.iso");
    // What a member sends: the secret, its rule's identity, the client URL and its key.
    let ask = |secret: Option<&str>, rule: &str, url: Option<&str>, key: &str| {
        let mut b = Request::get(format!("http://{addr}/x.iso"))
            .header("x-kura-peer-rule", rule)
            .header("x-kura-peer-key", key)
            .header("range", "bytes=0-1023");
        if let Some(s) = secret {
            b = b.header("x-kura-peer-secret", s);
        }
        if let Some(u) = url {
            b = b.header("x-kura-peer-url", u);
        }
        b.body(Empty::<Bytes>::new()).unwrap()
    };
    let url = Some("http://files.test/x.iso");
    let t = Duration::from_secs(10);
    let status = |req| {
        let client = &client;
        async move { client.send(addr, req, t).await.unwrap().status() }
    };
    assert_eq!(status(ask(None, &rule, url, &key)).await, 403);
    let wrong = Some("wrong-secret-0123456789");
    assert_eq!(status(ask(wrong, &rule, url, &key)).await, 403);
    // The owner derives rule and key itself: without the URL, with another rule's identity
    // or with a key of the asker's choosing, it refuses (421), never fills.
    let s = Some(SECRET);
    assert_eq!(status(ask(s, &rule, None, &key)).await, 421);
    assert_eq!(status(ask(s, "0123456789abcdef", url, &key)).await, 421);
    let forged = format!("{rule}:u:http://other.test/secret");
    assert_eq!(status(ask(s, &rule, url, &forged)).await, 421);
    assert_eq!(status(ask(s, &rule, Some("http://a b/"), &key)).await, 421);
    let resp = client
        .send(addr, ask(s, &rule, url, &key), t)
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["x-kura-peer-owner"], peering.as_str());
    let collected = resp.into_body().collect().await.unwrap();
    let crc = collected.trailers().unwrap()["x-kura-crc32c"]
        .to_str()
        .unwrap()
        .to_string();
    let body = collected.to_bytes();
    assert_eq!(body.len(), 1024);
    assert_eq!(crc, crc32c::crc32c(&body).to_string());
    let v = cluster_view(&node).await;
    assert_eq!(v["refused"], 2, "{v}");
    assert_eq!(v["served"], 1, "{v}");
}

#[derive(Clone, Copy)]
enum Lie {
    /// The right length, the wrong bytes (and the checksum of the right ones).
    Corrupt,
    /// Half the bytes, then the end.
    Truncated,
}

/// A "member" that answers every peer request with a plausible head and a bad body.
async fn lying_peer(lie: Lie, total: u64) -> std::net::SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let (start, end) = req
                            .headers()
                            .get("range")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("bytes="))
                            .and_then(|v| v.split_once('-'))
                            .map(|(a, b)| {
                                (
                                    a.parse::<u64>().unwrap(),
                                    b.parse::<u64>().unwrap().min(total - 1),
                                )
                            })
                            .unwrap_or((0, total - 1));
                        let len = end - start + 1;
                        let right: Vec<u8> = (start..=end)
                            .map(|o| kura_testkit::origin::pattern_byte(1, o))
                            .collect();
                        let (data, crc) = match lie {
                            Lie::Corrupt => (vec![0xAA; len as usize], crc32c::crc32c(&right)),
                            Lie::Truncated => {
                                let half = right[..right.len() / 2].to_vec();
                                let c = crc32c::crc32c(&half);
                                (half, c)
                            }
                        };
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-kura-crc32c", crc.into());
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(data))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let resp = http::Response::builder()
                            .status(206)
                            .header("content-length", len)
                            .header("content-range", format!("bytes {start}-{end}/{total}"))
                            .header("etag", "\"v1\"")
                            .header("cache-control", "max-age=3600")
                            .body(StreamBody::new(futures_util::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(kura_testkit::TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_peer_answers_are_discarded_and_fetched_again() {
    let size = 40 * MIB;
    let (origin, st) = ranged("origin", size, "max-age=3600").await;
    let corrupt = lying_peer(Lie::Corrupt, size).await;
    let truncated = lying_peer(Lie::Truncated, size).await;
    let peering = free_addr("127.0.0.1").to_string();
    let peers = vec![peering.clone(), corrupt.to_string(), truncated.to_string()];
    let node = TestKura::start(&node_config(
        "127.0.0.1",
        &peering,
        &Members::Static(&peers),
        &origin.url(),
    ))
    .await;
    download(node.addr, "/c.iso", size, None, Arc::default()).await;
    let v = cluster_view(&node).await;
    // Both liars owned some of the 20 segments; every answer of theirs was refused.
    assert!(v["peer_errors"]["body"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["peer_answers"], 0, "{v}");
    each_segment_once(&st, size);
}
