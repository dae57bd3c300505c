//! The command line. Quick mode (`kura serve --listen … --upstream …`) builds a
//! [`FileConfig`] in code and goes through the same validation as a file, so every flag is a
//! thin alias for a config field and later features only add fields.
//!
//! Every quick-mode flag can also come from a `KURA_*` environment variable, and Casserole's
//! command line and environment start the same caching mirror (see [`ServeArgs::quick`]):
//! a flag wins over `KURA_*`, which wins over Casserole's variable names.

use std::path::PathBuf;

use clap::builder::{BoolishValueParser, FalseyValueParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};
use kura_config::{
    FileAccessLog, FileAdmin, FileCache, FileCluster, FileConfig, FileListener, FilePool,
    FileRedis, FileRule, FileRuleCache, FileVHost, SizePrefixes, SizeValue,
};

#[derive(Debug, Parser)]
#[command(
    name = "kura",
    version,
    about = "An edge proxy that routes, caches, resizes images and shadows traffic",
    long_about = "An edge proxy that routes, caches, resizes images and shadows traffic.\n\n\
        kura serve --config FILE runs it from a TOML configuration (kura check --config FILE \
        says what is wrong in one, field by field); kura serve --listen ADDR --upstream URL runs \
        a caching proxy from flags alone. Each subcommand has its page: kura-serve(1), \
        kura-check(1), kura-routes(1), kura-import(1).\n\n\
        Signals to kura serve: SIGHUP reloads the configuration file, SIGUSR1 reopens the access \
        log, SIGUSR2 starts a new kura that takes the listening sockets over (with \
        --upgrade-socket), SIGTERM and SIGINT stop once in-flight requests finish \
        (server.shutdown_grace).",
    after_long_help = "Files: /etc/kura/kura.toml is the configuration the package's kura.service \
        runs with. Every configuration field and its default: configuration.md, and operations \
        (reloads, metrics, the cache, the cluster, shadow reports): operations.md, both in \
        /usr/share/doc/kura/ with the package and in docs/ of the source."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, from a config file or from flags (quick mode).
    // `server` is Casserole's name for it.
    #[command(alias = "server")]
    Serve(Box<ServeArgs>),
    /// Validate a config file and say what is wrong, field by field.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage the frontends in Redis (Hipache's schema) without redis-cli.
    Routes(RoutesArgs),
    /// Write a kura configuration from another proxy's configuration file.
    Import(ImportArgs),
    /// Print the manual page kura(1), or write it and one page per subcommand into a directory.
    Man {
        /// Write kura.1 and kura-SUBCOMMAND.1 for every subcommand into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script: `kura completions bash > /etc/bash_completion.d/kura`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// From Hipache's config.json: `kura import hipache config.json [--flavor X] [-o kura.toml]`.
    /// Fields kura does not carry are named on stderr and in the output's header.
    Hipache {
        /// Hipache's configuration file (config.json).
        config: PathBuf,
        /// Read config_X.json beside CONFIG instead, as Hipache's SETTINGS_FLAVOR=X does.
        #[arg(long, value_name = "X")]
        flavor: Option<String>,
        /// Write the TOML here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// Redis URL, redis://[:password@]host:port[/db] (default: `[redis] url` of --config).
    #[arg(long, env = "KURA_REDIS", global = true)]
    pub redis: Option<String>,
    /// Take the Redis URL from this config file's `[redis]` section.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub action: RoutesAction,
}

#[derive(Debug, Subcommand)]
pub enum RoutesAction {
    /// Add backends to a frontend (created if missing): `kura routes add www.example.com http://10.0.0.1:80`.
    Add {
        /// `example.com`, `*.example.com` or `*`.
        host: String,
        #[arg(required = true, value_name = "BACKEND_URL")]
        backends: Vec<String>,
        /// Identifier of a new frontend (default: the host).
        #[arg(long)]
        id: Option<String>,
    },
    /// Remove one backend from a frontend, or the whole frontend.
    Rm {
        host: String,
        backend: Option<String>,
    },
    /// List frontends (all, or one host's) with their backends and dead marks.
    List {
        host: Option<String>,
        /// One JSON object per frontend.
        #[arg(long)]
        json: bool,
    },
    /// Write the vhosts of a config file into Redis as frontends.
    Load { file: PathBuf },
}

/// `kura serve`. The relations between quick-mode flags (`--no-cache` against the cache
/// flags, `--etcd` against `--peer`, `--config` against all of them) are checked by
/// [`ServeArgs::quick`] and [`ServeArgs::refuse_quick_flags`] rather than by clap, because clap
/// counts a value from the environment as given: an exported `KURA_MAX_MEMORY` would make
/// `kura serve --config FILE` fail. Environment values that do not apply are ignored instead.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (reloaded on change and on SIGHUP). Quick-mode flags cannot be
    /// combined with it; quick-mode environment variables are then ignored.
    #[arg(long, short)]
    pub config: Option<PathBuf>,

    /// Quick mode: address to listen on: IP:port, name:port (resolved at start) or :port for
    /// every IPv4 address (repeatable or comma-separated; default 127.0.0.1:8080). Casserole's
    /// --address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "KURA_LISTEN",
        value_delimiter = ',',
        alias = "address"
    )]
    pub listen: Vec<String>,

    /// Quick mode: backend URL every request is proxied to (repeatable or comma-separated;
    /// balanced round robin). Casserole's --mirror-url; also read from UPSTREAM_SERVER.
    #[arg(long, value_name = "URL", env = "KURA_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<String>,

    /// Quick mode: routes from Redis in Hipache's schema, redis://[:password@]host:port[/db]
    /// (with --upstream, the upstreams serve hosts Redis does not know).
    #[arg(long, value_name = "URL", env = "KURA_REDIS")]
    pub redis: Option<String>,

    /// Quick mode: admin listener address (metrics, routes, backends).
    #[arg(long, value_name = "ADDR", env = "KURA_ADMIN")]
    pub admin: Option<String>,

    /// Quick mode: access log file, or `-` for standard output.
    #[arg(long, value_name = "PATH", env = "KURA_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// Runtime worker threads (default: one per core; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub workers: Option<usize>,

    /// Thread-per-core runtimes instead of one work-stealing runtime (for dedicated cores).
    #[arg(long)]
    pub per_core: bool,

    /// Quick mode: proxy only, no caching (quick mode caches by default).
    #[arg(long, env = "KURA_NO_CACHE", value_parser = FalseyValueParser::new())]
    pub no_cache: bool,

    /// Quick mode: disk cache directory (without it the cache is memory only). Casserole's
    /// --disk-cache-dir.
    #[arg(long, value_name = "DIR", env = "KURA_CACHE_DIR")]
    pub cache_dir: Option<String>,

    /// Quick mode: memory cache size (default 256MiB): bytes, or K/M/G/T (powers of 1000,
    /// e.g. 100M, 1GB, 1g) or KiB/MiB/GiB/TiB (powers of 1024, e.g. 512MiB, 512mib). Casserole's
    /// --max-memory-usage and MAX_MEMORY count every prefix in powers of 1024.
    #[arg(long, value_name = "SIZE", env = "KURA_MAX_MEMORY")]
    pub max_memory: Option<String>,

    /// Quick mode: disk usage that starts a cleaning (default 1GiB; units as --max-memory).
    /// Casserole's --max-disk-usage and MAX_DISK count in powers of 1024.
    #[arg(long, value_name = "SIZE", env = "KURA_MAX_DISK")]
    pub max_disk: Option<String>,

    /// Quick mode: disk usage a cleaning goes down to (default 80% of --max-disk; units as
    /// --max-memory). Casserole's --cleaned-disk-usage counts in powers of 1024.
    #[arg(long, value_name = "SIZE", env = "KURA_CLEANED_DISK")]
    pub cleaned_disk: Option<String>,

    /// Quick mode: responses fresh for less than this are not stored (default 60s, as
    /// Casserole; 0 stores whatever is fresh).
    #[arg(long, value_name = "DURATION", env = "KURA_MIN_TTL")]
    pub min_ttl: Option<String>,

    /// Quick mode, cluster: this node's peer listener and identity, IP:port or name:port
    /// (Casserole's http://host:port is accepted).
    #[arg(long, value_name = "ADDR", env = "KURA_PEERING_ADDRESS")]
    pub peering_address: Option<String>,

    /// Quick mode, cluster: an etcd endpoint where members register (repeatable or
    /// comma-separated; also read from ETCD).
    #[arg(long, value_name = "URL", env = "KURA_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,

    /// Quick mode, cluster: a static member's peer address (repeatable or comma-separated;
    /// instead of --etcd).
    #[arg(long, value_name = "ADDR", env = "KURA_PEER", value_delimiter = ',')]
    pub peer: Vec<String>,

    /// Quick mode, cluster: the shared secret of peer requests (at least 16 characters).
    #[arg(
        long,
        value_name = "SECRET",
        env = "KURA_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,

    // Casserole's flags whose meaning differs from kura's own, translated by `quick`. Hidden:
    // docs/configuration.md and the README list them.
    /// Casserole: the URL root to mirror (an upstream; Casserole's defaults apply).
    #[arg(long, value_name = "URL", hide = true)]
    pub mirror_url: Option<String>,

    /// Casserole: memory cache size, every prefix a power of 1024 (100M = 100MiB).
    #[arg(long, value_name = "SIZE", hide = true, value_parser = casserole_size)]
    pub max_memory_usage: Option<u64>,

    /// Casserole: disk usage that starts a cleaning, every prefix a power of 1024.
    #[arg(long, value_name = "SIZE", hide = true, value_parser = casserole_size)]
    pub max_disk_usage: Option<u64>,

    /// Casserole: disk usage a cleaning goes down to, every prefix a power of 1024.
    #[arg(long, value_name = "SIZE", hide = true, value_parser = casserole_size)]
    pub cleaned_disk_usage: Option<u64>,

    /// Casserole: the disk cache directory (default ./data when Casserole's defaults apply).
    #[arg(long, value_name = "DIR", hide = true)]
    pub disk_cache_dir: Option<String>,

    /// Casserole: `--disk-cache-enabled` or `--disk-cache-enabled=true|false` (default true:
    /// with Casserole's flags the disk tier is on, in ./data unless a directory is given).
    #[arg(
        long,
        value_name = "BOOL",
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub disk_cache_enabled: Option<bool>,

    /// Casserole: path regexes (comma-separated or repeated) proxied without caching.
    #[arg(long, value_name = "REGEX", hide = true, value_delimiter = ',')]
    pub passthrough: Vec<String>,

    #[command(flatten)]
    pub upgrade: crate::upgrade::UpgradeArgs,
}

/// A size as Casserole's flags and environment wrote it (every prefix a power of 1024).
fn casserole_size(text: &str) -> Result<u64, String> {
    kura_config::parse_size_with(text, SizePrefixes::Binary).map_err(|e| e.to_string())
}

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

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
