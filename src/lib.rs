//! wsecho: a fast, hardened WebSocket echo service.
//!
//! # Layout
//!
//! HTTP, top-down (private; see [`Server`]):
//!
//! - `http/server.rs`: the [`Server`] handle, the accept loop, shutdown.
//! - `http/conn.rs`: one connection: TLS, HTTP/1.1 or HTTP/2 (hyper), each
//!   request's way to an answer; the HTTP/2 windows.
//! - `http/router.rs`: which request goes where; decides, changes nothing.
//! - `http/upgrade.rs`: starts the WebSockets the router accepted (slot, room
//!   seat, 101 or 200), in the worker's session loop or as a task.
//! - `http/session_life.rs`: a session's life after that: its connection
//!   record, where it runs, its close handshake, its log line.
//! - `http/handshake.rs`: RFC 6455 upgrade and RFC 8441 extended CONNECT
//!   checks, `Sec-WebSocket-Accept`.
//! - `http/refusal.rs`: every refused request: status, reason, answer.
//! - `http/plain.rs`: the page, `/healthz`, `/metrics`, 405/426.
//! - `http/request_echo.rs`, `http/sse.rs`: `/.http` and `/.sse`.
//! - `http/body.rs`: the response body type.
//! - `http/state.rs`: what connections share (config, limits, metrics,
//!   rooms, shutdown); imports nothing above it.
//! - `http/tls.rs`: rustls termination for `wss://` and `https://`.
//!
//! WebSocket sessions and what they share (nothing here imports `http`):
//!
//! - [`config`]: the command line and its `WSECHO_*` environment twins.
//! - [`ws`]: the WebSocket layer: wsecho's own frame reader, the protocol
//!   rules every route shares, the session's poll loop on per-worker
//!   buffers with one shared keep-alive timer, and the worker's epoll loop
//!   that drives sessions on plain TCP.
//! - [`echo`], [`tutorial`], [`chat`]: the routes.
//! - [`rooms`], [`inbox`], [`redis_link`]: chat rooms, each peer's bounded
//!   queue, rooms shared across instances through Redis.
//! - [`close`], [`utf8`]: close-frame rules; incremental UTF-8 validation.
//! - [`wake`]: the hint that a task of this thread was woken, for the
//!   session loop.
//! - [`metrics`]: the Prometheus exposition.
//! - [`workers`]: the worker threads, a runtime and a listener each.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation and the
//!   per-message codec, on zlib-rs contexts pooled per thread.

pub mod chat;
pub mod close;
pub mod config;
pub mod deflate;
pub mod echo;
mod http;
pub mod inbox;
pub mod metrics;
pub mod redis_link;
pub mod rooms;
pub mod tutorial;
pub mod utf8;
pub mod wake;
pub mod workers;
pub mod ws;

pub use config::Config;
pub use http::{Server, TlsError, bind_reuseport};
