//! The Redis route source: keeps `Shared::dynamic` equal to the frontends in Redis.
//!
//! A session subscribes first (keyspace notifications for `frontend:*` and `dead:*`, turned on
//! with CONFIG SET when allowed, plus the `kura:routes` channel `kura routes` publishes on), then
//! reads everything (SCAN + pipelined LRANGE / SMEMBERS + PTTL), so no change falls between the
//! two. Events mark keys dirty; dirty keys are re-read in one pipeline a few milliseconds later
//! and the table is rebuilt from the entries (unchanged frontends keep their pools and
//! connections) and swapped whole. A full resync runs every `resync_interval`, so a missed
//! event, a deleted key or an expired dead mark is never lost. Requests never touch Redis.
//!
//! When Redis goes away the last table keeps serving; the session is retried with backoff,
//! `kura_redis_up` is 0 meanwhile, and the first thing a new session does is a full resync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kura_config::{HostPattern, PoolSpec, RedisConfig};
use redis::aio::MultiplexedConnection;
use regex::Regex;
use tokio::sync::mpsc;

use super::metrics::RedisMetrics;
use super::schema::{self, CHANNEL, DEAD_PREFIX, FRONTEND_PREFIX, Frontend, KeyKind};
use crate::clock::now_ms;
use crate::control::metrics::VHostCounters;
use crate::route::table::{HostMap, Rule, VHost};
use crate::state::Shared;
use crate::upstream::{Backend, Pool};

/// How long events are gathered before the dirty keys are re-read.
const DEBOUNCE: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys read per pipeline round trip.
const BATCH: usize = 512;
/// Dead marks waiting to be written; more are dropped (the local mark still applies).
const DEAD_QUEUE: usize = 1024;

/// A dead mark to share: the frontend's host key and the backend's index.
struct DeadMark {
    host: String,
    index: usize,
    ttl: Duration,
}

struct Entry {
    items: Vec<String>,
    pattern: HostPattern,
    vhost: Arc<VHost>,
    pool: Arc<Pool>,
}

/// Everything the source knows, kept across sessions (the table outlives a Redis outage).
struct State {
    cfg: RedisConfig,
    shared: Arc<Shared>,
    metrics: Arc<RedisMetrics>,
    frontends: HashMap<String, Entry>,
    /// Dead indexes and the mark's end (clock ms) by host key.
    dead: HashMap<String, (Vec<usize>, u64)>,
    /// Keys already warned about with this content, so a resync does not repeat warnings.
    warned: HashMap<String, Vec<String>>,
    /// Backends by URL, shared by every frontend naming them: one set of keep-alive
    /// connections and one health state per backend, however many hosts point at it.
    backends: HashMap<String, Arc<Backend>>,
    /// Vhost names the published frontends carry: the metric series of a name no frontend
    /// carries any more are dropped, so a Redis writer's churn cannot grow them without bound.
    names: HashSet<Arc<str>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    every_path: Regex,
    dead_tx: mpsc::Sender<DeadMark>,
}

/// Why the source could not start, or why a session with Redis ended (it reconnects).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `redis.url` does not parse.
    #[error("redis.url: {0}")]
    Url(redis::RedisError),
    /// No connection.
    #[error("connect: {0}")]
    Connect(redis::RedisError),
    /// The subscription connection did not come up in time.
    #[error("subscribe: timed out")]
    SubscribeTimeout,
    /// Subscribing failed.
    #[error("subscribe: {0}")]
    Subscribe(redis::RedisError),
    /// The subscription connection closed.
    #[error("subscription connection closed")]
    SubscriptionClosed,
    /// Listing keys failed.
    #[error("SCAN: {0}")]
    Scan(redis::RedisError),
    /// Reading keys failed.
    #[error("read: {0}")]
    Read(redis::RedisError),
}

