//! The worker's session loop as the owner of its thread: it blocks in its
//! own `epoll_wait`, with the runtime's epoll fd nested in it, and gives
//! the runtime its turns (see the parent module for why).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;
use tracing::warn;

use super::ticker::Ticker;
use super::{EVENTS, Edge, Epoll, LOOP, Loop, SPAWNED, Woken, poll_entry};
use crate::wake;

/// The token of the runtime's epoll fd in an owner loop's epoll.
const RUNTIME: Token = Token(usize::MAX);
/// The token of the eventfd that wakes an owner loop for sessions woken on
/// other threads.
const WAKER: Token = Token(usize::MAX - 1);
/// The token of the owner loop's timerfd.
const TICK: Token = Token(usize::MAX - 2);
/// How often an owner loop gives the runtime a turn whatever else happens:
/// the runtime's timers (hyper's, the sweep's, close timeouts) are this
/// late at worst. A timerfd in the loop's epoll, as uSockets keeps its
/// timer, so that `epoll_wait` blocks without a timeout: one with a
/// timeout arms a kernel timer per call (`read_tsc`, `select_estimate_
/// accuracy`: ~110 ns per message at 40k msg/s, perf, 2026-12-03).
const RUNTIME_TURN: Duration = Duration::from_millis(50);
/// How soon an owner loop gives the runtime a turn after a session woke a
/// task of this thread ([`wake::woke_a_task`]: a chat message to a TLS peer's
/// task, a publish to the Redis link's): such a wake goes to the runtime's
/// run queue and makes no fd readable. Pulled in once per turn, so it
/// costs one `timerfd_settime` and one turn per millisecond at most under
/// load. Only for such wakes: pulled in after every session poll, as it
/// was, an echo server woke about 900 times a second for turns with nothing
/// to run, 7 % of its CPU per message at a fixed 40k msg/s (100 x 20 B:
/// 7.73 against 7.19 µs, uWebSockets 7.24; `scripts/server-ab.sh`,
/// 2026-12-05).
const TASK_TURN: Duration = Duration::from_millis(1);

thread_local! {
    /// Runtime turns an owner loop gave on this thread, for tests.
    #[cfg(test)]
    pub(super) static TURNS: Cell<u32> = const { Cell::new(0) };
    /// The owner loop, waiting for the runtime to run out of ready tasks.
    pub(super) static IDLE: Cell<Option<Waker>> = const { Cell::new(None) };
    /// This thread's runtime came from [`owner_runtime`].
    static HOOKED: Cell<bool> = const { Cell::new(false) };
    /// The runtime's epoll fd, once an owner loop watches it.
    pub(super) static RUNTIME_FD: Cell<Option<RawFd>> = const { Cell::new(None) };
}

/// A current-thread runtime for [`own_thread`], used on the thread that
/// builds it: it tells the loop when it is about to park, which is how the
/// loop knows that every task it had ready has run (tokio does not say
/// how long its run queue is).
pub fn owner_runtime() -> io::Result<tokio::runtime::Runtime> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(before_park)
        .build()?;
    HOOKED.set(true);
    Ok(rt)
}

/// The owner runtime's hook before it parks: the end of the loop's
/// runtime turn, or more of it while I/O events wait.
pub(super) fn before_park() {
    let Some(waker) = IDLE.take() else {
        return;
    };
    // With I/O events waiting, let the runtime's park take them
    // and run what they wake, the turn going on. But the park must
    // not block: an event seen here can be gone by the time the
    // driver polls (the signal pipe is in every runtime's epoll,
    // and another worker may have read it), and a runtime parked
    // for good never gives the loop back; its sessions then missed
    // the drain's 1001 (tests/shutdown.rs, about one run in 30).
    // Woken and left in place, the loop's waker makes the park
    // return at once without ending the turn. Otherwise the
    // loop's turn: the runtime polls its driver once without
    // blocking (for timers) and comes back to the loop.
    if RUNTIME_FD.get().is_some_and(has_events) {
        waker.wake_by_ref();
        IDLE.set(Some(waker));
    } else {
        waker.wake();
    }
}

/// Runs `main` on the current (current-thread) runtime with the worker's
/// session loop owning the thread: the loop blocks in its own `epoll_wait`,
/// in which the runtime's epoll fd is nested, and gives the runtime a turn
/// when that fd is readable, when a session left the loop, within
/// `TASK_TURN` after a session woke a task ([`wake::woke_a_task`]), and every
/// `RUNTIME_TURN`. Returns `main`'s output once it is done (a panic in
/// `main` comes back as the error).
pub async fn own_thread<T: Send + 'static>(
    main: impl Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    own_thread_every(RUNTIME_TURN, main).await
}

