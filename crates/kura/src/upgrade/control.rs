//! The running kura's side: a control socket (a Unix socket, mode 0600) where a new kura asks
//! for the listening sockets. One takeover at a time; once one succeeded the control socket is
//! closed (its path now belongs to the new process) and the server drains.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use kura_proxy::{Listening, Role};
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, FDS_PER_FRAME, Message, SocketInfo, VERSION};

/// How long a connecting process has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A takeover the new process confirmed: the server must stop accepting, then answer `done`
/// (which tells the new process so).
pub struct Handover {
    /// The new process.
    pub pid: u32,
    pub done: oneshot::Sender<()>,
}

/// A bound control socket, removed on drop unless a successor has it now.
pub struct ControlSocket {
    path: PathBuf,
    /// The socket file's inode, to tell ours from a successor's at the same path.
    ino: (u64, u64),
    listener: Option<UnixListener>,
    /// A successor took over: the path is its business now.
    keep: bool,
}

impl ControlSocket {
    /// Binds `path`, mode 0600. A socket file nobody listens on (left by a kura that stopped)
    /// is replaced; a kura listening there, or a file that is not a socket, is an error. With
    /// `replacing`, the caller has just taken over from the kura that listened there, and the
    /// file is replaced whatever it is, if it is a socket.
    pub fn bind(path: &Path, replacing: bool) -> anyhow::Result<ControlSocket> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => anyhow::bail!(
                "upgrade socket {}: the path exists and is not a socket",
                path.display()
            ),
            Ok(_) => {
                if !replacing && UnixStream::connect(path).is_ok() {
                    anyhow::bail!(
                        "upgrade socket {}: a kura already listens there (to replace it, start \
                         with --takeover {})",
                        path.display(),
                        path.display()
                    );
                }
                std::fs::remove_file(path)
                    .with_context(|| format!("upgrade socket {}: cannot remove", path.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("upgrade socket {}", path.display()));
            }
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("upgrade socket {}: cannot listen", path.display()))?;
        // Only this user may connect (and the peer's uid is checked as well).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("upgrade socket {}: cannot set its mode", path.display()))?;
        let m = std::fs::symlink_metadata(path)?;
        tracing::info!(path = %path.display(), "upgrade socket listening");
        Ok(ControlSocket {
            path: path.to_path_buf(),
            ino: (m.dev(), m.ino()),
            listener: Some(listener),
            keep: false,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the file in place when dropped: a successor binds its own socket there.
    pub fn keep_file(&mut self) {
        self.keep = true;
    }

    /// Serves takeovers on a thread of its own, offering `sockets` (emptied when the server
    /// shuts down, so that these duplicates keep no socket open); a confirmed takeover is sent
    /// on `handovers`, and the thread ends once it is done.
    pub fn serve(&mut self, sockets: Offered, handovers: mpsc::Sender<Handover>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("kura-upgrade".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let stream = match conn {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "upgrade socket: accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    };
                    match offer(&stream, &sockets, &handovers) {
                        Ok(()) => return,
                        Err(e) => tracing::warn!("takeover refused or abandoned: {e:#}"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "upgrade socket not served");
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Remove the file only if it is still ours: after a takeover the new kura binds its
        // own socket at the same path.
        if !self.keep
            && let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening sockets a control socket offers, shared with the server's side.
pub type Offered = Arc<Mutex<Vec<Listening>>>;

/// One takeover, from the new process's hello to its `ready` and our `stopped`.
fn offer(
    stream: &UnixStream,
    offered: &Offered,
    handovers: &mpsc::Sender<Handover>,
) -> anyhow::Result<()> {
    let pid = match wire::check_peer(stream) {
        Ok(pid) => pid,
        Err(e) => {
            let reason = e.to_string();
            let _ = wire::send(stream, &Message::Refused { reason }, &[]);
            return Err(e.into());
        }
    };
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    match wire::recv(stream).context("waiting for hello")?.0 {
        Message::Hello { version, .. } if version == VERSION => {}
        Message::Hello { version, .. } => {
            let reason = format!("protocol version {version}, this kura speaks {VERSION}");
            let _ = wire::send(stream, &Message::Refused { reason }, &[]);
            anyhow::bail!("pid {pid}: protocol version {version}");
        }
        other => anyhow::bail!("pid {pid}: expected hello, got {other:?}"),
    }
    tracing::info!(pid, "takeover asked: offering the listening sockets");
    // Duplicates for this exchange: the shared list may be emptied meanwhile.
    let sockets = offered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|l| {
            Ok(Listening {
                role: l.role,
                configured: l.configured,
                socket: l.socket.try_clone()?,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    if sockets.is_empty() {
        let reason = "this kura is shutting down".to_string();
        let _ = wire::send(stream, &Message::Refused { reason }, &[]);
        anyhow::bail!("pid {pid}: shutting down");
    }
    let infos = sockets
        .iter()
        .map(|l| {
            let (role, index) = match l.role {
                Role::Listener(i) => ("listener", Some(i)),
                Role::Admin => ("admin", None),
                Role::Peer => ("peer", None),
            };
            Ok(SocketInfo {
                role: role.into(),
                index,
                configured: l.configured,
                bound: l.socket.local_addr()?,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let msg = Message::Offer {
        version: VERSION,
        pid: std::process::id(),
        sockets: infos,
    };
    wire::send(stream, &msg, &[])?;
    for batch in sockets.chunks(FDS_PER_FRAME) {
        let fds: Vec<_> = batch.iter().map(|l| l.socket.as_fd()).collect();
        wire::send(stream, &Message::Fds { count: fds.len() }, &fds)?;
    }
    // The new process may take a while to start (a large disk cache to index): we serve
    // meanwhile, and a closed connection is an abandoned takeover.
    stream.set_read_timeout(None)?;
    match wire::recv(stream)
        .context("waiting for the new kura to serve")?
        .0
    {
        Message::Ready => {}
        other => anyhow::bail!("pid {pid}: expected ready, got {other:?}"),
    }
    let (done, stopped) = oneshot::channel();
    handovers
        .blocking_send(Handover { pid, done })
        .map_err(|_| anyhow::anyhow!("the server is shutting down"))?;
    // Once stopped is answered, the server no longer accepts on its sockets.
    stopped
        .blocking_recv()
        .map_err(|_| anyhow::anyhow!("the server is shutting down"))?;
    if let Err(e) = wire::send(stream, &Message::Stopped, &[]) {
        tracing::warn!(pid, error = %e, "the new kura did not hear that this one stopped");
    }
    Ok(())
}