/// Starts the source on the current runtime; it stops at shutdown.
pub fn spawn(
    cfg: RedisConfig,
    shared: Arc<Shared>,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<(), SourceError> {
    let client = redis::Client::open(cfg.url.as_str()).map_err(SourceError::Url)?;
    let metrics = Arc::new(RedisMetrics::register(&shared.metrics.registry));
    let _ = shared.redis.set(metrics.clone());
    let (dead_tx, dead_rx) = mpsc::channel(DEAD_QUEUE);
    let state = State {
        cfg,
        shared,
        metrics,
        frontends: HashMap::new(),
        dead: HashMap::new(),
        warned: HashMap::new(),
        backends: HashMap::new(),
        names: HashSet::new(),
        tls: None,
        every_path: Regex::new("").expect("the empty regex compiles"),
        dead_tx,
    };
    tracker.spawn(run(client, state, dead_rx));
    Ok(())
}

async fn run(client: redis::Client, mut state: State, mut dead_rx: mpsc::Receiver<DeadMark>) {
    let shutdown = state.shared.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = session(&client, &mut state, &mut dead_rx) => r,
            _ = shutdown.cancelled() => return,
        };
        state.metrics.up.set(0);
        state.metrics.errors.inc();
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in = ?backoff, frontends = state.frontends.len(), "redis unavailable: serving the last routes");
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe, resync, then follow events until something fails.
async fn session(
    client: &redis::Client,
    state: &mut State,
    dead_rx: &mut mpsc::Receiver<DeadMark>,
) -> Result<(), SourceError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(SourceError::Connect)?;
    if state.cfg.configure_notifications {
        enable_notifications(&mut conn).await;
    }
    let db = client.get_connection_info().redis_settings().db();
    let keyspace = format!("__keyspace@{db}__:");
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| SourceError::SubscribeTimeout)?
        .map_err(SourceError::Subscribe)?;
    for prefix in [FRONTEND_PREFIX, DEAD_PREFIX] {
        pubsub
            .psubscribe(format!("{keyspace}{prefix}*"))
            .await
            .map_err(SourceError::Subscribe)?;
    }
    pubsub
        .subscribe(CHANNEL)
        .await
        .map_err(SourceError::Subscribe)?;
    let mut messages = pubsub.into_on_message();

    resync(&mut conn, state).await?;
    state.metrics.up.set(1);
    tracing::info!(
        frontends = state.frontends.len(),
        "redis routes in sync; following changes"
    );

    let mut dirty: HashSet<KeyKind> = HashSet::new();
    let debounce = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(debounce);
    let mut armed = false;
    let mut resync_timer = tokio::time::interval(state.cfg.resync_interval);
    resync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync_timer.reset();
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(SourceError::SubscriptionClosed);
                };
                state.metrics.events.inc();
                let channel = msg.get_channel_name();
                let key = match channel.strip_prefix(keyspace.as_str()) {
                    Some(k) => k.to_string(),
                    None => msg.get_payload::<String>().unwrap_or_default(),
                };
                if let Some(kind) = schema::classify(&key) {
                    dirty.insert(kind);
                    if !armed {
                        armed = true;
                        debounce.as_mut().reset(tokio::time::Instant::now() + DEBOUNCE);
                    }
                }
            }
            _ = &mut debounce, if armed => {
                armed = false;
                let keys: Vec<KeyKind> = dirty.drain().collect();
                refresh(&mut conn, state, &keys).await?;
            }
            _ = resync_timer.tick() => {
                resync(&mut conn, state).await?;
            }
            Some(mark) = dead_rx.recv() => {
                write_dead(&mut conn, &mark).await;
                state.metrics.dead_marks_written.inc();
            }
        }
    }
}

/// Adds the keyspace event classes kura needs to the server's setting (keeping the others).
async fn enable_notifications(conn: &mut MultiplexedConnection) {
    let current: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(conn)
        .await;
    let flags = match current {
        Ok(v) => v.get(1).cloned().unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read notify-keyspace-events: changes arrive through the kura:routes channel and periodic resyncs");
            return;
        }
    };
    // K: keyspace channel; g: del/expire/rename; l: lists; s: sets; x: expirations.
    let mut wanted = flags.clone();
    for c in ['K', 'g', 'l', 's', 'x'] {
        let implied = flags.contains('A') && c != 'K';
        if !flags.contains(c) && !implied {
            wanted.push(c);
        }
    }
    if wanted == flags {
        return;
    }
    let set: Result<(), _> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&wanted)
        .query_async(conn)
        .await;
    match set {
        Ok(()) => tracing::info!(flags = %wanted, "redis keyspace notifications enabled"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot enable keyspace notifications: changes arrive through the kura:routes channel and periodic resyncs")
        }
    }
}

/// Reads every frontend and dead mark and replaces the table.
async fn resync(conn: &mut MultiplexedConnection, state: &mut State) -> Result<(), SourceError> {
    let mut keys = scan(conn, &format!("{FRONTEND_PREFIX}*")).await?;
    keys.extend(scan(conn, &format!("{DEAD_PREFIX}*")).await?);
    let kinds: Vec<KeyKind> = keys.iter().filter_map(|k| schema::classify(k)).collect();
    let seen: HashSet<&KeyKind> = kinds.iter().collect();
    // Keys gone since the last read are read too (they come back empty and are removed).
    let mut gone: Vec<KeyKind> = Vec::new();
    for host in state.frontends.keys() {
        let k = KeyKind::Frontend(host.clone());
        if !seen.contains(&k) {
            gone.push(k);
        }
    }
    for host in state.dead.keys() {
        let k = KeyKind::Dead(host.clone());
        if !seen.contains(&k) {
            gone.push(k);
        }
    }
    let mut all = kinds;
    all.extend(gone);
    refresh(conn, state, &all).await?;
    state.metrics.resyncs.inc();
    Ok(())
}

