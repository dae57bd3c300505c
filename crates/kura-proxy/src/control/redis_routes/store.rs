//! Route management in Redis for `kura routes`: add, remove and list frontends, and load a
//! file configuration (Hipache's "configuration adapter"). Every write is checked first (host
//! pattern, backend URLs), done in one MULTI, and announced on the `kura:routes` channel so
//! kura instances see it at once even where keyspace notifications are off.

use std::time::Duration;

use kura_config::{Config, RuleAction, parse_backend, parse_host_pattern};
use redis::aio::MultiplexedConnection;

use super::schema::{self, CHANNEL, DEAD_PREFIX, FRONTEND_PREFIX};

/// Why a `kura routes` command failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Redis URL does not parse.
    #[error("redis url {url:?}: {cause}")]
    Url {
        /// The URL given.
        url: String,
        /// The parser's error.
        cause: redis::RedisError,
    },
    /// No connection within the timeout.
    #[error("cannot connect to redis: {0}")]
    Connect(redis::RedisError),
    /// A command failed.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// The host is not a host pattern.
    #[error("host {host:?}: {reason}")]
    Host {
        /// The host given.
        host: String,
        /// Why it was refused.
        reason: String,
    },
    /// A backend URL was refused.
    #[error("backend {0}")]
    Backend(String),
}

/// One frontend as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The host pattern, as the key names it.
    pub host: String,
    /// The application's identifier (the list's first item).
    pub id: String,
    /// The backend URLs, as stored.
    pub backends: Vec<String>,
    /// Indexes currently marked dead.
    pub dead: Vec<usize>,
}

/// A connection to the Redis that holds Hipache's frontends, for `kura routes`: lists,
/// adds, removes and loads frontends, and tells running kura servers what changed.
pub struct Store {
    conn: MultiplexedConnection,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects to the Redis at `url` (`redis://host:port/db`), within a few seconds.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let client = redis::Client::open(url).map_err(|source| StoreError::Url {
            url: url.to_string(),
            cause: source,
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Store { conn })
    }

    /// Adds backends to `host`'s frontend, creating it with identifier `id` (default: the host)
    /// if missing. Backends already present are not added twice. Returns the backends added.
    pub async fn add(
        &mut self,
        host: &str,
        backends: &[String],
        id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let host = checked_host(host)?;
        for b in backends {
            parse_backend(b).map_err(StoreError::Backend)?;
        }
        let key = format!("{FRONTEND_PREFIX}{host}");
        let items: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
            .await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if items.is_empty() {
            pipe.cmd("RPUSH")
                .arg(&key)
                .arg(id.unwrap_or(&host))
                .ignore();
        }
        let mut added = Vec::new();
        for b in backends {
            if !items.iter().skip(1).any(|i| i == b) && !added.contains(b) {
                pipe.cmd("RPUSH").arg(&key).arg(b).ignore();
                added.push(b.clone());
            }
        }
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(&key).ignore();
        self.run(&pipe).await?;
        Ok(added)
    }

