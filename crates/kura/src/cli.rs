//! The command line. Quick mode (`kura serve --listen … --upstream …`) builds a
//! [`FileConfig`] in code and goes through the same validation as a file, so every flag is a
//! thin alias for a config field and later features only add fields.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kura_config::{
    FileAccessLog, FileAdmin, FileCache, FileCluster, FileConfig, FileListener, FilePool,
    FileRedis, FileRuleCache, FileVHost, SizeValue,
};

#[derive(Debug, Parser)]
#[command(
    name = "kura",
    version,
    about = "An edge proxy that routes, caches, resizes images and shadows traffic"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, from a config file or from flags (quick mode).
    Serve(Box<ServeArgs>),
    /// Validate a config file and say what is wrong, field by field.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage the frontends in Redis (Hipache's schema) without redis-cli.
    Routes(RoutesArgs),
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (reloaded on change and on SIGHUP).
    #[arg(long, short, conflicts_with_all = ["upstream", "listen", "redis"])]
    pub config: Option<PathBuf>,

    /// Quick mode: address to listen on (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Quick mode: backend URL every request is proxied to (repeatable; balanced round robin).
    #[arg(long, value_name = "URL")]
    pub upstream: Vec<String>,

    /// Quick mode: routes from Redis in Hipache's schema, redis://[:password@]host:port[/db]
    /// (with --upstream, the upstreams serve hosts Redis does not know).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub redis: Option<String>,

    /// Quick mode: admin listener address (metrics, routes, backends).
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    pub admin: Option<String>,

    /// Quick mode: access log file, or `-` for standard output.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub access_log: Option<String>,

    /// Runtime worker threads (default: one per core; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub workers: Option<usize>,

    /// Thread-per-core runtimes instead of one work-stealing runtime (for dedicated cores).
    #[arg(long)]
    pub per_core: bool,

    /// Quick mode: proxy only, no caching (quick mode caches by default).
    #[arg(long, requires = "upstream", conflicts_with_all = ["cache_dir", "max_memory", "max_disk", "cleaned_disk", "min_ttl"])]
    pub no_cache: bool,

    /// Quick mode: disk cache directory (without it the cache is memory only).
    #[arg(long, value_name = "DIR", requires = "upstream")]
    pub cache_dir: Option<String>,

    /// Quick mode: memory cache size (e.g. 100M, 1GiB).
    #[arg(long, value_name = "SIZE", requires = "upstream")]
    pub max_memory: Option<String>,

    /// Quick mode: disk usage that starts a cleaning (default 1GiB).
    #[arg(long, value_name = "SIZE", requires = "cache_dir")]
    pub max_disk: Option<String>,

    /// Quick mode: disk usage a cleaning goes down to (default 80% of --max-disk).
    #[arg(long, value_name = "SIZE", requires = "cache_dir")]
    pub cleaned_disk: Option<String>,

    /// Quick mode: responses fresh for less than this are not stored (e.g. 60s).
    #[arg(long, value_name = "DURATION", requires = "upstream")]
    pub min_ttl: Option<String>,

    /// Quick mode, cluster: this node's peer listener and identity (IP:port).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "upstream",
        conflicts_with = "no_cache"
    )]
    pub peering_address: Option<String>,

    /// Quick mode, cluster: an etcd endpoint where members register (repeatable).
    #[arg(long, value_name = "URL", requires = "peering_address")]
    pub etcd: Vec<String>,

    /// Quick mode, cluster: a static member's peer address (repeatable; instead of --etcd).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "peering_address",
        conflicts_with = "etcd"
    )]
    pub peer: Vec<String>,

    /// Quick mode, cluster: the shared secret of peer requests (at least 16 characters).
    #[arg(
        long,
        value_name = "SECRET",
        env = "KURA_CLUSTER_SECRET",
        requires = "peering_address",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
}

/// Default listen address of quick mode.
pub const QUICK_LISTEN: &str = "127.0.0.1:8080";

