//! Membership from etcd (as Casserole did): this node puts `<prefix><peering address>` under a
//! lease it keeps alive, and watches the prefix; the member list is re-read whole on every
//! event and at every lease period, so a missed event or an expired lease is never lost.
//!
//! When etcd is unreachable the last member list stays in force; the task retries with
//! backoff, logs the outage and reports it through `Membership::etcd_up` (a metric).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;

/// What the etcd source needs.
#[derive(Clone, Debug)]
pub struct EtcdSource {
    /// etcd's client URLs (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// The key prefix members register under, as `<prefix><peering address>`.
    pub prefix: String,
    /// The registration lease's TTL (at least 2 s): a node that stops renewing leaves the
    /// list after it; it is renewed, and the list re-read, every third of it.
    pub lease_ttl: Duration,
    /// TLS to etcd (CA, optional client certificate).
    pub tls: Option<kura_config::EtcdTls>,
    /// etcd user and password.
    pub auth: Option<(String, String)>,
}

/// Connection options: timeouts, and TLS and authentication when configured.
fn options(source: &EtcdSource) -> std::io::Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    if let Some((user, password)) = &source.auth {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(t) = &source.tls {
        // tonic's TLS builds its rustls configuration from the process-wide provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))
            })
        };
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&t.ca)?));
        if let Some((cert, key)) = &t.identity {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

/// Runs until `stop` fires: register, keep the lease alive, follow the prefix.
pub async fn run(source: EtcdSource, membership: Arc<Membership>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = session(&source, &membership, &stop).await;
        if stop.is_cancelled() {
            return;
        }
        membership.etcd_up.store(0, Relaxed);
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in = ?backoff, "etcd unreachable; keeping the last cluster membership");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: register, follow, and on `stop` leave at once (revoke the lease, so
/// the other members stop sending this node requests without waiting for it to expire).
async fn session(
    source: &EtcdSource,
    membership: &Membership,
    stop: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let options = options(source).map_err(etcd_client::Error::IoError)?;
    let mut client = tokio::select! {
        c = Client::connect(&source.endpoints, Some(options)) => c?,
        _ = stop.cancelled() => return Ok(()),
    };
    let ttl = source.lease_ttl.as_secs().max(2) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    let key = format!("{}{}", source.prefix, membership.me);
    client
        .put(
            key.as_str(),
            membership.me.as_bytes(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
    let (mut keeper, mut acks) = client.lease_keep_alive(lease).await?;
    let (_watcher, mut events) = client
        .watch(
            source.prefix.as_str(),
            Some(WatchOptions::new().with_prefix()),
        )
        .await?;
    relist(&mut client, source, membership).await?;
    membership.etcd_up.store(1, Relaxed);
    tracing::info!(endpoints = ?source.endpoints, lease, "registered in etcd");
    let mut tick = tokio::time::interval(source.lease_ttl / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await;
                tracing::info!("left the cluster (lease revoked)");
                return Ok(());
            }
            _ = tick.tick() => {
                keeper.keep_alive().await?;
                relist(&mut client, source, membership).await?;
            }
            ack = acks.message() => {
                match ack? {
                    Some(a) if a.ttl() > 0 => {}
                    // The lease is gone (expired while we were cut off): register again.
                    _ => return Err(etcd_client::Error::LeaseKeepAliveError("lease expired".into())),
                }
            }
            ev = events.message() => {
                if ev?.is_none() {
                    return Err(etcd_client::Error::WatchError("watch ended".into()));
                }
                relist(&mut client, source, membership).await?;
            }
        }
    }
}

async fn relist(
    client: &mut Client,
    source: &EtcdSource,
    membership: &Membership,
) -> Result<(), etcd_client::Error> {
    let resp = client
        .get(
            source.prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        )
        .await?;
    let mut nodes = Vec::new();
    for kv in resp.kvs() {
        match kv.value_str() {
            Ok(v) if v.parse::<std::net::SocketAddr>().is_ok() => nodes.push(v.to_string()),
            _ => {
                tracing::warn!(key = ?kv.key_str().ok(), "etcd member entry is not an IP:port; skipped")
            }
        }
    }
    membership.set(nodes);
    Ok(())
}
