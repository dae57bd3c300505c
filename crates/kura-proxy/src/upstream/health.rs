//! Optional active health checks: a task per pool probes every backend with `GET <path>` on a
//! fresh connection each interval. `unhealthy_threshold` failures in a row take a backend out of
//! rotation, `healthy_threshold` successes bring it back. The task holds only a `Weak` to its
//! pool, so it ends by itself when a reload drops the pool.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use http::{Request, header};
use kura_config::HealthCheckSpec;

use super::{Backend, Pool};
use crate::body::ReqBody;

pub(super) fn spawn(pool: &Arc<Pool>) {
    let weak = Arc::downgrade(pool);
    let Some(spec) = pool.spec.health_check.clone() else {
        return;
    };
    tokio::spawn(run(weak, spec));
}

async fn run(pool: Weak<Pool>, spec: HealthCheckSpec) {
    let n = match pool.upgrade() {
        Some(p) => p.backends.len(),
        None => return,
    };
    // Consecutive successes (positive) or failures (negative) per backend.
    let mut streak = vec![0i64; n];
    let mut interval = tokio::time::interval(spec.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let probes = pool
            .backends
            .iter()
            .map(|b| probe(b.clone(), &spec))
            .collect::<Vec<_>>();
        let results = futures_util::future::join_all(probes).await;
        for ((backend, ok), streak) in pool.backends.iter().zip(results).zip(streak.iter_mut()) {
            *streak = match (ok, *streak) {
                (true, s) if s > 0 => s + 1,
                (true, _) => 1,
                (false, s) if s < 0 => s - 1,
                (false, _) => -1,
            };
            let down = backend.active_down.load(Relaxed);
            if !down && *streak <= -(spec.unhealthy_threshold as i64) {
                backend.active_down.store(true, Relaxed);
                tracing::warn!(pool = %pool.spec.name, backend = %backend.spec.url, "health check failing: backend out of rotation");
            } else if down && *streak >= spec.healthy_threshold as i64 {
                backend.active_down.store(false, Relaxed);
                tracing::info!(pool = %pool.spec.name, backend = %backend.spec.url, "health check passing: backend back in rotation");
            }
        }
    }
}

/// True when the backend answered the probe with a status below 400 within the timeout.
async fn probe(backend: Arc<Backend>, spec: &HealthCheckSpec) -> bool {
    let host = spec
        .host
        .clone()
        .unwrap_or_else(|| backend.spec.authority.clone());
    let path = format!("{}{}", backend.spec.base_path, spec.path);
    let attempt = async {
        // The same connection code as requests: TLS and HTTP/2 backends are probed as used.
        let mut sender = backend.connect(spec.timeout).await.ok()?;
        let scheme = if backend.spec.tls { "https" } else { "http" };
        let req = if sender.is_h2() {
            Request::get(format!("{scheme}://{host}{path}"))
        } else {
            Request::get(path).header(header::HOST, host)
        }
        .header(header::USER_AGENT, "kura-health-check")
        .body(ReqBody::empty())
        .ok()?;
        let resp = sender.try_send_request(req).await.ok()?;
        Some(resp.status().as_u16() < 400)
    };
    matches!(
        tokio::time::timeout(spec.timeout, attempt).await,
        Ok(Some(true))
    )
}
