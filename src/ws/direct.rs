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
//! within [`TASK_TURN`] of a session waking a task of this thread
//! ([`woke_a_task`]), and at least every [`RUNTIME_TURN`] for its timers, by a
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

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::warn;

use woken::Woken;

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

/// A session's socket while the loop drives it: plain non-blocking reads
/// and writes, `Pending` on `WouldBlock` without registering any waker,
/// because the loop polls the session again on the socket's next epoll
/// edge. After a short read (or write) the socket is known to be drained
/// (or full), so the next call is `Pending` without a system call until an
/// edge says otherwise, as tokio's own `TcpStream` does.
#[derive(Debug)]
pub struct Lent {
    tcp: std::net::TcpStream,
    read_drained: bool,
    write_full: bool,
    /// Read on after a short read: the end of stream (or the error) that
    /// epoll reported comes after the data.
    closed: bool,
}

impl Lent {
    pub fn new(tcp: std::net::TcpStream) -> Self {
        Lent {
            tcp,
            read_drained: false,
            write_full: false,
            closed: false,
        }
    }

    /// An epoll edge: what it says is ready may be tried again.
    pub fn edge(&mut self, edge: Edge) {
        self.read_drained &= !edge.readable;
        self.write_full &= !edge.writable;
        self.closed |= edge.closed;
    }

    pub fn into_std(self) -> std::net::TcpStream {
        self.tcp
    }

    fn attempt<T>(
        blocked: &mut bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        if *blocked {
            return Poll::Pending;
        }
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *blocked = true;
                    return Poll::Pending;
                }
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsRawFd for Lent {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl AsyncRead for Lent {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let dst = buf.initialize_unfilled();
        let room = dst.len();
        let tcp = &me.tcp;
        let n = std::task::ready!(Self::attempt(&mut me.read_drained, || (&*tcp).read(dst)))?;
        // A read that did not fill the room emptied the socket, unless the
        // peer's end of stream waits behind the data.
        me.read_drained = n < room && !me.closed;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Lent {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let tcp = &me.tcp;
        let n = std::task::ready!(Self::attempt(&mut me.write_full, || (&*tcp).write(buf)))?;
        me.write_full = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let tcp = &me.tcp;
        let n =
            std::task::ready!(Self::attempt(&mut me.write_full, || (&*tcp).write_vectored(bufs)))?;
        me.write_full = n < bufs.iter().map(|b| b.len()).sum();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.tcp.shutdown(std::net::Shutdown::Write))
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
    fn poll_woken(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        self.woken.take(&mut batch);
        for token in batch.drain(..) {
            // Cleared before the poll, so a wake during it queues the token
            // again; only here: a poll for a socket event leaves the flag,
            // and the token it stands for, to this pass (a spare poll at
            // worst), rather than touch the waker's cache line per event.
            if let Some(e) = self.entries.get(token) {
                e.token.queued.store(false, Ordering::Release);
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

#[cfg(test)]
mod tests;

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
/// task of this thread ([`woke_a_task`]: a chat message to a TLS peer's
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
    /// A session left the loop since the runtime's last turn: a task was
    /// spawned for its close handshake.
    static SPAWNED: Cell<bool> = const { Cell::new(false) };
    /// A session may have woken a task of this thread since the loop last
    /// looked ([`woke_a_task`]).
    static TASK_WOKEN: Cell<bool> = const { Cell::new(false) };
    /// Runtime turns an owner loop gave on this thread, for tests.
    #[cfg(test)]
    static TURNS: Cell<u32> = const { Cell::new(0) };
    /// The owner loop, waiting for the runtime to run out of ready tasks.
    static IDLE: Cell<Option<Waker>> = const { Cell::new(None) };
    /// This thread's runtime came from [`owner_runtime`].
    static HOOKED: Cell<bool> = const { Cell::new(false) };
    /// The runtime's epoll fd, once an owner loop watches it.
    static RUNTIME_FD: Cell<Option<RawFd>> = const { Cell::new(None) };
}

/// Tells this thread's owner loop that a session it polls may have woken a
/// tokio task of this thread (sent on a channel a task waits on). Such a
/// wake makes no fd readable, so without this the task waits for the
/// periodic [`RUNTIME_TURN`]; with it, [`TASK_TURN`]. Every place where a
/// session wakes a task calls it; elsewhere it costs nothing.
pub fn woke_a_task() {
    TASK_WOKEN.set(true);
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
fn before_park() {
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
/// [`TASK_TURN`] after a session woke a task ([`woke_a_task`]), and every
/// [`RUNTIME_TURN`]. Returns `main`'s output once it is done (a panic in
/// `main` comes back as the error).
pub async fn own_thread<T: Send + 'static>(
    main: impl Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    own_thread_every(RUNTIME_TURN, main).await
}

/// [`own_thread`] with the runtime's periodic turn every `turn`.
async fn own_thread_every<T: Send + 'static>(
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

/// An owner loop's timerfd: expires every `every`, or once sooner when
/// pulled in.
struct Ticker {
    fd: std::fs::File,
    every: Duration,
    /// Pulled in since it last expired.
    soon: bool,
}

impl Ticker {
    fn new(every: Duration) -> io::Result<Ticker> {
        use std::os::fd::FromRawFd;
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: a plain system call with constant arguments.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        #[allow(unsafe_code)]
        let fd = unsafe { std::fs::File::from_raw_fd(fd) };
        let ticker = Ticker {
            fd,
            every,
            soon: false,
        };
        ticker.set(every)?;
        Ok(ticker)
    }

    /// Next expiry in `first`, then every `every`.
    fn set(&self, first: Duration) -> io::Result<()> {
        let spec = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: spec(self.every),
            it_value: spec(first),
        };
        // SAFETY: `fd` is an open timerfd; `spec` lives across the call and
        // a null old value is allowed.
        #[allow(unsafe_code)]
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Expires within [`TASK_TURN`], unless already pulled in.
    fn soon(&mut self) {
        if !self.soon {
            self.soon = self.set(TASK_TURN).is_ok();
        }
    }

    /// It expired: reads the count, so that the next expiry is an edge.
    fn expired(&mut self) {
        let _ = (&self.fd).read(&mut [0u8; 8]);
        self.soon = false;
    }
}

/// The epoll fd of the current runtime's I/O driver, which tokio does not
/// expose (tokio-rs/tokio#7348): the one epoll instance of this process
/// that watches a socket just registered with this runtime, by the kernel's
/// own account in `/proc/self/fdinfo`.
fn runtime_epoll_fd() -> io::Result<RawFd> {
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
        if TASK_WOKEN.replace(false) || runtime || spawned {
            tick.soon();
        }
        due || spawned
    }
}
