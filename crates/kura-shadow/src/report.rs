//! Per-endpoint difference counts and Diffy's noise rule.
//!
//! For every (endpoint, candidate) the report counts the exchanges compared and, per field,
//! how often the candidate differed from the primary (raw) and how often a second primary
//! differed from the first (noise). A field is a **regression** only when its raw rate clearly
//! exceeds its noise rate: by at least `absolute` (percentage points, as a fraction) and by at
//! least `relative` of the noise rate. Other differing fields are **noise**: a timestamp or a
//! random id differs between two primaries as often as against the candidate.
//!
//! Each (endpoint, candidate) also keeps the primary's and the candidate's times to the
//! response head over the same exchanges ([`crate::latency`]): p50/p90/p99 of each side, the
//! difference and a verdict (slower, similar, faster).
//!
//! Memory is bounded: at most `max_endpoints` endpoints (later ones are counted under
//! `(other)`; endpoint names are templated, `/items/{id}`, but a client can still send paths
//! that are not, so the bound is what holds), `max_fields` fields each, a ring of `examples`
//! example pairs per field, and two fixed-size latency histograms (~20 KiB in all).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::compare::Difference;
use crate::latency::{LatencyPair, LatencyReport, LatencyThresholds, Timing};

/// Where the report is bounded and how noise is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSettings {
    /// Most (endpoint, candidate) pairs counted apart; newer endpoints are counted under
    /// [`OTHER_ENDPOINT`].
    pub max_endpoints: usize,
    /// Most fields itemised per endpoint; differences in further fields are only counted.
    pub max_fields: usize,
    /// Example value pairs kept per field, the latest ones; 0 keeps none.
    pub examples: usize,
    /// Raw rate must exceed the noise rate by this fraction of it (Diffy's relative threshold).
    pub relative_threshold: f64,
    /// Raw rate minus noise rate must be at least this (Diffy's absolute threshold).
    pub absolute_threshold: f64,
    /// When a candidate is called slower or faster than the primary at a latency quantile.
    pub latency: LatencyThresholds,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            max_endpoints: 1000,
            max_fields: 200,
            examples: 5,
            relative_threshold: 0.2,
            absolute_threshold: 0.03,
            latency: LatencyThresholds::default(),
        }
    }
}

/// The endpoint every endpoint beyond `max_endpoints` is counted under.
pub const OTHER_ENDPOINT: &str = "(other)";

/// One difference as it was seen: the request's URI and both values.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Example {
    /// Path and query of the request, as sent to the primary.
    pub uri: String,
    /// The primary's value, rendered and cut.
    pub primary: String,
    /// The candidate's value, rendered and cut.
    pub candidate: String,
}

#[derive(Default)]
struct Field {
    raw: u64,
    noise: u64,
    examples: VecDeque<Example>,
}

#[derive(Default)]
struct Endpoint {
    compared: u64,
    differing: u64,
    noise_compared: u64,
    fields: HashMap<String, Field>,
    /// Differences in fields beyond `max_fields` (not itemised).
    untracked: u64,
    /// Both sides' times, from the first timed exchange on.
    latency: Option<Box<LatencyPair>>,
}

/// The report being counted: bounded per-endpoint and per-field counts behind one mutex,
/// updated by every shadow job.
pub struct Reports {
    settings: ReportSettings,
    state: Mutex<State>,
}

struct State {
    since: chrono::DateTime<chrono::Utc>,
    endpoints: HashMap<(String, String), Endpoint>,
}

/// What a differing field's rates say, by Diffy's rule ([`verdict`]).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The candidate differs clearly more often than two primaries do: a change to look at.
    Regression,
    /// The field differs about as often between two primaries: not the candidate's doing.
    Noise,
}

/// One field of an endpoint's report.
#[derive(Debug, Clone, Serialize)]
pub struct FieldReport {
    /// The field's key: `status`, `header.<name>`, a JSON path or `body`.
    pub field: String,
    /// Exchanges where the candidate differed in this field.
    pub differences: u64,
    /// `differences` as a fraction (0 to 1) of the exchanges compared.
    pub rate: f64,
    /// Exchanges where the second primary differed from the first in this field.
    pub noise: u64,
    /// `noise` as a fraction (0 to 1) of the exchanges a second primary answered; 0 without one.
    pub noise_rate: f64,
    /// Regression or noise, from `rate` and `noise_rate` by [`verdict`].
    pub verdict: Verdict,
    /// The latest examples, oldest first.
    pub examples: Vec<Example>,
}

