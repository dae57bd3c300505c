//! Reload triggers: the configuration file changing on disk (via `notify`), and SIGHUP.
//!
//! The watch starts before the file is first read, so an edit made while kura starts is
//! applied, not lost. It watches the file's directory, so an editor that writes a new file and
//! renames it over the old one is seen; when the path given is a symlink (a Kubernetes
//! ConfigMap, a `current` release link), the link's directory too, and the file is resolved
//! again after each change, so a retargeted link is followed. A reload waits until the writer
//! is done: 200 ms after the file was closed or renamed into place, or 2 s after the last write
//! of a writer that keeps it open (so a file written in pieces is not applied half-written).
//! It is skipped when the bytes did not change or the file is missing (mid-rename).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub type Reload = kura_proxy::ReloadHook;

/// Quiet time after the file was closed, created, renamed or removed before reloading.
const SETTLE: Duration = Duration::from_millis(200);
/// Quiet time after a write while the writer may still hold the file open.
const WRITING: Duration = Duration::from_secs(2);
/// A burst of events never delays a reload longer than this.
const AT_MOST: Duration = Duration::from_secs(10);

/// What an event says about the writer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Change {
    /// Written and maybe still open: more may come.
    Writing,
    /// Closed, created, renamed, removed, or events were lost: the file may be whole.
    Done,
}

/// The names the watch reacts to: the resolved file's name in its directory, and anything in
/// the directory of the path as given when that path is a symlink.
struct Targets {
    file: PathBuf,
    link_dir: Option<PathBuf>,
}

impl Targets {
    fn concerns(&self, path: &Path) -> bool {
        path.file_name() == self.file.file_name() && path.parent() == self.file.parent()
            || self
                .link_dir
                .as_deref()
                .is_some_and(|d| path.parent() == Some(d))
    }
}

/// The configuration file's watch, set up before the file is first read so that no change
/// made while kura starts is missed: events are queued until [`FileWatch::reload_with`] has a
/// reload to run.
pub struct FileWatch {
    path: PathBuf,
    watcher: notify::RecommendedWatcher,
    targets: Arc<Mutex<Targets>>,
    /// The directory of the resolved file, watched.
    dir: PathBuf,
    changes: mpsc::UnboundedReceiver<Change>,
    /// The bytes' hash before the first read (`None`: unreadable then).
    seen: Option<u64>,
}

/// `path` resolved, its directory, and the directory of `path` itself if it is a symlink.
fn resolve(path: &Path) -> (PathBuf, PathBuf, Option<PathBuf>) {
    let file = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let link_dir = is_link.then(|| {
        let given = path.parent().filter(|p| !p.as_os_str().is_empty());
        given
            .unwrap_or(Path::new("."))
            .canonicalize()
            .unwrap_or_else(|_| PathBuf::from("."))
    });
    let link_dir = link_dir.filter(|d| *d != dir);
    (file, dir, link_dir)
}

fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl FileWatch {
    /// Starts watching for changes to `path` (see the module doc).
    pub fn new(path: &Path) -> notify::Result<FileWatch> {
        let (file, dir, link_dir) = resolve(path);
        let targets = Arc::new(Mutex::new(Targets {
            file,
            link_dir: link_dir.clone(),
        }));
        let (tx, changes) = mpsc::unbounded_channel::<Change>();
        let filter = targets.clone();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let change = match ev {
                // Lost events or a watch gone wrong: look again.
                Err(_) => Change::Done,
                Ok(ev) if ev.need_rescan() => Change::Done,
                Ok(ev) => {
                    let concerned = {
                        let t = filter.lock().unwrap_or_else(|p| p.into_inner());
                        ev.paths.iter().any(|p| t.concerns(p))
                    };
                    match ev.kind {
                        _ if !concerned => return,
                        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Done,
                        EventKind::Access(_) => return,
                        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Change::Writing,
                        _ => Change::Done,
                    }
                }
            };
            let _ = tx.send(change);
        })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        if let Some(d) = &link_dir {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        }
        Ok(FileWatch {
            path: path.to_path_buf(),
            watcher,
            targets,
            dir,
            changes,
            seen: content_hash(path),
        })
    }

    /// Reloads on every change from now on, and once for changes already seen. The watch
    /// lives as long as the runtime.
    pub fn reload_with(self, reload: Reload) {
        let FileWatch {
            path,
            mut watcher,
            targets,
            mut dir,
            mut changes,
            mut seen,
        } = self;
        tokio::spawn(async move {
            while let Some(mut last) = changes.recv().await {
                // Wait for the writer to be done: quiet for long enough after its last event.
                let deadline = Instant::now() + AT_MOST;
                loop {
                    let quiet = match last {
                        Change::Writing => WRITING,
                        Change::Done => SETTLE,
                    };
                    let until = (Instant::now() + quiet).min(deadline);
                    match tokio::time::timeout_at(until, changes.recv()).await {
                        Ok(Some(c)) => last = c,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                // Follow a retargeted symlink: watch the directory the file is in now.
                let (file, now_dir, link_dir) = resolve(&path);
                if now_dir != dir && watcher.watch(&now_dir, RecursiveMode::NonRecursive).is_ok() {
                    let _ = watcher.unwatch(&dir);
                    dir = now_dir;
                }
                *targets.lock().unwrap_or_else(|p| p.into_inner()) = Targets { file, link_dir };
                match content_hash(&path) {
                    // Missing (between an unlink and a rename) or unchanged: nothing to do.
                    None => continue,
                    Some(h) if Some(h) == seen => continue,
                    Some(h) => seen = Some(h),
                }
                let _ = reload();
            }
        });
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
