//! Comparing two answers to the same request: status, headers (less an ignore list) and body.
//! A JSON body is compared field by field, each difference named by its path
//! (`$.items[3].price`), so the report can count how often each field differs; text is compared
//! by lines (the `similar` crate), anything else by length and hash. The field names produced
//! here are the report's keys: `status`, `header.<name>`, `$...` for JSON, `body` otherwise.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One side of a comparison: an answer as far as it was read.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code as the upstream sent it.
    pub status: StatusCode,
    /// The response headers as the upstream sent them (compared less `ignore_headers`).
    pub headers: HeaderMap,
    /// The body, or its first `max_compare_body` bytes.
    pub body: Bytes,
    /// The whole body's length (more than `body.len()` when it was cut).
    pub length: u64,
    /// Time from handing the request to the pool to the response head (Kage's `:elapsed`);
    /// `None` when it was not timed. Not compared: the report counts it as latency.
    pub elapsed: Option<std::time::Duration>,
}

impl Answer {
    /// Whether the body was cut: only its first `body.len()` of `length` bytes were kept.
    pub fn truncated(&self) -> bool {
        self.length > self.body.len() as u64
    }
}

/// One field that differs, with both values rendered for a person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// What differs, as the report's key: `status`, `header.<name>`, a JSON path
    /// (`$.items[3].price`) or `body`.
    pub field: String,
    /// The primary's value, rendered and cut to 200 characters (`(missing)` when absent).
    pub primary: String,
    /// The other answer's value (the candidate's, or the second primary's for noise), rendered
    /// the same way.
    pub candidate: String,
}

/// What comparisons leave out and how much they report.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Header names (lowercase) never compared.
    pub ignore_headers: HashSet<String>,
    /// JSON fields never compared, as paths (`$.meta.request_id`); `[*]` matches any index.
    pub ignore_fields: Vec<String>,
    /// At most this many differences per exchange (a reordered array could give thousands).
    pub max_differences: usize,
}

/// Rendered values longer than this are cut (the report keeps examples, not documents).
const MAX_VALUE_CHARS: usize = 200;
const MISSING: &str = "(missing)";

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            ignore_headers: kura_config::DEFAULT_SHADOW_IGNORE_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ignore_fields: Vec::new(),
            max_differences: 50,
        }
    }
}

/// The differences between `a` (the primary, or reference) and `b`.
pub fn compare(a: &Answer, b: &Answer, opts: &CompareOptions) -> Vec<Difference> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push(Difference {
            field: "status".into(),
            primary: a.status.as_u16().to_string(),
            candidate: b.status.as_u16().to_string(),
        });
    }
    compare_headers(&a.headers, &b.headers, opts, &mut out);
    compare_bodies(a, b, opts, &mut out);
    out.truncate(opts.max_differences);
    out
}

fn compare_headers(a: &HeaderMap, b: &HeaderMap, opts: &CompareOptions, out: &mut Vec<Difference>) {
    let names: BTreeSet<&str> = a.keys().chain(b.keys()).map(|n| n.as_str()).collect();
    for name in names {
        if opts.ignore_headers.contains(name) {
            continue;
        }
        let (va, vb) = (joined(a, name), joined(b, name));
        if va != vb {
            out.push(Difference {
                field: format!("header.{name}"),
                primary: va.unwrap_or_else(|| MISSING.into()),
                candidate: vb.unwrap_or_else(|| MISSING.into()),
            });
        }
    }
}

fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let mut values = h.get_all(name).iter().peekable();
    values.peek()?;
    let v: Vec<String> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Some(cut(&v.join(", ")))
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Text,
    Binary,
}

fn kind(a: &Answer) -> Kind {
    let ct = a
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.contains("json") {
        Kind::Json
    } else if ct.starts_with("text/")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.contains("charset")
        || (ct.is_empty() && std::str::from_utf8(&a.body).is_ok())
    {
        Kind::Text
    } else {
        Kind::Binary
    }
}

