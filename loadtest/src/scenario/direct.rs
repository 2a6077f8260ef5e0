//! The worker's own epoll loop for closed-loop echo on plain TCP: each
//! connection's socket is lent to one `mio::Poll` per worker thread and
//! driven from its readiness events directly, the way uSockets' loop
//! drives `load_test`. Driven by tokio instead, every readiness event
//! costs a waker, a trip through the run queue, a task poll and the
//! stream adapters: about 200 ns of the generator's ~3,600 per TCP
//! segment at 1000 x 20 B (`scripts/segment-costs.sh`), the larger part
//! of what kept it behind `load_test` per core.
//!
//! Everything else stays with tokio: dialling, the handshake, the
//! closing handshake, other scenarios, TLS and HTTP/2. A connection's
//! task lends the socket once its traffic starts ([`Direct::drive`]) and
//! takes it back, with how the run ended, when the loop is through with
//! it. The loop shares the thread with the worker's runtime: it blocks
//! in epoll for at most `SLICE`, then yields so that the runtime's own
//! timers and tasks (the per-second ticker, the main loop on worker 0)
//! run. It runs only while it holds a connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Poll};
use tokio::sync::oneshot;

use crate::conn::{Conn, Event, Read};
use crate::scenario::WorkerCtx;
use crate::scenario::echo::{EchoLoop, End};

mod batch;

/// Longest the loop keeps the thread from the runtime (epoll's timeout is
/// in whole milliseconds, so up to about twice this). The runtime's timers
/// have a 1 ms resolution: none is held back by much more than its own
/// rounding.
const SLICE: Duration = Duration::from_millis(1);

/// How often each connection's timeouts and the window's end are checked
/// when nothing arrives on it (the task-driven loop's timer, which rounds
/// to a millisecond, is per connection; a sweep costs one pass over all).
const SWEEP_NS: u64 = 20_000_000;

/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// Bytes queued in a batch before they are written without waiting for its
/// end: each connection holds a send buffer until its frames are written,
/// and 500 of them at 16 KiB is 8 MiB of memory going cold between the
/// write into it and the kernel's copy from it. Below this the send
/// buffers come round again from the worker's pool while still in cache.
const FLUSH_BYTES: usize = 64 << 10;

/// Connections whose messages wait in a batch before they are written
/// without waiting for its end. In a batch of hundreds the server has
/// nothing left to do until our writes reach it, and its idle core costs
/// this one: the kernel frees the buffers we read on the core that
/// allocated them and, with that core not running its network softirq,
/// kicks it with an IPI every 32 buffers (`skb_attempt_defer_free`), a
/// trapped APIC write in a VM. Written in parts, the batch gives the
/// server work while the rest is read: at 1000 x 20 B against wsecho,
/// 2 % more messages per CPU second than written at the batch's end
/// (`scripts/generator-ab.sh`, 6 interleaved rounds; loadtest/README).
const FLUSH_CONNS: usize = 64;

/// One connection in the loop.
struct Entry {
    sock: TcpStream,
    conn: Conn,
    echo: EchoLoop,
    done: oneshot::Sender<Returned>,
}

impl Entry {
    /// Writes what the connection has queued; a failed write ends it.
    fn write_out(&mut self) -> ControlFlow<End> {
        match self.conn.write_to(&mut Sender(&self.sock)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(self.echo.failed(e)),
        }
    }
}

/// What the loop hands back to the connection's task.
struct Returned {
    sock: TcpStream,
    conn: Conn,
    echo: EchoLoop,
    end: End,
}

/// A worker's epoll loop and the connections it drives, indexed by token.
pub struct Direct {
    poll: RefCell<Poll>,
    entries: RefCell<Vec<Option<Entry>>>,
    free: RefCell<Vec<usize>>,
    held: Cell<usize>,
    running: Cell<bool>,
    /// Tokens whose connections queued frames in this batch, and how many
    /// bytes.
    unflushed: RefCell<Vec<usize>>,
    unflushed_bytes: Cell<usize>,
    /// Tokens lent since the loop's last turn, their first messages queued
    /// and not yet written.
    starting: RefCell<Vec<usize>>,
}