    /// Removes `backend` from `host`'s frontend, or the whole frontend when `backend` is
    /// `None`. The dead set goes too: its indexes would point at the wrong backends. Returns
    /// whether anything was removed.
    pub async fn remove(&mut self, host: &str, backend: Option<&str>) -> Result<bool, StoreError> {
        let host = checked_host(host)?;
        let key = format!("{FRONTEND_PREFIX}{host}");
        let dead = format!("{DEAD_PREFIX}{host}");
        let removed: i64 = match backend {
            None => self.query(redis::cmd("DEL").arg(&key)).await?,
            Some(b) => {
                let items: Vec<String> = self
                    .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
                    .await?;
                let n = items.iter().skip(1).filter(|i| *i == b).count() as i64;
                if n > 0 {
                    // LREM from the tail so an identifier equal to the URL is kept.
                    let _: i64 = self
                        .query(redis::cmd("LREM").arg(&key).arg(-n).arg(b))
                        .await?;
                }
                n
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&dead)
            .ignore()
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(&key)
            .ignore();
        self.run(&pipe).await?;
        Ok(removed > 0)
    }

    /// Every frontend (or only `host`'s), sorted by host.
    pub async fn list(&mut self, host: Option<&str>) -> Result<Vec<Listed>, StoreError> {
        let keys: Vec<String> = match host {
            Some(h) => vec![format!("{FRONTEND_PREFIX}{}", checked_host(h)?)],
            None => {
                let mut keys = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, batch): (u64, Vec<String>) = self
                        .query(
                            redis::cmd("SCAN")
                                .arg(cursor)
                                .arg("MATCH")
                                .arg(format!("{FRONTEND_PREFIX}*"))
                                .arg("COUNT")
                                .arg(1000),
                        )
                        .await?;
                    keys.extend(batch);
                    if next == 0 {
                        break keys;
                    }
                    cursor = next;
                }
            }
        };
        let mut out = Vec::new();
        for key in keys {
            let Some(schema::KeyKind::Frontend(h)) = schema::classify(&key) else {
                continue;
            };
            let items: Vec<String> = match self
                .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(key, error = %e, "skipped");
                    continue;
                }
            };
            let Some((id, backends)) = items.split_first() else {
                continue;
            };
            let members: Vec<String> = self
                .query(redis::cmd("SMEMBERS").arg(format!("{DEAD_PREFIX}{h}")))
                .await
                .unwrap_or_default();
            let (mut dead, _) = schema::parse_dead(&h, &members);
            dead.sort_unstable();
            out.push(Listed {
                host: h,
                id: id.clone(),
                backends: backends.to_vec(),
                dead,
            });
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }

    /// Writes the vhosts of `config` as frontends (each host pattern a key, the vhost name its
    /// identifier, its pool's backends the rest), replacing keys of the same hosts. A vhost
    /// whose rules are more than one proxied pool cannot be said in Hipache's schema: it is
    /// skipped and named in the returned notes.
    pub async fn load(&mut self, config: &Config) -> Result<Vec<String>, StoreError> {
        let mut notes = Vec::new();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut keys = Vec::new();
        for v in &config.routes.vhosts {
            let pool = match v.rules.as_slice() {
                [r] if matches!(r.action, RuleAction::Proxy { shadow: None })
                    && r.rewrite.is_none()
                    && r.request_headers.is_empty()
                    && r.response_headers.is_empty()
                    && r.path.is_match("/")
                    && r.path.is_match("/any/path") =>
                {
                    &r.pool
                }
                _ => {
                    notes.push(format!(
                        "vhost {:?} skipped: its rules (paths, rewrites, caching or header edits) have no equivalent in a frontend list",
                        v.name
                    ));
                    continue;
                }
            };
            let Some(spec) = config.routes.pools.get(pool) else {
                continue;
            };
            for h in &v.hosts {
                let key = format!("{FRONTEND_PREFIX}{h}");
                pipe.cmd("DEL").arg(&key).ignore();
                pipe.cmd("DEL").arg(format!("{DEAD_PREFIX}{h}")).ignore();
                pipe.cmd("RPUSH").arg(&key).arg(&v.name);
                for b in &spec.backends {
                    pipe.arg(&b.url);
                }
                pipe.ignore();
                keys.push(key);
            }
            notes.push(format!(
                "vhost {:?}: {} host(s) → {} backend(s)",
                v.name,
                v.hosts.len(),
                spec.backends.len()
            ));
        }
        for key in &keys {
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(key).ignore();
        }
        if !keys.is_empty() {
            self.run(&pipe).await?;
        }
        Ok(notes)
    }

    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        cmd.query_async(&mut self.conn)
            .await
            .map_err(StoreError::Redis)
    }

    async fn run(&mut self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(StoreError::Redis)
    }
}

/// The host as a key part: lowercase, and a valid pattern.
fn checked_host(host: &str) -> Result<String, StoreError> {
    let p = parse_host_pattern(host).map_err(|reason| StoreError::Host {
        host: host.to_string(),
        reason,
    })?;
    Ok(p.to_string())
}
