//! An upgraded connection's life: recovering the socket from hyper, running
//! the route's session, and the one log line per connection.
//!
//! hyper hands back the connection as `Upgraded`, a boxed trait object behind
//! two adapters. `Upgraded::downcast` recovers the concrete stream the
//! connection was served with (plus any bytes hyper read past the request
//! head), so the frame loop does direct, monomorphic reads and writes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::chat::Chat;
use crate::echo::Echo;
use crate::router::Route;
use crate::server::Server;
use crate::tutorial::Tutorial;
use crate::ws::{End, Session};

/// Runs the session once hyper has sent the 101. `slot` is the connection's
/// place under --max-connections, held until the session ends.
pub async fn run<S, B>(
    server: Server,
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
    let (io, replay) = match upgraded.downcast::<TokioIo<S>>() {
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
    // The session gets a task of its own: this one carries the request
    // and hyper's upgrade future, which an idle session need not hold.
    let span = debug_span!("ws", %peer, route = route.name());
    let sessions = server.shared.sessions.clone();
    sessions.spawn(
        async move {
            session(server, io, replay, route, peer).await;
            drop(slot);
        }
        .instrument(span),
    );
}

async fn session<S>(server: Server, io: S, replay: Bytes, route: Route, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = &server.shared;
    let started = Instant::now();
    shared.metrics.connections.inc();
    shared.metrics.connections_open.inc();

    let name = route.name();
    let greeting = shared.config.greeting.as_deref();
    let (end, counts) = match route {
        Route::Chat(member, inbox) => {
            let mut session = Session::new(io, replay, Some(inbox), shared.ws.clone());
            let mut chat = Chat::new(member);
            let end = session.run(&mut chat).await;
            // Leave the room before the last writes: nothing more is relayed.
            drop(chat);
            (end, session.shutdown().await)
        }
        Route::Tutorial => {
            let mut session = Session::new(io, replay, None, shared.ws.clone());
            let end = session.run(&mut Tutorial::default()).await;
            (end, session.shutdown().await)
        }
        Route::Echo => {
            let mut session = Session::new(io, replay, None, shared.ws.clone());
            let end = session.run(&mut Echo { greeting }).await;
            (end, session.shutdown().await)
        }
    };

    shared.metrics.connections_open.dec();
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