async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> Result<Vec<String>, SourceError> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(SourceError::Scan)?;
        out.extend(keys);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Re-reads `keys` and swaps in a table with their new contents.
async fn refresh(
    conn: &mut MultiplexedConnection,
    state: &mut State,
    keys: &[KeyKind],
) -> Result<(), SourceError> {
    let mut changed = false;
    for batch in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for k in batch {
            match k {
                KeyKind::Frontend(h) => {
                    pipe.cmd("LRANGE")
                        .arg(format!("{FRONTEND_PREFIX}{h}"))
                        .arg(0)
                        .arg(-1);
                }
                KeyKind::Dead(h) => {
                    let key = format!("{DEAD_PREFIX}{h}");
                    pipe.cmd("SMEMBERS").arg(&key).cmd("PTTL").arg(&key);
                }
            }
        }
        let mut replies: std::vec::IntoIter<redis::RedisResult<redis::Value>> = pipe
            .query_async::<Vec<redis::RedisResult<redis::Value>>>(conn)
            .await
            .map_err(SourceError::Read)?
            .into_iter();
        for k in batch {
            match k {
                KeyKind::Frontend(h) => {
                    let reply = replies.next().unwrap_or(Ok(redis::Value::Nil));
                    changed |= state.apply_frontend(h, reply);
                }
                KeyKind::Dead(h) => {
                    let members = replies.next().unwrap_or(Ok(redis::Value::Nil));
                    let pttl = replies.next().unwrap_or(Ok(redis::Value::Nil));
                    state.apply_dead(h, members, pttl);
                }
            }
        }
    }
    if changed {
        state.publish();
    }
    state.apply_marks();
    Ok(())
}

async fn write_dead(conn: &mut MultiplexedConnection, mark: &DeadMark) {
    let key = format!("{DEAD_PREFIX}{}", mark.host);
    let ttl_ms = mark.ttl.as_millis().max(1) as u64;
    let result: Result<(), _> = redis::pipe()
        .atomic()
        .cmd("SADD")
        .arg(&key)
        .arg(mark.index)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(ttl_ms)
        .ignore()
        .query_async(conn)
        .await;
    if let Err(e) = result {
        tracing::warn!(key, error = %e, "dead mark not written to redis");
    }
}

/// A pipeline reply as `T`; a server error (WRONGTYPE) or a type mismatch as the error.
fn decode<T: redis::FromRedisValue>(
    reply: redis::RedisResult<redis::Value>,
) -> Result<T, kura_http::BoxError> {
    Ok(redis::from_redis_value(reply?)?)
}

impl State {
    /// Applies one LRANGE reply; true when the table must be rebuilt.
    fn apply_frontend(&mut self, host: &str, reply: redis::RedisResult<redis::Value>) -> bool {
        let items: Vec<String> = match decode::<Vec<String>>(reply) {
            Ok(items) => items,
            Err(e) => {
                let key = format!("{FRONTEND_PREFIX}{host}");
                let note = vec![format!("error: {e}")];
                if self.warned.get(&key) != Some(&note) {
                    tracing::warn!(key, error = %e, "redis key skipped (it must be a list)");
                    self.metrics.bad_entries.inc();
                    self.warned.insert(key, note);
                }
                return self.frontends.remove(host).is_some();
            }
        };
        if self.frontends.get(host).is_some_and(|e| e.items == items) {
            return false;
        }
        let (mut frontend, mut warnings) = schema::parse_frontend(host, &items);
        let key = format!("{FRONTEND_PREFIX}{host}");
        // A frontend may not send requests to kura's own listeners (its admin API, its peer
        // protocol, or itself in a loop).
        if let Some(f) = &mut frontend {
            let own = self.shared.own_addrs.get().cloned().unwrap_or_default();
            f.backends.retain(|b| {
                let mine = crate::state::is_own(b, &own);
                if mine {
                    warnings.push(format!(
                        "{key}: item {} skipped: it is one of kura's own listeners",
                        b.url
                    ));
                }
                !mine
            });
        }
        if !warnings.is_empty() && self.warned.get(&key) != Some(&items) {
            for w in &warnings {
                tracing::warn!("{w}");
                self.metrics.bad_entries.inc();
            }
            self.warned.insert(key, items.clone());
        }
        match frontend {
            None => self.frontends.remove(host).is_some(),
            Some(f) => {
                let entry = self.entry(host, f, items);
                self.frontends.insert(host.to_string(), entry);
                true
            }
        }
    }

