//! The HTTP side of wsecho, top-down: [`server`] accepts connections,
//! [`conn`] serves HTTP on each one, [`router`] decides what a request
//! gets, [`upgrade`] starts the WebSocket sessions the router accepted,
//! [`session_life`] runs each one (as a task, or in the worker's epoll loop)
//! to its log line.
//! Below them: [`handshake`] (RFC 6455 checks), [`refusal`] (every refused
//! request and its answer), [`plain`] (the page, health, metrics),
//! [`request_echo`] (`/.http`), [`sse`] (`/.sse`), [`state`] (what
//! connections share), [`tls`], [`body`].
//!
//! Only [`Server`], [`bind_reuseport`] and [`TlsError`] leave this module.

mod body;
mod conn;
mod handshake;
mod plain;
mod refusal;
mod request_echo;
mod router;
mod server;
mod session_life;
mod sse;
mod state;
mod tls;
mod upgrade;

pub use server::{Server, bind_reuseport};
pub use tls::TlsError;
