//! What can go wrong with a request, which status it becomes, and the HTML page sent for it.
//!
//! Every failure carries where it came from (client, upstream, internal) as its variant, so
//! the status is decided in one place. Pages come from the operator's directory
//! (`<status>.html`, `default.html`, Hipache's custom error pages) or from built-in defaults.

use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;
use kura_config::ErrorPagesConfig;

/// A request that could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request has no Host header")]
    MissingHost,
    #[error("bad Host header")]
    BadHost,
    #[error("no application configured for this host")]
    UnknownHost,
    #[error("no route matches this path")]
    NoRoute,
    #[error("request body larger than the configured limit")]
    BodyTooLarge,
    #[error("bad request target")]
    BadTarget,
    #[error("malformed or interrupted request body")]
    BadBody,
    #[error("no backend available (all marked dead)")]
    NoBackend,
    #[error("backend connection limit reached")]
    PoolExhausted,
    #[error("could not connect to backend: {0}")]
    Connect(String),
    #[error("backend failed: {0}")]
    Upstream(String),
    #[error("backend timed out")]
    Timeout,
    /// An answer with its own status and reason (image routes: 400, 403, 405, 415).
    #[error("{1}")]
    Status(StatusCode, String),
}

impl ProxyError {
    /// Malformed requests, and bodies left unread, end the connection (as nginx does).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::MissingHost
                | ProxyError::BadHost
                | ProxyError::BadTarget
                | ProxyError::BadBody
                | ProxyError::BodyTooLarge
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost
            | ProxyError::BadHost
            | ProxyError::UnknownHost
            | ProxyError::BadTarget
            | ProxyError::BadBody => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoBackend | ProxyError::Connect(_) | ProxyError::Upstream(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::PoolExhausted => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Status(s, _) => *s,
        }
    }
}

/// Rendered error pages, ready to send (cloning `Bytes` is a reference count).
#[derive(Debug, Clone)]
pub struct ErrorPages {
    custom: HashMap<u16, Bytes>,
    custom_default: Option<Bytes>,
}

impl ErrorPages {
    pub fn new(cfg: &ErrorPagesConfig) -> Self {
        ErrorPages {
            custom: cfg
                .pages
                .iter()
                .map(|(k, v)| (*k, Bytes::from(v.clone())))
                .collect(),
            custom_default: cfg.default.clone().map(Bytes::from),
        }
    }

    /// The page for `status`; `detail` is used only by the built-in page.
    pub fn page(&self, status: StatusCode, detail: &str) -> Bytes {
        if let Some(p) = self.custom.get(&status.as_u16()) {
            return p.clone();
        }
        if let Some(p) = &self.custom_default {
            return p.clone();
        }
        builtin(status, detail)
    }
}

fn builtin(status: StatusCode, detail: &str) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{}</p>\n<hr><p>kura</p></body></html>\n",
        escape_html(detail)
    ))
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_page_then_custom_default_then_builtin() {
        let mut cfg = ErrorPagesConfig::default();
        let pages = ErrorPages::new(&cfg);
        let b = pages.page(StatusCode::BAD_GATEWAY, "no <backend>");
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.contains("502 Bad Gateway"));
        assert!(text.contains("no &lt;backend&gt;"));

        cfg.pages.insert(502, "mine".into());
        cfg.default = Some("fallback".into());
        let pages = ErrorPages::new(&cfg);
        assert_eq!(&pages.page(StatusCode::BAD_GATEWAY, "")[..], b"mine");
        assert_eq!(
            &pages.page(StatusCode::GATEWAY_TIMEOUT, "")[..],
            b"fallback"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::UnknownHost.status(), 400);
        assert_eq!(ProxyError::BodyTooLarge.status(), 413);
        assert_eq!(ProxyError::NoBackend.status(), 502);
        assert_eq!(ProxyError::Timeout.status(), 504);
    }
}
