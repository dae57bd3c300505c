//! Membership from etcd (as Casserole did): this node puts `<prefix><peering address>` under a
//! lease it keeps alive, and watches the prefix; the member list is re-read whole on every
//! event and at every lease period, so a missed event or an expired lease is never lost.
//!
//! When etcd is unreachable the last member list stays in force; the task retries with
//! backoff, logs the outage and reports it through `Membership::etcd_up` (a metric).
//!
//! The client is `etcdv3client`'s generated gRPC calls over a tonic channel built here
//! (timeouts, TLS): that crate ships its protobuf code, so building kura needs no `protoc`
//! (etcd-client generates it at build time). Its request builders (`do_put`, `do_grant`…)
//! return futures that are not `Send`; the plain calls taking a `pb` request are used instead.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use etcdv3client::grpc::{CredentialInterceptor, TonicClient};
use etcdv3client::pb;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::membership::Membership;

type Client = etcdv3client::Client<CredentialInterceptor<TonicClient>>;

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

/// Why a session with etcd ended.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A TLS file could not be read.
    #[error("{0}")]
    Io(std::io::Error),
    /// An endpoint URL or its TLS settings were refused by the transport.
    #[error("etcd endpoint {endpoint:?}: {error}")]
    Endpoint {
        /// The URL as configured.
        endpoint: String,
        /// The transport's reason, with its causes.
        error: String,
    },
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// etcd answered with an error, or the call failed on the way.
    #[error("{0}")]
    Etcd(etcdv3client::Error),
    /// The token etcd returned cannot be sent as a gRPC header.
    #[error("etcd gave an authentication token that is not ASCII")]
    Token,
    /// A stream this session needs ended.
    #[error("{0}")]
    Lost(&'static str),
}

/// `e` and its causes, one after the other (tonic's transport errors say little alone).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<etcdv3client::Error> for EtcdError {
    fn from(e: etcdv3client::Error) -> Self {
        EtcdError::Etcd(e)
    }
}

/// The TLS settings of every endpoint, when configured.
fn tls(source: &EtcdSource) -> Result<Option<ClientTlsConfig>, EtcdError> {
    let Some(t) = &source.tls else {
        return Ok(None);
    };
    // tonic's TLS builds its rustls configuration from the process-wide provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| {
            EtcdError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", p.display()),
            ))
        })
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&t.ca)?));
    if let Some((cert, key)) = &t.identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// A client of `source`'s endpoints (balanced when there are several), with timeouts, TLS
/// and, with a user, a token (renewed by the client when etcd says it is stale).
async fn connect(source: &EtcdSource) -> Result<Client, EtcdError> {
    let tls = tls(source)?;
    let mut endpoints = Vec::new();
    for url in &source.endpoints {
        let bad = |e: tonic::transport::Error| EtcdError::Endpoint {
            endpoint: url.clone(),
            error: chain(&e),
        };
        let mut e = Endpoint::from_shared(url.clone())
            .map_err(bad)?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5));
        if let Some(tls) = &tls {
            e = e.tls_config(tls.clone()).map_err(bad)?;
        }
        endpoints.push(e);
    }
    let channel = match endpoints.as_slice() {
        [one] => one
            .connect()
            .await
            .map_err(|e| EtcdError::Connect(chain(&e)))?,
        _ => Channel::balance_list(endpoints.into_iter()),
    };
    let token = match &source.auth {
        Some((user, password)) => {
            let mut anonymous = etcdv3client::Client::with_service(CredentialInterceptor::new(
                None,
                None,
                TonicClient::new(channel.clone()),
            ));
            let token = anonymous
                .auth
                .authenticate(pb::AuthenticateRequest {
                    name: user.clone(),
                    password: password.clone(),
                })
                .await?
                .token;
            Some(AsciiMetadataValue::try_from(token).map_err(|_| EtcdError::Token)?)
        }
        None => None,
    };
    Ok(etcdv3client::Client::with_service(
        CredentialInterceptor::new(source.auth.clone(), token, TonicClient::new(channel)),
    ))
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
) -> Result<(), EtcdError> {
    let mut client = tokio::select! {
        c = connect(source) => c?,
        _ = stop.cancelled() => return Ok(()),
    };
    let ttl = source.lease_ttl.as_secs().max(2) as i64;
    let lease = client
        .lease
        .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
        .await?
        .id;
    let key = format!("{}{}", source.prefix, membership.me);
    client
        .kv
        .put(pb::PutRequest {
            key: key.into_bytes(),
            value: membership.me.as_bytes().to_vec(),
            lease,
            ..Default::default()
        })
        .await?;
    // Keep-alive requests go up a stream fed from `renew`; etcd answers each on `acks`.
    let (renew, requests) = tokio::sync::mpsc::channel(1);
    let requests = futures_util::stream::unfold(requests, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let keep = pb::LeaseKeepAliveRequest { id: lease };
    renew
        .send(keep)
        .await
        .map_err(|_| EtcdError::Lost("lease keep-alive ended"))?;
    let mut acks = client.lease.lease_keep_alive(requests).await?;
    let mut watcher = client
        .watch
        .do_watch(source.prefix.as_str())
        .with_prefix()
        .await?;
    relist(&mut client, source, membership).await?;
    membership.etcd_up.store(1, Relaxed);
    tracing::info!(endpoints = ?source.endpoints, lease, "registered in etcd");
    let mut tick = tokio::time::interval(source.lease_ttl / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let revoke = client.lease.lease_revoke(pb::LeaseRevokeRequest { id: lease });
                let _ = tokio::time::timeout(Duration::from_secs(2), revoke).await;
                tracing::info!("left the cluster (lease revoked)");
                return Ok(());
            }
            _ = tick.tick() => {
                renew
                    .send(keep)
                    .await
                    .map_err(|_| EtcdError::Lost("lease keep-alive ended"))?;
                relist(&mut client, source, membership).await?;
            }
            ack = acks.message() => {
                match ack.map_err(etcdv3client::Error::from)? {
                    Some(a) if a.ttl > 0 => {}
                    // The lease is gone (expired while we were cut off): register again.
                    _ => return Err(EtcdError::Lost("lease expired")),
                }
            }
            ev = watcher.message() => {
                match ev? {
                    Some(w) if !w.canceled => {}
                    _ => return Err(EtcdError::Lost("watch ended")),
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
) -> Result<(), EtcdError> {
    let key = source.prefix.as_bytes().to_vec();
    let range = pb::RangeRequest {
        range_end: prefix_end(&key),
        key,
        ..Default::default()
    };
    let kvs = client.kv.range(range).await?.kvs;
    let mut nodes = Vec::new();
    for kv in kvs {
        match std::str::from_utf8(&kv.value) {
            Ok(v) if v.parse::<std::net::SocketAddr>().is_ok() => nodes.push(v.to_string()),
            _ => {
                tracing::warn!(key = %String::from_utf8_lossy(&kv.key), "etcd member entry is not an IP:port; skipped")
            }
        }
    }
    membership.set(nodes);
    Ok(())
}

/// The end of the range of keys starting with `prefix` (etcd's convention: the prefix with its
/// last byte below 0xff incremented, or `\0` for "every key from here").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/kura/"), b"/kura0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
