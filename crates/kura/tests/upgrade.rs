//! Replacing a running kura without dropping a connection, through the real binary: a load
//! of keep-alive and new-connection clients (cleartext and TLS) runs while a second kura takes
//! the listening sockets over (`--takeover`, and SIGUSR2), and not one request fails, not one
//! connection is refused, and no keep-alive connection is closed under a client. Also what a
//! takeover refuses: a missing or dead socket, a kura already listening, another user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use kura_testkit::tls::Pki;
use kura_testkit::{KuraProcess, TestOrigin, TokioIo, get};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_kura");

/// A configuration whose responses carry `x-kura-config: <name>`: a cleartext listener, a TLS
/// one when `tls` is given, and the admin listener, all on port 0.
fn write_config(dir: &Path, name: &str, origin: &str, tls: Option<(&Path, &Path)>) -> PathBuf {
    let tls = match tls {
        Some((cert, key)) => format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"
{tls}
[admin]
address = "127.0.0.1:0"
[server]
shutdown_grace = "10s"
[pools.app]
backends = ["{origin}"]
[[vhosts]]
hosts = ["*"]
pool = "app"
[[vhosts.rules]]
path = "^/"
pool = "app"
[vhosts.rules.response_headers]
set = {{ "x-kura-config" = "{name}" }}
"#
        ),
    )
    .unwrap();
    path
}

/// Where a load client connects.
#[derive(Clone)]
enum Target {
    Plain(SocketAddr),
    Tls(SocketAddr, Arc<rustls::ClientConfig>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        match self {
            Target::Plain(a) => Ok(Box::new(TcpStream::connect(a).await?)),
            Target::Tls(a, config) => Ok(Box::new(
                kura_testkit::tls::connect(*a, "upgrade.test", config.clone()).await?,
            )),
        }
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests that got no whole 200 answer.
    failed: AtomicU64,
    /// Connections that could not be opened (refused, reset during TLS).
    refused: AtomicU64,
    /// Keep-alive connections closed by the server between requests without `Connection:
    /// close` on the previous answer (a browser's next request there would have failed).
    closed_idle: AtomicU64,
    /// Answers by `x-kura-config`.
    served_by: Mutex<HashMap<String, u64>>,
    /// Answers by `x-kura-config` to requests sent once the old process had exited (an answer
    /// the old one wrote just before it exited may be read after).
    after_exit: Mutex<HashMap<String, u64>>,
    old_gone: AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Relaxed);
        let mut e = self.errors.lock().unwrap();
        if e.len() < 20 {
            e.push(what);
        }
    }

    /// An answer from `config`; `sent_after_exit` when its request was sent once the old
    /// process had exited.
    fn served(&self, config: String, sent_after_exit: bool) {
        self.ok.fetch_add(1, Relaxed);
        let map = if sent_after_exit {
            &self.after_exit
        } else {
            &self.served_by
        };
        *map.lock().unwrap().entry(config).or_default() += 1;
    }

    fn count(map: &Mutex<HashMap<String, u64>>, name: &str) -> u64 {
        map.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn report(&self) -> String {
        format!(
            "ok {} failed {} refused {} closed_idle {} served_by {:?} after_exit {:?} errors {:?}",
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
            self.refused.load(Relaxed),
            self.closed_idle.load(Relaxed),
            self.served_by.lock().unwrap(),
            self.after_exit.lock().unwrap(),
            self.errors.lock().unwrap()
        )
    }
}

/// One request on `sender`; `Ok(true)` when the answer closes the connection.
async fn one_request(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    close: bool,
    tally: &Tally,
) -> Result<bool, String> {
    let sent_after_exit = tally.old_gone.load(Relaxed);
    let mut req = hyper::Request::get("/load").header("host", "upgrade.test");
    if close {
        req = req.header("connection", "close");
    }
    let resp = sender
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let closes = resp
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let config = resp
        .headers()
        .get("x-kura-config")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != 200 || &body[..] != b"ok" {
        return Err(format!("status {status}, body {body:?}"));
    }
    tally.served(config, sent_after_exit);
    Ok(closes)
}

