//! kura's cluster cache (after Casserole): several kura nodes share one cache so the origin
//! serves each object segment once for the whole cluster.
//!
//! - [`membership`]: the member list (static or [`etcd`]), swapped atomically;
//! - [`hash`]: rendezvous hashing, which member owns a segment;
//! - [`origin`]: the peer tier, as the cache's origin: ask the owner, else the origin;
//! - [`wire`]: the peer protocol's headers and the owner's CRC trailer;
//! - [`client`]: HTTP/2 connections to peers.
//!
//! The owner's side (the peer listener) lives in kura-proxy, which knows the route table and
//! the cache.

#![deny(missing_docs)]

pub mod client;
pub mod etcd;
pub mod hash;
pub mod membership;
pub mod origin;
pub mod tls;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use http::HeaderValue;
use kura_cache::Origin;
use kura_cache::key::RuleId;
use kura_config::{ClusterConfig, MemberSource};
use tokio_util::sync::CancellationToken;

use crate::client::PeerClient;
use crate::membership::Membership;
use crate::origin::ClusterOrigin;

/// Counters of the peer tier.
#[derive(Default)]
pub struct ClusterStats {
    /// Answers taken from owners.
    pub peer_answers: AtomicU64,
    /// Body bytes received from owners: segments once checked, streamed answers as they pass.
    pub peer_bytes: AtomicU64,
    /// Owners' answers not used, by why.
    pub peer_connect_errors: AtomicU64,
    /// Owners whose segment did not arrive whole within `peer_timeout` of asking.
    pub peer_timeouts: AtomicU64,
    /// Owners' answers refused for their status: a 5xx, or 400, 403 or 421 (the owner refused).
    pub peer_bad_status: AtomicU64,
    /// Owners' answers whose body was truncated, too long, broken or failed its CRC32C.
    pub peer_bad_body: AtomicU64,
    /// Fetches this node made from the origin on the cache's behalf (as owner, alone, or
    /// after a peer failed).
    pub origin_fetches: AtomicU64,
    /// Peer requests this node answered as owner, and those refused (no or wrong secret).
    pub served: AtomicU64,
    /// Peer requests refused: no or wrong secret, or a failed TLS handshake.
    pub refused: AtomicU64,
}

/// The peer tier's membership and counters at one moment, as the admin API and the metrics
/// report them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSnapshot {
    /// This node's peering address.
    pub me: String,
    /// The members, sorted, this node included.
    pub members: Vec<String>,
    /// Peers left out of ownership now because they recently failed.
    pub down: Vec<String>,
    /// 1 in contact with etcd, 0 not, -1 no etcd.
    pub etcd_up: i64,
    /// Member list changes applied since start.
    pub membership_changes: u64,
    /// Answers taken from owners.
    pub peer_answers: u64,
    /// Body bytes received from owners.
    pub peer_bytes: u64,
    /// Owners' answers not used, by why: `connect`, `timeout`, `status` or `body`.
    pub peer_errors: std::collections::BTreeMap<&'static str, u64>,
    /// Fetches this node made from the origin on the cache's behalf.
    pub origin_fetches: u64,
    /// Peer requests this node answered as owner.
    pub served: u64,
    /// Peer requests this node refused (no or wrong secret, failed TLS handshake).
    pub refused: u64,
}

/// This node's part in the cluster: who the members are, connections to them, and the peer
/// tier's settings and counters, shared by every rule's origin it wraps.
pub struct Cluster {
    /// The member list and who owns which segment.
    pub membership: Arc<Membership>,
    pub(crate) client: PeerClient,
    /// The shared secret every peer request carries and every owner checks.
    pub secret: String,
    /// How long an owner has to connect and answer, and at most between two frames of a
    /// segment, before this node fetches from the origin instead.
    pub peer_timeout: Duration,
    /// The cache's segment size in bytes: ownership is decided per segment, and answers no
    /// longer than this are read whole and checked before use.
    pub segment_size: u64,
    /// Counters of the peer tier, shared with the owner's side in kura-proxy.
    pub stats: Arc<ClusterStats>,
    stop: CancellationToken,
}

impl Cluster {
    /// Starts membership (the etcd task, on the current runtime, when configured). Fails when
    /// the TLS files do not make a usable configuration.
    pub fn start(
        cfg: &ClusterConfig,
        segment_size: u64,
    ) -> Result<Arc<Cluster>, tls::PeerTlsError> {
        let client = match &cfg.tls {
            Some(t) => PeerClient::with_tls(tls::ClientTls::new(t)?),
            None => PeerClient::default(),
        };
        let me = cfg.peering_address.to_string();
        let initial = match &cfg.members {
            MemberSource::Static(list) => list.iter().map(|a| a.to_string()).collect(),
            MemberSource::Etcd { .. } => Vec::new(),
        };
        let membership = Arc::new(Membership::new(&me, initial, cfg.peer_down_ttl));
        let stop = CancellationToken::new();
        if let MemberSource::Etcd {
            endpoints,
            prefix,
            lease_ttl,
            tls,
            auth,
        } = &cfg.members
        {
            membership.etcd_up.store(0, Relaxed);
            let source = etcd::EtcdSource {
                endpoints: endpoints.clone(),
                prefix: prefix.clone(),
                lease_ttl: *lease_ttl,
                tls: tls.clone(),
                auth: auth.clone(),
            };
            tokio::spawn(etcd::run(source, membership.clone(), stop.clone()));
        }
        Ok(Arc::new(Cluster {
            membership,
            client,
            secret: cfg.secret.clone(),
            peer_timeout: cfg.peer_timeout,
            segment_size,
            stats: Arc::default(),
            stop,
        }))
    }

    /// `local` (a rule's origin) behind the peer tier; `rule` is the rule's identity, which
    /// the owner checks against its own route table.
    pub fn origin(self: &Arc<Self>, local: Arc<dyn Origin>, rule: RuleId) -> Arc<dyn Origin> {
        Arc::new(ClusterOrigin {
            cluster: self.clone(),
            local,
            rule: HeaderValue::from_str(&rule.hex()).expect("hex digits"),
        })
    }

    /// Stops following etcd (shutdown).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub(crate) fn count_miss(&self, kind: &str) {
        let c = match kind {
            "connect" => &self.stats.peer_connect_errors,
            "timeout" => &self.stats.peer_timeouts,
            "status" => &self.stats.peer_bad_status,
            _ => &self.stats.peer_bad_body,
        };
        c.fetch_add(1, Relaxed);
    }

    /// The membership and counters now (for the admin API and the metrics).
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.stats;
        let m = &self.membership;
        StatsSnapshot {
            me: m.me.to_string(),
            members: m.members().iter().map(|n| n.to_string()).collect(),
            down: m.down().iter().map(|n| n.to_string()).collect(),
            etcd_up: m.etcd_up.load(Relaxed),
            membership_changes: m.changes.load(Relaxed),
            peer_answers: s.peer_answers.load(Relaxed),
            peer_bytes: s.peer_bytes.load(Relaxed),
            peer_errors: [
                ("connect", s.peer_connect_errors.load(Relaxed)),
                ("timeout", s.peer_timeouts.load(Relaxed)),
                ("status", s.peer_bad_status.load(Relaxed)),
                ("body", s.peer_bad_body.load(Relaxed)),
            ]
            .into_iter()
            .collect(),
            origin_fetches: s.origin_fetches.load(Relaxed),
            served: s.served.load(Relaxed),
            refused: s.refused.load(Relaxed),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
