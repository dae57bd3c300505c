//! The background side of shadowing: per rule, at most `queue` jobs waiting and `concurrency`
//! in progress, each sending its request to the rule's targets (and the second primary),
//! reading their answers, waiting for the primary's, and recording the comparison. Limits are
//! per rule so that one slow target cannot starve the shadows of another rule.
//!
//! Nothing here runs on the request path: [`Shadow::submit`] is an atomic admission check and
//! a `try_send` to the dispatcher (on the control runtime), dropping the job (and counting it)
//! when the rule's queue is full, so a slow or dead shadow costs the primary nothing but that.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::{join, join_all};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use kura_config::{HeaderEdits, ShadowConfig};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

use crate::capture::{BodyCopy, Chunks, PrimaryAnswer};
use crate::compare::{Answer, Difference, compare};
use crate::difflog::DiffLog;
use crate::html;
use crate::latency::{LatencyThresholds, TargetLatency, Timing};
use crate::report::{ReportSettings, Reports, Snapshot};
use crate::rule::{BoxError, ShadowRule, Upstream};

/// The request body of a job: known now (bodiless requests), or when the primary has read it.
pub enum BodySource {
    /// The whole body (empty for a bodiless request).
    Ready(Bytes),
    /// A copy still streaming to the primary; the job waits for it up to the shadow `timeout`.
    Pending(BodyCopy),
}

/// One shadowed request.
pub struct Job {
    /// The rule that selected the request: its targets, comparison options and queue.
    pub rule: Arc<ShadowRule>,
    /// The endpoint the exchange is reported under ([`ShadowRule::endpoint`]).
    pub endpoint: String,
    /// The request method, sent unchanged to every target.
    pub method: Method,
    /// Path and query as sent to the primary.
    pub uri: Uri,
    /// Headers as sent to the primary (before each target's edits).
    pub headers: HeaderMap,
    /// The request body, sent to every target.
    pub body: BodySource,
    /// The primary's answer, once the client has received it whole.
    pub primary: PrimaryAnswer,
    /// The span of the request copied: the copy's events carry its request id.
    pub span: tracing::Span,
}

/// Why a selected request was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The queue was full (shadows slower than the traffic).
    QueueFull,
    /// The request body was larger than `max_request_body`.
    BodyTooLarge,
    /// The request body did not arrive whole (the client's fault, or too slow).
    BodyIncomplete,
    /// The primary failed or its answer was not read whole: nothing to compare with.
    PrimaryUnavailable,
}

impl DropReason {
    /// Every reason, in the order of their counters (a reason's discriminant is its index).
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::BodyTooLarge,
        DropReason::BodyIncomplete,
        DropReason::PrimaryUnavailable,
    ];

    /// The reason's label in metrics and the report's counters (`queue_full`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::BodyTooLarge => "body_too_large",
            DropReason::BodyIncomplete => "body_incomplete",
            DropReason::PrimaryUnavailable => "primary_unavailable",
        }
    }
}

/// What became of each target's copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TargetCounts {
    /// Copies whose answer matched the primary's (ignored headers and fields aside).
    pub same: u64,
    /// Copies whose answer differed from the primary's in at least one field.
    pub different: u64,
    /// Copies that got no whole answer: the connection, the upstream or the body failed.
    pub error: u64,
    /// Copies whose answer was not read whole within the shadow `timeout`.
    pub timeout: u64,
}

#[derive(Default)]
struct Counters {
    selected: AtomicU64,
    dropped: [AtomicU64; 4],
    targets: Mutex<BTreeMap<String, TargetCounts>>,
    latency: Mutex<BTreeMap<String, TargetLatency>>,
}

/// Counter values, for metrics and the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CountersSnapshot {
    /// Requests a rule selected (filters and sample), whether they were shadowed or dropped.
    pub selected: u64,
    /// Selected requests not compared, by [`DropReason::as_str`] (every reason is present).
    pub dropped: BTreeMap<&'static str, u64>,
    /// What became of each target's copies, by target name.
    pub targets: BTreeMap<String, TargetCounts>,
    /// Diff log lines dropped because the writer fell behind (0 without a diff log).
    pub diff_log_dropped: u64,
}

struct Inner {
    cfg: ShadowConfig,
    reports: Reports,
    counters: Counters,
    diff_log: Option<DiffLog>,
}

/// The shadow engine: the dispatcher of background jobs, the report and the counters, shared
/// by every rule.
pub struct Shadow {
    tx: mpsc::Sender<Job>,
    inner: Arc<Inner>,
}

