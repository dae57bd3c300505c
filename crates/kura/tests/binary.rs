//! The real `kura` binary: `check`, quick mode, reload on file change / SIGHUP / admin (good
//! and bad files), graceful shutdown, SIGUSR1 log reopening, and gigabyte streams with flat
//! memory.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use kura_testkit::{KuraProcess, TestOrigin, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

fn bin() -> &'static Path {
    Path::new(BIN)
}

fn write_config(dir: &Path, backend: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("kura.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
{extra}
[pools.app]
backends = ["{backend}"]
[[vhosts]]
hosts = ["*"]
pool = "app"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_accepts_a_good_file_and_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "http://127.0.0.1:9", "");
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let path = write_config(
        dir.path(),
        "tcp://nowhere",
        "[limits]\nclient_idle_timeout = \"often\"",
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pools.app.backends[0]"), "{err}");
    assert!(err.contains("limits.client_idle_timeout"), "{err}");

    let mut examples: Vec<_> = std::fs::read_dir("../../examples")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 3, "{examples:?}");
    for example in examples {
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&example)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            example.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_proxies_to_the_upstreams() {
    let a = TestOrigin::fixed("a", 200, "a").await;
    let b = TestOrigin::fixed("b", 200, "b").await;
    let kura = KuraProcess::start(
        bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &a.url(),
            "--upstream",
            &b.url(),
            "--admin",
            "127.0.0.1:0",
        ],
        1,
    );
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(kura.addr(), "any.host", "/x").await.text());
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "a", "b", "b"]);
    assert_eq!(
        get(kura.admin.unwrap(), "127.0.0.1", "/healthz")
            .await
            .status,
        200
    );

    // A bad flag value is named, and nothing starts.
    let out = std::process::Command::new(BIN)
        .args(["serve", "--upstream", "localhost:80"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream #1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_on_file_change_sighup_and_admin_keeps_old_on_error() {
    let one = TestOrigin::fixed("one", 200, "one").await;
    let two = TestOrigin::fixed("two", 200, "two").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &one.url(), "");
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let addr = kura.addr();
    assert_eq!(get(addr, "a.com", "/").await.text(), "one");

    // A changed file is picked up by the watcher.
    write_config(dir.path(), &two.url(), "");
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(addr, "a.com", "/").await.text() == "two"
        })
        .await,
        "file change applied; log:\n{}",
        kura.log_text()
    );

    // An invalid file keeps the running table and says which field is wrong.
    std::fs::write(&path, "[[listeners]]\naddress = \"127.0.0.1:0\"\n[pools.app]\nbackends = [\"nope\"]\n[[vhosts]]\nhosts=[\"*\"]\npool=\"app\"\n").unwrap();
    assert!(
        kura.wait_for_log("pools.app.backends[0]", Duration::from_secs(5)),
        "{}",
        kura.log_text()
    );
    assert_eq!(get(addr, "a.com", "/").await.text(), "two");

    // SIGHUP reloads too (write a good file while the watcher is muted by the same content).
    write_config(dir.path(), &one.url(), "");
    kura.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(addr, "a.com", "/").await.text() == "one"
        })
        .await
    );
    assert!(kura.wait_for_log("SIGHUP", Duration::from_secs(2)));

    // And POST /reload on the admin listener reports the result.
    std::fs::write(&path, "not toml [").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let req = http::Request::post("/reload")
        .header("host", "127.0.0.1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = kura_testkit::send(kura.admin.unwrap(), req).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["reloaded"], false);
    // The refused fields are listed one by one, each with its message.
    let fields = r.json()["fields"].as_array().cloned().unwrap_or_default();
    assert!(
        !fields.is_empty() && fields.iter().all(|f| f["message"].is_string()),
        "{}",
        r.text()
    );
    assert_eq!(get(addr, "a.com", "/").await.text(), "one");
    let m = get(kura.admin.unwrap(), "127.0.0.1", "/metrics")
        .await
        .text();
    assert!(
        m.contains("kura_config_reloads_total{result=\"error\"}"),
        "{m}"
    );
}

