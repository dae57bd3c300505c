//! contrib/grafana/kura.json and contrib/prometheus/alerts.yml name only metrics kura exports:
//! a kura with a memory and disk cache, a cluster, shadowing and a dead backend serves some
//! traffic and reloads once (so that labelled series exist), and every metric name read from
//! the dashboard's queries and the alerts' expressions must be a family of its `/metrics`
//! (`_bucket`, `_sum`, `_count` of a histogram count as the histogram).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kura_testkit::etcd::free_addr;
use kura_testkit::{TestKura, TestOrigin, closed_addr, eventually};
use yaml_rust2::{Yaml, YamlLoader};

/// Metrics of Prometheus itself that rules may use (`up` is set per scrape target).
const PROMETHEUS_OWN: &[&str] = &["up"];

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path)
}

// ---- PromQL: the metric names of an expression -------------------------------------------

/// Aggregation operators and keywords: never metric names. (Functions are told by the `(`
/// that follows them.)
const WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index after the quoted string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != quote {
        if b[j] == b'\\' && quote != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Index after the bracket closing the one at `i` (strings inside skipped).
fn skip_group(b: &[u8], i: usize, close: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() && b[j] != close {
        j = if matches!(b[j], b'"' | b'\'' | b'`') {
            skip_string(b, j)
        } else {
            j + 1
        };
    }
    j + 1
}

/// The metric names in a PromQL expression (with Grafana's `$variables`): identifiers that are
/// not functions, operators or keywords, outside label matchers `{…}`, ranges `[…]`, label
/// lists `by (…)`, strings, numbers and durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'{' => i = skip_group(b, i, b'}'),
            b'[' => i = skip_group(b, i, b']'),
            b'$' => {
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = skip_group(b, i, b'}');
                } else {
                    while i < b.len() && ident(b[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                let call = b.get(next) == Some(&b'(');
                if LABEL_LISTS.contains(&word) && call {
                    i = skip_group(b, next, b')');
                } else if !call && !WORDS.contains(&word) {
                    out.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The metric names of a Grafana variable query: `label_values(EXPR, label)` or an expression.
fn template_metric_names(query: &str) -> BTreeSet<String> {
    let q = query.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => match args.rsplit_once(',') {
            Some((expr, _label)) => metric_names(expr),
            None => BTreeSet::new(), // label_values(label): no metric
        },
        None => metric_names(q),
    }
}

#[test]
fn metric_names_are_read_past_functions_labels_ranges_and_variables() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (vhost, le) (rate(kura_request_duration_seconds_bucket{instance=~"$instance", vhost!~"a{b}"}[$__rate_interval])))"#
        ),
        ["kura_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            "sum by (instance) (rate(a_total{status=~\"5..\"}[5m])) / sum(rate(b_total[5m] offset 1h)) > 0.05 and on (instance) c > bool 1e3"
        ),
        ["a_total", "b_total", "c"]
    );
    assert_eq!(
        names("sum without (pod) (x) * on (a) group_left (b) y or vector(1)"),
        ["x", "y"]
    );
    assert_eq!(names(r#"up{job="kura"} == 0"#), ["up"]);
    assert_eq!(
        template_metric_names(r#"label_values(kura_requests_total{instance=~"$instance"}, vhost)"#)
            .into_iter()
            .collect::<Vec<_>>(),
        ["kura_requests_total"]
    );
}

// ---- The files -----------------------------------------------------------------------------

/// Every string under a key named `key`, anywhere in `v`.
fn strings_under(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// The metric names the dashboard's panels and variables query.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(contrib("grafana/kura.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("kura.json is JSON");
    assert_eq!(dash["uid"], "kura-overview");
    let panels = dash["panels"].as_array().expect("panels");
    let mut names = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{}: no metric in {expr}", p["title"]);
            names.extend(found);
        }
    }
    let mut queries = Vec::new();
    strings_under(&dash["templating"], "query", &mut queries);
    assert!(queries.len() >= 2, "{queries:?}");
    for q in queries.iter().filter(|q| q.as_str() != "prometheus") {
        names.extend(template_metric_names(q));
    }
    names
}

/// The metric names of the alerting rules, after checking each rule's shape.
fn alert_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(contrib("prometheus/alerts.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("alerts.yml is YAML");
    let groups = docs[0]["groups"].as_vec().expect("groups");
    let mut out = BTreeMap::new();
    for g in groups {
        assert!(g["name"].as_str().is_some());
        for r in g["rules"].as_vec().expect("rules") {
            let alert = r["alert"].as_str().expect("alert name").to_string();
            let expr = r["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: expr"));
            assert!(
                matches!(
                    r["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{alert}: severity"
            );
            assert!(r["annotations"]["summary"].as_str().is_some(), "{alert}");
            if let Yaml::String(f) = &r["for"] {
                let n = f.strip_suffix(['s', 'm', 'h']).map(str::parse::<u32>);
                assert!(matches!(n, Some(Ok(_))), "{alert}: for {f}");
            }
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{alert}: no metric in {expr}");
            assert!(out.insert(alert.clone(), names).is_none(), "{alert} twice");
        }
    }
    out
}

// ---- A kura with everything the files look at -------------------------------------------

/// The families `/metrics` declares, with their types.
fn families(metrics: &str) -> BTreeMap<String, String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    families.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                matches!(
                    families.get(base).map(String::as_str),
                    Some("histogram") | Some("summary")
                ) && (*suffix != "_bucket" || families[base] == "histogram")
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_name_is_exported() {
    let dashboard = dashboard_metrics();
    let alerts = alert_metrics();
    // The files cover what the issue asks for (so this test cannot pass on empty files).
    for m in [
        "kura_requests_total",
        "kura_request_duration_seconds_bucket",
        "kura_upstream_errors_total",
        "kura_cache_hits_total",
        "kura_cluster_members",
        "kura_shadow_exchanges_total",
        "kura_shadow_latency_seconds_bucket",
    ] {
        assert!(dashboard.contains(m), "the dashboard does not show {m}");
    }
    for (alert, m) in [
        ("KuraBackendDown", "kura_backend_up"),
        ("KuraHighErrorRate", "kura_requests_total"),
        ("KuraCacheDiskAboveHighMark", "kura_cache_disk_max_bytes"),
        ("KuraEtcdDown", "kura_cluster_etcd_up"),
        ("KuraShadowRegressions", "kura_shadow_regressions"),
    ] {
        assert!(alerts[alert].contains(m), "{alert}: {:?}", alerts[alert]);
    }

    let app = TestOrigin::fixed("app", 200, r#"{"items":[1,2],"total":2}"#).await;
    let v2 = TestOrigin::fixed("v2", 200, r#"{"items":[1,2],"total":3}"#).await;
    let peering = free_addr("127.0.0.1");
    let config = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[cache]
memory = "16MiB"
dir = "cache"
max_disk = "64MiB"
[cluster]
peering_address = "{peering}"
peers = ["{peering}"]
secret = "a-cluster-secret-of-some-length"
[shadow]
[pools.app]
backends = ["{app}"]
[pools.v2]
backends = ["{v2}"]
[pools.broken]
backends = ["http://{closed_a}", "http://{closed_b}"]
[[vhosts]]
hosts = ["cached.test"]
pool = "app"
action = "cache"
[vhosts.cache]
default_ttl = "1h"
[[vhosts]]
hosts = ["api.test"]
[[vhosts.rules]]
pool = "app"
[vhosts.rules.shadow]
targets = [{{ pool = "v2" }}]
sample_percent = 100
[[vhosts]]
hosts = ["broken.test"]
pool = "broken"
"#,
        app = app.url(),
        v2 = v2.url(),
        closed_a = closed_addr(),
        closed_b = closed_addr(),
    );
    let kura = TestKura::start(&config).await;

    for _ in 0..2 {
        assert_eq!(kura.get("cached.test", "/a").await.status, 200);
    }
    for i in 0..5 {
        assert_eq!(
            kura.get("api.test", &format!("/v1/items/{i}")).await.status,
            200
        );
    }
    // Two backends that refuse connections: both fail, and are marked dead (a pool's only
    // backend never is).
    for _ in 0..2 {
        assert_eq!(kura.get("broken.test", "/").await.status, 502);
    }
    // A reload, as SIGHUP or POST /reload make one (this kura has no file to re-read).
    let same = kura_config::Config::from_toml(&config, kura.dir()).unwrap();
    assert!(kura.handle.reload(&same).is_ok());

    // Shadow copies are compared in the background.
    let shown = eventually(Duration::from_secs(10), || async {
        let m = kura.metrics().await;
        m.contains("kura_shadow_compared_total{")
            && m.contains("kura_shadow_latency_seconds_bucket{")
    })
    .await;
    let metrics = kura.metrics().await;
    assert!(shown, "shadow comparisons never showed:\n{metrics}");
    let families = families(&metrics);

    let mut missing = Vec::new();
    for name in &dashboard {
        if !exported(name, &families) {
            missing.push(format!("dashboard: {name}"));
        }
    }
    for (alert, names) in &alerts {
        for name in names {
            if !exported(name, &families) && !PROMETHEUS_OWN.contains(&name.as_str()) {
                missing.push(format!("alert {alert}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:#?}\nexported: {:#?}",
        families.keys().collect::<Vec<_>>()
    );
}
