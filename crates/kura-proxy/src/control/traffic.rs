//! Requests per vhost over the last minutes, for the dashboard (`GET /traffic` on the admin
//! listener).
//!
//! The server keeps the history, not the browser: a sampler reads `kura_requests_total` every
//! [`INTERVAL`] into a ring of [`SAMPLES`] intervals, so a page opened during an incident shows
//! the last five minutes at once, and every open page shows the same numbers. The totals in
//! the answer are read when it is made, so they match `/metrics` exactly.
//!
//! Memory is bounded whatever the vhost count (a Redis writer can add thousands): each sample
//! keeps its [`KEPT_PER_SAMPLE`] busiest vhosts and adds the rest into one "other" row, and an
//! answer lists at most [`LISTED`] vhosts. The only per-vhost state besides is the previous
//! totals, one entry per series `kura_requests_total` already holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::Collector;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::control::metrics::Metrics;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: five minutes at [`INTERVAL`].
pub const SAMPLES: usize = 60;
/// Vhosts kept apart in one sample; the others are summed.
pub const KEPT_PER_SAMPLE: usize = 32;
/// Vhosts listed in an answer, the busiest over the window first.
pub const LISTED: usize = 20;

/// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
type Classes = [u64; 5];

const CLASS_NAMES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One vhost's totals since start: by class, and by status code.
#[derive(Default, Clone)]
struct Totals {
    classes: Classes,
    statuses: Vec<(u16, u64)>,
}

/// One interval: when it ended, how long it was, and the requests answered in it.
struct Sample {
    end_ms: u64,
    seconds: f64,
    vhosts: Vec<(Arc<str>, Classes)>,
    other: Classes,
}

struct Ring {
    /// Totals by class at the last sample, per vhost.
    last: HashMap<Arc<str>, Classes>,
    last_ms: u64,
    samples: VecDeque<Sample>,
}

/// The ring of samples; one per admin listener.
pub struct Traffic {
    ring: Mutex<Ring>,
}

