//! HTTP/2 connections to peers: one multiplexed connection per peer, made on first use and
//! again after it fails; over TLS when the cluster has `tls_*` (`tls.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Sender = SendRequest<Empty<Bytes>>;

/// Connections to peers, one per address, reused by every request to it; the default speaks
/// cleartext HTTP/2, [`PeerClient::with_tls`] TLS.
#[derive(Default)]
pub struct PeerClient {
    conns: Mutex<HashMap<SocketAddr, Sender>>,
    tls: Option<crate::tls::ClientTls>,
}

/// Why a peer did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection: TCP, TLS or the HTTP/2 handshake failed or timed out.
    #[error("connect: {0}")]
    Connect(String),
    /// The request failed on an established connection, which is then dropped so the next
    /// request connects again.
    #[error("request: {0}")]
    Request(String),
}

impl PeerClient {
    /// A client speaking TLS to members.
    pub fn with_tls(tls: crate::tls::ClientTls) -> Self {
        PeerClient {
            conns: Mutex::default(),
            tls: Some(tls),
        }
    }

    async fn sender(&self, addr: SocketAddr, timeout: Duration) -> Result<Sender, PeerError> {
        let existing = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .cloned();
        if let Some(s) = existing
            && !s.is_closed()
        {
            return Ok(s);
        }
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| PeerError::Connect("timed out".into()))?
            .map_err(|e| PeerError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024);
        let sender = match &self.tls {
            None => {
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| PeerError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            Some(tls) => {
                let stream = tokio::time::timeout(timeout, tls.connect(addr, stream))
                    .await
                    .map_err(|_| PeerError::Connect("TLS handshake timed out".into()))?
                    .map_err(|e| PeerError::Connect(format!("TLS: {e}")))?;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| PeerError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, sender.clone());
        Ok(sender)
    }

    /// Sends `req` to `addr` (connecting within `timeout` if needed).
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Request<Empty<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, PeerError> {
        let mut sender = self.sender(addr, timeout).await?;
        let result = async {
            sender.ready().await?;
            sender.send_request(req).await
        }
        .await;
        result.map_err(|e| {
            self.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&addr);
            PeerError::Request(e.to_string())
        })
    }
}
