//! One WebSocket connection after the handshake, driven by hand as a poll
//! loop: drain what waits, relay a chat peer's inbox, read into the
//! worker's receive buffer, answer every frame of that read, repeat.
//!
//! While idle a session owns its socket and a few hundred bytes of state:
//! no read buffer (reads go into [`WORKER`]'s, one per thread), no write
//! buffer (small frames gather in the worker's cork; see [`super::out`]),
//! no timer (one [`Sweep`] ticks for all). The read loop holds no borrow
//! across a wait, so it is cancel-safe by construction: shutdown and
//! timeouts are checked between reads.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::compressed::Compression;
use super::out::{GATHER_MAX, Spill, Writer};
use super::proto::{Handler, Proto, Stop};
use super::sweep::{Sweep, Ticket};
use crate::close::{self, code};
use crate::deflate::{DeflatePolicy, Params};
use crate::inbox::Inbox;
use crate::metrics::Metrics;

/// One read's worth: the most a session takes in before answering it, and
/// so the most unsent bytes a full socket can leave it holding.
const RECV_SIZE: usize = 128 << 10;

/// Most relayed frames in one `writev` (Linux takes up to 1024 iovecs).
const RELAY_BATCH: usize = 64;

/// Most relayed bytes written per pass, so a fast reader's inbox cannot
/// starve its own input.
const RELAY_BUDGET: usize = 64 << 10;

/// Most reads answered in one poll before the session yields, so one busy
/// peer cannot starve the others on its worker (tokio's own budget covers
/// TCP sockets; an HTTP/2 stream may not have one).
const PASSES_PER_POLL: u32 = 32;

/// How long echoes of a large frame may stay unwritten, with not one byte
/// taken by the peer, before the session reads on behind them: a peer that
/// reads slowly takes something well within this; one that sends the whole
/// message before reading takes nothing.
const READ_BEHIND_AFTER: Duration = Duration::from_millis(250);

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

/// Limits a session enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, summed over fragments (1009 past it).
    pub max_message: usize,
    /// Largest single frame, checked from its header (1009 past it).
    pub max_frame: usize,
    /// Most unsent bytes held while a large frame is still arriving and the
    /// peer does not read (see [`Session`]'s read loop).
    pub max_backlog: usize,
    /// How long to wait for the peer's close after we sent ours.
    pub close_timeout: Duration,
    /// Pings accepted per second (0: any number).
    pub max_ping_rate: u32,
}

/// Keep-alive settings: a tick every `interval`; a ping after each silent
/// tick; a silent (or write-stalled) peer is cut off after `limit_ticks`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub limit_ticks: u32,
    pub ping: bool,
}

/// What every session of a server shares.
pub struct Env {
    pub limits: Limits,
    pub liveness: Option<Liveness>,
    pub metrics: Arc<Metrics>,
    pub sweep: Arc<Sweep>,
    /// `--deflate`: the compressor's level and memLevel.
    pub deflate: DeflatePolicy,
}

/// How a session ended: what the connection log line and metrics report.
#[derive(Debug)]
pub enum End {
    /// The peer closed (with this code, if any) and we answered.
    PeerClosed(Option<u16>),
    /// We closed with this code: a protocol error, a limit, or going away.
    Closed { code: u16, reason: &'static str },
    /// The peer stopped reading; no close frame could be written.
    Stalled,
    /// The connection dropped without a close handshake.
    Dropped(io::ErrorKind),
}

impl End {
    /// The close code for logs and metrics; 1006 when there was none (§7.1.5).
    pub fn code(&self) -> u16 {
        match self {
            End::PeerClosed(c) => c.unwrap_or(1005),
            End::Closed { code, .. } => *code,
            End::Stalled | End::Dropped(_) => 1006,
        }
    }
}

/// Per-session counters, added to the global metrics as the session goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            messages_in: self.messages_in - o.messages_in,
            messages_out: self.messages_out - o.messages_out,
            bytes_in: self.bytes_in - o.bytes_in,
            bytes_out: self.bytes_out - o.bytes_out,
        }
    }
}

/// Liveness bookkeeping between sweep ticks.
#[derive(Debug)]
struct Live {
    ticket: Ticket,
    /// The sweep tick last seen, truncated: ticks between two polls are
    /// few, so a wrapping difference is exact (and 4 bytes are saved).
    seen: u32,
    heard: bool,
    wrote: bool,
    silent: u32,
    stalled: u32,
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

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
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

