//! Who is in the cluster: an immutable, sorted member list swapped atomically (the request
//! path only loads it), fed by a static list or by etcd, plus a short memory of peers that
//! just failed, which are left out of ownership for `peer_down_ttl`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::hash;

/// This node's view of the cluster: the current members and the peers it has just marked
/// down.
pub struct Membership {
    /// This node's identity (its peering address).
    pub me: Arc<str>,
    members: ArcSwap<Vec<Arc<str>>>,
    down: Mutex<HashMap<Arc<str>, Instant>>,
    down_ttl: Duration,
    /// Member list changes applied.
    pub changes: AtomicU64,
    /// 1 when the etcd source is in contact, 0 when not, -1 without etcd.
    pub etcd_up: AtomicI64,
}

impl Membership {
    /// A view holding `initial` and `me` (the peering address), in which a failed peer stays
    /// out of ownership for `down_ttl`; `etcd_up` starts at -1 (no etcd).
    pub fn new(me: &str, initial: Vec<String>, down_ttl: Duration) -> Membership {
        let m = Membership {
            me: me.into(),
            members: ArcSwap::from_pointee(Vec::new()),
            down: Mutex::new(HashMap::new()),
            down_ttl,
            changes: AtomicU64::new(0),
            etcd_up: AtomicI64::new(-1),
        };
        m.set(initial);
        m
    }

    /// The current members, sorted, this node included.
    pub fn members(&self) -> Arc<Vec<Arc<str>>> {
        self.members.load_full()
    }

    /// Replaces the member list (this node is always a member of its own view).
    pub fn set(&self, mut nodes: Vec<String>) {
        nodes.push(self.me.to_string());
        nodes.sort();
        nodes.dedup();
        let next: Vec<Arc<str>> = nodes.into_iter().map(Arc::from).collect();
        if *self.members.load_full() != next {
            tracing::info!(members = ?next, "cluster membership changed");
            self.members.store(Arc::new(next));
            self.changes.fetch_add(1, Relaxed);
        }
    }

    /// The owner of `key` among the members not marked down (this node if it wins).
    pub fn owner(&self, key: &str) -> Arc<str> {
        let members = self.members.load();
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let alive = members
            .iter()
            .filter(|m| **m == self.me || down.get(*m).is_none_or(|until| *until <= now));
        hash::owner(alive, key)
            .cloned()
            .unwrap_or_else(|| self.me.clone())
    }

    /// Whether `node` (a member's peering address) is this node.
    pub fn is_me(&self, node: &str) -> bool {
        *self.me == *node
    }

    /// Leaves `node` out of ownership for `peer_down_ttl` (it refused, failed or was slow).
    pub fn mark_down(&self, node: &Arc<str>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        down.retain(|_, until| *until > now);
        if down.insert(node.clone(), now + self.down_ttl).is_none() {
            tracing::warn!(peer = %node, ttl = ?self.down_ttl, "peer left out of ownership");
        }
    }

    /// Peers now marked down.
    pub fn down(&self) -> Vec<Arc<str>> {
        let now = Instant::now();
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_node_is_always_a_member_and_down_peers_lose_their_keys_for_a_while() {
        // Down long enough to be seen at once by a stalled test thread; its end is waited for.
        let m = Membership::new(
            "127.0.0.1:7000",
            vec!["127.0.0.2:7000".into(), "127.0.0.3:7000".into()],
            Duration::from_secs(3),
        );
        assert_eq!(m.members().len(), 3);
        m.set(vec!["127.0.0.2:7000".into()]);
        assert_eq!(m.members().len(), 2);
        assert!(m.members().iter().any(|n| m.is_me(n)));
        assert_eq!(m.changes.load(Relaxed), 2);
        m.set(vec!["127.0.0.2:7000".into()]);
        assert_eq!(
            m.changes.load(Relaxed),
            2,
            "an unchanged list is not a change"
        );

        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let peer: Arc<str> = "127.0.0.2:7000".into();
        let theirs: Vec<&String> = keys.iter().filter(|k| m.owner(k) == peer).collect();
        assert!(!theirs.is_empty());
        m.mark_down(&peer);
        let marked = Instant::now();
        assert!(theirs.iter().all(|k| m.is_me(&m.owner(k))));
        assert_eq!(m.down(), vec![peer.clone()]);
        while !m.down().is_empty() {
            assert!(marked.elapsed() < Duration::from_secs(60), "never back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            marked.elapsed() >= Duration::from_millis(2900),
            "down for its TTL"
        );
        assert!(
            theirs.iter().all(|k| m.owner(k) == peer),
            "back after the TTL"
        );
        assert!(m.down().is_empty());
    }
}
