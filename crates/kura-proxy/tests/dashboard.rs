//! The admin dashboard in a real browser (headless Chromium through the DevTools protocol):
//! a kura with a cache (memory and disk), a pool with one dead backend under health checks, a
//! shadowed API with one regression and traffic flowing; the page renders what `/metrics` and
//! the JSON endpoints say (request counts, status mix, hit ratio, the dead backend as dead,
//! regressions first, the version), inserts a hostile vhost name as text, loads under its
//! Content-Security-Policy without a refusal, and asks for the admin token once when reads
//! need it. A screenshot is saved under `target/tmp/`.
//!
//! Chromium comes from Debian's `chromium` (scripts/test.sh installs it); without it these
//! tests fail saying so.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http_body_util::Full;
use kura_config::{FileHealthCheck, SizeValue};
use kura_testkit::browser::Browser;
use kura_testkit::config::{Rule, Shadow, TestConfig};
use kura_testkit::origin::{Seen, full};
use kura_testkit::{TestKura, TestOrigin, closed_addr, eventually};
use scraper::{Html, Selector};

/// A vhost name a configuration (or a Redis writer, as a host) could carry: were the page to
/// insert it as markup, an `img` would appear.
const HOSTILE: &str = "<img src=x id=xss onerror=\"window.__xss=1\">evil";

/// Requests of one round of traffic: (Host, path).
const ROUND: [(&str, &str); 8] = [
    ("site.test", "/static/app.css"),
    ("site.test", "/static/app.js"),
    ("site.test", "/"),
    ("site.test", "/missing"),
    ("site.test", "/api/same"),
    ("site.test", "/api/diff"),
    ("evil.test", "/"),
    ("nowhere.test", "/"),
];

const ROUNDS: usize = 12;

fn origin_handler(price: &'static str) -> kura_testkit::origin::Handler {
    Arc::new(move |seen: Seen| {
        Box::pin(async move {
            let path = seen.uri.split('?').next().unwrap_or("").to_string();
            if path.starts_with("/static/") {
                let mut r = full(200, "body { color: black }");
                r.headers_mut()
                    .insert(CACHE_CONTROL, "max-age=300".parse().unwrap());
                r
            } else if path == "/missing" {
                full(404, "not here")
            } else if path == "/api/diff" {
                let mut r = full(200, format!("{{\"id\":1,\"price\":{price}}}"));
                r.headers_mut()
                    .insert(CONTENT_TYPE, "application/json".parse().unwrap());
                r
            } else if path == "/api/same" {
                let mut r = full(200, "{\"id\":1,\"price\":10}");
                r.headers_mut()
                    .insert(CONTENT_TYPE, "application/json".parse().unwrap());
                r
            } else {
                full(200, "ok")
            }
        })
    })
}

async fn traffic(kura_addr: std::net::SocketAddr, rounds: usize) {
    for _ in 0..rounds {
        for (host, path) in ROUND {
            kura_testkit::get(kura_addr, host, path).await;
        }
        // A pace, not a wait for anything: traffic flows while the page loads.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// The sum of every sample of `metric` in Prometheus text whose labels contain `labels`.
fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn text_of(doc: &Html, css: &str) -> String {
    let sel = Selector::parse(css).unwrap();
    doc.select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no {css} in the page"))
        .text()
        .collect()
}

/// The row of `body` (a tbody id) whose `data-<key>` is `value`.
fn row<'a>(doc: &'a Html, body: &str, key: &str, value: &str) -> scraper::ElementRef<'a> {
    let sel = Selector::parse(&format!("#{body} tr")).unwrap();
    doc.select(&sel)
        .find(|r| r.value().attr(&format!("data-{key}")) == Some(value))
        .unwrap_or_else(|| panic!("no row with data-{key}={value:?} in #{body}"))
}

fn cell(row: scraper::ElementRef<'_>, class: &str) -> String {
    let sel = Selector::parse(&format!(".{class}")).unwrap();
    row.select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no .{class} cell"))
        .text()
        .collect()
}