fn compare_bodies(a: &Answer, b: &Answer, opts: &CompareOptions, out: &mut Vec<Difference>) {
    if a.truncated() || b.truncated() {
        // Only part of a body was kept: compare what can be compared honestly.
        if a.length != b.length || a.body != b.body {
            out.push(Difference {
                field: "body".into(),
                primary: fingerprint(a),
                candidate: fingerprint(b),
            });
        }
        return;
    }
    if a.body == b.body {
        return;
    }
    let (ka, kb) = (kind(a), kind(b));
    if ka == Kind::Json
        && kb == Kind::Json
        && let (Ok(ja), Ok(jb)) = (
            serde_json::from_slice::<Value>(&a.body),
            serde_json::from_slice::<Value>(&b.body),
        )
    {
        let mut path = String::from("$");
        diff_json(&mut path, &ja, &jb, opts, out);
        return;
    }
    if ka != Kind::Binary
        && kb != Kind::Binary
        && let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&a.body), std::str::from_utf8(&b.body))
    {
        let (removed, added) = line_diff(ta, tb);
        out.push(Difference {
            field: "body".into(),
            primary: removed,
            candidate: added,
        });
        return;
    }
    out.push(Difference {
        field: "body".into(),
        primary: fingerprint(a),
        candidate: fingerprint(b),
    });
}

/// The lines only the first text has and those only the second has (first few, cut).
fn line_diff(a: &str, b: &str) -> (String, String) {
    let diff = similar::TextDiff::from_lines(a, b);
    let (mut removed, mut added) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        let target = match change.tag() {
            similar::ChangeTag::Delete => &mut removed,
            similar::ChangeTag::Insert => &mut added,
            similar::ChangeTag::Equal => continue,
        };
        if target.len() < MAX_VALUE_CHARS {
            target.push_str(change.value());
        }
    }
    let show = |s: String| {
        if s.is_empty() {
            "(no lines)".to_string()
        } else {
            cut(s.trim_end_matches('\n'))
        }
    };
    (show(removed), show(added))
}

fn fingerprint(a: &Answer) -> String {
    let cut = if a.truncated() { " (first bytes)" } else { "" };
    format!(
        "{} bytes, xxh3 {:016x}{cut}",
        a.length,
        xxhash_rust::xxh3::xxh3_64(&a.body)
    )
}

fn diff_json(
    path: &mut String,
    a: &Value,
    b: &Value,
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
) {
    if out.len() >= opts.max_differences || ignored(path, &opts.ignore_fields) {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                let len = path.len();
                push_key(path, k);
                match (ma.get(k), mb.get(k)) {
                    (Some(va), Some(vb)) => diff_json(path, va, vb, opts, out),
                    (va, vb) => {
                        if !ignored(path, &opts.ignore_fields) {
                            out.push(Difference {
                                field: path.clone(),
                                primary: va.map_or_else(|| MISSING.into(), render),
                                candidate: vb.map_or_else(|| MISSING.into(), render),
                            });
                        }
                    }
                }
                path.truncate(len);
                if out.len() >= opts.max_differences {
                    return;
                }
            }
        }
        (Value::Array(va), Value::Array(vb)) => {
            for i in 0..va.len().max(vb.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (va.get(i), vb.get(i)) {
                    (Some(x), Some(y)) => diff_json(path, x, y, opts, out),
                    (x, y) => {
                        if !ignored(path, &opts.ignore_fields) {
                            out.push(Difference {
                                field: path.clone(),
                                primary: x.map_or_else(|| MISSING.into(), render),
                                candidate: y.map_or_else(|| MISSING.into(), render),
                            });
                        }
                    }
                }
                path.truncate(len);
                if out.len() >= opts.max_differences {
                    return;
                }
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            // 1 and 1.0 are the same number to every JSON consumer.
            let same = x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64());
            if !same {
                out.push(Difference {
                    field: path.clone(),
                    primary: render(a),
                    candidate: render(b),
                });
            }
        }
        _ => {
            if a != b {
                out.push(Difference {
                    field: path.clone(),
                    primary: render(a),
                    candidate: render(b),
                });
            }
        }
    }
}

