//! Reloads that say what they did. A reload swaps in routes, pools, limits (but the ones that
//! size something at start), error pages, trusted proxies, the admin token's reloadable
//! neighbours and the log level; everything else was fixed when the server started. Each
//! restart-only change is named (in the log and in the answer of `POST /reload`), compared
//! with the configuration the server started with, so it keeps being reported until a
//! restart applies it. A route table that cannot be built fails the reload (counted as
//! `kura_config_reloads_total{result="error"}`) and the running table stays.

use std::sync::{Arc, Weak};

use kura_config::Config;

use crate::listen::tls::TlsListener;
use crate::state::{ReloadError, Shared};

/// Applies new configurations to a running server.
#[derive(Clone)]
pub struct Reloader {
    shared: Weak<Shared>,
    started: Arc<Config>,
    tls: Vec<Arc<TlsListener>>,
}

/// The fields of `next` that differ from `started` and that only a restart applies.
pub fn restart_only_changes(started: &Config, next: &Config) -> Vec<String> {
    let (a, b) = (started, next);
    let mut out = Vec::new();
    let mut check = |field: &str, changed: bool| {
        if changed {
            out.push(field.to_string());
        }
    };
    check("listeners", a.listeners != b.listeners);
    check("admin", a.admin != b.admin);
    check("server.workers", a.server.workers != b.server.workers);
    check(
        "server.work_stealing",
        a.server.work_stealing != b.server.work_stealing,
    );
    check(
        "server.shutdown_grace",
        a.server.shutdown_grace != b.server.shutdown_grace,
    );
    check(
        "limits.max_connections",
        a.limits.max_connections != b.limits.max_connections,
    );
    check(
        "limits.max_upgraded",
        a.limits.max_upgraded != b.limits.max_upgraded,
    );
    check("logging.format", a.logging.format != b.logging.format);
    check("access_log", a.access_log != b.access_log);
    let (ca, cb) = (&a.cache, &b.cache);
    check("cache.memory", ca.memory_bytes != cb.memory_bytes);
    check(
        "cache.dir",
        ca.disk.as_ref().map(|d| &d.dir) != cb.disk.as_ref().map(|d| &d.dir),
    );
    if let (Some(da), Some(db)) = (&ca.disk, &cb.disk) {
        check("cache.max_disk", da.max_bytes != db.max_bytes);
        check("cache.cleaned_disk", da.cleaned_bytes != db.cleaned_bytes);
    }
    check("cache.segment_size", ca.segment_size != cb.segment_size);
    check(
        "cache.prefetch_segments",
        ca.prefetch_segments != cb.prefetch_segments,
    );
    check("cache.lock_timeout", ca.lock_timeout != cb.lock_timeout);
    check("shadow", a.shadow != b.shadow);
    check("cluster", a.cluster != b.cluster);
    check("redis", a.redis != b.redis);
    out
}

impl Reloader {
    pub(crate) fn new(
        shared: Weak<Shared>,
        started: Arc<Config>,
        tls: Vec<Arc<TlsListener>>,
    ) -> Self {
        Reloader {
            shared,
            started,
            tls,
        }
    }

    /// Swaps in what `config` may change at run time and returns the restart-only changes it
    /// holds (also logged). `Err` when the new route table cannot be built: the running one
    /// stays, and the reload counts as failed.
    pub fn apply(&self, config: &Config) -> Result<Vec<String>, ReloadError> {
        let Some(shared) = self.shared.upgrade() else {
            return Err(ReloadError::Stopped);
        };
        let needs_restart = restart_only_changes(&self.started, config);
        // Certificate files are re-read on every reload (their paths need a restart); files
        // that do not make a usable set fail the reload, as they would fail a start.
        for tls in &self.tls {
            if let Err(e) = tls.check_files() {
                self.failed();
                return Err(ReloadError::Tls(e));
            }
        }
        if let Err(e) = shared.apply(config) {
            self.failed();
            tracing::error!(error = %e, "route table not built; keeping the running one");
            return Err(e.into());
        }
        shared
            .metrics
            .config_reloads
            .with_label_values(&["ok"])
            .inc();
        for field in &needs_restart {
            tracing::warn!(
                field,
                "changed in the new configuration but needs a restart"
            );
        }
        Ok(needs_restart)
    }

