//! Hosts apart on one machine, for the cluster tests: a bridge in a network namespace of its
//! own, one namespace per host joined to it by a veth pair, links shaped with tc (tbf, both
//! ways), and sockets opened inside a host's namespace by a thread that enters it. Nothing is
//! added to the machine's own network. Needs root and iproute2: [`lab_or_skip`] says why a
//! test cannot run here, and fails it instead when `KURA_REQUIRE_NETNS=1` (scripts/test.sh as
//! root, so CI). Every namespace a [`Lab`] made, and every process inside, is gone when it is
//! dropped.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The lab's subnet, private to its namespaces.
const NET: [u8; 3] = [10, 77, 0];

/// A bridge and the hosts joined to it; removed whole when dropped.
pub struct Lab {
    prefix: String,
    made: Mutex<Vec<String>>,
}

/// One host: a network namespace with one link to the lab's bridge.
pub struct Host {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub ns: String,
    /// Its address on the lab's network.
    pub ip: Ipv4Addr,
    name: String,
    switch: String,
}

/// Runs `ip ARGS`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A lab for the calling test, or `None` after saying on stderr why namespaces cannot be
/// made here. With `KURA_REQUIRE_NETNS=1` that is a failure instead of a skip.
pub fn lab_or_skip(test: &str) -> Option<Lab> {
    match Lab::new(test) {
        Ok(lab) => Some(lab),
        Err(why) => {
            assert!(
                std::env::var("KURA_REQUIRE_NETNS").as_deref() != Ok("1"),
                "KURA_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: network namespaces are unavailable here ({why}); \
                 run as root with iproute2 (CI sets KURA_REQUIRE_NETNS=1 to make this a failure)"
            );
            None
        }
    }
}

impl Lab {
    /// A bridge in a namespace of its own; `tag` keeps the names of concurrent tests apart.
    pub fn new(tag: &str) -> Result<Lab, String> {
        let lab = Lab {
            prefix: format!("kt{}-{tag}", std::process::id()),
            made: Mutex::new(Vec::new()),
        };
        let sw = lab.namespace("sw")?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        // tc must work too, or the shaped tests mean nothing.
        let out = Command::new("ip")
            .args(["netns", "exec", &sw, "tc", "qdisc", "show"])
            .output()
            .map_err(|e| format!("cannot run tc: {e}"))?;
        if !out.status.success() {
            return Err(format!("tc: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(lab)
    }

    fn namespace(&self, name: &str) -> Result<String, String> {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns])?;
        self.made.lock().unwrap().push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A host named `name` at `10.77.0.<octet>`, its link shaped to `mbit` both ways.
    pub fn host(&self, name: &str, octet: u8, mbit: u32) -> Host {
        let sw = format!("{}-sw", self.prefix);
        let ns = self.namespace(name).expect("namespace");
        let outer = format!("v-{name}");
        let addr = Ipv4Addr::new(NET[0], NET[1], NET[2], octet);
        let cidr = format!("{addr}/24");
        for args in [
            vec![
                "-n", &sw, "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
            vec!["-n", &sw, "link", "set", &outer, "master", "br0", "up"],
            vec!["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
            vec!["-n", &ns, "link", "set", "eth0", "up"],
        ] {
            ip(&args).unwrap_or_else(|e| panic!("host {name}: {e}"));
        }
        let host = Host {
            ns,
            ip: addr,
            name: name.to_string(),
            switch: sw,
        };
        host.shape(mbit);
        host
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap());
        for ns in made.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        for ns in made.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Host {
    /// Shapes this host's link to `mbit` in both directions (a token bucket on each end).
    pub fn shape(&self, mbit: u32) {
        // A burst of 4 ms at the rate, at least 32 KiB.
        let burst = (mbit as u64 * 1_000_000 / 8 / 250)
            .max(32 * 1024)
            .to_string();
        let rate = format!("{mbit}mbit");
        for (ns, dev) in [
            (&self.ns, "eth0"),
            (&self.switch, &*format!("v-{}", self.name)),
        ] {
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev])
                .args([
                    "root", "tbf", "rate", &rate, "burst", &burst, "latency", "20ms",
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "tc on {dev} in {ns}");
        }
    }

    /// `ip:port` on this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// Runs `f` on a thread inside this host's network namespace: sockets it opens belong
    /// to this host.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the host's namespace");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    /// A listener on this host.
    pub fn listen(&self, port: u16) -> std::net::TcpListener {
        let addr = self.addr(port);
        self.enter(move || std::net::TcpListener::bind(addr).expect("bind in the namespace"))
    }

    /// A connection from this host to `to` (within 10 s: a lost SYN is sent again after 1 s,
    /// then 3 s), for the tokio runtime.
    pub fn connect(&self, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let stream =
            self.enter(move || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10)))?;
        stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(stream)
    }

    /// `program` to be run inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}
