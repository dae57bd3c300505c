//! The `kura` binary: command line, configuration loading, logging, signals and reload
//! triggers around the server of `kura-proxy`. All proxy behaviour lives in the library crates.
//!
//! Signals: SIGHUP reloads the configuration file, SIGUSR1 reopens the access log, SIGUSR2
//! starts a new kura that takes the listening sockets over (`upgrade/`), SIGTERM and SIGINT
//! shut down gracefully (in-flight requests get `server.shutdown_grace`).

mod cli;
mod import;
mod logging;
mod manual;
mod routes;
mod upgrade;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use kura_config::{Config, ConfigError};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, Command, ServeArgs};
use crate::logging::LogHandle;

/// mimalloc rather than glibc's malloc: segments are 2 MiB buffers allocated on one thread
/// (tokio's blocking pool reading the disk) and freed on another. glibc raises its mmap
/// threshold after the first such free and then keeps them in per-thread arenas: measured
/// here, 586 MiB resident after three 1 GiB transfers through a 256 MiB memory tier, against
/// 122 MiB with the threshold pinned. mimalloc returns them without that cost. It keeps its
/// default of asking for transparent huge pages: they make partly used 2 MiB pages resident
/// (a 30-minute soak with a 128 MiB memory tier settled near 635 MiB, about 410 MiB with
/// `MIMALLOC_ALLOW_THP=0`), but a build without them (`no_thp`) served 1 KiB hits and
/// pass-through markedly slower on this machine; docs/operations.md says how to choose.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The matches are kept: quick mode needs to know which values came from the command line
    // and which from the environment.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve(args) => match matches.subcommand_matches("serve") {
            Some(m) => serve(*args, m),
            None => unreachable!("clap matched serve"),
        },
        Command::Routes(args) => routes::run(args),
        Command::Import(args) => import::run(args),
        Command::Man { dir } => manual::man(dir.as_deref()),
        Command::Completions { shell } => manual::completions(shell),
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::from_file(path) {
        Ok(c) => {
            // The certificates are loaded too: a certificate and key that do not go together
            // pass validation (both files are PEM) and would only fail at start or reload.
            let refused = kura_proxy::check_certificates(&c);
            for (field, e) in &refused {
                eprintln!("{}: {field}: {e}", path.display());
            }
            if !refused.is_empty() {
                return ExitCode::from(1);
            }
            println!(
                "{}: ok ({} listener(s), {} vhost(s), {} pool(s))",
                path.display(),
                c.listeners.len(),
                c.routes.vhosts.len(),
                c.routes.pools.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_errors(&path.display().to_string(), &e);
            ExitCode::from(1)
        }
    }
}

fn print_errors(source: &str, e: &ConfigError) {
    for fe in &e.errors {
        eprintln!("{source}: {}: {}", fe.field, fe.message);
    }
}

/// Quick-mode errors name the flag, not the generated config field.
fn quick_field(field: &str) -> String {
    if let Some(rest) = field.strip_prefix("pools.default.backends[") {
        let n: usize = rest.trim_end_matches(']').parse().unwrap_or(0);
        return format!("--upstream #{}", n + 1);
    }
    match field {
        f if f.starts_with("listeners[") => "--listen".into(),
        "admin.address" => "--admin".into(),
        "cache.memory" => "--max-memory".into(),
        "cache.max_disk" => "--max-disk".into(),
        "cache.cleaned_disk" => "--cleaned-disk".into(),
        "cache.dir" => "--cache-dir".into(),
        "vhosts[0].cache.min_ttl" => "--min-ttl".into(),
        f if f.starts_with("access_log") => "--access-log".into(),
        "pools.default.backends" => "--upstream".into(),
        "redis.url" => "--redis".into(),
        "cluster.peering_address" => "--peering-address".into(),
        "cluster.secret" => "--cluster-secret (KURA_CLUSTER_SECRET)".into(),
        f if f.starts_with("cluster.peers") => "--peer".into(),
        f if f.starts_with("cluster.etcd") => "--etcd".into(),
        "vhosts[0].rules[0].path" => "--passthrough".into(),
        other => other.into(),
    }
}

