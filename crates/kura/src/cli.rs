//! The command line. Quick mode (`kura serve --listen … --upstream …`) builds a
//! [`FileConfig`] in code and goes through the same validation as a file, so every flag is a
//! thin alias for a config field and later features only add fields.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kura_config::{FileAccessLog, FileAdmin, FileConfig, FileListener, FilePool, FileVHost};

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
    Serve(ServeArgs),
    /// Validate a config file and say what is wrong, field by field.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (reloaded on change and on SIGHUP).
    #[arg(long, short, conflicts_with_all = ["upstream", "listen"])]
    pub config: Option<PathBuf>,

    /// Quick mode: address to listen on (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Quick mode: backend URL every request is proxied to (repeatable; balanced round robin).
    #[arg(long, value_name = "URL")]
    pub upstream: Vec<String>,

    /// Quick mode: admin listener address (metrics, routes, backends).
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub admin: Option<String>,

    /// Quick mode: access log file, or `-` for standard output.
    #[arg(long, value_name = "PATH", requires = "upstream")]
    pub access_log: Option<String>,

    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Thread-per-core runtimes instead of one work-stealing runtime (for dedicated cores).
    #[arg(long)]
    pub per_core: bool,
}

/// Default listen address of quick mode.
pub const QUICK_LISTEN: &str = "127.0.0.1:8080";

impl ServeArgs {
    /// The configuration quick mode stands for: one pool of the upstreams, every host and path.
    pub fn quick_config(&self) -> FileConfig {
        let listen = if self.listen.is_empty() {
            vec![QUICK_LISTEN.to_string()]
        } else {
            self.listen.clone()
        };
        let mut file = FileConfig {
            listeners: listen
                .into_iter()
                .map(|address| FileListener { address })
                .collect(),
            admin: self.admin.clone().map(|address| FileAdmin { address }),
            access_log: self.access_log.clone().map(|path| FileAccessLog {
                path,
                ..Default::default()
            }),
            ..Default::default()
        };
        file.pools.insert(
            "default".into(),
            FilePool {
                backends: self.upstream.clone(),
                ..Default::default()
            },
        );
        file.vhosts.push(FileVHost {
            name: Some("default".into()),
            hosts: vec!["*".into()],
            pool: Some("default".into()),
            ..Default::default()
        });
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