/// The report of one endpoint against one candidate.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// The endpoint's name (`GET items`, `GET /users/{id}`, or [`OTHER_ENDPOINT`]).
    pub endpoint: String,
    /// The candidate's target name.
    pub candidate: String,
    /// Exchanges compared with this candidate since the last reset.
    pub compared: u64,
    /// Exchanges where the candidate differed in at least one field.
    pub differing: u64,
    /// Exchanges a second primary answered too: the base of the noise rates.
    pub noise_compared: u64,
    /// Fields whose verdict is [`Verdict::Regression`].
    pub regressions: usize,
    /// Differences in fields beyond `max_fields`: counted, not itemised.
    pub untracked_differences: u64,
    /// Fields the candidate differed in, regressions first, then by count.
    pub fields: Vec<FieldReport>,
    /// The primary's and the candidate's times to the response head over the exchanges
    /// compared, at p50, p90 and p99, and which is slower; `None` when none was timed.
    pub latency: Option<LatencyReport>,
}

/// The whole report at one moment: the admin API's JSON and the HTML page's content.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When counting started (start-up or the last reset), RFC 3339.
    pub since: String,
    /// The relative threshold the verdicts were judged with (a fraction of the noise rate).
    pub relative_threshold: f64,
    /// The absolute threshold the verdicts were judged with (a fraction: 0.03 is 3 points).
    pub absolute_threshold: f64,
    /// The relative margin of the latency verdicts (0.2: the slower side takes 20% longer).
    pub latency_relative_threshold: f64,
    /// The absolute margin of the latency verdicts, in milliseconds.
    pub latency_absolute_threshold_ms: f64,
    /// Every (endpoint, candidate) pair, sorted by endpoint then candidate.
    pub endpoints: Vec<EndpointReport>,
}

impl Reports {
    /// An empty report, counting from now within `settings`.
    pub fn new(settings: ReportSettings) -> Reports {
        Reports {
            settings,
            state: Mutex::new(State {
                since: chrono::Utc::now(),
                endpoints: HashMap::new(),
            }),
        }
    }

    /// The bounds and thresholds the report was made with.
    pub fn settings(&self) -> &ReportSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one compared exchange: the candidate's differences from the primary, when a
    /// second primary answered too the differences between the two primaries, and both
    /// sides' times when the primary's was taken.
    pub fn record(
        &self,
        endpoint: &str,
        candidate: &str,
        uri: &str,
        raw: &[Difference],
        noise: Option<&[Difference]>,
        timing: Option<Timing>,
    ) {
        let s = &self.settings;
        let mut st = self.lock();
        let mut key = (endpoint.to_string(), candidate.to_string());
        if !st.endpoints.contains_key(&key) && st.endpoints.len() >= s.max_endpoints {
            key.0 = OTHER_ENDPOINT.to_string();
        }
        let e = st.endpoints.entry(key).or_default();
        e.compared += 1;
        if !raw.is_empty() {
            e.differing += 1;
        }
        if let Some(t) = timing {
            e.latency
                .get_or_insert_with(|| Box::new(LatencyPair::new()))
                .record(t);
        }
        for d in raw {
            let Some(f) = field(e, &d.field, s.max_fields) else {
                e.untracked += 1;
                continue;
            };
            f.raw += 1;
            if s.examples > 0 {
                if f.examples.len() == s.examples {
                    f.examples.pop_front();
                }
                f.examples.push_back(Example {
                    uri: uri.to_string(),
                    primary: d.primary.clone(),
                    candidate: d.candidate.clone(),
                });
            }
        }
        if let Some(noise) = noise {
            e.noise_compared += 1;
            for d in noise {
                if let Some(f) = field(e, &d.field, s.max_fields) {
                    f.noise += 1;
                }
            }
        }
    }

    /// Counts per endpoint without examples (cheap enough for every metrics scrape).
    pub fn summary(&self) -> Vec<EndpointSummary> {
        let s = &self.settings;
        let st = self.lock();
        st.endpoints
            .iter()
            .map(|((endpoint, candidate), e)| EndpointSummary {
                endpoint: endpoint.clone(),
                candidate: candidate.clone(),
                compared: e.compared,
                differing: e.differing,
                regressions: e
                    .fields
                    .values()
                    .filter(|f| {
                        f.raw > 0 && verdict(rates(e, f).0, rates(e, f).1, s) == Verdict::Regression
                    })
                    .count(),
            })
            .collect()
    }

