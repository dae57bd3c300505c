//! Routes from a real redis-server in Hipache's schema: frontends added, changed and removed
//! while a load runs (seen through notifications, the periodic resync an hour away; no failed
//! request), wildcard precedence, dead marks shared between two kura instances and expiring, a
//! Redis outage that changes nothing for clients, bad keys skipped, and the `kura routes` store
//! operations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use kura_proxy::redis_routes::store::Store;
use kura_testkit::redis::Redis;
use kura_testkit::{Client, TestKura, TestOrigin, closed_addr, eventually};

/// How long a test waits for what must happen: far more than it takes on a loaded machine,
/// so only a failure runs into it.
const WAIT: Duration = Duration::from_secs(10);

/// For tests where only a notification may bring a change within [`WAIT`].
const NO_RESYNC: &str = "1h";

fn config(redis: &str, extra: &str) -> String {
    config_with(redis, "1s", "2s", extra)
}

fn config_with(redis: &str, resync: &str, dead_ttl: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[redis]
url = "{redis}"
resync_interval = "{resync}"
dead_backend_ttl = "{dead_ttl}"
{extra}
"#
    )
}

/// A counter or gauge of the Prometheus text, 0 when absent.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

async fn redis_conn(r: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(r.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn cmd<T: redis::FromRedisValue>(
    c: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(c).await.unwrap()
}

/// Clients hammering one host on keep-alive connections, counting what they get.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, host: &'static str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut c = Client::connect(addr).await;
                    while !stop.load(SeqCst) {
                        match c.get(host, "/").await {
                            Ok(r) if r.status == 200 => ok.fetch_add(1, SeqCst),
                            _ => {
                                c = Client::connect(addr).await;
                                failed.fetch_add(1, SeqCst)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Waits until `n` more requests were answered (a loaded machine serves few a second).
    async fn serves(&self, n: u64) {
        let base = self.ok.load(SeqCst);
        assert!(
            eventually(Duration::from_secs(60), || async {
                self.ok.load(SeqCst) >= base + n
            })
            .await,
            "the load stalled at {} answers",
            self.ok.load(SeqCst)
        );
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.ok.load(SeqCst), self.failed.load(SeqCst))
    }
}

/// Polls until `host` answers `want` (a body, or a status as text) and returns how long it took.
async fn time_until(kura: &TestKura, host: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let seen = eventually(within, || async {
        let r = kura.get(host, "/").await;
        r.text() == want || r.status.to_string() == want
    })
    .await;
    assert!(seen, "{host} never answered {want:?}");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontends_change_live_under_load_without_a_failed_request() {
    let redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    let b = TestOrigin::fixed("b", 200, "b").await;
    let mut r = redis_conn(&redis).await;
    let _: i64 = cmd(&mut r, &["RPUSH", "frontend:app.test", "app", &a.url()]).await;
    // No resync while the test looks: every change below comes through a notification.
    let kura = TestKura::start(&config_with(&redis.url, NO_RESYNC, "2s", "")).await;
    time_until(&kura, "app.test", "a", WAIT).await;
    let load = Load::start(kura.addr, "app.test", 4);
    load.serves(50).await;

    // Add.
    let _: i64 = cmd(&mut r, &["RPUSH", "frontend:new.test", "new", &b.url()]).await;
    let took = time_until(&kura, "new.test", "b", WAIT).await;
    eprintln!("add seen after {took:?}");
    // Change (Hipache's way: edit the list in place).
    let _: () = cmd(&mut r, &["LSET", "frontend:app.test", "1", &b.url()]).await;
    let took = time_until(&kura, "app.test", "b", WAIT).await;
    eprintln!("change seen after {took:?}");
    // Remove.
    let _: i64 = cmd(&mut r, &["DEL", "frontend:new.test"]).await;
    let took = time_until(&kura, "new.test", "400", WAIT).await;
    eprintln!("removal seen after {took:?}");
    load.serves(60).await;

    let (ok, failed) = load.finish().await;
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert_eq!(failed, 0, "no request failed while routes changed");
    assert!(kura.metrics().await.contains("kura_redis_frontends 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_specific_host_wins_and_the_file_beats_redis() {
    let redis = Redis::start();
    let names = ["exact", "wild", "deep", "any", "file"];
    let mut origins = Vec::new();
    for n in names {
        origins.push(TestOrigin::fixed(n, 200, n).await);
    }
    let mut r = redis_conn(&redis).await;
    for (key, o) in [
        ("frontend:a.example.test", &origins[0]),
        ("frontend:*.example.test", &origins[1]),
        ("frontend:*.b.example.test", &origins[2]),
        ("frontend:*", &origins[3]),
        ("frontend:file.example.test", &origins[1]),
    ] {
        let _: i64 = cmd(&mut r, &["RPUSH", key, "id", &o.url()]).await;
    }
    let file = format!(
        r#"[pools.file]
backends = ["{}"]
[[vhosts]]
hosts = ["file.example.test"]
pool = "file""#,
        origins[4].url()
    );
    let kura = TestKura::start(&config(&redis.url, &file)).await;
    time_until(&kura, "a.example.test", "exact", WAIT).await;
    for (host, want) in [
        ("a.example.test", "exact"),
        ("x.example.test", "wild"),
        ("b.example.test", "wild"),
        ("x.b.example.test", "deep"),
        ("y.x.b.example.test", "deep"),
        ("other.org", "any"),
        ("file.example.test", "file"),
    ] {
        assert_eq!(kura.get(host, "/").await.text(), want, "{host}");
    }
}

fn backend_alive(backends: &serde_json::Value, pool: &str, index: usize) -> bool {
    backends["pools"][pool]["backends"][index]["alive"]
        .as_bool()
        .unwrap_or_else(|| panic!("no backend {index} in pool {pool}: {backends}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mark_from_one_instance_is_honoured_by_another_until_it_expires() {
    let redis = Redis::start();
    let alive = TestOrigin::fixed("alive", 200, "alive").await;
    let dead = format!("http://{}", closed_addr());
    let mut r = redis_conn(&redis).await;
    let _: i64 = cmd(
        &mut r,
        &["RPUSH", "frontend:dead.test", "app", &dead, &alive.url()],
    )
    .await;
    // A dead TTL that outlasts the checks below on a loaded machine; its end is waited for.
    let toml = config_with(&redis.url, "1s", "8s", "");
    let first = TestKura::start(&toml).await;
    let second = TestKura::start(&toml).await;
    // Both follow the frontend; no request went to either yet (one could meet the dead
    // backend and mark it).
    for k in [&first, &second] {
        assert!(
            eventually(WAIT, || async {
                k.admin_json("/backends").await["pools"]["redis:dead.test"]["backends"]
                    .as_array()
                    .is_some_and(|b| b.len() == 2)
            })
            .await,
            "{}",
            k.admin_json("/backends").await
        );
    }
    assert!(backend_alive(
        &second.admin_json("/backends").await,
        "redis:dead.test",
        0
    ));
    let connect_errors = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.contains(&dead) && l.contains("kind=\"connect\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let errors_before = connect_errors(&second.metrics().await);

    // The first instance meets the dead backend (a retry hides it from its client) and
    // writes the mark.
    for _ in 0..4 {
        assert_eq!(first.get("dead.test", "/").await.text(), "alive");
    }
    // The mark is written by the instance's Redis task, a moment after the answer.
    let written = eventually(WAIT, || {
        let mut r = r.clone();
        async move {
            !cmd::<Vec<String>>(&mut r, &["SMEMBERS", "dead:dead.test"])
                .await
                .is_empty()
        }
    })
    .await;
    assert!(written, "no dead mark written");
    let members: Vec<String> = cmd(&mut r, &["SMEMBERS", "dead:dead.test"]).await;
    assert_eq!(members, vec!["0".to_string()]);
    let pttl: i64 = cmd(&mut r, &["PTTL", "dead:dead.test"]).await;
    assert!(
        pttl > 0 && pttl <= 8000,
        "the mark expires with the dead TTL ({pttl} ms)"
    );

    // The second instance takes the backend out without trying it.
    assert!(
        eventually(WAIT, || async {
            !backend_alive(&second.admin_json("/backends").await, "redis:dead.test", 0)
        })
        .await,
        "the second instance honours the mark"
    );
    for _ in 0..6 {
        assert_eq!(second.get("dead.test", "/").await.text(), "alive");
    }
    let metrics = second.metrics().await;
    assert_eq!(
        connect_errors(&metrics),
        errors_before,
        "the second instance never connected to the dead backend:\n{metrics}"
    );

    // The mark expires in Redis: the backend is back in rotation on the second instance.
    assert!(
        eventually(WAIT + Duration::from_secs(8), || async {
            backend_alive(&second.admin_json("/backends").await, "redis:dead.test", 0)
        })
        .await,
        "expiry brings the backend back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_changes_nothing_for_clients_and_changes_flow_after_it() {
    let mut redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    let b = TestOrigin::fixed("b", 200, "b").await;
    {
        let mut r = redis_conn(&redis).await;
        let _: i64 = cmd(&mut r, &["RPUSH", "frontend:app.test", "app", &a.url()]).await;
        // Written to the dump the restarted server reads: kura, whenever it reconnects, finds
        // the route it serves (an empty server would rightly take it away from the load).
        let _: () = cmd(&mut r, &["SAVE"]).await;
    }
    // No resync while the test looks: changes after the outage come through notifications.
    let kura = TestKura::start(&config_with(&redis.url, NO_RESYNC, "2s", "")).await;
    time_until(&kura, "app.test", "a", WAIT).await;
    let load = Load::start(kura.addr, "app.test", 2);

    redis.kill();
    assert!(
        eventually(WAIT, || async {
            kura.metrics().await.contains("kura_redis_up 0\n")
        })
        .await,
        "the outage shows in the metrics"
    );
    // Some seconds without Redis, kura retrying meanwhile, and the load served all along.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    load.serves(30).await;
    assert_eq!(kura.get("app.test", "/").await.text(), "a");

    redis.restart();
    let mut r = redis_conn(&redis).await;
    // The route changes after the outage (Hipache's way: the list edited in place).
    let _: () = cmd(&mut r, &["LSET", "frontend:app.test", "1", &b.url()]).await;
    // Reconnecting takes up to the 5 s backoff.
    time_until(&kura, "app.test", "b", WAIT + Duration::from_secs(5)).await;
    assert!(
        eventually(WAIT, || async {
            kura.metrics().await.contains("kura_redis_up 1\n")
        })
        .await,
        "back in the metrics"
    );
    let _: i64 = cmd(&mut r, &["RPUSH", "frontend:later.test", "later", &a.url()]).await;
    let took = time_until(&kura, "later.test", "a", WAIT).await;
    eprintln!("changes flow again: seen after {took:?}");
    load.serves(30).await;

    let (ok, failed) = load.finish().await;
    assert!(ok > 50, "the load ran ({ok})");
    assert_eq!(failed, 0, "no request failed during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_items_are_skipped_and_the_rest_works() {
    let redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    let mut r = redis_conn(&redis).await;
    let _: () = cmd(&mut r, &["SET", "frontend:string.test", "http://x"]).await;
    let _: i64 = cmd(
        &mut r,
        &[
            "RPUSH",
            "frontend:mixed.test",
            "id",
            "not a url",
            "ftp://x",
            &a.url(),
        ],
    )
    .await;
    let _: i64 = cmd(&mut r, &["RPUSH", "frontend:good.test", "id", &a.url()]).await;
    let _: i64 = cmd(&mut r, &["RPUSH", "dead:good.test", "0"]).await;
    let kura = TestKura::start(&config(&redis.url, "")).await;
    time_until(&kura, "good.test", "a", WAIT).await;
    let mixed = kura.get("mixed.test", "/").await;
    assert_eq!(mixed.text(), "a", "{mixed:?}");
    assert_eq!(
        kura.get("string.test", "/").await.status,
        400,
        "an unknown host"
    );
    let m = kura.metrics().await;
    let bad: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("kura_redis_bad_entries_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        bad >= 4,
        "a string key, a list as a dead set and two bad items: {bad}\n{m}"
    );
    // A resync later, nothing is warned about again and everything still serves.
    let resyncs = metric(&m, "kura_redis_resyncs_total");
    assert!(
        eventually(WAIT, || async {
            metric(&kura.metrics().await, "kura_redis_resyncs_total") > resyncs
        })
        .await,
        "no resync after {resyncs}"
    );
    let again = metric(&kura.metrics().await, "kura_redis_bad_entries_total");
    assert_eq!(again, bad);
    assert_eq!(kura.get("good.test", "/").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_adds_removes_lists_and_loads_a_file_config() {
    let redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    // No resync while the test looks: what the store writes is seen through notifications.
    let kura = TestKura::start(&config_with(&redis.url, NO_RESYNC, "2s", "")).await;
    let mut store = Store::connect(&redis.url).await.unwrap();

    let added = store
        .add("Shop.Test", &[a.url(), a.url()], Some("shop"))
        .await
        .unwrap();
    assert_eq!(added, vec![a.url()], "a backend is added once");
    let took = time_until(&kura, "shop.test", "a", WAIT).await;
    eprintln!("added frontend seen after {took:?}");
    assert!(store.add("bad host", &[a.url()], None).await.is_err());
    assert!(
        store
            .add("x.test", &["nope".to_string()], None)
            .await
            .unwrap_err()
            .to_string()
            .contains("nope")
    );
    let list = store.list(None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].host, "shop.test");
    assert_eq!(list[0].id, "shop");
    assert_eq!(list[0].backends, vec![a.url()]);

    assert!(store.remove("shop.test", Some(&a.url())).await.unwrap());
    assert_eq!(
        store.list(Some("shop.test")).await.unwrap()[0]
            .backends
            .len(),
        0
    );
    assert!(store.remove("shop.test", None).await.unwrap());
    assert!(!store.remove("shop.test", None).await.unwrap());
    time_until(&kura, "shop.test", "400", WAIT).await;

    let file = kura_config::Config::from_toml(
        &format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"
[pools.web]
backends = ["{}"]
[[vhosts]]
name = "site"
hosts = ["site.test", "*.site.test"]
pool = "web"
[[vhosts]]
name = "api"
hosts = ["api.test"]
[[vhosts.rules]]
path = "^/v1/"
pool = "web"
rewrite = "/"
"#,
            a.url()
        ),
        std::path::Path::new("."),
    )
    .unwrap();
    let notes = store.load(&file).await.unwrap();
    assert!(
        notes.iter().any(|n| n.contains("\"api\" skipped")),
        "{notes:?}"
    );
    let hosts: Vec<String> = store
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.host)
        .collect();
    assert_eq!(hosts, vec!["*.site.test", "site.test"]);
    time_until(&kura, "www.site.test", "a", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontends_naming_the_same_backend_share_its_connections() {
    let redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    let mut r = redis_conn(&redis).await;
    for i in 0..50 {
        let key = format!("frontend:site{i}.test");
        let _: i64 = cmd(&mut r, &["RPUSH", &key, "id", &a.url()]).await;
    }
    let kura = TestKura::start(&config(&redis.url, "")).await;
    time_until(&kura, "site49.test", "a", WAIT).await;
    let before = a.connections();
    let mut c = Client::connect(kura.addr).await;
    for i in 0..50 {
        let r = c.get(&format!("site{i}.test"), "/").await.unwrap();
        assert_eq!(r.text(), "a");
    }
    assert!(
        a.connections() - before <= 1,
        "50 hosts, one backend: {} new origin connections",
        a.connections() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_writer_cannot_aim_at_kura_itself_and_gone_backends_leave_no_series() {
    let redis = Redis::start();
    let a = TestOrigin::fixed("a", 200, "a").await;
    let mut r = redis_conn(&redis).await;
    let kura = TestKura::start(&config(&redis.url, "")).await;
    let admin = kura.admin.unwrap();
    // Kura's own admin listener (by address, by localhost) and its client listener.
    for (key, url) in [
        ("frontend:admin.test", format!("http://{admin}")),
        (
            "frontend:local.test",
            format!("http://localhost:{}", admin.port()),
        ),
        ("frontend:loop.test", format!("http://{}", kura.addr)),
        // Other spellings of loopback, caught when the connection is made.
        (
            "frontend:short.test",
            format!("http://127.1:{}", admin.port()),
        ),
        (
            "frontend:decimal.test",
            format!("http://2130706433:{}", admin.port()),
        ),
    ] {
        let _: i64 = cmd(&mut r, &["RPUSH", key, "id", &url]).await;
    }
    let _: i64 = cmd(&mut r, &["RPUSH", "frontend:app.test", "app", &a.url()]).await;
    time_until(&kura, "app.test", "a", WAIT).await;
    for host in [
        "admin.test",
        "local.test",
        "loop.test",
        "short.test",
        "decimal.test",
    ] {
        let resp = kura.get(host, "/metrics").await;
        assert_eq!(resp.status, 502, "{host}: {}", resp.text());
        assert!(
            !resp.text().contains("kura_"),
            "{host} reached the admin API"
        );
    }
    // A backend that leaves the routes takes its metric series along, and so does the vhost
    // of a frontend that leaves (a writer's churn cannot grow the series without bound); the
    // vhost "id", still carried by other frontends, keeps its series.
    let series = format!("backend=\"{}\"", a.url());
    let vhost = "kura_requests_total{status=\"200\",vhost=\"app\"}";
    let shared = "vhost=\"id\"";
    let m = kura.metrics().await;
    assert!(
        m.contains(&series) && m.contains(vhost) && m.contains(shared),
        "{m}"
    );
    let _: i64 = cmd(&mut r, &["DEL", "frontend:app.test"]).await;
    assert!(
        eventually(WAIT, || async {
            let m = kura.metrics().await;
            !m.contains(&series) && !m.contains("vhost=\"app\"")
        })
        .await,
        "the series of a removed backend or vhost stayed"
    );
    assert!(kura.metrics().await.contains(shared));
}
