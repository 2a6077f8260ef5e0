//! permessage-deflate (RFC 7692).

mod offer;
mod policy;

pub use offer::{Params, negotiate};
pub use policy::{DeflatePolicy, PolicyError};
