//! Prometheus collectors read at scrape time from the shadow engine and the cluster (their
//! counters live in their own crates as atomics; these turn them into metric families).
//!
//! The shadow latency histogram is labelled by target and side only: targets come from the
//! configuration, while endpoints, even templated and capped at `max_endpoints`, would
//! multiply its 18 series per label set by up to a thousand. Per-endpoint quantiles are in
//! `/shadow`.

use std::sync::Arc;

use prometheus::core::Desc;
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::control::metrics::Metrics;

impl Metrics {
    /// Exposes the shadow engine's counters and per-endpoint summary (read at scrape time).
    pub fn register_shadow(&self, shadow: Arc<kura_shadow::Shadow>) {
        if let Err(e) = self
            .registry
            .register(Box::new(ShadowCollector::new(shadow)))
        {
            tracing::warn!(error = %e, "shadow metrics not registered");
        }
    }
}

/// Prometheus view of the shadow engine.
struct ShadowCollector {
    shadow: Arc<kura_shadow::Shadow>,
    descs: Vec<prometheus::core::Desc>,
}

/// `kura_shadow_latency_seconds` without the registry's prefix.
const LATENCY_NAME: &str = "shadow_latency_seconds";
const LATENCY_HELP: &str = "Time to the response head of the primary and of each shadow \
    target, over the exchanges compared, by target and side (primary, candidate)";

impl ShadowCollector {
    fn new(shadow: Arc<kura_shadow::Shadow>) -> Self {
        let mut descs = Vec::new();
        for m in Self::build(&shadow) {
            descs.extend(m.desc().into_iter().cloned());
        }
        descs.push(
            Desc::new(
                LATENCY_NAME.into(),
                LATENCY_HELP.into(),
                vec!["side".into(), "target".into()],
                Default::default(),
            )
            .expect("static metric"),
        );
        ShadowCollector { shadow, descs }
    }

    /// The latency histograms, built from the engine's bucket counts (a `prometheus`
    /// histogram cannot be set from counts kept elsewhere).
    fn latency(shadow: &kura_shadow::Shadow) -> MetricFamily {
        let label = |name: &str, value: &str| {
            let mut l = LabelPair::default();
            l.set_name(name.into());
            l.set_value(value.into());
            l
        };
        let mut family = MetricFamily::default();
        family.set_name(LATENCY_NAME.into());
        family.set_help(LATENCY_HELP.into());
        family.set_field_type(MetricType::HISTOGRAM);
        for (target, l) in shadow.latency() {
            for (side, b) in [("primary", &l.primary), ("candidate", &l.candidate)] {
                let mut h = Histogram::default();
                h.set_sample_count(b.count);
                h.set_sample_sum(b.sum);
                h.set_bucket(
                    b.cumulative()
                        .map(|(le, n)| {
                            let mut bucket = Bucket::default();
                            bucket.set_upper_bound(le);
                            bucket.set_cumulative_count(n);
                            bucket
                        })
                        .collect(),
                );
                let mut m = Metric::default();
                m.set_label(vec![label("side", side), label("target", &target)]);
                m.set_histogram(h);
                family.mut_metric().push(m);
            }
        }
        family
    }

    fn build(shadow: &kura_shadow::Shadow) -> Vec<Box<dyn prometheus::core::Collector>> {
        let c = shadow.counters();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("static metric")
        };
        let selected = IntCounter::new("shadow_selected_total", "Requests selected for shadowing")
            .expect("static metric");
        selected.inc_by(c.selected);
        let dropped = counter_vec(
            "shadow_dropped_total",
            "Selected requests not compared, by reason",
            &["reason"],
        );
        for (reason, n) in &c.dropped {
            dropped.with_label_values(&[reason]).inc_by(*n);
        }
        let exchanges = counter_vec(
            "shadow_exchanges_total",
            "Shadow copies by target and result (same, different, error, timeout)",
            &["target", "result"],
        );
        for (t, n) in &c.targets {
            for (result, v) in [
                ("same", n.same),
                ("different", n.different),
                ("error", n.error),
                ("timeout", n.timeout),
            ] {
                exchanges.with_label_values(&[t, result]).inc_by(v);
            }
        }
        let log_dropped = IntCounter::new(
            "shadow_diff_log_dropped_total",
            "Diff log lines dropped because the writer fell behind",
        )
        .expect("static metric");
        log_dropped.inc_by(c.diff_log_dropped);
        let labels = ["endpoint", "target"];
        let compared = counter_vec(
            "shadow_compared_total",
            "Exchanges compared, by endpoint (since the last report reset)",
            &labels,
        );
        let differing = counter_vec(
            "shadow_differing_total",
            "Exchanges where the candidate differed, by endpoint (since the last report reset)",
            &labels,
        );
        let regressions = IntGaugeVec::new(
            Opts::new(
                "shadow_regressions",
                "Fields whose difference rate clearly exceeds the noise, by endpoint",
            ),
            &labels,
        )
        .expect("static metric");
        for e in shadow.reports().summary() {
            let l = [e.endpoint.as_str(), e.candidate.as_str()];
            compared.with_label_values(&l).inc_by(e.compared);
            differing.with_label_values(&l).inc_by(e.differing);
            regressions.with_label_values(&l).set(e.regressions as i64);
        }
        vec![
            Box::new(selected),
            Box::new(dropped),
            Box::new(exchanges),
            Box::new(log_dropped),
            Box::new(compared),
            Box::new(differing),
            Box::new(regressions),
        ]
    }
}

