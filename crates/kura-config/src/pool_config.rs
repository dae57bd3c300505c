//! `[pools.*]` → [`PoolSpec`]: backend URLs (and Katana's bare addresses), balancing, the
//! connection cap and keep-alive, timeouts, passive and active health, retries, and a pool's
//! who-has clusters. Split from `validate.rs`, which calls it for every pool and for the pool
//! template that Redis frontends are built from.

use std::net::SocketAddr;
use std::path::Path;

use http::HeaderValue;

use crate::defaults::*;
use crate::file::*;
use crate::validate::Errors;
use crate::*;

/// Parses a backend URL `http://host[:port][/base]` (or `https://`). A bare IP address with
/// or without a port (`10.195.24.1:8079`, `[::1]:80`, `10.0.0.1`), as Katana's configuration
/// writes its nodes, is read as `http://` that address; a bare name is refused (a scheme-less
/// `name:port` is too easily a mistyped URL).
pub fn parse_backend(url: &str) -> Result<BackendSpec, String> {
    let trimmed = url.trim();
    let bare = trimmed
        .parse::<SocketAddr>()
        .map(|a| a.to_string())
        .or_else(|_| {
            trimmed.parse::<std::net::IpAddr>().map(|ip| match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            })
        });
    if let Ok(authority) = bare {
        return parse_backend(&format!("http://{authority}"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "{url:?}: scheme {other:?} is not supported (use http:// or https://)"
            ));
        }
        None => return Err(format!("{url:?} has no scheme (write http://host:port)")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if uri.query().is_some() {
        return Err(format!("{url:?}: a backend URL cannot have a query"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    let host = host.to_ascii_lowercase();
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(BackendSpec {
        url: url.to_string(),
        authority,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        base_path,
        tls,
        pinned: None,
    })
}

pub(crate) fn validate_pool(
    name: &str,
    p: &FilePool,
    base_dir: &Path,
    errs: &mut Errors,
) -> PoolSpec {
    let f = |k: &str| format!("pools.{name}.{k}");
    let clusters = p
        .clusters
        .as_ref()
        .map(|c| crate::image_config::validate_clusters(name, c, errs))
        .unwrap_or_default();
    let (whohas_ttl, whohas_entries) = crate::image_config::whohas_settings(name, p, errs);
    match (
        p.backends.is_empty(),
        p.clusters.as_ref().map(|c| c.is_empty()),
    ) {
        (true, None) | (true, Some(true)) => {
            errs.push(
                f("backends"),
                "a pool needs at least one backend (or clusters)",
            );
        }
        (false, Some(_)) => errs.push(f("clusters"), "give backends or clusters, not both"),
        _ => {}
    }
    let mut backends = Vec::new();
    for (i, b) in p.backends.iter().enumerate() {
        match parse_backend(b) {
            Ok(spec) => backends.push(spec),
            Err(e) => errs.push(format!("pools.{name}.backends[{i}]"), e),
        }
    }
    let balance = match p.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("random") => Balance::Random,
        Some("least_conn") => Balance::LeastConn,
        Some(other) => {
            errs.push(
                f("balance"),
                format!("{other:?} is not one of \"round_robin\", \"random\", \"least_conn\""),
            );
            Balance::RoundRobin
        }
    };
    let max_connections_per_backend = p
        .max_connections_per_backend
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_BACKEND);
    if max_connections_per_backend == 0 {
        errs.push(f("max_connections_per_backend"), "must be at least 1");
    }
    let dead_on_status = p.dead_on_status.clone().unwrap_or_default();
    for (i, s) in dead_on_status.iter().enumerate() {
        if !(500..=599).contains(s) {
            errs.push(
                format!("pools.{name}.dead_on_status[{i}]"),
                format!("{s} is not a 5xx status"),
            );
        }
    }
    let tls_ca = p.tls_ca.as_ref().map(|path| {
        let path = base_dir.join(path);
        if let Err(e) = crate::edge_config::read_certs(&path) {
            errs.push(f("tls_ca"), e);
        }
        path
    });
    let max_fails = p.max_fails.unwrap_or(DEFAULT_MAX_FAILS);
    if max_fails == 0 {
        errs.push(f("max_fails"), "must be at least 1");
    }
    let health_check = p.health_check.as_ref().map(|h| {
        let path = h
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_string());
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            errs.push(f("health_check.path"), format!("{path:?} is not a path"));
        }
        let healthy_threshold = h.healthy_threshold.unwrap_or(DEFAULT_HEALTHY_THRESHOLD);
        let unhealthy_threshold = h.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD);
        if healthy_threshold == 0 {
            errs.push(f("health_check.healthy_threshold"), "must be at least 1");
        }
        if unhealthy_threshold == 0 {
            errs.push(f("health_check.unhealthy_threshold"), "must be at least 1");
        }
        if let Some(host) = &h.host
            && HeaderValue::from_str(host).is_err()
        {
            errs.push(f("health_check.host"), "not a valid Host header value");
        }
        HealthCheckSpec {
            path,
            interval: errs.period(
                &f("health_check.interval"),
                &h.interval,
                DEFAULT_HEALTH_INTERVAL,
            ),
            timeout: errs.duration(
                &f("health_check.timeout"),
                &h.timeout,
                DEFAULT_HEALTH_TIMEOUT,
            ),
            healthy_threshold,
            unhealthy_threshold,
            host: h.host.clone(),
        }
    });
    PoolSpec {
        name: name.to_string(),
        backends,
        balance,
        max_connections_per_backend,
        max_idle_per_backend: p
            .max_idle_per_backend
            .unwrap_or(DEFAULT_MAX_IDLE_PER_BACKEND),
        idle_timeout: errs.duration(
            &f("idle_timeout"),
            &p.idle_timeout,
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        ),
        connect_timeout: errs.duration(
            &f("connect_timeout"),
            &p.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        ),
        response_timeout: errs.duration(
            &f("response_timeout"),
            &p.response_timeout,
            DEFAULT_RESPONSE_TIMEOUT,
        ),
        dead_backend_ttl: errs.duration(
            &f("dead_backend_ttl"),
            &p.dead_backend_ttl,
            DEFAULT_DEAD_BACKEND_TTL,
        ),
        max_fails,
        dead_on_status,
        retries: p.retries.unwrap_or(DEFAULT_RETRIES),
        preserve_host: p.preserve_host.unwrap_or(true),
        health_check,
        http2: p.http2.unwrap_or(false),
        tls_ca,
        whohas: clusters,
        whohas_ttl,
        whohas_entries,
        set_headers: Vec::new(),
    }
}
