//! Listening sockets: bound here, or inherited from a kura being replaced (`--takeover`) or
//! from systemd socket activation (`LISTEN_FDS`). An inherited socket is the very socket the
//! previous process listened on, with the same accept queue, so a connection waiting there is
//! accepted by the new process instead of being refused or reset. The running server keeps a
//! duplicate of every socket it listens on ([`Listening`]) to hand to its successor.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// What a listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `listeners[i]` of the configuration.
    Listener(usize),
    /// The admin listener.
    Admin,
    /// The cluster's peer listener.
    Peer,
}

/// A socket received from elsewhere, waiting to be matched to a listener.
#[derive(Debug)]
pub struct InheritedSocket {
    /// What it was in the process it came from (unknown for systemd's).
    pub role: Option<Role>,
    /// The address that process's configuration named (a port 0 stays 0).
    pub configured: Option<SocketAddr>,
    /// The listening socket.
    pub socket: TcpListener,
}

/// Sockets received at start: each listener takes its own ([`Inherited::take`]) and the ones
/// left over are closed once every listener has been served.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<InheritedSocket>,
}

impl Inherited {
    /// Sockets to match against the configuration.
    pub fn new(sockets: Vec<InheritedSocket>) -> Self {
        Inherited { sockets }
    }

    /// How many are still unmatched.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when none is left.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Takes the sockets that serve `role` at `configured`: those the previous process had for
    /// the same role and configured address (every worker's, for a thread-per-core server), or
    /// else those bound to exactly `configured` (a port other than 0), whatever they were for.
    pub fn take(&mut self, role: Role, configured: SocketAddr) -> Vec<TcpListener> {
        let same = |s: &InheritedSocket| s.role == Some(role) && s.configured == Some(configured);
        let bound = |s: &InheritedSocket| {
            configured.port() != 0 && s.socket.local_addr().ok() == Some(configured)
        };
        let by_role = self.sockets.iter().any(same);
        let (taken, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|s| if by_role { same(s) } else { bound(s) });
        self.sockets = rest;
        taken.into_iter().map(|s| s.socket).collect()
    }

    /// The sockets, unmatched.
    pub fn into_sockets(self) -> Vec<InheritedSocket> {
        self.sockets
    }

    /// Closes the sockets no listener took, naming each in the log: a listener that the new
    /// configuration no longer has stops here (connections waiting on it are reset).
    pub fn close_rest(self) {
        for s in self.sockets {
            let addr = s.socket.local_addr().map(|a| a.to_string());
            tracing::warn!(
                address = addr.as_deref().unwrap_or("?"),
                "inherited socket matches no listener of the configuration: closed"
            );
        }
    }
}

/// A socket the running server listens on, duplicated for a successor.
#[derive(Debug)]
pub struct Listening {
    /// What it serves.
    pub role: Role,
    /// The address the configuration named (a port 0 stays 0).
    pub configured: SocketAddr,
    /// A duplicate of the listening socket (the same accept queue).
    pub socket: TcpListener,
}

/// The sockets of one listener at `addr`, at least `sets` of them (one per thread-per-core
/// worker, else one): the `inherited` ones, shared by duplicates when there are fewer than
/// `sets`, or new ones. Socket `i` goes to set `i % sets`: none is closed while the kernel may
/// still queue connections on it.
pub(crate) fn for_listener(
    addr: SocketAddr,
    sets: usize,
    inherited: Vec<TcpListener>,
) -> io::Result<Vec<TcpListener>> {
    if !inherited.is_empty() {
        let mut sockets = inherited;
        for s in &sockets {
            s.set_nonblocking(true)?;
        }
        let n = sockets.len();
        for i in n..sets {
            let dup = sockets[i % n].try_clone()?;
            sockets.push(dup);
        }
        return Ok(sockets);
    }
    // With several sets, they share the port (SO_REUSEPORT), after a check that no other
    // process holds it (it would share the traffic).
    let shared = sets > 1;
    if shared && addr.port() != 0 {
        drop(bind(addr, false)?);
    }
    let first = bind(addr, shared)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..sets {
        sockets.push(bind(addr, true)?);
    }
    Ok(sockets)
}

/// One socket for a side listener (admin, peer): the inherited one, or a new one.
pub(crate) fn for_side(addr: SocketAddr, inherited: Vec<TcpListener>) -> io::Result<TcpListener> {
    let mut inherited = inherited.into_iter();
    match inherited.next() {
        Some(s) => {
            // A side listener has one accept loop; a duplicate would be one more name for
            // the same socket, so closing it loses nothing.
            s.set_nonblocking(true)?;
            Ok(s)
        }
        None => bind(addr, false),
    }
}

/// A listening socket on `addr`; `reuse_port` lets this process's other workers bind it too.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn sockets_are_matched_by_role_then_by_bound_address() {
        let (a, b, c) = (local(), local(), local());
        let c_addr = c.local_addr().unwrap();
        let a_addr = a.local_addr().unwrap();
        let mut inherited = Inherited::new(vec![
            InheritedSocket {
                role: Some(Role::Listener(0)),
                configured: Some(any_port()),
                socket: a,
            },
            InheritedSocket {
                role: Some(Role::Listener(0)),
                configured: Some(any_port()),
                socket: b,
            },
            InheritedSocket {
                role: None,
                configured: None,
                socket: c,
            },
        ]);
        // Port 0 matches only by role: listener 1 gets nothing, the admin listener neither.
        assert!(inherited.take(Role::Listener(1), any_port()).is_empty());
        assert!(inherited.take(Role::Admin, any_port()).is_empty());
        let both = inherited.take(Role::Listener(0), any_port());
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].local_addr().unwrap(), a_addr);
        // systemd's socket, by the address it is bound to.
        let admin = inherited.take(Role::Admin, c_addr);
        assert_eq!(admin[0].local_addr().unwrap(), c_addr);
        assert!(inherited.is_empty());
    }

    #[test]
    fn fewer_inherited_sockets_than_workers_are_shared() {
        let a = local();
        let addr = a.local_addr().unwrap();
        let sockets = for_listener(any_port(), 3, vec![a]).unwrap();
        assert_eq!(sockets.len(), 3);
        assert!(sockets.iter().all(|s| s.local_addr().unwrap() == addr));
        // More inherited sockets than workers: all kept.
        let two = vec![local(), local()];
        assert_eq!(for_listener(any_port(), 1, two).unwrap().len(), 2);
    }
}
