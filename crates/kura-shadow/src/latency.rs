//! How long the primary and each candidate took (Kage's `:elapsed`), so a report can say
//! "v2 is 30 % slower on GET /items/{id}".
//!
//! What is timed is the **time to the response head**: from just before the request is handed
//! to its pool to the moment its status and headers arrived, on both sides and through the
//! same pool code. The primary's body streams at the client's pace while a copy's is read by
//! kura at once, so times to the last byte would measure different things; the head is timed
//! the same way on both sides.
//!
//! - [`LatencyPair`]: per (endpoint, target) of the report, an HDR histogram of the primary's
//!   times and one of the candidate's over the same exchanges (bounded memory: 1 µs to 60 s at
//!   2 significant digits, about 10 KiB each); p50, p90 and p99 of each, their difference and
//!   a verdict ([`Speed`]). Reset with the report.
//! - [`Buckets`]: per target and side, the fixed buckets of the Prometheus histogram
//!   `kura_shadow_latency_seconds`, never reset (Prometheus counts only go up).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Both times of one compared exchange, each to the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The primary's time to its response head.
    pub primary: Duration,
    /// The candidate's time to its response head.
    pub candidate: Duration,
}

/// When a candidate is slower or faster at a quantile: by both margins (Diffy's way).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyThresholds {
    /// The difference must be at least this fraction of the faster side's time (0.2: 20%).
    pub relative: f64,
    /// … and at least this long, so that jitter is not called a change.
    pub absolute: Duration,
}

impl Default for LatencyThresholds {
    fn default() -> Self {
        LatencyThresholds {
            relative: 0.2,
            absolute: Duration::from_millis(1),
        }
    }
}

/// The candidate against the primary at one quantile, or overall (at the median).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Speed {
    /// The candidate takes longer, beyond both thresholds.
    Slower,
    /// Within the thresholds.
    Similar,
    /// The candidate is quicker, beyond both thresholds.
    Faster,
}

/// The quantiles reported, with their names in the JSON.
pub const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];

/// Times above this are counted as this (a copy is cut at `shadow.timeout` anyway).
const HIGHEST_US: u64 = 60_000_000;
/// 2 significant digits: within 1% (the histogram's 256 sub-buckets per power of two).
const SIGFIG: u8 = 2;

/// The primary's and the candidate's times over the same exchanges.
pub(crate) struct LatencyPair {
    primary: Histogram<u32>,
    candidate: Histogram<u32>,
}

fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("static histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl LatencyPair {
    pub(crate) fn new() -> LatencyPair {
        LatencyPair {
            primary: histogram(),
            candidate: histogram(),
        }
    }

    /// Counts one exchange (times beyond 60 s count as 60 s; a bucket's count saturates).
    pub(crate) fn record(&mut self, t: Timing) {
        self.primary.saturating_record(micros(t.primary));
        self.candidate.saturating_record(micros(t.candidate));
    }

    /// The quantiles of both sides, their differences and verdicts.
    pub(crate) fn report(&self, th: &LatencyThresholds) -> LatencyReport {
        let at = |q: f64| {
            let value = |h: &Histogram<u32>| h.median_equivalent(h.value_at_quantile(q));
            compare_at(value(&self.primary), value(&self.candidate), th)
        };
        let [p50, p90, p99] = QUANTILES.map(|(q, _)| at(q));
        LatencyReport {
            measured: self.candidate.len(),
            verdict: p50.verdict,
            p50,
            p90,
            p99,
        }
    }
}

/// One endpoint's latency against one candidate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyReport {
    /// Exchanges timed on both sides: those compared whose primary was timed.
    pub measured: u64,
    /// The verdict at the median ([`LatencyReport::p50`]): the endpoint's headline.
    pub verdict: Speed,
    /// The median.
    pub p50: QuantileReport,
    /// The 90th percentile.
    pub p90: QuantileReport,
    /// The 99th percentile.
    pub p99: QuantileReport,
}

impl LatencyReport {
    /// The quantiles with their names, in order.
    pub fn quantiles(&self) -> [(&'static str, &QuantileReport); 3] {
        [("p50", &self.p50), ("p90", &self.p90), ("p99", &self.p99)]
    }
}

/// Both sides at one quantile, in milliseconds to 3 significant digits (the histograms are
/// within 1%).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct QuantileReport {
    /// The primary's time at this quantile.
    pub primary_ms: f64,
    /// The candidate's time at this quantile.
    pub candidate_ms: f64,
    /// Candidate minus primary (of the two values above): positive when the candidate is
    /// slower.
    pub difference_ms: f64,
    /// The difference as a percentage of the primary's time (+30: 30 % slower), to 0.1;
    /// `None` when the primary's time is 0.
    pub change_percent: Option<f64>,
    /// Whether the difference passes both thresholds, and which way.
    pub verdict: Speed,
}

/// `x` to 3 significant digits, without binary noise (`13.0`, not `13.000000000000002`).
fn significant3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = 2 - x.abs().log10().floor() as i32;
    if e >= 0 {
        let f = 10f64.powi(e);
        (x * f).round() / f
    } else {
        let f = 10f64.powi(-e);
        (x / f).round() * f
    }
}

/// Compares the two times (microseconds) at one quantile.
pub fn compare_at(primary_us: u64, candidate_us: u64, th: &LatencyThresholds) -> QuantileReport {
    let ms = |us: u64| significant3(us as f64 / 1000.0);
    let (p, c) = (primary_us as f64, candidate_us as f64);
    let beyond = |slow: f64, fast: f64| {
        slow - fast >= th.absolute.as_micros() as f64 && slow >= fast * (1.0 + th.relative)
    };
    let verdict = if beyond(c, p) {
        Speed::Slower
    } else if beyond(p, c) {
        Speed::Faster
    } else {
        Speed::Similar
    };
    let (primary_ms, candidate_ms) = (ms(primary_us), ms(candidate_us));
    QuantileReport {
        primary_ms,
        candidate_ms,
        difference_ms: ((candidate_ms - primary_ms) * 1000.0).round() / 1000.0,
        change_percent: (primary_us > 0).then(|| ((c / p - 1.0) * 1000.0).round() / 10.0),
        verdict,
    }
}

