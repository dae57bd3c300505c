//! One client connection, whatever it speaks: cleartext HTTP/1.1 (with upgrades), cleartext
//! HTTP/1.1 or HTTP/2 by prior knowledge (hyper-util's auto builder reads the preface), or TLS
//! with HTTP/2 or HTTP/1.1 picked by ALPN. The connection is driven under the header and idle
//! timeouts (`timeouts.rs`) and drains on shutdown, the same loop for every protocol.
//!
//! On a TLS listener the first byte is peeked before the handshake: plain HTTP there gets a
//! 400 that says so (as nginx does) instead of a handshake error, and a client hello that is
//! not TLS, never finishes or fails costs only its own connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kura_config::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::listen::timeouts::{Check, ConnState, WatchedIo};
use crate::listen::tls::TlsListener;
use crate::request::{self, ConnInfo};
use crate::state::Shared;

/// What a listener does with its connections.
pub struct ListenerMode {
    pub tls: Option<Arc<TlsListener>>,
    /// Cleartext: accept HTTP/2 prior knowledge beside HTTP/1.
    pub h2c: bool,
    pub redirect_https: Option<u16>,
}

const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\nThis port speaks HTTPS: the request was plain HTTP\n";

pub async fn serve(
    shared: Arc<Shared>,
    mode: Arc<ListenerMode>,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let metrics = shared.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();
    let limits = shared.runtime.load().limits.clone();
    match &mode.tls {
        None => {
            let state = Arc::new(ConnState::new());
            let info = conn_info(&shared, peer, "http", &state, &mode);
            let conn_info = info.clone();
            let io = TokioIo::new(WatchedIo::new(stream, state.clone()));
            if mode.h2c {
                let svc = service_fn(move |req| request::handle(info.clone(), req));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // The auto builder has no header-size limit of its own: its read buffer bounds
                // the head (hyper needs at least 8 KiB).
                builder
                    .http1()
                    .keep_alive(true)
                    .header_read_timeout(None)
                    .max_buf_size(limits.max_header_bytes.max(8192))
                    .max_headers(limits.max_headers);
                builder
                    .http2()
                    .max_header_list_size(limits.max_header_bytes as u32)
                    .max_concurrent_streams(limits.http2_max_concurrent_streams)
                    .timer(hyper_util::rt::TokioTimer::new());
                let conn = builder.serve_connection_with_upgrades(io, svc);
                drive_client(
                    conn,
                    |c| c.graceful_shutdown(),
                    &shared,
                    &state,
                    &limits,
                    peer,
                )
                .await;
            } else {
                serve_h1(io, info, &shared, &state, &limits, peer).await;
            }
            finish_tunnel(&conn_info).await;
        }
        Some(tls) => serve_tls(&shared, &mode, tls, stream, peer, &limits).await,
    }
    metrics.connections.dec();
}

/// Waits for the tunnel an upgrade made of this connection (holding the connection's permit
/// and keeping it tracked by shutdown meanwhile).
async fn finish_tunnel(info: &ConnInfo) {
    let tunnel = info.tunnel.lock().ok().and_then(|mut t| t.take());
    if let Some(t) = tunnel {
        let _ = t.await;
    }
}

async fn serve_tls(
    shared: &Arc<Shared>,
    mode: &Arc<ListenerMode>,
    tls: &TlsListener,
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: &Limits,
) {
    // One deadline for the first byte and the whole handshake: a client that waits almost
    // the timeout before its first byte gets no second timeout for the rest.
    let deadline = tokio::time::Instant::now() + limits.client_header_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        // 0x16: a TLS handshake record.
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(1)) if first[0].is_ascii_alphabetic() => {
            tls_error(shared, "plain_http");
            let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
            let _ = stream.shutdown().await;
            return;
        }
        Ok(Ok(_)) | Ok(Err(_)) => {
            tls_error(shared, "not_tls");
            return;
        }
        Err(_) => {
            tls_error(shared, "timeout");
            return;
        }
    }
    let handshake = async {
        let acceptor = rustls::server::Acceptor::default();
        let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, stream).await?;
        let config = tls.configs.for_hello(&start.client_hello());
        start.into_stream(config).await
    };
    let stream = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            tls_error(shared, "handshake");
            return;
        }
        Err(_) => {
            tls_error(shared, "timeout");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let state = Arc::new(if h2 {
        ConnState::multiplexed()
    } else {
        ConnState::new()
    });
    let info = conn_info(shared, peer, "https", &state, mode);
    let io = TokioIo::new(WatchedIo::new(stream, state.clone()));
    if h2 {
        let svc = service_fn(move |req| request::handle(info.clone(), req));
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .timer(hyper_util::rt::TokioTimer::new());
        let conn = builder.serve_connection(io, svc);
        drive_client(
            conn,
            |c| c.graceful_shutdown(),
            shared,
            &state,
            limits,
            peer,
        )
        .await;
    } else {
        let conn_info = info.clone();
        serve_h1(io, info, shared, &state, limits, peer).await;
        finish_tunnel(&conn_info).await;
    }
}

