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
use tracing::{debug, info, warn};

use crate::chat::Chat;
use crate::echo::Echo;
use crate::router::Route;
use crate::server::Server;
use crate::tutorial::Tutorial;
use crate::ws::{End, Handler, Session};

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
    start(server, io, replay, route, peer, slot);
}

/// Starts the session in a task of its own, one task type per route: the
/// upgrade task carries the request and hyper's upgrade future, which an
/// idle session need not hold, and one task type for all routes would be as
/// big as the biggest.
fn start<S>(
    server: Server,
    io: S,
    replay: Bytes,
    route: Route,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // No tracing span per session: its ~40 bytes would be carried by every
    // idle connection, and the one log line names the peer and route itself.
    let env = server.shared.ws.clone();
    let sessions = server.shared.sessions.clone();
    let conn = Conn { server, peer, slot };
    match route {
        Route::Chat(member, inbox) => {
            let session = Session::new(io, replay, Some(inbox), env);
            sessions.spawn(serve(conn, session, Chat::new(member), "chat"));
        }
        Route::Tutorial => {
            let session = Session::new(io, replay, None, env);
            sessions.spawn(serve(conn, session, Tutorial::default(), "tutorial"));
        }
        Route::Echo => {
            let greeting = conn.server.shared.config.greeting.as_deref();
            let echo = Echo::new(greeting);
            let session = Session::new(io, replay, None, env);
            sessions.spawn(serve(conn, session, echo, "echo"));
        }
    }
}

/// What a session's task keeps besides the session.
struct Conn {
    server: Server,
    peer: SocketAddr,
    /// The connection's place under --max-connections, held to the end.
    slot: OwnedSemaphorePermit,
}

/// One session's life, and its log line. A plain function returning an
/// `async move` block, not an `async fn`: an `async fn` moves its arguments
/// into locals and keeps both copies in its future, doubling the size of
/// every idle session.
#[allow(clippy::manual_async_fn)]
fn serve<S, H>(
    conn: Conn,
    mut session: Session<S>,
    mut route: H,
    name: &'static str,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    async move {
        let metrics = &conn.server.shared.metrics;
        let started = Instant::now();
        metrics.connections.inc();
        metrics.connections_open.inc();

        let end = session.run(&mut route).await;
        // Leave a chat room before the last writes: nothing more is relayed.
        drop(route);
        let counts = Box::pin(session.shutdown()).await;

        metrics.connections_open.dec();
        metrics.closed(end.code());
        let reason = match &end {
            End::Closed { reason, .. } => reason,
            End::PeerClosed(_) => "peer closed",
            End::Stalled => "peer stopped reading",
            End::Dropped(_) => "connection dropped",
        };
        info!(
            peer = %conn.peer,
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
        drop(conn.slot);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;

    /// What the kernel does not hold of an idle connection is mostly this
    /// task: its future, plus tokio's task header and the socket's
    /// registration. Bounded here so it only grows on purpose; RSS per idle
    /// connection is measured end to end by results/run.sh.
    #[tokio::test]
    #[allow(clippy::print_stdout)] // the measured size, for the record
    async fn session_task_future_stays_small() {
        let server = Server::new(Config::parse_from(["wsecho"])).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, _client) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let (io, peer) = accepted.unwrap();
        let slot = server
            .shared
            .connection_slots
            .clone()
            .try_acquire_owned()
            .unwrap();
        let session = Session::new(io, Bytes::new(), None, server.shared.ws.clone());
        let conn = Conn { server, peer, slot };
        let task = serve(conn, session, Echo::new(None), "echo");
        let size = std::mem::size_of_val(&task);
        println!("session task future: {size} B");
        assert!(size <= 560, "session task future grew to {size} B");
    }
}
