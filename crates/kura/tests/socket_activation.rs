//! systemd socket activation through systemd's own tool: `systemd-socket-activate` listens and
//! starts kura when the first client connects; kura serves that client, which waited in the
//! backlog, from the socket it inherited (`LISTEN_FDS`), matched to its listener by address.
//! The admin listener, which systemd did not pass, is bound as usual.

use std::path::Path;
use std::time::Duration;

use kura_testkit::{KuraProcess, TestOrigin, get};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_from_systemd_is_served() {
    let origin = TestOrigin::fixed("origin", 200, "from the origin").await;
    let dir = tempfile::tempdir().unwrap();
    // The address systemd listens on, and the one the configuration names.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.path().join("kura.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[listeners]]
address = "{addr}"
[admin]
address = "127.0.0.1:0"
[pools.app]
backends = ["{}"]
[[vhosts]]
hosts = ["*"]
pool = "app"
"#,
            origin.url()
        ),
    )
    .unwrap();
    let activate = [
        "systemd-socket-activate",
        "/usr/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok()
    })
    .expect("systemd-socket-activate is installed (Debian systemd; scripts/test.sh installs it)");
    let listen = format!("--listen={addr}");
    // Nothing is started until a client connects: no listener is logged yet.
    let kura = tokio::task::spawn_blocking(move || {
        KuraProcess::start(
            Path::new(activate),
            &[&listen, BIN, "serve", "--config", cfg.to_str().unwrap()],
            0,
        )
    })
    .await
    .unwrap();
    assert!(
        kura.wait_for_log("Listening on", Duration::from_secs(20)),
        "{}",
        kura.log_text()
    );
    // This client's connection waits in systemd's socket until kura accepts it.
    let reply = get(addr, "any.host", "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "from the origin");
    let log = kura.log_text();
    assert!(
        log.contains("sockets from systemd socket activation"),
        "{log}"
    );
    let listening: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kura listening"))
        .collect();
    assert_eq!(listening.len(), 1, "{log}");
    assert!(listening[0].contains(&addr.to_string()) && listening[0].contains("inherited"));
    assert!(kura.wait_for_log("admin listening", Duration::from_secs(20)));
    assert_eq!(get(addr, "any.host", "/again").await.status, 200);
}
