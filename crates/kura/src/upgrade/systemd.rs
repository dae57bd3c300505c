//! systemd: sockets passed by socket activation (`LISTEN_FDS`, matched to the listeners by the
//! address they are bound to), and service notifications (`READY=1`, `MAINPID=` after a
//! takeover, `STOPPING=1`) for `Type=notify` units. Both do nothing outside systemd.

use anyhow::Context as _;
use kura_proxy::{Inherited, InheritedSocket};
use sd_notify::NotifyState;

/// The sockets systemd passed (none outside socket activation). Reads and clears
/// `LISTEN_FDS`/`LISTEN_PID`, so call it before any thread starts.
pub fn inherited() -> anyhow::Result<Vec<InheritedSocket>> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let socket = fds.take_tcp_listener(i).with_context(|| {
            format!(
                "LISTEN_FDS: descriptor {} (systemd socket activation)",
                3 + i
            )
        })?;
        if let Some(socket) = socket {
            out.push(InheritedSocket {
                role: None,
                configured: None,
                socket,
            });
        }
    }
    Ok(out)
}

/// Both sources in one set: a takeover's sockets first.
pub fn merge(takeover: Option<Inherited>, systemd: Vec<InheritedSocket>) -> Inherited {
    if !systemd.is_empty() {
        let addrs: Vec<String> = systemd
            .iter()
            .filter_map(|s| s.socket.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        tracing::info!(sockets = %addrs.join(", "), "sockets from systemd socket activation");
    }
    let mut all = Vec::new();
    if let Some(t) = takeover {
        all.extend(t.into_sockets());
    }
    all.extend(systemd);
    Inherited::new(all)
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

/// Serving (after a takeover, this process is now the service's main process).
pub fn ready(took_over: bool) {
    if took_over {
        notify(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
    } else {
        notify(&[NotifyState::Ready]);
    }
}

/// Shutting down (not sent after a handover: the service goes on in the new process).
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}