/// A client that keeps its connection for as long as the server does (`keep_alive`), or
/// opens one per request.
async fn client(target: Target, keep_alive: bool, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    while !stop.load(Relaxed) {
        let io = match target.connect().await {
            Ok(io) => io,
            Err(e) => {
                tally.error(&tally.refused, format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (mut sender, conn) = match http1::handshake(TokioIo::new(io)).await {
            Ok(pair) => pair,
            Err(e) => {
                tally.error(&tally.failed, format!("handshake: {e}"));
                continue;
            }
        };
        tokio::spawn(conn);
        loop {
            if stop.load(Relaxed) {
                return;
            }
            if sender.ready().await.is_err() {
                tally.error(&tally.closed_idle, "closed between requests".into());
                break;
            }
            match one_request(&mut sender, !keep_alive, &tally).await {
                Ok(true) => break,
                Ok(false) if !keep_alive => {
                    tally.error(&tally.failed, "Connection: close not honoured".into());
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    tally.error(&tally.failed, e);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Keep-alive and new-connection clients on each target, until `stop`.
fn start_load(
    targets: &[Target],
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for t in targets {
        for keep_alive in [true, true, true, false, false] {
            tasks.push(tokio::spawn(client(
                t.clone(),
                keep_alive,
                tally.clone(),
                stop.clone(),
            )));
        }
    }
    tasks
}

/// Polls `cond` every 20 ms for up to `within`.
async fn until(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Starts kura with `args`; arguments that begin with a `NAME=value` are passed through
/// `env`, which sets them and executes the rest (the same process).
async fn start_kura(args: Vec<String>, listeners: usize) -> KuraProcess {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = if args.first().is_some_and(|a| a.contains('=')) {
            "env"
        } else {
            BIN
        };
        KuraProcess::start(Path::new(bin), &args, listeners)
    })
    .await
    .unwrap()
}

/// Waits (off the runtime's threads) for `kura` to exit.
async fn wait_exit(
    mut kura: KuraProcess,
    within: Duration,
) -> (KuraProcess, Option<std::process::ExitStatus>) {
    tokio::task::spawn_blocking(move || {
        let status = kura.wait_exit(within);
        (kura, status)
    })
    .await
    .unwrap()
}

/// The admin listener's address, once `kura` logged it (it is bound after the listeners).
fn admin_of(kura: &KuraProcess) -> SocketAddr {
    assert!(
        kura.wait_for_log("admin listening", Duration::from_secs(30)),
        "{}",
        kura.log_text()
    );
    kura.log_text()
        .lines()
        .filter(|l| l.contains("admin listening"))
        .find_map(|l| {
            l.split("address=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("an admin address in the log")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Stops the load once 300 requests sent after the old process's exit were answered, and
/// checks that nothing failed.
async fn finish_load(
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    let more = until(Duration::from_secs(30), || {
        tally.after_exit.lock().unwrap().values().sum::<u64>() >= 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    assert!(more, "load stalled after the takeover: {}", tally.report());
    assert_eq!(tally.failed.load(Relaxed), 0, "{}", tally.report());
    assert_eq!(tally.refused.load(Relaxed), 0, "{}", tally.report());
    assert_eq!(tally.closed_idle.load(Relaxed), 0, "{}", tally.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_under_load_drops_nothing() {
    let origin = TestOrigin::fixed("origin", 200, "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(dir.path(), "site", &["upgrade.test"]);
    let tls = Some((leaf.cert.as_path(), leaf.key.as_path()));
    let old_cfg = write_config(dir.path(), "old", &origin.url(), tls);
    let new_cfg = write_config(dir.path(), "new", &origin.url(), tls);
    let sock = dir.path().join("upgrade.sock");
    let sock_s = sock.to_str().unwrap().to_string();

    // The old one thread-per-core with two workers: two sockets per listener, each with its
    // own accept queue, both handed over.
    let old = start_kura(
        strings(&[
            "serve",
            "--config",
            old_cfg.to_str().unwrap(),
            "--upgrade-socket",
            &sock_s,
            "--per-core",
            "--workers",
            "2",
        ]),
        2,
    )
    .await;
    assert!(old.wait_for_log("upgrade socket listening", Duration::from_secs(30)));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the upgrade socket is the user's alone"
    );
    let (plain, secure, admin) = (old.addrs[0], old.addrs[1], admin_of(&old));

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let targets = [
        Target::Plain(plain),
        Target::Tls(secure, pki.client(&[b"http/1.1"])),
    ];
    let tasks = start_load(&targets, &tally, &stop);
    assert!(
        until(Duration::from_secs(20), || Tally::count(
            &tally.served_by,
            "old"
        ) >= 200)
        .await,
        "{}",
        tally.report()
    );

    // The new one, work stealing with one worker: it accepts on all of the old one's sockets.
    let new = start_kura(
        strings(&[
            "serve",
            "--config",
            new_cfg.to_str().unwrap(),
            "--upgrade-socket",
            &sock_s,
            "--takeover",
            &sock_s,
            "--workers",
            "1",
        ]),
        2,
    )
    .await;
    assert_eq!(new.addrs, [plain, secure], "the same listeners");
    assert_eq!(admin_of(&new), admin, "the same admin listener");
    assert!(
        new.log_text()
            .lines()
            .filter(|l| l.contains("kura listening") && l.contains("inherited"))
            .count()
            == 2,
        "{}",
        new.log_text()
    );

    let (old, status) = wait_exit(old, Duration::from_secs(30)).await;
    tally.old_gone.store(true, Relaxed);
    assert!(
        status.is_some_and(|s| s.success()),
        "the old kura drains and exits: {status:?}\n{}",
        old.log_text()
    );
    assert!(old.log_text().contains("handed the listening sockets over"));
    finish_load(&tally, &stop, tasks).await;

    assert!(
        Tally::count(&tally.served_by, "old") > 0,
        "{}",
        tally.report()
    );
    assert!(Tally::count(&tally.served_by, "new") + Tally::count(&tally.after_exit, "new") > 0);
    assert_eq!(
        Tally::count(&tally.after_exit, "old"),
        0,
        "{}",
        tally.report()
    );
    // The admin listener went over too, and the new kura can itself be replaced.
    assert_eq!(get(admin, "127.0.0.1", "/healthz").await.status, 200);
    assert!(new.wait_for_log("upgrade socket listening", Duration::from_secs(30)));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    println!("{}", tally.report());
}

/// A process that is not our child (the kura SIGUSR2 started), killed when dropped.
struct Orphan(u32);

impl Orphan {
    fn alive(&self) -> bool {
        // Gone, or a zombie nobody reaped yet.
        std::fs::read_to_string(format!("/proc/{}/stat", self.0)).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }

    fn signal(&self, name: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.to_string())
            .status();
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_starts_a_new_kura_that_takes_over() {
    let origin = TestOrigin::fixed("origin", 200, "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "same", &origin.url(), None);
    // systemd's notification socket, as a Type=notify unit has it.
    let notify = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let notify_env = format!("NOTIFY_SOCKET={}", dir.path().join("notify").display());
    // No upgrade socket configured: SIGUSR2 makes a temporary one.
    let old = start_kura(
        strings(&[&notify_env, BIN, "serve", "--config", cfg.to_str().unwrap()]),
        1,
    )
    .await;
    let notified = |expected: &str| {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        assert_eq!(String::from_utf8_lossy(&buf[..n]), expected);
    };
    notified("READY=1\n");
    let addr = old.addr();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = start_load(&[Target::Plain(addr)], &tally, &stop);
    assert!(until(Duration::from_secs(20), || tally.ok.load(Relaxed) >= 200).await);

    old.signal("USR2");
    assert!(
        old.wait_for_log("handed the listening sockets over", Duration::from_secs(30)),
        "{}",
        old.log_text()
    );
    // The new kura writes to the same standard error: its pid is in the old one's log.
    let pid: u32 = old
        .log_text()
        .lines()
        .find(|l| l.contains("started a new kura to take over"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the log:\n{}", old.log_text()));
    let successor = Orphan(pid);
    assert_ne!(pid, old.pid());
    // The new kura is the service's main process now; the old one does not say it stops.
    notified(&format!("MAINPID={pid}\nREADY=1\n"));
    let (old, status) = wait_exit(old, Duration::from_secs(30)).await;
    tally.old_gone.store(true, Relaxed);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        old.log_text()
    );
    assert!(successor.alive());
    // Whatever is answered now, the new process answers.
    finish_load(&tally, &stop, tasks).await;
    assert!(
        Tally::count(&tally.after_exit, "same") >= 300,
        "{}",
        tally.report()
    );
    assert!(old.log_text().contains("took the listening sockets over"));

    successor.signal("TERM");
    notified("STOPPING=1\n");
    let gone = until(Duration::from_secs(20), || !successor.alive()).await;
    assert!(gone, "the new kura stops on SIGTERM");
}

/// Runs the binary to completion; (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_refusals_are_clear() {
    let origin = TestOrigin::fixed("origin", 200, "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "a", &origin.url(), None);
    let cfg_s = cfg.to_str().unwrap().to_string();

    // No such socket.
    let missing = dir.path().join("nowhere/upgrade.sock");
    let (code, err) = run(&[
        "serve",
        "--config",
        &cfg_s,
        "--takeover",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--takeover") && err.contains("no such file"),
        "{err}"
    );

    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (code, err) = run(&[
        "serve",
        "--config",
        &cfg_s,
        "--takeover",
        stale.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing listens there"), "{err}");

    // A file that is not a socket is not replaced by an upgrade socket.
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "mine").unwrap();
    let (code, err) = run(&[
        "serve",
        "--config",
        &cfg_s,
        "--upgrade-socket",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "mine");

    // The stale socket is replaced by a kura that listens there...
    let stale_s = stale.to_str().unwrap().to_string();
    let first = start_kura(
        strings(&["serve", "--config", &cfg_s, "--upgrade-socket", &stale_s]),
        1,
    )
    .await;
    assert!(first.wait_for_log("upgrade socket listening", Duration::from_secs(30)));
    // ...and a second kura on the same upgrade socket without --takeover is refused, leaving
    // the first one serving.
    let cfg_b = write_config(dir.path(), "b", &origin.url(), None);
    let (code, err) = run(&[
        "serve",
        "--config",
        cfg_b.to_str().unwrap(),
        "--upgrade-socket",
        &stale_s,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("a kura already listens there"), "{err}");
    assert_eq!(get(first.addr(), "x", "/").await.status, 200);

    // A kura whose configuration is invalid never asks: the running one is untouched.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[listeners]]\naddress = \"nowhere\"\n").unwrap();
    let (code, _) = run(&[
        "serve",
        "--config",
        bad.to_str().unwrap(),
        "--takeover",
        &stale_s,
    ]);
    assert_eq!(code, Some(1));
    assert!(!first.log_text().contains("takeover asked"));
    assert_eq!(get(first.addr(), "x", "/").await.status, 200);
}

/// SIGTERM with an upgrade socket: the duplicates kept for a successor close with the
/// listeners, so new clients are refused (not queued where nobody accepts) while a request in
/// flight finishes; the socket file goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_upgrade_socket_refuses_new_clients() {
    // The request in flight is held until the test has seen new clients refused.
    let (slow, release) = TestOrigin::held("slow", "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "a", &slow.url(), None);
    // A grace far longer than the test waits for the refusal: the request must end because it
    // was answered, not because a loaded machine took the 10 s grace to show the refusal.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let longer = text.replace("shutdown_grace = \"10s\"", "shutdown_grace = \"60s\"");
    assert_ne!(text, longer);
    std::fs::write(&cfg, longer).unwrap();
    let sock = dir.path().join("upgrade.sock");
    let kura = start_kura(
        strings(&[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--upgrade-socket",
            sock.to_str().unwrap(),
        ]),
        1,
    )
    .await;
    assert!(kura.wait_for_log("upgrade socket listening", Duration::from_secs(30)));
    let addr = kura.addr();
    let in_flight = tokio::spawn(async move { get(addr, "x", "/").await });
    assert!(until(Duration::from_secs(20), || slow.requests() == 1).await);
    kura.signal("TERM");
    let refused = until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(refused, "connections refused once draining");
    assert!(
        !in_flight.is_finished(),
        "refused while a request was in flight"
    );
    release.release();
    assert_eq!(in_flight.await.unwrap().text(), "ok");
    let (kura, status) = wait_exit(kura, Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", kura.log_text());
    assert!(!sock.exists(), "the upgrade socket is removed");
}

/// A takeover from another user is refused by both sides (SO_PEERCRED), even through a
/// socket whose mode lets that user connect. Needs root, to run the binary as `nobody`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_from_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run kura as another user");
        return;
    }
    let origin = TestOrigin::fixed("origin", 200, "ok").await;
    // A directory `nobody` can read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cfg = write_config(dir.path(), "a", &origin.url(), None);
    let sock = dir.path().join("upgrade.sock");
    let kura = start_kura(
        strings(&[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--upgrade-socket",
            sock.to_str().unwrap(),
        ]),
        1,
    )
    .await;
    assert!(kura.wait_for_log("upgrade socket listening", Duration::from_secs(30)));
    // Only the peer check stands in the way now.
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "serve",
            "--config",
        ])
        .arg(&cfg)
        .arg("--takeover")
        .arg(&sock)
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: no setpriv");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && err.contains("kura") && !err.contains("uid") {
        // The binary itself is out of nobody's reach (a private target directory).
        eprintln!("skipped: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("runs as uid 0, this kura as uid 65534"),
        "{err}"
    );
    assert_eq!(get(kura.addr(), "x", "/").await.status, 200);
    assert!(
        !kura.log_text().contains("takeover asked"),
        "{}",
        kura.log_text()
    );
}
