//! One WebSocket connection after the handshake, driven by hand as a poll
//! loop: drain what waits, relay a chat peer's inbox, read into the
//! worker's receive buffer, answer every frame of that read, repeat.
//!
//! While idle a session owns its socket and a few hundred bytes of state:
//! no read buffer (reads go into `WORKER`'s, one per thread), no write
//! buffer (small frames gather in the worker's cork; see [`super::out`]),
//! no timer (one [`super::sweep::Sweep`] ticks for all). The read loop holds no borrow
//! across a wait, so it is cancel-safe by construction: shutdown and
//! timeouts are checked between reads.
//!
//! Here: the steady state (read, answer, drain). Beside it: `env` (what a
//! session is given and gives back), `live` (keep-alive, timeouts, the
//! drain), `relay` (a chat peer's room traffic) and `closing` (the close
//! handshake and the TCP shutdown).

use std::any::Any;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::compressed::Compression;
use super::direct::Lent;
use super::out::{GATHER_MAX, Spill, Writer};
use super::proto::{Proto, Stop};
use super::route::Handler;
use super::sweep::Ticket;
use crate::deflate::Params;
use crate::inbox::Inbox;

pub use env::{End, Env, Liveness};
use live::Live;

mod closing;
mod env;
mod live;
mod relay;
#[cfg(test)]
mod tests;

/// One read's worth: the most a session takes in before answering it, and
/// so the most unsent bytes a full socket can leave it holding.
const RECV_SIZE: usize = 128 << 10;

/// Most reads answered in one poll before the session yields, so one busy
/// peer cannot starve the others on its worker (tokio's own budget covers
/// TCP sockets; an HTTP/2 stream may not have one).
const PASSES_PER_POLL: u32 = 32;

/// An empty, unmasked ping frame (server frames are never masked).
const PING: [u8; 2] = [0x89, 0x00];

/// The worker thread's buffers, shared by every session it runs. A session
/// borrows them only inside one poll, never across a wait.
struct Worker {
    recv: Box<[u8]>,
    cork: Vec<u8>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            recv: vec![0; RECV_SIZE].into_boxed_slice(),
            cork: Vec::with_capacity(GATHER_MAX),
        }
    }
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker::new());
}

/// Runs `f` with this thread's buffers (or, were they somehow in use, a
/// fresh pair: correct, just slower).
fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> R {
    WORKER.with(|w| match w.try_borrow_mut() {
        Ok(mut w) => f(&mut w),
        Err(_) => f(&mut Worker::new()),
    })
}

/// Whether the last read emptied the socket, so that another would only
/// be `Pending`. Known only for the worker loop's own socket ([`Lent`]),
/// whose short read says so (and whose writes need no flush: `poll_run`
/// relies on both). Any other stream (TLS, an HTTP/2 stream, a
/// task's `TcpStream`) is read until it says `Pending` itself: that read is
/// what registers the task's waker with it. The type test is decided at
/// compile time.
fn read_drained<S: 'static>(io: &S) -> bool {
    (io as &dyn Any)
        .downcast_ref::<Lent>()
        .is_some_and(Lent::read_drained)
}

