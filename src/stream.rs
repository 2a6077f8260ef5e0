//! The byte stream under a WebSocket session: write coalescing, and the
//! session's watchdogs.
//!
//! Coalescing: small frames (fastwebsockets copies frames up to its 1 KiB
//! `writev_threshold` into one buffer and writes them with `write`) are
//! gathered here and written when the session is about to wait for input,
//! so a burst of pipelined messages or tiny fragments costs one `write`
//! instead of one per frame. A ping-pong peer sees no delay: its echo is
//! written the moment the socket has nothing more to read. Large frames
//! (`writev(header, payload)`) pass straight through, after anything
//! gathered before them.
//!
//! Watchdogs: fastwebsockets' `read_frame` is not cancel-safe (dropping it
//! mid-frame loses the header it consumed), so timeouts and shutdown cannot
//! be a `select!` around it. They live here instead, below the frame parser:
//! while the socket has nothing to read, `poll_read` also watches the
//! shutdown token and a coarse tick, and fails with an [`Interrupt`] when one
//! fires. The tick also queues keep-alive pings to a silent peer. On the busy
//! path this costs one flag store per read; the timer is re-armed once per
//! tick, not per message.
//!
//! Relay: a chat peer's stream also carries an [`Inbox`] of frames the other
//! peers sent to its room. They are written between the session's own frames
//! (never inside one: while the session reads, no frame write is half done),
//! so the peer needs one task, not a reader and a writer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::inbox::{Inbox, PeerState};
pub use crate::watchdog::Liveness;
use crate::watchdog::{Tick, Watchdog};

/// Most bytes of small frames gathered before they must be written: enough
/// for a burst of small echoes, small enough to hold per connection.
const GATHER_MAX: usize = 16 << 10;

/// Frames up to this size are gathered; larger ones are written from their
/// own buffer. Copying a frame this small costs less than the `writev` it
/// would otherwise take on its own.
const GATHER_FRAME_MAX: usize = 1 << 10;

/// Most relayed frames in one `writev` (Linux takes up to 1024 iovecs).
const RELAY_BATCH: usize = 64;

/// Most relayed bytes written per read, so a fast reader's inbox cannot
/// starve its own input.
const RELAY_BUDGET: usize = 64 << 10;

/// An empty, unmasked ping frame (server frames are never masked).
const PING: [u8; 2] = [0x89, 0x00];

/// Why a session's stream stopped on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupt {
    #[error("server is shutting down")]
    Shutdown,
    #[error("peer sent nothing within the idle timeout")]
    Idle,
    #[error("peer read nothing within the idle timeout")]
    WriteStalled,
    #[error("peer fell behind on its room's messages")]
    SlowConsumer,
}

impl Interrupt {
    /// The interrupt carried by an I/O error, if that is what it is.
    pub fn from_io(e: &io::Error) -> Option<Interrupt> {
        e.get_ref()?.downcast_ref::<Interrupt>().copied()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, self)
    }
}

pub struct SessionStream<S> {
    inner: S,
    /// Bytes hyper read past the request head; replayed before the socket.
    replay: Bytes,
    /// Small frames gathered for one write; `written` of them are out.
    gathered: Vec<u8>,
    written: usize,
    shutdown: Option<ShutdownWatch>,
    watchdog: Option<Watchdog>,
    inbox: Option<Inbox>,
}

/// Shutdown, checked on the busy path with one relaxed load: the token's
/// future is polled once to register this task's waker, and again only once
/// the shared `draining` flag is up (its lock is not taken per message).
struct ShutdownWatch {
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    draining: Arc<AtomicBool>,
    armed: bool,
}

impl ShutdownWatch {
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed && !self.draining.load(Ordering::Relaxed) {
            return false;
        }
        self.armed = true;
        self.cancelled.as_mut().poll(cx).is_ready()
    }
}

impl<S> SessionStream<S> {
    pub fn new(inner: S, replay: Bytes) -> Self {
        SessionStream {
            inner,
            replay,
            gathered: Vec::new(),
            written: 0,
            shutdown: None,
            watchdog: None,
            inbox: None,
        }
    }

    /// Interrupt reads with [`Interrupt::Shutdown`] once `token` is
    /// cancelled; `draining` is set before it is.
    pub fn with_shutdown(mut self, token: &CancellationToken, draining: Arc<AtomicBool>) -> Self {
        let cancelled = Box::pin(token.clone().cancelled_owned());
        self.shutdown = Some(ShutdownWatch {
            cancelled,
            draining,
            armed: false,
        });
        self
    }

    pub fn with_liveness(mut self, liveness: Option<Liveness>) -> Self {
        self.watchdog = liveness
            .filter(|l| !l.interval.is_zero())
            .map(Watchdog::new);
        self
    }

    /// Relays this inbox's frames to the peer.
    pub fn with_inbox(mut self, inbox: Option<Inbox>) -> Self {
        self.inbox = inbox;
        self
    }

    pub fn peer_state(&self) -> Option<&Arc<PeerState>> {
        self.inbox.as_ref().map(Inbox::state)
    }
}

