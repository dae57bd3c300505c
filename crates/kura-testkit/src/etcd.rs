//! A real etcd server for tests (Debian `etcd-server`), on free loopback ports, in a temporary
//! data directory; killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running single-member etcd; killed when dropped.
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

/// TLS for an etcd under test: its certificate and key, and the CA whose client certificates
/// it requires.
pub struct EtcdTls<'a> {
    /// The server certificate, PEM.
    pub cert: &'a std::path::Path,
    /// Its private key, PEM.
    pub key: &'a std::path::Path,
    /// The CA that must have issued clients' certificates, PEM.
    pub ca: &'a std::path::Path,
}

impl Etcd {
    /// An etcd serving clients over plain HTTP; returns once it reports healthy.
    pub fn start() -> Etcd {
        Self::start_with(None)
    }

    /// An etcd serving clients over TLS with client certificates (`https://` in `url`); its
    /// health is read from a plain metrics listener.
    pub fn start_with(tls: Option<EtcdTls<'_>>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client = free_addr("127.0.0.1");
        let peer = free_addr("127.0.0.1");
        let metrics = free_addr("127.0.0.1");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{client}");
        let peer_url = format!("http://{peer}");
        let metrics_url = format!("http://{metrics}");
        let mut args: Vec<String> = [
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
            "--listen-metrics-urls",
            &metrics_url,
            "--log-level",
            "error",
            // Passwords hashed at the lowest cost: at the default, each authentication takes
            // tens of milliseconds of CPU, which a loaded machine stretches past the 5 s kura
            // gives an etcd request, and the tests are not about etcd's hashing.
            "--bcrypt-cost",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = &tls {
            for (flag, path) in [
                ("--cert-file", t.cert),
                ("--key-file", t.key),
                ("--trusted-ca-file", t.ca),
            ] {
                args.push(flag.to_string());
                args.push(path.display().to_string());
            }
            args.push("--client-cert-auth".to_string());
        }
        let child = Command::new("etcd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian etcd-server; scripts/test.sh installs it)");
        let etcd = Etcd {
            child: Some(child),
            url,
            _dir: dir,
        };
        // Far more than it takes, for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(metrics) {
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
