//! Quick mode: the serve flags, their `KURA_*` variables and Casserole's spellings merged by
//! precedence (a flag, then `KURA_*`, then Casserole's name) into [`Quick`], and the
//! [`FileConfig`] it stands for. Split from the clap definitions in `cli.rs`.

use super::*;

/// Default listen address of quick mode.
pub const QUICK_LISTEN: &str = "127.0.0.1:8080";
/// Quick mode's `min_ttl` unless `--min-ttl` says otherwise: Casserole never caches an object
/// that expires in less than 60 seconds.
pub const QUICK_MIN_TTL: &str = "60s";
/// Casserole's memory cache size (its `100M`, a power of 1024).
pub const CASSEROLE_MEMORY: u64 = 100 * 1024 * 1024;
/// Casserole's disk cache directory (`--disk-cache-dir`'s default).
pub const CASSEROLE_DISK_DIR: &str = "./data";

/// The quick-mode arguments (clap ids), which `--config` excludes.
const QUICK_IDS: &[&str] = &[
    "listen",
    "upstream",
    "redis",
    "admin",
    "access_log",
    "no_cache",
    "cache_dir",
    "max_memory",
    "max_disk",
    "cleaned_disk",
    "min_ttl",
    "peering_address",
    "etcd",
    "peer",
    "cluster_secret",
    "mirror_url",
    "max_memory_usage",
    "max_disk_usage",
    "cleaned_disk_usage",
    "disk_cache_dir",
    "disk_cache_enabled",
    "passthrough",
];

/// Where a setting came from, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// Casserole's environment variable names (`UPSTREAM_SERVER`, `ETCD`, `MAX_MEMORY`, `MAX_DISK`).
    CasseroleEnv,
    /// A `KURA_*` environment variable.
    Env,
    /// The command line.
    Flag,
}

/// One setting's value, with where it came from and that source's name for messages.
#[derive(Debug, Clone)]
struct Given<T> {
    value: T,
    rank: Rank,
    name: String,
}

/// A size before it is read: kura's spelling (checked by validation, naming the field) or
/// Casserole's (powers of 1024).
#[derive(Debug, Clone)]
enum Size {
    Kura(String),
    Bytes(u64),
    Casserole(String),
}

impl Given<Size> {
    fn read(self) -> Result<SizeValue, String> {
        match self.value {
            Size::Kura(t) => Ok(SizeValue::Text(t)),
            Size::Bytes(n) => Ok(SizeValue::Bytes(n)),
            Size::Casserole(t) => casserole_size(&t)
                .map(SizeValue::Bytes)
                .map_err(|e| format!("{}: {e}", self.name)),
        }
    }
}

fn rank(m: &ArgMatches, id: &str) -> Option<Rank> {
    match m.value_source(id)? {
        ValueSource::CommandLine => Some(Rank::Flag),
        ValueSource::EnvVariable => Some(Rank::Env),
        _ => None,
    }
}

/// `value` tagged with where clap found argument `id`.
fn given<T>(m: &ArgMatches, id: &str, value: Option<T>) -> Option<Given<T>> {
    let rank = rank(m, id)?;
    let name = match rank {
        Rank::Env => format!("KURA_{}", id.to_ascii_uppercase()),
        _ => format!("--{}", id.replace('_', "-")),
    };
    Some(Given {
        value: value?,
        rank,
        name,
    })
}

/// A Casserole environment variable, when set and not empty.
fn casserole_env(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Given<String>> {
    let value = env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())?;
    Some(Given {
        value,
        rank: Rank::CasseroleEnv,
        name: name.to_string(),
    })
}

/// The strongest of several spellings of one setting; two on the command line are an error.
fn strongest<T>(what: &str, candidates: Vec<Option<Given<T>>>) -> Result<Option<Given<T>>, String> {
    let mut best: Option<Given<T>> = None;
    for c in candidates.into_iter().flatten() {
        match &best {
            Some(b) if b.rank == Rank::Flag && c.rank == Rank::Flag => {
                return Err(format!(
                    "{} and {} both set {what}; give one",
                    b.name, c.name
                ));
            }
            Some(b) if b.rank >= c.rank => {}
            _ => best = Some(c),
        }
    }
    Ok(best)
}

/// The disk tier of quick mode.
#[derive(Debug, Clone, PartialEq)]
pub struct QuickDisk {
    pub dir: String,
    pub max: Option<SizeValue>,
    pub cleaned: Option<SizeValue>,
}

