//! Moving from Casserole is a config change: the real binary started with Casserole's command
//! line as it is, or with Casserole's environment alone, proxies and caches; quick mode's
//! `KURA_*` variables fill in what the command line leaves open and never break `--config`;
//! quick mode's `min_ttl` is Casserole's 60 s; `localhost:PORT` listens; Casserole's
//! `http://host:port` peering address is accepted.
//!
//! These tests start the binary themselves (not with `KuraProcess`) to choose its environment
//! and working directory.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kura_testkit::{Reply, TestOrigin, get};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

/// Every environment variable quick mode reads, removed from the child's environment unless a
/// test sets it, so the developer's own environment cannot change a result.
const QUICK_ENV: &[&str] = &[
    "KURA_LISTEN",
    "KURA_UPSTREAM",
    "KURA_REDIS",
    "KURA_ADMIN",
    "KURA_ACCESS_LOG",
    "KURA_NO_CACHE",
    "KURA_CACHE_DIR",
    "KURA_MAX_MEMORY",
    "KURA_MAX_DISK",
    "KURA_CLEANED_DISK",
    "KURA_MIN_TTL",
    "KURA_PEERING_ADDRESS",
    "KURA_ETCD",
    "KURA_PEER",
    "KURA_CLUSTER_SECRET",
    "UPSTREAM_SERVER",
    "ETCD",
    "MAX_MEMORY",
    "MAX_DISK",
];

