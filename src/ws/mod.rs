//! The WebSocket layer under every route: wsecho's own frame reader, the
//! protocol rules, and the session that drives a connection with per-worker
//! buffers and one shared timer.
//!
//! - [`reader`]: bytes in, whole frames (or heads and payload pieces)
//!   out, unmasked in place.
//! - [`proto`]: fragmentation, limits, UTF-8, control frames, cut-through.
//! - `route`: what a route sees of its data ([`Piece`]) and answers ([`Reply`]).
//! - `compressed`: permessage-deflate messages in and out, when negotiated.
//! - [`out`]: gathered and vectored writes, the spill behind a full socket.
//! - [`session`]: the poll loop and the close handshake.
//! - [`sweep`]: keep-alive, idle and stall ticks, and the drain signal.
//! - [`direct`]: the worker's epoll loop that drives sessions on plain TCP.

mod compressed;
pub mod direct;
mod limits;
pub mod out;
pub mod proto;
pub mod reader;
mod route;
pub mod session;
pub mod sweep;
#[cfg(test)]
mod testing;

pub use limits::Limits;
pub use proto::CHUNK;
pub use route::{Handler, Piece, Reply};
pub use session::{End, Env, Liveness, Session};
pub use sweep::Sweep;
