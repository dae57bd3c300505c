//! The bodies of kura's fuzz targets, one function per target. Each takes arbitrary bytes,
//! feeds them to code that reads network, store or file input, and checks that nothing
//! panics and that the invariants the rest of kura relies on hold (normalising twice is
//! normalising once; keys of different rules never meet; a resolved range lies inside the
//! representation). `fuzz/` wraps each in a libFuzzer target (nightly, `scripts/fuzz.sh`);
//! `tests/corpus.rs` replays the committed corpus through the same functions on stable, so
//! CI covers every finding.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use kura_cache::key::{self, PrimaryKey, RuleId};
use kura_cache::{policy, range};
use kura_config::target::{Authority, Placement, check_capture, normalize_path};
use kura_config::{CookiePolicy, RuleCache};

/// A target's body.
pub type Target = fn(&[u8]);

/// The targets, by name (the directory of each one's corpus).
pub const TARGETS: &[(&str, Target)] = &[
    ("cache_policy", cache_policy),
    ("range", range_header),
    ("authority", authority),
    ("config", config),
    ("image_params", image_params),
    ("peer_wire", peer_wire),
];

/// Splits `data` into text fields at `\n`, lossily.
fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_string)
        .collect()
}

/// `Name: value` lines into a header map (invalid lines are skipped, as hyper would refuse
/// them before kura saw them).
fn headers<'a>(lines: impl Iterator<Item = &'a String>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            h.append(n, v);
        }
    }
    h
}

fn rule(flags: u8) -> RuleCache {
    RuleCache {
        key: None,
        min_ttl: Duration::from_secs(u64::from(flags & 3)),
        default_ttl: (flags & 4 != 0).then(|| Duration::from_secs(300)),
        force_ttl: (flags & 8 != 0).then(|| Duration::from_secs(3_000_000_000)),
        client_max_age: (flags & 16 != 0).then(|| Duration::from_secs(60)),
        stale_while_revalidate: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(10),
        accel_redirect: None,
        cookies: match flags >> 6 {
            0 => CookiePolicy::Origin,
            1 => CookiePolicy::Pass,
            _ => CookiePolicy::Ignore,
        },
        targeted_cache_control: vec![HeaderName::from_static("cdn-cache-control")],
    }
}

/// Request and response heads → the cache's storage and reuse decisions, and the keys.
///
/// Layout: byte 0 flags for the rule, byte 1 the status, then request header lines, a line
/// `--`, response header lines.
pub fn cache_policy(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let flags = data[0];
    let status = StatusCode::from_u16(100 + u16::from(data[1]) * 2).unwrap_or(StatusCode::OK);
    let text = lines(&data[2..]);
    let split = text.iter().position(|l| l == "--").unwrap_or(text.len());
    let req_h = headers(text[..split].iter());
    let res_h = headers(text.get(split + 1..).unwrap_or(&[]).iter());
    let mut parts = Request::get("/x").body(()).unwrap().into_parts().0;
    parts.headers = req_h.clone();
    let rule = rule(flags);
    let now = SystemTime::now();
    if let Ok(v) = policy::evaluate(&parts, status, &res_h, &rule, now) {
        // A response to a request with Authorization is kept only with the origin's leave.
        if req_h.contains_key(http::header::AUTHORIZATION) {
            assert!(v.allows_auth);
        }
        assert!(v.fresh_until >= now);
        for later in [now, now + Duration::from_secs(1 << 40)] {
            let _ = v.policy.age(later);
            let _ = v.policy.time_to_live(later);
            let preq = policy::PolicyRequest {
                method: &Method::GET,
                uri: &parts.uri,
                headers: &req_h,
            };
            let _ = v.policy.before_request(&preq, later);
        }
        let merged = policy::merge_304(&res_h, &req_h);
        let _ = policy::evaluate(&parts, status, &merged, &rule, now);
    }
    let _ = policy::request_directives(&req_h);
    let _ = policy::not_modified(&req_h, &res_h);
    let _ = policy::validator_matches(&res_h, &req_h);
    let _ = policy::targeted_directives(&res_h, &rule.targeted_cache_control);
    let _ = policy::delta_seconds(text.first().map_or("", |s| s.as_str()));

    // Keys: whatever the text, keys of two rules or two kinds never meet.
    let (a, b) = (RuleId(u64::from(flags)), RuleId(u64::from(flags) + 1));
    let body = text.join("/");
    let url = PrimaryKey::url(a, "http", &body, &body, &body);
    assert_ne!(url, PrimaryKey::url(b, "http", &body, &body, &body));
    assert_ne!(url.as_str(), PrimaryKey::template(a, &body).as_str());
    let src = PrimaryKey::source(a, &body);
    assert_ne!(src.as_str(), PrimaryKey::template(a, &body).as_str());
    assert_eq!(PrimaryKey::image(&src, &body).rule(), Some(a));
    if let Some(names) = key::vary_names(&res_h) {
        let v = key::variant_key(url.as_str(), &names, &req_h);
        assert_eq!(key::primary_of(&v), url.as_str());
    }
}

