//! The worker's own epoll loop for sessions on plain TCP: each session's
//! socket is registered with one `mio::Poll` per worker thread and the
//! session is polled straight from its readiness events, the way uSockets'
//! loop drives uWebSockets. As a tokio task, every event costs a waker, a
//! trip through the run queue, a task poll, `Registration::poll_ready` and
//! the stream adapters: about 600 ns of the server's ~9 µs per message at
//! 1000 x 20 B (perf, 2026-12-03), most of what wsecho spent in user space
//! beyond uWebSockets.
//!
//! In the server the loop owns its worker thread ([`own_thread`]): it
//! blocks in its own `epoll_wait`, in which the runtime's epoll fd is
//! registered, and gives the runtime a turn (hyper, timers, every other
//! task) when that fd is readable, when a session has left the loop,
//! within `TASK_TURN` of a session waking a task of this thread
//! ([`woke_a_task`](crate::wake::woke_a_task)), and at least every `RUNTIME_TURN` for its timers, by a
//! timerfd, as uSockets keeps its timer. At a fixed 40k msg/s over 100
//! connections, where a wake-up brings one or two events, this spends what
//! uWebSockets spends per message, within the machine's noise (0.94-1.05×
//! over two full runs, results/2026-12-03 and results/2026-12-03-2).
//! Where there is no owner (the library in tests, or if the runtime's epoll
//! fd cannot be found), the loop is one task of the runtime with its epoll
//! fd nested the other way round: every wake-up then costs one more
//! `epoll_wait`, about 3 % of the CPU per message at that fixed rate, and
//! the per-event task machinery it saves pays only where wake-ups bring
//! many events. Blocking in the loop for 1 ms slices between runtime turns
//! measured worse than both (13.2 µs: the kernel's wake-up path grew).
//!
//! Only the steady state runs here: a session whose poll ends (close,
//! error, drain) leaves the loop and finishes its close handshake on a
//! task of its own ([`Driven::leave`]). Nothing here knows about HTTP: the upgrade hands
//! over a [`Driven`].
//!
//! What still wakes a session other than its socket (the sweep's tick, the
//! drain, a chat peer's message, its own fairness budget) goes through the
//! session's [`Waker`], which queues its token for the loop's next turn.
//!
//! Here: the loop, its sessions and the nested task. Beside it: `lent`
//! (a session's socket while the loop drives it), `owner` (the loop
//! that owns its thread), `ticker` (that loop's timerfd) and `woken` (the
//! tokens of sessions woken other than by their socket).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::warn;

pub use lent::Lent;
pub use owner::{own_thread, owner_runtime};
use woken::Woken;

mod lent;
mod owner;
#[cfg(test)]
mod tests;
mod ticker;
mod woken;

/// Readiness events taken per `epoll_wait`, as uSockets does.
const EVENTS: usize = 1024;

/// A session the loop can drive: a WebSocket session and whatever its
/// owner keeps beside it (its connection slot, its log line).
pub trait Driven {
    /// The socket to watch.
    fn fd(&self) -> RawFd;

    /// Polls the session once. `edge`: what epoll said of the socket since
    /// the last poll (empty for a wake-up by the session's waker). Ready
    /// when the session is through with the steady state.
    fn poll(&mut self, cx: &mut Context<'_>, edge: Edge) -> Poll<()>;

    /// The session leaves the loop (its socket already deregistered): it
    /// goes on, or finishes, on a tokio task of its own.
    fn leave(self: Box<Self>);
}

/// What an epoll event said of a socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct Edge {
    pub readable: bool,
    pub writable: bool,
    /// The peer's end of stream (or an error) is queued behind whatever
    /// data there is: no later edge will announce it.
    pub closed: bool,
}

impl Edge {
    fn of(event: &mio::event::Event) -> Edge {
        let closed = event.is_read_closed() || event.is_error();
        Edge {
            // An error or a hang-up is seen by a read.
            readable: event.is_readable() || closed,
            writable: event.is_writable() || event.is_write_closed(),
            closed,
        }
    }
}

/// One session's waker: queues its token once until the loop polls it.
struct TokenWaker {
    token: usize,
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.woken.push(self.token);
        }
    }
}