/// Quick mode's settings once the command line, `KURA_*` variables and Casserole's variables
/// are merged; [`Quick::config`] is the configuration they stand for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quick {
    pub listen: Vec<String>,
    pub upstream: Vec<String>,
    pub redis: Option<String>,
    pub admin: Option<String>,
    pub access_log: Option<String>,
    /// Caching (not `--no-cache`); only with upstreams.
    pub cache: bool,
    pub memory: Option<SizeValue>,
    pub disk: Option<QuickDisk>,
    pub min_ttl: String,
    /// Path regexes proxied without caching (Casserole's `--passthrough`).
    pub passthrough: Vec<String>,
    pub cluster: Option<FileCluster>,
    /// Casserole's spellings were used, so Casserole's defaults apply.
    pub casserole: bool,
}

impl ServeArgs {
    /// With `--config`: quick-mode flags on the command line are an error; their environment
    /// variables are ignored (they only fill in quick mode).
    pub fn refuse_quick_flags(&self, m: &ArgMatches) -> Result<(), String> {
        let given: Vec<String> = QUICK_IDS
            .iter()
            .filter(|id| rank(m, id) == Some(Rank::Flag))
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect();
        if given.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "--config cannot be used with quick-mode flags ({}): write them in the file",
                given.join(", ")
            ))
        }
    }

    /// Quick mode's settings from the command line (`m` is what clap matched for `serve`),
    /// the `KURA_*` variables clap read, and Casserole's variables read through `env`.
    ///
    /// Precedence: a flag (kura's or Casserole's spelling) over `KURA_*` over Casserole's
    /// `UPSTREAM_SERVER`, `ETCD`, `MAX_MEMORY`, `MAX_DISK`. Two flags for one setting, or
    /// flags that exclude each other (`--no-cache` and a cache flag), are an error; an
    /// environment value that a stronger source excludes, or that does not apply (cache sizes
    /// without upstreams or with `--no-cache`, disk sizes without a disk tier, cluster values
    /// without a peering address), is ignored.
    ///
    /// Casserole's defaults apply when its spellings are used (`--mirror-url` or
    /// `UPSTREAM_SERVER` as the upstream, or any of `--max-memory-usage`, `--max-disk-usage`,
    /// `--cleaned-disk-usage`, `--disk-cache-dir`, `--disk-cache-enabled`, `--passthrough`): a
    /// 100 MiB memory tier, and a disk tier in `./data` unless `--disk-cache-enabled=false`.
    pub fn quick(
        &self,
        m: &ArgMatches,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Quick, String> {
        let flag = |id: &str| rank(m, id) == Some(Rank::Flag);
        let mut casserole = self.mirror_url.is_some()
            || self.max_memory_usage.is_some()
            || self.max_disk_usage.is_some()
            || self.cleaned_disk_usage.is_some()
            || self.disk_cache_dir.is_some()
            || self.disk_cache_enabled.is_some()
            || !self.passthrough.is_empty();

        // Upstreams: the command line's, else KURA_UPSTREAM, else UPSTREAM_SERVER.
        let mut upstream = Vec::new();
        if flag("upstream") || self.mirror_url.is_some() {
            if flag("upstream") {
                upstream.extend(self.upstream.iter().cloned());
            }
            upstream.extend(self.mirror_url.iter().cloned());
        } else if !self.upstream.is_empty() {
            upstream = self.upstream.clone();
        } else if let Some(u) = casserole_env(env, "UPSTREAM_SERVER") {
            upstream.push(u.value);
            casserole = true;
        }
        if upstream.is_empty() && self.redis.is_none() {
            return Err(
                "give --config FILE, or --upstream URL and/or --redis URL for quick mode".into(),
            );
        }

        // The cache's settings, each from its strongest source.
        let size = |id: &str, v: &Option<String>| given(m, id, v.clone().map(Size::Kura));
        let bytes = |id: &str, v: Option<u64>| given(m, id, v.map(Size::Bytes));
        let from_env = |name: &str| {
            casserole_env(env, name).map(|g| Given {
                value: Size::Casserole(g.value),
                rank: g.rank,
                name: g.name,
            })
        };
        let mut memory = strongest(
            "the memory cache size",
            vec![
                size("max_memory", &self.max_memory),
                bytes("max_memory_usage", self.max_memory_usage),
                from_env("MAX_MEMORY"),
            ],
        )?;
        let mut dir = strongest(
            "the disk cache directory",
            vec![
                given(m, "cache_dir", self.cache_dir.clone()),
                given(m, "disk_cache_dir", self.disk_cache_dir.clone()),
            ],
        )?;
        let mut max_disk = strongest(
            "the disk usage that starts a cleaning",
            vec![
                size("max_disk", &self.max_disk),
                bytes("max_disk_usage", self.max_disk_usage),
                from_env("MAX_DISK"),
            ],
        )?;
        let mut cleaned = strongest(
            "the disk usage a cleaning goes down to",
            vec![
                size("cleaned_disk", &self.cleaned_disk),
                bytes("cleaned_disk_usage", self.cleaned_disk_usage),
            ],
        )?;
        let mut min_ttl = given(m, "min_ttl", self.min_ttl.clone());
        let mut peering = given(m, "peering_address", self.peering_address.clone());
        let enabled = given(m, "disk_cache_enabled", self.disk_cache_enabled);
        let passthrough = given(
            m,
            "passthrough",
            (!self.passthrough.is_empty()).then(|| self.passthrough.clone()),
        );

        // `--no-cache` against every cache setting: the stronger source wins.
        let no_cache = given(m, "no_cache", self.no_cache.then_some(()));
        let settings: Vec<(Rank, String)> = [
            memory.as_ref().map(|g| (g.rank, g.name.clone())),
            dir.as_ref().map(|g| (g.rank, g.name.clone())),
            max_disk.as_ref().map(|g| (g.rank, g.name.clone())),
            cleaned.as_ref().map(|g| (g.rank, g.name.clone())),
            min_ttl.as_ref().map(|g| (g.rank, g.name.clone())),
            peering.as_ref().map(|g| (g.rank, g.name.clone())),
            enabled
                .as_ref()
                .filter(|g| g.value)
                .map(|g| (g.rank, g.name.clone())),
            passthrough.as_ref().map(|g| (g.rank, g.name.clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut cache = !upstream.is_empty();
        if let Some(nc) = &no_cache {
            let top = settings.iter().max_by_key(|(r, _)| *r);
            match top {
                Some((r, name)) if *r == nc.rank => {
                    return Err(format!("{} cannot be used with {name}", nc.name));
                }
                Some((r, _)) if *r > nc.rank => {}
                _ => cache = false,
            }
        }
        if !cache {
            // No cache: its settings do not apply. Given as flags they are an error.
            let why = if upstream.is_empty() {
                "needs --upstream (quick mode caches the upstreams' answers)"
            } else {
                "cannot be used with --no-cache"
            };
            if no_cache.is_some() && upstream.is_empty() && flag("no_cache") {
                return Err(format!("--no-cache {why}"));
            }
            if let Some((_, name)) = settings.iter().find(|(r, _)| *r == Rank::Flag) {
                return Err(format!("{name} {why}"));
            }
            (memory, dir, max_disk, cleaned, min_ttl, peering) =
                (None, None, None, None, None, None);
        }

        // The disk tier: a directory, or Casserole's ./data; never with --disk-cache-enabled=false.
        let disk_on = cache
            && match enabled.as_ref().map(|g| g.value) {
                Some(false) => false,
                Some(true) => true,
                None => dir.is_some() || casserole,
            };
        let disk = if disk_on {
            Some(QuickDisk {
                dir: dir
                    .map(|d| d.value)
                    .unwrap_or_else(|| CASSEROLE_DISK_DIR.to_string()),
                max: max_disk.map(Given::read).transpose()?,
                cleaned: cleaned.map(Given::read).transpose()?,
            })
        } else {
            let disabled = enabled.as_ref().is_some_and(|g| !g.value);
            for g in [&max_disk, &cleaned].into_iter().flatten() {
                if g.rank == Rank::Flag && !disabled {
                    return Err(format!("{} needs --cache-dir (a disk tier)", g.name));
                }
            }
            None
        };
        let memory = match memory {
            Some(g) => Some(g.read()?),
            None if cache && casserole => Some(SizeValue::Bytes(CASSEROLE_MEMORY)),
            None => None,
        };

        // The cluster.
        let etcd = strongest(
            "the etcd endpoints",
            vec![
                given(
                    m,
                    "etcd",
                    (!self.etcd.is_empty()).then(|| self.etcd.clone()),
                ),
                casserole_env(env, "ETCD").map(|g| Given {
                    value: g.value.split(',').map(|e| e.trim().to_string()).collect(),
                    rank: g.rank,
                    name: g.name,
                }),
            ],
        )?;
        let peer = given(
            m,
            "peer",
            (!self.peer.is_empty()).then(|| self.peer.clone()),
        );
        let secret = given(m, "cluster_secret", self.cluster_secret.clone());
        let cluster = match peering {
            None => {
                for g in [
                    etcd.as_ref().map(|g| (g.rank, &g.name)),
                    peer.as_ref().map(|g| (g.rank, &g.name)),
                    secret.as_ref().map(|g| (g.rank, &g.name)),
                ]
                .into_iter()
                .flatten()
                {
                    if g.0 == Rank::Flag {
                        return Err(format!("{} needs --peering-address", g.1));
                    }
                }
                None
            }
            Some(p) => {
                let (etcd, peer) = match (etcd, peer) {
                    (Some(e), Some(p)) if e.rank == p.rank => {
                        return Err(format!("{} cannot be used with {}", e.name, p.name));
                    }
                    (Some(e), Some(p)) if e.rank > p.rank => (Some(e), None),
                    (Some(_), Some(p)) => (None, Some(p)),
                    other => other,
                };
                Some(FileCluster {
                    peering_address: peering_address(&p.value)
                        .map_err(|e| format!("{}: {e}", p.name))?,
                    peers: peer.map(|g| g.value),
                    etcd: etcd.map(|g| g.value),
                    secret: secret.map(|g| g.value).unwrap_or_default(),
                    ..Default::default()
                })
            }
        };

        Ok(Quick {
            listen: if self.listen.is_empty() {
                vec![QUICK_LISTEN.to_string()]
            } else {
                self.listen.clone()
            },
            upstream,
            redis: self.redis.clone(),
            admin: self.admin.clone(),
            access_log: self.access_log.clone(),
            cache,
            memory,
            disk,
            min_ttl: min_ttl
                .map(|g| g.value)
                .unwrap_or_else(|| QUICK_MIN_TTL.to_string()),
            passthrough: if cache {
                passthrough.map(|g| g.value).unwrap_or_default()
            } else {
                Vec::new()
            },
            cluster,
            casserole,
        })
    }
}

/// A peering address as written: `IP:port` or `name:port`, or Casserole's `http://host:port`
/// (its peers spoke plain HTTP there; kura's peer listener is at `host:port`).
fn peering_address(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.starts_with("https://") {
        return Err(format!(
            "{t:?}: peer TLS is set in a config file ([cluster] tls_cert, tls_key, tls_ca); write host:port here"
        ));
    }
    let t = t.strip_prefix("http://").unwrap_or(t);
    let t = t.strip_suffix('/').unwrap_or(t);
    if t.contains('/') {
        return Err(format!(
            "{text:?}: write host:port (a peering address has no path)"
        ));
    }
    Ok(t.to_string())
}

impl Quick {
    /// The configuration quick mode stands for: one pool of the upstreams, every host and
    /// path, cached unless `--no-cache` (a caching mirror, as Casserole).
    pub fn config(&self) -> FileConfig {
        let mut file = FileConfig {
            listeners: self
                .listen
                .iter()
                .map(|address| FileListener {
                    address: address.clone(),
                    ..Default::default()
                })
                .collect(),
            admin: self.admin.clone().map(|address| FileAdmin {
                address,
                ..Default::default()
            }),
            access_log: self.access_log.clone().map(|path| FileAccessLog {
                path,
                ..Default::default()
            }),
            redis: self.redis.clone().map(|url| FileRedis {
                url,
                ..Default::default()
            }),
            ..Default::default()
        };
        if self.upstream.is_empty() {
            // Redis alone: every route comes from it.
            return file;
        }
        file.pools.insert(
            "default".into(),
            FilePool {
                backends: self.upstream.clone(),
                ..Default::default()
            },
        );
        // Casserole's --passthrough: paths matching these are proxied, never cached.
        let rules = if self.passthrough.is_empty() {
            Vec::new()
        } else {
            vec![FileRule {
                path: Some(self.passthrough.join("|")),
                action: Some("proxy".into()),
                pool: "default".into(),
                ..Default::default()
            }]
        };
        file.vhosts.push(FileVHost {
            name: Some("default".into()),
            hosts: vec!["*".into()],
            pool: Some("default".into()),
            action: self.cache.then(|| "cache".to_string()),
            cache: self.cache.then(|| FileRuleCache {
                min_ttl: Some(self.min_ttl.clone()),
                ..Default::default()
            }),
            rules,
            ..Default::default()
        });
        if self.cache {
            let disk = self.disk.as_ref();
            file.cache = Some(FileCache {
                memory: self.memory.clone(),
                dir: disk.map(|d| d.dir.clone()),
                max_disk: disk.and_then(|d| d.max.clone()),
                cleaned_disk: disk.and_then(|d| d.cleaned.clone()),
                ..Default::default()
            });
        }
        file.cluster = self.cluster.clone();
        file
    }
}
