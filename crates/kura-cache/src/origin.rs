//! How the cache reaches origins: the [`Origin`] trait, implemented by the proxy over its
//! upstream pools (balancing, health, retries) and by tests over anything. Requests the cache
//! makes are bodiless (GET and HEAD); response bodies stream.

use bytes::Bytes;
use http::{Response, StatusCode, request};
use http_body_util::combinators::UnsyncBoxBody;

use crate::tier::BoxFuture;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming response body from an origin.
pub type OriginBody = UnsyncBoxBody<Bytes, BoxError>;

/// An origin could not answer: the status the client should get (502, 503, 504) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OriginError {
    pub status: StatusCode,
    pub message: String,
}

impl OriginError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        OriginError {
            status,
            message: message.into(),
        }
    }
}

pub trait Origin: Send + Sync + 'static {
    /// Sends `req` (no body) and returns the response head with its body streaming.
    fn fetch(
        &self,
        req: request::Parts,
    ) -> BoxFuture<'static, Result<Response<OriginBody>, OriginError>>;
}
