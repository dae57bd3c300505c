//! What several of kura's crates say about HTTP in the same words, defined once: the
//! hop-by-hop headers a proxy removes (RFC 9110 §7.6.1), the boxed error and future types of
//! their trait objects, and HTML escaping for the pages they render. A leaf crate (it depends
//! on `http` only), so the cache, the shadow engine, the cluster and the proxy can share it.

#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;

use http::header::{self, HeaderMap, HeaderName};

/// A boxed error that can cross threads (bodies and origins of different crates).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future that can cross threads (async methods of trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Headers that describe one connection: never forwarded, never stored.
pub static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass comparing names (cheap for the standard ones) spares
    // the ten hashed lookups below on every request and every response.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
        // `remove` on an absent header only hashes the name; most messages have none of these.
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// Escapes text for an HTML element body or a quoted attribute.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        // A Connection header alone still takes the headers it names.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
        assert!(is_hop_by_hop(&header::TE));
        assert!(!is_hop_by_hop(&header::CONTENT_TYPE));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