struct Entry {
    driven: Box<dyn Driven>,
    token: Arc<TokenWaker>,
    waker: Waker,
}

/// A worker thread's loop: its epoll instance (watched by tokio) and the
/// sessions in it.
struct Loop {
    poll: Epoll,
    events: Events,
    entries: Slab<Entry>,
    woken: Arc<Woken>,
    /// The tokens taken from [`Woken`] for this turn (kept for its
    /// allocation).
    batch: Vec<usize>,
}

thread_local! {
    static LOOP: RefCell<Option<Loop>> = const { RefCell::new(None) };
    /// A session left the loop since the runtime's last turn: a task was
    /// spawned for its close handshake.
    static SPAWNED: Cell<bool> = const { Cell::new(false) };
}

/// The loop's epoll instance: watched by tokio (nested in the runtime's),
/// or owning the thread, with the runtime's nested in it ([`own_thread`]).
enum Epoll {
    Nested(AsyncFd<mio::Poll>),
    Owner(mio::Poll),
}

impl Epoll {
    fn get_ref(&self) -> &mio::Poll {
        match self {
            Epoll::Nested(fd) => fd.get_ref(),
            Epoll::Owner(poll) => poll,
        }
    }

    fn get_mut(&mut self) -> &mut mio::Poll {
        match self {
            Epoll::Nested(fd) => fd.get_mut(),
            Epoll::Owner(poll) => poll,
        }
    }
}

/// Hands `driven` to this worker's loop, starting the loop on first use.
/// Gives it back when there is no loop to be had here: outside a
/// current-thread runtime (where a task may move between threads and the
/// loop is per thread), or when epoll fails.
pub fn adopt(driven: Box<dyn Driven>) -> Result<(), Box<dyn Driven>> {
    let flavor = Handle::try_current().map(|h| h.runtime_flavor());
    if !matches!(flavor, Ok(RuntimeFlavor::CurrentThread)) {
        return Err(driven);
    }
    LOOP.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match start() {
                Ok(l) => *slot = Some(l),
                Err(e) => {
                    warn!(error = %e, "no session loop; sessions run as tasks");
                    return Err(driven);
                }
            }
        }
        let Some(l) = slot.as_mut() else {
            return Err(driven);
        };
        l.insert(driven)
    })
}

/// The loop's epoll instance, and the task that waits on it.
fn start() -> io::Result<Loop> {
    let poll = mio::Poll::new()?;
    let readable = tokio::io::Interest::READABLE;
    // SAFETY: the `AsyncFd` owns the `Poll` and with it the epoll fd, which
    // stays open and the same until the `AsyncFd` is dropped (it is never
    // taken out), as tokio's registration requires.
    #[allow(unsafe_code)]
    let poll =
        unsafe { AsyncFd::register_with_interest(poll, readable) }.map_err(io::Error::from)?;
    let woken = Arc::new(Woken::default());
    // Unconstrained, as the owner loop (see `own_thread`).
    tokio::spawn(tokio::task::unconstrained(run(Running, woken.clone())));
    Ok(Loop {
        poll: Epoll::Nested(poll),
        events: Events::with_capacity(EVENTS),
        entries: Slab::new(),
        woken,
        batch: Vec::new(),
    })
}

impl Loop {
    /// Polls the sessions woken by something other than their socket.
    #[inline]
    fn poll_woken(&mut self) {
        // Nearly every turn: nothing woken. One flag read, not the batch's
        // take and put back, nor a call.
        if self.woken.any() {
            self.poll_woken_batch();
        }
    }

    #[inline(never)]
    fn poll_woken_batch(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        self.woken.take(&mut batch);
        for token in batch.drain(..) {
            // Cleared before the poll, so a wake during it queues the token
            // again; only here: a poll for a socket event leaves the flag,
            // and the token it stands for, to this pass (a spare poll at
            // worst), rather than touch the waker's cache line per event.
            // A swap, not a store: a waker whose swap still found the flag
            // set (and queued nothing) then synchronises with this one, so
            // the poll sees what it changed before waking (the drain's flag,
            // read relaxed). A plain store may wait in the store buffer
            // past the poll's reads, and that wake-up would be lost.
            if let Some(e) = self.entries.get(token) {
                e.token.queued.swap(false, Ordering::AcqRel);
            }
            poll_entry(
                &mut self.entries,
                self.poll.get_ref(),
                token,
                Edge::default(),
            );
        }
        self.batch = batch;
    }

