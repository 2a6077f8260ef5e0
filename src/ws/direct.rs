//! The worker's own epoll loop for sessions on plain TCP: each session's
//! socket is registered with one `mio::Poll` per worker thread and the
//! session is polled straight from its readiness events, the way uSockets'
//! loop drives uWebSockets. As a tokio task, every event costs a waker, a
//! trip through the run queue, a task poll, `Registration::poll_ready` and
//! the stream adapters: about 600 ns of the server's ~9 µs per message at
//! 1000 x 20 B (perf, 2026-12-03), most of what wsecho spent in user space
//! beyond uWebSockets.
//!
//! The loop lives inside the worker's current-thread runtime, as one task:
//! its epoll fd is registered with tokio's (nested epoll), so hyper, timers
//! and every other task run as before, and a wake-up brings the events of
//! every session with one more `epoll_wait`. That extra call is what the
//! loop costs where wake-ups bring one or two events each (40k msg/s over
//! 100 connections: +3 % CPU per message against tasks); where they bring
//! many, it saves the per-event task machinery. Blocking in the loop's own
//! `epoll_wait` for slices of a millisecond instead, tokio's turn left out,
//! measured worse still at 40k msg/s (13.2 against 11.0 µs per message,
//! 2026-12-03: the kernel's wake-up path grew). Only the steady state runs
//! here: a session whose poll ends (close, error, drain) leaves the loop
//! and finishes its close handshake on a task of its own
//! ([`Driven::leave`]). Nothing here knows about HTTP: the upgrade hands
//! over a [`Driven`].
//!
//! What still wakes a session other than its socket (the sweep's tick, the
//! drain, a chat peer's message, its own fairness budget) goes through the
//! session's [`Waker`], which queues its token for the loop's next turn.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::warn;

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

/// Tokens whose sessions were woken by something other than their socket,
/// and the loop task's waker. Shared with wakers on other threads (the
/// sweep ticks on worker 0; a chat message can come from any worker).
#[derive(Default)]
struct Woken {
    tokens: Mutex<Vec<usize>>,
    task: AtomicWaker,
}

impl Woken {
    fn push(&self, token: usize) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(token);
        self.task.wake();
    }

    fn take(&self, into: &mut Vec<usize>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *tokens, into);
    }

    fn any(&self) -> bool {
        !self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
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
    poll: AsyncFd<mio::Poll>,
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
    tokio::spawn(run(Running, woken.clone()));
    Ok(Loop {
        poll,
        events: Events::with_capacity(EVENTS),
        entries: Slab::new(),
        woken,
        batch: Vec::new(),
    })
}

impl Loop {
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
            let closed = event.is_read_closed() || event.is_error();
            let edge = Edge {
                // An error or a hang-up is seen by a read.
                readable: event.is_readable() || closed,
                writable: event.is_writable() || event.is_write_closed(),
                closed,
            };
            poll_entry(
                &mut self.entries,
                self.poll.get_ref(),
                event.token().0,
                edge,
            );
        }
        let mut batch = std::mem::take(&mut self.batch);
        self.woken.take(&mut batch);
        for token in batch.drain(..) {
            poll_entry(
                &mut self.entries,
                self.poll.get_ref(),
                token,
                Edge::default(),
            );
        }
        self.batch = batch;
        n == EVENTS || self.woken.any()
    }
}

fn poll_entry(entries: &mut Slab<Entry>, poll: &mio::Poll, key: usize, edge: Edge) {
    let Some(e) = entries.get_mut(key) else {
        return; // left earlier in this turn
    };
    e.token.queued.store(false, Ordering::Release);
    let mut cx = Context::from_waker(&e.waker);
    if e.driven.poll(&mut cx, edge).is_pending() {
        return;
    }
    let e = entries.remove(key);
    let _ = poll.registry().deregister(&mut SourceFd(&e.driven.fd()));
    e.driven.leave();
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
                    match l.poll.poll_read_ready(cx) {
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
