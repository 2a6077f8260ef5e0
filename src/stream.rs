//! The byte stream under a WebSocket session, with the session's watchdogs.
//!
//! fastwebsockets' `read_frame` is not cancel-safe: dropping it mid-frame
//! loses the header it already consumed. So timeouts and shutdown cannot be a
//! `select!` around it. Instead they live here, below the frame parser: while
//! the socket has nothing to read, `poll_read` also watches the shutdown token
//! and a coarse tick, and answers with an [`Interrupt`] error when one fires.
//! The tick also sends keep-alive pings to a silent peer. On the busy path
//! this costs one flag store per read; the timer is only re-armed once per
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
}

/// Keep-alive settings: a tick every `interval`; a ping after each silent
/// tick; a silent (or write-stalled) peer is cut off after `limit_ticks`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub limit_ticks: u32,
    pub ping: bool,
}

/// An empty, unmasked ping frame (server frames are never masked).
const PING: [u8; 2] = [0x89, 0x00];

pub struct SessionStream<S> {
    inner: S,
    /// Bytes hyper read past the request head; replayed before the socket.
    replay: Bytes,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    tick: Option<(Pin<Box<Sleep>>, Liveness)>,
    /// Read progress since the last tick.
    heard: bool,
    silent_ticks: u32,
    /// Write progress since the last tick, and whether a write is waiting.
    wrote: bool,
    write_blocked: bool,
    stalled_ticks: u32,
    /// How much of a keep-alive ping is still to be written.
    ping_left: usize,
}

impl<S> SessionStream<S> {
    pub fn new(inner: S, replay: Bytes) -> Self {
        SessionStream {
            inner,
            replay,
            shutdown: None,
            tick: None,
            heard: false,
            silent_ticks: 0,
            wrote: false,
            write_blocked: false,
            stalled_ticks: 0,
            ping_left: 0,
        }
    }

    /// Interrupt reads with [`Interrupt::Shutdown`] once `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(Box::pin(token.cancelled_owned()));
        self
    }

    pub fn with_liveness(mut self, liveness: Option<Liveness>) -> Self {
        self.tick = liveness
            .filter(|l| !l.interval.is_zero())
            .map(|l| (Box::pin(tokio::time::sleep(l.interval)), l));
        self
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn interrupted(why: Interrupt) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

impl<S: AsyncWrite + Unpin> SessionStream<S> {
    /// Called while the socket is not ready: polls shutdown and the tick.
    /// `reading` tells which side is waiting; pings are only written from the
    /// read side, where no frame write can be half done.
    fn poll_watchdogs(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<io::Error> {
        if reading
            && let Some(shutdown) = &mut self.shutdown
            && shutdown.as_mut().poll(cx).is_ready()
        {
            self.shutdown = None;
            return Poll::Ready(interrupted(Interrupt::Shutdown));
        }
        let Some((timer, live)) = &mut self.tick else {
            return Poll::Pending;
        };
        let live = *live;
        while timer.as_mut().poll(cx).is_ready() {
            timer.as_mut().reset(Instant::now() + live.interval);
            self.silent_ticks = if std::mem::take(&mut self.heard) {
                0
            } else {
                self.silent_ticks + 1
            };
            let stalled = self.write_blocked && !std::mem::take(&mut self.wrote);
            self.stalled_ticks = if stalled { self.stalled_ticks + 1 } else { 0 };
            if self.stalled_ticks >= live.limit_ticks {
                return Poll::Ready(interrupted(Interrupt::WriteStalled));
            }
            if self.silent_ticks >= live.limit_ticks {
                return Poll::Ready(interrupted(Interrupt::Idle));
            }
            if live.ping && self.silent_ticks > 0 && self.ping_left == 0 {
                self.ping_left = PING.len();
            }
        }
        if reading && self.ping_left > 0 {
            // Best effort: if the socket cannot take two bytes, the peer is
            // not reading either, and the stall tick will catch it.
            if self.poll_ping(cx).is_ready() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
        Poll::Pending
    }

    /// Writes what is left of a keep-alive ping.
    fn poll_ping(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.ping_left > 0 {
            let rest = &PING[PING.len() - self.ping_left..];
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.ping_left -= n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
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
            Poll::Pending => this.poll_watchdogs(cx, true).map(Err),
            ready => {
                this.heard = true;
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SessionStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = match this.poll_ping(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        this.after_write(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = match this.poll_ping(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        this.after_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> SessionStream<S> {
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending => {
                self.write_blocked = true;
                self.poll_watchdogs(cx, false).map(Err)
            }
            ready => {
                self.write_blocked = false;
                self.wrote = true;
                ready
            }
        }
    }
}