impl Direct {
    pub fn new() -> io::Result<Direct> {
        Ok(Direct {
            poll: RefCell::new(Poll::new()?),
            entries: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            held: Cell::new(0),
            running: Cell::new(false),
            unflushed: RefCell::new(Vec::new()),
            unflushed_bytes: Cell::new(0),
            starting: RefCell::new(Vec::new()),
        })
    }

    /// Runs `echo` on `conn` in the loop until the connection is through,
    /// as [`EchoLoop::drive`] would; a connection without a plain socket
    /// is driven by `drive` itself.
    pub async fn drive(
        &self,
        ctx: &Rc<WorkerCtx>,
        mut conn: Conn,
        mut echo: EchoLoop,
    ) -> (Conn, EchoLoop, End) {
        let Some(tcp) = conn.lend_socket() else {
            let end = echo.drive(&mut conn).await;
            return (conn, echo, end);
        };
        // `into_std` takes it out of tokio's epoll: one registration each,
        // or every event would wake both.
        let sock = match tcp.into_std() {
            Ok(std) => TcpStream::from_std(std),
            Err(e) => {
                let end = echo.failed(e);
                return (conn, echo, end);
            }
        };
        let token = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut entries = self.entries.borrow_mut();
            entries.push(None);
            entries.len() - 1
        });
        // The first messages are queued here; the loop registers the socket
        // and writes them at its next turn ([`Direct::start_in_order`]).
        echo.start(&mut conn, ctx.now_ns());
        let (done, returned) = oneshot::channel();
        self.entries.borrow_mut()[token] = Some(Entry {
            sock,
            conn,
            echo,
            done,
        });
        self.held.set(self.held.get() + 1);
        self.starting.borrow_mut().push(token);
        if !self.running.replace(true) {
            tokio::task::spawn_local(run(ctx.clone()));
        }
        let Ok(Returned {
            sock,
            mut conn,
            echo,
            end,
        }) = returned.await
        else {
            unreachable!("the loop hands every connection back")
        };
        match tokio::net::TcpStream::from_std(sock.into()) {
            Ok(tcp) => conn.give_back(tcp),
            Err(_) => return (conn, echo, End::Broken),
        }
        (conn, echo, end)
    }

    /// Reads what arrived and lets the echo loop take it; what it queued
    /// is written by [`Direct::flush`] once the whole batch has been read,
    /// or once [`FLUSH_CONNS`] connections or [`FLUSH_BYTES`] are waiting.
    /// Ends the connection when the echo loop is through.
    fn on_event(&self, token: usize, event: &mio::event::Event, now: u64) {
        let mut entries = self.entries.borrow_mut();
        let Some(Some(e)) = entries.get_mut(token) else {
            return; // ended earlier in this batch
        };
        let mut flow = ControlFlow::Continue(false);
        let closing = event.is_read_closed() || event.is_error();
        if event.is_readable() || closing {
            // Edge-triggered: read until a read leaves room (the socket is
            // drained) or nothing comes, or the next edge never arrives.
            // An end of stream behind the data comes with no edge of its
            // own: read on to it.
            loop {
                let (event, drained) = match e.conn.read_from(&mut e.sock) {
                    Read::Data { drained } => (Event::Data, drained),
                    Read::Nothing => break,
                    Read::Eof => (Event::Eof, true),
                    Read::Failed(err) => (Event::Failed(err), true),
                };
                flow = e.echo.step(&mut e.conn, event, now);
                if flow.is_break() || (drained && !closing) {
                    break;
                }
            }
        }
        let queued = if flow.is_continue() {
            e.conn.pending_write()
        } else {
            0
        };
        drop(entries);
        self.end(token, flow);
        if queued > 0 {
            self.queue_for_flush(token, queued);
        }
    }

    /// Starts loading connection `token`'s state into the cache while the
    /// one before it is handled. At a thousand connections their state is
    /// not in the cache when an event comes for it, and each of its lines
    /// was a stall of its own (perf annotate at 1000 x 20 B: the first
    /// touches of the entry, its read buffer and its echo loop were most
    /// of the loop's own time).
    fn prefetch(&self, token: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(entry) = self.entries.borrow().get(token) {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let start = std::ptr::from_ref(entry).cast::<i8>();
            for offset in (0..std::mem::size_of::<Option<Entry>>()).step_by(64) {
                // SAFETY: SSE is part of the x86_64 baseline, and a
                // prefetch is a hint that never faults, whatever the address.
                #[allow(unsafe_code)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset));
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = token;
    }

    /// What the task-driven loop's timer does, for every connection: lost
    /// echoes, the window's end, sends that were held back.
    fn sweep(&self, now: u64) {
        let len = self.entries.borrow().len();
        for token in 0..len {
            let mut entries = self.entries.borrow_mut();
            let Some(e) = entries[token].as_mut() else {
                continue;
            };
            let flow = match e.echo.step(&mut e.conn, Event::Timer, now) {
                ControlFlow::Break(end) => ControlFlow::Break(end),
                ControlFlow::Continue(_) => e.write_out(),
            };
            drop(entries);
            self.end(token, flow);
        }
    }

    /// The loop cannot go on (epoll failed): every connection ends, with
    /// the error counted on each.
    fn fail_all(&self, e: &io::Error) {
        let len = self.entries.borrow().len();
        for token in 0..len {
            let end = match self.entries.borrow_mut()[token].as_mut() {
                Some(entry) => entry.echo.failed(io::Error::new(e.kind(), e.to_string())),
                None => continue,
            };
            self.end(token, ControlFlow::<End>::Break(end));
        }
        // Their tokens are free: a connection lent later may take one.
        self.starting.borrow_mut().clear();
        self.running.set(false);
    }

    /// Hands connection `token` back to its task once `flow` says it is
    /// through.
    fn end<C>(&self, token: usize, flow: ControlFlow<End, C>) {
        let ControlFlow::Break(end) = flow else {
            return;
        };
        let Some(mut e) = self.entries.borrow_mut()[token].take() else {
            return;
        };
        let _ = self.poll.borrow().registry().deregister(&mut e.sock);
        self.free.borrow_mut().push(token);
        self.held.set(self.held.get() - 1);
        let _ = e.done.send(Returned {
            sock: e.sock,
            conn: e.conn,
            echo: e.echo,
            end,
        });
    }
}

/// A socket as [`Conn::write_to`] writes it: several slices go out by
/// `sendmsg`, where `write_vectored` would call `writev`, which reaches the
/// same `sock_sendmsg` through the file layer (`vfs_writev`, `fdget_pos`,
/// `sock_write_iter`: about 45 ns a message at 10 x 16 KiB by
/// `scripts/segment-costs.sh`). One slice goes by std's `send`, as before.
struct Sender<'a>(&'a TcpStream);

