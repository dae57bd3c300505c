//! What can go wrong with a request, which status it becomes, and the HTML page sent for it.
//!
//! Every failure carries where it came from (client, upstream, internal) as its variant, so
//! the status, the page and the access log's label are decided in one place; errors that go
//! through the cache (its origins are pools and image transforms) come back as themselves,
//! never re-chosen from a status code. Pages come from the operator's directory
//! (`<status>.html`, `default.html`, Hipache's custom error pages) or from built-in defaults.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;
use kura_cache::OriginError;
use kura_config::ErrorPagesConfig;

/// Which side of the proxy a failure belongs to: the client's request, the upstream (a
/// backend, an image source), or kura itself (a limit of its own, a transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// A request that could not be answered. The variant says which side failed and why; its
/// status, page and access-log label follow from it, in this one place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    // The client's request.
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
    #[error("a path capture would leave its template's prefix")]
    CaptureEscapes,
    #[error("malformed or interrupted request body")]
    BadBody,
    #[error("the request body was not sent within the response timeout")]
    BodyTimeout,
    /// The client accepted no byte of an answer for `limits.send_timeout` (an HTTP/2 stream's,
    /// or its connection's), after its head: only the access log sees it.
    #[error("the client read nothing of the answer for the send timeout")]
    SendTimeout,
    /// A request the rule refuses, with the status that says why (image routes: 400 for bad
    /// parameters or sources, 403 for signatures and source hosts, 405 for methods).
    #[error("{1}")]
    Refused(StatusCode, Cow<'static, str>),

    // The upstream.
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
    #[error("the backend switched to a protocol the rule does not relay")]
    WrongUpgrade,
    #[error("an upgrade (WebSocket) needs an HTTP/1.1 pool")]
    UpgradeNeedsHttp1,
    #[error("the image source could not be fetched")]
    SourceFailed,
    #[error("the image source is larger than max_source_bytes ({0})")]
    SourceTooLarge(u64),
    #[error("the image source is not an image kura can read: {0}")]
    SourceUnreadable(String),
    #[error("the image source's format is not supported: {0}")]
    SourceUnsupported(String),

    // kura itself.
    #[error("too many upgraded connections")]
    TooManyTunnels,
    #[error("every image transform slot is busy")]
    ImagesBusy,
    #[error("the image transform took longer than the rule's timeout")]
    ImageTimeout,
    #[error("the image could not be encoded: {0}")]
    ImageEncode(String),
    /// A failure of the cache's own (not one of its origin's, which keep their variant).
    #[error("cache: {0}")]
    Cache(String),
}

impl ProxyError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        use ProxyError::*;
        match self {
            MissingHost | BadHost | UnknownHost | NoRoute | BodyTooLarge | BadTarget
            | CaptureEscapes | BadBody | BodyTimeout | SendTimeout | Refused(..) => Side::Client,
            NoBackend | PoolExhausted | Connect(_) | Upstream(_) | Timeout | WrongUpgrade
            | UpgradeNeedsHttp1 | SourceFailed | SourceTooLarge(_) | SourceUnreadable(_)
            | SourceUnsupported(_) => Side::Upstream,
            TooManyTunnels | ImagesBusy | ImageTimeout | ImageEncode(_) | Cache(_) => {
                Side::Internal
            }
        }
    }

    /// A short label for logs and the access log (`side/kind`).
    pub fn kind(&self) -> &'static str {
        use ProxyError::*;
        match self {
            MissingHost => "client/missing_host",
            BadHost => "client/bad_host",
            UnknownHost => "client/unknown_host",
            NoRoute => "client/no_route",
            BodyTooLarge => "client/body_too_large",
            BadTarget => "client/bad_target",
            CaptureEscapes => "client/capture_escapes",
            BadBody => "client/bad_body",
            BodyTimeout => "client/body_timeout",
            SendTimeout => "client/send_timeout",
            Refused(..) => "client/refused",
            NoBackend => "upstream/no_backend",
            PoolExhausted => "upstream/pool_exhausted",
            Connect(_) => "upstream/connect",
            Upstream(_) => "upstream/failed",
            Timeout => "upstream/timeout",
            WrongUpgrade => "upstream/wrong_upgrade",
            UpgradeNeedsHttp1 => "upstream/upgrade_needs_http1",
            SourceFailed => "upstream/source_failed",
            SourceTooLarge(_) => "upstream/source_too_large",
            SourceUnreadable(_) => "upstream/source_unreadable",
            SourceUnsupported(_) => "upstream/source_unsupported",
            TooManyTunnels => "internal/too_many_tunnels",
            ImagesBusy => "internal/images_busy",
            ImageTimeout => "internal/image_timeout",
            ImageEncode(_) => "internal/image_encode",
            Cache(_) => "internal/cache",
        }
    }

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
        use ProxyError::*;
        match self {
            MissingHost | BadHost | UnknownHost | BadTarget | CaptureEscapes | BadBody => {
                StatusCode::BAD_REQUEST
            }
            NoRoute => StatusCode::NOT_FOUND,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout | SendTimeout => StatusCode::REQUEST_TIMEOUT,
            Refused(s, _) => *s,
            NoBackend | Connect(_) | Upstream(_) | WrongUpgrade | UpgradeNeedsHttp1
            | SourceFailed | SourceTooLarge(_) | SourceUnreadable(_) => StatusCode::BAD_GATEWAY,
            SourceUnsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PoolExhausted | TooManyTunnels | ImagesBusy => StatusCode::SERVICE_UNAVAILABLE,
            Timeout | ImageTimeout => StatusCode::GATEWAY_TIMEOUT,
            ImageEncode(_) | Cache(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A refusal with its own status and reason.
    pub fn refused(status: StatusCode, why: impl Into<Cow<'static, str>>) -> Self {
        ProxyError::Refused(status, why.into())
    }
}

/// A failure of an origin the cache called (a pool, an image transform) travels through the
/// cache as its cause, and comes back out as the same error.
impl From<ProxyError> for OriginError {
    fn from(e: ProxyError) -> Self {
        OriginError::new(e.status(), e)
    }
}

impl From<OriginError> for ProxyError {
    fn from(e: OriginError) -> Self {
        match e.cause::<ProxyError>() {
            Some(p) => p.clone(),
            None => ProxyError::Cache(e.to_string()),
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

use kura_http::escape_html;

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
