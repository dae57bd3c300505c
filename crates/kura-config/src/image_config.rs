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

pub(crate) fn validate_rule_resize(
    field: &str,
    r: &FileRuleResize,
    path: Option<&Regex>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<RuleResize> {
    let mut compile = |name: &str, text: &str| -> Option<Template> {
        let re = path?;
        Template::compile(text, re)
            .map_err(|e| errs.push(format!("{field}.{name}"), e.0))
            .ok()
    };
    let source = compile("source", &r.source);
    let mut opt = |name: &str, v: &Option<String>| v.as_ref().and_then(|t| compile(name, t));
    let width = opt("width", &r.width);
    let height = opt("height", &r.height);
    let fit = opt("fit", &r.fit);
    let gravity = opt("gravity", &r.gravity);
    let quality = opt("quality", &r.quality);
    let format = opt("format", &r.format);
    let dpr = opt("dpr", &r.dpr);
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
