//! Headless Chromium driven through the DevTools protocol, for tests of the pages kura serves
//! (the admin dashboard): open a URL, run JavaScript in the page, wait for a condition, read
//! the DOM, take a screenshot, and collect what the browser reported as errors (script
//! exceptions, Content-Security-Policy refusals).
//!
//! The browser is Debian's `chromium` (scripts/test.sh installs it when missing), or the binary
//! `KURA_CHROMIUM` names. When there is none, [`Browser::launch`] panics saying how to install
//! it: a test that needs a browser fails, it never passes silently. Chromium runs with
//! `--no-sandbox` (CI runs as root, where the sandbox cannot start) in a profile of its own in
//! a temporary directory, and only ever loads pages from this machine.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a browser has to start, and a DevTools command to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Names tried, in order, when `KURA_CHROMIUM` is not set.
const NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// A headless browser with one page open; closed (with its process group) when dropped.
pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

/// The Chromium binary to run: `KURA_CHROMIUM`, else the first of [`NAMES`] on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KURA_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| NAMES.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts headless Chromium with a `width` x `height` window and one blank page.
    ///
    /// Panics when no Chromium is installed, naming the package to install.
    pub async fn launch(width: u32, height: u32) -> Browser {
        let Some(bin) = chromium() else {
            panic!(
                "this test needs headless Chromium and none was found: install Debian's \
                 `chromium` package (`apt-get install chromium`; scripts/test.sh does it when \
                 it is missing) or set KURA_CHROMIUM to a Chromium or Chrome binary"
            );
        };
        let profile = tempfile::tempdir().expect("temporary profile");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that dropping the browser ends its helper processes too.
        .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        // A thread reads its stderr to the end (so it never blocks on a full pipe) and passes
        // on the DevTools address, or everything it said when it exits before.
        let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("DevTools listening on ") {
                    Some(url) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Ok(url.trim().to_string()));
                        }
                    }
                    None if tx.is_some() => seen.push(line),
                    None => {}
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(TIMEOUT))
            .await
            .expect("stderr reader")
            .unwrap_or_else(|_| panic!("{} did not open its DevTools port", bin.display()))
            .unwrap_or_else(|out| panic!("{} exited before DevTools:\n{out}", bin.display()));
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools connection");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        let target = b
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target = target["targetId"].as_str().expect("target id").to_string();
        let attached = b
            .command(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.command(domain, json!({})).await;
        }
        b
    }

    /// Sends one DevTools command (to the page once attached) and returns its result; events
    /// read meanwhile are kept when they report an error. Panics on a protocol error.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("DevTools send");
        let reply = tokio::time::timeout(TIMEOUT, async {
            while let Some(m) = self.ws.next().await {
                let Ok(Message::Text(text)) = m else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if v["id"] == json!(id) {
                    return Some(v);
                }
                self.note_event(&v);
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
        .unwrap_or_else(|| panic!("DevTools closed during {method}"));
        if let Some(e) = reply.get("error") {
            panic!("DevTools {method}: {e}");
        }
        reply["result"].clone()
    }

    fn note_event(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &v["params"]["exceptionDetails"];
                self.errors.push(format!(
                    "exception: {} {}",
                    d["text"].as_str().unwrap_or(""),
                    d["exception"]["description"].as_str().unwrap_or("")
                ));
            }
            Some("Log.entryAdded") => {
                let e = &v["params"]["entry"];
                if e["level"] == "error" {
                    self.errors.push(format!(
                        "{}: {} ({})",
                        e["source"].as_str().unwrap_or(""),
                        e["text"].as_str().unwrap_or(""),
                        e["url"].as_str().unwrap_or("")
                    ));
                }
            }
            Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                self.errors
                    .push(format!("console.error: {}", v["params"]["args"]));
            }
            _ => {}
        }
    }

    /// Errors the page reported so far: exceptions, `console.error`, and the browser's error
    /// log (Content-Security-Policy refusals, failed loads).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Opens `url` in the page and waits until it has loaded.
    pub async fn open(&mut self, url: &str) {
        // A mark on the page being left: the new one has loaded when the mark is gone and its
        // document is complete (the same URL opened again included).
        self.eval("window.__kuraLeaving = true").await;
        let r = self.command("Page.navigate", json!({"url": url})).await;
        if let Some(e) = r.get("errorText") {
            panic!("{url} did not load: {e}");
        }
        assert!(
            self.wait_for(
                "window.__kuraLeaving === undefined && document.readyState === 'complete'",
                TIMEOUT
            )
            .await,
            "{url} did not finish loading"
        );
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is `true`, for at most `within`.
    pub async fn wait_for(&mut self, expr: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.eval(expr).await == json!(true) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's DOM now, as HTML.
    pub async fn html(&mut self) -> String {
        let v = self.eval("document.documentElement.outerHTML").await;
        v.as_str().expect("HTML text").to_string()
    }

    /// Saves a PNG of the whole page (beyond the window when it is taller) to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let m = self.command("Page.getLayoutMetrics", json!({})).await;
        let size = &m["cssContentSize"];
        let clip = json!({
            "x": 0, "y": 0, "scale": 1,
            "width": size["width"].as_f64().unwrap_or(1280.0),
            "height": size["height"].as_f64().unwrap_or(1024.0),
        });
        let r = self
            .command(
                "Page.captureScreenshot",
                json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser's helpers (renderer, GPU, zygote) are in its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
