//! Header rules of a forwarding proxy (RFC 9110 §7.6): hop-by-hop headers are removed in both
//! directions, including those named in `Connection`; `Via` is appended; the client's address,
//! scheme and host are passed on in `X-Forwarded-For/-Proto/-Host`. Forwarding headers a
//! client sends are believed only from `server.trusted_proxies`, and then only for the
//! client's address and scheme ([`strip_forwarding`]): no client can tell the origin which
//! host, port, prefix or URL it came from.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and any header the `Connection` header names.
pub use kura_http::strip_hop_by_hop;

/// Headers by which a proxy tells the origin about the client, besides `X-Forwarded-*` (all of
/// which are covered by their prefix).
const FORWARDING: [&str; 10] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
];

/// Removes forwarding headers before kura sets its own. From a trusted proxy, the client's
/// address (`X-Forwarded-For`, `X-Real-IP`) and scheme (`X-Forwarded-Proto`, which kura keys)
/// are kept; everything else (`Forwarded`, `X-Forwarded-Host/-Port/-Prefix`, `X-Original-URL`…)
/// goes whoever sent it, since a front proxy relays its own clients' headers. Names are
/// compared with `_` read as `-`: CGI and WSGI origins map both spellings to one variable.
pub fn strip_forwarding(headers: &mut HeaderMap, trusted: bool) {
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let raw = n.as_str();
            let kept =
                trusted && matches!(raw, "x-forwarded-for" | "x-forwarded-proto" | "x-real-ip");
            if kept {
                return false;
            }
            let n: std::borrow::Cow<'_, str> = if raw.contains('_') {
                raw.replace('_', "-").into()
            } else {
                raw.into()
            };
            n.starts_with("x-forwarded-") || FORWARDING.contains(&n.as_ref())
        })
        .cloned()
        .collect();
    for n in named {
        headers.remove(n);
    }
}

/// The scheme a trusted proxy reports in `X-Forwarded-Proto` (`http` or `https` only).
pub fn trusted_scheme(headers: &HeaderMap) -> Option<&'static str> {
    let mut values = headers.get_all(X_FORWARDED_PROTO).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    // A chain (`https, http`) starts with what the first proxy saw.
    let first = v.to_str().ok()?.split(',').next()?.trim();
    if first.eq_ignore_ascii_case("https") {
        Some("https")
    } else if first.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// Appends `via` (`1.1 kura`) to any `Via` already present.
pub fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(header::VIA, via.clone());
}

/// Sets the `X-Forwarded-*` headers: the client address is appended to an existing
/// `X-Forwarded-For` chain (only a trusted proxy's survives to here); scheme and host are set
/// from what kura keyed, and removed when `None` (the rule's key does not hold them).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    scheme: Option<&'static str>,
    host: Option<HeaderValue>,
) {
    match headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes()) {
        Some(prev) if !prev.trim_ascii().is_empty() => {
            let mut s = Vec::with_capacity(prev.len() + 2 + client_ip.len());
            s.extend_from_slice(prev);
            s.extend_from_slice(b", ");
            s.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&s) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        _ => {
            headers.insert(X_FORWARDED_FOR, client_ip.clone());
        }
    }
    match scheme {
        Some(s) => headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(s)),
        None => headers.remove(X_FORWARDED_PROTO),
    };
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
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
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.1.2.3"),
            Some("http"),
            Some(HeaderValue::from_static("example.com")),
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 10.1.2.3");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "example.com");

        let mut h = HeaderMap::new();
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("::1"),
            Some("https"),
            None,
        );
        assert_eq!(h[X_FORWARDED_FOR], "::1");
        assert!(h.get(X_FORWARDED_HOST).is_none());
        set_forwarded(&mut h, &HeaderValue::from_static("::1"), None, None);
        assert!(h.get(X_FORWARDED_PROTO).is_none());
    }

    #[test]
    fn forwarding_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for n in [
            "forwarded",
            "x-forwarded-host",
            "x-forwarded-for",
            "x-forwarded-port",
            "x-forwarded-anything",
            "x-real-ip",
            "x-original-url",
        ] {
            h.insert(HeaderName::from_static(n), "evil".parse().unwrap());
        }
        h.insert("x_forwarded_host", "evil".parse().unwrap());
        h.insert("x_original_url", "/admin".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        let mut from_trusted = h.clone();
        strip_forwarding(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        // A trusted proxy keeps only the address chain, the real IP and the scheme.
        strip_forwarding(&mut from_trusted, true);
        let mut kept: Vec<&str> = from_trusted.keys().map(|k| k.as_str()).collect();
        kept.sort();
        assert_eq!(kept, ["x-forwarded-for", "x-kept", "x-real-ip"]);
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_PROTO, "HTTPS, http".parse().unwrap());
        assert_eq!(trusted_scheme(&h), Some("https"));
        h.insert(X_FORWARDED_PROTO, "gopher".parse().unwrap());
        assert_eq!(trusted_scheme(&h), None);
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
