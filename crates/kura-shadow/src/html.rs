//! The shadow report as one self-contained HTML page (no scripts, no external assets), for a
//! person in a browser. Everything that came from a request or a response is escaped: the
//! page shows attacker-controlled bytes. Endpoints where a candidate is slower or faster at
//! the median are listed first, one line each ("v2 is 30 % slower on GET /items/{id}").

use std::fmt::Write;

use crate::latency::{QuantileReport, Speed};
use crate::report::{EndpointReport, Snapshot, Verdict};

/// Counters shown above the endpoints.
pub struct Totals<'a> {
    /// Counter names and values, one table row each, in order.
    pub rows: Vec<(&'a str, u64)>,
}

/// The whole page: `totals`, then each endpoint of `snap` with its fields and examples.
pub fn render(snap: &Snapshot, totals: &Totals<'_>) -> String {
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>kura shadow report</title><style>",
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}",
        "table{border-collapse:collapse;margin:.5em 0 1.5em}",
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}",
        "th{background:#f3f3f3}.regression{color:#a00;font-weight:bold}.noise{color:#777}",
        ".slower{color:#a00;font-weight:bold}.faster{color:#070}",
        "code{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}",
        "</style></head><body>\n<h1>kura shadow report</h1>\n"
    ));
    let _ = writeln!(
        h,
        "<p>Counting since <time>{}</time>. A field is a regression when the candidate differs \
         at least {:.1} points and {:.0}% more often than two primaries differ (noise).</p>",
        esc(&snap.since),
        snap.absolute_threshold * 100.0,
        snap.relative_threshold * 100.0
    );
    h.push_str("<table id=\"totals\"><tr><th>counter</th><th>value</th></tr>\n");
    for (name, v) in &totals.rows {
        let _ = writeln!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(name));
    }
    h.push_str("</table>\n");
    if snap.endpoints.is_empty() {
        h.push_str("<p id=\"empty\">No exchange compared yet.</p>\n");
    }
    latency_summary(&mut h, snap);
    h.push_str("<table id=\"endpoints\"><tr><th>endpoint</th><th>candidate</th><th>compared</th>");
    h.push_str("<th>differing</th><th>noise compared</th><th>regressions</th>");
    h.push_str("<th>p50 primary</th><th>p50 candidate</th><th>p50 change</th></tr>\n");
    for (i, e) in snap.endpoints.iter().enumerate() {
        let _ = write!(
            h,
            "<tr class=\"endpoint\"><td><a href=\"#e{i}\">{}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"{}\">{}</td>",
            esc(&e.endpoint),
            esc(&e.candidate),
            e.compared,
            e.differing,
            e.noise_compared,
            if e.regressions > 0 {
                "regression"
            } else {
                "noise"
            },
            e.regressions
        );
        match &e.latency {
            Some(l) => {
                let _ = write!(
                    h,
                    "<td>{} ms</td><td>{} ms</td><td class=\"{}\">{}</td>",
                    l.p50.primary_ms,
                    l.p50.candidate_ms,
                    speed(l.p50.verdict),
                    change(&l.p50)
                );
            }
            None => h.push_str("<td></td><td></td><td></td>"),
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    for (i, e) in snap.endpoints.iter().enumerate() {
        let _ = writeln!(
            h,
            "<h2 id=\"e{i}\">{} → {}</h2>",
            esc(&e.endpoint),
            esc(&e.candidate)
        );
        latency_table(&mut h, e);
        if e.fields.is_empty() {
            h.push_str("<p>No differences.</p>\n");
            continue;
        }
        h.push_str(
            "<table class=\"fields\"><tr><th>field</th><th>verdict</th><th>differences</th>",
        );
        h.push_str(
            "<th>rate</th><th>noise rate</th><th>examples (uri: primary → candidate)</th></tr>\n",
        );
        for f in &e.fields {
            let class = match f.verdict {
                Verdict::Regression => "regression",
                Verdict::Noise => "noise",
            };
            let _ = write!(
                h,
                "<tr class=\"field\"><td><code>{}</code></td><td class=\"{class}\">{class}</td>\
                 <td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>",
                esc(&f.field),
                f.differences,
                f.rate * 100.0,
                f.noise_rate * 100.0
            );
            for x in &f.examples {
                let _ = write!(
                    h,
                    "<div class=\"example\"><code>{}</code>: <code>{}</code> → <code>{}</code></div>",
                    esc(&x.uri),
                    esc(&x.primary),
                    esc(&x.candidate)
                );
            }
            h.push_str("</td></tr>\n");
        }
        if e.untracked_differences > 0 {
            let _ = writeln!(
                h,
                "<tr><td colspan=\"6\">{} more differences in fields not itemised</td></tr>",
                e.untracked_differences
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn speed(s: Speed) -> &'static str {
    match s {
        Speed::Slower => "slower",
        Speed::Similar => "similar",
        Speed::Faster => "faster",
    }
}

/// `+30 %`, `-12.5 %`, or `n/a` against a primary time of 0.
fn change(q: &QuantileReport) -> String {
    match q.change_percent {
        Some(p) => format!("{p:+} %"),
        None => "n/a".into(),
    }
}

/// One line per (endpoint, candidate) slower or faster at the median, the slowest first.
fn latency_summary(h: &mut String, snap: &Snapshot) {
    let mut changed: Vec<(&EndpointReport, &QuantileReport)> = snap
        .endpoints
        .iter()
        .filter_map(|e| Some((e, &e.latency.as_ref()?.p50)))
        .collect();
    if changed.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<p>Latency: time to the response head, primary and candidate over the same exchanges. \
         A candidate is slower or faster at a quantile when the difference is at least {:.0}% \
         and {} ms.</p>",
        snap.latency_relative_threshold * 100.0,
        snap.latency_absolute_threshold_ms
    );
    changed.retain(|(_, q)| q.verdict != Speed::Similar);
    if changed.is_empty() {
        h.push_str("<p id=\"latency\">No candidate is slower or faster at the median.</p>\n");
        return;
    }
    changed.sort_by(|a, b| {
        let key = |q: &QuantileReport| q.change_percent.unwrap_or(f64::INFINITY);
        key(b.1).total_cmp(&key(a.1))
    });
    h.push_str("<ul id=\"latency\">\n");
    for (e, q) in changed {
        let how = match q.change_percent {
            Some(p) => format!("{} % {}", p.abs(), speed(q.verdict)),
            None => speed(q.verdict).to_string(),
        };
        let _ = writeln!(
            h,
            "<li class=\"{}\">{} is {how} on {} (p50 {} ms against {} ms)</li>",
            speed(q.verdict),
            esc(&e.candidate),
            esc(&e.endpoint),
            q.candidate_ms,
            q.primary_ms
        );
    }
    h.push_str("</ul>\n");
}

/// The endpoint's quantiles, both sides and the difference.
fn latency_table(h: &mut String, e: &EndpointReport) {
    let Some(l) = &e.latency else {
        return;
    };
    let _ = writeln!(
        h,
        "<table class=\"latency\"><tr><th>time to head ({} exchanges)</th><th>primary</th>\
         <th>candidate</th><th>difference</th><th>change</th></tr>",
        l.measured
    );
    for (name, q) in l.quantiles() {
        let _ = writeln!(
            h,
            "<tr class=\"quantile\"><td>{name}</td><td>{} ms</td><td>{} ms</td>\
             <td>{:+} ms</td><td class=\"{}\">{}</td></tr>",
            q.primary_ms,
            q.candidate_ms,
            q.difference_ms,
            speed(q.verdict),
            change(q)
        );
    }
    h.push_str("</table>\n");
}

/// Escapes text for an HTML element body or a double-quoted attribute.
pub use kura_http::escape_html as esc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Difference;
    use crate::report::{ReportSettings, Reports};

    #[test]
    fn values_from_the_network_are_escaped() {
        let r = Reports::new(ReportSettings::default());
        let diff = Difference {
            field: "$.name".into(),
            primary: "<script>alert(1)</script>".into(),
            candidate: "\"x\" & 'y'".into(),
        };
        r.record("GET /<b>", "v2", "/?q=<i>", &[diff], None, None);
        let page = render(
            &r.snapshot(),
            &Totals {
                rows: vec![("dropped", 3)],
            },
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;x&quot; &amp; &#39;y&#39;"));
        assert!(page.contains("<td>dropped</td><td>3</td>"));
        assert!(page.contains("class=\"regression\">regression<"));
        assert!(page.ends_with("</body></html>\n"));
    }

    #[test]
    fn slower_and_faster_endpoints_are_named_first_and_escaped() {
        use crate::latency::Timing;
        use std::time::Duration;
        let r = Reports::new(ReportSettings::default());
        let t = |p: u64, c: u64| {
            Some(Timing {
                primary: Duration::from_millis(p),
                candidate: Duration::from_millis(c),
            })
        };
        for _ in 0..5 {
            r.record("GET /items/{id}", "v2", "/items/1", &[], None, t(10, 13));
            r.record("GET /search", "v2", "/search", &[], None, t(50, 20));
            r.record("GET /<i>", "v2", "/", &[], None, t(5, 5));
        }
        let page = render(&r.snapshot(), &Totals { rows: vec![] });
        let start = page.find("<ul id=\"latency\">").expect("a latency list");
        let list = &page[start..page[start..].find("</ul>").unwrap() + start];
        let lines: Vec<&str> = list.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "<li class=\"slower\">v2 is 30 % slower on GET /items/{id} (p50 13 ms against 10 ms)</li>",
                "<li class=\"faster\">v2 is 60 % faster on GET /search (p50 20 ms against 50 ms)</li>",
            ]
        );
        assert!(page.contains(
            "<td>p50</td><td>10 ms</td><td>13 ms</td><td>+3 ms</td><td class=\"slower\">+30 %</td>"
        ));
        assert!(page.contains("<td class=\"similar\">+0 %</td>"));
        assert!(!page.contains("<i>"));
    }

    #[test]
    fn an_empty_report_says_so() {
        let r = Reports::new(ReportSettings::default());
        let page = render(&r.snapshot(), &Totals { rows: vec![] });
        assert!(page.contains("No exchange compared yet."));
    }
}
