//! Starting a WebSocket the router accepted: its connection slot and room
//! seat, the answer (101 on HTTP/1.1, 200 on HTTP/2), recovering the byte
//! stream from hyper, and the one function that runs a session on it, with
//! the one log line per connection.
//!
//! HTTP/1.1: hyper hands back the connection as `Upgraded`, a boxed trait
//! object behind adapters. A downcast recovers the concrete stream the
//! connection was served with (plus any bytes hyper read past the request
//! head), so the frame loop does direct, monomorphic reads and writes.
//!
//! HTTP/2: the WebSocket is one stream of the connection; `Upgraded` is
//! hyper's adapter over it (DATA frames, flow control), and stays boxed.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade::downcast;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::body::{self, Body};
use super::handshake::Handshake;
use super::refusal::{self, Refusal};
use super::router::{Accepted, Target};
use super::session_life::{Conn, Launch, Looped, Task};
use super::state::Shared;
use crate::chat::Chat;
use crate::config::Driver;
use crate::deflate::{Params, SharedDeflate};
use crate::echo::Echo;
use crate::inbox::Inbox;
use crate::metrics::{Limit, Protocol};
use crate::rooms::Membership;
use crate::tutorial::{self, Tutorial};
use crate::ws::Session;
use crate::ws::direct::Lent;

/// What an upgraded connection does.
pub enum Route {
    /// Every data message back to its sender.
    Echo,
    /// The tutorial's dialogue.
    Tutorial,
    /// A seat in a chat room, taken before the 101 (so a full room is a 503).
    Chat(Membership, Inbox),
}

/// Takes the WebSocket's place under --max-connections and, for chat, its
/// room seat; spawns its session to run once hyper has sent the answer, and
/// returns that answer. `S` is the stream type the connection was served
/// with, so the session can recover it from hyper.
pub fn start<S, B>(
    shared: &Arc<Shared>,
    req: Request<B>,
    accepted: Accepted,
    peer: SocketAddr,
) -> Result<Response<Body>, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Send + 'static,
{
    let Ok(slot) = shared.connection_slots.clone().try_acquire_owned() else {
        shared.metrics.limit_hit(Limit::Connections);
        return Err(refusal::TOO_MANY);
    };
    let deflate = accepted.deflate;
    let route = match accepted.target {
        Target::Echo => Route::Echo,
        Target::Tutorial => Route::Tutorial,
        Target::Chat(room) => {
            let relays = deflate.and_then(|p| SharedDeflate::new(&p, &shared.ws.deflate));
            let (member, inbox) = shared.rooms.join(&room, relays)?;
            Route::Chat(member, inbox)
        }
    };
    let mut res = Response::new(body::empty());
    match accepted.handshake {
        Handshake::Upgrade(accept) => {
            tokio::spawn(run_upgraded::<S, B>(
                shared.clone(),
                req,
                (route, deflate),
                peer,
                slot,
            ));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = res.headers_mut();
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert("sec-websocket-accept", accept);
        }
        Handshake::Connect => {
            tokio::spawn(run_stream(
                shared.clone(),
                req,
                (route, deflate),
                peer,
                slot,
            ));
            // RFC 8441 §5: a 2xx opens the WebSocket; nothing else to add.
            *res.status_mut() = StatusCode::OK;
        }
    }
    agreed(res.headers_mut(), shared, accepted.subprotocol, deflate);
    Ok(res)
}

/// The headers every WebSocket answer carries, whichever the handshake:
/// the server's name and what was agreed (subprotocol, deflate).
fn agreed(
    h: &mut HeaderMap,
    shared: &Shared,
    subprotocol: Option<HeaderValue>,
    deflate: Option<Params>,
) {
    h.insert("x-server", shared.server_name.clone());
    if let Some(protocol) = subprotocol {
        h.insert("sec-websocket-protocol", protocol);
    }
    if let Some(params) = deflate
        && let Ok(value) = HeaderValue::try_from(params.response_header())
    {
        h.insert("sec-websocket-extensions", value);
    }
}