    /// Forgets every count and example.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.endpoints.clear();
        st.since = chrono::Utc::now();
    }

    /// The full report now, each endpoint's fields ordered regressions first, then by count.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.settings;
        let st = self.lock();
        let mut endpoints: Vec<EndpointReport> = st
            .endpoints
            .iter()
            .map(|((endpoint, candidate), e)| {
                let mut fields: Vec<FieldReport> = e
                    .fields
                    .iter()
                    .filter(|(_, f)| f.raw > 0)
                    .map(|(name, f)| {
                        let (rate, noise_rate) = rates(e, f);
                        FieldReport {
                            field: name.clone(),
                            differences: f.raw,
                            rate,
                            noise: f.noise,
                            noise_rate,
                            verdict: verdict(rate, noise_rate, s),
                            examples: f.examples.iter().cloned().collect(),
                        }
                    })
                    .collect();
                fields.sort_by(|a, b| {
                    (
                        a.verdict != Verdict::Regression,
                        std::cmp::Reverse(a.differences),
                        &a.field,
                    )
                        .cmp(&(
                            b.verdict != Verdict::Regression,
                            std::cmp::Reverse(b.differences),
                            &b.field,
                        ))
                });
                EndpointReport {
                    endpoint: endpoint.clone(),
                    candidate: candidate.clone(),
                    compared: e.compared,
                    differing: e.differing,
                    noise_compared: e.noise_compared,
                    regressions: fields
                        .iter()
                        .filter(|f| f.verdict == Verdict::Regression)
                        .count(),
                    untracked_differences: e.untracked,
                    fields,
                    latency: e.latency.as_ref().map(|l| l.report(&s.latency)),
                }
            })
            .collect();
        endpoints.sort_by(|a, b| (&a.endpoint, &a.candidate).cmp(&(&b.endpoint, &b.candidate)));
        Snapshot {
            since: st.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            relative_threshold: s.relative_threshold,
            absolute_threshold: s.absolute_threshold,
            latency_relative_threshold: s.latency.relative,
            latency_absolute_threshold_ms: s.latency.absolute.as_secs_f64() * 1000.0,
            endpoints,
        }
    }
}

/// The candidate's and the noise's difference rates of a field.
fn rates(e: &Endpoint, f: &Field) -> (f64, f64) {
    let rate = f.raw as f64 / e.compared.max(1) as f64;
    let noise_rate = if e.noise_compared > 0 {
        f.noise as f64 / e.noise_compared as f64
    } else {
        0.0
    };
    (rate, noise_rate)
}

/// Counts of one endpoint, for metrics.
#[derive(Debug, Clone)]
pub struct EndpointSummary {
    /// The endpoint's name, as in [`EndpointReport::endpoint`].
    pub endpoint: String,
    /// The candidate's target name.
    pub candidate: String,
    /// Exchanges compared with this candidate since the last reset.
    pub compared: u64,
    /// Exchanges where the candidate differed in at least one field.
    pub differing: u64,
    /// Fields whose verdict is [`Verdict::Regression`].
    pub regressions: usize,
}

fn field<'a>(e: &'a mut Endpoint, name: &str, max: usize) -> Option<&'a mut Field> {
    if !e.fields.contains_key(name) && e.fields.len() >= max {
        return None;
    }
    Some(e.fields.entry(name.to_string()).or_default())
}

