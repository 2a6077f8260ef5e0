//! permessage-deflate (RFC 7692).

mod deflater;
mod inflater;
mod offer;
mod policy;
mod pool;

pub use deflater::{DeflateError, Deflater};
pub use inflater::{InflateError, Inflater};
pub use offer::{Params, negotiate};
pub use policy::{DeflatePolicy, PolicyError};
pub use pool::idle_contexts;

#[cfg(test)]
mod codec_tests;