fn admin_url(kura: &TestKura) -> String {
    format!("http://{}/", kura.admin.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_metrics_say_in_a_real_browser() {
    let origin = TestOrigin::start("web", origin_handler("10")).await;
    let candidate = TestOrigin::start("candidate", origin_handler("12")).await;
    let dead = format!("http://{}", closed_addr());
    let disk = tempfile::tempdir().unwrap();
    let kura =
        TestConfig::new()
            .admin()
            .cache_memory("64MiB")
            .cache_dir(disk.path())
            .cache_storage(|c| {
                c.max_disk = Some(SizeValue::Text("1GiB".into()));
                c.cleaned_disk = Some(SizeValue::Text("800MiB".into()));
            })
            .pool_with("web", &[origin.url(), dead.clone()], |p| {
                p.retries(2).edit(|f| {
                    f.health_check = Some(FileHealthCheck {
                        interval: Some("100ms".into()),
                        unhealthy_threshold: Some(1),
                        ..Default::default()
                    })
                })
            })
            .pool("candidate", &[candidate.url()])
            .vhost(&["site.test"], |v| {
                v.name("site")
                    .rule(Rule::cache("web").path("^/static/"))
                    .rule(Rule::proxy("web").path("^/api/").shadow(
                        Shadow::to(&["candidate"]).edit(|s| {
                            s.group_by = Some("path".into());
                            // The test origins name themselves in it.
                            s.ignore_headers = Some(vec!["x-origin".into()]);
                        }),
                    ))
                    .pool("web")
            })
            .vhost(&["evil.test"], |v| v.name(HOSTILE).pool("web"))
            .start()
            .await;
    let admin = kura.admin.unwrap();

    // The page and its script come with a policy that keeps them to themselves.
    let page = kura_testkit::get(admin, "127.0.0.1", "/").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or("");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let js = kura_testkit::get(admin, "127.0.0.1", "/dashboard.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );

    // Traffic flows while the browser starts and the page loads.
    let flowing = tokio::spawn(traffic(kura.addr, ROUNDS));
    let mut browser = Browser::launch(1400, 1000).await;
    browser.open(&admin_url(&kura)).await;
    assert!(
        browser
            .wait_for(
                "Number(document.body.dataset.refreshes) >= 1",
                Duration::from_secs(20)
            )
            .await,
        "the page never rendered: {:?}",
        browser.errors()
    );
    flowing.await.unwrap();

    // Traffic has stopped; let the shadow copies finish before reading the numbers.
    let settled = eventually(Duration::from_secs(20), || async {
        let s = kura.admin_json("/shadow").await;
        let compared: u64 = s["report"]["endpoints"]
            .as_array()
            .map(|e| e.iter().map(|e| e["compared"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        let dropped: u64 = s["counters"]["dropped"]
            .as_object()
            .map(|d| d.values().map(|v| v.as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        s["counters"]["selected"].as_u64() == Some(compared + dropped) && compared > 0
    })
    .await;
    assert!(settled, "{}", kura.admin_json("/shadow").await);

    // A request is counted when its answer's last byte went out, which its client may see
    // first: wait until every request of the traffic is counted.
    let counted = eventually(Duration::from_secs(20), || async {
        metric_sum(&kura.metrics().await, "kura_requests_total", &[])
            == (ROUNDS * ROUND.len()) as u64
    })
    .await;
    let m = kura.metrics().await;
    assert!(counted, "{m}");
    let site = metric_sum(&m, "kura_requests_total", &["vhost=\"site\""]);
    let site_4xx = metric_sum(
        &m,
        "kura_requests_total",
        &["vhost=\"site\"", "status=\"404\""],
    );
    let hits = metric_sum(&m, "kura_cache_hits_total", &[]);
    let misses = metric_sum(&m, "kura_cache_misses_total", &[]);
    assert_eq!(site, (ROUNDS * 6) as u64, "every site request counted\n{m}");
    assert!(hits > 0 && misses > 0, "{m}");
    assert_eq!(
        metric_sum(&m, "kura_backend_up", &[&format!("backend=\"{dead}\"")]),
        0,
        "{m}"
    );

    // The page catches up on its next refresh.
    let caught_up = format!(
        "(() => {{
            const r = [...document.querySelectorAll('#traffic-rows tr')]
                .find((t) => t.dataset.vhost === 'site');
            const u = [...document.querySelectorAll('#traffic-rows tr')]
                .find((t) => t.dataset.vhost === '_unmatched');
            return !!r && r.querySelector('.requests').textContent === '{site}'
                && !!u && u.querySelector('.requests').textContent === '{ROUNDS}'
                && document.getElementById('cache-hits').textContent === '{hits}'
                && document.getElementById('cache-misses').textContent === '{misses}'
                && document.querySelectorAll('#shadow-rows tr[data-endpoint]').length === 2;
        }})()"
    );
    let ok = browser.wait_for(&caught_up, Duration::from_secs(30)).await;
    let html = browser.html().await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());
    assert!(ok, "the page did not show /metrics' numbers:\n{html}");
    let doc = Html::parse_document(&html);

    // Version and connections.
    assert_eq!(text_of(&doc, "#version"), env!("CARGO_PKG_VERSION"));
    assert!(text_of(&doc, "#uptime").ends_with('s'));
    assert_eq!(text_of(&doc, "#redis-state"), "not configured");
    assert_eq!(text_of(&doc, "#etcd-state"), "not configured");

    // Requests per vhost: totals as in /metrics, and the window (younger than five minutes)
    // holds them all, with the 404s in the 4xx share.
    let r = row(&doc, "traffic-rows", "vhost", "site");
    assert_eq!(cell(r, "requests"), site.to_string());
    assert_eq!(cell(r, "window"), site.to_string());
    let mix = cell(r, "mix-text");
    assert!(
        mix.contains(&format!("4xx {site_4xx}"))
            && mix.contains(&format!("2xx {}", site - site_4xx)),
        "{mix}"
    );
    let unmatched = row(&doc, "traffic-rows", "vhost", "_unmatched");
    assert_eq!(cell(unmatched, "requests"), ROUNDS.to_string());

    // The hostile name is text in a cell, not markup.
    let evil = row(&doc, "traffic-rows", "vhost", HOSTILE);
    assert_eq!(cell(evil, "name"), HOSTILE);
    assert!(
        doc.select(&Selector::parse("img").unwrap())
            .next()
            .is_none()
    );
    assert_eq!(browser.eval("typeof window.__xss").await, "undefined");

    // Backends: the dead one is shown dead, the live one alive.
    let d = row(&doc, "backend-rows", "backend", &dead);
    assert_eq!(cell(d, "state"), "dead");
    assert!(d.value().classes().any(|c| c == "dead"));
    assert!(
        cell(d, "why").contains("health check failing"),
        "{}",
        cell(d, "why")
    );
    let o = row(&doc, "backend-rows", "backend", &origin.url());
    assert_eq!(cell(o, "state"), "alive");

    // Cache: counts and ratio as in /metrics, the tiers and the disk marks.
    assert_eq!(text_of(&doc, "#cache-hits"), hits.to_string());
    assert_eq!(text_of(&doc, "#cache-misses"), misses.to_string());
    assert_eq!(
        text_of(&doc, "#cache-hit-ratio"),
        format!("{:.1}%", 100.0 * hits as f64 / (hits + misses) as f64)
    );
    let disk_row = row(&doc, "cache-tiers", "tier", "disk");
    assert!(
        cell(disk_row, "bytes").ends_with("of 1.0 GiB"),
        "{}",
        cell(disk_row, "bytes")
    );
    let marks = text_of(&doc, "#cache-disk-marks");
    assert!(
        marks.contains("above 1.0 GiB") && marks.contains("stops at 800.0 MiB"),
        "{marks}"
    );

    // No cluster here.
    let hidden = |css: &str| {
        doc.select(&Selector::parse(css).unwrap())
            .next()
            .unwrap()
            .value()
            .attr("hidden")
            .is_some()
    };
    assert!(!hidden("#cluster-none") && hidden("#cluster-body"));

    // Shadow: the regression first.
    let rows: Vec<(String, String)> = doc
        .select(&Selector::parse("#shadow-rows tr[data-endpoint]").unwrap())
        .map(|r| {
            (
                r.value().attr("data-endpoint").unwrap().to_string(),
                cell(r, "regressions"),
            )
        })
        .collect();
    assert_eq!(rows[0].0, "GET /api/diff", "{rows:?}");
    assert_ne!(rows[0].1, "0", "{rows:?}");
    assert_eq!(rows[1], ("GET /api/same".to_string(), "0".to_string()));
    // Both sides' median time to the response head, from the report's latency.
    let first = doc
        .select(&Selector::parse("#shadow-rows tr[data-endpoint]").unwrap())
        .next()
        .unwrap();
    let latency = cell(first, "latency");
    assert!(
        latency.contains(" → ") && latency.contains(" ms ("),
        "{latency}"
    );

    // Nothing refused by the policy, no script error (a missing favicon is not the page's).
    let errors: Vec<&String> = browser
        .errors()
        .iter()
        .filter(|e| !e.contains("favicon.ico"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_once_for_the_token_when_reads_need_it() {
    let origin = TestOrigin::fixed("web", 200, "ok").await;
    let kura = TestConfig::new()
        .admin_with(|a| {
            a.token = Some("s3cret-token-for-tests".into());
            a.protect_reads = Some(true);
        })
        .pool("web", &[origin.url()])
        .vhost(&["*"], |v| v.name("all").pool("web"))
        .start()
        .await;
    let admin = kura.admin.unwrap();
    kura.get("a.test", "/").await;
    // The page's files hold no data and open without the token; the data does not.
    assert_eq!(kura_testkit::get(admin, "127.0.0.1", "/").await.status, 200);
    assert_eq!(
        kura_testkit::get(admin, "127.0.0.1", "/dashboard.js")
            .await
            .status,
        200
    );
    assert_eq!(
        kura_testkit::get(admin, "127.0.0.1", "/status")
            .await
            .status,
        401
    );
    assert_eq!(
        kura_testkit::get(admin, "127.0.0.1", "/traffic")
            .await
            .status,
        401
    );
    let purge = http::Request::post("/purge?all=true")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(kura_testkit::send(admin, purge).await.status, 401);
    // A page elsewhere still cannot get the dashboard's files into a frame or its origin.
    let stranger = http::Request::get("/")
        .header("host", "attacker.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(kura_testkit::send(admin, stranger).await.status, 421);

    let mut browser = Browser::launch(1200, 900).await;
    let url = admin_url(&kura);
    browser.open(&url).await;
    let asked = "document.body.dataset.state === 'token' \
         && !document.getElementById('token-form').hidden \
         && document.getElementById('panels').hidden";
    assert!(browser.wait_for(asked, Duration::from_secs(30)).await);
    let submit = |token: &str| {
        format!(
            "document.getElementById('token').value = {token:?}; \
             document.getElementById('token-form').requestSubmit(); true"
        )
    };
    browser.eval(&submit("wrong")).await;
    let refused = "document.getElementById('token-message').textContent === 'The token was refused.' \
         && !document.getElementById('token-form').hidden";
    assert!(browser.wait_for(refused, Duration::from_secs(30)).await);
    browser.eval(&submit("s3cret-token-for-tests")).await;
    let ready = "document.body.dataset.state === 'ready' \
         && document.getElementById('token-form').hidden";
    assert!(
        browser.wait_for(ready, Duration::from_secs(30)).await,
        "{}",
        browser.html().await
    );
    assert_eq!(
        browser
            .eval("document.getElementById('version').textContent")
            .await,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('kura-admin-token')")
            .await,
        "s3cret-token-for-tests"
    );
    // Opened again in the same tab, the page does not ask again; the token is in no URL.
    browser.open(&url).await;
    assert!(
        browser
            .wait_for(
                "document.body.dataset.state === 'ready' && document.getElementById('token-form').hidden",
                Duration::from_secs(30)
            )
            .await
    );
    assert_eq!(browser.eval("location.href").await, url.as_str());
    let errors: Vec<&String> = browser
        .errors()
        .iter()
        .filter(|e| !e.contains("favicon.ico") && !e.contains("401"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
