//! A real etcd server for tests (Debian `etcd-server`), on free loopback ports, in a temporary
//! data directory; killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    /// The client URL, `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// A port free on `ip` right now (bound, then released).
pub fn free_addr(ip: &str) -> SocketAddr {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client = free_addr("127.0.0.1");
        let peer = free_addr("127.0.0.1");
        let url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let child = Command::new("etcd")
            .args([
                "--name",
                "kura-test",
                "--data-dir",
                dir.path().to_str().unwrap(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("kura-test={peer_url}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian etcd-server; scripts/test.sh installs it)");
        let etcd = Etcd {
            child: Some(child),
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !healthy(client) {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    /// Kills the server now (tests of an etcd outage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