    fn entry(&mut self, host: &str, f: Frontend, items: Vec<String>) -> Entry {
        let spec = PoolSpec {
            name: format!("redis:{host}"),
            backends: f.backends,
            ..self.cfg.pool_template.clone()
        };
        if self.tls.is_none() && spec.backends.iter().any(|b| b.tls) {
            self.tls = Pool::tls_for(&spec);
        }
        let template = &self.cfg.pool_template;
        let backends = spec
            .backends
            .iter()
            .map(|b| {
                self.backends
                    .entry(b.url.clone())
                    .or_insert_with(|| {
                        Arc::new(Backend::new(
                            b.clone(),
                            template,
                            self.tls.as_ref(),
                            self.shared.metrics.clone(),
                            self.shared.slots,
                        ))
                    })
                    .clone()
            })
            .collect();
        let pool = Pool::with_backends(spec, backends);
        let tx = self.dead_tx.clone();
        let owner = host.to_string();
        let _ = pool.on_dead.set(Box::new(move |index, ttl| {
            let mark = DeadMark {
                host: owner.clone(),
                index,
                ttl,
            };
            if tx.try_send(mark).is_err() {
                tracing::debug!("dead mark queue full: not shared through redis");
            }
        }));
        let name: Arc<str> = if f.id.is_empty() {
            host.into()
        } else {
            f.id.as_str().into()
        };
        let vhost = Arc::new(VHost {
            counters: Arc::new(VHostCounters::new(name.clone())),
            name,
            hosts: vec![f.pattern.clone()],
            rules: vec![Rule::proxy_all(pool.clone(), self.every_path.clone())],
        });
        Entry {
            items,
            pattern: f.pattern,
            vhost,
            pool,
        }
    }

    fn apply_dead(
        &mut self,
        host: &str,
        members: redis::RedisResult<redis::Value>,
        pttl: redis::RedisResult<redis::Value>,
    ) {
        let members: Vec<String> = match decode::<Vec<String>>(members) {
            Ok(m) => m,
            Err(e) => {
                let key = format!("{DEAD_PREFIX}{host}");
                if !self.warned.contains_key(&key) {
                    tracing::warn!(key, error = %e, "redis key skipped (it must be a set)");
                    self.metrics.bad_entries.inc();
                    self.warned.insert(key, Vec::new());
                }
                self.dead.remove(host);
                return;
            }
        };
        let (indexes, warnings) = schema::parse_dead(host, &members);
        for w in warnings {
            tracing::debug!("{w}");
        }
        let ttl: i64 = decode(pttl).unwrap_or(-2);
        if indexes.is_empty() || ttl == -2 {
            self.dead.remove(host);
            return;
        }
        // A set without a TTL (written by hand) keeps its backends out until removed; the
        // periodic resync re-applies it.
        let ttl_ms = if ttl < 0 {
            self.cfg.resync_interval.as_millis() as u64 * 2
        } else {
            ttl as u64
        };
        self.dead
            .insert(host.to_string(), (indexes, now_ms() + ttl_ms));
    }

    /// Puts every backend in or out of rotation as the dead sets say. A backend several
    /// frontends share is out while any of their sets marks it (a dead backend is dead for
    /// every host); one no set marks is back in.
    fn apply_marks(&self) {
        let now = now_ms();
        let mut until: HashMap<&str, u64> = HashMap::new();
        for (host, (indexes, end)) in &self.dead {
            let Some(entry) = self.frontends.get(host).filter(|_| *end > now) else {
                continue;
            };
            for b in indexes.iter().filter_map(|&i| entry.pool.backends.get(i)) {
                let t = until.entry(b.spec.url.as_str()).or_default();
                *t = (*t).max(*end);
            }
        }
        for (url, backend) in &self.backends {
            match until.get(url.as_str()) {
                Some(end) => backend.set_dead_for(Duration::from_millis(end - now)),
                None if backend.dead_for_ms() > 0 => backend.set_dead_for(Duration::ZERO),
                None => {}
            }
        }
    }

    /// Builds the host map from the entries and swaps it in; forgets backends no frontend
    /// names any more.
    fn publish(&mut self) {
        let mut map = HostMap::default();
        for entry in self.frontends.values() {
            map.insert(&entry.pattern, entry.vhost.clone());
        }
        self.metrics.frontends.set(self.frontends.len() as i64);
        self.shared.dynamic.store(Arc::new(map));
        self.backends.retain(|_, b| {
            let kept = Arc::strong_count(b) > 1;
            if !kept {
                b.forget_metrics();
            }
            kept
        });
        let names: HashSet<Arc<str>> = self
            .frontends
            .values()
            .map(|e| e.vhost.name.clone())
            .collect();
        let runtime = self.shared.runtime.load();
        for gone in self.names.difference(&names) {
            // A file vhost of the same name keeps its series.
            if !runtime.table.vhosts.iter().any(|v| v.name == *gone) {
                self.shared.metrics.forget_vhost(gone);
            }
        }
        self.names = names;
    }
}