    /// Reopens the access log file and the shadow diff log (SIGUSR1).
    pub fn reopen_access_log(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if let Some(log) = &shared.access_log {
            log.reopen();
        }
        shared.shadow.reopen_diff_log();
    }

    /// Counts a reload that failed (validation, or building the route table).
    pub fn failed(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"
[admin]
address = "127.0.0.1:9901"
[pools.p]
backends = ["http://127.0.0.1:1"]
[[vhosts]]
hosts = ["*"]
pool = "p"
"#;

    fn cfg(extra: &str) -> Config {
        Config::from_toml(&format!("{BASE}\n{extra}"), std::path::Path::new("/tmp")).unwrap()
    }

    #[test]
    fn each_restart_only_field_is_named() {
        let base = cfg("");
        assert!(restart_only_changes(&base, &cfg("")).is_empty());
        for (extra, field) in [
            ("[server]\nworkers = 3", "server.workers"),
            ("[server]\nwork_stealing = false", "server.work_stealing"),
            ("[server]\nshutdown_grace = \"1s\"", "server.shutdown_grace"),
            ("[limits]\nmax_connections = 5", "limits.max_connections"),
            ("[limits]\nmax_upgraded = 5", "limits.max_upgraded"),
            ("[logging]\nformat = \"json\"", "logging.format"),
            ("[access_log]\npath = \"a.log\"", "access_log"),
            ("[cache]\nmemory = \"1MiB\"", "cache.memory"),
            ("[cache]\ndir = \"c\"", "cache.dir"),
            ("[cache]\nsegment_size = \"1MiB\"", "cache.segment_size"),
            ("[cache]\nprefetch_segments = 1", "cache.prefetch_segments"),
            ("[cache]\nlock_timeout = \"1s\"", "cache.lock_timeout"),
            ("[shadow]\nqueue = 3", "shadow"),
            (
                "[cluster]\npeering_address = \"127.0.0.1:7000\"\npeers = []\nsecret = \"0123456789abcdef\"",
                "cluster",
            ),
            ("[redis]\nurl = \"redis://127.0.0.1:1/0\"", "redis"),
        ] {
            assert_eq!(
                restart_only_changes(&base, &cfg(extra)),
                vec![field.to_string()],
                "{extra}"
            );
        }
        // What a reload does apply is not reported.
        for extra in [
            "[limits]\nmax_body_bytes = \"1MiB\"",
            "[logging]\nlevel = \"debug\"",
            "[server]\nvia = \"edge\"",
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]",
            "[cache]\npurge_allow = [\"127.0.0.1\"]",
        ] {
            assert!(
                restart_only_changes(&base, &cfg(extra)).is_empty(),
                "{extra}"
            );
        }
        let moved = BASE.replace("8080", "8081");
        let moved = Config::from_toml(&moved, std::path::Path::new("/tmp")).unwrap();
        assert_eq!(restart_only_changes(&base, &moved), vec!["listeners"]);
        // Each disk mark is named for itself.
        let disk = cfg("[cache]\ndir = \"c\"\nmax_disk = \"10MiB\"\ncleaned_disk = \"5MiB\"");
        for (extra, field) in [
            (
                "max_disk = \"20MiB\"\ncleaned_disk = \"5MiB\"",
                "cache.max_disk",
            ),
            (
                "max_disk = \"10MiB\"\ncleaned_disk = \"6MiB\"",
                "cache.cleaned_disk",
            ),
        ] {
            let next = cfg(&format!("[cache]\ndir = \"c\"\n{extra}"));
            assert_eq!(restart_only_changes(&disk, &next), vec![field], "{extra}");
        }
        let admin = BASE.replace("9901", "9902");
        let admin = Config::from_toml(&admin, std::path::Path::new("/tmp")).unwrap();
        assert_eq!(restart_only_changes(&base, &admin), vec!["admin"]);
    }
}
