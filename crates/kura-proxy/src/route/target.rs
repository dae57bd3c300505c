//! The client's request target, read once: scheme, validated authority, normalised path and
//! query. Everything after (vhost lookup, rule match, template captures, the cache key, the
//! path, `Host` and `X-Forwarded-*` sent upstream) reads this, never the raw request, so what
//! is keyed is what is forwarded (see `kura_config::target` for the normalisation itself).

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Version};
use kura_config::Vars;
use kura_config::target::{Authority, TargetError, normalize_path};

use crate::errors::ProxyError;

/// What a request is for, normalised.
#[derive(Debug, Clone)]
pub struct ClientTarget {
    /// `http` or `https`: the listener's, or a trusted proxy's `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// Lowercase host without port (`""` for an HTTP/1.0 request without Host).
    pub host: String,
    /// `host` or `host:port` (the scheme's default port left out): sent as `Host` and
    /// `X-Forwarded-Host`, and part of the cache key.
    pub authority: String,
    /// The normalised path; `None` when the request's own path is already normal.
    normalized: Option<String>,
}

impl ClientTarget {
    /// Reads `req`'s target. `scheme` is the one the request is known to use.
    pub fn read<B>(req: &Request<B>, scheme: &'static str) -> Result<Self, ProxyError> {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            // Two Host headers: which one a backend believes is anyone's guess (RFC 9112 §3.2).
            return Err(ProxyError::BadHost);
        }
        // The authority of an absolute-form target wins over Host (RFC 9112 §3.2.2).
        let raw = if let Some(a) = req.uri().authority() {
            Some(a.as_str())
        } else if let Some(h) = host_header {
            Some(h.to_str().map_err(|_| ProxyError::BadHost)?)
        } else if req.version() == Version::HTTP_10 {
            None
        } else {
            return Err(ProxyError::MissingHost);
        };
        let (host, authority) = match raw {
            Some(raw) => {
                let a = Authority::parse(raw).map_err(target_error)?;
                let authority = a.normalized(default_port(scheme));
                (a.host, authority)
            }
            None => (String::new(), String::new()),
        };
        let path = req.uri().path();
        let normalized = match normalize_path(path) {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(p)) => Some(p),
            Err(e) => return Err(target_error(e)),
        };
        Ok(ClientTarget {
            scheme,
            host,
            authority,
            normalized,
        })
    }

    /// The normalised path of `req` (the request this target was read from).
    pub fn path<'a, B>(&'a self, req: &'a Request<B>) -> &'a str {
        self.normalized
            .as_deref()
            .unwrap_or_else(|| req.uri().path())
    }

    /// Whether the request's own path differs from the normalised one.
    pub fn path_changed(&self) -> bool {
        self.normalized.is_some()
    }

    /// The template variables of this request.
    pub fn vars<'a>(&'a self, path: &'a str, query: &'a str) -> Vars<'a> {
        Vars {
            host: &self.host,
            authority: &self.authority,
            scheme: self.scheme,
            path,
            query,
        }
    }

    /// `X-Forwarded-Host` (and the `Host` of an absolute-form request).
    pub fn authority_value(&self) -> Option<HeaderValue> {
        if self.authority.is_empty() {
            return None;
        }
        HeaderValue::from_str(&self.authority).ok()
    }

    /// The URL as keyed: `scheme://authority/path?query`.
    pub fn url(&self, path: &str, query: &str) -> String {
        let mut u = String::with_capacity(
            self.scheme.len() + 3 + self.authority.len() + path.len() + query.len() + 1,
        );
        u.push_str(self.scheme);
        u.push_str("://");
        u.push_str(&self.authority);
        u.push_str(path);
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }
}

/// `path` with `query` appended (after `&` when `path` has its own query already).
pub fn path_and_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let mut s = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    s.push_str(path);
    if let Some(q) = query {
        s.push(if path.contains('?') { '&' } else { '?' });
        s.push_str(q);
    }
    PathAndQuery::try_from(s).map_err(|_| ProxyError::BadTarget)
}

/// The port a scheme's URLs leave out: 443 for `https`, 80 otherwise.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The client's error a target that fails normalisation is.
pub fn target_error(e: TargetError) -> ProxyError {
    match e {
        TargetError::BadHost => ProxyError::BadHost,
        TargetError::BadPath | TargetError::Userinfo => ProxyError::BadTarget,
        TargetError::Escape => ProxyError::CaptureEscapes,
    }
}

/// A URL (`scheme://authority/path?query`) split for routing, as an admin purge or a peer
/// names one. The path is normalised, the authority validated.
pub struct ParsedUrl {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lowercase host without port.
    pub host: String,
    /// `host` or `host:port`, the scheme's default port left out.
    pub authority: String,
    /// The normalised path.
    pub path: String,
    /// The query, without `?` (empty when none).
    pub query: String,
}

impl ParsedUrl {
    /// Parses `url`; without a scheme, `http` is assumed.
    pub fn parse(url: &str) -> Option<ParsedUrl> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", r)) => ("http", r),
            Some(("https", r)) => ("https", r),
            Some(_) => return None,
            None => ("http", url),
        };
        let (authority, pq) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let a = Authority::parse(authority).ok()?;
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        let path = normalize_path(path).ok()?.into_owned();
        Some(ParsedUrl {
            scheme,
            authority: a.normalized(default_port(scheme)),
            host: a.host,
            path,
            query: query.to_string(),
        })
    }

    /// The URL as template variables, as a request for it would have them.
    pub fn vars(&self) -> Vars<'_> {
        Vars {
            host: &self.host,
            authority: &self.authority,
            scheme: self.scheme,
            path: &self.path,
            query: &self.query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::get(target);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_are_validated_and_ports_kept() {
        let r = req("/a/../p", Some("V.test:1234"));
        let t = ClientTarget::read(&r, "http").unwrap();
        assert_eq!(t.host, "v.test");
        assert_eq!(t.authority, "v.test:1234");
        assert_eq!(t.path(&r), "/p");
        assert_eq!(t.url("/p", "x=1"), "http://v.test:1234/p?x=1");
        let r = req("/", Some("v.test:443"));
        assert_eq!(ClientTarget::read(&r, "https").unwrap().authority, "v.test");
        for bad in ["a.test/x", "http:/", "a b"] {
            assert!(
                ClientTarget::read(&req("/", Some(bad)), "http").is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            ClientTarget::read(&req("http://u:p@v.test/", None), "http"),
            Err(ProxyError::BadTarget)
        ));
        let abs = req("http://Other.test:8080/x", Some("v.test"));
        let t = ClientTarget::read(&abs, "http").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("other.test", "other.test:8080")
        );
    }

    #[test]
    fn urls_parse_for_purges_and_peers() {
        let u = ParsedUrl::parse("https://V.test:443/a/./b?q=1").unwrap();
        assert_eq!((u.scheme, u.authority.as_str()), ("https", "v.test"));
        assert_eq!((u.path.as_str(), u.query.as_str()), ("/a/b", "q=1"));
        let u = ParsedUrl::parse("v.test").unwrap();
        assert_eq!((u.scheme, u.path.as_str()), ("http", "/"));
        assert!(ParsedUrl::parse("ftp://v.test/").is_none());
        assert!(ParsedUrl::parse("http://a@v.test/").is_none());
    }
}