impl Shadow {
    /// Starts the dispatcher on the current tokio runtime.
    pub fn start(cfg: &ShadowConfig) -> io::Result<Arc<Shadow>> {
        let diff_log = match &cfg.diff_log {
            Some(p) => Some(DiffLog::open(p)?),
            None => None,
        };
        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            reports: Reports::new(ReportSettings {
                max_endpoints: cfg.max_endpoints,
                max_fields: cfg.max_fields,
                examples: cfg.examples,
                relative_threshold: cfg.relative_threshold,
                absolute_threshold: cfg.absolute_threshold,
                latency: LatencyThresholds {
                    relative: cfg.latency_relative_threshold,
                    absolute: cfg.latency_absolute_threshold,
                },
            }),
            counters: Counters::default(),
            diff_log,
        });
        // The dispatcher hands jobs to tasks at once; admission is per rule (`ShadowRule`).
        let (tx, rx) = mpsc::channel(cfg.queue.max(1024));
        tokio::spawn(dispatch(inner.clone(), rx));
        Ok(Arc::new(Shadow { tx, inner }))
    }

    /// The `[shadow]` settings it was started with (the request path reads its body limits).
    pub fn settings(&self) -> &ShadowConfig {
        &self.inner.cfg
    }

    /// Queues `job`; false (and counted) when its rule's queue is full.
    pub fn submit(&self, job: Job) -> bool {
        self.inner.counters.selected.fetch_add(1, Relaxed);
        if !job.rule.admit() {
            self.count(DropReason::QueueFull);
            return false;
        }
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                job.rule.done();
                self.count(DropReason::QueueFull);
                false
            }
        }
    }

    /// Counts a selected request that was not shadowed.
    pub fn drop_selected(&self, why: DropReason) {
        self.inner.counters.selected.fetch_add(1, Relaxed);
        self.count(why);
    }

    fn count(&self, why: DropReason) {
        self.inner.count(why);
    }

    /// The report as it stands: per endpoint and field, rates, verdicts and examples.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.reports.snapshot()
    }

    /// The report's live counts (metrics read [`Reports::summary`] from them).
    pub fn reports(&self) -> &Reports {
        &self.inner.reports
    }

    /// The counters as they stand: selected, dropped by reason, per-target results, diff log
    /// drops.
    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.inner.counters;
        CountersSnapshot {
            selected: c.selected.load(Relaxed),
            dropped: DropReason::ALL
                .iter()
                .map(|d| (d.as_str(), c.dropped[*d as usize].load(Relaxed)))
                .collect(),
            targets: lock(&c.targets).clone(),
            diff_log_dropped: self
                .inner
                .diff_log
                .as_ref()
                .map_or(0, |l| l.dropped.load(Relaxed)),
        }
    }

    /// Per target, the Prometheus histograms of the primary's and the target's times to the
    /// response head over the exchanges compared (since start: never reset).
    pub fn latency(&self) -> BTreeMap<String, TargetLatency> {
        lock(&self.inner.counters.latency).clone()
    }

    /// Forgets the report (counters stay: they are Prometheus counters).
    pub fn reset(&self) {
        self.inner.reports.reset();
    }

    /// Reopens the diff log after log rotation (SIGUSR1); nothing without a diff log.
    pub fn reopen_diff_log(&self) {
        if let Some(l) = &self.inner.diff_log {
            l.reopen();
        }
    }

    /// The report and the counters, as the admin API's JSON.
    pub fn report_json(&self) -> serde_json::Value {
        serde_json::json!({
            "counters": self.counters(),
            "report": self.snapshot(),
        })
    }

    /// The report and the counters as one HTML page, for the admin API's `/shadow.html`.
    pub fn report_html(&self) -> String {
        let c = self.counters();
        let mut rows: Vec<(String, u64)> = vec![("selected".into(), c.selected)];
        for (k, v) in &c.dropped {
            rows.push((format!("dropped: {k}"), *v));
        }
        for (t, n) in &c.targets {
            rows.push((format!("{t}: same"), n.same));
            rows.push((format!("{t}: different"), n.different));
            rows.push((format!("{t}: error"), n.error));
            rows.push((format!("{t}: timeout"), n.timeout));
        }
        let totals = html::Totals {
            rows: rows.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        };
        html::render(&self.snapshot(), &totals)
    }
}

impl Inner {
    fn count(&self, why: DropReason) {
        self.counters.dropped[why as usize].fetch_add(1, Relaxed);
    }

    fn count_target(&self, target: &str, f: impl FnOnce(&mut TargetCounts)) {
        with_entry(&self.counters.targets, target, f)
    }

