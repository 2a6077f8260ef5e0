//! Open loop's clock: wakes a connection when its next message is due, to
//! within microseconds.
//!
//! Why not `tokio::time::sleep_until`: tokio's timer wheel counts whole
//! milliseconds and the runtime parks with a millisecond epoll timeout, so
//! a sleep ends 1–2 ms after its deadline. Open loop measures latency from
//! the *intended* send time, so that lag would be reported as server
//! latency (measured here: a 120 µs loopback echo showed as 1.4 ms). Each
//! worker thread instead keeps one timerfd (an hrtimer, no millisecond
//! rounding) armed for the earliest due time among its connections, in a
//! heap that only its own thread touches: registering a wake-up is a heap
//! push, plus a `timerfd_settime` only when it is the new earliest.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::OwnedFd;
use std::task::Waker;

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::clock::Clock;

pub struct Pacer {
    clock: Clock,
    fd: AsyncFd<OwnedFd>,
    queue: RefCell<Queue>,
}

struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    /// The time the timerfd is set for, if it is.
    armed: Option<u64>,
}

struct Due {
    at_ns: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at_ns == other.at_ns
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at_ns.cmp(&other.at_ns)
    }
}

impl Pacer {
    /// Call inside the worker's runtime (the fd registers with its driver).
    pub fn new(clock: Clock) -> io::Result<Pacer> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // tokio 1.54 deprecates the safe constructors in favour of an
        // `unsafe fn register` whose contract is "the fd stays open and the
        // same while registered". An `OwnedFd` moved into the `AsyncFd`
        // meets it by construction (nothing else can close or swap it), and
        // this crate forbids `unsafe`, so the deprecated, safe call it is.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        Ok(Pacer {
            clock,
            fd,
            queue: RefCell::new(Queue {
                heap: BinaryHeap::new(),
                armed: None,
            }),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Wakes `waker` at run time `at_ns` (or a little after; never before).
    pub fn wake_at(&self, at_ns: u64, waker: &Waker) {
        let mut q = self.queue.borrow_mut();
        q.heap.push(Reverse(Due {
            at_ns,
            waker: waker.clone(),
        }));
        if q.armed.is_none_or(|armed| at_ns < armed) {
            self.arm(&mut q, at_ns);
        }
    }

    fn arm(&self, q: &mut Queue, at_ns: u64) {
        // A zero it_value would disarm the timer: at least 1 µs.
        let delay = at_ns.saturating_sub(self.clock.now_ns()).max(1_000);
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (delay / 1_000_000_000) as _,
                tv_nsec: (delay % 1_000_000_000) as _,
            },
        };
        // Cannot fail for a valid timerfd and a normalised time.
        let _ = rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec);
        q.armed = Some(at_ns);
    }

    /// Drives the timer for as long as the worker runs.
    pub async fn run(&self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return;
            };
            // Consume the expiration count so the fd reads empty again.
            let mut count = [0u8; 8];
            let _ = rustix::io::read(self.fd.get_ref(), &mut count);
            ready.clear_ready();
            self.fire();
        }
    }

    /// Wakes everything due, then arms for the earliest that is left.
    fn fire(&self) {
        let now = self.clock.now_ns();
        let mut q = self.queue.borrow_mut();
        q.armed = None;
        while q.heap.peek().is_some_and(|Reverse(d)| d.at_ns <= now) {
            if let Some(Reverse(due)) = q.heap.pop() {
                // Waking a task of this thread only queues it: nothing runs
                // (and re-enters this RefCell) before we return.
                due.waker.wake();
            }
        }
        if let Some(at) = q.heap.peek().map(|Reverse(d)| d.at_ns) {
            self.arm(&mut q, at);
        }
    }
}
