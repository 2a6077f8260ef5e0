//! One connection: its stream, its buffers, and the one poll loop that
//! drives it.
//!
//! Why one task and no split: [`Conn::event`] polls, in one `poll`, "write
//! what is queued", "read what has arrived" and "the timer", and returns
//! when any of them has news. Nothing is awaited half-way, so nothing can
//! be lost by a cancelled future (the frame parser works on bytes already
//! read), reads and writes never block each other (no echo-server deadlock
//! when both socket buffers fill), and there is no `Arc`, lock or second
//! task per connection. Queued frames go out in one `write` however many
//! there are, and one `read` brings in as many echoes as have arrived.
//!
//! Its buffers are borrowed from the worker's [`crate::bufpool`] and given
//! back as soon as they are empty: the read buffer once every complete
//! message in it has been taken, the outbox once the socket took it all,
//! and a message put together (fragments joined, deflate undone) at the
//! next look for messages after it was handed out.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::bufpool::Pool;
use crate::clock::Rng;
use crate::codec::{self, OP_CLOSE};
use crate::net::Stream;
use crate::pacer::Pacer;
use crate::payload::Layout;

mod closing;
mod lent;
mod outbox;
mod receive;
use outbox::Outbox;

/// Keep at least this much free space to read into, so a read is never
/// wasted on a few bytes at the end of the buffer.
const MIN_READ: usize = 1024;

/// What woke the connection up.
#[derive(Debug)]
pub enum Event {
    /// New bytes are in the read buffer: call [`Conn::next_message`].
    Data,
    Timer,
    /// The server closed the TCP connection.
    Eof,
    Failed(io::Error),
}

/// What one direct read ([`Conn::read_from`]) brought.
#[derive(Debug)]
pub enum Read {
    /// New bytes are in the read buffer; `drained` when they did not fill
    /// the room offered, so the socket had nothing more.
    Data {
        drained: bool,
    },
    Eof,
    /// Nothing to read (a wake-up for writing).
    Nothing,
    Failed(io::Error),
}

/// A message from the server.
#[derive(Debug)]
pub enum Msg<'a> {
    Data {
        opcode: u8,
        payload: &'a [u8],
    },
    /// A close frame and its status code, if it had one.
    Close(Option<u16>),
}

/// A precise wake-up (open loop) waiting in the thread's [`Pacer`].
struct Pace {
    pacer: Rc<Pacer>,
    due_ns: u64,
    registered: bool,
}

pub struct Conn {
    io: Stream,
    /// Empty (given back to the pool) whenever nothing unparsed is in it.
    rbuf: Vec<u8>,
    /// How much to borrow for a read.
    read_size: usize,
    rstart: usize,
    rend: usize,
    /// Bytes needed from `rstart` to hold the frame being received.
    need: usize,
    out: Outbox,
    /// A fragmented message being put together (other servers may
    /// fragment): borrowed from [`Pool::Message`] for the message and given
    /// back once it has been handed out.
    frag: Vec<u8>,
    frag_opcode: Option<u8>,
    /// Made on the first arming: a connection in the worker's epoll loop
    /// ([`crate::scenario::direct`]) is timed by its sweep and never needs one.
    timer: Option<Pin<Box<Sleep>>>,
    /// The armed deadline, kept here too: the `Sleep` is an allocation of
    /// its own, and reading its deadline on every poll was a cache miss per
    /// echo at 1000 connections (perf).
    timer_deadline: tokio::time::Instant,
    timer_armed: bool,
    /// The armed timer has been polled once, so tokio will wake this task
    /// when it fires: until its deadline it need not be polled again.
    timer_registered: bool,
    pace: Option<Pace>,
    rng: Rng,
    max_message: usize,
    /// Set once we have sent a close frame.
    closing: bool,
    /// Written since the last flush (TLS holds records until flushed).
    unflushed: bool,
    /// `--deflate`, when the server agreed to it.
    deflate: Option<Box<crate::deflate::Session>>,
}

impl Conn {
    /// Wraps a stream after the handshake; `leftover` is what was read past
    /// the response head. `read_buf` is the read buffer's starting size.
    pub fn new(
        io: Stream,
        leftover: Vec<u8>,
        read_buf: usize,
        rng: Rng,
        max_message: usize,
    ) -> Conn {
        let read_size = read_buf.max(4 * MIN_READ);
        let mut rbuf = Vec::new();
        if !leftover.is_empty() {
            rbuf = Pool::Read.take(read_size.max(leftover.len()));
            rbuf[..leftover.len()].copy_from_slice(&leftover);
        }
        let now = tokio::time::Instant::now();
        Conn {
            io,
            rend: leftover.len(),
            rbuf,
            read_size,
            rstart: 0,
            need: 0,
            out: Outbox::default(),
            unflushed: false,
            frag: Vec::new(),
            frag_opcode: None,
            timer: None,
            timer_deadline: now,
            timer_armed: false,
            timer_registered: false,
            pace: None,
            rng,
            max_message,
            closing: false,
            deflate: None,
        }
    }