fn command(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "info");
    for name in QUICK_ENV {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The binary run to its end (for commands that must fail).
fn run(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    command(args, env, cwd).output().expect("kura runs")
}

/// A running kura, killed when dropped.
struct Kura {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Kura {
    /// Starts the binary and waits for its first listener.
    fn start(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Kura {
        let mut child = command(args, env, cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kura starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("kura listening"))
                .filter_map(|l| l.split("address=").nth(1))
                .find_map(|a| a.split_whitespace().next()?.parse().ok());
            if let Some(addr) = addr {
                return Kura { child, log, addr };
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "kura exited with {status}; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "kura did not start; log:\n{}",
                log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Kura {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_status(r: &Reply) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

/// Two GETs of `path`: the first must reach the origin, the second must be a cache hit that
/// does not.
async fn assert_cached(kura: &Kura, origin: &TestOrigin, path: &str) {
    let before = origin.requests();
    let first = get(kura.addr, "mirror.test", path).await;
    assert_eq!(first.status, 200, "{}", kura.log_text());
    assert!(first.text().contains(path.split('?').next().unwrap()));
    let second = get(kura.addr, "mirror.test", path).await;
    assert_eq!(second.status, 200);
    assert!(
        cache_status(&second).contains("hit"),
        "second answer not from the cache: {:?}",
        cache_status(&second)
    );
    assert_eq!(second.text(), first.text(), "the same stored answer");
    assert_eq!(origin.requests() - before, 1, "the origin was asked once");
}

/// A port free now (a peer listener needs a concrete port).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_casserole_command_line_proxies_and_caches() {
    let origin = TestOrigin::reflect("origin").await;
    let mirror = origin.url();
    let cwd = tempfile::tempdir().unwrap();
    // As Casserole's README lists its flags (`server`, `--flag=value` and `--flag value`,
    // sizes in Casserole's units), with no --disk-cache-dir: Casserole's ./data.
    let kura = Kura::start(
        &[
            "server",
            "--address=127.0.0.1:0",
            &format!("--mirror-url={mirror}"),
            "--max-memory-usage=100M",
            "--max-disk-usage",
            "1G",
            "--cleaned-disk-usage=800M",
            "--disk-cache-enabled",
        ],
        &[],
        cwd.path(),
    );
    assert_cached(&kura, &origin, "/dists/stable/Release?cc=max-age%3D3600").await;
    // The disk tier is Casserole's default directory, relative to where kura runs.
    assert!(
        cwd.path().join("data").is_dir(),
        "no ./data disk tier; log:\n{}",
        kura.log_text()
    );
    assert!(
        kura.log_text().contains("Casserole's defaults"),
        "{}",
        kura.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casserole_environment_alone_starts_a_caching_mirror() {
    let origin = TestOrigin::reflect("origin").await;
    let mirror = origin.url();
    let cwd = tempfile::tempdir().unwrap();
    // Casserole's docker-compose variables; only the listen address is kura's (port 0).
    let kura = Kura::start(
        &["serve"],
        &[
            ("UPSTREAM_SERVER", &mirror),
            ("ETCD", "http://127.0.0.1:1"),
            ("MAX_MEMORY", "100m"),
            ("MAX_DISK", "100G"),
            ("KURA_LISTEN", "127.0.0.1:0"),
        ],
        cwd.path(),
    );
    assert_cached(&kura, &origin, "/pool/a.deb?cc=max-age%3D3600").await;
    assert!(cwd.path().join("data").is_dir(), "{}", kura.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_environment_fills_quick_mode_and_flags_win() {
    let right = TestOrigin::reflect("right").await;
    let wrong = TestOrigin::fixed("wrong", 200, "wrong").await;
    let cwd = tempfile::tempdir().unwrap();
    let disk = cwd.path().join("cache");
    let kura = Kura::start(
        &["serve", "--upstream", &right.url()],
        &[
            ("KURA_LISTEN", "127.0.0.1:0"),
            ("KURA_UPSTREAM", &wrong.url()),
            ("UPSTREAM_SERVER", &wrong.url()),
            ("KURA_CACHE_DIR", disk.to_str().unwrap()),
            ("KURA_MAX_MEMORY", "32MiB"),
            ("KURA_MAX_DISK", "64MiB"),
        ],
        cwd.path(),
    );
    assert_cached(&kura, &right, "/a?cc=max-age%3D3600").await;
    assert_eq!(
        wrong.requests(),
        0,
        "a flag wins over KURA_UPSTREAM and UPSTREAM_SERVER"
    );
    assert!(disk.is_dir(), "KURA_CACHE_DIR made the disk tier");
    assert!(!cwd.path().join("data").exists(), "no Casserole defaults");
    drop(kura);

    // KURA_NO_CACHE alone: a plain proxy.
    let kura = Kura::start(
        &["serve"],
        &[
            ("KURA_LISTEN", "127.0.0.1:0"),
            ("KURA_UPSTREAM", &right.url()),
            ("KURA_NO_CACHE", "true"),
        ],
        cwd.path(),
    );
    let before = right.requests();
    for _ in 0..2 {
        let r = get(kura.addr, "a.test", "/b?cc=max-age%3D3600").await;
        assert_eq!(r.status, 200);
        assert!(!cache_status(&r).contains("hit"));
    }
    assert_eq!(right.requests() - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_ignores_quick_mode_environment() {
    let origin = TestOrigin::fixed("file", 200, "from the file").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kura.toml");
    std::fs::write(
        &path,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[pools.app]\nbackends = [\"{}\"]\n[[vhosts]]\nhosts = [\"*\"]\npool = \"app\"\n",
            origin.url()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    // Values that would conflict with --config, with each other, or fail as quick mode
    // (KURA_MAX_DISK without a disk tier, KURA_ETCD without a peering address, a bad size).
    let env = [
        ("KURA_LISTEN", "127.0.0.1:1"),
        ("KURA_UPSTREAM", "http://127.0.0.1:1"),
        ("KURA_REDIS", "redis://127.0.0.1:1/"),
        ("KURA_NO_CACHE", "1"),
        ("KURA_MAX_MEMORY", "lots"),
        ("KURA_MAX_DISK", "1G"),
        ("KURA_MIN_TTL", "soon"),
        ("KURA_ETCD", "http://127.0.0.1:1"),
        ("KURA_PEER", "127.0.0.1:1"),
        ("KURA_PEERING_ADDRESS", "https://x"),
        ("KURA_CLUSTER_SECRET", "short"),
        ("UPSTREAM_SERVER", "http://127.0.0.1:1"),
        ("ETCD", "http://127.0.0.1:1"),
        ("MAX_MEMORY", "lots"),
        ("MAX_DISK", "lots"),
    ];
    let kura = Kura::start(&["serve", "--config", config], &env, dir.path());
    assert_eq!(get(kura.addr, "a.test", "/").await.text(), "from the file");
    drop(kura);

    // A quick-mode flag with --config is still refused, naming it.
    let out = run(
        &[
            "serve",
            "--config",
            config,
            "--upstream",
            "http://127.0.0.1:1",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--config") && err.contains("--upstream"),
        "{err}"
    );
}

/// Casserole never caches an object that expires in under 60 s, and neither does quick mode
/// unless `--min-ttl` says otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_min_ttl_defaults_to_60_seconds() {
    let origin = TestOrigin::reflect("origin").await;
    let cwd = tempfile::tempdir().unwrap();
    let kura = Kura::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin.url(),
        ],
        &[],
        cwd.path(),
    );
    let before = origin.requests();
    for _ in 0..2 {
        let r = get(kura.addr, "a.test", "/short?cc=max-age%3D30").await;
        assert_eq!(r.status, 200);
        assert!(
            !cache_status(&r).contains("hit"),
            "max-age=30 was stored: {:?}",
            cache_status(&r)
        );
    }
    assert_eq!(origin.requests() - before, 2, "max-age=30 is not stored");
    assert_cached(&kura, &origin, "/long?cc=max-age%3D120").await;
    drop(kura);

    // --min-ttl 0 stores what is fresh at all (KURA_MIN_TTL works the same).
    for (args, env) in [
        (vec!["--min-ttl", "0"], vec![]),
        (vec![], vec![("KURA_MIN_TTL", "0")]),
    ] {
        let mut argv = vec!["serve", "--listen", "127.0.0.1:0"];
        let url = origin.url();
        argv.extend(["--upstream", &url]);
        argv.extend(args);
        let kura = Kura::start(&argv, &env, cwd.path());
        assert_cached(&kura, &origin, "/short?cc=max-age%3D30").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_is_a_listen_address() {
    let origin = TestOrigin::fixed("o", 200, "hello").await;
    let cwd = tempfile::tempdir().unwrap();
    let kura = Kura::start(
        &[
            "serve",
            "--listen",
            "localhost:0",
            "--upstream",
            &origin.url(),
        ],
        &[],
        cwd.path(),
    );
    assert!(kura.addr.ip().is_loopback(), "{}", kura.addr);
    assert_eq!(get(kura.addr, "a.test", "/").await.text(), "hello");
    drop(kura);
    // Casserole's own spelling, with a port.
    let port = free_port();
    let kura = Kura::start(
        &[
            "serve",
            "--address",
            &format!("localhost:{port}"),
            "--upstream",
            &origin.url(),
        ],
        &[],
        cwd.path(),
    );
    assert_eq!(kura.addr, SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(get(kura.addr, "a.test", "/").await.text(), "hello");
    drop(kura);

    // A name that does not resolve is named with its flag, and nothing starts.
    let out = run(
        &[
            "serve",
            "--listen",
            "no-such-host.invalid:8080",
            "--upstream",
            &origin.url(),
        ],
        &[],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen") && err.contains("no-such-host.invalid"),
        "{err}"
    );
}

/// Casserole's `--peering-address http://host:port`: kura's peer listener on host:port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casserole_peering_url_is_accepted() {
    let origin = TestOrigin::reflect("origin").await;
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let peering = format!("http://localhost:{port}");
    let me = format!("127.0.0.1:{port}");
    let kura = Kura::start(
        &[
            "server",
            "--address=127.0.0.1:0",
            &format!("--mirror-url={}", origin.url()),
            "--disk-cache-enabled=false",
            &format!("--peering-address={peering}"),
            "--peer",
            &me,
        ],
        &[("KURA_CLUSTER_SECRET", "0123456789abcdef")],
        cwd.path(),
    );
    // The peer listener is up on the address the URL named.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&me).is_err() {
        assert!(
            Instant::now() < deadline,
            "no peer listener on {me}; log:\n{}",
            kura.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_cached(&kura, &origin, "/obj?cc=max-age%3D3600").await;
    assert!(
        !cwd.path().join("data").exists(),
        "--disk-cache-enabled=false"
    );
    drop(kura);

    // https:// is refused with a reason (peer TLS lives in a config file).
    let out = run(
        &[
            "serve",
            "--upstream",
            &origin.url(),
            "--peering-address",
            &format!("https://127.0.0.1:{port}"),
            "--peer",
            &me,
        ],
        &[("KURA_CLUSTER_SECRET", "0123456789abcdef")],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--peering-address"), "{err}");
}