/// Writes `text` to `path` as editors and deployment tools do: a new file renamed over the old.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config_text(backend: &str, hosts: &[&str]) -> String {
    let mut t = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [pools.app]\nbackends = [\"{backend}\"]\n"
    );
    for h in hosts {
        t.push_str(&format!("[[vhosts]]\nhosts = [\"{h}\"]\npool = \"app\"\n"));
    }
    t
}

async fn serves(addr: std::net::SocketAddr, host: &str, body: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        get(addr, host, "/").await.text() == body
    })
    .await
}

/// The file is watched before it is first read: an edit made while kura starts (here, from
/// the moment the process is spawned until it listens) is applied, whichever side of the first
/// read it lands on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_while_kura_starts_is_applied() {
    let one = TestOrigin::fixed("one", 200, "one").await;
    let two = TestOrigin::fixed("two", 200, "two").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &one.url(), "");
    let (p, text) = (path.clone(), config_text(&two.url(), &["*"]));
    let edit = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(15));
        replace_file(&p, &text);
    });
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    edit.join().unwrap();
    assert!(
        serves(kura.addr(), "a.com", "two").await,
        "the edit made during start was lost; log:\n{}",
        kura.log_text()
    );
}

/// A configuration reached through symlinks that a deployment retargets (Kubernetes mounts a
/// ConfigMap as `kura.toml -> ..data/kura.toml`, `..data -> ..<version>`, and swaps `..data`
/// then deletes the old version) is followed through every update, not just the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_behind_retargeted_symlinks_is_followed() {
    let origins = [
        TestOrigin::fixed("v1", 200, "v1").await,
        TestOrigin::fixed("v2", 200, "v2").await,
        TestOrigin::fixed("v3", 200, "v3").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let publish = |version: usize| {
        let v = root.join(format!("..v{version}"));
        std::fs::create_dir(&v).unwrap();
        std::fs::write(
            v.join("kura.toml"),
            config_text(&origins[version - 1].url(), &["*"]),
        )
        .unwrap();
        std::os::unix::fs::symlink(format!("..v{version}"), root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        if version > 1 {
            std::fs::remove_dir_all(root.join(format!("..v{}", version - 1))).unwrap();
        }
    };
    publish(1);
    std::os::unix::fs::symlink("..data/kura.toml", root.join("kura.toml")).unwrap();
    let path = root.join("kura.toml");
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    assert_eq!(get(kura.addr(), "a.com", "/").await.text(), "v1");
    for version in [2, 3] {
        publish(version);
        assert!(
            serves(kura.addr(), "a.com", &format!("v{version}")).await,
            "update {version} not applied; log:\n{}",
            kura.log_text()
        );
    }
}

/// A file written in pieces by a writer that keeps it open is applied once, whole: a pause
/// in the middle of the write does not apply the half written so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_pieces_is_applied_whole() {
    use std::io::Write;
    let one = TestOrigin::fixed("one", 200, "one").await;
    let two = TestOrigin::fixed("two", 200, "two").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kura.toml");
    std::fs::write(&path, config_text(&one.url(), &["a.com", "b.com"])).unwrap();
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let addr = kura.addr();
    assert_eq!(get(addr, "b.com", "/").await.text(), "one");
    // The new file's first piece is a valid configuration without b.com.
    let text = config_text(&two.url(), &["a.com", "b.com"]);
    let cut = text.rfind("[[vhosts]]").unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Mid-write, b.com is still served by the running configuration.
    assert_eq!(get(addr, "b.com", "/").await.text(), "one");
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    drop(f);
    assert!(serves(addr, "b.com", "two").await, "{}", kura.log_text());
    let log = kura.log_text();
    assert_eq!(log.matches("configuration reloaded").count(), 1, "{log}");
    assert!(!log.contains("invalid configuration"), "{log}");
}