    fn count_latency(&self, target: &str, t: Timing) {
        with_entry(&self.counters.latency, target, |l| {
            l.primary.observe(t.primary);
            l.candidate.observe(t.candidate);
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Updates a target's entry (made on its first use: target names come from the config).
fn with_entry<T: Default>(map: &Mutex<BTreeMap<String, T>>, target: &str, f: impl FnOnce(&mut T)) {
    let mut m = lock(map);
    match m.get_mut(target) {
        Some(c) => f(c),
        None => f(m.entry(target.to_string()).or_default()),
    }
}

async fn dispatch(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        let inner = inner.clone();
        let span = job.span.clone();
        let copy = async move {
            let rule = job.rule.clone();
            if let Ok(_slot) = rule.slots.clone().acquire_owned().await {
                run(&inner, job).await;
            }
            rule.done();
        };
        tokio::spawn(tracing::Instrument::instrument(copy, span));
    }
}

enum Failure {
    Error(BoxError),
    Timeout,
}

async fn run(inner: &Inner, mut job: Job) {
    let wait = inner.cfg.timeout;
    let body = match std::mem::replace(&mut job.body, BodySource::Ready(Bytes::new())) {
        BodySource::Ready(b) => b,
        BodySource::Pending(rx) => match timeout(wait, rx).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return inner.count(DropReason::BodyTooLarge),
            _ => return inner.count(DropReason::BodyIncomplete),
        },
    };
    let deadline = Instant::now() + wait;
    let marker = &inner.cfg.marker_header;
    let request = |edits: Option<&HeaderEdits>, name: &str| {
        let mut headers = job.headers.clone();
        if let Some(e) = edits {
            e.apply(&mut headers);
        }
        if let Ok(v) = HeaderValue::from_str(name) {
            headers.insert(marker.clone(), v);
        }
        headers.remove(http::header::TRANSFER_ENCODING);
        if body.is_empty() {
            headers.remove(http::header::CONTENT_LENGTH);
        } else {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut req = Request::new(body.clone());
        *req.method_mut() = job.method.clone();
        *req.uri_mut() = job.uri.clone();
        *req.headers_mut() = headers;
        req
    };
    let limit = inner.cfg.max_compare_body;
    let targets = job.rule.targets.iter().map(|t| {
        fetch(
            t.upstream.clone(),
            request(Some(&t.edits), &t.name),
            limit,
            deadline,
        )
    });
    let secondary = async {
        match &job.rule.secondary {
            Some(u) => Some(fetch(u.clone(), request(None, "secondary"), limit, deadline).await),
            None => None,
        }
    };
    let (answers, secondary) = join(join_all(targets), secondary).await;
    // The primary has had at least as long as the shadows; give it the timeout once more.
    let primary = match timeout(wait, &mut job.primary).await {
        Ok(Ok(a)) => a,
        _ => return inner.count(DropReason::PrimaryUnavailable),
    };
    let noise = match secondary {
        Some(Ok(a)) => Some(compare(&primary, &a, &job.rule.compare)),
        _ => None,
    };
    let uri = job.uri.to_string();
    for (t, answer) in job.rule.targets.iter().zip(answers) {
        match answer {
            Ok(a) => {
                let diffs = compare(&primary, &a, &job.rule.compare);
                let timing = match (primary.elapsed, a.elapsed) {
                    (Some(primary), Some(candidate)) => Some(Timing { primary, candidate }),
                    _ => None,
                };
                if let Some(timing) = timing {
                    inner.count_latency(&t.name, timing);
                }
                inner.reports.record(
                    &job.endpoint,
                    &t.name,
                    &uri,
                    &diffs,
                    noise.as_deref(),
                    timing,
                );
                inner.count_target(&t.name, |c| {
                    if diffs.is_empty() {
                        c.same += 1
                    } else {
                        c.different += 1
                    }
                });
                if !diffs.is_empty()
                    && let Some(log) = &inner.diff_log
                {
                    log.write(diff_line(&job, &t.name, &uri, &primary, &a, &diffs));
                }
            }
            Err(Failure::Timeout) => inner.count_target(&t.name, |c| c.timeout += 1),
            Err(Failure::Error(e)) => {
                tracing::debug!(target = %t.name, error = %e, "shadow request failed");
                inner.count_target(&t.name, |c| c.error += 1);
            }
        }
    }
}

/// Sends one copy and reads the answer whole (keeping the first `limit` bytes), by `deadline`.
async fn fetch(
    upstream: Arc<dyn Upstream>,
    req: Request<Bytes>,
    limit: u64,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let exchange = async {
        // Timed as the primary is: from handing the request to the pool to the head.
        let sent = Instant::now();
        let resp = upstream.send(req).await.map_err(Failure::Error)?;
        let elapsed = sent.elapsed();
        let (parts, mut body) = resp.into_parts();
        let mut kept = Chunks::new(limit);
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(Failure::Error)?;
            if let Some(d) = frame.data_ref() {
                length += d.len() as u64;
                kept.push(d);
            }
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: kept.join(),
            length,
            elapsed: Some(elapsed),
        })
    };
    timeout_at(deadline, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

fn diff_line(
    job: &Job,
    target: &str,
    uri: &str,
    primary: &Answer,
    candidate: &Answer,
    diffs: &[Difference],
) -> String {
    serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endpoint": job.endpoint,
        "target": target,
        "method": job.method.as_str(),
        "uri": uri,
        // The id the primary and every copy carried (X-Request-Id), to find them in logs.
        "request_id": job
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        "primary_status": primary.status.as_u16(),
        "candidate_status": candidate.status.as_u16(),
        "differences": diffs,
    })
    .to_string()
}
