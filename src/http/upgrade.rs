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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade::downcast;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, debug_span, info, warn};

use super::body::{self, Body};
use super::handshake::Handshake;
use super::refusal::{self, Refusal};
use super::router::{Accepted, Target};
use super::state::Shared;
use crate::inbox::Inbox;
use crate::metrics::Protocol;
use crate::rooms::Membership;
use crate::session::{End, Session};
use crate::stream::SessionStream;
use crate::{chat, echo, tutorial};

/// What an upgraded connection does.
pub enum Route {
    /// Every data message back to its sender.
    Echo,
    /// The tutorial's dialogue.
    Tutorial,
    /// A seat in a chat room, taken before the 101 (so a full room is a 503).
    Chat(Membership, Inbox),
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Echo => "echo",
            Route::Tutorial => "tutorial",
            Route::Chat(..) => "chat",
        }
    }
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
        shared.metrics.limit_hit("connections");
        return Err(refusal::TOO_MANY);
    };
    let route = match accepted.target {
        Target::Echo => Route::Echo,
        Target::Tutorial => Route::Tutorial,
        Target::Chat(room) => {
            let (member, inbox) = shared.rooms.join(&room)?;
            Route::Chat(member, inbox)
        }
    };
    let mut res = Response::new(body::empty());
    match accepted.handshake {
        Handshake::Upgrade(accept) => {
            shared
                .sessions
                .spawn(run_upgraded::<S, B>(shared.clone(), req, route, peer, slot));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = res.headers_mut();
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert("sec-websocket-accept", accept);
        }
        Handshake::Connect => {
            shared
                .sessions
                .spawn(run_stream(shared.clone(), req, route, peer, slot));
            // RFC 8441 §5: a 2xx opens the WebSocket; nothing else to add.
            *res.status_mut() = StatusCode::OK;
        }
    }
    let h = res.headers_mut();
    h.insert("x-server", shared.server_name.clone());
    if let Some(protocol) = accepted.subprotocol {
        h.insert("sec-websocket-protocol", protocol);
    }
    Ok(res)
}

/// Runs the session once hyper has sent the 101. `slot` is the connection's
/// place under --max-connections, held until the session ends.
async fn run_upgraded<S, B>(
    shared: Arc<Shared>,
    req: Request<B>,
    route: Route,
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
    let span = debug_span!("ws", %peer, route = route.name());
    session(shared, io, replay, route, peer, Protocol::Http11)
        .instrument(span)
        .await;
    drop(slot);
}

/// Runs the session on an HTTP/2 stream once hyper has sent the 200.
async fn run_stream<B>(
    shared: Arc<Shared>,
    req: Request<B>,
    route: Route,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) where
    B: Send + 'static,
{
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(upgraded) => upgraded,
        Err(e) => return debug!(%peer, error = %e, "h2 stream not opened"),
    };
    let span = debug_span!("ws", %peer, route = route.name(), protocol = "h2");
    let io = TokioIo::new(upgraded);
    session(shared, io, Bytes::new(), route, peer, Protocol::H2)
        .instrument(span)
        .await;
    drop(slot);
}

/// The one place a session starts: runs `route` on `io` (after `replay`,
/// bytes already read from it) until the WebSocket ends, then logs it.
/// `protocol` is the HTTP version that carried the handshake.
async fn session<S>(
    shared: Arc<Shared>,
    io: S,
    replay: Bytes,
    route: Route,
    peer: SocketAddr,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    shared.metrics.connections.inc();
    shared.metrics.connections_open.inc();
    shared.metrics.websocket(protocol, true);

    let name = route.name();
    let (member, inbox, tutorial) = match route {
        Route::Chat(member, inbox) => (Some(member), Some(inbox), false),
        Route::Tutorial => (None, None, true),
        Route::Echo => (None, None, false),
    };
    let stream = SessionStream::new(io, replay)
        .with_shutdown(&shared.shutdown, shared.draining.clone())
        .with_liveness(shared.liveness)
        .with_inbox(inbox);
    let mut session = Session::new(stream, shared.limits, shared.metrics.clone());
    let end = match &member {
        Some(member) => chat::run(&mut session, member).await,
        None if tutorial => tutorial::run(&mut session).await,
        None => echo::run(&mut session, shared.config.greeting.as_deref()).await,
    };
    // Leave the room before the last writes: nothing more is relayed here.
    drop(member);
    let counts = session.shutdown().await;

    shared.metrics.connections_open.dec();
    shared.metrics.websocket(protocol, false);
    shared.metrics.closed(end.code());
    let reason = match &end {
        End::Closed { reason, .. } => reason,
        End::PeerClosed(_) => "peer closed",
        End::Stalled => "peer stopped reading",
        End::Dropped(_) => "connection dropped",
    };
    info!(
        %peer,
        route = name,
        %protocol,
        duration_ms = started.elapsed().as_millis() as u64,
        messages_in = counts.messages_in,
        messages_out = counts.messages_out,
        bytes_in = counts.bytes_in,
        bytes_out = counts.bytes_out,
        close_code = end.code(),
        reason,
        "connection closed"
    );
}
