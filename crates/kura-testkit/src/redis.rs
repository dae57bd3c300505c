//! A real Redis server for tests (Debian `redis-server`) on a free loopback port, without
//! persistence; killed when dropped. `kill` and `restart` (same port) let tests cut Redis out
//! from under kura and bring it back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::etcd::free_addr;

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    /// Where it listens; the same across [`Redis::restart`].
    pub addr: SocketAddr,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr("127.0.0.1");
        let mut r = Redis {
            child: None,
            addr,
            url: format!("redis://{addr}/0"),
            dir,
        };
        r.restart();
        r
    }

    /// Starts the server (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian redis-server; scripts/test.sh installs it)");
        self.child = Some(child);
        // Far more than it takes, for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