/// Progress bookkeeping for every write to the socket; a write that cannot
/// proceed also polls the tick, which ends a stalled peer.
fn note_write<T>(
    watchdog: &mut Option<Watchdog>,
    cx: &mut Context<'_>,
    res: Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    let Some(watchdog) = watchdog else {
        return res;
    };
    match res {
        Poll::Pending => {
            watchdog.write_blocked = true;
            match watchdog.poll_tick(cx) {
                Tick::Stop(why) => Poll::Ready(Err(why.into_io())),
                Tick::Quiet | Tick::Ping => Poll::Pending,
            }
        }
        ready => {
            watchdog.write_blocked = false;
            watchdog.wrote = true;
            ready
        }
    }
}

impl<S: AsyncWrite + Unpin> SessionStream<S> {
    /// Finishes a relayed frame that is partly written, so that no other
    /// frame lands inside it.
    fn poll_finish_relay(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inbox) = &mut self.inbox else {
            return Poll::Ready(Ok(()));
        };
        while let Some(rest) = inbox.unfinished() {
            let res = Pin::new(&mut self.inner).poll_write(cx, rest);
            match ready!(note_write(&mut self.watchdog, cx, res))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => inbox.consumed(n),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_finish_relay(cx))?;
        while self.written < self.gathered.len() {
            let res = Pin::new(&mut self.inner).poll_write(cx, &self.gathered[self.written..]);
            match ready!(note_write(&mut self.watchdog, cx, res))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.written += n,
            }
        }
        self.gathered.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gathered.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx))?;
        // Pushes TLS records out; a no-op on TCP.
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        note_write(&mut self.watchdog, cx, res)
    }

    /// Writes relayed frames, after anything gathered, within the budget.
    fn poll_relay(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(inbox) = &mut self.inbox else {
            return Ok(());
        };
        if inbox.is_closed() {
            return Ok(());
        }
        if inbox.state().is_slow() {
            return Err(Interrupt::SlowConsumer.into_io());
        }
        if self.written < self.gathered.len() && self.poll_flush_all(cx)?.is_pending() {
            return Ok(());
        }
        let Some(inbox) = &mut self.inbox else {
            return Ok(());
        };
        let mut budget = RELAY_BUDGET;
        let mut wrote = false;
        loop {
            if budget == 0 {
                // More may be queued, and nothing else would wake us for it:
                // come back after this turn.
                cx.waker().wake_by_ref();
                break;
            }
            let mut iov = [io::IoSlice::new(&[]); RELAY_BATCH];
            let n = inbox.poll_batch(cx, &mut iov);
            if n == 0 {
                break;
            }
            let res = Pin::new(&mut self.inner).poll_write_vectored(cx, &iov[..n]);
            match note_write(&mut self.watchdog, cx, res) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    inbox.consumed(written);
                    budget = budget.saturating_sub(written);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if wrote {
            let res = Pin::new(&mut self.inner).poll_flush(cx);
            if let Poll::Ready(Err(e)) = note_write(&mut self.watchdog, cx, res) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Called when there is nothing to read: writes what was gathered, then
    /// polls shutdown and the tick.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Poll::Ready(Err(e)) = self.poll_flush_all(cx) {
            return Poll::Ready(e);
        }
        if let Some(shutdown) = &mut self.shutdown
            && shutdown.poll(cx)
        {
            self.shutdown = None;
            return Poll::Ready(Interrupt::Shutdown.into_io());
        }
        let Some(watchdog) = &mut self.watchdog else {
            return Poll::Pending;
        };
        match watchdog.poll_tick(cx) {
            Tick::Quiet => Poll::Pending,
            Tick::Stop(why) => Poll::Ready(why.into_io()),
            // No frame write is half done while the session reads, so a
            // ping can go between frames. If the peer is not reading, the
            // write-stall tick will end it.
            Tick::Ping if self.gathered.len() + PING.len() <= GATHER_MAX => {
                self.gathered.extend_from_slice(&PING);
                match self.poll_flush_all(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(e),
                    _ => Poll::Pending,
                }
            }
            Tick::Ping => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for SessionStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            // Copy forced by hyper: it read these bytes into its own buffer.
            // Happens at most once, and only for clients that send frames
            // before they see the 101.
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.poll_relay(cx)?;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.poll_idle(cx).map(Err),
            ready => {
                if let Some(watchdog) = &mut this.watchdog {
                    watchdog.heard = true;
                }
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SessionStream<S> {
    /// Small frames: gathered, written when the session next waits to read.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.gathered.len() + buf.len() > GATHER_MAX {
            ready!(this.poll_drain(cx))?;
        }
        if buf.len() > GATHER_MAX {
            ready!(this.poll_finish_relay(cx))?;
            let res = Pin::new(&mut this.inner).poll_write(cx, buf);
            return note_write(&mut this.watchdog, cx, res);
        }
        this.gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Frames as `[header, payload]`: small ones gathered (the one copy a
    /// small echo makes), large ones straight to the socket, after what was
    /// gathered.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len <= GATHER_FRAME_MAX {
            if this.gathered.len() + len > GATHER_MAX {
                ready!(this.poll_drain(cx))?;
            }
            for buf in bufs {
                this.gathered.extend_from_slice(buf);
            }
            return Poll::Ready(Ok(len));
        }
        ready!(this.poll_drain(cx))?;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        note_write(&mut this.watchdog, cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        note_write(&mut this.watchdog, cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
