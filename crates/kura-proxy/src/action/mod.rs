//! What a rule does with a request, as one closed enum ([`RuleAction`]) built once per route
//! table: proxy it (with shadow copies and upgrades), answer it through the cache, or serve a
//! resized image. Each action owns what it needs (its pool or origin, its policy, its
//! transformer), so the request phases only pick the variant and the compiler checks that
//! every variant is handled. Actions answer with a [`Reply`], which the request's finish phase
//! turns into the client's response; they know nothing of connections, routing or the
//! server's state.

pub mod cache;
pub mod image_keys;
pub mod image_source;
pub mod proxy;
pub mod resize;
pub mod resize_origin;
pub mod shadow;
pub mod upgrade;

use std::sync::Arc;

use http::{HeaderValue, Response, Version};

pub use cache::CacheAction;
pub use proxy::ProxyAction;
pub use resize::ResizeAction;

use crate::action::shadow::Shadowing;
use crate::body::ProxyBody;

/// A rule's action, ready to serve.
pub enum RuleAction {
    /// Forward to the rule's pool (shadow copies and upgrades are part of proxying).
    Proxy(ProxyAction),
    /// Answer GET and HEAD through the cache; other methods are proxied.
    Cache(Arc<CacheAction>),
    /// Serve resized images through the cache.
    Resize(Arc<ResizeAction>),
}

impl RuleAction {
    /// Which action this is (as configured).
    pub fn kind(&self) -> kura_config::Action {
        match self {
            RuleAction::Proxy(_) => kura_config::Action::Proxy,
            RuleAction::Cache(_) => kura_config::Action::Cache,
            RuleAction::Resize(_) => kura_config::Action::Resize,
        }
    }
}

/// An action's answer, before the finish phase (`request.rs`) makes it the client's response.
pub enum Reply {
    /// Made by kura itself (a PURGE result, a redirect): sent as it is.
    Generated(Response<ProxyBody>),
    /// A message relayed from an upstream or the cache: its hop-by-hop headers go, `Via` is
    /// added for the version it was `received` with, the rule's response headers apply.
    Relayed {
        response: Response<ProxyBody>,
        received: Version,
        /// Where the answer is teed for a shadow comparison (as the upstream sent it, less
        /// its hop-by-hop headers).
        shadowing: Option<Shadowing>,
    },
    /// A `101 Switching Protocols`: relayed like any answer, with its `Upgrade` kept.
    Switched {
        response: Response<ProxyBody>,
        upgrade: HeaderValue,
    },
}

impl Reply {
    /// A body the cache serves, as relayed.
    pub fn cached(resp: Response<kura_cache::CacheBody>) -> Self {
        Reply::Relayed {
            response: resp.map(ProxyBody::cache),
            received: Version::HTTP_11,
            shadowing: None,
        }
    }

    /// The status the client will see.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Reply::Generated(r) | Reply::Relayed { response: r, .. } => r.status(),
            Reply::Switched { response, .. } => response.status(),
        }
    }

    /// The answer's headers (before the finish phase).
    pub fn headers(&self) -> &http::HeaderMap {
        match self {
            Reply::Generated(r) | Reply::Relayed { response: r, .. } => r.headers(),
            Reply::Switched { response, .. } => response.headers(),
        }
    }
}
