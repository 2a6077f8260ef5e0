//! wsecho: a fast, hardened WebSocket echo service.
//!
//! # Layout
//!
//! - [`config`]: the command line and its `WSECHO_*` environment twins.
//! - [`server`]: listeners, the accept loop, per-connection HTTP/1.1 (hyper),
//!   shutdown; the state connections share.
//! - [`router`]: which request goes where; the plain HTTP answers.
//! - [`handshake`]: checking an upgrade request, `Sec-WebSocket-Accept`.
//! - [`upgrade`]: from hyper's `Upgraded` back to the socket, one session's
//!   life and its log line.
//! - [`stream`]: the socket under a session, with shutdown, idle and
//!   keep-alive watchdogs that do not cancel the frame reader.
//! - [`session`]: the protocol rules every route shares, on fastwebsockets.
//! - [`echo`], [`tutorial`], [`chat`]: the routes.
//! - [`rooms`], [`inbox`], [`redis_link`]: chat rooms, each peer's bounded
//!   queue, rooms shared across instances through Redis.
//! - [`watchdog`]: idle and write-stall detection, keep-alive pings.
//! - [`close`], [`utf8`]: close-frame rules; incremental UTF-8 validation.
//! - [`metrics`]: the Prometheus exposition.
//! - [`tls`]: rustls termination for `wss://`.

pub mod chat;
pub mod close;
pub mod config;
pub mod deflate;
pub mod echo;
pub mod handshake;
pub mod inbox;
pub mod metrics;
pub mod redis_link;
pub mod rooms;
pub mod router;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod tutorial;
pub mod upgrade;
pub mod utf8;
pub mod watchdog;

pub use config::Config;
pub use server::{Server, bind_reuseport};
