//! Where an image rule's original comes from: a path on the rule's pool, or an absolute
//! `http(s)://` URL taken from the request. An absolute URL is a request kura makes on a
//! client's behalf, so it is checked as an outsider's would be (SSRF):
//!
//! - the host must be one of `allowed_sources` (when set), a valid name or IP literal with no
//!   userinfo;
//! - it is resolved once, and every address must be public: loopback, private (RFC 1918),
//!   CGNAT, link-local (cloud metadata at 169.254.169.254), IPv6 unique-local, multicast,
//!   documentation and other special ranges are refused unless `allow_local_sources`;
//! - the connection goes to the address that was checked (never a second resolution, so DNS
//!   rebinding cannot swap it), with the name kept for `Host` and TLS;
//! - pools are kept per source authority in a bounded map (keep-alive reused, re-resolved
//!   after a minute), and a pool that leaves it takes its metric series along;
//! - errors say the source could not be fetched, never what a port answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use kura_cache::Origin;
use kura_config::{HostPattern, RuleResize};

use crate::control::metrics::Metrics;
use crate::errors::ProxyError;
use crate::upstream::Pool;
use crate::upstream::origin::PoolOrigin;

/// Source pools kept per rule; beyond, the least recently used goes.
const MAX_SOURCE_POOLS: u64 = 64;
/// How long a source host's resolution (and pool) is reused.
const SOURCE_TTL: Duration = Duration::from_secs(60);

/// Where one image rule's originals come from: its own pool (sources given as paths), or
/// pools made per absolute source's `scheme://authority`, kept in a bounded map.
pub struct Sources {
    /// The rule's pool, and the same as the cache's origin.
    pool: Arc<Pool>,
    origin: Arc<dyn Origin>,
    /// Hosts absolute sources may name (any, when empty).
    allowed: Vec<HostPattern>,
    /// Whether absolute sources may resolve to private or special addresses.
    allow_local: bool,
    metrics: Arc<Metrics>,
    pools: moka::sync::Cache<String, Arc<Pool>>,
}

impl Sources {
    pub fn new(
        cfg: &RuleResize,
        pool: Arc<Pool>,
        origin: Arc<dyn Origin>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let m = metrics.clone();
        Sources {
            pool,
            origin,
            allowed: cfg.allowed_sources.clone(),
            allow_local: cfg.allow_local_sources,
            metrics,
            pools: moka::sync::Cache::builder()
                .max_capacity(MAX_SOURCE_POOLS)
                .time_to_live(SOURCE_TTL)
                .eviction_listener(move |_, pool: Arc<Pool>, _| {
                    for b in &pool.backends {
                        m.forget_backend(&pool.spec.name, &b.spec.url);
                    }
                })
                .build(),
        }
    }
}

fn refused(code: StatusCode, msg: &'static str) -> ProxyError {
    ProxyError::refused(code, msg)
}

impl Sources {
    /// The original's origin, its path there and the text naming it in the cache key.
    pub async fn source(&self, src: &str) -> Result<(Arc<dyn Origin>, String, String), ProxyError> {
        if !(src.starts_with("http://") || src.starts_with("https://")) {
            let path = if src.starts_with('/') {
                src.to_string()
            } else {
                format!("/{src}")
            };
            let id = format!("{}{path}", self.pool.spec.name);
            return Ok((self.origin.clone(), path, id));
        }
        let uri: http::Uri = src
            .parse()
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "the source is not a URL"))?;
        // The host as kura validates any Host: no userinfo (`allowed@evil`), names or IP
        // literals only.
        let authority = kura_config::target::Authority::parse(
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
        )
        .map_err(|_| {
            refused(
                StatusCode::BAD_REQUEST,
                "the source URL's host is malformed",
            )
        })?;
        let host = authority.host.clone();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| host_matches(p, &host)) {
            return Err(ProxyError::refused(
                StatusCode::FORBIDDEN,
                format!("source host {host:?} is not allowed"),
            ));
        }
        let tls = uri.scheme_str() == Some("https");
        let port = authority.port.unwrap_or(if tls { 443 } else { 80 });
        let scheme = if tls { "https" } else { "http" };
        let base = format!(
            "{scheme}://{}",
            authority.normalized(if tls { 443 } else { 80 })
        );
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        if let Some(pool) = self.pools.get(&base) {
            return Ok((Arc::new(PoolOrigin(pool)), path, src.to_string()));
        }
        let addr = resolve(&host, port, self.allow_local).await?;
        let mut backend = kura_config::parse_backend(&base)
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "the source URL is not usable"))?;
        backend.pinned = Some(addr);
        let spec = kura_config::PoolSpec {
            name: format!("source:{}", backend.authority),
            backends: vec![backend],
            whohas: Vec::new(),
            preserve_host: false,
            max_idle_per_backend: 4,
            ..self.pool.spec.clone()
        };
        let pool = Pool::new(spec, self.metrics.clone(), 1);
        self.pools.insert(base, pool.clone());
        Ok((Arc::new(PoolOrigin(pool)), path, src.to_string()))
    }
}

/// Resolves `host` once; every address must be public (unless `allow_local`), and the first
/// is the one connected to.
async fn resolve(host: &str, port: u16, allow_local: bool) -> Result<SocketAddr, ProxyError> {
    let unreachable = || ProxyError::SourceFailed;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|_| unreachable())?
        .collect();
    let first = *addrs.first().ok_or_else(unreachable)?;
    if !allow_local && addrs.iter().any(|a| is_special(a.ip())) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the source resolves to a private or special address",
        ));
    }
    Ok(first)
}

fn host_matches(p: &HostPattern, host: &str) -> bool {
    match p {
        HostPattern::Any => true,
        HostPattern::Exact(h) => h == host,
        HostPattern::Wildcard(s) => host.len() > s.len() + 1 && host.ends_with(&format!(".{s}")),
    }
}

/// Addresses a request made for a client must not reach: anything but the public internet.
pub fn is_special(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v) => special_v4(v),
        IpAddr::V6(v) => special_v6(v),
    }
}

fn special_v4(v: Ipv4Addr) -> bool {
    let [a, b, c, _] = v.octets();
    v.is_unspecified()
        || v.is_loopback()
        || v.is_private()
        || v.is_link_local()
        || v.is_multicast()
        || v.is_broadcast()
        || v.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

fn special_v6(v: Ipv6Addr) -> bool {
    let s = v.segments();
    // 64:ff9b::/96 (NAT64) and 2002::/16 (6to4) embed an IPv4 address: judge that one.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return special_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return special_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    v.is_unspecified()
        || v.is_loopback()
        || v.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_reachable() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.5",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            assert!(is_special(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
        ] {
            assert!(!is_special(good.parse().unwrap()), "{good}");
        }
    }
}
