//! Restarts and upgrades without dropping a connection, as nginx (SIGUSR2) and HAProxy (`-sf`)
//! do: a new kura takes the listening sockets over from the running one, which stops accepting
//! and drains within its grace period.
//!
//! - The running kura listens on a control socket (`--upgrade-socket PATH`, mode 0600,
//!   [`control`]); `kura serve … --takeover PATH` ([`takeover`]) receives every listening
//!   socket over it (SCM_RIGHTS, [`wire`]): client listeners (one per worker when
//!   thread-per-core), admin and peer listeners. They are the same sockets, with the same
//!   accept queues, so a connection waiting in a queue is never lost. The old kura accepts
//!   until the new one says it serves, then stops and drains.
//! - SIGUSR2 makes the running kura start its own binary with `--takeover` ([`reexec`]).
//! - systemd: socket activation (`LISTEN_FDS`) and `Type=notify` ([`systemd`]).

mod control;
mod reexec;
pub mod systemd;
mod takeover;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anyhow::Context as _;
use clap::Args;
use kura_config::Config;
use kura_proxy::{InheritedSocket, ServerHandle};
use tokio::sync::mpsc;

pub use control::Handover;
use control::{ControlSocket, Offered};
use reexec::Exec;

/// `kura serve`'s flags for replacing a running kura.
#[derive(Debug, Default, Args)]
pub struct UpgradeArgs {
    /// Listen here (a Unix socket, mode 0600) for a new kura that takes this one's listening
    /// sockets over (`--takeover PATH`); SIGUSR2 uses it too.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,

    /// Take the listening sockets over from the kura listening on this upgrade socket; it
    /// stops accepting once this one serves, and drains.
    #[arg(long, value_name = "PATH")]
    pub takeover: Option<PathBuf>,
}

/// What is read before anything else starts: the flags, the sockets systemd passed, and how
/// to start this binary again.
pub struct Setup {
    args: UpgradeArgs,
    systemd: Vec<InheritedSocket>,
    exec: Option<Exec>,
}

impl Setup {
    /// Call before any thread starts (it clears systemd's variables).
    pub fn new(args: UpgradeArgs) -> anyhow::Result<Setup> {
        let systemd = systemd::inherited()?;
        let exec = Exec::current().ok();
        Ok(Setup {
            args,
            systemd,
            exec,
        })
    }
}

/// The upgrade machinery of a running server: its control socket and the successor it
/// started, if any.
pub struct Upgrades {
    control: Option<ControlSocket>,
    /// The directory of a control socket made for SIGUSR2 when none was configured.
    _temporary: Option<tempfile::TempDir>,
    handovers_tx: mpsc::Sender<Handover>,
    handovers: mpsc::Receiver<Handover>,
    /// The listening sockets the control socket offers (duplicates, emptied by `stop`).
    offered: Offered,
    exec: Option<Exec>,
    /// A successor started by SIGUSR2 is still running and has not taken over yet.
    pending: Arc<AtomicBool>,
}

/// Starts the server: on the sockets of the kura named by `--takeover` (then tells it to
/// stop) and those systemd passed, binding the rest; then listens on the upgrade socket.
pub async fn start(setup: Setup, config: Config) -> anyhow::Result<(ServerHandle, Upgrades)> {
    let Setup {
        args,
        systemd,
        exec,
    } = setup;
    // Without a takeover, a kura still listening at the upgrade socket is an error before
    // anything is bound.
    let mut control = match (&args.takeover, &args.upgrade_socket) {
        (None, Some(path)) => Some(ControlSocket::bind(path, false)?),
        _ => None,
    };
    let (takeover, inherited) = match args.takeover.clone() {
        Some(path) => {
            let (t, i) = tokio::task::spawn_blocking(move || takeover::connect(&path))
                .await
                .context("takeover")??;
            (Some(t), Some(i))
        }
        None => (None, None),
    };
    let inherited = systemd::merge(inherited, systemd);
    let handle = kura_proxy::start_with(config, inherited)
        .await
        .context("cannot start")?;
    let took_over = takeover.is_some();
    if let Some(t) = takeover {
        let from = t.path().to_path_buf();
        let old_pid = t.old_pid;
        match tokio::task::spawn_blocking(move || t.confirm()).await {
            Ok(Ok(())) => tracing::info!(old_pid, "the old kura stopped accepting and drains"),
            Ok(Err(e)) => tracing::warn!("{e:#}; serving anyway"),
            Err(e) => tracing::warn!(error = %e, "takeover confirmation; serving anyway"),
        }
        // We serve now: a control socket that cannot be bound is logged, not fatal.
        if let Some(path) = &args.upgrade_socket {
            match ControlSocket::bind(path, *path == from) {
                Ok(c) => control = Some(c),
                Err(e) => tracing::error!("{e:#}; this kura cannot be replaced by a takeover"),
            }
        }
    }
    let (handovers_tx, handovers) = mpsc::channel(1);
    let mut upgrades = Upgrades {
        control,
        _temporary: None,
        handovers_tx,
        handovers,
        offered: Offered::default(),
        exec,
        pending: Arc::new(AtomicBool::new(false)),
    };
    if upgrades.control.is_some() {
        upgrades.serve(&handle)?;
    }
    systemd::ready(took_over);
    Ok((handle, upgrades))
}