pub struct Session<S> {
    io: S,
    spill: Spill,
    proto: Proto,
    live: Live,
    /// A chat peer's relay queue (boxed: most sessions have none).
    inbox: Option<Box<Inbox>>,
    /// Bytes hyper read past the request head; handled before the socket.
    /// Boxed: rare, and an idle session should not carry a `Bytes`.
    replay: Option<Box<Bytes>>,
    /// In the middle of a large frame with echoes it cannot write: armed
    /// when the echo stopped moving, disarmed by any byte the peer takes
    /// (see [`Session::read_behind`]).
    behind: Option<Pin<Box<tokio::time::Sleep>>>,
    /// It went off: the session reads on, up to --max-backlog, until the
    /// frame ends.
    reading_behind: bool,
    /// Written bytes may sit in a TLS layer until flushed.
    needs_flush: bool,
    close_sent: bool,
    env: Arc<Env>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Session<S> {
    /// `deflate`: the permessage-deflate parameters the handshake agreed to.
    pub fn new(
        io: S,
        replay: Bytes,
        inbox: Option<Inbox>,
        deflate: Option<Params>,
        env: Arc<Env>,
    ) -> Self {
        env.sweep.start(env.liveness.map(|l| l.interval));
        let deflate =
            deflate.map(|p| Box::new(Compression::new(&p, &env.deflate, env.limits.max_message)));
        Session {
            io,
            spill: Spill::default(),
            proto: Proto::new(&env.limits, deflate),
            live: Live {
                ticket: Ticket::new(env.sweep.clone()),
                seen: env.sweep.tick() as u32,
                heard: false,
                wrote: false,
                silent: 0,
                stalled: 0,
            },
            inbox: inbox.map(Box::new),
            replay: (!replay.is_empty()).then(|| Box::new(replay)),
            behind: None,
            reading_behind: false,
            needs_flush: false,
            close_sent: false,
            env,
        }
    }

    /// Whether the connection negotiated permessage-deflate.
    pub fn deflate(&self) -> bool {
        self.proto.deflate.is_some()
    }

    /// Runs the route until the connection ends; then closes it properly.
    ///
    /// Not an `async fn`: its future is carried by every idle session, and
    /// an `async fn` keeps its arguments and its locals apart (160 bytes
    /// where this block needs a quarter of that).
    #[allow(clippy::manual_async_fn)]
    pub fn run<'a, H: Handler>(&'a mut self, h: &'a mut H) -> impl Future<Output = End> + 'a {
        async move {
            let stop = poll_fn(|cx| self.poll_run(cx, h)).await;
            // Boxed: the close handshake's timers are only paid for by a
            // session that is closing, not carried by every idle one.
            Box::pin(self.finish(stop)).await
        }
    }

    /// One poll of the steady state, for a caller that drives the session
    /// itself ([`super::direct`]): Ready with why it stopped, then
    /// [`Session::close`] finishes it.
    pub fn poll_session<H: Handler>(&mut self, cx: &mut Context<'_>, h: &mut H) -> Poll<Stop> {
        self.poll_run(cx, h)
    }

    /// The close handshake after [`Session::poll_session`] stopped.
    pub async fn close(&mut self, stop: Stop) -> End {
        Box::pin(self.finish(stop)).await
    }

    pub fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The same session on another stream type (the same connection, moved
    /// from the worker's loop to a task of its own); dropped if `f` fails.
    pub fn try_map_io<T, E>(self, f: impl FnOnce(S) -> Result<T, E>) -> Result<Session<T>, E> {
        Ok(Session {
            io: f(self.io)?,
            spill: self.spill,
            proto: self.proto,
            live: self.live,
            inbox: self.inbox,
            replay: self.replay,
            behind: self.behind,
            reading_behind: self.reading_behind,
            needs_flush: self.needs_flush,
            close_sent: self.close_sent,
            env: self.env,
        })
    }

    /// Queues a text message to go before any echo or reply: a route's
    /// first line (the tutorial's, or `--greeting`).
    pub fn greet(&mut self, text: &str) {
        self.queue_frame(OpCode::Text, text.as_bytes());
        self.proto.counted_out(true, text.len());
    }

    fn flush_counts(&mut self) {
        let relayed = self
            .inbox
            .as_ref()
            .map(|inbox| inbox.state().take_delivered());
        self.proto.flush_counts(&self.env.metrics, relayed);
    }

    fn poll_run<H: Handler>(&mut self, cx: &mut Context<'_>, h: &mut H) -> Poll<Stop> {
        match self.passes(cx, h) {
            Some(stop) => Poll::Ready(stop),
            None => self.wait(cx),
        }
    }

    /// Drains, relays and reads until the session stops (`Some`) or has
    /// nothing to do until it is woken (`None`: then [`Session::wait`],
    /// called from one place so that it can be inlined there).
    #[inline]
    fn passes<H: Handler>(&mut self, cx: &mut Context<'_>, h: &mut H) -> Option<Stop> {
        let mut passes = 0;
        loop {
            if let Some(stop) = self.check_live().or_else(|| self.slow()) {
                return Some(stop);
            }
            // The large frame ended: the next one starts with the usual
            // backpressure and a fresh grace period.
            if (self.reading_behind || self.behind.is_some()) && !self.proto.cutting_through() {
                self.behind = None;
                self.reading_behind = false;
            }
            match self.poll_drain(cx) {
                Poll::Ready(Ok(())) => {
                    // Asked here, not only inside: most sessions have no
                    // relay queue, and the call costs more than the answer.
                    if self.inbox.is_some()
                        && let Err(stop) = self.relay(cx)
                    {
                        return Some(stop);
                    }
                    if !self.spill.is_empty() || self.relay_unfinished() {
                        continue;
                    }
                }
                Poll::Ready(Err(e)) => return Some(Stop::Dropped(e.kind())),
                // Backpressure: a peer that does not read gets nothing more
                // read from it. Except in the middle of a large frame: a
                // client that sends a whole message before reading its echo
                // cannot read until it is done, so its echo is held (up to
                // --max-backlog) while the rest arrives.
                Poll::Pending if self.read_behind(cx) => {}
                Poll::Pending => return None,
            }
            if passes == PASSES_PER_POLL {
                cx.waker().wake_by_ref();
                return None;
            }
            passes += 1;
            match self.read_pass(cx, h) {
                Poll::Ready(Some(stop)) => return Some(stop),
                Poll::Ready(None) => {}
                Poll::Pending => return None,
            }
            // The read emptied the loop's socket: sleep until the next edge,
            // without a pass that would only find it empty (1,506 -> 1,392
            // instructions per echo at 100 x 20 B,
            // `scripts/user-instructions.sh`). Nothing is left to write:
            // the spill is empty, and the loop's socket (`Lent`) has no
            // buffer to flush. A chat peer takes the usual way round, past
            // its relay queue.
            if self.inbox.is_none() && self.spill.is_empty() && read_drained(&self.io) {
                self.needs_flush = false;
                return None;
            }
        }
    }

    /// A frame of our own outside a read pass (greeting, ping, close):
    /// queued behind whatever waits, written by the next drain.
    fn queue_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut head = [0u8; 10];
        let n = if opcode == OpCode::Ping && payload.is_empty() {
            head[..2].copy_from_slice(&PING);
            2
        } else {
            Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head)
        };
        self.spill.push(&head[..n]);
        self.spill.push(payload);
    }

