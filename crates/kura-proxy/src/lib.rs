//! kura's data plane: the HTTP server, the request phases, the route table and the upstream
//! pools, plus the admin listener, metrics and the access log.
//!
//! Start a server with [`start`] (it binds its listeners, port 0 allowed) and keep the returned
//! [`ServerHandle`] to reload its configuration, reopen its access log, shut it down
//! gracefully, or hand its listening sockets to a successor ([`start_with`],
//! [`ServerHandle::listening_sockets`], [`ServerHandle::begin_handover`]). The binary
//! (`crates/kura`) adds the CLI, signals, the config file watcher and the takeover protocol.
//!
//! The folders follow a request's path (see `docs/architecture.md`):
//! - `listen/`: accepting connections, TLS, HTTP/1 and HTTP/2, their timeouts, side listeners;
//! - `request.rs`: one request's phases, from its head to its finished response;
//! - `route/`: the request target and the route table (host → vhost → rule);
//! - `action/`: what a rule does (proxy with shadowing and upgrades, cache, resize);
//! - `upstream/`: backend pools, balancing, health, who-has;
//! - `control/`: admin API, metrics, access log, reloads, Redis routes, the peer listener.

#![deny(missing_docs)]

mod action;
mod body;
mod clock;
mod context;
mod control;
mod errors;
mod headers;
mod listen;
mod request;
mod route;
mod state;
mod upstream;

pub use control::redis_routes;
pub use control::reload::Reloader;
pub use listen::server::{ServerHandle, start, start_with};
pub use listen::sockets::{Inherited, InheritedSocket, Listening, Role};
pub use listen::tls::TlsError;
pub use route::table::{ActionError, BuildError};
pub use route::target;
pub use state::{ReloadError, ReloadHook, ReloadReport};

/// Loads every TLS listener's certificates as `serve` would, for `kura check`: a certificate
/// that does not go with its key, or a file that is not PEM, is found before a start or a
/// reload refuses it. Each error comes with its listener's field.
pub fn check_certificates(cfg: &kura_config::Config) -> Vec<(String, TlsError)> {
    cfg.listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let tls = l.tls.as_ref()?;
            listen::tls::CertStore::load(tls)
                .err()
                .map(|e| (format!("listeners[{i}].tls"), e))
        })
        .collect()
}