    /// From now on messages go out compressed and compressed echoes are
    /// inflated (permessage-deflate was negotiated).
    pub fn set_deflate(&mut self, session: crate::deflate::Session) {
        self.deflate = Some(Box::new(session));
    }

    /// Bytes queued and not yet written.
    pub fn pending_write(&self) -> usize {
        self.out.pending()
    }

    /// The timer fires once at `deadline` (replacing any earlier arming).
    pub fn arm(&mut self, deadline: tokio::time::Instant) {
        if !self.timer_armed || self.timer_deadline != deadline {
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.timer_deadline = deadline;
            self.timer_registered = false;
        }
        self.timer_armed = true;
    }

    /// A [`Event::Timer`] at run time `due_ns`, to the microsecond (the
    /// tokio timer above is for coarse deadlines: it rounds to 1 ms).
    pub fn pace(&mut self, pacer: &Rc<Pacer>, due_ns: u64) {
        if self.pace.as_ref().is_none_or(|p| p.due_ns != due_ns) {
            self.pace = Some(Pace {
                pacer: pacer.clone(),
                due_ns,
                registered: false,
            });
        }
    }

    /// Queues message `(conn, seq)` of `layout`, generated already masked.
    #[inline]
    pub fn queue_message(&mut self, layout: &Layout, conn: u32, seq: u64, sent_ns: u64) {
        let key = layout.wire_key(conn, seq);
        let mask = key.unwrap_or_else(|| self.rng.mask());
        if let Some(z) = &mut self.deflate {
            // Compressed: generated plain, deflated, then copied and masked
            // (the one-pass masked write cannot apply before deflate).
            let out = &mut self.out;
            let compressed = z.compress(
                layout.size,
                |plain| layout.write_masked(plain, conn, seq, sent_ns, [0; 4]),
                |wire| {
                    let dst = out.frame(layout.opcode(), wire.len(), mask);
                    dst.copy_from_slice(wire);
                    codec::apply_mask(dst, mask, 0);
                    let end = out.end;
                    crate::deflate::mark_compressed(&mut out.buf, end, wire.len());
                },
            );
            if compressed.is_ok() {
                return;
            }
        }
        // Only where the socket takes slices: TLS and HTTP/2 would write
        // each of them as a record or DATA frame of its own.
        let vectored = matches!(self.io, Stream::Plain(_) | Stream::Lent);
        if key.is_some() && vectored {
            let own = layout.header_len();
            let dst = self.out.frame_head(layout.opcode(), layout.size, own, mask);
            layout.write_header_masked(dst, conn, seq, sent_ns, mask);
            self.out.splice(own..layout.size);
            return;
        }
        let dst = self.out.frame(layout.opcode(), layout.size, mask);
        layout.write_for_send(dst, conn, seq, sent_ns, mask);
    }

    fn queue_control(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.rng.mask();
        let dst = self.out.frame(opcode, payload.len(), mask);
        dst.copy_from_slice(payload);
        codec::apply_mask(dst, mask, 0);
    }

    /// Queues a close frame (once).
    pub fn queue_close(&mut self, code: u16) {
        if !self.closing {
            self.closing = true;
            self.queue_control(OP_CLOSE, &code.to_be_bytes());
        }
    }

    /// Waits until there is something to do.
    pub async fn event(&mut self) -> Event {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Err(e) = self.poll_write_out(cx) {
            return Poll::Ready(Event::Failed(e));
        }
        self.make_room();
        let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                self.release_rbuf();
                return Poll::Ready(Event::Eof);
            }
            Poll::Ready(Ok(())) => {
                self.rend += buf.filled().len();
                return Poll::Ready(Event::Data);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
            Poll::Pending => self.release_rbuf(),
        }
        if let Some(p) = &mut self.pace {
            if p.pacer.is_due(p.due_ns) {
                self.pace = None;
                return Poll::Ready(Event::Timer);
            }
            if !p.registered {
                p.pacer.wake_at(p.due_ns, cx.waker());
                p.registered = true;
            }
        }
        // Polling a tokio Sleep costs a driver lookup, a coop-budget check
        // and a waker compare (1.6 % of the generator's CPU at 1000 x 20 B
        // in perf): poll it to register, then again only once it is due.
        // The task's waker does not change, so the registration holds.
        if self.timer_armed
            && let Some(timer) = &mut self.timer
            && (!self.timer_registered || tokio::time::Instant::now() >= self.timer_deadline)
        {
            if timer.as_mut().poll(cx).is_ready() {
                self.timer_armed = false;
                return Poll::Ready(Event::Timer);
            }
            self.timer_registered = true;
        }
        Poll::Pending
    }

    /// Writes as much of the outbox as the socket takes; flushes (TLS) once
    /// it is empty.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let io = &mut self.io;
        let out = &mut self.out;
        self.unflushed |= out.write_with(|slices| {
            let polled = match slices {
                [one] => Pin::new(&mut *io).poll_write(cx, one),
                _ => Pin::new(&mut *io).poll_write_vectored(cx, slices),
            };
            match polled {
                Poll::Ready(wrote) => Some(wrote),
                Poll::Pending => None,
            }
        })?;
        if out.is_empty() && self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod write_tests;