/// Runs the session once hyper has sent the 101. `slot` is the connection's
/// place under --max-connections, held until the session ends.
async fn run_upgraded<S, B>(
    shared: Arc<Shared>,
    req: Request<B>,
    route: (Route, Option<Params>),
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Send + 'static,
{
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(upgraded) => upgraded,
        Err(e) => return debug!(%peer, error = %e, "upgrade failed"),
    };
    debug!(%peer, "upgraded");
    // The connection was served by hyper-util's version-sniffing builder,
    // which wraps the stream once more; its `downcast` unwraps both.
    let (io, replay) = match downcast::<TokioIo<S>>(upgraded) {
        // `read_buf` is a view into hyper's whole read buffer (8 KiB and
        // up): keeping it, even empty, would keep that buffer for the
        // connection's life. Copy the rare leftover out instead.
        Ok(parts) if parts.read_buf.is_empty() => (parts.io.into_inner(), Bytes::new()),
        Ok(parts) => (
            parts.io.into_inner(),
            Bytes::copy_from_slice(&parts.read_buf),
        ),
        Err(_) => {
            // Unreachable unless the accept loop and this call disagree on
            // the stream type; refuse rather than run on the slow path.
            return warn!(%peer, "upgraded stream has an unexpected type");
        }
    };
    start_session(shared, io, replay, route, peer, slot, Protocol::Http11);
}
/// Runs the session on an HTTP/2 stream once hyper has sent the 200.
async fn run_stream<B>(
    shared: Arc<Shared>,
    req: Request<B>,
    route: (Route, Option<Params>),
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) where
    B: Send + 'static,
{
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(upgraded) => upgraded,
        Err(e) => return debug!(%peer, error = %e, "h2 stream not opened"),
    };
    let io = TokioIo::new(upgraded);
    start_session(shared, io, Bytes::new(), route, peer, slot, Protocol::H2);
}

/// The one place a session starts, in a task of its own and one task type
/// per route (the upgrade task carries the request and hyper's upgrade
/// future, which an idle session need not hold, and one task type for all
/// routes would be as big as the biggest), or, on plain TCP over HTTP/1.1
/// with `--driver epoll`, in the worker's epoll loop. No tracing span per
/// session: its ~40 bytes would be carried by every idle connection, and
/// the one log line names the peer and route itself.
fn start_session<S>(
    shared: Arc<Shared>,
    io: S,
    replay: Bytes,
    route: (Route, Option<Params>),
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let looped = shared.config.driver == Driver::Epoll;
    let conn = Conn::new(shared, peer, slot, protocol);
    if looped {
        match plain(io) {
            // `into_std` takes the socket out of tokio's epoll: one
            // registration each, or every event would wake both.
            Ok(tcp) => match tcp.into_std() {
                Ok(tcp) => return dispatch(conn, Lent::new(tcp), replay, route, Looped),
                Err(e) => return debug!(%peer, error = %e, "socket lost at the upgrade"),
            },
            Err(io) => return dispatch(conn, io, replay, route, Task),
        }
    }
    dispatch(conn, io, replay, route, Task)
}

/// Builds the route's session on `io` and launches it where `launch` says.
fn dispatch<S: AsyncRead + AsyncWrite + Unpin + 'static, L: Launch<S>>(
    conn: Conn,
    io: S,
    replay: Bytes,
    (route, deflate): (Route, Option<Params>),
    launch: L,
) {
    let env = conn.shared.ws.clone();
    match route {
        Route::Chat(member, inbox) => {
            let session = Session::new(io, replay, Some(inbox), deflate, env);
            launch.launch(conn, session, Chat::new(member));
        }
        Route::Tutorial => {
            let mut session = Session::new(io, replay, None, deflate, env);
            session.greet(tutorial::GREETING);
            launch.launch(conn, session, Tutorial::default());
        }
        Route::Echo => {
            let mut session = Session::new(io, replay, None, deflate, env);
            if let Some(text) = &conn.shared.config.greeting {
                session.greet(text);
            }
            launch.launch(conn, session, Echo);
        }
    }
}

/// The connection's stream as a plain `TcpStream`, when that is what the
/// accept loop served it with (not TLS, not a test's in-memory pipe).
fn plain<S: 'static>(io: S) -> Result<TcpStream, S> {
    let mut slot = Some(io);
    if let Some(tcp) = (&mut slot as &mut dyn Any).downcast_mut::<Option<TcpStream>>()
        && let Some(tcp) = tcp.take()
    {
        return Ok(tcp);
    }
    match slot {
        Some(io) => Err(io),
        None => unreachable!("taken only as a TcpStream"),
    }
}
