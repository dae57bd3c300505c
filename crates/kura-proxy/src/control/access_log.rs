//! The access log: one line per exchange, in nginx's combined format followed by the host,
//! vhost, upstream address, request time, upstream response time, request id and the error
//! kura answered with (`side/kind`, `-` for none), or as JSON (the error with its cause).
//!
//! Lines are formatted on the request's thread and handed to a dedicated writer thread through
//! a bounded queue; when the writer falls behind, lines are dropped and counted rather than
//! slowing requests. [`AccessLog::reopen`] (SIGUSR1) makes the writer reopen its file, for
//! logrotate. `tracing` is not used for this: access logs are data with their own format,
//! destination and rotation, not diagnostics.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use kura_config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use prometheus::IntCounter;

use crate::errors::ProxyError;

/// What one line says.
pub struct Entry<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes_sent: u64,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub host: &'a str,
    pub vhost: &'a str,
    pub upstream: &'a str,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
    /// The request's id (`X-Request-Id`).
    pub request_id: &'a str,
    /// Why kura answered with an error page, if it did.
    pub error: Option<&'a ProxyError>,
}

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

/// Handle to the writer thread; cheap to share.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the target (failing now if it cannot be written) and starts the writer.
    pub fn start(cfg: &AccessLogConfig, dropped: IntCounter) -> io::Result<Self> {
        let sink = Sink::open(&cfg.target)?;
        let (tx, rx) = sync_channel(cfg.buffer_lines);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("kura-access-log".into())
            .spawn(move || writer(rx, sink, flag))?;
        Ok(AccessLog {
            tx,
            format: cfg.format,
            reopen,
            dropped,
        })
    }

    pub fn log(&self, e: &Entry<'_>) {
        let line = match self.format {
            AccessLogFormat::Combined => combined(e),
            AccessLogFormat::Json => json(e),
        };
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Reopens the file before the next write (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Waits until every line logged so far is written (bounded by `timeout`).
    pub fn flush(&self, timeout: Duration) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(PathBuf, BufWriter<File>),
}

impl Sink {
    fn open(target: &AccessLogTarget) -> io::Result<Self> {
        Ok(match target {
            AccessLogTarget::Stdout => Sink::Stdout(io::stdout()),
            AccessLogTarget::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(path)?;
                Sink::File(path.clone(), BufWriter::with_capacity(64 * 1024, f))
            }
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(s) => s,
            Sink::File(_, w) => w,
        }
    }
}

fn writer(rx: Receiver<Msg>, mut sink: Sink, reopen: Arc<AtomicBool>) {
    let handle = |msg: Msg, sink: &mut Sink| {
        // Checked per message: a line logged after SIGUSR1 goes to the new file.
        if reopen.load(Relaxed)
            && reopen.swap(false, Relaxed)
            && let Sink::File(path, w) = sink
        {
            let _ = w.flush();
            match Sink::open(&AccessLogTarget::File(path.clone())) {
                Ok(s) => *sink = s,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen access log")
                }
            }
        }
        match msg {
            Msg::Line(line) => {
                let _ = sink.out().write_all(line.as_bytes());
            }
            Msg::Flush(done) => {
                let _ = sink.out().flush();
                let _ = done.send(());
            }
        }
    };
    while let Ok(first) = rx.recv() {
        handle(first, &mut sink);
        // Write everything already queued, then flush once.
        while let Ok(next) = rx.try_recv() {
            handle(next, &mut sink);
        }
        let _ = sink.out().flush();
    }
    let _ = sink.out().flush();
}

/// `22/Nov/2026:10:00:00 +0000`, formatted once per second per thread.
fn time_local() -> String {
    thread_local! {
        static CACHE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Local::now();
    let secs = now.timestamp();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1 = now.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            c.0 = secs;
        }
        c.1.clone()
    })
}

/// nginx-style escaping: `"`, `\` and bytes outside printable ASCII become `\xHH`.
fn escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn combined(e: &Entry<'_>) -> String {
    let mut l = String::with_capacity(256);
    l.push_str(e.client);
    l.push_str(" - - [");
    l.push_str(&time_local());
    l.push_str("] \"");
    escape(&mut l, e.method);
    l.push(' ');
    escape(&mut l, e.target);
    l.push(' ');
    l.push_str(e.version);
    let _ = write!(l, "\" {} {} \"", e.status, e.bytes_sent);
    escape(&mut l, dash(e.referer));
    l.push_str("\" \"");
    escape(&mut l, dash(e.user_agent));
    l.push_str("\" \"");
    escape(&mut l, dash(e.host));
    l.push_str("\" \"");
    escape(&mut l, dash(e.vhost));
    l.push_str("\" ");
    l.push_str(dash(e.upstream));
    let _ = write!(l, " {:.3} ", e.request_time.as_secs_f64());
    match e.upstream_time {
        Some(t) => {
            let _ = write!(l, "{:.3}", t.as_secs_f64());
        }
        None => l.push('-'),
    }
    l.push(' ');
    escape(&mut l, dash(e.request_id));
    l.push(' ');
    l.push_str(e.error.map_or("-", |e| e.kind()));
    l.push('\n');
    l
}

fn json(e: &Entry<'_>) -> String {
    let v = serde_json::json!({
        "time": chrono::Local::now().to_rfc3339(),
        "client": e.client,
        "method": e.method,
        "target": e.target,
        "version": e.version,
        "status": e.status,
        "bytes_sent": e.bytes_sent,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "host": e.host,
        "vhost": e.vhost,
        "upstream": e.upstream,
        "request_time": e.request_time.as_secs_f64(),
        "upstream_time": e.upstream_time.map(|t| t.as_secs_f64()),
        "request_id": e.request_id,
        "error": e.error.map(|e| serde_json::json!({
            "side": e.side().as_str(),
            "kind": e.kind(),
            "cause": e.to_string(),
        })),
    });
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "10.0.0.1",
            method: "GET",
            target: "/a?b=\"c\"",
            version: "HTTP/1.1",
            status: 200,
            bytes_sent: 512,
            referer: "",
            user_agent: "curl/8.0",
            host: "example.com",
            vhost: "site",
            upstream: "127.0.0.1:9000",
            request_time: Duration::from_millis(12),
            upstream_time: Some(Duration::from_millis(10)),
            request_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            error: None,
        }
    }

    #[test]
    fn combined_line_shape() {
        let l = combined(&entry());
        let re = regex::Regex::new(
            r#"^10\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /a\?b=\\x22c\\x22 HTTP/1\.1" 200 512 "-" "curl/8\.0" "example\.com" "site" 127\.0\.0\.1:9000 0\.012 0\.010 4bf92f3577b34da6a3ce929d0e0e4736 -\n$"#,
        )
        .unwrap();
        assert!(re.is_match(&l), "{l}");
    }

    #[test]
    fn json_line_parses() {
        let l = json(&entry());
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["target"], "/a?b=\"c\"");
        assert_eq!(v["upstream_time"], 0.01);
        assert_eq!(v["request_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn writer_reopens_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let cfg = AccessLogConfig {
            target: AccessLogTarget::File(path.clone()),
            format: AccessLogFormat::Combined,
            buffer_lines: 16,
        };
        let log = AccessLog::start(&cfg, IntCounter::new("d", "d").unwrap()).unwrap();
        log.log(&entry());
        log.flush(Duration::from_secs(5));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.log(&entry());
        log.flush(Duration::from_secs(5));
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1);
        assert_eq!(new.lines().count(), 1);
    }
}
