//! Reload triggers: the configuration file changing on disk (via `notify`, watching the file's
//! directory so that editors that write a new file and rename it over the old one are seen),
//! and SIGHUP. Bursts of events are coalesced into one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub type Reload = kura_proxy::ReloadHook;

/// How long to wait after a change for more changes before reloading once.
const SETTLE: Duration = Duration::from_millis(200);

/// Watches `path` and reloads on change. The returned watcher must be kept alive.
pub fn watch_file(path: &Path, reload: Reload) -> notify::Result<notify::RecommendedWatcher> {
    let file = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = file.file_name().map(|n| n.to_os_string());
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
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
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the writer finish, and fold the burst of events it caused into one reload.
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let _ = reload();
        }
    });
    Ok(watcher)
}

/// Reloads on every SIGHUP.
pub fn on_sighup(reload: Reload) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading configuration");
            let _ = reload();
        }
    });
    Ok(())
}
