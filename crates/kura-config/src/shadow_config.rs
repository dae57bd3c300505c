//! Validation of the shadow sections: `[shadow]` (queue, limits, comparison and report settings
//! shared by all rules) and a rule's `shadow` table (its targets and selection). Split from
//! `validate.rs` to keep one concern each.

use std::collections::BTreeMap;
use std::path::Path;

use http::{HeaderName, Method};
use regex::Regex;

use crate::defaults::*;
use crate::file::{FilePool, FileRuleShadow, FileShadow, SizeValue};
use crate::units::size_value;
use crate::validate::{Errors, header_edits};
use crate::{GroupBy, RuleShadow, ShadowConfig, ShadowTarget};

fn size(errs: &mut Errors, field: &str, v: &Option<SizeValue>, default: u64) -> u64 {
    match v {
        None => default,
        Some(v) => size_value(v).unwrap_or_else(|e| {
            errs.push(field, e);
            default
        }),
    }
}

fn header_name(errs: &mut Errors, field: &str, n: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(n.trim().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            errs.push(field, format!("{n:?} is not a header name"));
            None
        }
    }
}

fn positive(errs: &mut Errors, field: &str, v: Option<usize>, default: usize) -> usize {
    let v = v.unwrap_or(default);
    if v == 0 {
        errs.push(field, "must be at least 1");
        return default;
    }
    v
}

fn fraction(errs: &mut Errors, field: &str, v: Option<f64>, default: f64) -> f64 {
    let v = v.unwrap_or(default);
    if !(0.0..=1.0).contains(&v) {
        errs.push(field, "must be a fraction between 0 and 1 (0.03 is 3%)");
        return default;
    }
    v
}

pub(crate) fn validate_shadow(
    s: Option<&FileShadow>,
    base: &Path,
    errs: &mut Errors,
) -> ShadowConfig {
    let empty = FileShadow::default();
    let s = s.unwrap_or(&empty);
    let mut ignore_headers = Vec::new();
    match &s.ignore_headers {
        None => {
            ignore_headers = DEFAULT_SHADOW_IGNORE_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect()
        }
        Some(list) => {
            for (i, n) in list.iter().enumerate() {
                if let Some(h) = header_name(errs, &format!("shadow.ignore_headers[{i}]"), n) {
                    ignore_headers.push(h.as_str().to_string());
                }
            }
        }
    }
    let marker_header = match &s.marker_header {
        None => HeaderName::from_static(DEFAULT_SHADOW_MARKER_HEADER),
        Some(n) => header_name(errs, "shadow.marker_header", n)
            .unwrap_or(HeaderName::from_static(DEFAULT_SHADOW_MARKER_HEADER)),
    };
    let diff_log = s.diff_log.as_ref().and_then(|p| {
        if p.is_empty() {
            errs.push("shadow.diff_log", "must be a file path");
            None
        } else {
            Some(base.join(p))
        }
    });
    ShadowConfig {
        queue: positive(errs, "shadow.queue", s.queue, DEFAULT_SHADOW_QUEUE),
        concurrency: positive(
            errs,
            "shadow.concurrency",
            s.concurrency,
            DEFAULT_SHADOW_CONCURRENCY,
        ),
        max_request_body: size(
            errs,
            "shadow.max_request_body",
            &s.max_request_body,
            DEFAULT_SHADOW_MAX_REQUEST_BODY,
        ),
        max_compare_body: size(
            errs,
            "shadow.max_compare_body",
            &s.max_compare_body,
            DEFAULT_SHADOW_MAX_COMPARE_BODY,
        ),
        timeout: errs.duration("shadow.timeout", &s.timeout, DEFAULT_SHADOW_TIMEOUT),
        ignore_headers,
        marker_header,
        relative_threshold: {
            let v = s
                .relative_threshold
                .unwrap_or(DEFAULT_SHADOW_RELATIVE_THRESHOLD);
            if !(v >= 0.0 && v.is_finite()) {
                errs.push(
                    "shadow.relative_threshold",
                    "must be 0 or more (0.2 is 20%)",
                );
            }
            v
        },
        absolute_threshold: fraction(
            errs,
            "shadow.absolute_threshold",
            s.absolute_threshold,
            DEFAULT_SHADOW_ABSOLUTE_THRESHOLD,
        ),
        latency_relative_threshold: {
            let v = s
                .latency_relative_threshold
                .unwrap_or(DEFAULT_SHADOW_LATENCY_RELATIVE_THRESHOLD);
            if !(v >= 0.0 && v.is_finite()) {
                errs.push(
                    "shadow.latency_relative_threshold",
                    "must be 0 or more (0.2 is 20%)",
                );
            }
            v
        },
        latency_absolute_threshold: errs.duration(
            "shadow.latency_absolute_threshold",
            &s.latency_absolute_threshold,
            DEFAULT_SHADOW_LATENCY_ABSOLUTE_THRESHOLD,
        ),
        max_endpoints: positive(
            errs,
            "shadow.max_endpoints",
            s.max_endpoints,
            DEFAULT_SHADOW_MAX_ENDPOINTS,
        ),
        max_fields: positive(
            errs,
            "shadow.max_fields",
            s.max_fields,
            DEFAULT_SHADOW_MAX_FIELDS,
        ),
        examples: s.examples.unwrap_or(DEFAULT_SHADOW_EXAMPLES),
        diff_log,
    }
}

