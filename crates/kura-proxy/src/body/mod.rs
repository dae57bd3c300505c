//! Streaming bodies in both directions: [`request`] (client to upstream) and [`response`]
//! (to the client). Nothing here buffers a body whole.

pub mod request;
pub mod response;

pub use request::{BodyFault, ReqBody};
pub use response::ProxyBody;
