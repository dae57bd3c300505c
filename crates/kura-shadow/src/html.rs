//! The shadow report as one self-contained HTML page (no scripts, no external assets), for a
//! person in a browser. Everything that came from a request or a response is escaped: the
//! page shows attacker-controlled bytes.

use std::fmt::Write;

use crate::report::{Snapshot, Verdict};

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
    h.push_str("<table id=\"endpoints\"><tr><th>endpoint</th><th>candidate</th><th>compared</th>");
    h.push_str("<th>differing</th><th>noise compared</th><th>regressions</th></tr>\n");
    for (i, e) in snap.endpoints.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr class=\"endpoint\"><td><a href=\"#e{i}\">{}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
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
    }
    h.push_str("</table>\n");
    for (i, e) in snap.endpoints.iter().enumerate() {
        let _ = writeln!(
            h,
            "<h2 id=\"e{i}\">{} → {}</h2>",
            esc(&e.endpoint),
            esc(&e.candidate)
        );
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
        r.record("GET /<b>", "v2", "/?q=<i>", &[diff], None);
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
    fn an_empty_report_says_so() {
        let r = Reports::new(ReportSettings::default());
        let page = render(&r.snapshot(), &Totals { rows: vec![] });
        assert!(page.contains("No exchange compared yet."));
    }
}