/// Diffy's rule: a regression only when the raw rate exceeds the noise rate both absolutely
/// and relatively.
pub fn verdict(rate: f64, noise_rate: f64, s: &ReportSettings) -> Verdict {
    let above = rate - noise_rate;
    if above >= s.absolute_threshold && rate >= noise_rate * (1.0 + s.relative_threshold) {
        Verdict::Regression
    } else {
        Verdict::Noise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(field: &str) -> Difference {
        Difference {
            field: field.into(),
            primary: "a".into(),
            candidate: "b".into(),
        }
    }

    #[test]
    fn a_field_that_differs_between_primaries_is_noise_and_a_real_change_is_a_regression() {
        let r = Reports::new(ReportSettings::default());
        for i in 0..100 {
            // `$.id` differs at random everywhere; `$.price` only against the candidate.
            let raw = [d("$.id"), d("$.price")];
            let noise = [d("$.id")];
            r.record(
                "GET items",
                "v2",
                &format!("/items/{i}"),
                &raw,
                Some(&noise),
                None,
            );
        }
        let snap = r.snapshot();
        let e = &snap.endpoints[0];
        let sum = r.summary();
        assert_eq!(
            (sum[0].compared, sum[0].differing, sum[0].regressions),
            (100, 100, 1)
        );
        assert_eq!((e.compared, e.differing, e.noise_compared), (100, 100, 100));
        assert_eq!(e.regressions, 1);
        assert_eq!(e.fields[0].field, "$.price");
        assert_eq!(e.fields[0].verdict, Verdict::Regression);
        assert_eq!(e.fields[1].field, "$.id");
        assert_eq!(e.fields[1].verdict, Verdict::Noise);
        assert_eq!(e.fields[1].noise_rate, 1.0);
        // Examples are a ring: the last five are kept.
        assert_eq!(e.fields[0].examples.len(), 5);
        assert_eq!(e.fields[0].examples[4].uri, "/items/99");
    }

    #[test]
    fn thresholds_decide_close_rates() {
        let s = ReportSettings::default();
        assert_eq!(verdict(0.5, 0.0, &s), Verdict::Regression);
        assert_eq!(
            verdict(0.02, 0.0, &s),
            Verdict::Noise,
            "below the absolute threshold"
        );
        assert_eq!(
            verdict(0.55, 0.5, &s),
            Verdict::Noise,
            "within 20% of the noise"
        );
        assert_eq!(verdict(0.7, 0.5, &s), Verdict::Regression);
    }

    #[test]
    fn memory_is_bounded_and_reset_forgets() {
        let r = Reports::new(ReportSettings {
            max_endpoints: 2,
            max_fields: 3,
            examples: 1,
            ..ReportSettings::default()
        });
        for ep in ["a", "b", "c", "d"] {
            r.record(ep, "v2", "/", &[d("f1")], None, None);
        }
        let many: Vec<Difference> = (0..10).map(|i| d(&format!("f{i}"))).collect();
        r.record("a", "v2", "/", &many, None, None);
        let snap = r.snapshot();
        let names: Vec<&str> = snap.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
        assert_eq!(names, [OTHER_ENDPOINT, "a", "b"]);
        assert_eq!(snap.endpoints[0].compared, 2);
        let a = &snap.endpoints[1];
        assert_eq!(a.fields.len(), 3);
        assert_eq!(a.untracked_differences, 7);
        assert!(a.fields.iter().all(|f| f.examples.len() == 1));
        r.reset();
        assert!(r.snapshot().endpoints.is_empty());
    }

    #[test]
    fn latency_is_kept_per_endpoint_within_the_bound_and_forgotten_on_reset() {
        use crate::latency::Speed;
        use std::time::Duration;
        let r = Reports::new(ReportSettings {
            max_endpoints: 2,
            ..ReportSettings::default()
        });
        let t = |p: u64, c: u64| {
            Some(Timing {
                primary: Duration::from_millis(p),
                candidate: Duration::from_millis(c),
            })
        };
        for i in 0..10 {
            r.record("GET /items/{id}", "v2", "/items/1", &[], None, t(10, 13));
            r.record("GET /search", "v2", "/search", &[], None, t(50, 20));
            // Random paths past the bound share one entry, latency included.
            r.record(&format!("GET /r{i}"), "v2", "/", &[], None, t(5, 5));
        }
        r.record("GET /untimed", "v2", "/", &[], None, None);
        let snap = r.snapshot();
        let names: Vec<&str> = snap.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
        assert_eq!(names, ["(other)", "GET /items/{id}", "GET /search"]);
        let other = snap.endpoints[0].latency.as_ref().unwrap();
        assert_eq!((snap.endpoints[0].compared, other.measured), (11, 10));
        assert_eq!(other.verdict, Speed::Similar);
        let items = snap.endpoints[1].latency.as_ref().unwrap();
        assert_eq!(items.verdict, Speed::Slower);
        assert_eq!(items.p50.change_percent, Some(30.0));
        let search = snap.endpoints[2].latency.as_ref().unwrap();
        assert_eq!(search.verdict, Speed::Faster);
        assert_eq!(search.p90.difference_ms, -30.0);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["endpoints"][1]["latency"]["p50"]["verdict"], "slower");
        assert_eq!(json["endpoints"][1]["latency"]["p50"]["primary_ms"], 10.0);
        assert_eq!(json["latency_absolute_threshold_ms"], 1.0);
        r.reset();
        r.record("GET /items/{id}", "v2", "/items/1", &[], None, None);
        assert!(r.snapshot().endpoints[0].latency.is_none());
    }

    #[test]
    fn without_a_second_primary_every_difference_counts() {
        let r = Reports::new(ReportSettings::default());
        r.record("GET /", "v2", "/", &[d("status")], None, None);
        r.record("GET /", "v2", "/", &[], None, None);
        let snap = r.snapshot();
        let e = &snap.endpoints[0];
        assert_eq!((e.compared, e.differing, e.noise_compared), (2, 1, 0));
        assert_eq!(e.fields[0].rate, 0.5);
        assert_eq!(e.fields[0].verdict, Verdict::Regression);
    }
}