/// [`own_thread`] with the runtime's periodic turn every `turn`.
pub(super) async fn own_thread_every<T: Send + 'static>(
    turn: Duration,
    main: impl Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    let main = tokio::spawn(main);
    let owner = if HOOKED.get() {
        install_owner(turn)
    } else {
        Err(io::Error::other("the runtime is not from owner_runtime"))
    };
    let mut tick = match owner {
        Ok(tick) => tick,
        Err(e) => {
            warn!(error = %e, "no thread-owning session loop; sessions run nested");
            return main.await.map_err(|e| e.into_panic());
        }
    };
    // Unconstrained: tokio's cooperative budget (128 operations per poll)
    // is refilled only when a task's poll returns, and this one returns
    // only for the runtime's turns. Spent, it would make every session's
    // inbox read pending until then (chat deliveries waited for the 50 ms
    // turn: p50 54 ms at 100 peers in one room, results/2026-12-03). The
    // sessions keep their own fairness budget.
    tokio::task::unconstrained(async {
        let mut due = true;
        loop {
            if due {
                #[cfg(test)]
                TURNS.set(TURNS.get() + 1);
                runtime_turn().await;
                if main.is_finished() {
                    break;
                }
            }
            due = LOOP.with(|cell| {
                cell.borrow_mut()
                    .as_mut()
                    .is_none_or(|l| l.own_turn(&mut tick))
            });
        }
    })
    .await;
    let _ = LOOP.try_with(|cell| cell.borrow_mut().take());
    RUNTIME_FD.set(None);
    main.await.map_err(|e| e.into_panic())
}

/// Lets the runtime run every task that is ready and look at its I/O and
/// timers: pending until it is about to park with no I/O event waiting.
/// Twice, because the driver poll that follows the first may fire timers;
/// what fires in the second (or an event that comes between the check and
/// the poll) waits for the turn pulled in after this one ([`TASK_TURN`]).
async fn runtime_turn() {
    idle().await;
    idle().await;
}

async fn idle() {
    let mut waiting = false;
    std::future::poll_fn(|cx| {
        // The hook took the waker: the runtime was about to park.
        if waiting && IDLE.take().is_none() {
            return Poll::Ready(());
        }
        waiting = true;
        IDLE.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await
}

/// The epoll instance `fd` has events ready.
fn has_events(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the length of the call.
    #[allow(unsafe_code)]
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0
}

/// The thread's loop as the owner, with the runtime's epoll fd, the
/// wake-up eventfd and the timerfd in its epoll; returns the timer.
fn install_owner(turn: Duration) -> io::Result<Ticker> {
    let runtime = runtime_epoll_fd()?;
    RUNTIME_FD.set(Some(runtime));
    let tick = Ticker::new(turn)?;
    let poll = mio::Poll::new()?;
    let eventfd = mio::Waker::new(poll.registry(), WAKER)?;
    let registry = poll.registry();
    registry.register(&mut SourceFd(&runtime), RUNTIME, Interest::READABLE)?;
    registry.register(
        &mut SourceFd(&tick.fd.as_raw_fd()),
        TICK,
        Interest::READABLE,
    )?;
    let woken = Arc::new(Woken::with_eventfd(eventfd));
    LOOP.with(|cell| {
        *cell.borrow_mut() = Some(Loop {
            poll: Epoll::Owner(poll),
            events: Events::with_capacity(EVENTS),
            entries: Slab::new(),
            woken,
            batch: Vec::new(),
        })
    });
    Ok(tick)
}

/// The epoll fd of the current runtime's I/O driver, which tokio does not
/// expose (tokio-rs/tokio#7348): the one epoll instance of this process
/// that watches a socket just registered with this runtime, by the kernel's
/// own account in `/proc/self/fdinfo`.
pub(super) fn runtime_epoll_fd() -> io::Result<RawFd> {
    let (probe, _other) = tokio::net::UnixStream::pair()?;
    let mark = format!("tfd: {:>8} ", probe.as_raw_fd());
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let Ok(fd) = entry?.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        if link.as_os_str() != "anon_inode:[eventpoll]" {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        if info.lines().any(|l| l.starts_with(&mark)) {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "the runtime's epoll fd",
    ))
}

impl Loop {
    /// One turn of a thread-owning loop, blocking until something happens:
    /// true when the runtime should have its turn now.
    fn own_turn(&mut self, tick: &mut Ticker) -> bool {
        let wait = if self.woken.may_block() {
            None
        } else {
            Some(Duration::ZERO)
        };
        let polled = self.poll.get_mut().poll(&mut self.events, wait);
        self.woken.awake();
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                warn!(error = %e, "epoll_wait failed");
                return true;
            }
            return false;
        }
        let (mut due, mut runtime) = (false, false);
        for event in self.events.iter() {
            match event.token() {
                RUNTIME => (due, runtime) = (true, true),
                TICK => {
                    tick.expired();
                    due = true;
                }
                WAKER => {}
                Token(key) => {
                    poll_entry(&mut self.entries, self.poll.get_ref(), key, Edge::of(event));
                }
            }
        }
        self.poll_woken();
        let spawned = SPAWNED.replace(false);
        // Sessions may have woken tasks of this thread, and the turn the
        // runtime's fd asks for may leave some that its last driver poll
        // woke: neither makes an fd readable.
        if wake::take() || runtime || spawned {
            tick.soon(TASK_TURN);
        }
        due || spawned
    }
}
