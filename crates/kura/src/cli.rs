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

mod quick;

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