    fn insert(&mut self, driven: Box<dyn Driven>) -> Result<(), Box<dyn Driven>> {
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        let fd = driven.fd();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) =
            self.poll
                .get_ref()
                .registry()
                .register(&mut SourceFd(&fd), Token(key), interest)
        {
            warn!(error = %e, "cannot watch a session's socket; it runs as a task");
            return Err(driven);
        }
        let token = Arc::new(TokenWaker {
            token: key,
            queued: AtomicBool::new(false),
            woken: self.woken.clone(),
        });
        let waker = Waker::from(token.clone());
        // Polled once at once, edge or not: bytes hyper read past the
        // request head, or a greeting, wait for no event.
        waker.wake_by_ref();
        entry.insert(Entry {
            driven,
            token,
            waker,
        });
        Ok(())
    }

    /// One turn: every socket epoll reports, then every session woken
    /// otherwise. True when there may be more to do at once (a full batch
    /// of events, or sessions woken meanwhile).
    fn turn(&mut self) -> bool {
        if let Err(e) = self
            .poll
            .get_mut()
            .poll(&mut self.events, Some(Duration::ZERO))
        {
            if e.kind() == io::ErrorKind::Interrupted {
                return true;
            }
            warn!(error = %e, "epoll_wait failed");
            return false;
        }
        let mut n = 0;
        for event in self.events.iter() {
            n += 1;
            poll_entry(
                &mut self.entries,
                self.poll.get_ref(),
                event.token().0,
                Edge::of(event),
            );
        }
        self.poll_woken();
        n == EVENTS || self.woken.any()
    }
}

fn poll_entry(entries: &mut Slab<Entry>, poll: &mio::Poll, key: usize, edge: Edge) {
    let Some(e) = entries.get_mut(key) else {
        return; // left earlier in this turn
    };
    let mut cx = Context::from_waker(&e.waker);
    if e.driven.poll(&mut cx, edge).is_pending() {
        return;
    }
    let e = entries.remove(key);
    let _ = poll.registry().deregister(&mut SourceFd(&e.driven.fd()));
    e.driven.leave();
    SPAWNED.set(true);
}

/// The loop task's hold on the loop: when the runtime drops the task (it
/// is shutting down), the loop and every session in it go with it.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = LOOP.try_with(|cell| cell.borrow_mut().take());
    }
}

/// Waits for the loop's epoll fd (or a session's waker), turns the loop,
/// and yields between busy turns so the runtime's other tasks keep their
/// turn.
async fn run(_running: Running, woken: Arc<Woken>) {
    // The first turn looks without waiting: sessions were queued already.
    let mut busy = true;
    loop {
        if !busy {
            let watched = std::future::poll_fn(|cx| {
                woken.task.register(cx.waker());
                if woken.any() {
                    return Poll::Ready(true);
                }
                LOOP.with(|cell| {
                    let l = cell.borrow();
                    let Some(l) = l.as_ref() else {
                        return Poll::Ready(false);
                    };
                    let Epoll::Nested(fd) = &l.poll else {
                        return Poll::Ready(false);
                    };
                    match fd.poll_read_ready(cx) {
                        // Cleared before epoll_wait: an event that comes
                        // after it raises the readiness again.
                        Poll::Ready(Ok(mut ready)) => {
                            ready.clear_ready();
                            Poll::Ready(true)
                        }
                        // The runtime's I/O driver is gone: it is shutting down.
                        Poll::Ready(Err(_)) => Poll::Ready(false),
                        Poll::Pending => Poll::Pending,
                    }
                })
            })
            .await;
            if !watched {
                return;
            }
        }
        busy = LOOP.with(|cell| cell.borrow_mut().as_mut().is_some_and(Loop::turn));
        if busy {
            tokio::task::yield_now().await;
        }
    }
}