/// Appends `.key`, or `["key"]` when the key is not a plain identifier.
fn push_key(path: &mut String, k: &str) {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        path.push('.');
        path.push_str(k);
    } else {
        path.push('[');
        path.push_str(&Value::String(k.to_string()).to_string());
        path.push(']');
    }
}

/// Whether `path` is one of `patterns` (where `[*]` stands for any index) or below one.
fn ignored(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| path_matches(p, path))
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut s) = (pattern, path);
    loop {
        if p.is_empty() {
            // The pattern is a prefix ending at a field boundary: everything below is ignored.
            return s.is_empty() || s.starts_with('.') || s.starts_with('[');
        }
        if let Some(rest) = p.strip_prefix("[*]") {
            let Some(after) = s.strip_prefix('[') else {
                return false;
            };
            let Some(end) = after.find(']') else {
                return false;
            };
            if !after[..end].bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            p = rest;
            s = &after[end + 1..];
            continue;
        }
        let (pc, sc) = (p.as_bytes()[0], s.as_bytes().first().copied());
        if Some(pc) != sc {
            return false;
        }
        p = &p[1..];
        s = &s[1..];
    }
}

fn render(v: &Value) -> String {
    cut(&v.to_string())
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_VALUE_CHARS).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ct: &str, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if !ct.is_empty() {
            headers.insert("content-type", ct.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::copy_from_slice(body.as_bytes()),
            length: body.len() as u64,
            elapsed: None,
        }
    }

    fn fields(d: &[Difference]) -> Vec<&str> {
        d.iter().map(|d| d.field.as_str()).collect()
    }

    #[test]
    fn identical_answers_have_no_differences() {
        let a = answer(200, "application/json", r#"{"a":1,"b":[1,2]}"#);
        let b = answer(200, "application/json", r#"{ "b": [1, 2], "a": 1.0 }"#);
        assert!(compare(&a, &b, &CompareOptions::default()).is_empty());
    }

    #[test]
    fn json_fields_are_found_with_their_paths() {
        let a = answer(
            200,
            "application/json",
            r#"{"items":[{"id":1,"price":10},{"id":2,"price":20},{"id":3,"price":30},{"id":4,"price":40}],"total":100,"old":true,"weird key":1}"#,
        );
        let b = answer(
            200,
            "application/json; charset=utf-8",
            r#"{"items":[{"id":1,"price":10},{"id":2,"price":20},{"id":3,"price":30},{"id":4,"price":41}],"total":"101","new":null,"weird key":2}"#,
        );
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(
            fields(&d),
            [
                "header.content-type",
                "$.items[3].price",
                "$.new",
                "$.old",
                "$.total",
                r#"$["weird key"]"#
            ]
        );
        let price = &d[1];
        assert_eq!(
            (price.primary.as_str(), price.candidate.as_str()),
            ("40", "41")
        );
        assert_eq!(d[2].primary, "(missing)");
        assert_eq!(d[2].candidate, "null");
        assert_eq!(
            (d[4].primary.as_str(), d[4].candidate.as_str()),
            ("100", "\"101\"")
        );
    }

    #[test]
    fn arrays_of_different_lengths_name_the_extra_elements() {
        let a = answer(200, "application/json", r#"[1,2]"#);
        let b = answer(200, "application/json", r#"[1,2,3]"#);
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(fields(&d), ["$[2]"]);
        assert_eq!(d[0].primary, "(missing)");
    }

    #[test]
    fn ignored_fields_and_headers_are_skipped() {
        let mut a = answer(
            200,
            "application/json",
            r#"{"meta":{"id":"x","t":1},"rows":[{"at":1,"v":1},{"at":2,"v":2}]}"#,
        );
        let mut b = answer(
            200,
            "application/json",
            r#"{"meta":{"id":"y","t":2},"rows":[{"at":5,"v":1},{"at":6,"v":3}]}"#,
        );
        a.headers.insert("date", "Mon".parse().unwrap());
        b.headers.insert("date", "Tue".parse().unwrap());
        a.headers.insert("x-trace", "1".parse().unwrap());
        b.headers.insert("x-trace", "2".parse().unwrap());
        let mut opts = CompareOptions {
            ignore_fields: vec!["$.meta".into(), "$.rows[*].at".into()],
            ..CompareOptions::default()
        };
        opts.ignore_headers.insert("x-trace".into());
        let d = compare(&a, &b, &opts);
        assert_eq!(fields(&d), ["$.rows[1].v"]);
    }

    #[test]
    fn status_and_header_differences() {
        let mut a = answer(200, "text/plain", "same");
        let mut b = answer(404, "text/plain", "same");
        a.headers.append("vary", "a".parse().unwrap());
        a.headers.append("vary", "b".parse().unwrap());
        b.headers.insert("x-new", "1".parse().unwrap());
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(fields(&d), ["status", "header.vary", "header.x-new"]);
        assert_eq!(d[0].primary, "200");
        assert_eq!(d[1].primary, "a, b");
        assert_eq!(d[1].candidate, "(missing)");
    }

    #[test]
    fn text_is_compared_by_lines() {
        let a = answer(200, "text/html", "<p>one</p>\n<p>two</p>\n<p>three</p>\n");
        let b = answer(200, "text/html", "<p>one</p>\n<p>2</p>\n<p>three</p>\n");
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(fields(&d), ["body"]);
        assert_eq!(d[0].primary, "<p>two</p>");
        assert_eq!(d[0].candidate, "<p>2</p>");
    }

    #[test]
    fn binary_is_compared_by_hash_and_cut_bodies_by_length() {
        let a = answer(200, "image/png", "\u{0}\u{1}abc");
        let b = answer(200, "image/png", "\u{0}\u{1}abd");
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(fields(&d), ["body"]);
        assert!(
            d[0].primary.starts_with("5 bytes, xxh3 "),
            "{}",
            d[0].primary
        );
        assert_ne!(d[0].primary, d[0].candidate);

        let mut long_a = answer(200, "application/json", "{\"a\":");
        long_a.length = 1000;
        let mut long_b = long_a.clone();
        assert!(compare(&long_a, &long_b, &CompareOptions::default()).is_empty());
        long_b.length = 1001;
        let d = compare(&long_a, &long_b, &CompareOptions::default());
        assert_eq!(fields(&d), ["body"]);
        assert!(d[0].candidate.contains("1001 bytes"));
    }

    #[test]
    fn invalid_json_falls_back_to_text_and_output_is_bounded() {
        let a = answer(200, "application/json", "{not json");
        let b = answer(200, "application/json", "{not json either");
        assert_eq!(
            fields(&compare(&a, &b, &CompareOptions::default())),
            ["body"]
        );

        let many_a: Vec<u32> = (0..500).collect();
        let many_b: Vec<u32> = (1..501).collect();
        let a = answer(
            200,
            "application/json",
            &serde_json::to_string(&many_a).unwrap(),
        );
        let b = answer(
            200,
            "application/json",
            &serde_json::to_string(&many_b).unwrap(),
        );
        let d = compare(&a, &b, &CompareOptions::default());
        assert_eq!(d.len(), 50);
        let long = answer(
            200,
            "application/json",
            &format!("\"{}\"", "x".repeat(1000)),
        );
        let short = answer(200, "application/json", "\"y\"");
        let d = compare(&long, &short, &CompareOptions::default());
        assert!(d[0].primary.chars().count() <= MAX_VALUE_CHARS + 1);
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("$.a", "$.a"));
        assert!(path_matches("$.a", "$.a.b"));
        assert!(path_matches("$.a", "$.a[0]"));
        assert!(!path_matches("$.a", "$.ab"));
        assert!(path_matches("$.a[*].b", "$.a[12].b"));
        assert!(!path_matches("$.a[*].b", "$.a[x].b"));
        assert!(!path_matches("$.a[*].b", "$.a.b"));
    }
}
