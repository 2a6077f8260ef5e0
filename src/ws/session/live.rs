//! A session's liveness: the keep-alive ping, the idle and write-stall
//! timeouts checked once per sweep tick, the drain, and when to read on
//! behind echoes the peer has not taken.

use std::task::{Context, Poll};
use std::time::Duration;

use fastwebsockets::OpCode;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::proto::Stop;
use super::super::sweep::{Now, Ticket};
use super::Session;
use crate::close::code;

/// How long echoes of a large frame may stay unwritten, with not one byte
/// taken by the peer, before the session reads on behind them: a peer that
/// reads slowly takes something well within this; one that sends the whole
/// message before reading takes nothing.
const READ_BEHIND_AFTER: Duration = Duration::from_millis(250);

/// Liveness bookkeeping between sweep ticks.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) ticket: Ticket,
    /// The sweep tick last seen, truncated: ticks between two polls are
    /// few, so a wrapping difference is exact (and 4 bytes are saved).
    pub(super) seen: u32,
    pub(super) heard: bool,
    pub(super) wrote: bool,
    pub(super) silent: u32,
    pub(super) stalled: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Session<S> {
    /// Before the task sleeps: make sure the sweep (and, for a chat peer,
    /// its room turning it slow) wakes it, then look at the drain and slow
    /// flags once more (either may have been raised before we were
    /// registered).
    #[inline(always)]
    pub(super) fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        self.live.ticket.register(cx.waker());
        if let Some(inbox) = &self.inbox {
            inbox.state().wake_if_slow(cx.waker());
        }
        match self.check_live().or_else(|| self.slow()) {
            Some(stop) => Poll::Ready(stop),
            None => Poll::Pending,
        }
    }

    /// Shutdown, idle and write-stall checks, once per sweep tick; a
    /// keep-alive ping to a silent peer.
    ///
    /// Inlined to its first test: asked twice per read (before it, and
    /// again before sleeping), and nearly always with the tick unchanged.
    #[inline]
    pub(super) fn check_live(&mut self) -> Option<Stop> {
        let now = self.live.ticket.sweep().now();
        if !now.draining && now.tick as u32 == self.live.seen {
            return None;
        }
        self.on_tick(now)
    }

    #[inline(never)]
    fn on_tick(&mut self, now: Now) -> Option<Stop> {
        if now.draining {
            return Some(Stop::Fail(code::GOING_AWAY, "server shutting down"));
        }
        let tick = now.tick as u32;
        let Some(liveness) = self.env.liveness else {
            self.live.seen = tick;
            return None;
        };
        let blocked = !self.spill.is_empty() || self.relay_unfinished();
        let live = &mut self.live;
        let ticks = tick.wrapping_sub(live.seen);
        live.seen = tick;
        let heard = std::mem::take(&mut live.heard);
        let wrote = std::mem::take(&mut live.wrote);
        let was_silent = live.silent;
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
        // A ping each time the silence passes another ping interval (ticks
        // may come several at once to a session polled late).
        let pings = |silent: u32| silent.checked_div(liveness.ping_ticks).unwrap_or(0);
        if pings(live.silent) > pings(was_silent) && !blocked {
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
    pub(super) fn read_behind(&mut self, cx: &mut Context<'_>) -> bool {
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
}
