//! One timer for every session: a tick that wakes them all, for keep-alive
//! pings, idle and write-stall timeouts, and the shutdown drain.
//!
//! A timer per connection (a boxed `Sleep`, ~100 bytes plus its wheel
//! entry) would be most of an idle session's memory. uSockets sweeps its
//! sockets from one timer per loop; wsecho does the same: each session keeps
//! a waker here and a few counters, and compares the tick it last saw with
//! the current one whenever it is polled. The busy path pays one relaxed
//! load per read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Waker;
use std::time::Duration;

use slab::Slab;

/// The drain flag, in the top bit of [`Sweep::state`].
const DRAINING: u64 = 1 << 63;

/// The shared tick and the wakers of the sessions it wakes.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The tick count, and [`DRAINING`]: one load per read tells a session
    /// both whether a tick passed and whether to close.
    state: AtomicU64,
    running: AtomicBool,
    wakers: Mutex<Slab<Waker>>,
}

/// What a session reads from the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub tick: u64,
    pub draining: bool,
}

impl Sweep {
    /// The current tick (it advances once per interval) and the drain flag.
    pub fn now(&self) -> Now {
        let state = self.state.load(Ordering::Relaxed);
        Now {
            tick: state & !DRAINING,
            draining: state & DRAINING != 0,
        }
    }

    /// The current tick.
    pub fn tick(&self) -> u64 {
        self.now().tick
    }

    /// True once the server began its drain.
    pub fn draining(&self) -> bool {
        self.now().draining
    }

    /// Starts the drain: every session wakes and closes with 1001.
    pub fn begin_drain(&self) {
        self.state.fetch_or(DRAINING, Ordering::SeqCst);
        self.wake_all();
    }

    /// Starts the ticking task on the current runtime, once.
    pub fn start(self: &Arc<Self>, interval: Option<Duration>) {
        let Some(interval) = interval.filter(|i| !i.is_zero()) else {
            return;
        };
        if self.running.swap(true, Ordering::Relaxed) {
            return;
        }
        tokio::spawn(run(Arc::downgrade(self), interval));
    }

    fn advance(&self) {
        self.state.fetch_add(1, Ordering::Relaxed);
        self.wake_all();
    }

    fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, waker) in wakers.iter() {
            waker.wake_by_ref();
        }
    }

    fn insert(&self, waker: Waker) -> usize {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.insert(waker)
    }

    fn replace(&self, key: usize, waker: Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = wakers.get_mut(key) {
            *slot = waker;
        }
    }

    fn remove(&self, key: usize) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.try_remove(key);
    }
}

/// Ticks until the server is gone.
async fn run(sweep: Weak<Sweep>, interval: Duration) {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        timer.tick().await;
        match sweep.upgrade() {
            Some(sweep) => sweep.advance(),
            None => return,
        }
    }
}

/// A session's place in the sweep: registered on its first wait, removed
/// when it ends.
#[derive(Debug)]
pub struct Ticket {
    sweep: Arc<Sweep>,
    /// The slot and a copy of the waker in it, so a re-registration costs a
    /// pointer comparison unless the task's waker changed.
    slot: Option<(usize, Waker)>,
}

impl Ticket {
    pub fn new(sweep: Arc<Sweep>) -> Self {
        Ticket { sweep, slot: None }
    }

    pub fn sweep(&self) -> &Sweep {
        &self.sweep
    }

    /// Makes sure the next tick (or the drain) wakes `waker`.
    ///
    /// Inlined to its first test: every wait of every session asks, and
    /// nearly always with the waker it gave last time.
    #[inline]
    pub fn register(&mut self, waker: &Waker) {
        if !matches!(&self.slot, Some((_, have)) if have.will_wake(waker)) {
            self.register_new(waker);
        }
    }

    #[inline(never)]
    fn register_new(&mut self, waker: &Waker) {
        match &mut self.slot {
            Some((_, have)) if have.will_wake(waker) => {}
            Some((key, have)) => {
                have.clone_from(waker);
                self.sweep.replace(*key, waker.clone());
            }
            None => {
                let key = self.sweep.insert(waker.clone());
                self.slot = Some((key, waker.clone()));
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((key, _)) = self.slot.take() {
            self.sweep.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::testing::Wakes;

    #[tokio::test(start_paused = true)]
    async fn each_interval_advances_the_tick_and_wakes_every_registered_session() {
        let sweep = Arc::new(Sweep::default());
        let (count, waker) = Wakes::waker();
        let mut a = Ticket::new(sweep.clone());
        let mut b = Ticket::new(sweep.clone());
        a.register(&waker);
        b.register(&waker);
        // Registering the same waker again takes no new slot.
        a.register(&waker);
        assert_eq!(sweep.wakers.lock().unwrap().len(), 2);

        sweep.start(Some(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(sweep.tick(), 2);
        assert_eq!(count.count(), 4);

        drop(a);
        assert_eq!(sweep.wakers.lock().unwrap().len(), 1);
        sweep.begin_drain();
        assert!(sweep.draining());
        assert_eq!(count.count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_interval_nothing_ticks() {
        let sweep = Arc::new(Sweep::default());
        sweep.start(None);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(sweep.tick(), 0);
    }
}
