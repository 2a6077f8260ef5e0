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
//!
//! Each expiry costs a thread wake-up, which on a virtual machine is ~20 µs
//! of CPU (a timerfd armed 50 µs ahead, in a loop, on this project's 2-core
//! VM: 20.8 µs of the thread's CPU per expiry), more than an echo. So an
//! expiry wakes every connection due within `slack` of it too
//! (`--pace-slack`): a message may leave up to that much early, and its
//! latency is then counted from when it left (never from the later
//! intended time, which would flatter the server).

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
    slack_ns: u64,
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
    pub fn new(clock: Clock, slack_ns: u64) -> io::Result<Pacer> {
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
            slack_ns,
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

    /// How early a message may leave: what is due within this of an expiry
    /// goes with it.
    pub fn slack_ns(&self) -> u64 {
        self.slack_ns
    }

    /// A message due at run time `at_ns` may leave now.
    pub fn is_due(&self, at_ns: u64) -> bool {
        self.now_ns() + self.slack_ns >= at_ns
    }

    /// Wakes `waker` at run time `at_ns`, or at the expiry before it if that
    /// is within the slack (never more than the slack before).
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

    /// Wakes everything due within the slack, then arms for the earliest
    /// that is left.
    fn fire(&self) {
        let until = self.clock.now_ns() + self.slack_ns;
        let mut q = self.queue.borrow_mut();
        q.armed = None;
        while q.heap.peek().is_some_and(|Reverse(d)| d.at_ns <= until) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    fn woken(w: &Arc<Wakes>) -> bool {
        w.0.load(Relaxed) > 0
    }

    /// Registers wake-ups 20 ms, 300 ms and 2 s ahead and drives the
    /// timer until the first is woken: which of the others were woken
    /// with it.
    async fn woken_with_the_first(slack: Duration) -> (bool, bool) {
        let pacer = Pacer::new(Clock::start(), slack.as_nanos() as u64).unwrap();
        let ms = |n: u64| pacer.now_ns() + n * 1_000_000;
        let [first, second, third] = [(); 3].map(|_| Arc::new(Wakes::default()));
        pacer.wake_at(ms(20), &Waker::from(first.clone()));
        pacer.wake_at(ms(300), &Waker::from(second.clone()));
        pacer.wake_at(ms(2_000), &Waker::from(third.clone()));
        let run = pacer.run();
        tokio::pin!(run);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !woken(&first) {
                tokio::select! {
                    _ = &mut run => unreachable!("the pacer runs for as long as its fd"),
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        })
        .await
        .expect("the first wake-up came");
        (woken(&second), woken(&third))
    }

    #[tokio::test]
    async fn an_expiry_takes_what_is_due_within_the_slack_and_no_more() {
        assert_eq!(
            woken_with_the_first(Duration::from_millis(500)).await,
            (true, false)
        );
    }

    #[tokio::test]
    async fn without_slack_nothing_is_woken_before_its_time() {
        assert_eq!(woken_with_the_first(Duration::ZERO).await, (false, false));
    }
}
