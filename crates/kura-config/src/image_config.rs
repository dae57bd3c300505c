//! Image rules (`action = "resize"`) and who-has origins (pools made of clusters): templates
//! compiled against the rule's regex, limits with Katana's defaults, the not-found image read at
//! load time (so a reload picks up a new one), signature keys checked as hex.

use std::path::Path;

use http::{HeaderName, HeaderValue};
use regex::Regex;

use crate::defaults::*;
use crate::file::*;
use crate::units::size_value;
use crate::validate::Errors;
use crate::*;

/// The late variables of `resize.variant_key`, in the order their values are given: the
/// normalised output size in pixels (DPR applied; empty when not given), the fit (`contain`,
/// `cover`, `fill`), the gravity, the quality, the output format kura chose (`jpeg`, `png`,
/// `webp`, `avif`, `source` or `legacy`) and every parameter at once (`params`, kura's own
/// spelling, the default key's suffix).
pub const RESIZE_KEY_VARIABLES: [&str; 7] = [
    "width", "height", "fit", "gravity", "quality", "format", "params",
];

pub(crate) fn validate_rule_resize(
    field: &str,
    r: &FileRuleResize,
    path: Option<&Regex>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<RuleResize> {
    let mut compile = |name: &str, text: &str, late: &[&str]| -> Option<Template> {
        let re = path?;
        Template::compile_with(text, re, late)
            .map_err(|e| errs.push(format!("{field}.{name}"), e.0))
            .ok()
    };
    let source = compile("source", &r.source, &[]);
    let source_key = r
        .source_key
        .as_ref()
        .and_then(|t| compile("source_key", t, &[]));
    let variant_key = r
        .variant_key
        .as_ref()
        .and_then(|t| compile("variant_key", t, &RESIZE_KEY_VARIABLES));
    let mut opt = |name: &str, v: &Option<String>| v.as_ref().and_then(|t| compile(name, t, &[]));
    let width = opt("width", &r.width);
    let height = opt("height", &r.height);
    let fit = opt("fit", &r.fit);
    let gravity = opt("gravity", &r.gravity);
    let quality = opt("quality", &r.quality);
    let format = opt("format", &r.format);
    let dpr = opt("dpr", &r.dpr);
    for (name, t) in [
        ("source_key", &r.source_key),
        ("variant_key", &r.variant_key),
    ] {
        if t.as_ref().is_some_and(|t| t.trim().is_empty()) {
            errs.push(format!("{field}.{name}"), "an empty key template");
        }
    }
    if !r.source.starts_with('/') && !r.source.contains("://") && !r.source.starts_with('{') {
        errs.push(
            format!("{field}.source"),
            "must be a path (`/...`) or an absolute http(s):// URL",
        );
    }
    let default_format = r
        .default_format
        .clone()
        .unwrap_or_else(|| "source".to_string())
        .to_ascii_lowercase();
    if !matches!(
        default_format.as_str(),
        "source" | "auto" | "jpeg" | "jpg" | "png" | "webp" | "avif"
    ) {
        errs.push(
            format!("{field}.default_format"),
            format!("{default_format:?} is not source, auto, jpeg, png, webp or avif"),
        );
    }
    for (word, fit) in &r.fit_aliases {
        if !matches!(fit.as_str(), "contain" | "cover" | "fill") {
            errs.push(
                format!("{field}.fit_aliases.{word}"),
                format!("{fit:?} is not contain, cover or fill"),
            );
        }
    }
    let max_quality = r.max_quality.unwrap_or(DEFAULT_RESIZE_MAX_QUALITY);
    let default_quality = r.default_quality.unwrap_or(DEFAULT_RESIZE_DEFAULT_QUALITY);
    if !(1..=100).contains(&max_quality) {
        errs.push(format!("{field}.max_quality"), "must be from 1 to 100");
    }
    if default_quality == 0 || default_quality > max_quality {
        errs.push(
            format!("{field}.default_quality"),
            "must be from 1 to max_quality",
        );
    }
    let max_source_bytes = match &r.max_source_bytes {
        None => DEFAULT_RESIZE_MAX_SOURCE_BYTES,
        Some(v) => size_value(v).unwrap_or_else(|e| {
            errs.push(format!("{field}.max_source_bytes"), e);
            DEFAULT_RESIZE_MAX_SOURCE_BYTES
        }),
    };
    let not_found = r.not_found_source.as_ref().and_then(|p| {
        let path = base_dir.join(p);
        match std::fs::read(&path) {
            Ok(b) if image_kind(&b) => Some(std::sync::Arc::new(b)),
            Ok(_) => {
                errs.push(
                    format!("{field}.not_found_source"),
                    format!("{} is not a JPEG, PNG, GIF or WebP image", path.display()),
                );
                None
            }
            Err(e) => {
                errs.push(
                    format!("{field}.not_found_source"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let signature = r.signature.as_ref().map(|s| {
        let capture = s
            .capture
            .clone()
            .unwrap_or_else(|| DEFAULT_SIGNATURE_CAPTURE.to_string());
        if let Some(re) = path
            && !re.capture_names().flatten().any(|n| n == capture)
        {
            errs.push(
                format!("{field}.signature.capture"),
                format!("the path regex has no capture named {capture:?}"),
            );
        }
        if s.keys.is_empty() || s.keys.len() != s.salts.len() {
            errs.push(
                format!("{field}.signature"),
                "give as many salts as keys (at least one)",
            );
        }
        for (i, k) in s.keys.iter().chain(&s.salts).enumerate() {
            if k.is_empty()
                || !k.len().is_multiple_of(2)
                || !k.chars().all(|c| c.is_ascii_hexdigit())
            {
                errs.push(
                    format!("{field}.signature"),
                    format!("entry {i} is not hex"),
                );
            }
        }
        SignatureConfig {
            keys: s.keys.clone(),
            salts: s.salts.clone(),
            capture,
        }
    });
    let mut allowed_sources = Vec::new();
    for (i, h) in r.allowed_sources.iter().flatten().enumerate() {
        match parse_host_pattern(h) {
            Ok(p) => allowed_sources.push(p),
            Err(e) => errs.push(format!("{field}.allowed_sources[{i}]"), e),
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let max_concurrent = r.max_concurrent.unwrap_or(cores);
    if max_concurrent == 0 {
        errs.push(format!("{field}.max_concurrent"), "must be at least 1");
    }
    Some(RuleResize {
        source: source?,
        variant_key,
        source_key,
        width,
        height,
        fit,
        gravity,
        quality,
        format,
        dpr,
        default_format,
        fit_aliases: r.fit_aliases.clone(),
        max_width: r.max_width.unwrap_or(DEFAULT_RESIZE_MAX_WIDTH),
        max_height: r.max_height.unwrap_or(DEFAULT_RESIZE_MAX_HEIGHT),
        max_quality,
        default_quality,
        max_dpr: r.max_dpr.unwrap_or(DEFAULT_RESIZE_MAX_DPR),
        max_source_pixels: r
            .max_source_pixels
            .unwrap_or(DEFAULT_RESIZE_MAX_SOURCE_PIXELS),
        max_source_bytes,
        max_concurrent,
        timeout: errs.duration(
            &format!("{field}.timeout"),
            &r.timeout,
            DEFAULT_RESIZE_TIMEOUT,
        ),
        not_found,
        not_found_as_200: r.not_found_as_200.unwrap_or(false),
        signature,
        allowed_sources,
        allow_local_sources: r.allow_local_sources.unwrap_or(false),
    })
}

fn image_kind(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"\x89PNG")
        || b.starts_with(b"GIF8")
        || (b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP")
}

/// The clusters of a who-has pool (`pools.<name>.clusters`).
pub(crate) fn validate_clusters(
    name: &str,
    clusters: &[FileOriginCluster],
    errs: &mut Errors,
) -> Vec<WhoHasGroup> {
    let mut out = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let f = format!("pools.{name}.clusters[{i}]");
        if c.nodes.is_empty() {
            errs.push(format!("{f}.nodes"), "a cluster needs at least one node");
        }
        let mut backends = Vec::new();
        for (j, n) in c.nodes.iter().enumerate() {
            match parse_backend(n) {
                Ok(b) => backends.push(b),
                Err(e) => errs.push(format!("{f}.nodes[{j}]"), e),
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            match (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                (Ok(k), Ok(v)) => headers.push((k, v)),
                _ => errs.push(format!("{f}.headers.{k}"), "not a valid header"),
            }
        }
        out.push(WhoHasGroup { backends, headers });
    }
    out
}

/// Who-has settings: the remembered locations' lifetime and count.
pub(crate) fn whohas_settings(
    name: &str,
    p: &FilePool,
    errs: &mut Errors,
) -> (std::time::Duration, u64) {
    let ttl = errs.duration(
        &format!("pools.{name}.whohas_ttl"),
        &p.whohas_ttl,
        DEFAULT_WHOHAS_TTL,
    );
    (ttl, p.whohas_entries.unwrap_or(DEFAULT_WHOHAS_ENTRIES))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigError, RuleAction, Vars};

    fn load(resize: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!(
                r#"
[[listeners]]
address = "127.0.0.1:0"
[pools.p]
backends = ["http://127.0.0.1:1"]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
pool = "p"
path = "^/(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
[vhosts.rules.resize]
source = "/{{src}}"
width = "{{w}}"
{resize}
"#
            ),
            Path::new("."),
        )
    }

    #[test]
    fn key_templates_take_captures_and_the_variant_takes_parameters() {
        let c = load("variant_key = \"resized/{width}x{height}/{w}/{src}#{params}\"\nsource_key = \"orig/{src}\"").unwrap();
        let RuleAction::Resize { resize, .. } = &c.routes.vhosts[0].rules[0].action else {
            panic!("not a resize rule");
        };
        let re = &c.routes.vhosts[0].rules[0].path;
        let caps = re.captures("/300/a/b.jpg").unwrap();
        let v = resize.variant_key.as_ref().unwrap();
        assert!(v.uses_late());
        let late = ["600", "", "contain", "center", "75", "jpeg", "p"];
        let p = v.expand_partial(Some(&caps), &Vars::default()).unwrap();
        assert_eq!(p.finish(&late), "resized/600x/300/a/b.jpg#p");
        let s = resize.source_key.as_ref().unwrap();
        assert_eq!(
            s.expand_checked(Some(&caps), &Vars::default()).unwrap(),
            "orig/a/b.jpg"
        );
        // The parameters are the variant's: the original's key cannot use them.
        let err = load("source_key = \"orig/{width}/{src}\"").unwrap_err();
        assert_eq!(err.errors[0].field, "vhosts[0].rules[0].resize.source_key");
        assert!(err.errors[0].message.contains("`width`"), "{err}");
        let err = load("variant_key = \"{size}/{src}\"\nsource_key = \" \"").unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "vhosts[0].rules[0].resize.variant_key",
                "vhosts[0].rules[0].resize.source_key"
            ]
        );
        assert!(err.errors[0].message.contains("params"), "{err}");
        // Without them, the rule keeps the default keys.
        let c = load("").unwrap();
        let r = c.routes.vhosts[0].rules[0].action.resize().unwrap();
        assert!(r.variant_key.is_none() && r.source_key.is_none());
    }
}