fn serve(mut args: ServeArgs, matches: &ArgMatches) -> ExitCode {
    // First, while this is the only thread: the sockets systemd passed.
    let setup = match upgrade::Setup::new(std::mem::take(&mut args.upgrade)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kura serve: {e:#}");
            return ExitCode::from(1);
        }
    };
    // The control runtime (it starts no thread): signals, reloads, the admin listener and
    // health checks. Requests are served by the worker threads `kura_proxy::start` spawns,
    // each with its own runtime.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kura: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Caught from here on: the default action of SIGHUP, SIGUSR1 and SIGUSR2 would end a kura
    // still starting; they are acted on once it serves.
    let signals = match rt.block_on(async { EarlySignals::new() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kura: {e:#}");
            return ExitCode::from(1);
        }
    };
    // Flags that do not go together are a usage error (2), as clap's own.
    let usage = |e: String| {
        eprintln!("kura serve: {e}");
        ExitCode::from(2)
    };
    let mut casserole = false;
    // Watched before it is read, so an edit made while kura starts is not lost.
    let file_watch = args.config.as_deref().map(watch::FileWatch::new);
    let config = match &args.config {
        Some(path) => {
            if let Err(e) = args.refuse_quick_flags(matches) {
                return usage(e);
            }
            Config::from_file(path).map_err(|e| {
                print_errors(&path.display().to_string(), &e);
            })
        }
        None => {
            let quick = match args.quick(matches, &|name| std::env::var(name).ok()) {
                Ok(q) => q,
                Err(e) => return usage(e),
            };
            casserole = quick.casserole;
            kura_config::validate(&quick.config(), Path::new(".")).map_err(|e| {
                for fe in &e.errors {
                    eprintln!("kura serve: {}: {}", quick_field(&fe.field), fe.message);
                }
            })
        }
    };
    let Ok(mut config) = config else {
        return ExitCode::from(1);
    };
    let overrides = Overrides {
        workers: args.workers,
        per_core: args.per_core,
    };
    overrides.apply(&mut config);
    let log = logging::init(&config.logging);
    if casserole {
        tracing::info!(
            memory_bytes = config.cache.memory_bytes,
            disk = ?config.cache.disk.as_ref().map(|d| &d.dir),
            "Casserole's flags or environment: quick mode with Casserole's defaults"
        );
    }
    let file_watch = file_watch.and_then(|w| {
        w.map_err(|e| tracing::warn!(error = %e, "config file not watched; reload with SIGHUP"))
            .ok()
    });
    let watched = args.config.map(|path| (path, file_watch));
    match rt.block_on(run(config, watched, overrides, log, setup, signals)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kura: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Command-line settings that win over the file's, at start and at every reload (so a reload
/// of an unchanged file does not report them as changes needing a restart).
#[derive(Clone, Copy)]
struct Overrides {
    workers: Option<usize>,
    per_core: bool,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        if self.workers.is_some() {
            config.server.workers = self.workers;
        }
        if self.per_core {
            config.server.work_stealing = false;
        }
    }
}

/// The signals whose default action would end kura, caught before the configuration is read.
struct EarlySignals {
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl EarlySignals {
    /// Inside the runtime that will receive them.
    fn new() -> anyhow::Result<EarlySignals> {
        Ok(EarlySignals {
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
            usr1: signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?,
            usr2: signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?,
        })
    }
}

async fn run(
    config: Config,
    watched: Option<(PathBuf, Option<watch::FileWatch>)>,
    overrides: Overrides,
    log: LogHandle,
    setup: upgrade::Setup,
    signals: EarlySignals,
) -> anyhow::Result<()> {
    let EarlySignals {
        hup,
        mut usr1,
        mut usr2,
    } = signals;
    let (handle, mut upgrades) = upgrade::start(setup, config).await?;
    let reloader = handle.reloader();
    let mut hup = Some(hup);
    if let Some((path, file_watch)) = watched {
        let log = Arc::new(log);
        let reloader = reloader.clone();
        let file = path.clone();
        let reload: watch::Reload =
            Arc::new(move || reload_from(&file, overrides, &reloader, &log));
        handle.set_reload_hook(reload.clone());
        if let Some(hup) = hup.take() {
            watch::on_sighup(hup, reload.clone());
        }
        if let Some(w) = file_watch {
            w.reload_with(reload);
        }
    }
    if let Some(hup) = hup {
        watch::on_sighup_without_file(hup);
    }
    let reopen = reloader.clone();
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: reopening the access log");
            reopen.reopen_access_log();
        }
    });
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = usr2.recv() => {
                upgrades.start_successor(&handle);
                continue;
            }
            Some(h) = upgrades.handover() => {
                // The successor serves on our sockets: stop accepting, let it know, drain.
                handle.begin_handover();
                let _ = h.done.send(());
                tracing::info!(pid = h.pid, "handed the listening sockets over");
                upgrades.stop();
                handle.shutdown().await;
                return Ok(());
            }
        }
        break;
    }
    upgrade::systemd::stopping();
    upgrades.stop();
    handle.shutdown().await;
    Ok(())
}

/// Loads `path` and applies it; an invalid file keeps the running configuration.
fn reload_from(
    path: &Path,
    overrides: Overrides,
    reloader: &kura_proxy::Reloader,
    log: &LogHandle,
) -> Result<kura_proxy::ReloadReport, kura_proxy::ReloadError> {
    match Config::from_file(path) {
        Ok(mut config) => {
            overrides.apply(&mut config);
            let needs_restart = reloader.apply(&config)?;
            log.set_level(&config.logging.level);
            let summary = format!(
                "{} vhost(s), {} pool(s){}",
                config.routes.vhosts.len(),
                config.routes.pools.len(),
                if needs_restart.is_empty() {
                    String::new()
                } else {
                    format!("; needs a restart to change: {}", needs_restart.join(", "))
                }
            );
            tracing::info!(file = %path.display(), %summary, "configuration reloaded");
            Ok(kura_proxy::ReloadReport {
                summary,
                needs_restart,
            })
        }
        Err(e) => {
            reloader.failed();
            for fe in &e.errors {
                tracing::error!(file = %path.display(), field = %fe.field, "invalid configuration, keeping the running one: {}", fe.message);
            }
            Err(e.into())
        }
    }
}