/// HTTP/1.1 (with upgrades) on `io`, cleartext or TLS.
async fn serve_h1<I>(
    io: TokioIo<I>,
    info: Arc<ConnInfo>,
    shared: &Shared,
    state: &ConnState,
    limits: &Limits,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| request::handle(info.clone(), req));
    let mut builder = http1::Builder::new();
    configure_h1(&mut builder, limits);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    drive_client(conn, |c| c.graceful_shutdown(), shared, state, limits, peer).await;
}

fn tls_error(shared: &Shared, kind: &str) {
    shared
        .metrics
        .tls_handshake_errors
        .with_label_values(&[kind])
        .inc();
}

fn conn_info(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    scheme: &'static str,
    state: &Arc<ConnState>,
    mode: &ListenerMode,
) -> Arc<ConnInfo> {
    let mut info = ConnInfo::new(shared.clone(), peer, scheme, state.clone());
    info.redirect_https = mode.redirect_https;
    Arc::new(info)
}

fn configure_h1(builder: &mut http1::Builder, limits: &Limits) {
    builder
        .keep_alive(true)
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    if limits.max_headers != kura_config::DEFAULT_MAX_HEADERS {
        // hyper keeps up to 100 headers on the stack; any other count costs a heap allocation.
        builder.max_headers(limits.max_headers);
    }
}

/// Runs `conn` until it ends, a timeout fires, or shutdown forces it closed.
pub(crate) async fn drive<C, E>(
    conn: C,
    drain: impl Fn(Pin<&mut C>),
    shared: &Shared,
    state: &ConnState,
    limits: &Limits,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    drive_as(conn, drain, shared, state, limits, peer, false).await
}

/// [`drive`] for a client listener's connection. When a successor took the listeners over
/// (`Shared::handed_over`), an HTTP/1 connection is not drained at once: closing it while
/// idle races with a request the client may be sending. It stays open until its next response
/// (which says `Connection: close`, see `request::handle`), the client closes it, it times
/// out, or the grace period ends. An HTTP/2 one gets its GOAWAY as soon as it is known to be
/// HTTP/2 (on a cleartext listener, once a request tells).
async fn drive_client<C, E>(
    conn: C,
    drain: impl Fn(Pin<&mut C>),
    shared: &Shared,
    state: &ConnState,
    limits: &Limits,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    drive_as(conn, drain, shared, state, limits, peer, true).await
}

/// How often a connection left open by a handover's drain checks whether it turned out to be
/// HTTP/2.
const HANDOVER_RECHECK: Duration = Duration::from_millis(100);

async fn drive_as<C, E>(
    conn: C,
    drain: impl Fn(Pin<&mut C>),
    shared: &Shared,
    state: &ConnState,
    limits: &Limits,
    peer: SocketAddr,
    client: bool,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let metrics = &shared.metrics;
    let header_timeout = limits.client_header_timeout;
    let idle_timeout = limits.client_idle_timeout;
    let send_timeout = limits.send_timeout;
    let timer = tokio::time::sleep(header_timeout.min(idle_timeout).min(send_timeout));
    tokio::pin!(timer);
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let force = shared.force.cancelled();
    tokio::pin!(force);
    // Armed while a handover's drain waits to learn whether the connection is HTTP/2.
    let recheck = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(recheck);
    let mut draining = false;
    let mut drained = false;
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = &mut shutdown, if !draining => {
                draining = true;
                if client && shared.handed_over.load(Relaxed) && !state.is_http2() {
                    recheck.as_mut().reset(tokio::time::Instant::now() + HANDOVER_RECHECK);
                } else {
                    drained = true;
                    drain(conn.as_mut());
                }
            }
            _ = &mut recheck, if draining && !drained => {
                if state.is_http2() {
                    drained = true;
                    drain(conn.as_mut());
                } else {
                    recheck.as_mut().reset(tokio::time::Instant::now() + HANDOVER_RECHECK);
                }
            }
            _ = &mut force => break,
            _ = &mut timer => match state.check(header_timeout, idle_timeout, send_timeout) {
                Check::Later(d) => timer.as_mut().reset(tokio::time::Instant::now() + d),
                Check::HeaderTimeout => {
                    metrics.connection_timeouts.with_label_values(&["header"]).inc();
                    tracing::debug!(client = %peer, "client header timeout");
                    break;
                }
                Check::IdleTimeout => {
                    metrics.connection_timeouts.with_label_values(&["idle"]).inc();
                    break;
                }
                Check::SendTimeout => {
                    metrics.connection_timeouts.with_label_values(&["send"]).inc();
                    state.cut_for_send_timeout();
                    tracing::debug!(client = %peer, "client send timeout");
                    break;
                }
            },
        }
    }
}