/// Without a configuration file there is nothing to reload: a SIGHUP (a service manager's
/// reload) is logged and kura goes on serving instead of ending, its default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_a_configuration_file_keeps_serving() {
    let origin = TestOrigin::fixed("a", 200, "a").await;
    let kura = KuraProcess::start(
        bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin.url(),
        ],
        1,
    );
    kura.signal("HUP");
    assert!(
        kura.wait_for_log("no configuration file to reload", Duration::from_secs(5)),
        "{}",
        kura.log_text()
    );
    assert_eq!(get(kura.addr(), "any.host", "/x").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let slow = TestOrigin::slow("slow", Duration::from_millis(1500), "done").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &slow.url(),
        "[server]\nshutdown_grace = \"10s\"",
    );
    let mut kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let addr = kura.addr();
    let in_flight = tokio::spawn(async move { get(addr, "a.com", "/").await });
    assert!(eventually(Duration::from_secs(2), || async { slow.requests() == 1 }).await);
    let t = Instant::now();
    kura.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once draining.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    let status = kura.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_exits() {
    let o = TestOrigin::slow("o", Duration::from_millis(20), "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &o.url(), "[server]\nshutdown_grace = \"5s\"");
    let mut kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let addr = kura.addr();
    // 20 keep-alive clients sending requests back to back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..20 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut bad) = (0u32, 0u32);
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return (ok, bad);
            };
            let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<
                _,
                http_body_util::Empty<Bytes>,
            >(kura_testkit::TokioIo::new(stream))
            .await
            else {
                return (ok, bad);
            };
            tokio::spawn(conn);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if sender.ready().await.is_err() {
                    break; // the server closed this keep-alive connection: expected
                }
                let req = http::Request::get("/")
                    .header("host", "a.com")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(_) => bad += 1,
                    Err(_) => break,
                }
            }
            (ok, bad)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    kura.signal("TERM");
    let status = kura
        .wait_exit(Duration::from_secs(6))
        .expect("exits under load");
    assert!(status.success(), "{status}\n{}", kura.log_text());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut bad) = (0, 0);
    for c in clients {
        let (o, b) = c.await.unwrap();
        ok += o;
        bad += b;
    }
    assert!(ok > 100, "{ok} requests answered");
    assert_eq!(bad, 0, "no request got an error status during the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_shutdown() {
    let stuck = TestOrigin::slow("stuck", Duration::from_secs(30), "never").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &stuck.url(),
        "[server]\nshutdown_grace = \"500ms\"",
    );
    let mut kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let addr = kura.addr();
    let _in_flight = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(10), get(addr, "a.com", "/")).await;
    });
    assert!(eventually(Duration::from_secs(2), || async { stuck.requests() == 1 }).await);
    let t = Instant::now();
    kura.signal("TERM");
    kura.wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    assert!(kura.wait_for_log("grace period over", Duration::from_secs(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log() {
    let o = TestOrigin::fixed("o", 200, "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &o.url(), "[access_log]\npath = \"access.log\"");
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let log = dir.path().join("access.log");
    get(kura.addr(), "a.com", "/first").await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/first"))
        })
        .await
    );
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    kura.signal("USR1");
    assert!(kura.wait_for_log("SIGUSR1", Duration::from_secs(2)));
    get(kura.addr(), "a.com", "/second").await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/second"))
        })
        .await
    );
    let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
    assert!(old.contains("/first") && !old.contains("/second"));
}