impl Traffic {
    /// An empty ring whose first interval starts now (with the counters as they are).
    pub fn new(metrics: &Metrics) -> Traffic {
        let last = read(metrics)
            .into_iter()
            .map(|(k, t)| (k, t.classes))
            .collect();
        Traffic {
            ring: Mutex::new(Ring {
                last,
                last_ms: now_ms(),
                samples: VecDeque::with_capacity(SAMPLES),
            }),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the current interval: the requests answered since the last sample.
    pub fn sample(&self, metrics: &Metrics) {
        let now = read(metrics);
        let end_ms = now_ms();
        let mut ring = self.ring();
        let seconds = end_ms.saturating_sub(ring.last_ms) as f64 / 1000.0;
        let (vhosts, other) = deltas(&ring.last, &now, KEPT_PER_SAMPLE);
        ring.last = now.into_iter().map(|(k, t)| (k, t.classes)).collect();
        ring.last_ms = end_ms;
        if ring.samples.len() == SAMPLES {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample {
            end_ms,
            seconds,
            vhosts,
            other,
        });
    }

    /// The answer of `GET /traffic`: the samples' times, the listed vhosts with their totals
    /// since start, their requests per sample and their status mix over the window, and the
    /// rest summed as `other`. The last sample is the interval still running.
    pub fn report(&self, metrics: &Metrics) -> Value {
        let now = read(metrics);
        let end_ms = now_ms();
        let ring = self.ring();
        let (current, current_other) = deltas(&ring.last, &now, usize::MAX);
        let current = Sample {
            end_ms,
            seconds: end_ms.saturating_sub(ring.last_ms) as f64 / 1000.0,
            vhosts: current,
            other: current_other,
        };
        let samples: Vec<&Sample> = ring.samples.iter().chain([&current]).collect();
        // Per vhost: requests in each sample, by class (zero where it was not kept apart).
        let mut series: HashMap<Arc<str>, Vec<Classes>> = HashMap::new();
        let mut other: Vec<Classes> = samples.iter().map(|s| s.other).collect();
        for (i, s) in samples.iter().enumerate() {
            for (name, c) in &s.vhosts {
                series
                    .entry(name.clone())
                    .or_insert_with(|| vec![[0; 5]; samples.len()])[i] = *c;
            }
        }
        let window = |v: &[Classes]| -> Classes {
            v.iter().fold([0; 5], |mut a, c| {
                add(&mut a, c);
                a
            })
        };
        let mut names: Vec<(&Arc<str>, u64, u64)> = now
            .iter()
            .map(|(name, t)| {
                let w = series.get(name).map_or(0, |s| sum(&window(s)));
                (name, w, sum(&t.classes))
            })
            .collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
        let mut listed = Vec::new();
        let (mut other_vhosts, mut other_total) = (0u64, 0u64);
        for (i, (name, _, total)) in names.iter().enumerate() {
            let s = series.get(*name);
            if i >= LISTED {
                other_vhosts += 1;
                other_total += total;
                if let Some(s) = s {
                    for (o, c) in other.iter_mut().zip(s) {
                        add(o, c);
                    }
                }
                continue;
            }
            let t = &now[*name];
            let zeros = vec![[0; 5]; samples.len()];
            let s = s.unwrap_or(&zeros);
            listed.push(json!({
                "name": &***name,
                "requests": total,
                "statuses": t.statuses.iter().map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
                "window": classes_json(&window(s)),
                "per_sample": s.iter().map(sum).collect::<Vec<_>>(),
            }));
        }
        json!({
            "interval_seconds": INTERVAL.as_secs(),
            "samples": samples.iter().map(|s| json!({"end_ms": s.end_ms, "seconds": s.seconds}))
                .collect::<Vec<_>>(),
            "vhosts": listed,
            "other": {
                "vhosts": other_vhosts,
                "requests": other_total,
                "window": classes_json(&window(&other)),
                "per_sample": other.iter().map(sum).collect::<Vec<_>>(),
            },
        })
    }
}

/// Samples `traffic` every [`INTERVAL`] until `stop` is cancelled.
pub async fn run(
    traffic: Arc<Traffic>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => traffic.sample(&metrics),
            _ = stop.cancelled() => return,
        }
    }
}

/// `kura_requests_total` now, per vhost.
fn read(metrics: &Metrics) -> HashMap<Arc<str>, Totals> {
    let mut out: HashMap<Arc<str>, Totals> = HashMap::new();
    for family in metrics.requests.collect() {
        for m in family.get_metric() {
            let (mut vhost, mut status) = (None, None);
            for l in m.get_label() {
                match l.name() {
                    "vhost" => vhost = Some(l.value()),
                    "status" => status = l.value().parse::<u16>().ok(),
                    _ => {}
                }
            }
            let (Some(vhost), Some(status)) = (vhost, status) else {
                continue;
            };
            let n = m.get_counter().get_value() as u64;
            let t = match out.get_mut(vhost) {
                Some(t) => t,
                None => out.entry(vhost.into()).or_default(),
            };
            t.classes[class(status)] += n;
            t.statuses.push((status, n));
        }
    }
    for t in out.values_mut() {
        t.statuses.sort_unstable();
    }
    out
}

