//! Shadow latency through the real server: a candidate that answers one endpoint 80 ms later
//! than the primary is reported slower there (and one that answers another endpoint 80 ms
//! sooner, faster), in `/shadow`, on the HTML page and in the Prometheus histograms.

use std::sync::Arc;
use std::time::Duration;

use kura_testkit::origin::{Seen, full};
use kura_testkit::{Client, TestKura, TestOrigin, eventually};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(20);
const DELAY: Duration = Duration::from_millis(80);

/// An origin answering `ok` at once, except on paths starting with `slow_prefix`, which it
/// answers `DELAY` later.
async fn origin(name: &str, slow_prefix: &'static str) -> TestOrigin {
    TestOrigin::start(
        name,
        Arc::new(move |seen: Seen| {
            Box::pin(async move {
                if seen.uri.starts_with(slow_prefix) {
                    tokio::time::sleep(DELAY).await;
                }
                full(200, "ok")
            })
        }),
    )
    .await
}

fn endpoint<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["report"]["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["endpoint"] == name))
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

/// The value of the sample `name{labels}` in the Prometheus text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[tokio::test]
async fn a_slower_candidate_is_reported_slower_on_its_endpoint() {
    // The candidate is slow on /items, the primary on /search.
    let primary = origin("primary", "/search").await;
    let candidate = origin("candidate", "/items/").await;
    let kura = TestKura::start(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[pools.primary]
backends = ["{}"]
[pools.candidate]
backends = ["{}"]
[[vhosts]]
hosts = ["*"]
pool = "primary"
[vhosts.shadow]
targets = [{{ pool = "candidate", name = "v2" }}]
group_by = "path"
ignore_headers = ["x-origin"]
"#,
        primary.url(),
        candidate.url()
    ))
    .await;
    let n = 25u64;
    let mut c = Client::connect(kura.addr).await;
    for i in 0..n {
        let r = c.get("a.test", &format!("/items/{i}")).await.unwrap();
        assert_eq!((r.status, r.text()), (200, "ok".to_string()));
        let r = c.get("a.test", &format!("/search?q={i}")).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let compared = |r: &Value, name: &str| {
        r["report"]["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["endpoint"] == name))
            .map(|e| e["compared"].clone())
    };
    assert!(
        eventually(SETTLE, || async {
            let r = kura.admin_json("/shadow").await;
            compared(&r, "GET /items/{id}") == Some(n.into())
                && compared(&r, "GET /search") == Some(n.into())
        })
        .await,
        "{}",
        kura.admin_json("/shadow").await
    );
    let report = kura.admin_json("/shadow").await;

    // JSON: per endpoint, both sides' quantiles, the difference and the verdict.
    let items = &endpoint(&report, "GET /items/{id}")["latency"];
    assert_eq!(items["measured"], n, "{items}");
    assert_eq!(items["verdict"], "slower", "{items}");
    let p50 = &items["p50"];
    let (primary_ms, candidate_ms) = (
        p50["primary_ms"].as_f64().unwrap(),
        p50["candidate_ms"].as_f64().unwrap(),
    );
    // The candidate sleeps 80 ms on top of what the primary does: whatever the machine's load
    // adds to both, the medians are tens of milliseconds apart.
    assert!(candidate_ms >= 75.0, "{items}");
    assert!(candidate_ms - primary_ms >= 40.0, "{items}");
    let diff = p50["difference_ms"].as_f64().unwrap();
    assert!((diff - (candidate_ms - primary_ms)).abs() < 0.01, "{items}");
    assert!(p50["change_percent"].as_f64().unwrap() >= 50.0, "{items}");
    for q in ["p90", "p99"] {
        assert!(
            items[q]["candidate_ms"].as_f64().unwrap() >= 75.0,
            "{q}: {items}"
        );
    }
    let search = &endpoint(&report, "GET /search")["latency"];
    assert_eq!(search["verdict"], "faster", "{search}");
    assert!(search["p50"]["difference_ms"].as_f64().unwrap() <= -40.0);
    assert_eq!(report["report"]["latency_relative_threshold"], 0.2);

    // The page names the slower endpoint first, in words.
    let page = kura_testkit::get(kura.admin.unwrap(), "127.0.0.1", "/shadow.html").await;
    let html = scraper::Html::parse_document(&page.text());
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let lines: Vec<(String, String)> = html
        .select(&sel("#latency li"))
        .map(|li| {
            let class = li.value().attr("class").unwrap_or_default().to_string();
            (class, li.text().collect())
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "slower");
    assert!(
        lines[0].1.starts_with("v2 is ") && lines[0].1.contains("% slower on GET /items/{id}"),
        "{lines:?}"
    );
    assert_eq!(lines[1].0, "faster");
    assert!(lines[1].1.contains("% faster on GET /search"), "{lines:?}");
    let changes: Vec<String> = html
        .select(&sel("#endpoints tr.endpoint td:last-child"))
        .map(|td| td.value().attr("class").unwrap_or_default().to_string())
        .collect();
    assert_eq!(changes, ["slower", "faster"], "endpoints sorted by name");

    // Prometheus: one histogram per target and side, counting every exchange compared.
    let m = kura.metrics().await;
    let series = |side: &str, suffix: &str| {
        format!("kura_shadow_latency_seconds_{suffix}{{side=\"{side}\",target=\"v2\"")
    };
    for side in ["primary", "candidate"] {
        let count = sample(&m, &format!("{}}}", series(side, "count")));
        assert_eq!(count, (2 * n) as f64, "{side}");
        let inf = sample(&m, &format!("{},le=\"+Inf\"}}", series(side, "bucket")));
        assert_eq!(inf, count, "{side}");
        // Each side is slow on one endpoint of the two: at least n answers took 80 ms or more.
        let under_50ms = sample(&m, &format!("{},le=\"0.05\"}}", series(side, "bucket")));
        assert!(under_50ms <= n as f64, "{side}: {under_50ms}");
        let sum = sample(&m, &format!("{}}}", series(side, "sum")));
        assert!(sum >= n as f64 * 0.075, "{side}: {sum}");
    }
}
