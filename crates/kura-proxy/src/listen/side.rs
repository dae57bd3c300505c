//! Side listeners (admin, cluster peers) get the limits the client listeners have: a cap on
//! open connections (further ones wait in the backlog), and the header, idle and send
//! timeouts of `[limits]`, through the same connection driver (`connection::drive`) and the
//! same read/write watch ([`WatchedIo`]). A response body marks its stream done when it is
//! dropped, so a long answer (a peer's segment) never counts as idle.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::listen::timeouts::{ConnState, WatchedIo};
use crate::state::Shared;

/// One connection of a side listener, with its slot under the cap.
pub(crate) struct SideConn {
    pub stream: WatchedIo<TcpStream>,
    pub state: Arc<ConnState>,
    pub peer: SocketAddr,
    pub _slot: OwnedSemaphorePermit,
}

/// The next connection, once a slot under `cap` is free; `None` once shutdown begins.
pub(crate) async fn next(
    listener: &TcpListener,
    shared: &Shared,
    cap: &Arc<Semaphore>,
    multiplexed: bool,
) -> Option<SideConn> {
    let slot = tokio::select! {
        p = cap.clone().acquire_owned() => p.ok()?,
        _ = shared.shutdown.cancelled() => return None,
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::new(if multiplexed {
                        ConnState::multiplexed()
                    } else {
                        ConnState::new()
                    });
                    return Some(SideConn {
                        stream: WatchedIo::new(stream, state.clone()),
                        state,
                        peer,
                        _slot: slot,
                    });
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            _ = shared.shutdown.cancelled() => return None,
        }
    }
}

/// A response body that ends its request's busy phase when it is dropped.
pub(crate) struct Tracked<B> {
    inner: B,
    state: Option<Arc<ConnState>>,
}

impl<B> Tracked<B> {
    /// Ends the busy phase the service began (`ConnState::busy`) when the body is dropped;
    /// until then the response must make write progress within the send timeout.
    pub fn new(inner: B, state: &Arc<ConnState>) -> Self {
        state.responding();
        Tracked {
            inner,
            state: Some(state.clone()),
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let Some(s) = self.state.take() {
            s.idle();
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