/// The requests answered between `last` and `now`, the `keep` busiest vhosts apart and the rest
/// summed (a vhost whose counters went backwards counts from zero).
fn deltas(
    last: &HashMap<Arc<str>, Classes>,
    now: &HashMap<Arc<str>, Totals>,
    keep: usize,
) -> (Vec<(Arc<str>, Classes)>, Classes) {
    let mut moved: Vec<(Arc<str>, Classes)> = now
        .iter()
        .filter_map(|(name, t)| {
            let before = last.get(name).copied().unwrap_or_default();
            let mut d = [0; 5];
            for i in 0..5 {
                d[i] = t.classes[i].checked_sub(before[i]).unwrap_or(t.classes[i]);
            }
            (sum(&d) > 0).then(|| (name.clone(), d))
        })
        .collect();
    moved.sort_by(|a, b| sum(&b.1).cmp(&sum(&a.1)).then(a.0.cmp(&b.0)));
    let mut other = [0; 5];
    if moved.len() > keep {
        for (_, c) in moved.drain(keep..) {
            add(&mut other, &c);
        }
    }
    (moved, other)
}

fn class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

fn sum(c: &Classes) -> u64 {
    c.iter().sum()
}

fn add(a: &mut Classes, b: &Classes) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn classes_json(c: &Classes) -> Value {
    CLASS_NAMES
        .iter()
        .zip(c)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(m: &Metrics, vhost: &str, status: &str, n: u64) {
        m.requests.with_label_values(&[vhost, status]).inc_by(n);
    }

    #[test]
    fn samples_are_deltas_and_the_answer_is_bounded() {
        let m = Metrics::new();
        count(&m, "before", "200", 7);
        let t = Traffic::new(&m);
        // Three hundred vhosts answer in the first interval: the ring keeps 32 apart.
        for i in 0..300u64 {
            count(&m, &format!("v{i:03}"), "200", i + 1);
        }
        count(&m, "v299", "502", 1000);
        t.sample(&m);
        {
            let ring = t.ring();
            assert_eq!(ring.samples.len(), 1);
            assert_eq!(ring.samples[0].vhosts.len(), KEPT_PER_SAMPLE);
            assert_eq!(&*ring.samples[0].vhosts[0].0, "v299");
            assert_eq!(ring.samples[0].vhosts[0].1, [0, 300, 0, 0, 1000]);
            let kept: u64 = ring.samples[0].vhosts.iter().map(|(_, c)| sum(c)).sum();
            let all: u64 = (1..=300).sum::<u64>() + 1000;
            assert_eq!(kept + sum(&ring.samples[0].other), all, "nothing lost");
        }
        count(&m, "v000", "404", 5);
        let r = t.report(&m);
        let vhosts = r["vhosts"].as_array().unwrap();
        assert_eq!(vhosts.len(), LISTED);
        assert_eq!(vhosts[0]["name"], "v299");
        assert_eq!(vhosts[0]["requests"], 1300);
        assert_eq!(vhosts[0]["statuses"]["502"], 1000);
        assert_eq!(vhosts[0]["window"]["5xx"], 1000);
        // The running interval is the last sample.
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        assert_eq!(vhosts[0]["per_sample"], json!([1300, 0]));
        // Everything not listed is in `other`, totals included ("before" served nothing since).
        let listed: u64 = vhosts.iter().map(|v| v["requests"].as_u64().unwrap()).sum();
        let all: u64 = (1..=300).sum::<u64>() + 1000 + 5 + 7;
        assert_eq!(listed + r["other"]["requests"].as_u64().unwrap(), all);
        assert_eq!(r["other"]["vhosts"], 301 - LISTED as u64);
        assert_eq!(
            r["other"]["per_sample"][1], 5,
            "v000's 404s are in the running interval"
        );
    }

    #[test]
    fn the_ring_keeps_the_last_samples() {
        let m = Metrics::new();
        let t = Traffic::new(&m);
        for i in 0..(SAMPLES as u64 + 5) {
            count(&m, "a", "200", i);
            t.sample(&m);
        }
        let r = t.report(&m);
        assert_eq!(r["samples"].as_array().unwrap().len(), SAMPLES + 1);
        let per = r["vhosts"][0]["per_sample"].as_array().unwrap();
        assert_eq!(per[0], 5, "the oldest kept sample is the sixth");
        assert_eq!(per[SAMPLES - 1], SAMPLES as u64 + 4);
    }
}
