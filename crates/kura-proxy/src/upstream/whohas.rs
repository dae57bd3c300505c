//! Katana's HttpWhoHas: a pool made of clusters that hold different files, each cluster a set
//! of replica nodes. To find a file, `HEAD` it on up to 3 nodes of every cluster at once; the
//! first `200` or `304` wins and its cluster is remembered for the path (bounded and expiring,
//! moka), so only the first request for a file pays the probes. A node that is down only loses
//! its own probe. When no cluster has the file the request goes to the first cluster, whose
//! own answer (a 404, usually) the client gets; that miss is not remembered.

use std::sync::Arc;

use futures_util::future::select_ok;
use http::HeaderMap;
use http::uri::PathAndQuery;
use kura_config::PoolSpec;

use super::Pool;
use crate::control::metrics::Metrics;

/// Nodes of one cluster asked at once.
const PROBES_PER_CLUSTER: usize = 3;

pub struct WhoHas {
    groups: Vec<Arc<Pool>>,
    known: moka::sync::Cache<String, usize>,
}

impl WhoHas {
    pub fn new(spec: &PoolSpec, metrics: Arc<Metrics>, slots: usize) -> Self {
        let clusters = spec
            .whohas
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let sub = PoolSpec {
                    name: format!("{}#{i}", spec.name),
                    backends: c.backends.clone(),
                    whohas: Vec::new(),
                    set_headers: c.headers.clone(),
                    ..spec.clone()
                };
                Pool::new(sub, metrics.clone(), slots)
            })
            .collect();
        WhoHas {
            groups: clusters,
            known: moka::sync::Cache::builder()
                .max_capacity(spec.whohas_entries)
                .time_to_live(spec.whohas_ttl)
                .build(),
        }
    }

    pub fn groups(&self) -> &[Arc<Pool>] {
        &self.groups
    }

    /// The cluster to send `path` to.
    pub async fn locate(&self, path: &PathAndQuery, headers: &HeaderMap) -> Arc<Pool> {
        if self.groups.len() == 1 {
            return self.groups[0].clone();
        }
        let key = path.path().to_string();
        if let Some(i) = self.known.get(&key) {
            return self.groups[i].clone();
        }
        let mut probes = Vec::new();
        for (ci, cluster) in self.groups.iter().enumerate() {
            let mut tried = Vec::new();
            while tried.len() < PROBES_PER_CLUSTER {
                let Some(bi) = cluster.select(&tried) else {
                    break;
                };
                tried.push(bi);
                let cluster = cluster.clone();
                let (path, headers) = (path.clone(), headers.clone());
                probes.push(Box::pin(async move {
                    match cluster.head_on(bi, &path, &headers).await {
                        Some(s) if s.as_u16() == 200 || s.as_u16() == 304 => Ok(ci),
                        _ => Err(()),
                    }
                }));
            }
        }
        if probes.is_empty() {
            return self.groups[0].clone();
        }
        match select_ok(probes).await {
            Ok((ci, _)) => {
                self.known.insert(key, ci);
                self.groups[ci].clone()
            }
            Err(()) => self.groups[0].clone(),
        }
    }
}
