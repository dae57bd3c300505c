//! The cluster as on separate machines (see `netns`): the origin, etcd, each kura node (the
//! real binary) and the client in network namespaces of their own, joined by shaped links.
//! Fault cases that show in seconds: a node joining takes its keys only, an etcd outage keeps
//! the membership, a node killed under load costs the other nodes' clients nothing while its
//! own clients go elsewhere, and an owner behind a link degraded to 10 Mbit/s is left after
//! `peer_timeout`. bench/cluster-netns.sh measures the same cases at length.
//! Needs root: without it each test says it was skipped (a failure with KURA_REQUIRE_NETNS=1).

mod netns;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use kura_testkit::origin::{RangedState, pattern_buffer, ranged_on};
use kura_testkit::{KuraProcess, TestOrigin, TokioIo, eventually};
use netns::{Host, Lab, lab_or_skip};

const MIB: u64 = 1024 * 1024;
const BIN: &str = env!("CARGO_BIN_EXE_kura");
const SECRET: &str = "test-secret-0123456789";
const SETTLE: Duration = Duration::from_secs(20);
/// Node links (Mbit/s) while healthy.
const NODE_MBIT: u32 = 400;

/// A kura node in its own namespace.
struct Node {
    host: Host,
    _process: KuraProcess,
    _dir: tempfile::TempDir,
}

fn node_toml(host: &Host, members: &str, origin: SocketAddr, peer_timeout: &str) -> String {
    let ip = host.ip;
    format!(
        r#"
[[listeners]]
address = "{ip}:8080"
[admin]
address = "{ip}:9090"
[cache]
memory = "64MiB"
[cluster]
peering_address = "{ip}:7000"
secret = "{SECRET}"
peer_timeout = "{peer_timeout}"
peer_down_ttl = "60s"
{members}
[pools.origin]
backends = ["http://{origin}"]
[[vhosts]]
hosts = ["*"]
pool = "origin"
action = "cache"
"#
    )
}

