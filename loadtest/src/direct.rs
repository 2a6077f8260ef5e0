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
//! in epoll for at most [`SLICE`], then yields so that the runtime's own
//! timers and tasks (the per-second ticker, the main loop on worker 0)
//! run. It runs only while it holds a connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;

use crate::conn::{Conn, Event, Read};
use crate::engine::WorkerCtx;
use crate::scenario::echo::{EchoLoop, End};

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

    /// Adds connection `token`, with `queued` bytes to write, to the batch's
    /// writes, and writes them once [`FLUSH_CONNS`] connections or
    /// [`FLUSH_BYTES`] are waiting.
    fn queue_for_flush(&self, token: usize, queued: usize) {
        let waiting = {
            let mut unflushed = self.unflushed.borrow_mut();
            unflushed.push(token);
            unflushed.len()
        };
        let bytes = self.unflushed_bytes.get() + queued;
        self.unflushed_bytes.set(bytes);
        if bytes >= FLUSH_BYTES || waiting >= FLUSH_CONNS {
            self.flush();
        }
    }

    /// Takes in the connections lent since the last turn, in the order
    /// they were dialled, not the order they were lent in: registers each
    /// with epoll and queues its first messages for the next flush.
    ///
    /// Why: with one message in flight each, the order of the first sends
    /// is the order of every round after it (each echo is answered in the
    /// order it arrives). Taken in as their tasks happened to wake, 1000
    /// connections went round as several interleaved sweeps over their
    /// sockets; in the order they were dialled, as `load_test` sends, both
    /// ends walk their sockets and sessions in the order they were
    /// allocated. At 1000 x 20 B against wsecho the server then echoed 13 %
    /// more messages a second, and this loop did 8.7 % more per CPU second
    /// (`scripts/generator-ab.sh`, 5 rounds, ahead in each; loadtest/README).
    fn start_in_order(&self) {
        // Checked before taking: taking an empty list would drop the
        // capacity it keeps for the next start.
        if self.starting.borrow().is_empty() {
            return;
        }
        let mut starting = self.starting.take();
        {
            let entries = self.entries.borrow();
            starting.sort_by_key(|&token| entries[token].as_ref().map(|e| e.echo.id()));
        }
        // Registered in order too: a registration's first event (writable)
        // is where an echo that came back before it is first read.
        let interest = Interest::READABLE | Interest::WRITABLE;
        for &token in &starting {
            let registered = {
                let mut entries = self.entries.borrow_mut();
                let Some(e) = entries[token].as_mut() else {
                    continue;
                };
                let registry = self.poll.borrow();
                match registry
                    .registry()
                    .register(&mut e.sock, Token(token), interest)
                {
                    Ok(()) => Ok(e.conn.pending_write()),
                    Err(err) => Err(e.echo.failed(err)),
                }
            };
            match registered {
                Ok(0) => {}
                Ok(queued) => self.queue_for_flush(token, queued),
                Err(end) => self.end(token, ControlFlow::<End>::Break(end)),
            }
        }
        starting.clear();
        *self.starting.borrow_mut() = starting;
    }

    /// Writes what the batch's connections queued, back to back.
    ///
    /// Why after the batch, not as each echo is read: our sends are what
    /// wake the server, and a server that finds no more work between two
    /// of them goes back to sleep, to be woken (an IPI, a context switch,
    /// paid on this core) by the next. Written together, they reach it
    /// while it is still busy with the first. The send time an echo is
    /// timed from is taken when it is queued, so the wait is in the
    /// round-trip times, not hidden from them.
    fn flush(&self) {
        self.unflushed_bytes.set(0);
        let mut tokens = self.unflushed.take();
        for &token in &tokens {
            let mut entries = self.entries.borrow_mut();
            let Some(Some(e)) = entries.get_mut(token) else {
                continue; // ended since
            };
            let flow = e.write_out();
            drop(entries);
            self.end(token, flow);
        }
        tokens.clear();
        *self.unflushed.borrow_mut() = tokens;
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
mod tests {
    use std::io::{Read as _, Write as _};

    use clap::Parser;

    use super::*;
    use crate::codec::{OP_BINARY, apply_mask};
    use crate::engine::{Phases, WorkerCtx};

    /// A client frame of 20 bytes, as the server reads it: header, mask
    /// key, masked payload.
    const FRAME: usize = 2 + 4 + 20;

    /// Reads one 20-byte client frame; `None` if nothing is there yet.
    fn next_frame(server: &mut std::net::TcpStream) -> Option<[u8; FRAME]> {
        let mut frame = [0u8; FRAME];
        server.set_nonblocking(true).unwrap();
        match server.read(&mut frame[..1]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            got => assert_eq!(got.unwrap(), 1),
        }
        server.set_nonblocking(false).unwrap();
        server.read_exact(&mut frame[1..]).unwrap();
        Some(frame)
    }

    /// Sends a client frame's payload back, unmasked, as a server frame.
    fn echo(server: &mut std::net::TcpStream, frame: [u8; FRAME]) {
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, frame[2..6].try_into().unwrap(), 0);
        server.write_all(&[0x82, 20]).unwrap();
        server.write_all(&payload).unwrap();
    }

    /// Waits for the loop's next events and hands each to `on_event`.
    fn one_batch(direct: &Direct, events: &mut Events, now: u64) {
        let timeout = Some(Duration::from_secs(5));
        direct.poll.borrow_mut().poll(events, timeout).unwrap();
        for event in events.iter() {
            direct.on_event(event.token().0, event, now);
        }
    }

    /// A worker's loop holding `n` closed-loop echo connections of `size`
    /// bytes, taken in as at the start of a turn (registered, each first
    /// message queued for the flush), and their server ends.
    fn loop_of(n: usize, size: &str) -> (Rc<WorkerCtx>, Vec<std::net::TcpStream>) {
        let (ctx, servers) = loop_of_ids(&(0..n as u64).collect::<Vec<_>>(), size);
        ctx.direct.as_ref().unwrap().start_in_order();
        (ctx, servers)
    }

    /// Connections lent as [`Direct::drive`] lends them, not yet taken in:
    /// token `k` holds connection number `ids[k]`.
    fn loop_of_ids(ids: &[u64], size: &str) -> (Rc<WorkerCtx>, Vec<std::net::TcpStream>) {
        let n = ids.len();
        let n_arg = n.to_string();
        let args = ["wsecho-load", "ws://127.0.0.1:9/", "-c", &n_arg, "-s", size];
        let plan = crate::plan::build(crate::cli::Cli::parse_from(args).run).unwrap();
        let ctx = WorkerCtx::for_tests(plan);
        let direct = ctx.direct.as_ref().expect("closed-loop echo is direct");
        let phases = Phases {
            start_ns: 0,
            window_start_ns: 0,
            window_end_ns: u64::MAX / 2,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut servers = Vec::new();
        for (token, &id) in ids.iter().enumerate() {
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            client.set_nonblocking(true).unwrap();
            servers.push(listener.accept().unwrap().0);
            // Lent as `Direct::drive` lends it: the socket leaves tokio, to
            // be registered when the loop takes it in, and the connection
            // writes as a lent one.
            let tcp = tokio::net::TcpStream::from_std(client).unwrap();
            let rng = crate::clock::Rng::seeded(id);
            let mut conn = Conn::new(
                crate::net::Stream::Plain(tcp),
                Vec::new(),
                4096,
                rng,
                1 << 20,
            );
            let tcp = conn.lend_socket().unwrap();
            let sock = TcpStream::from_std(tcp.into_std().unwrap());
            let mut echo = EchoLoop::new(&ctx, id, phases, None);
            echo.start(&mut conn, ctx.now_ns());
            // Nobody waits for the connection to come back.
            let (done, _) = oneshot::channel();
            direct.entries.borrow_mut().push(Some(Entry {
                sock,
                conn,
                echo,
                done,
            }));
            direct.starting.borrow_mut().push(token);
        }
        direct.held.set(n);
        (ctx, servers)
    }

    /// Hands the loop's events to it until `enough` holds (10 batches at
    /// most, so a loop that never gets there fails instead of hanging).
    fn batches_until(ctx: &WorkerCtx, enough: impl Fn(&Direct) -> bool) {
        let direct = ctx.direct.as_ref().unwrap();
        let mut events = Events::with_capacity(8);
        for _ in 0..10 {
            if enough(direct) {
                return;
            }
            one_batch(direct, &mut events, ctx.now_ns());
        }
        assert!(enough(direct), "not after 10 batches");
    }

    /// What the batch's connections queue goes out only once the whole
    /// batch has been read, and then for each of them.
    #[tokio::test]
    async fn a_batch_is_read_whole_before_anything_is_written() {
        let (ctx, mut servers) = loop_of(2, "20");
        let direct = ctx.direct.as_ref().unwrap();
        // The first messages wait for the flush too.
        assert_eq!(direct.unflushed.borrow().len(), 2);
        assert!(servers.iter_mut().all(|s| next_frame(s).is_none()));
        direct.flush();
        let firsts: Vec<_> = servers.iter_mut().map(|s| next_frame(s).unwrap()).collect();
        // Both echoes arrive; the next messages wait for the flush.
        for (server, frame) in servers.iter_mut().zip(firsts) {
            echo(server, frame);
        }
        batches_until(&ctx, |_| ctx.stats.borrow().received == 2);
        assert!(
            servers.iter_mut().all(|s| next_frame(s).is_none()),
            "written before the flush"
        );
        assert_eq!(ctx.stats.borrow().errors.total(), 0, "both echoes verified");
        direct.flush();
        for server in &mut servers {
            assert!(
                next_frame(server).is_some(),
                "the next message went out in the flush"
            );
        }
        assert!(direct.unflushed.borrow().is_empty());
    }

    /// Once a batch has queued FLUSH_BYTES it is written without waiting
    /// for the batch's end: two 40 kB messages go out as soon as both are
    /// queued, each whole (its filler spliced from the wire pattern and
    /// sent by `sendmsg`), as the payload module says message 0 is.
    #[tokio::test]
    async fn a_batch_is_written_early_once_its_bytes_reach_the_budget() {
        let (ctx, mut servers) = loop_of(2, "40000");
        let direct = ctx.direct.as_ref().unwrap();
        batches_until(&ctx, |_| servers.iter().all(readable));
        assert!(direct.unflushed.borrow().is_empty());
        assert_eq!(direct.unflushed_bytes.get(), 0);
        let layout = ctx.plan.layout;
        for (id, server) in servers.iter_mut().enumerate() {
            let mut head = [0u8; 8];
            server.set_nonblocking(false).unwrap();
            server.read_exact(&mut head).unwrap();
            assert_eq!(
                head[..4],
                [0x82, 0xfe, 0x9c, 0x40],
                "FIN, binary, 40000 masked"
            );
            let mask: [u8; 4] = head[4..].try_into().unwrap();
            assert_eq!(Some(mask), layout.wire_key(id as u32, 0));
            let mut payload = vec![0u8; 40000];
            server.read_exact(&mut payload).unwrap();
            apply_mask(&mut payload, mask, 0);
            let header = layout.decode(&payload, OP_BINARY).unwrap();
            assert_eq!((header.seq, header.conn), (0, Some(id as u32)));
            assert!(layout.content_ok(&payload, id as u32, 0));
        }
    }

    /// Once FLUSH_CONNS connections have queued in a batch they are
    /// written without waiting for its end, however few bytes.
    #[tokio::test]
    async fn a_batch_is_written_early_once_its_connections_reach_the_budget() {
        let (ctx, servers) = loop_of(FLUSH_CONNS, "20");
        let direct = ctx.direct.as_ref().unwrap();
        batches_until(&ctx, |_| servers.iter().all(readable));
        assert!(direct.unflushed.borrow().is_empty());
        let (ctx, servers) = loop_of(FLUSH_CONNS - 1, "20");
        batches_until(&ctx, |d| d.unflushed.borrow().len() == FLUSH_CONNS - 1);
        assert!(!servers.iter().any(readable), "written before the flush");
    }

    /// Connections lent out of order start in the order they were dialled:
    /// the first flush writes them by connection number, then each has its
    /// first message.
    #[tokio::test]
    async fn lent_connections_start_in_the_order_they_were_dialled() {
        let (ctx, mut servers) = loop_of_ids(&[2, 0, 3, 1], "20");
        let direct = ctx.direct.as_ref().unwrap();
        direct.start_in_order();
        assert_eq!(*direct.unflushed.borrow(), [1, 3, 0, 2], "tokens by id");
        assert!(direct.starting.borrow().is_empty());
        direct.flush();
        for server in &mut servers {
            assert!(next_frame(server).is_some(), "a first message");
        }
        // Written once: their writable events find nothing left to write.
        one_batch(direct, &mut Events::with_capacity(8), ctx.now_ns());
        assert!(direct.unflushed.borrow().is_empty());
        assert!(servers.iter_mut().all(|s| next_frame(s).is_none()));
    }

    /// Whether the server end has bytes to read.
    fn readable(server: &std::net::TcpStream) -> bool {
        server.set_nonblocking(true).unwrap();
        server.peek(&mut [0u8; 1]).is_ok()
    }

    /// [`Direct::prefetch`] loads a whole entry, line by line: an entry that
    /// grows grows that work, and the cache footprint of every connection.
    #[test]
    fn an_entry_stays_within_ten_cache_lines() {
        let size = std::mem::size_of::<Option<Entry>>();
        assert!(size <= 10 * 64, "Option<Entry> is {size} bytes");
    }
}