impl ServeArgs {
    /// The configuration quick mode stands for: one pool of the upstreams, every host and
    /// path, cached unless `--no-cache` (a caching mirror, as Casserole).
    pub fn quick_config(&self) -> FileConfig {
        let listen = if self.listen.is_empty() {
            vec![QUICK_LISTEN.to_string()]
        } else {
            self.listen.clone()
        };
        let mut file = FileConfig {
            listeners: listen
                .into_iter()
                .map(|address| FileListener {
                    address,
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
        let cache = !self.no_cache;
        file.vhosts.push(FileVHost {
            name: Some("default".into()),
            hosts: vec!["*".into()],
            pool: Some("default".into()),
            action: cache.then(|| "cache".to_string()),
            cache: (cache && self.min_ttl.is_some()).then(|| FileRuleCache {
                min_ttl: self.min_ttl.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        if cache {
            let size = |v: &Option<String>| v.clone().map(SizeValue::Text);
            file.cache = Some(FileCache {
                memory: size(&self.max_memory),
                dir: self.cache_dir.clone(),
                max_disk: size(&self.max_disk),
                cleaned_disk: size(&self.cleaned_disk),
                ..Default::default()
            });
        }
        if let Some(addr) = &self.peering_address {
            file.cluster = Some(FileCluster {
                peering_address: addr.clone(),
                peers: (!self.peer.is_empty()).then(|| self.peer.clone()),
                etcd: (!self.etcd.is_empty()).then(|| self.etcd.clone()),
                secret: self.cluster_secret.clone().unwrap_or_default(),
                ..Default::default()
            });
        }
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_mode_is_a_valid_config() {
        let cli = Cli::parse_from([
            "kura",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9000",
            "--upstream",
            "http://127.0.0.1:9001",
            "--admin",
            "127.0.0.1:0",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        let cfg = kura_config::validate(&args.quick_config(), std::path::Path::new(".")).unwrap();
        assert_eq!(cfg.routes.pools["default"].backends.len(), 2);
        assert!(cfg.admin.is_some());
        assert_eq!(
            cfg.routes.vhosts[0].hosts,
            vec![kura_config::HostPattern::Any]
        );
        assert_eq!(
            cfg.routes.vhosts[0].rules[0].action.kind(),
            kura_config::Action::Cache
        );
    }

    #[test]
    fn cluster_flags_become_cluster_fields() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["kura", "serve", "--upstream", "http://127.0.0.1:9000"];
            argv.extend_from_slice(extra);
            let Command::Serve(args) = Cli::parse_from(argv).command else {
                panic!("serve expected")
            };
            kura_config::validate(&args.quick_config(), std::path::Path::new("."))
        };
        let cfg = parse(&[
            "--peering-address",
            "127.0.0.2:7000",
            "--etcd",
            "http://127.0.0.1:2379",
            "--cluster-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(c.peering_address.to_string(), "127.0.0.2:7000");
        assert!(matches!(c.members, kura_config::MemberSource::Etcd { .. }));
        let cfg = parse(&[
            "--peering-address",
            "127.0.0.2:7000",
            "--peer",
            "127.0.0.3:7000",
            "--cluster-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        assert!(matches!(
            cfg.cluster.unwrap().members,
            kura_config::MemberSource::Static(ref l) if l.len() == 2
        ));
        // Without a secret the field is named.
        let err = parse(&[
            "--peering-address",
            "127.0.0.2:7000",
            "--peer",
            "127.0.0.3:7000",
        ])
        .unwrap_err();
        assert!(
            err.errors.iter().any(|e| e.field == "cluster.secret"),
            "{err}"
        );
    }

    #[test]
    fn cache_flags_become_cache_fields() {
        let cli = Cli::parse_from([
            "kura",
            "serve",
            "--upstream",
            "http://127.0.0.1:9000",
            "--cache-dir",
            "/tmp/kc",
            "--max-memory",
            "100M",
            "--max-disk",
            "2G",
            "--cleaned-disk",
            "1G",
            "--min-ttl",
            "60s",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        let cfg = kura_config::validate(&args.quick_config(), std::path::Path::new(".")).unwrap();
        assert_eq!(cfg.cache.memory_bytes, 100_000_000);
        let disk = cfg.cache.disk.unwrap();
        assert_eq!(
            (disk.max_bytes, disk.cleaned_bytes),
            (2_000_000_000, 1_000_000_000)
        );
        let rule = &cfg.routes.vhosts[0].rules[0];
        assert_eq!(
            rule.action.cache().unwrap().min_ttl,
            std::time::Duration::from_secs(60)
        );

        let cli = Cli::parse_from(["kura", "serve", "--upstream", "http://x:1", "--no-cache"]);
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        let cfg = kura_config::validate(&args.quick_config(), std::path::Path::new(".")).unwrap();
        assert_eq!(
            cfg.routes.vhosts[0].rules[0].action.kind(),
            kura_config::Action::Proxy
        );
        assert!(
            Cli::try_parse_from([
                "kura",
                "serve",
                "--upstream",
                "http://x:1",
                "--no-cache",
                "--cache-dir",
                "d"
            ])
            .is_err()
        );
    }

    #[test]
    fn config_and_quick_flags_conflict() {
        assert!(
            Cli::try_parse_from([
                "kura",
                "serve",
                "--config",
                "a.toml",
                "--upstream",
                "http://x"
            ])
            .is_err()
        );
    }

    #[test]
    fn bad_upstream_is_named() {
        let cli = Cli::parse_from(["kura", "serve", "--upstream", "localhost:9000"]);
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        let err =
            kura_config::validate(&args.quick_config(), std::path::Path::new(".")).unwrap_err();
        assert_eq!(err.errors[0].field, "pools.default.backends[0]");
    }
}
