//! How the cache reaches origins: the [`Origin`] trait, implemented by the proxy over its
//! upstream pools (balancing, health, retries) and by tests over anything. Requests the cache
//! makes are bodiless (GET and HEAD); response bodies stream.

use bytes::Bytes;
use http::{Response, StatusCode, request};
use http_body_util::combinators::UnsyncBoxBody;

use crate::tier::BoxFuture;

pub use kura_http::BoxError;

/// A streaming response body from an origin.
pub type OriginBody = UnsyncBoxBody<Bytes, BoxError>;

/// An origin could not answer: the status the client should get (502, 503, 504…) and the
/// typed error of the origin's own crate as its cause, which its caller gets back whole
/// ([`OriginError::cause`]) however many waiters share it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause}")]
pub struct OriginError {
    /// The status a client is answered with.
    pub status: StatusCode,
    cause: std::sync::Arc<dyn std::error::Error + Send + Sync>,
}

/// A failure the cache describes itself (no origin error behind it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(String);

impl OriginError {
    /// An origin's failure `cause`, answered with `status`.
    pub fn new(status: StatusCode, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        OriginError {
            status,
            cause: std::sync::Arc::new(cause),
        }
    }

    /// A failure of the cache's own, described in words.
    pub fn described(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, Described(message.into()))
    }

    /// The cause, if it is an `E`.
    pub fn cause<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.cause.downcast_ref::<E>()
    }
}

/// Attached (as a request extension) to every origin request the cache makes: the cache key
/// it is for, and whether the answer is passed through rather than stored. A clustered origin
/// picks the node that owns the key.
#[derive(Clone, Debug)]
pub struct FetchInfo {
    /// The primary key of the request; a cluster picks each segment's owner by it.
    pub key: std::sync::Arc<str>,
    /// The rule the key belongs to.
    pub rule: Option<crate::key::RuleId>,
    /// The client's URL as keyed (see [`crate::CacheRequest::target`]).
    pub target: Option<std::sync::Arc<str>>,
    /// The answer is passed through, not stored (a cluster origin then asks no owner).
    pub pass: bool,
    /// Whether readers of this request fetch segments ahead (not for a peer's request: the
    /// asking node fetches ahead itself, from each segment's owner).
    pub prefetch: bool,
}

/// Set (as a request extension) on a request another cluster member sent: the cache serves
/// it without fetching segments ahead.
#[derive(Clone, Copy, Debug)]
pub struct PeerRequest;

/// Set by an origin (as a response extension) on an answer that came from the node owning
/// it: its segments are kept in memory only, not written to this node's lower tiers (the
/// owner stores them), which puts the peer tier between memory and disk.
#[derive(Clone, Copy, Debug)]
pub struct FromPeer;

/// Where the cache's fetches go: implemented by the proxy over its upstream pools, by the
/// cluster (asking the key's owner first) and by the image actions.
pub trait Origin: Send + Sync + 'static {
    /// Sends `req` (no body) and returns the response head with its body streaming.
    fn fetch(
        &self,
        req: request::Parts,
    ) -> BoxFuture<'static, Result<Response<OriginBody>, OriginError>>;
}
