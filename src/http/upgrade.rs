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

use std::fmt;
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade::downcast;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

use super::body::{self, Body};
use super::handshake::Handshake;
use super::refusal::{self, Refusal};
use super::router::{Accepted, Target};
use super::state::Shared;
use crate::chat::Chat;
use crate::deflate::Params;
use crate::echo::Echo;
use crate::inbox::Inbox;
use crate::metrics::Protocol;
use crate::rooms::Membership;
use crate::tutorial::{self, Tutorial};
use crate::ws::proto::epoch;
use crate::ws::{End, Handler, Session};

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
    let deflate = accepted.deflate;
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
    let h = res.headers_mut();
    h.insert("x-server", shared.server_name.clone());
    if let Some(protocol) = accepted.subprotocol {
        h.insert("sec-websocket-protocol", protocol);
    }
    if let Some(params) = deflate
        && let Ok(value) = HeaderValue::try_from(params.response_header())
    {
        h.insert("sec-websocket-extensions", value);
    }
    Ok(res)
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
/// per route: the upgrade task carries the request and hyper's upgrade
/// future, which an idle session need not hold, and one task type for all
/// routes would be as big as the biggest. No tracing span per session: its
/// ~40 bytes would be carried by every idle connection, and the one log line
/// names the peer and route itself.
fn start_session<S>(
    shared: Arc<Shared>,
    io: S,
    replay: Bytes,
    (route, deflate): (Route, Option<Params>),
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let env = shared.ws.clone();
    let conn = Conn::new(shared, peer, slot, protocol);
    match route {
        Route::Chat(member, inbox) => {
            let session = Session::new(io, replay, Some(inbox), deflate, env);
            tokio::spawn(serve(conn, session, Chat::new(member)));
        }
        Route::Tutorial => {
            let mut session = Session::new(io, replay, None, deflate, env);
            session.greet(tutorial::GREETING);
            tokio::spawn(serve(conn, session, Tutorial::default()));
        }
        Route::Echo => {
            let mut session = Session::new(io, replay, None, deflate, env);
            if let Some(text) = &conn.shared.config.greeting {
                session.greet(text);
            }
            tokio::spawn(serve(conn, session, Echo));
        }
    }
}

/// What a session's task keeps besides the session: what its log line
/// names, and its place under --max-connections, given back on drop.
/// Every byte here is carried by every idle connection.
struct Conn {
    shared: Arc<Shared>,
    peer: Peer,
    /// The HTTP version that carried the handshake.
    protocol: Protocol,
    /// Milliseconds since [`epoch`]: half an `Instant`.
    started_ms: u64,
}

impl Conn {
    /// The permit is forgotten and its place returned by [`Conn`]'s drop:
    /// the shared semaphore is already here, and a permit would carry a
    /// second pointer to it in every idle session.
    fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        protocol: Protocol,
    ) -> Self {
        slot.forget();
        Conn {
            shared,
            peer: Peer::from(peer),
            protocol,
            started_ms: millis(),
        }
    }
}

fn millis() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A peer's address for the log line in 20 bytes, where a `SocketAddr`
/// takes 32: without IPv6 flow information and scope id, so a link-local
/// peer is logged without its `%scope`.
#[derive(Debug, Clone, Copy)]
struct Peer {
    ip: [u8; 16],
    port: u16,
    v4: bool,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        let (ip, v4) = match addr.ip() {
            IpAddr::V4(ip) => (ip.to_ipv6_mapped().octets(), true),
            IpAddr::V6(ip) => (ip.octets(), false),
        };
        Peer {
            ip,
            port: addr.port(),
            v4,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) if self.v4 => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, self.port).fmt(f)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.connection_slots.add_permits(1);
    }
}

/// One session's life, and its log line. A plain function returning an
/// `async move` block, not an `async fn`: an `async fn` moves its arguments
/// into locals and keeps both copies in its future, doubling the size of
/// every idle session. Nothing lives across the wait that [`Conn`] or the
/// session already holds.
#[allow(clippy::manual_async_fn)]
fn serve<S, H>(conn: Conn, mut session: Session<S>, mut route: H) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    async move {
        let metrics = &conn.shared.metrics;
        metrics.connections.inc();
        metrics.connections_open.inc();
        metrics.websocket(conn.protocol, true);
        if session.deflate() {
            metrics.deflate_connections.inc();
        }

        let end = session.run(&mut route).await;
        // Leave a chat room before the last writes: nothing more is relayed.
        drop(route);
        let deflate = session.deflate();
        let counts = Box::pin(session.shutdown()).await;

        let metrics = &conn.shared.metrics;
        metrics.connections_open.dec();
        metrics.websocket(conn.protocol, false);
        metrics.closed(end.code());
        let reason = match &end {
            End::Closed { reason, .. } => reason,
            End::PeerClosed(_) => "peer closed",
            End::Stalled => "peer stopped reading",
            End::Dropped(_) => "connection dropped",
        };
        info!(
            peer = %conn.peer,
            route = H::ROUTE,
            protocol = %conn.protocol,
            deflate,
            duration_ms = millis().saturating_sub(conn.started_ms),
            messages_in = counts.messages_in,
            messages_out = counts.messages_out,
            bytes_in = counts.bytes_in,
            bytes_out = counts.bytes_out,
            close_code = end.code(),
            reason,
            "connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;

    /// What the kernel does not hold of an idle connection is mostly this
    /// task (its future and tokio's 104 bytes of task header and trailer)
    /// and the socket's registration (256 B). tokio aligns a task to 128
    /// bytes, so up to 408 B of future the task takes 512 B (tests/task_size.rs); one byte more
    /// and it takes 640, which mimalloc, unable to hand out a 640 B block
    /// at 128-byte alignment from its size class, serves from a 768 B
    /// block. RSS per idle connection is measured end to end by
    /// results/run.sh; this keeps the future under the step.
    #[tokio::test]
    #[allow(clippy::print_stdout)] // the measured size, for the record
    async fn session_task_future_stays_small() {
        let shared = Arc::new(Shared::new(Config::parse_from(["wsecho"])).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, _client) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let (io, peer) = accepted.unwrap();
        let slot = shared.connection_slots.clone().try_acquire_owned().unwrap();
        let session = Session::new(io, Bytes::new(), None, None, shared.ws.clone());
        let conn = Conn::new(shared, peer, slot, Protocol::Http11);
        let task = serve(conn, session, Echo);
        let size = std::mem::size_of_val(&task);
        println!("session task future: {size} B");
        assert!(size <= 408, "session task future grew to {size} B");
    }
}
