//! The new kura's side: connect to the running kura's control socket, receive its listening
//! sockets, serve on them, then tell it to stop accepting and wait until it has.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use kura_proxy::{Inherited, InheritedSocket, Role};

use super::wire::{self, Message, VERSION};

/// How long the running kura has to answer each step.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A takeover in progress: the sockets are ours, the old kura still accepts until
/// [`Takeover::confirm`].
pub struct Takeover {
    stream: UnixStream,
    path: PathBuf,
    /// The running kura's pid.
    pub old_pid: u32,
}

/// Asks the kura listening at `path` for its listening sockets.
pub fn connect(path: &Path) -> anyhow::Result<(Takeover, Inherited)> {
    let shown = path.display();
    let stream = UnixStream::connect(path).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file: is the running kura started with \
                                        --upgrade-socket at this path?"
                .to_string(),
            io::ErrorKind::ConnectionRefused => {
                "nothing listens there (a socket file left by a kura that stopped?)".to_string()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("--takeover {shown}: {why}")
    })?;
    let old_pid = wire::check_peer(&stream).with_context(|| format!("--takeover {shown}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let hello = Message::Hello {
        version: VERSION,
        pid: std::process::id(),
    };
    wire::send(&stream, &hello, &[]).with_context(|| format!("--takeover {shown}"))?;
    let sockets = match wire::recv(&stream)
        .with_context(|| format!("--takeover {shown}: no answer from the running kura"))?
        .0
    {
        Message::Offer { sockets, .. } => sockets,
        Message::Refused { reason } => {
            anyhow::bail!("--takeover {shown}: the running kura refused: {reason}")
        }
        other => anyhow::bail!("--takeover {shown}: unexpected answer {other:?}"),
    };
    let mut fds = Vec::with_capacity(sockets.len());
    while fds.len() < sockets.len() {
        let (msg, batch) = wire::recv(&stream).with_context(|| format!("--takeover {shown}"))?;
        match msg {
            Message::Fds { count } if count == batch.len() => fds.extend(batch),
            other => anyhow::bail!(
                "--takeover {shown}: expected descriptors, got {other:?} with {}",
                batch.len()
            ),
        }
    }
    if fds.len() != sockets.len() {
        anyhow::bail!(
            "--takeover {shown}: {} sockets described, {} received",
            sockets.len(),
            fds.len()
        );
    }
    let mut inherited = Vec::with_capacity(fds.len());
    for (info, fd) in sockets.into_iter().zip(fds) {
        let socket = std::net::TcpListener::from(fd);
        let bound = socket
            .local_addr()
            .with_context(|| format!("--takeover {shown}: a received socket"))?;
        if bound != info.bound {
            anyhow::bail!(
                "--takeover {shown}: a socket said to be on {} is on {bound}",
                info.bound
            );
        }
        let role = match (info.role.as_str(), info.index) {
            ("listener", Some(i)) => Some(Role::Listener(i)),
            ("admin", _) => Some(Role::Admin),
            ("peer", _) => Some(Role::Peer),
            _ => None,
        };
        inherited.push(InheritedSocket {
            role,
            configured: Some(info.configured),
            socket,
        });
    }
    tracing::info!(
        old_pid,
        sockets = inherited.len(),
        "took the listening sockets over"
    );
    Ok((
        Takeover {
            stream,
            path: path.to_path_buf(),
            old_pid,
        },
        Inherited::new(inherited),
    ))
}

impl Takeover {
    /// We serve on the sockets: the old kura may stop accepting. Returns once it has. An error
    /// here is not ours to fix (the old kura went away): we serve either way.
    pub fn confirm(self) -> anyhow::Result<()> {
        let shown = self.path.display();
        wire::send(&self.stream, &Message::Ready, &[])
            .with_context(|| format!("--takeover {shown}: telling the old kura"))?;
        match wire::recv(&self.stream)
            .with_context(|| format!("--takeover {shown}: waiting for the old kura to stop"))?
            .0
        {
            Message::Stopped => Ok(()),
            other => anyhow::bail!("--takeover {shown}: unexpected answer {other:?}"),
        }
    }

    /// Where the old kura listened for takeovers.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