fn start_node(host: Host, members: &str, origin: SocketAddr, peer_timeout: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kura.toml");
    std::fs::write(&path, node_toml(&host, members, origin, peer_timeout)).unwrap();
    let args = ["netns", "exec", &host.ns, BIN, "serve", "--config"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(path.to_str().unwrap());
    let process = KuraProcess::start(Path::new("ip"), &args, 1);
    Node {
        host,
        _process: process,
        _dir: dir,
    }
}

/// An etcd in its own namespace, killed when dropped.
struct Etcd {
    child: Option<Child>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(host: &Host) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{}", host.addr(2379));
        let child = host
            .command("etcd")
            .args(["--name", "t", "--data-dir", dir.path().to_str().unwrap()])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "t=http://127.0.0.1:2380"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian etcd-server; scripts/test.sh installs it)");
        Etcd {
            child: Some(child),
            url,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `path` from `to` for `Host: files.test` (the admin listener's own address for
/// `/cluster`), sent by `from`; the response with its body still streaming.
async fn get(
    from: &Host,
    to: SocketAddr,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let host = if to.port() == 9090 {
        to.to_string()
    } else {
        "files.test".to_string()
    };
    let stream = from.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// `GET /cluster` of a node's admin listener, from `from`.
async fn cluster_view(from: &Host, node: &Node) -> serde_json::Value {
    let Ok(resp) = get(from, node.host.addr(9090), "/cluster").await else {
        return serde_json::Value::Null;
    };
    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
    body.ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

async fn wait_members(from: &Host, nodes: &[&Node], n: usize) {
    for node in nodes {
        assert!(
            eventually(SETTLE, || async {
                cluster_view(from, node).await["members"]
                    .as_array()
                    .map(Vec::len)
                    == Some(n)
            })
            .await,
            "{} never saw {n} members: {}",
            node.host.ns,
            cluster_view(from, node).await
        );
    }
}

/// Downloads `path` from `to` by `from`, checking every byte; `pace` slows the reader down.
async fn download(
    from: &Host,
    to: SocketAddr,
    path: &str,
    size: u64,
    pace: Option<Duration>,
    progress: Arc<AtomicU64>,
) -> Result<(), String> {
    let resp = get(from, to, path).await?;
    if resp.status() != 200 {
        return Err(format!("{path} from {to}: {}", resp.status()));
    }
    let pattern = pattern_buffer(1, 1 << 20);
    let mut body = resp.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{path} from {to} broke at {offset}: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for chunk in data.chunks(1 << 20) {
            let at = (offset % 251) as usize;
            if chunk != &pattern[at..at + chunk.len()] {
                return Err(format!("wrong bytes at {offset} from {to}"));
            }
            offset += chunk.len() as u64;
        }
        progress.store(offset, SeqCst);
        if let Some(p) = pace {
            tokio::time::sleep(p).await;
        }
    }
    if offset != size {
        return Err(format!("{path} from {to}: {offset} of {size} bytes"));
    }
    Ok(())
}

/// The origin in its own namespace, serving one object of `size` on every path.
fn origin(lab: &Lab, size: u64) -> (Host, TestOrigin, Arc<RangedState>) {
    let host = lab.host("origin", 2, 200);
    let (origin, st) = ranged_on(host.listen(80), "origin", size, "max-age=3600");
    (host, origin, st)
}

fn range_fetches(st: &RangedState) -> Vec<String> {
    st.range_requests().into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_only_its_keys_etcd_loss_keeps_members_a_killed_node_costs_others_nothing()
 {
    let Some(lab) = lab_or_skip("join") else {
        return;
    };
    let size = 40 * MIB;
    let (_oh, origin, st) = origin(&lab, size);
    let client = lab.host("client", 50, 1000);
    let mut etcd = Etcd::start(&lab.host("etcd", 3, 1000));
    // A lease lost to a stalled node would move keys and refetch segments, which the test
    // counts; nothing here waits for a lease to run out.
    let members = format!("etcd = [\"{}\"]\nlease_ttl = \"10s\"", etcd.url);
    let o = origin.addr;
    let node = |i: u8| lab.host(&format!("node{i}"), 10 + i, NODE_MBIT);
    let n1 = start_node(node(1), &members, o, "5s");
    let n2 = start_node(node(2), &members, o, "5s");
    wait_members(&client, &[&n1, &n2], 2).await;

    // Two nodes: every segment of /a.iso from the origin once.
    download(
        &client,
        n1.host.addr(8080),
        "/a.iso",
        size,
        None,
        Arc::default(),
    )
    .await
    .unwrap();
    let first = range_fetches(&st);
    assert_eq!(first.len() as u64, size.div_ceil(2 * MIB), "{first:?}");

    // A third node joins: it owns a share, and the only segments fetched again are the ones
    // that moved to it (fetched by it, as their new owner).
    let n3 = start_node(node(3), &members, o, "5s");
    wait_members(&client, &[&n1, &n2, &n3], 3).await;
    download(
        &client,
        n2.host.addr(8080),
        "/a.iso",
        size,
        None,
        Arc::default(),
    )
    .await
    .unwrap();
    let moved = range_fetches(&st).len() - first.len();
    let v3 = cluster_view(&client, &n3).await;
    assert!(moved > 0, "the new node took no share: {v3}");
    assert!(
        moved < first.len(),
        "{moved} of {} segments moved to one of three nodes",
        first.len()
    );
    assert_eq!(
        v3["origin_fetches"].as_u64(),
        Some(moved as u64),
        "every refetch was the new owner's: {v3}"
    );

    // etcd goes away: the membership stays.
    etcd.kill();
    for n in [&n1, &n2, &n3] {
        assert!(
            eventually(SETTLE, || async {
                cluster_view(&client, n).await["etcd_up"] == 0
            })
            .await
        );
        assert_eq!(
            cluster_view(&client, n).await["members"]
                .as_array()
                .map(Vec::len),
            Some(3),
            "membership kept without etcd"
        );
    }

    // Node 3 is killed while nodes 1 and 2 stream a new object to their clients.
    let progress: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::default()).collect();
    let client = Arc::new(client);
    let tasks: Vec<_> = [n1.host.addr(8080), n2.host.addr(8080)]
        .into_iter()
        .zip(&progress)
        .map(|(to, p)| {
            let (c, p) = (client.clone(), p.clone());
            tokio::spawn(async move {
                download(&c, to, "/b.iso", size, Some(Duration::from_millis(2)), p).await
            })
        })
        .collect();
    assert!(
        eventually(SETTLE, || async {
            progress.iter().all(|p| p.load(SeqCst) >= 6 * MIB)
        })
        .await,
        "downloads started"
    );
    let served = cluster_view(&client, &n3).await["served"].as_u64().unwrap();
    let n3_addr = n3.host.addr(8080);
    drop(n3);
    for t in tasks {
        t.await
            .unwrap()
            .expect("clients of the other nodes see no error");
    }
    assert!(served > 0, "node 3 served its share before it died");

    // Node 3's own client: its node refuses at once, the next node answers in full.
    let began = Instant::now();
    let refused = get(&client, n3_addr, "/c.iso").await;
    assert!(refused.is_err(), "a dead node cannot answer");
    download(
        &client,
        n1.host.addr(8080),
        "/c.iso",
        size,
        None,
        Arc::default(),
    )
    .await
    .expect("the next node serves node 3's client");
    eprintln!(
        "node 3's client: refused ({}), served by node 1, {:?} in all",
        refused.unwrap_err(),
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_behind_a_degraded_link_is_left_after_peer_timeout() {
    let Some(lab) = lab_or_skip("slow") else {
        return;
    };
    let size = 40 * MIB;
    let (_oh, origin, _st) = origin(&lab, size);
    let client = lab.host("client", 50, 1000);
    let hosts: Vec<Host> = (1..=3u8)
        .map(|i| lab.host(&format!("node{i}"), 10 + i, NODE_MBIT))
        .collect();
    let peers: Vec<String> = hosts
        .iter()
        .map(|h| format!("\"{}\"", h.addr(7000)))
        .collect();
    let members = format!("peers = [{}]", peers.join(", "));
    let nodes: Vec<Node> = hosts
        .into_iter()
        .map(|h| start_node(h, &members, origin.addr, "1s"))
        .collect();
    // Node 2's client fills the cluster: node 3 holds its share in memory, so later it
    // answers at once and then sends as fast as its link lets it.
    download(
        &client,
        nodes[1].host.addr(8080),
        "/d.iso",
        size,
        None,
        Arc::default(),
    )
    .await
    .unwrap();
    // Node 3's link drops to 10 Mbit/s: a 2 MiB segment needs 1.7 s to cross it, still
    // arriving chunk by chunk.
    nodes[2].host.shape(10);
    let began = Instant::now();
    download(
        &client,
        nodes[0].host.addr(8080),
        "/d.iso",
        size,
        None,
        Arc::default(),
    )
    .await
    .expect("the download completes with the right bytes");
    let took = began.elapsed();
    let v = cluster_view(&client, &nodes[0]).await;
    eprintln!("download through a slow owner: {took:?}; node 1: {v}");
    assert!(
        v["peer_errors"]["timeout"].as_u64().unwrap_or(0) >= 1,
        "node 1 stopped waiting on the slow owner: {v}"
    );
    let slow = nodes[2].host.addr(7000).to_string();
    assert!(
        v["down"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m.as_str() == Some(slow.as_str()))),
        "the slow owner is left out of ownership: {v}"
    );
    // Its ~7 segments at 10 Mbit/s took 10.7 s when it was waited on; leaving it after the
    // first timeout keeps the download well below that (a bound loose enough for a busy CI).
    assert!(took < Duration::from_secs(20), "took {took:?}: {v}");
}
