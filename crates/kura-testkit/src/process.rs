//! The real `kura` binary as a child process: started with arguments, its listening addresses
//! read from its log, signalled, and measured (resident memory from `/proc`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `kura` binary; killed and reaped when dropped.
pub struct KuraProcess {
    child: Child,
    /// Every line the process wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The listening addresses, as the process logged them.
    pub addrs: Vec<SocketAddr>,
    /// The admin listener's address, when it logged one.
    pub admin: Option<SocketAddr>,
}

impl KuraProcess {
    /// Starts `bin` with `args` and waits until it logged `listeners` listening addresses.
    pub fn start(bin: &Path, args: &[&str], listeners: usize) -> KuraProcess {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kura binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = KuraProcess {
            child,
            log,
            addrs: Vec::new(),
            admin: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.addrs.len() < listeners {
            assert!(
                Instant::now() < deadline,
                "kura did not start; log:\n{}",
                p.log_text()
            );
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("kura exited with {status}; log:\n{}", p.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
            p.addrs = p.addresses("kura listening");
            p.admin = p.addresses("admin listening").first().copied();
        }
        p
    }

    fn addresses(&self, marker: &str) -> Vec<SocketAddr> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(marker))
            .filter_map(|l| l.split("address=").nth(1))
            .filter_map(|a| a.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The process id (for signals and `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr log so far, as one text (for assertion messages).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// True once a log line contains `needle`, polling for up to `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, `USR1`...).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(VmRSS, VmHWM)` in bytes: resident memory now and its peak.
    pub fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for KuraProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
