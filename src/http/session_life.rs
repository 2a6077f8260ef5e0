//! A WebSocket session's life once it is started: what it keeps besides
//! the session (its connection slot, what its log line names), where it
//! runs (a tokio task, or the worker's epoll loop for plain TCP), its close
//! handshake, and the one log line per connection.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::state::Shared;
use crate::metrics::{Counts, Protocol};
use crate::ws::direct::{self, Driven, Edge, Lent};
use crate::ws::proto::{Stop, epoch};
use crate::ws::{End, Handler, Session};

/// What a session keeps besides the session: what its log line names, and
/// its place under --max-connections, given back on drop. Every byte here
/// is carried by every idle connection.
pub struct Conn {
    pub shared: Arc<Shared>,
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
    pub fn new(
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

    fn opened(&self, deflate: bool) {
        let metrics = &self.shared.metrics;
        metrics.connections.inc();
        metrics.connections_open.inc();
        metrics.websocket(self.protocol, true);
        if deflate {
            metrics.deflate_connections.inc();
        }
    }

    fn closed(&self, route: &'static str, end: &End, counts: Counts, deflate: bool) {
        let metrics = &self.shared.metrics;
        metrics.connections_open.dec();
        metrics.websocket(self.protocol, false);
        metrics.closed(end.code());
        let reason = match end {
            End::Closed { reason, .. } => reason,
            End::PeerClosed(_) => "peer closed",
            End::Stalled => "peer stopped reading",
            End::Dropped(_) => "connection dropped",
        };
        info!(
            peer = %self.peer,
            route,
            protocol = %self.protocol,
            deflate,
            duration_ms = millis().saturating_sub(self.started_ms),
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

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.connection_slots.add_permits(1);
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

/// Where a started session runs.
pub trait Launch<S> {
    fn launch<H: Handler + Send + 'static>(self, conn: Conn, session: Session<S>, route: H);
}

/// A tokio task of its own.
pub struct Task;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Launch<S> for Task {
    fn launch<H: Handler + Send + 'static>(self, conn: Conn, session: Session<S>, route: H) {
        conn.opened(session.deflate());
        tokio::spawn(serve(conn, session, route));
    }
}

/// The worker's epoll loop ([`direct`]) for the steady state, then a task
/// for the close handshake; a task from the start when there is no loop.
pub struct Looped;

impl Launch<Lent> for Looped {
    fn launch<H: Handler + Send + 'static>(self, conn: Conn, session: Session<Lent>, route: H) {
        conn.opened(session.deflate());
        let mut session = session;
        let fd = session.io_mut().as_raw_fd();
        let looped = Box::new(InLoop {
            conn,
            session,
            route,
            fd,
            stop: None,
        });
        if let Err(back) = direct::adopt(looped) {
            back.leave();
        }
    }
}

/// A session in the worker's loop, with what it leaves the loop with.
struct InLoop<H> {
    conn: Conn,
    session: Session<Lent>,
    route: H,
    fd: RawFd,
    /// Why the steady state ended (None: it did not; it goes on as a task).
    stop: Option<Stop>,
}

impl<H: Handler + Send + 'static> Driven for InLoop<H> {
    fn fd(&self) -> RawFd {
        self.fd
    }

    fn poll(&mut self, cx: &mut Context<'_>, edge: Edge) -> Poll<()> {
        self.session.io_mut().edge(edge);
        let stop = std::task::ready!(self.session.poll_session(cx, &mut self.route));
        self.stop = Some(stop);
        Poll::Ready(())
    }

    fn leave(self: Box<Self>) {
        let InLoop {
            conn,
            session,
            route,
            stop,
            ..
        } = *self;
        let deflate = session.deflate();
        match session.try_map_io(|lent| TcpStream::from_std(lent.into_std())) {
            Ok(session) => {
                tokio::spawn(resume(conn, session, route, stop));
            }
            Err(e) => {
                warn!(peer = %conn.peer, error = %e, "cannot move a session to a task");
                conn.closed(
                    H::ROUTE,
                    &End::Dropped(e.kind()),
                    Counts::default(),
                    deflate,
                );
            }
        }
    }
}

/// A session's life on a task of its own, and its log line. A plain
/// function returning an `async move` block, not an `async fn`: an `async
/// fn` moves its arguments into locals and keeps both copies in its future,
/// doubling the size of every idle session. Nothing lives across the wait
/// that [`Conn`] or the session already holds.
#[allow(clippy::manual_async_fn)]
pub fn serve<S, H>(conn: Conn, mut session: Session<S>, mut route: H) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    H: Handler,
{
    async move {
        let end = session.run(&mut route).await;
        // Boxed: only a closing session pays for the rest of its life.
        Box::pin(ended(conn, session, route, end)).await;
    }
}

/// The rest of the life of a session that leaves the worker's loop: its
/// close handshake (`stop`: why its steady state ended there), or all of
/// it when the loop could not take it.
async fn resume<H: Handler>(
    conn: Conn,
    mut session: Session<TcpStream>,
    mut route: H,
    stop: Option<Stop>,
) {
    let end = match stop {
        Some(stop) => session.close(stop).await,
        None => session.run(&mut route).await,
    };
    ended(conn, session, route, end).await;
}

/// After the close handshake: the TCP shutdown, the metrics, the log line.
async fn ended<S, H>(conn: Conn, session: Session<S>, route: H, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    H: Handler,
{
    // Leave a chat room before the last writes: nothing more is relayed.
    drop(route);
    let deflate = session.deflate();
    let counts = session.shutdown().await;
    conn.closed(H::ROUTE, &end, counts, deflate);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use clap::Parser;

    use super::*;
    use crate::config::Config;
    use crate::echo::Echo;

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

    /// In the worker's loop an idle session is this box, and a slot of the
    /// loop's slab (its waker, 32 B) and the waker's own allocation (40 B):
    /// no task, no tokio registration. results/run.sh measures the RSS.
    #[test]
    #[allow(clippy::print_stdout)] // the measured size, for the record
    fn a_session_in_the_loop_stays_small() {
        let size = std::mem::size_of::<InLoop<Echo>>();
        println!("session in the loop: {size} B");
        assert!(size <= 352, "a session in the loop grew to {size} B");
    }
}