impl Upgrades {
    /// The next confirmed takeover: stop accepting (`ServerHandle::begin_handover`), then
    /// answer it.
    pub async fn handover(&mut self) -> Option<Handover> {
        let h = self.handovers.recv().await?;
        // The successor owns the socket path from now on.
        if let Some(c) = &mut self.control {
            c.keep_file();
        }
        self.pending.store(false, Relaxed);
        Some(h)
    }

    /// The server stops (shutdown or handover): the offered duplicates are closed, so that
    /// only the accept loops hold the sockets, and the control socket with them (its file is
    /// removed unless a successor has the path).
    pub fn stop(&mut self) {
        self.offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.control = None;
        self._temporary = None;
    }

    fn serve(&mut self, handle: &ServerHandle) -> anyhow::Result<()> {
        *self.offered.lock().unwrap_or_else(|p| p.into_inner()) = handle.listening_sockets()?;
        if let Some(c) = &mut self.control {
            c.serve(self.offered.clone(), self.handovers_tx.clone());
        }
        Ok(())
    }

    /// SIGUSR2: starts this binary again with `--takeover`, through the upgrade socket (a
    /// temporary one when none is configured).
    pub fn start_successor(&mut self, handle: &ServerHandle) {
        if let Err(e) = self.try_start_successor(handle) {
            tracing::error!("SIGUSR2: no upgrade: {e:#}");
        }
    }

    fn try_start_successor(&mut self, handle: &ServerHandle) -> anyhow::Result<()> {
        if self.exec.is_none() {
            anyhow::bail!("this binary's path is unknown");
        }
        if self.pending.load(Relaxed) {
            anyhow::bail!("an upgrade is already under way");
        }
        if self.control.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("kura-upgrade-")
                .tempdir()
                .context("a directory for the upgrade socket")?;
            self.control = Some(ControlSocket::bind(
                &dir.path().join("upgrade.sock"),
                false,
            )?);
            self._temporary = Some(dir);
            self.serve(handle)?;
        }
        let (Some(control), Some(exec)) = (&self.control, &self.exec) else {
            anyhow::bail!("no upgrade socket");
        };
        let mut child = exec
            .spawn(control.path())
            .with_context(|| format!("cannot start {}", exec.exe().display()))?;
        let pid = child.id();
        tracing::info!(pid, exe = %exec.exe().display(), "SIGUSR2: started a new kura to take over");
        self.pending.store(true, Relaxed);
        let pending = self.pending.clone();
        let waited = std::thread::Builder::new()
            .name("kura-successor".into())
            .spawn(move || {
                let status = child.wait();
                if pending.swap(false, Relaxed) {
                    // It exited before taking over: we serve on.
                    match status {
                        Ok(s) => tracing::error!(pid, status = %s, "the new kura exited before taking over (its log says why); this one serves on"),
                        Err(e) => tracing::error!(pid, error = %e, "the new kura is lost"),
                    }
                }
            });
        if let Err(e) = waited {
            tracing::warn!(error = %e, "the new kura is not watched");
        }
        Ok(())
    }
}