    /// Writes what waits: the rest of a relayed frame, then the spill, then
    /// a TLS flush. Inlined to its first test: before every read, and
    /// nearly always with nothing waiting.
    #[inline]
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.inbox.is_none() && self.spill.is_empty() && !self.needs_flush {
            return Poll::Ready(Ok(()));
        }
        self.poll_drain_waiting(cx)
    }

    #[inline(never)]
    fn poll_drain_waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(inbox) = &mut self.inbox {
            while let Some(rest) = inbox.unfinished() {
                match std::task::ready!(Pin::new(&mut self.io).poll_write(cx, rest))? {
                    0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    n => {
                        inbox.consumed(n);
                        self.live.wrote = true;
                        self.needs_flush = true;
                    }
                }
            }
        }
        let mut wrote = false;
        let drained = self.spill.poll_drain(&mut self.io, cx, &mut wrote);
        if wrote {
            self.live.wrote = true;
            self.needs_flush = true;
            // The peer reads: no reason to read on behind its echoes.
            self.behind = None;
        }
        std::task::ready!(drained)?;
        if self.needs_flush {
            std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// One read, and the answers to every frame in it.
    fn read_pass<H: Handler>(&mut self, cx: &mut Context<'_>, h: &mut H) -> Poll<Option<Stop>> {
        with_worker(|worker| {
            let n = match self.fill(cx, &mut worker.recv) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Stop::Dropped(io::ErrorKind::UnexpectedEof)));
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Stop::Dropped(e.kind()))),
                Poll::Pending => return Poll::Pending,
            };
            self.live.heard = true;
            let mut w = Writer::new(&mut self.io, cx, &mut worker.cork, &mut self.spill, false);
            let env = &*self.env;
            let res =
                self.proto
                    .process(&mut worker.recv[..n], &mut w, h, &env.limits, &env.metrics);
            w.flush();
            let (wrote, error) = (w.wrote, w.error.take());
            if wrote > 0 {
                self.live.wrote = true;
                self.needs_flush = true;
            }
            if let Some(e) = error {
                return Poll::Ready(Some(Stop::Dropped(e.kind())));
            }
            Poll::Ready(res.err())
        })
    }

    /// Reads into `buf`: hyper's leftover first, then the socket.
    fn fill(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if let Some(replay) = &mut self.replay {
            // Copy forced by hyper: it read these bytes into its own buffer.
            // At most once, for clients that send before they see the 101.
            let n = replay.len().min(buf.len());
            buf[..n].copy_from_slice(&replay[..n]);
            bytes::Buf::advance(&mut **replay, n);
            if replay.is_empty() {
                self.replay = None;
            }
            return Poll::Ready(Ok(n));
        }
        let mut rb = ReadBuf::new(buf);
        std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }
}
