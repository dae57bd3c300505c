//! The record of one request/response exchange, completed when the response body is finished
//! or dropped: that is the moment the bytes sent and the total time are known, so metrics and
//! the access log are written there, and the connection becomes idle again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::access_log::Entry;
use crate::router::VHost;
use crate::service::ConnInfo;

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

pub struct Exchange {
    pub start: Instant,
    /// The connection (and through it the server) this exchange belongs to.
    pub conn: Arc<ConnInfo>,
    /// The vhost that matched, if any.
    pub vhost: Option<Arc<VHost>>,
    pub status: StatusCode,
    pub upstream: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    pub log: Option<LogFields>,
}

impl Exchange {
    pub fn note_upstream_error(&mut self, e: &hyper::Error) {
        let vhost = self.vhost.as_ref().map(|v| &*v.name).unwrap_or("-");
        tracing::debug!(vhost, error = %e, "upstream body failed mid-stream");
    }

    pub fn complete(self: Box<Self>, bytes_sent: u64) {
        let elapsed = self.start.elapsed();
        let shared = &self.conn.shared;
        let counters = match &self.vhost {
            Some(v) => &v.counters,
            None => &shared.unmatched,
        };
        counters.record(&shared.metrics, self.status, elapsed.as_secs_f64());
        let vhost: &str = &counters.name;
        if let (Some(log), Some(f)) = (&shared.access_log, &self.log) {
            log.log(&Entry {
                client: &f.client,
                method: &f.method,
                target: &f.target,
                version: f.version,
                status: self.status.as_u16(),
                bytes_sent,
                referer: &f.referer,
                user_agent: &f.user_agent,
                host: &f.host,
                vhost,
                upstream: self.upstream.as_deref().unwrap_or(""),
                request_time: elapsed,
                upstream_time: self.upstream_time,
            });
        }
        self.conn.state.idle();
    }
}
