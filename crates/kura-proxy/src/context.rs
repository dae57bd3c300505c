//! The per-request context ([`Exchange`], as Pingora's `CTX`): what the phases of one request
//! share (start time, the vhost's counters, the upstream chosen and its time, the access-log
//! fields) and the record completed when the response body is finished or dropped: that is
//! the moment the bytes sent and the total time are known, so metrics and the access log are
//! written there (through the connection, an [`ExchangeSink`]), and the connection becomes
//! idle again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};

use crate::control::metrics::VHostCounters;
use crate::errors::ProxyError;

/// Request fields kept for the access log (only when one is configured).
pub struct LogFields {
    pub client: String,
    pub method: String,
    pub target: String,
    pub version: &'static str,
    pub referer: String,
    pub user_agent: String,
    pub host: String,
}

/// Where a finished exchange is recorded: the connection it came on (metrics, access log,
/// the connection's idle clock).
pub trait ExchangeSink: Send + Sync {
    fn complete(&self, x: &Exchange, bytes_sent: u64);
}

/// One request/response exchange.
pub struct Exchange {
    pub start: Instant,
    /// The request's id (a trusted `X-Request-Id`, or made here): in the access log, on the
    /// upstream request and on shadow copies.
    pub id: HeaderValue,
    /// The connection this exchange belongs to.
    pub sink: Arc<dyn ExchangeSink>,
    /// The matched vhost's counters, if any vhost matched.
    pub counters: Option<Arc<VHostCounters>>,
    pub status: StatusCode,
    pub upstream: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    pub log: Option<LogFields>,
    /// Why the request failed, when it did (kura's own error page was sent).
    pub error: Option<ProxyError>,
    /// The request's tracing span: events of its phases, of its cache fill, upstream attempts,
    /// shadow copies and image transforms are inside it.
    pub span: tracing::Span,
    /// Clock ms since which the answer's body has been waiting for its upstream (or the
    /// cache) with nothing to give; 0 while it is not. Tells a cut for the send timeout that
    /// the upstream stalled from one the client caused.
    pub body_waiting_since_ms: u64,
}

impl Exchange {
    /// The upstream body broke after its head was relayed. `client_fault` is set when the
    /// upstream connection was aborted because the client's request body failed (too large,
    /// malformed, cut off): the failure is then the client's, not the backend's.
    pub fn note_upstream_error(&mut self, e: &hyper::Error, client_fault: Option<ProxyError>) {
        let vhost = self.counters.as_ref().map(|v| &*v.name).unwrap_or("-");
        self.span
            .in_scope(|| tracing::debug!(vhost, error = %e, "upstream body failed mid-stream"));
        // The status was sent already: the access log's error field says what happened.
        if self.error.is_none() {
            self.error = Some(client_fault.unwrap_or_else(|| {
                ProxyError::Upstream(format!("the body broke after the head: {e}"))
            }));
        }
    }

    /// The answer's body failed after its head was sent, for another reason than its upstream
    /// connection's (a cache fill's origin, the client not reading): the access log's error,
    /// unless one is set already.
    pub fn note_body_error(&mut self, error: ProxyError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// The answer's body was polled for its next frame from its upstream or the cache:
    /// `pending` when none was there.
    pub fn note_body_poll(&mut self, pending: bool) {
        if !pending {
            self.body_waiting_since_ms = 0;
        } else if self.body_waiting_since_ms == 0 {
            self.body_waiting_since_ms = crate::clock::now_ms();
        }
    }

    /// Records the exchange (called once, when its response body is done or dropped).
    pub fn complete(self: Box<Self>, bytes_sent: u64) {
        let sink = self.sink.clone();
        sink.complete(&self, bytes_sent);
    }
}