impl prometheus::core::Collector for ShadowCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families: Vec<MetricFamily> = Self::build(&self.shadow)
            .iter()
            .flat_map(|m| m.collect())
            .collect();
        families.push(Self::latency(&self.shadow));
        families
    }
}

impl Metrics {
    /// Exposes the cluster's membership and peer-tier counters (read at scrape time).
    pub fn register_cluster(&self, cluster: Arc<kura_cluster::Cluster>) {
        if let Err(e) = self
            .registry
            .register(Box::new(ClusterCollector::new(cluster)))
        {
            tracing::warn!(error = %e, "cluster metrics not registered");
        }
    }
}

struct ClusterCollector {
    cluster: Arc<kura_cluster::Cluster>,
    descs: Vec<prometheus::core::Desc>,
}

impl ClusterCollector {
    fn new(cluster: Arc<kura_cluster::Cluster>) -> Self {
        let mut descs = Vec::new();
        for m in Self::build(&cluster) {
            descs.extend(m.desc().into_iter().cloned());
        }
        ClusterCollector { cluster, descs }
    }

    fn build(cluster: &kura_cluster::Cluster) -> Vec<Box<dyn prometheus::core::Collector>> {
        let s = cluster.snapshot();
        let gauge = |name: &str, help: &str, v: i64| {
            let g = IntGauge::new(name, help).expect("static metric");
            g.set(v);
            Box::new(g) as Box<dyn prometheus::core::Collector>
        };
        let counter = |name: &str, help: &str, v: u64| {
            let c = IntCounter::new(name, help).expect("static metric");
            c.inc_by(v);
            Box::new(c) as Box<dyn prometheus::core::Collector>
        };
        let errors = IntCounterVec::new(
            Opts::new(
                "cluster_peer_errors_total",
                "Owners' answers not used (then fetched from the origin), by kind",
            ),
            &["kind"],
        )
        .expect("static metric");
        for (kind, n) in &s.peer_errors {
            errors.with_label_values(&[kind]).inc_by(*n);
        }
        vec![
            gauge(
                "cluster_members",
                "Members in this node's view of the cluster",
                s.members.len() as i64,
            ),
            gauge(
                "cluster_peers_down",
                "Members left out of ownership after failing",
                s.down.len() as i64,
            ),
            gauge(
                "cluster_etcd_up",
                "1 in contact with etcd, 0 not (the last membership is kept), -1 without etcd",
                s.etcd_up,
            ),
            counter(
                "cluster_membership_changes_total",
                "Member list changes applied",
                s.membership_changes,
            ),
            counter(
                "cluster_peer_answers_total",
                "Cache fetches answered by the owning member (peer tier hits)",
                s.peer_answers,
            ),
            counter(
                "cluster_peer_bytes_total",
                "Body bytes received from owning members",
                s.peer_bytes,
            ),
            counter(
                "cluster_origin_fetches_total",
                "Cache fetches this node sent to the origin (as owner, or after a peer failed)",
                s.origin_fetches,
            ),
            counter(
                "cluster_served_total",
                "Peer requests this node answered as owner",
                s.served,
            ),
            counter(
                "cluster_refused_total",
                "Peer requests refused for a missing or wrong secret",
                s.refused,
            ),
            Box::new(errors),
        ]
    }
}

impl prometheus::core::Collector for ClusterCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        Self::build(&self.cluster)
            .iter()
            .flat_map(|m| m.collect())
            .collect()
    }
}
