//! Diagnostics through `tracing`: text or JSON on stderr, levels per module from
//! `logging.level` (`info,kura_proxy::upstream=debug`). `RUST_LOG`, when set, wins. A
//! configuration reload can change levels without a restart.
//!
//! The level filter is [`LiveFilter`], an `EnvFilter` behind an `ArcSwap`, rather than
//! tracing-subscriber's `reload::Layer<EnvFilter>`: every request enters and leaves its span at
//! each poll, and through the reload layer each of those took the reload lock and EnvFilter's
//! span-map lock (four read locks per poll, shared by the worker threads). Here a swap is a
//! pointer store, and span callbacks reach EnvFilter only when its directives filter by span
//! (`[name]` or `[{field}]`), the one case where it tracks spans.

use std::sync::Arc;

use arc_swap::ArcSwap;
use kura_config::{LogFormat, LoggingConfig};
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Changes the level filter of a running process.
pub struct LogHandle {
    filter: LiveFilter,
    from_env: bool,
}

impl LogHandle {
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let Err(e) = self.filter.set(level) {
            tracing::warn!(error = %e, level, "log level not changed");
        }
    }
}

/// The level filter: the current directives, swapped whole on a reload (clones share them).
#[derive(Clone)]
pub struct LiveFilter {
    current: Arc<ArcSwap<Directives>>,
}

struct Directives {
    filter: EnvFilter,
    /// The directives filter by span, so EnvFilter must see spans come and go.
    by_span: bool,
}

impl LiveFilter {
    /// A filter from directives (`info,kura_proxy::upstream=debug`).
    pub fn new(directives: &str) -> Result<LiveFilter, tracing_subscriber::filter::ParseError> {
        Ok(LiveFilter {
            current: Arc::new(ArcSwap::from_pointee(Directives::parse(directives)?)),
        })
    }

    /// Replaces the directives; callsites are asked again whether they are enabled.
    pub fn set(&self, directives: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
        self.current.store(Arc::new(Directives::parse(directives)?));
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }
}

impl Directives {
    fn parse(directives: &str) -> Result<Directives, tracing_subscriber::filter::ParseError> {
        Ok(Directives {
            filter: EnvFilter::builder().parse(directives)?,
            by_span: directives.contains('['),
        })
    }
}

impl<S: Subscriber> Layer<S> for LiveFilter {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(&self.current.load().filter, meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::enabled(&self.current.load().filter, meta, ctx)
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::event_enabled(&self.current.load().filter, event, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Layer::<S>::max_level_hint(&self.current.load().filter)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let d = self.current.load();
        if d.by_span {
            d.filter.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let d = self.current.load();
        if d.by_span {
            d.filter.on_record(id, values, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        let d = self.current.load();
        if d.by_span {
            d.filter.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        let d = self.current.load();
        if d.by_span {
            d.filter.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let d = self.current.load();
        if d.by_span {
            d.filter.on_close(id, ctx);
        }
    }
}

pub fn init(cfg: &LoggingConfig) -> LogHandle {
    let env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let from_env = env.is_some();
    let directives = env.unwrap_or_else(|| cfg.level.clone());
    let filter = LiveFilter::new(&directives)
        .unwrap_or_else(|_| LiveFilter::new("info").expect("a valid directive"));
    let registry = tracing_subscriber::registry().with(filter.clone());
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
    LogHandle { filter, from_env }
}

#[cfg(test)]
mod tests {
    use kura_testkit::captured::Captured;

    use super::*;

    fn events() {
        tracing::debug!(target: "kura_proxy::upstream", "upstream-debug");
        tracing::debug!(target: "kura_cache", "cache-debug");
        tracing::info!(target: "kura_cache", "cache-info");
        let span = tracing::info_span!("request", id = "r1");
        let _in = span.enter();
        tracing::debug!(target: "kura_cache", "cache-debug-in-request");
    }

    #[test]
    fn levels_per_module_change_on_set_and_span_directives_work() {
        let out = Captured::default();
        let writer = out.clone();
        let filter = LiveFilter::new("info,kura_proxy::upstream=debug").unwrap();
        let subscriber = tracing_subscriber::registry().with(filter.clone()).with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            events();
            let seen = out.take();
            assert!(seen.contains("upstream-debug"), "{seen}");
            assert!(seen.contains("cache-info"), "{seen}");
            assert!(!seen.contains("cache-debug"), "{seen}");

            filter.set("warn").unwrap();
            events();
            let seen = out.take();
            assert_eq!(seen, "", "nothing at warn");

            // A directive by span: debug inside a request span only.
            filter.set("warn,[request]=debug").unwrap();
            events();
            let seen = out.take();
            assert!(seen.contains("cache-debug-in-request"), "{seen}");
            assert!(seen.contains("request{id=\"r1\"}"), "{seen}");
            assert!(!seen.contains("cache-info"), "{seen}");

            filter.set("debug").unwrap();
            events();
            let seen = out.take();
            assert!(
                seen.contains("cache-debug") && seen.contains("upstream-debug"),
                "{seen}"
            );
        });
        assert!(filter.set("info,x=loud").is_err(), "bad directives refused");
    }
}
