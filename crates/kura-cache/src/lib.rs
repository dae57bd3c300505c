//! kura's HTTP cache: a shared cache by RFC 9111, with memory and disk tiers, large objects in
//! segments, and one origin fetch per object or segment however many clients ask at once.
//!
//! - [`policy`]: what may be stored and reused, for how long (with `http-cache-semantics`).
//! - [`object`]: a stored response version; bodies live in segments keyed by version.
//! - [`tier`]: the storage trait and the tier stack (memory → lower tiers: the disk);
//!   [`memory`] (moka) and [`disk`] (files). The cluster is not a tier: it wraps a rule's
//!   [`Origin`], and marks owners' answers [`FromPeer`] so they stay out of the lower tiers.
//! - [`flight`]: coalescing of object and segment fetches, streaming to every waiter.
//! - [`engine`]: the request state machine (hit, miss, revalidation, stale, pass) and purge;
//!   [`hit_for_pass`] remembers the keys whose answers may not be stored.
//! - `fill`: origin fetches and the pumps that store what they receive.
//! - [`body`]: response bodies assembled from segments as they become available.
//!
//! The proxy gives each `cache` rule's requests to [`Cache::serve`] with an [`Origin`].

#![deny(missing_docs)]

pub mod body;
pub mod buffers;
pub mod disk;
pub mod engine;
mod fill;
pub mod flight;
pub mod hit_for_pass;
pub mod key;
pub mod memory;
pub mod object;
pub mod origin;
pub mod policy;
pub mod range;
pub mod stats;
#[cfg(test)]
mod test_util;
pub mod tier;

pub use body::CacheBody;
pub use engine::{Cache, CacheRequest, Purged};
pub use origin::{BoxError, FetchInfo, FromPeer, Origin, OriginBody, OriginError, PeerRequest};
pub use stats::{Capacity, StatsSnapshot};

/// Hop-by-hop headers, never stored (RFC 9110 §7.6.1).
pub use kura_http::is_hop_by_hop;
