//! kura's image transforms (Katana's resize, imgproxy's URL options): parameters checked
//! against limits ([`params`]), `Accept` negotiation ([`negotiate`]), the decode → orient →
//! resize → encode pipeline ([`transform`]), a bounded pool to run it on ([`pool`]) and
//! signed URLs ([`sign`]). Nothing here knows HTTP routing or the cache: the proxy's `resize`
//! action wires them together.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod negotiate;
pub mod params;
pub mod pool;
pub mod sign;
pub mod transform;

pub use params::{
    Chosen, Fit, Format, Gravity, ImageLimits, OutputFormat, Params, ParamsError, Raw,
};
pub use pool::{PoolError, Slot, Transformer};
pub use sign::{Signer, SignerError};
pub use transform::{Output, TransformError, transform};