const GIB: u64 = 1024 * 1024 * 1024;
const RSS_BUDGET: u64 = 50 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gigabyte_streams_both_ways_with_flat_memory() {
    let source = TestOrigin::streaming("source", GIB).await;
    let sink = TestOrigin::sink("sink").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kura.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"
[limits]
max_body_bytes = 0
[pools.source]
backends = ["{}"]
[pools.sink]
backends = ["{}"]
[[vhosts]]
hosts = ["*"]
pool = "source"
[[vhosts.rules]]
path = "^/upload"
pool = "sink"
"#,
            source.url(),
            sink.url()
        ),
    )
    .unwrap();
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    get(kura.addr(), "a.com", "/upload-warmup").await;
    let (baseline, _) = kura.memory();

    // Download: count bytes as they arrive; nothing is kept.
    let mut client = kura_testkit::Client::connect(kura.addr()).await;
    let resp = client
        .send_streaming(kura_testkit::get_request("a.com", "/big"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], GIB.to_string().as_str());
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got += d.len() as u64;
        }
    }
    assert_eq!(got, GIB);

    // Upload: a generated 1 GiB chunked body.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let n = GIB / chunk.len() as u64;
    let stream = futures_util::stream::iter(0..n)
        .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone())));
    let req = http::Request::post("/upload")
        .header("host", "a.com")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap();
    let r = kura_testkit::send(kura.addr(), req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), GIB.to_string());

    let (_, peak) = kura.memory();
    eprintln!(
        "kura RSS baseline {} KiB, peak {} KiB",
        baseline >> 10,
        peak >> 10
    );
    assert!(
        peak < baseline + RSS_BUDGET,
        "kura's peak RSS {} MiB grew more than 50 MiB over its baseline {} MiB",
        peak >> 20,
        baseline >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_what_only_a_restart_applies() {
    let one = TestOrigin::fixed("one", 200, "one").await;
    let two = TestOrigin::fixed("two", 200, "two").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &one.url(), "");
    let kura = KuraProcess::start(bin(), &["serve", "--config", path.to_str().unwrap()], 1);
    let reload = || async {
        let req = http::Request::post("/reload")
            .header("host", "127.0.0.1")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        kura_testkit::send(kura.admin.unwrap(), req).await
    };
    // Routes change and a restart-only field changes: the first applies, the second is named.
    write_config(
        dir.path(),
        &two.url(),
        "[server]\nshutdown_grace = \"7s\"\nworkers = 1\n[limits]\nmax_upgraded = 3",
    );
    let r = reload().await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["reloaded"], true);
    assert_eq!(
        v["needs_restart"],
        serde_json::json!([
            "server.workers",
            "server.shutdown_grace",
            "limits.max_upgraded"
        ]),
        "{v}"
    );
    assert!(v["summary"].as_str().unwrap().contains("needs a restart"));
    assert_eq!(get(kura.addr(), "a.com", "/").await.text(), "two");
    assert!(kura.wait_for_log("needs a restart", Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_overrides_hold_across_reloads_and_zero_workers_is_refused() {
    // `--workers 0` would start a server with no worker runtime: refused before anything starts.
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:1",
            "--workers",
            "0",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--workers"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Flags that override the file are applied to every reloaded file too: reloading the
    // unchanged file names nothing as needing a restart.
    let one = TestOrigin::fixed("one", 200, "one").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &one.url(), "");
    let kura = KuraProcess::start(
        bin(),
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "1",
            "--per-core",
        ],
        1,
    );
    let req = http::Request::post("/reload")
        .header("host", "127.0.0.1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = kura_testkit::send(kura.admin.unwrap(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["needs_restart"],
        serde_json::json!([]),
        "{}",
        r.text()
    );
    assert_eq!(get(kura.addr(), "a.com", "/").await.text(), "one");
}

#[test]
fn check_loads_the_certificates_and_refuses_a_key_that_does_not_go_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kura_testkit::tls::Pki::new();
    let a = pki.leaf(dir.path(), "a", &["a.test"]);
    let b = pki.leaf(dir.path(), "b", &["b.test"]);
    let config = |cert: &std::path::Path, key: &std::path::Path| {
        let path = dir.path().join("tls.toml");
        std::fs::write(
            &path,
            format!(
                "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\n\
                 certificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\
                 [pools.app]\nbackends = [\"http://127.0.0.1:9\"]\n\
                 [[vhosts]]\nhosts = [\"*\"]\npool = \"app\"\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        std::process::Command::new(BIN)
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = config(&a.cert, &a.key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both files are good PEM; only loading them shows they do not belong together.
    let out = config(&a.cert, &b.key);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listeners[0].tls"), "{err}");
    assert!(err.contains("do not go together"), "{err}");
}
