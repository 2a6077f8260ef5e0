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

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Most bytes of small frames gathered before they must be written: enough
/// for a burst of small echoes, small enough to hold per connection.
const GATHER_MAX: usize = 16 << 10;

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

/// Keep-alive settings: a tick every `interval`; a ping after each silent
/// tick; a silent (or write-stalled) peer is cut off after `limit_ticks`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub limit_ticks: u32,
    pub ping: bool,
}

/// What the tick decided.
enum Tick {
    Quiet,
    Ping,
    Stop(Interrupt),
}

/// Progress bookkeeping between ticks.
struct Watchdog {
    timer: Pin<Box<Sleep>>,
    live: Liveness,
    /// Read progress since the last tick, and silent ticks in a row.
    heard: bool,
    silent: u32,
    /// Write progress since the last tick, whether a write is waiting, and
    /// stalled ticks in a row.
    wrote: bool,
    write_blocked: bool,
    stalled: u32,
}

impl Watchdog {
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Tick {
        let mut tick = Tick::Quiet;
        while self.timer.as_mut().poll(cx).is_ready() {
            self.timer
                .as_mut()
                .reset(Instant::now() + self.live.interval);
            let heard = std::mem::take(&mut self.heard);
            self.silent = if heard { 0 } else { self.silent + 1 };
            let stalled = self.write_blocked && !std::mem::take(&mut self.wrote);
            self.stalled = if stalled { self.stalled + 1 } else { 0 };
            if self.stalled >= self.live.limit_ticks {
                return Tick::Stop(Interrupt::WriteStalled);
            }
            if self.silent >= self.live.limit_ticks {
                return Tick::Stop(Interrupt::Idle);
            }
            if self.live.ping && self.silent > 0 {
                tick = Tick::Ping;
            }
        }
        tick
    }
}

pub struct SessionStream<S> {
    inner: S,
    /// Bytes hyper read past the request head; replayed before the socket.
    replay: Bytes,
    /// Small frames gathered for one write; `written` of them are out.
    gathered: Vec<u8>,
    written: usize,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    watchdog: Option<Watchdog>,
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
        }
    }

    /// Interrupt reads with [`Interrupt::Shutdown`] once `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(Box::pin(token.cancelled_owned()));
        self
    }

    pub fn with_liveness(mut self, liveness: Option<Liveness>) -> Self {
        self.watchdog = liveness
            .filter(|l| !l.interval.is_zero())
            .map(|live| Watchdog {
                timer: Box::pin(tokio::time::sleep(live.interval)),
                live,
                heard: false,
                silent: 0,
                wrote: false,
                write_blocked: false,
                stalled: 0,
            });
        self
    }
}

impl<S: AsyncWrite + Unpin> SessionStream<S> {
    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.gathered.len() {
            let pending = &self.gathered[self.written..];
            let res = Pin::new(&mut self.inner).poll_write(cx, pending);
            match ready!(self.note_write(cx, res))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.written += n,
            }
        }
        self.gathered.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Called when there is nothing to read: writes what was gathered, then
    /// polls shutdown and the tick.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Poll::Ready(Err(e)) = self.poll_flush_all(cx) {
            return Poll::Ready(e);
        }
        if let Some(shutdown) = &mut self.shutdown
            && shutdown.as_mut().poll(cx).is_ready()
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

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gathered.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx))?;
        // Pushes TLS records out; a no-op on TCP.
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(cx, res)
    }

    /// Progress bookkeeping for every write to the socket; a write that
    /// cannot proceed also polls the tick, which ends a stalled peer.
    fn note_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(watchdog) = &mut self.watchdog else {
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
            let res = Pin::new(&mut this.inner).poll_write(cx, buf);
            return this.note_write(cx, res);
        }
        this.gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Large frames: straight to the socket, after what was gathered.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.note_write(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