    /// Ends the TCP connection after the close handshake: the server closes
    /// first (§7.1.1), so the client does not hold TIME_WAIT. Returns the
    /// session's final counts.
    pub async fn shutdown(mut self) -> Counts {
        self.flush_counts();
        let io = &mut self.io;
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)),
        )
        .await;
        self.proto.counts
    }

    fn flush_counts(&mut self) {
        let relayed = self
            .inbox
            .as_ref()
            .map(|inbox| inbox.state().take_delivered());
        self.proto.flush_counts(&self.env.metrics, relayed);
    }

    fn poll_run<H: Handler>(&mut self, cx: &mut Context<'_>, h: &mut H) -> Poll<Stop> {
        let mut passes = 0;
        loop {
            if let Some(stop) = self.check_live() {
                return Poll::Ready(stop);
            }
            // The large frame ended: the next one starts with the usual
            // backpressure and a fresh grace period.
            if (self.reading_behind || self.behind.is_some()) && !self.proto.cutting_through() {
                self.behind = None;
                self.reading_behind = false;
            }
            match self.poll_drain(cx) {
                Poll::Ready(Ok(())) => {
                    if let Err(stop) = self.relay(cx) {
                        return Poll::Ready(stop);
                    }
                    if !self.spill.is_empty() || self.relay_unfinished() {
                        continue;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Stop::Dropped(e.kind())),
                // Backpressure: a peer that does not read gets nothing more
                // read from it. Except in the middle of a large frame: a
                // client that sends a whole message before reading its echo
                // cannot read until it is done, so its echo is held (up to
                // --max-backlog) while the rest arrives.
                Poll::Pending if self.read_behind(cx) => {}
                Poll::Pending => return self.wait(cx),
            }
            if passes == PASSES_PER_POLL {
                cx.waker().wake_by_ref();
                return self.wait(cx);
            }
            passes += 1;
            match self.read_pass(cx, h) {
                Poll::Ready(Some(stop)) => return Poll::Ready(stop),
                Poll::Ready(None) => {}
                Poll::Pending => return self.wait(cx),
            }
        }
    }

    /// Before the task sleeps: make sure the sweep wakes it, then look at
    /// the drain flag once more (it may have been raised before we were
    /// registered).
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        self.live.ticket.register(cx.waker());
        match self.check_live() {
            Some(stop) => Poll::Ready(stop),
            None => Poll::Pending,
        }
    }

    /// Shutdown, idle and write-stall checks, once per sweep tick; a
    /// keep-alive ping to a silent peer.
    fn check_live(&mut self) -> Option<Stop> {
        let now = self.live.ticket.sweep().now();
        if now.draining {
            return Some(Stop::Fail(code::GOING_AWAY, "server shutting down"));
        }
        let tick = now.tick as u32;
        let liveness = self.env.liveness?;
        if tick == self.live.seen {
            return None;
        }
        let blocked = !self.spill.is_empty() || self.relay_unfinished();
        let live = &mut self.live;
        let ticks = tick.wrapping_sub(live.seen);
        live.seen = tick;
        let heard = std::mem::take(&mut live.heard);
        let wrote = std::mem::take(&mut live.wrote);
        live.silent = if heard {
            0
        } else {
            live.silent.saturating_add(ticks)
        };
        live.stalled = if blocked && !wrote {
            live.stalled.saturating_add(ticks)
        } else {
            0
        };
        if live.stalled >= liveness.limit_ticks {
            return Some(Stop::Stalled);
        }
        if live.silent >= liveness.limit_ticks {
            return Some(Stop::Fail(code::GOING_AWAY, "idle timeout"));
        }
        if liveness.ping && live.silent > 0 && !blocked {
            self.queue_frame(OpCode::Ping, &[]);
        }
        None
    }

    /// Whether to read on while echoes wait unsent. Backpressure, except in
    /// the middle of a large frame whose echo the peer has not taken a byte
    /// of for [`READ_BEHIND_AFTER`]: a client that sends a whole message
    /// before reading its echo (Autobahn's 16 MiB cases, blocking clients)
    /// cannot read until it is done, so its echo is held, up to
    /// --max-backlog, while the rest arrives. A peer that reads, however
    /// slowly, keeps the usual bound of one read.
    fn read_behind(&mut self, cx: &mut Context<'_>) -> bool {
        let eligible = self.proto.cutting_through()
            && !self.relay_unfinished()
            && self.spill.len() < self.env.limits.max_backlog;
        if !eligible {
            return false;
        }
        if self.reading_behind {
            return true;
        }
        // Boxed and only while stuck: idle sessions carry no timer.
        let timer = self
            .behind
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(READ_BEHIND_AFTER)));
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.behind = None;
        self.reading_behind = true;
        true
    }

    fn relay_unfinished(&self) -> bool {
        self.inbox
            .as_ref()
            .is_some_and(|i| i.unfinished().is_some())
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
    /// a TLS flush.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

    /// Writes a chat peer's relayed frames, within the budget.
    fn relay(&mut self, cx: &mut Context<'_>) -> Result<(), Stop> {
        let Some(inbox) = &mut self.inbox else {
            return Ok(());
        };
        if inbox.is_closed() {
            return Ok(());
        }
        if inbox.state().is_slow() {
            // 1008: the peer broke the policy of reading its room's messages
            // in time (1013 would invite a retry).
            return Err(Stop::Fail(
                code::POLICY,
                "slow consumer: too many unread messages",
            ));
        }
        let mut budget = RELAY_BUDGET;
        while inbox.unfinished().is_none() {
            if budget == 0 {
                // More may be queued and nothing else would wake us for it.
                cx.waker().wake_by_ref();
                break;
            }
            let mut iov = [io::IoSlice::new(&[]); RELAY_BATCH];
            let n = inbox.poll_batch(cx, &mut iov);
            if n == 0 {
                break;
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &iov[..n]) {
                Poll::Ready(Ok(0)) => return Err(Stop::Dropped(io::ErrorKind::WriteZero)),
                Poll::Ready(Ok(written)) => {
                    inbox.consumed(written);
                    budget = budget.saturating_sub(written);
                    self.live.wrote = true;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Err(Stop::Dropped(e.kind())),
                Poll::Pending => break,
            }
        }
        Ok(())
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

    /// The close handshake, after the read loop stopped.
    async fn finish(&mut self, stop: Stop) -> End {
        match stop {
            Stop::PeerClosed(code) => {
                // Echo the code (§5.5.1); an empty close gets an empty one.
                let reply = code.map_or_else(Vec::new, |c| close::payload(c, ""));
                match self.send_close(&reply).await {
                    Ok(()) => End::PeerClosed(code),
                    Err(end) => end,
                }
            }
            Stop::Fail(code, reason) => {
                if let Err(end) = self.send_close(&close::payload(code, reason)).await {
                    return end;
                }
                self.await_peer_close().await;
                End::Closed { code, reason }
            }
            Stop::Stalled => End::Stalled,
            Stop::Dropped(kind) => End::Dropped(kind),
        }
    }

    /// Writes our one close frame; nothing, relays included, follows it.
    async fn send_close(&mut self, payload: &[u8]) -> Result<(), End> {
        if std::mem::replace(&mut self.close_sent, true) {
            return Ok(());
        }
        if let Some(inbox) = &self.inbox {
            inbox.state().mark_closed();
        }
        self.queue_frame(OpCode::Close, payload);
        // Bounded: a peer that reads nothing cannot take our close either.
        let timeout = self.env.limits.close_timeout;
        match tokio::time::timeout(timeout, poll_fn(|cx| self.poll_drain(cx))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Dropped(e.kind())),
            Err(_) => Err(End::Stalled),
        }
    }

    /// After our close, reads (and drops) frames until the peer's close, the
    /// end of the connection, or the close timeout. After a framing error
    /// the input is not frames any more: then wait for the peer to hang up.
    async fn await_peer_close(&mut self) {
        let timeout = self.env.limits.close_timeout;
        if self.proto.spent {
            let io = &mut self.io;
            let _ = poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)).await;
        }
        let wait = poll_fn(|cx| {
            with_worker(|worker| {
                loop {
                    match self.fill(cx, &mut worker.recv) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Ready(Ok(n)) => {
                            if !self.proto.spent && self.proto.find_close(&mut worker.recv[..n]) {
                                return Poll::Ready(());
                            }
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
        });
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

#[cfg(test)]
mod tests;