impl io::Write for Sender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &*self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
        let mut no_control = SendAncillaryBuffer::default();
        Ok(sendmsg(self.0, bufs, &mut no_control, SendFlags::NOSIGNAL)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The loop: epoll, then each ready connection, for a slice at a time;
/// over once it holds no connection.
async fn run(ctx: Rc<WorkerCtx>) {
    let Some(direct) = ctx.direct.as_ref() else {
        return;
    };
    let clock = ctx.plan.clock;
    let mut events = Events::with_capacity(EVENTS);
    let mut next_sweep = clock.now_ns() + SWEEP_NS;
    let slice = SLICE.as_nanos() as u64;
    let mut now = clock.now_ns();
    while direct.held.get() > 0 {
        let slice_end = now + slice;
        while now < slice_end && direct.held.get() > 0 {
            direct.start_in_order();
            direct.flush();
            let wait = Duration::from_nanos(slice_end - now);
            let polled = direct.poll.borrow_mut().poll(&mut events, Some(wait));
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return direct.fail_all(&e),
            }
            // A clock read per event, not per batch: a batch of a thousand
            // takes a millisecond or more, and every round trip is timed.
            // The slice and the sweep use the last event's read rather than
            // two of their own per batch: at 10 connections a batch holds
            // about four echoes, so those two were a third of the reads.
            if events.is_empty() {
                now = clock.now_ns();
            }
            let mut batch = events.iter().peekable();
            while let Some(event) = batch.next() {
                if let Some(next) = batch.peek() {
                    direct.prefetch(next.token().0);
                }
                now = clock.now_ns();
                direct.on_event(event.token().0, event, now);
            }
            direct.flush();
            if now >= next_sweep {
                direct.sweep(now);
                next_sweep = now + SWEEP_NS;
            }
        }
        tokio::task::yield_now().await;
        now = clock.now_ns();
    }
    direct.running.set(false);
}

#[cfg(test)]
mod tests;
