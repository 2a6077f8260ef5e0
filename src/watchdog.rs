//! Per-connection liveness: a coarse tick that notices a peer which sends
//! nothing, or reads nothing, for too long, and asks for keep-alive pings.
//!
//! It never re-arms a timer per message: reads and writes only set flags,
//! and the tick (one timer per connection, re-armed once per interval)
//! looks at them.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::stream::Interrupt;

/// Keep-alive settings: a tick every `interval`; a ping after each silent
/// tick; a silent (or write-stalled) peer is cut off after `limit_ticks`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub limit_ticks: u32,
    pub ping: bool,
}

/// What the tick decided.
pub(crate) enum Tick {
    Quiet,
    Ping,
    Stop(Interrupt),
}

/// Progress bookkeeping between ticks.
pub(crate) struct Watchdog {
    timer: Pin<Box<Sleep>>,
    live: Liveness,
    /// Read progress since the last tick, and silent ticks in a row.
    pub(crate) heard: bool,
    silent: u32,
    /// Write progress since the last tick, whether a write is waiting, and
    /// stalled ticks in a row.
    pub(crate) wrote: bool,
    pub(crate) write_blocked: bool,
    stalled: u32,
    /// The timer has this task's waker (polled since its last reset), so
    /// until it fires a flag check is enough: no waker registration per read.
    armed: bool,
}

impl Watchdog {
    pub(crate) fn new(live: Liveness) -> Self {
        Watchdog {
            timer: Box::pin(tokio::time::sleep(live.interval)),
            live,
            heard: false,
            silent: 0,
            wrote: false,
            write_blocked: false,
            stalled: 0,
            armed: false,
        }
    }

    pub(crate) fn poll_tick(&mut self, cx: &mut Context<'_>) -> Tick {
        let mut tick = Tick::Quiet;
        if self.armed && !self.timer.is_elapsed() {
            return tick;
        }
        self.armed = true;
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
