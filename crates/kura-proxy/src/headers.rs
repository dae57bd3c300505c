//! Header rules of a forwarding proxy (RFC 9110 §7.6): hop-by-hop headers are removed in both
//! directions, including those named in `Connection`; `Via` is appended; the client's address,
//! scheme and host are passed on in `X-Forwarded-For/-Proto/-Host`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection and must not be forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection are removed first, while the header is still there.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        // `remove` on an absent header only hashes the name; most requests have none of these.
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    if headers.contains_key(&PROXY_CONNECTION) {
        headers.remove(PROXY_CONNECTION);
    }
}

/// Appends `via` (`1.1 kura`) to any `Via` already present.
pub fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(header::VIA, via.clone());
}

/// Sets the `X-Forwarded-*` headers: the client address is appended to an existing
/// `X-Forwarded-For` chain; scheme and host are set from what this proxy saw.
pub fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, scheme: &'static str, host: &str) {
    let ip = client.to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let mut s = String::with_capacity(prev.len() + 2 + ip.len());
            s.push_str(prev);
            s.push_str(", ");
            s.push_str(&ip);
            s
        }
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if !host.is_empty()
        && let Ok(v) = HeaderValue::from_str(host)
    {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn forwarded_for_appends_and_proto_host_are_set() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "203.0.113.9".parse().unwrap());
        h.insert(X_FORWARDED_PROTO, "gopher".parse().unwrap());
        set_forwarded(&mut h, "10.1.2.3".parse().unwrap(), "http", "example.com");
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 10.1.2.3");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "example.com");

        let mut h = HeaderMap::new();
        set_forwarded(&mut h, "::1".parse().unwrap(), "https", "");
        assert_eq!(h[X_FORWARDED_FOR], "::1");
        assert!(h.get(X_FORWARDED_HOST).is_none());
    }

    #[test]
    fn via_is_appended() {
        let mut h = HeaderMap::new();
        h.insert(header::VIA, "1.1 cdn".parse().unwrap());
        append_via(&mut h, &HeaderValue::from_static("1.1 kura"));
        let all: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(all, ["1.1 cdn", "1.1 kura"]);
    }
}