/// Upper bounds (seconds) of the Prometheus buckets, those of `kura_request_duration_seconds`.
pub const BUCKET_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A Prometheus histogram's state: counts per bucket of [`BUCKET_BOUNDS`] (not cumulative),
/// the total and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// Observations in each bucket: `counts[i]` were above `BUCKET_BOUNDS[i - 1]` and at most
    /// `BUCKET_BOUNDS[i]`; the last one counts those above every bound.
    pub counts: [u64; BUCKET_BOUNDS.len() + 1],
    /// Observations in all.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Buckets {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.counts[BUCKET_BOUNDS.partition_point(|b| *b < s)] += 1;
        self.count += 1;
        self.sum += s;
    }

    /// (upper bound, observations at most that), for every bound: Prometheus' `le` buckets
    /// (`+Inf` is [`Buckets::count`]).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKET_BOUNDS
            .iter()
            .zip(self.counts.iter().scan(0u64, |acc, n| {
                *acc += n;
                Some(*acc)
            }))
            .map(|(b, n)| (*b, n))
    }
}

/// One target's Prometheus latency histograms, over the exchanges compared with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetLatency {
    /// The primary's times on those exchanges.
    pub primary: Buckets,
    /// The target's times.
    pub candidate: Buckets,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_and_differences_of_a_slower_candidate() {
        let mut pair = LatencyPair::new();
        // The primary takes 1..=100 ms, the candidate 30% longer on every exchange.
        for i in 1..=100u64 {
            pair.record(Timing {
                primary: ms(i),
                candidate: Duration::from_micros(i * 1300),
            });
        }
        let r = pair.report(&LatencyThresholds::default());
        assert_eq!(r.measured, 100);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.01;
        assert!(close(r.p50.primary_ms, 50.0), "{r:?}");
        assert!(close(r.p50.candidate_ms, 65.0), "{r:?}");
        assert!(close(r.p90.primary_ms, 90.0), "{r:?}");
        assert!(close(r.p99.candidate_ms, 128.7), "{r:?}");
        assert!((r.p50.difference_ms - 15.0).abs() <= 1.0, "{r:?}");
        for (name, q) in r.quantiles() {
            let pct = q.change_percent.unwrap();
            assert!((29.0..=31.0).contains(&pct), "{name}: {pct}");
            assert_eq!(q.verdict, Speed::Slower, "{name}");
        }
        assert_eq!(r.verdict, Speed::Slower);
    }

    #[test]
    fn both_thresholds_decide_the_verdict() {
        let th = LatencyThresholds::default();
        // 30% slower, but by 0.3 ms: jitter.
        assert_eq!(compare_at(1000, 1300, &th).verdict, Speed::Similar);
        // 5 ms slower, but 5% of 100 ms.
        assert_eq!(compare_at(100_000, 105_000, &th).verdict, Speed::Similar);
        assert_eq!(compare_at(100_000, 130_000, &th).verdict, Speed::Slower);
        assert_eq!(compare_at(130_000, 100_000, &th).verdict, Speed::Faster);
        let q = compare_at(130_000, 100_000, &th);
        assert_eq!(q.difference_ms, -30.0);
        assert_eq!(q.change_percent, Some(-23.1));
        assert_eq!(compare_at(0, 5000, &th).change_percent, None);
        let q = compare_at(1234, 1010, &th);
        assert_eq!((q.primary_ms, q.candidate_ms), (1.23, 1.01));
        assert_eq!(q.difference_ms, -0.22);
        assert_eq!(compare_at(123_456_789, 0, &th).primary_ms, 123_000.0);
    }

    #[test]
    fn memory_is_bounded_whatever_the_times() {
        let mut pair = LatencyPair::new();
        let before = pair.primary.distinct_values();
        pair.record(Timing {
            primary: Duration::from_secs(3600),
            candidate: Duration::ZERO,
        });
        pair.record(Timing {
            primary: Duration::MAX,
            candidate: Duration::from_nanos(1),
        });
        // Values beyond the range are clamped into it, never grow it.
        assert_eq!(pair.primary.distinct_values(), before);
        assert!(before * 4 <= 12 * 1024, "{before} counters of 4 bytes");
        let r = pair.report(&LatencyThresholds::default());
        assert!((r.p99.primary_ms - 60_000.0).abs() < 600.0, "{r:?}");
        assert_eq!(r.verdict, Speed::Faster);
    }

    #[test]
    fn prometheus_buckets_are_cumulative_with_inclusive_bounds() {
        let mut b = Buckets::default();
        for d in [
            Duration::from_micros(500),
            ms(3),
            ms(50),
            ms(70),
            Duration::from_secs(61),
        ] {
            b.observe(d);
        }
        let le: Vec<(f64, u64)> = b.cumulative().collect();
        assert_eq!(le[0], (0.0005, 1), "a bound is inclusive");
        assert_eq!(le[3], (0.005, 2));
        assert_eq!(le[6], (0.05, 3));
        assert_eq!(le[7], (0.1, 4));
        assert_eq!(le[15], (60.0, 4), "61 s is only in +Inf");
        assert_eq!(b.count, 5);
        assert!((b.sum - 61.1235).abs() < 1e-9, "{}", b.sum);
    }
}
