//! Validation of the cache sections: `[cache]` (storage shared by all cache rules) and a
//! rule's `cache` table (its caching policy). Split from `validate.rs` to keep one concern each.

use std::path::Path;
use std::time::Duration;

use regex::Regex;

use crate::defaults::*;
use crate::file::{FileCache, FileRuleCache, SizeValue};
use crate::units::{parse_duration, size_value};
use crate::validate::Errors;
use crate::{CacheConfig, CookiePolicy, DiskConfig, RuleCache, Template};

fn size_field(errs: &mut Errors, field: &str, v: &Option<SizeValue>, default: u64) -> u64 {
    match v {
        None => default,
        Some(v) => size_value(v).unwrap_or_else(|e| {
            errs.push(field, e);
            default
        }),
    }
}

pub(crate) fn validate_cache(c: Option<&FileCache>, base: &Path, errs: &mut Errors) -> CacheConfig {
    let empty = FileCache::default();
    let c = c.unwrap_or(&empty);
    let memory_bytes = size_field(errs, "cache.memory", &c.memory, DEFAULT_CACHE_MEMORY);
    let disk = c.dir.as_ref().map(|dir| {
        let max_bytes = size_field(errs, "cache.max_disk", &c.max_disk, DEFAULT_MAX_DISK);
        let cleaned_default = (max_bytes as f64 * DEFAULT_CLEANED_DISK_RATIO) as u64;
        let cleaned_bytes =
            size_field(errs, "cache.cleaned_disk", &c.cleaned_disk, cleaned_default);
        if cleaned_bytes >= max_bytes {
            errs.push(
                "cache.cleaned_disk",
                format!("must be below cache.max_disk ({max_bytes} bytes)"),
            );
        }
        if dir.is_empty() {
            errs.push("cache.dir", "must be a directory path");
        }
        DiskConfig {
            dir: base.join(dir),
            max_bytes,
            cleaned_bytes,
        }
    });
    if c.dir.is_none() {
        for (field, v) in [
            ("cache.max_disk", &c.max_disk),
            ("cache.cleaned_disk", &c.cleaned_disk),
        ] {
            if v.is_some() {
                errs.push(field, "has no effect without cache.dir");
            }
        }
    }
    if memory_bytes == 0 && disk.is_none() {
        errs.push(
            "cache.memory",
            "0 disables the memory tier; the cache then needs a disk tier (cache.dir)",
        );
    }
    let segment_size = size_field(
        errs,
        "cache.segment_size",
        &c.segment_size,
        DEFAULT_SEGMENT_SIZE,
    );
    if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
        errs.push(
            "cache.segment_size",
            format!("must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"),
        );
    }
    let purge_allow = crate::validate::parse_nets("cache.purge_allow", &c.purge_allow, errs);
    CacheConfig {
        memory_bytes,
        disk,
        segment_size,
        prefetch_segments: c.prefetch_segments.unwrap_or(DEFAULT_PREFETCH_SEGMENTS),
        purge_allow,
        lock_timeout: errs.duration("cache.lock_timeout", &c.lock_timeout, DEFAULT_LOCK_TIMEOUT),
        targeted_cache_control: match &c.targeted_cache_control {
            None => DEFAULT_TARGETED_CACHE_CONTROL
                .iter()
                .map(|n| http::HeaderName::from_static(n))
                .collect(),
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let parsed = http::HeaderName::from_bytes(n.trim().as_bytes()).ok();
                    match parsed {
                        Some(h) if h != http::header::CACHE_CONTROL => Some(h),
                        _ => {
                            errs.push(
                                format!("cache.targeted_cache_control[{i}]"),
                                format!("{n:?} is not a header name other than Cache-Control"),
                            );
                            None
                        }
                    }
                })
                .collect(),
        },
    }
}

pub(crate) fn validate_rule_cache(
    field: &str,
    c: &FileRuleCache,
    re: Option<&Regex>,
    has_disk: bool,
    errs: &mut Errors,
) -> RuleCache {
    let key = match (&c.key, re) {
        (Some(k), Some(re)) => match Template::compile(k, re) {
            Ok(t) => Some(t),
            Err(e) => {
                errs.push(format!("{field}.key"), e.0);
                None
            }
        },
        _ => None,
    };
    let opt = |errs: &mut Errors, name: &str, v: &Option<String>| {
        v.as_ref().and_then(|t| match parse_duration(t) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(format!("{field}.{name}"), e);
                None
            }
        })
    };
    let default_ttl = opt(errs, "default_ttl", &c.default_ttl);
    let force_ttl = opt(errs, "force_ttl", &c.force_ttl);
    let client_max_age = opt(errs, "client_max_age", &c.client_max_age);
    if let Some(prefix) = &c.accel_redirect
        && (!prefix.starts_with('/') || prefix.contains(char::is_whitespace))
    {
        errs.push(
            format!("{field}.accel_redirect"),
            "must be a location path starting with `/`",
        );
    }
    if c.accel_redirect.is_some() && !has_disk {
        errs.push(
            format!("{field}.accel_redirect"),
            "needs a disk tier: set cache.dir",
        );
    }
    let cookies = match c.cookies.as_deref() {
        None | Some("origin") => CookiePolicy::Origin,
        Some("pass") => CookiePolicy::Pass,
        Some("ignore") => CookiePolicy::Ignore,
        Some(other) => {
            errs.push(
                format!("{field}.cookies"),
                format!("{other:?} is not one of origin, pass, ignore"),
            );
            CookiePolicy::Origin
        }
    };
    RuleCache {
        cookies,
        targeted_cache_control: Vec::new(),
        key,
        min_ttl: errs.duration(&format!("{field}.min_ttl"), &c.min_ttl, Duration::ZERO),
        default_ttl,
        force_ttl,
        client_max_age,
        stale_while_revalidate: errs.duration(
            &format!("{field}.stale_while_revalidate"),
            &c.stale_while_revalidate,
            Duration::ZERO,
        ),
        stale_if_error: errs.duration(
            &format!("{field}.stale_if_error"),
            &c.stale_if_error,
            Duration::ZERO,
        ),
        accel_redirect: c
            .accel_redirect
            .as_ref()
            .map(|p| p.trim_end_matches('/').to_string()),
    }
}
