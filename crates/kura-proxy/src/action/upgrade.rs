//! HTTP/1.1 Upgrade (WebSocket, ws and wss): the request goes through the usual routing and
//! balancing with its `Upgrade` and `Connection: upgrade` kept; when the backend answers 101
//! both connections are taken over from hyper and bytes are copied both ways until either side
//! closes, the tunnel has been silent for `websocket_idle_timeout`, or shutdown's grace period
//! ends. kura does not parse frames; only the protocols a rule lists in `upgrades` (WebSocket
//! by default) are relayed. A tunnel holds what its request held (the backend connection
//! slot, and through its connection's task the client's `max_connections` permit) plus one of
//! `limits.max_upgraded` slots, until it closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::action::Reply;
use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::context::Exchange;
use crate::errors::ProxyError;
use crate::listen::timeouts::{ReadObserver, WatchedIo};
use crate::upstream::{Lease, Outgoing, Pool};

/// What every tunnel of a server shares: the `limits.max_upgraded` slots, the gauge of open
/// tunnels and the token that ends them when shutdown's grace period is over.
pub struct Tunnels {
    slots: Arc<Semaphore>,
    open: IntGauge,
    force: CancellationToken,
}

impl Tunnels {
    pub fn new(max: usize, open: IntGauge, force: CancellationToken) -> Self {
        Tunnels {
            slots: Arc::new(Semaphore::new(max)),
            open,
            force,
        }
    }

    /// One tunnel slot, or `None` when `limits.max_upgraded` are open.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

/// The `Upgrade` value of a request asking for an upgrade (`Connection: upgrade` + `Upgrade`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| upgrade.clone())
}

/// Puts the upgrade headers back after the hop-by-hop ones were stripped.
pub fn restore(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Sends an upgrade request to `pool`. A `101` naming a protocol `relays` accepts becomes a
/// tunnel between the two connections (returned for the client connection's task to await);
/// any other answer is relayed as usual. A backend switching to a protocol the rule does not
/// relay is a 502.
pub async fn open(
    pool: &Pool,
    out: Outgoing,
    on_client: OnUpgrade,
    tunnels: &Tunnels,
    idle: Duration,
    relays: impl Fn(&str) -> bool,
    x: &mut Exchange,
) -> Result<(Reply, Option<JoinHandle<()>>), ProxyError> {
    if pool.spec.http2 {
        return Err(ProxyError::UpgradeNeedsHttp1);
    }
    // Tunnels are counted: one more than `limits.max_upgraded` is refused before any backend
    // is asked.
    let Some(slot) = tunnels.slot() else {
        return Err(ProxyError::TooManyTunnels);
    };
    let sent_at = Instant::now();
    let mut answer = pool.send(out).await?;
    x.upstream_time = Some(sent_at.elapsed());
    x.upstream = Some(answer.lease.backend.spec.authority.as_str().into());
    if answer.response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = answer.response.into_parts();
        let received = parts.version;
        let response = Response::from_parts(parts, ProxyBody::upstream(body, answer.lease));
        let reply = Reply::Relayed {
            response,
            received,
            shadowing: None,
        };
        return Ok((reply, None));
    }
    // The backend must have switched to a protocol the rule relays.
    let chosen = answer
        .response
        .headers()
        .get(header::UPGRADE)
        .filter(|v| v.to_str().is_ok_and(|p| !p.contains(',') && relays(p)))
        .cloned();
    let Some(upgrade) = chosen else {
        return Err(ProxyError::WrongUpgrade);
    };
    let on_upstream = hyper::upgrade::on(&mut answer.response);
    let (parts, _) = answer.response.into_parts();
    let held = Held {
        lease: answer.lease,
        slot,
    };
    let tunnel = spawn_tunnel(on_client, on_upstream, held, idle, tunnels);
    let response = Response::from_parts(parts, ProxyBody::empty());
    Ok((Reply::Switched { response, upgrade }, Some(tunnel)))
}

/// What a tunnel holds until it closes (held for what dropping them releases).
#[allow(dead_code)]
pub struct Held {
    /// The backend connection and its slot under `max_connections_per_backend`.
    pub lease: Lease,
    /// One of `limits.max_upgraded`.
    pub slot: OwnedSemaphorePermit,
}

/// Waits for both sides to hand over their connections, then copies between them.
fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    held: Held,
    idle: Duration,
    tunnels: &Tunnels,
) -> JoinHandle<()> {
    let (open, force) = (tunnels.open.clone(), tunnels.force.clone());
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        // The backend connection now belongs to the tunnel; it never returns to the pool, and
        // its slot is held (with the tunnel's) until the tunnel closes.
        let _held = held;
        open.inc();
        let last = Arc::new(Activity(AtomicU64::new(now_ms())));
        let mut client = WatchedIo::new(TokioIo::new(client), last.clone());
        let mut upstream = WatchedIo::new(TokioIo::new(upstream), last.clone());
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            _ = idle_timeout(&last.0, idle) => {
                tracing::debug!(?idle, "upgraded connection idle: closed");
            }
            _ = force.cancelled() => {}
        }
        open.dec();
    })
}

/// Resolves once nothing moved for `idle`.
async fn idle_timeout(last: &AtomicU64, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let quiet = now_ms().saturating_sub(last.load(Relaxed));
        if quiet >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
    }
}

/// The tunnel's activity clock: when bytes last arrived from either side.
struct Activity(AtomicU64);

impl ReadObserver for Activity {
    fn bytes_arrived(&self) {
        self.0.store(now_ms(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested(&h).unwrap(), "websocket");
        h.remove(header::UPGRADE);
        assert!(requested(&h).is_none());
    }
}
