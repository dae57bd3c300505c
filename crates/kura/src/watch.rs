//! Reload triggers: the configuration file changing on disk (via `notify`, watching the file's
//! directory so that editors that write a new file and rename it over the old one are seen),
//! and SIGHUP. Bursts of events are coalesced into one reload. The watch starts before the file
//! is first read, so an edit made while kura starts is applied, not lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub type Reload = kura_proxy::ReloadHook;

/// How long to wait after a change for more changes before reloading once.
const SETTLE: Duration = Duration::from_millis(200);

/// The configuration file's watch, set up before the file is first read so that no change
/// made while kura starts is missed: events are queued until [`FileWatch::reload_with`] has a
/// reload to run (at worst one extra reload of an unchanged file).
pub struct FileWatch {
    watcher: notify::RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
}

impl FileWatch {
    /// Starts watching `path`'s directory for changes to `path`.
    pub fn new(path: &Path) -> notify::Result<FileWatch> {
        let file = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = file.file_name().map(|n| n.to_os_string());
        let (tx, changes) = mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if ev.kind.is_access() {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(FileWatch { watcher, changes })
    }

    /// Reloads on every change from now on, and once for changes already seen. The returned
    /// watcher must be kept alive.
    pub fn reload_with(self, reload: Reload) -> notify::RecommendedWatcher {
        let mut rx = self.changes;
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let the writer finish, and fold the burst of events it caused into one reload.
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                let _ = reload();
            }
        });
        self.watcher
    }
}

/// Reloads on every SIGHUP received on `hup`, which the caller creates before the server starts
/// so that a SIGHUP sent while kura starts is applied instead of ending the process.
pub fn on_sighup(mut hup: tokio::signal::unix::Signal, reload: Reload) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading configuration");
            let _ = reload();
        }
    });
}

/// Without a configuration file (quick mode) there is nothing to reload: a SIGHUP is logged and
/// kura goes on serving, as it does with a file.
pub fn on_sighup_without_file(mut hup: tokio::signal::unix::Signal) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::warn!("SIGHUP: no configuration file to reload (started without --config)");
        }
    });
}