/// `Range` and `Content-Range` values against a length from the first 8 bytes.
pub fn range_header(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
    let text = String::from_utf8_lossy(&data[8..]);
    if let Some(spec) = range::parse(&text) {
        match spec.resolve(len) {
            range::Wanted::Part { start, end } => {
                assert!(start <= end && end < len, "{start}-{end} of {len}");
            }
            range::Wanted::Unsatisfiable | range::Wanted::Full => {}
        }
    }
    if let Some(cr) = range::parse_content_range(&text) {
        assert!(cr.start <= cr.end);
    }
}

/// Host values, request paths and template captures.
pub fn authority(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = Authority::parse(&text) {
        // The normalised form parses back to itself.
        let n = a.normalized(80);
        let again = Authority::parse(&n).expect("a normalised authority parses");
        assert_eq!(again.normalized(80), n);
        assert!(!n.contains('@') && !n.contains('/'));
    }
    if let Ok(p) = normalize_path(&text) {
        assert!(p.starts_with('/'));
        assert!(!p.split('/').any(|s| s == "." || s == ".."), "{p}");
        let twice = normalize_path(&p).expect("a normalised path is valid");
        assert_eq!(twice, p, "normalising is idempotent");
    }
    for at in [Placement::Path, Placement::Query, Placement::Authority] {
        if check_capture(&text, at).is_ok() && at == Placement::Authority {
            assert!(!text.contains('@') && !text.contains('/'));
        }
    }
    let _ = kura_proxy::target::ParsedUrl::parse(&text);
}

/// The configuration file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = kura_config::Config::from_toml(&text, std::path::Path::new("/nonexistent"));
}

/// Image URL parameters, one per line: width, height, fit, gravity, quality, format, dpr, and
/// an `Accept` value.
pub fn image_params(data: &[u8]) {
    let mut l = lines(data).into_iter();
    let mut next = || l.next().unwrap_or_default();
    let raw = kura_image::Raw {
        width: next(),
        height: next(),
        fit: next(),
        gravity: next(),
        quality: next(),
        format: next(),
        dpr: next(),
    };
    let accept = next();
    let limits = kura_image::ImageLimits::default();
    let mut aliases = BTreeMap::new();
    aliases.insert("f".to_string(), "fill".to_string());
    if let Ok(p) = kura_image::Params::parse(&raw, &limits, &aliases) {
        assert!(p.width.is_none_or(|w| w <= limits.max_width));
        assert!(p.height.is_none_or(|h| h <= limits.max_height));
        assert!(p.quality <= limits.max_quality);
        let chosen = p.choose(Some(&accept));
        let _ = p.canonical(chosen);
    }
}

/// What a peer sends: the protocol's headers (hops, secret, rule, URL) and a body checked by
/// its CRC32C trailer.
pub fn peer_wire(data: &[u8]) {
    let text = lines(data);
    let h = headers(text.iter());
    let _ = kura_cluster::wire::hops(&h);
    let _ =
        kura_cluster::wire::secret_matches(h.get(kura_cluster::wire::SECRET), "0123456789abcdef");
    if let Some(rule) = h
        .get(kura_cluster::wire::RULE)
        .and_then(|v| v.to_str().ok())
        && let Some(id) = RuleId::parse(rule)
    {
        assert_eq!(id.hex(), rule.to_ascii_lowercase());
    }
    if let Some(url) = h.get(kura_cluster::wire::URL).and_then(|v| v.to_str().ok()) {
        let _ = kura_proxy::target::ParsedUrl::parse(url);
    }
    let mut stripped = h.clone();
    kura_cluster::wire::strip_request(&mut stripped);
    for n in [
        kura_cluster::wire::SECRET,
        kura_cluster::wire::RULE,
        kura_cluster::wire::KEY,
        kura_cluster::wire::URL,
        kura_cluster::wire::HOPS,
    ] {
        assert!(!stripped.contains_key(n));
    }
    use futures_util::FutureExt;
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(Bytes::copy_from_slice(data));
    let collected = kura_cluster::wire::CrcBody::new(body)
        .collect()
        .now_or_never()
        .expect("a full body is ready")
        .expect("infallible");
    let crc = collected
        .trailers()
        .and_then(|t| t.get(kura_cluster::wire::CRC))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    assert_eq!(crc, Some(crc32c_of(data)));
}

/// CRC32C (Castagnoli), bitwise: an independent check of the wire's trailer.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
