//! Diagnostics through `tracing`: text or JSON on stderr, levels per module from
//! `logging.level` (`info,kura_proxy::upstream=debug`). `RUST_LOG`, when set, wins. The filter
//! sits behind a reload layer so a configuration reload can change levels without a restart.

use kura_config::{LogFormat, LoggingConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// Changes the level filter of a running process.
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogHandle {
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        match EnvFilter::builder().parse(level) {
            Ok(f) => {
                if let Err(e) = self.handle.reload(f) {
                    tracing::warn!(error = %e, "log level not changed");
                }
            }
            Err(e) => tracing::warn!(error = %e, level, "log level not changed"),
        }
    }
}

pub fn init(cfg: &LoggingConfig) -> LogHandle {
    let env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let from_env = env.is_some();
    let directives = env.unwrap_or_else(|| cfg.level.clone());
    let filter = EnvFilter::builder()
        .parse(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match cfg.format {
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("kura: logging not initialised: {e}");
    }
    LogHandle { handle, from_env }
}
