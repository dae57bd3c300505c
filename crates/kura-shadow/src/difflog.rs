//! The JSON-lines file of differing exchanges (`shadow.diff_log`): one object per line, written
//! by its own thread from a bounded queue so a slow disk never holds up a comparison (a full
//! queue drops the line and counts it). Reopened on SIGUSR1 for log rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

const QUEUE: usize = 4096;

enum Msg {
    Line(String),
    Reopen,
}

/// The diff log: lines go through a bounded queue to a thread of its own, which appends them
/// to the file.
pub struct DiffLog {
    tx: SyncSender<Msg>,
    /// Lines dropped because the queue was full (the disk fell behind).
    pub dropped: Arc<AtomicU64>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl DiffLog {
    /// Opens (creating) `path` for appending; fails now rather than at the first difference.
    pub fn open(path: &Path) -> io::Result<DiffLog> {
        let file = open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("shadow diff log {}: {e}", path.display()))
        })?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("kura-shadow-log".into())
            .spawn(move || run(path, file, rx))?;
        Ok(DiffLog {
            tx,
            dropped: Arc::default(),
        })
    }

    /// Queues one line (a JSON object, without its newline); dropped and counted when the queue
    /// is full.
    pub fn write(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Line(line)) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Has the writer reopen the file by its path, after rotation; lines queued before still go
    /// to the old file.
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

fn run(path: PathBuf, file: File, rx: Receiver<Msg>) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(l) => {
                    let _ = out.write_all(l.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    match open(&path) {
                        Ok(f) => out = BufWriter::new(f),
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "shadow diff log not reopened")
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::warn!(path = %path.display(), error = %e, "shadow diff log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_the_file_is_reopened_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("diffs.jsonl");
        let log = DiffLog::open(&path).unwrap();
        log.write("{\"a\":1}".into());
        let wait = |p: &Path, want: &str| {
            // The writer thread may be slow to run on a loaded machine.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if std::fs::read_to_string(p).unwrap_or_default() == want {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("{} never held {want:?}", p.display());
        };
        wait(&path, "{\"a\":1}\n");
        let rotated = dir.path().join("diffs.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.write("{\"b\":2}".into());
        wait(&path, "{\"b\":2}\n");
        wait(&rotated, "{\"a\":1}\n");
        assert!(DiffLog::open(&dir.path().join("no/such/dir/x")).is_err());
    }
}