/// Whether a method is safe (RFC 9110 §9.2.1): only those are shadowed by default.
pub fn is_safe_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

pub(crate) fn validate_rule_shadow(
    field: &str,
    s: &FileRuleShadow,
    rule_path: &str,
    pools: &BTreeMap<String, FilePool>,
    errs: &mut Errors,
) -> RuleShadow {
    let pool_ref = |errs: &mut Errors, f: String, name: &str| {
        if !pools.contains_key(name) {
            errs.push(f, format!("no pool named {name:?} in [pools]"));
        }
    };
    if s.targets.is_empty() {
        errs.push(
            format!("{field}.targets"),
            "a shadow needs at least one target",
        );
    }
    let mut targets: Vec<ShadowTarget> = Vec::new();
    for (i, t) in s.targets.iter().enumerate() {
        let f = format!("{field}.targets[{i}]");
        pool_ref(errs, format!("{f}.pool"), &t.pool);
        let name = t.name.clone().unwrap_or_else(|| t.pool.clone());
        if targets.iter().any(|o| o.name == name) {
            errs.push(format!("{f}.name"), format!("{name:?} names two targets"));
        }
        targets.push(ShadowTarget {
            name,
            pool: t.pool.clone(),
            request_headers: header_edits(
                &format!("{f}.request_headers"),
                &t.request_headers,
                errs,
            ),
        });
    }
    if let Some(p) = &s.secondary {
        pool_ref(errs, format!("{field}.secondary"), p);
    }
    let allow_unsafe = s.allow_unsafe.unwrap_or(false);
    let mut methods = Vec::new();
    for (i, m) in s.methods.iter().flatten().enumerate() {
        let f = format!("{field}.methods[{i}]");
        match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
            Ok(m) => {
                if !is_safe_method(&m) && !allow_unsafe {
                    errs.push(
                        f,
                        format!("{m} is unsafe: set allow_unsafe = true to shadow it"),
                    );
                }
                methods.push(m);
            }
            Err(_) => errs.push(f, format!("{m:?} is not a method")),
        }
    }
    let regex = |errs: &mut Errors, f: String, src: &str| match Regex::new(src) {
        Ok(r) => Some(r),
        Err(e) => {
            errs.push(f, format!("bad regex: {e}"));
            None
        }
    };
    let path = s
        .path
        .as_ref()
        .and_then(|p| regex(errs, format!("{field}.path"), p));
    let header = s.header.as_ref().and_then(|h| {
        let name = header_name(errs, &format!("{field}.header.name"), &h.name)?;
        let value = match &h.value {
            None => None,
            Some(v) => Some(regex(errs, format!("{field}.header.value"), v)?),
        };
        Some((name, value))
    });
    let sample_percent = s.sample_percent.unwrap_or(DEFAULT_SHADOW_SAMPLE_PERCENT);
    if !(0.0..=100.0).contains(&sample_percent) {
        errs.push(
            format!("{field}.sample_percent"),
            "must be between 0 and 100",
        );
    }
    let sample_by = s
        .sample_by
        .as_ref()
        .and_then(|n| header_name(errs, &format!("{field}.sample_by"), n));
    let group_by = match s.group_by.as_deref() {
        None | Some("rule") => GroupBy::Rule,
        Some("path") => GroupBy::Path,
        Some(other) => {
            errs.push(
                format!("{field}.group_by"),
                format!("{other:?} is not \"rule\" or \"path\""),
            );
            GroupBy::Rule
        }
    };
    for (i, p) in s.ignore_fields.iter().flatten().enumerate() {
        if !p.starts_with('$') {
            errs.push(
                format!("{field}.ignore_fields[{i}]"),
                "a JSON path starts with `$` (`$.meta.id`, `$.items[*].at`)",
            );
        }
    }
    let mut ignore_headers = Vec::new();
    for (i, n) in s.ignore_headers.iter().flatten().enumerate() {
        if let Some(h) = header_name(errs, &format!("{field}.ignore_headers[{i}]"), n) {
            ignore_headers.push(h.as_str().to_string());
        }
    }
    RuleShadow {
        targets,
        secondary: s.secondary.clone(),
        methods,
        allow_unsafe,
        path,
        header,
        sample_percent,
        sample_by,
        group_by,
        name: s.name.clone().unwrap_or_else(|| {
            if rule_path.is_empty() {
                "*".into()
            } else {
                rule_path.into()
            }
        }),
        ignore_fields: s.ignore_fields.clone().unwrap_or_default(),
        ignore_headers,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{Config, ConfigError};

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.prod]
backends = ["http://127.0.0.1:3000"]
[pools.v2]
backends = ["http://127.0.0.1:3001"]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
path = "^/api/"
pool = "prod"
{extra}
"#
        );
        Config::from_toml(&text, Path::new("/etc/kura"))
    }

    fn fields(e: &ConfigError) -> Vec<&str> {
        e.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_rule_shadow_with_defaults() {
        let c = load(
            r#"
[vhosts.rules.shadow]
targets = [{ pool = "v2" }]
"#,
        )
        .unwrap();
        assert_eq!(c.shadow, ShadowConfig::default());
        let s = c.routes.vhosts[0].rules[0].action.shadow().unwrap();
        assert_eq!(s.targets[0].name, "v2");
        assert!(s.methods.is_empty() && !s.allow_unsafe);
        assert_eq!(s.sample_percent, 100.0);
        assert_eq!(s.group_by, GroupBy::Rule);
        assert_eq!(s.name, "^/api/");
    }

    #[test]
    fn everything_set() {
        let c = load(
            r#"
[vhosts.rules.shadow]
targets = [{ pool = "v2", name = "canary", request_headers = { set = { x-env = "shadow" }, remove = ["authorization"] } }]
secondary = "prod"
methods = ["get", "POST"]
allow_unsafe = true
path = "^/api/items"
header = { name = "X-Beta", value = "^1$" }
sample_percent = 12.5
sample_by = "x-user"
group_by = "path"
ignore_fields = ["$.meta"]
ignore_headers = ["X-Trace"]
[shadow]
queue = 10
concurrency = 2
max_request_body = "64KiB"
timeout = "2s"
ignore_headers = ["date"]
marker_header = "x-shadow"
relative_threshold = 0.5
absolute_threshold = 0.1
latency_relative_threshold = 0.5
latency_absolute_threshold = "5ms"
diff_log = "diffs.jsonl"
"#,
        )
        .unwrap();
        assert_eq!(c.shadow.queue, 10);
        assert_eq!(c.shadow.max_request_body, 64 * 1024);
        assert_eq!(c.shadow.ignore_headers, ["date"]);
        assert_eq!(c.shadow.marker_header, "x-shadow");
        assert_eq!(c.shadow.latency_relative_threshold, 0.5);
        assert_eq!(
            c.shadow.latency_absolute_threshold,
            std::time::Duration::from_millis(5)
        );
        assert_eq!(
            c.shadow.diff_log.as_deref(),
            Some(Path::new("/etc/kura/diffs.jsonl"))
        );
        let s = c.routes.vhosts[0].rules[0].action.shadow().unwrap();
        assert_eq!(s.targets[0].name, "canary");
        assert_eq!(s.targets[0].request_headers.set[0].0, "x-env");
        assert_eq!(s.methods, [Method::GET, Method::POST]);
        assert_eq!(s.header.as_ref().unwrap().0, "x-beta");
        assert_eq!(s.sample_by.as_ref().unwrap(), "x-user");
        assert_eq!(s.group_by, GroupBy::Path);
        assert_eq!(s.ignore_headers, ["x-trace"]);
        assert_eq!(s.secondary.as_deref(), Some("prod"));
    }

    #[test]
    fn mistakes_are_named() {
        let e = load(
            r#"
[vhosts.rules.shadow]
targets = [{ pool = "nope" }, { pool = "v2" }, { pool = "v2" }]
secondary = "gone"
methods = ["POST", "bad method"]
path = "(unclosed"
sample_percent = 150
group_by = "host"
ignore_fields = ["meta.id"]
sample_by = "bad header"
[shadow]
queue = 0
absolute_threshold = 3
timeout = "soon"
latency_relative_threshold = -1
latency_absolute_threshold = "a bit"
"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "shadow.queue",
                "shadow.timeout",
                "shadow.absolute_threshold",
                "shadow.latency_relative_threshold",
                "shadow.latency_absolute_threshold",
                "vhosts[0].rules[0].shadow.targets[0].pool",
                "vhosts[0].rules[0].shadow.targets[2].name",
                "vhosts[0].rules[0].shadow.secondary",
                "vhosts[0].rules[0].shadow.methods[0]",
                "vhosts[0].rules[0].shadow.methods[1]",
                "vhosts[0].rules[0].shadow.path",
                "vhosts[0].rules[0].shadow.sample_percent",
                "vhosts[0].rules[0].shadow.sample_by",
                "vhosts[0].rules[0].shadow.group_by",
                "vhosts[0].rules[0].shadow.ignore_fields[0]",
            ]
        );
        assert!(
            e.errors[8].message.contains("allow_unsafe"),
            "{}",
            e.errors[8].message
        );
        let e = load("[vhosts.rules.shadow]\ntargets = []\n").unwrap_err();
        assert_eq!(fields(&e), ["vhosts[0].rules[0].shadow.targets"]);
        let e = load("action = \"cache\"\n[vhosts.rules.shadow]\ntargets = [{ pool = \"v2\" }]\n")
            .unwrap_err();
        assert_eq!(fields(&e), ["vhosts[0].rules[0].shadow"]);
    }

    #[test]
    fn documented_defaults_match_the_code() {
        let doc = include_str!("../../../docs/configuration.md");
        let rows: std::collections::HashMap<String, String> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells.len() >= 5 && cells[1].starts_with('`')).then(|| {
                    (
                        cells[1].trim_matches('`').to_string(),
                        cells[3].trim_matches('`').to_string(),
                    )
                })
            })
            .collect();
        let d = ShadowConfig::default();
        let row = |f: &str| {
            rows.get(f)
                .unwrap_or_else(|| panic!("{f} is not documented"))
                .clone()
        };
        assert_eq!(row("shadow.queue"), d.queue.to_string());
        assert_eq!(row("shadow.concurrency"), d.concurrency.to_string());
        assert_eq!(
            crate::parse_size(&row("shadow.max_request_body")).unwrap(),
            d.max_request_body
        );
        assert_eq!(
            crate::parse_size(&row("shadow.max_compare_body")).unwrap(),
            d.max_compare_body
        );
        assert_eq!(
            crate::parse_duration(&row("shadow.timeout")).unwrap(),
            d.timeout
        );
        assert_eq!(row("shadow.marker_header"), d.marker_header.as_str());
        assert_eq!(
            row("shadow.relative_threshold"),
            d.relative_threshold.to_string()
        );
        assert_eq!(
            row("shadow.absolute_threshold"),
            d.absolute_threshold.to_string()
        );
        assert_eq!(
            row("shadow.latency_relative_threshold"),
            d.latency_relative_threshold.to_string()
        );
        assert_eq!(
            crate::parse_duration(&row("shadow.latency_absolute_threshold")).unwrap(),
            d.latency_absolute_threshold
        );
        assert_eq!(row("shadow.max_endpoints"), d.max_endpoints.to_string());
        assert_eq!(row("shadow.max_fields"), d.max_fields.to_string());
        assert_eq!(row("shadow.examples"), d.examples.to_string());
        assert_eq!(
            row("shadow.ignore_headers"),
            DEFAULT_SHADOW_IGNORE_HEADERS.join(", ")
        );
        assert_eq!(
            row("vhosts.rules.shadow.sample_percent"),
            DEFAULT_SHADOW_SAMPLE_PERCENT.to_string()
        );
        for f in [
            "shadow.diff_log",
            "vhosts.rules.shadow.targets.pool",
            "vhosts.rules.shadow.targets.name",
            "vhosts.rules.shadow.targets.request_headers",
            "vhosts.rules.shadow.secondary",
            "vhosts.rules.shadow.methods",
            "vhosts.rules.shadow.allow_unsafe",
            "vhosts.rules.shadow.path",
            "vhosts.rules.shadow.header",
            "vhosts.rules.shadow.sample_by",
            "vhosts.rules.shadow.group_by",
            "vhosts.rules.shadow.name",
            "vhosts.rules.shadow.ignore_fields",
            "vhosts.rules.shadow.ignore_headers",
            "[vhosts.shadow]",
        ] {
            row(f);
        }
    }
}
