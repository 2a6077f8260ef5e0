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
//! Both buffers are borrowed from the worker's [`crate::bufpool`] and given
//! back as soon as they are empty: the read buffer once every complete
//! message in it has been taken, the outbox once the socket took it all.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::bufpool::Pool;
use crate::clock::Rng;
use crate::codec::{
    self, MAX_HEADER, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use crate::codec::{Parsed, ProtocolError};
use crate::net::Stream;
use crate::pacer::Pacer;
use crate::payload::{self, Layout};

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

/// Frames waiting to be written, back to back: bytes of the outbox's own,
/// with pieces of the shared [`payload::wire`] pattern between them.
struct Outbox {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Boxed, and made on the first splice: the outbox is part of every
    /// connection's entry in the worker's epoll loop, whose size is cache
    /// lines touched per event, and small messages never splice.
    splices: Option<Box<Splices>>,
}

/// The pieces of the wire pattern queued, in order; the first may be
/// partly written (its slice shortened).
#[derive(Default)]
struct Splices {
    queue: VecDeque<Splice>,
    /// Their bytes, for [`Outbox::pending`], which the open loop asks for
    /// every message it queues.
    bytes: usize,
}

/// Pieces a connection's splice queue may keep room for once drained: a
/// backlog of thousands (the open loop's 4 MiB of 2 KiB messages) should
/// not leave its queue behind.
const KEPT_SPLICES: usize = 64;

/// A piece of the wire pattern that goes out after byte `at` of the
/// outbox's own buffer.
#[derive(Debug, Clone, Copy)]
struct Splice {
    at: usize,
    bytes: &'static [u8],
}

/// Slices given to one `writev`.
const MAX_SLICES: usize = 16;

impl Outbox {
    /// Appends the header of a masked frame of `len` bytes and returns the
    /// space for its payload, to be written there in place.
    fn frame(&mut self, opcode: u8, len: usize, mask: [u8; 4]) -> &mut [u8] {
        self.frame_head(opcode, len, len, mask)
    }

    /// Appends the header of a masked frame of `len` bytes and room for
    /// the first `own` of them; the rest follows as [`Outbox::splice`]s.
    fn frame_head(&mut self, opcode: u8, len: usize, own: usize, mask: [u8; 4]) -> &mut [u8] {
        if self.is_empty() {
            self.pos = 0;
            self.end = 0;
        }
        let need = self.end + MAX_HEADER + own;
        if self.buf.is_empty() {
            self.buf = Pool::Write.take(need);
        }
        if self.buf.len() < need {
            // Grows to the largest burst once; afterwards the send path
            // writes into memory it already has. Not to a power of two: a
            // 16 KiB frame would take 32 KiB per connection, and with
            // hundreds of connections that memory is what the cache misses.
            let grown = need.max(self.buf.len() * 2);
            self.buf.resize(grown, 0);
        }
        let h = codec::write_header(&mut self.buf[self.end..], opcode, len, mask);
        let start = self.end + h;
        self.end = start + own;
        &mut self.buf[start..start + own]
    }

    /// Appends payload bytes `range` of a wire-pattern message, which go
    /// out as the pattern itself (the frame's mask is the message's key).
    fn splice(&mut self, range: std::ops::Range<usize>) {
        let bytes = &payload::wire()[range];
        let splices = self.splices.get_or_insert_default();
        splices.bytes += bytes.len();
        splices.queue.push_back(Splice {
            at: self.end,
            bytes,
        });
    }

    fn pending(&self) -> usize {
        self.end - self.pos + self.splices.as_ref().map_or(0, |s| s.bytes)
    }

    fn is_empty(&self) -> bool {
        self.pos == self.end && self.pieces().next().is_none()
    }

    fn pieces(&self) -> impl Iterator<Item = &Splice> {
        self.splices.iter().flat_map(|s| s.queue.iter())
    }

    /// What is still to be written, in order, as at most `out.len()`
    /// slices; returns how many.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let (mut n, mut pos) = (0, self.pos);
        for s in self.pieces() {
            if n + 2 > out.len() {
                return n;
            }
            if s.at > pos {
                out[n] = IoSlice::new(&self.buf[pos..s.at]);
                n += 1;
                pos = s.at;
            }
            out[n] = IoSlice::new(s.bytes);
            n += 1;
        }
        if n < out.len() && self.end > pos {
            out[n] = IoSlice::new(&self.buf[pos..self.end]);
            n += 1;
        }
        n
    }

    /// What is left when it is the outbox's own bytes (maybe none) and then
    /// one piece of the pattern, as a wire-pattern message leaves it.
    fn joined_head(&self) -> Option<(&[u8], &'static [u8])> {
        match self.splices.as_deref()?.queue.as_slices() {
            ([s], []) | ([], [s]) if s.at == self.end => {
                Some((&self.buf[self.pos..self.end], s.bytes))
            }
            _ => None,
        }
    }

    /// `n` more bytes were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(splices) = self.splices.as_mut().filter(|s| !s.queue.is_empty()) else {
                self.pos += n;
                return;
            };
            let s = &mut splices.queue[0];
            if s.at > self.pos {
                let k = (s.at - self.pos).min(n);
                self.pos += k;
                n -= k;
                continue;
            }
            let k = s.bytes.len().min(n);
            s.bytes = &s.bytes[k..];
            splices.bytes -= k;
            n -= k;
            if s.bytes.is_empty() {
                splices.queue.pop_front();
            }
        }
    }

    /// Writes through `write`, which takes slices and says how many bytes
    /// it took, until the outbox is empty or `write` stops (`None` for
    /// would-block or pending). True when anything was written.
    fn write_with(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> Option<io::Result<usize>>,
    ) -> io::Result<bool> {
        let mut any = false;
        while !self.is_empty() {
            let wrote = if self.pieces().next().is_none() {
                // Most writes: one slice, without setting up sixteen.
                write(&[IoSlice::new(&self.buf[self.pos..self.end])])
            } else if let Some(wrote) = self.joined_head().and_then(|(head, piece)| {
                payload::joined(head, piece, |one| write(&[IoSlice::new(one)]))
            }) {
                // A message's own bytes, then its piece of the pattern.
                wrote
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.slices(&mut slices);
                write(&slices[..n])
            };
            match wrote {
                None => return Ok(any),
                Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Some(Ok(k)) => {
                    self.advance(k);
                    any = true;
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(e),
            }
        }
        self.written();
        Ok(any)
    }

    /// Everything queued has been written: the buffer goes back.
    fn written(&mut self) {
        self.pos = 0;
        self.end = 0;
        if !self.buf.is_empty() {
            Pool::Write.give(std::mem::take(&mut self.buf));
        }
        if self
            .splices
            .as_ref()
            .is_some_and(|s| s.queue.capacity() > KEPT_SPLICES)
        {
            self.splices = None;
        }
    }
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
    /// A fragmented message being put together (other servers may fragment).
    frag: Vec<u8>,
    frag_opcode: Option<u8>,
    /// Made on the first arming: a connection in the worker's epoll loop
    /// ([`crate::direct`]) is timed by its sweep and never needs one.
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
            out: Outbox {
                buf: Vec::new(),
                pos: 0,
                end: 0,
                splices: None,
            },
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
            z.plain.resize(layout.size, 0);
            layout.write_masked(&mut z.plain, conn, seq, sent_ns, [0; 4]);
            if z.compress().is_ok() {
                let dst = self.out.frame(layout.opcode(), z.wire.len(), mask);
                dst.copy_from_slice(&z.wire);
                codec::apply_mask(dst, mask, 0);
                let (end, len) = (self.out.end, z.wire.len());
                crate::deflate::mark_compressed(&mut self.out.buf, end, len);
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

    /// Gives the read buffer back when nothing unparsed is left in it.
    fn release_rbuf(&mut self) {
        if self.rstart == self.rend && !self.rbuf.is_empty() {
            self.rstart = 0;
            self.rend = 0;
            Pool::Read.give(std::mem::take(&mut self.rbuf));
        }
    }

    /// The plain socket, lent to the worker's epoll loop ([`crate::direct`])
    /// which then reads and writes with [`Conn::read_from`] and
    /// [`Conn::write_to`]; None (and nothing changes) for TLS or HTTP/2.
    pub fn lend_socket(&mut self) -> Option<tokio::net::TcpStream> {
        match std::mem::replace(&mut self.io, Stream::Lent) {
            Stream::Plain(tcp) => Some(tcp),
            other => {
                self.io = other;
                None
            }
        }
    }

    /// The lent socket comes back, for the async calls again.
    pub fn give_back(&mut self, tcp: tokio::net::TcpStream) {
        self.io = Stream::Plain(tcp);
    }

    /// One read from a non-blocking socket into the read buffer: what
    /// [`Conn::event`] does when the socket is readable, for a caller that
    /// waits for readiness itself.
    pub fn read_from(&mut self, sock: &mut impl io::Read) -> Read {
        self.make_room();
        let room = self.rbuf.len() - self.rend;
        loop {
            return match sock.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    self.release_rbuf();
                    Read::Eof
                }
                Ok(n) => {
                    self.rend += n;
                    Read::Data { drained: n < room }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.release_rbuf();
                    Read::Nothing
                }
                Err(e) => Read::Failed(e),
            };
        }
    }

    /// Writes as much of the outbox as a non-blocking socket takes (what
    /// [`Conn::event`] does first, for a caller that waits itself).
    pub fn write_to(&mut self, sock: &mut impl io::Write) -> io::Result<()> {
        // A plain socket has nothing to flush: what was written is not
        // recorded as unflushed.
        self.out.write_with(|slices| {
            let wrote = match slices {
                [one] => sock.write(one),
                _ => sock.write_vectored(slices),
            };
            match wrote {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                other => Some(other),
            }
        })?;
        Ok(())
    }

    /// Makes space to read into (borrowing the read buffer back if it was
    /// given back): starts over when everything was parsed, moves a
    /// partial frame to the front when the tail is short, grows for a frame
    /// larger than the buffer.
    fn make_room(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = Pool::Read.take(self.read_size);
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        let len = self.rbuf.len();
        if len - self.rend >= MIN_READ && len - self.rstart >= self.need {
            return;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let want = self.need.max(self.rend + MIN_READ);
        if want > len {
            self.rbuf.resize(want.next_power_of_two(), 0);
        }
    }

    /// The next complete message in the read buffer, if any. Pings are
    /// answered and fragments put together on the way.
    pub fn next_message(&mut self) -> Result<Option<Msg<'_>>, ProtocolError> {
        loop {
            let buf = &mut self.rbuf[self.rstart..self.rend];
            let (parsed, compressed) = match self.deflate {
                Some(_) => crate::deflate::parse(buf, self.max_message)?,
                None => (codec::parse(buf, self.max_message)?, false),
            };
            let head = match parsed {
                Parsed::Need(n) => {
                    self.need = n;
                    self.release_rbuf();
                    return Ok(None);
                }
                Parsed::Frame(head) => head,
            };
            let (start, end) = (
                self.rstart + head.header_len,
                self.rstart + head.frame_len(),
            );
            self.rstart = end;
            self.need = 0;
            match head.opcode {
                OP_TEXT | OP_BINARY if self.frag_opcode.is_some() => {
                    return Err(ProtocolError::Interleaved);
                }
                OP_TEXT | OP_BINARY if head.fin && compressed => {
                    let payload = self.inflate(start..end)?;
                    return Ok(Some(Msg::Data {
                        opcode: head.opcode,
                        payload,
                    }));
                }
                OP_TEXT | OP_BINARY if head.fin => {
                    let payload = &self.rbuf[start..end];
                    return Ok(Some(Msg::Data {
                        opcode: head.opcode,
                        payload,
                    }));
                }
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    if let Some(z) = &mut self.deflate
                        && head.opcode != OP_CONTINUATION
                    {
                        z.compressed_fragments = compressed;
                    }
                    if let Some(opcode) = self.fragment(head.opcode, head.fin, start, end)? {
                        if self
                            .deflate
                            .as_ref()
                            .is_some_and(|z| z.compressed_fragments)
                        {
                            let payload = self.inflate_fragments()?;
                            return Ok(Some(Msg::Data { opcode, payload }));
                        }
                        return Ok(Some(Msg::Data {
                            opcode,
                            payload: &self.frag,
                        }));
                    }
                }
                OP_PING if !self.closing => {
                    // RFC 6455 §5.5.2: answer with the same payload (at most
                    // 125 bytes, copied out so the outbox can borrow `self`).
                    let mut copy = [0u8; 125];
                    let n = end - start;
                    copy[..n].copy_from_slice(&self.rbuf[start..end]);
                    self.queue_control(OP_PONG, &copy[..n]);
                }
                OP_CLOSE => {
                    let code = codec::close_code(&self.rbuf[start..end])?;
                    return Ok(Some(Msg::Close(code)));
                }
                _ => {} // pong, or ping while closing
            }
        }
    }

    /// Inflates the compressed payload at `range` of the read buffer.
    fn inflate(&mut self, range: std::ops::Range<usize>) -> Result<&[u8], ProtocolError> {
        let z = self.deflate.as_mut().ok_or(ProtocolError::ReservedBits)?;
        z.inflate(&self.rbuf[range], self.max_message)
            .map_err(|_| ProtocolError::BadDeflate)
    }

    /// Inflates a compressed fragmented message put together in `frag`.
    fn inflate_fragments(&mut self) -> Result<&[u8], ProtocolError> {
        let z = self.deflate.as_mut().ok_or(ProtocolError::ReservedBits)?;
        z.inflate(&self.frag, self.max_message)
            .map_err(|_| ProtocolError::BadDeflate)
    }

    /// Adds a fragment (the first one, or a continuation) to the message
    /// being put together; returns its opcode once the last one is in.
    fn fragment(
        &mut self,
        opcode: u8,
        fin: bool,
        start: usize,
        end: usize,
    ) -> Result<Option<u8>, ProtocolError> {
        if opcode != OP_CONTINUATION {
            self.frag.clear();
            self.frag_opcode = Some(opcode);
        }
        let message_opcode = self
            .frag_opcode
            .ok_or(ProtocolError::UnexpectedContinuation)?;
        let total = self.frag.len() + (end - start);
        if total > self.max_message {
            return Err(ProtocolError::TooLarge(total as u64));
        }
        self.frag.extend_from_slice(&self.rbuf[start..end]);
        if !fin {
            return Ok(None);
        }
        self.frag_opcode = None;
        Ok(Some(message_opcode))
    }

    /// The closing handshake from our side: sends close `code` (unless
    /// already sent), waits for the server's close frame and then for it to
    /// close the TCP connection (RFC 6455 §7.1.1: the server closes first,
    /// so TIME_WAIT stays on its side and churn does not use up our ports).
    /// Returns the server's code: 1005 for none, 1006 for no close frame.
    pub async fn close(&mut self, code: u16, deadline: tokio::time::Instant) -> u16 {
        self.queue_close(code);
        self.arm(deadline);
        let mut got: Option<u16> = None;
        // Until EOF, an error or the deadline.
        while let Event::Data = self.event().await {
            loop {
                match self.next_message() {
                    Ok(Some(Msg::Close(c))) => got = got.or(Some(c.unwrap_or(1005))),
                    Ok(Some(Msg::Data { .. })) => {}
                    Ok(None) => break,
                    Err(_) => return got.unwrap_or(1002),
                }
            }
        }
        let _ = self.io.shutdown().await;
        got.unwrap_or(1006)
    }

    /// Answers a close the server started, then waits for its EOF briefly.
    pub async fn answer_close(&mut self, code: Option<u16>, deadline: tokio::time::Instant) {
        self.queue_close(code.unwrap_or(1000));
        self.arm(deadline);
        while let Event::Data = self.event().await {
            self.rstart = self.rend;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn pair(leftover: Vec<u8>) -> (Conn, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let conn = Conn::new(
            Stream::Duplex(ours),
            leftover,
            4096,
            Rng::seeded(1),
            1 << 20,
        );
        (conn, theirs)
    }

    /// Every complete message in the buffer, as (opcode, payload).
    fn drain(conn: &mut Conn) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while let Some(msg) = conn.next_message().unwrap() {
            match msg {
                Msg::Data { opcode, payload } => got.push((opcode, payload.to_vec())),
                Msg::Close(code) => panic!("close {code:?}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn one_read_brings_every_echo_and_the_buffer_goes_back_once_parsed() {
        let (mut conn, mut server) = pair(Vec::new());
        let mut both = server_frame(true, OP_BINARY, b"first");
        both.extend(server_frame(true, OP_TEXT, &[b'x'; 300]));
        server.write_all(&both).await.unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        assert_eq!(Pool::Read.spare(), 0, "lent while messages are unparsed");
        let got = drain(&mut conn);
        assert_eq!(
            got,
            [(OP_BINARY, b"first".to_vec()), (OP_TEXT, vec![b'x'; 300])]
        );
        assert_eq!(Pool::Read.spare(), 1);
    }

    #[tokio::test]
    async fn a_partial_frame_keeps_its_buffer_until_the_rest_arrives() {
        let (mut conn, mut server) = pair(Vec::new());
        let frame = server_frame(true, OP_BINARY, &(0..=255).collect::<Vec<u8>>());
        server.write_all(&frame[..3]).await.unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        assert!(drain(&mut conn).is_empty());
        assert_eq!(
            Pool::Read.spare(),
            0,
            "the partial frame stays with its connection"
        );
        server.write_all(&frame[3..100]).await.unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        assert!(drain(&mut conn).is_empty());
        server.write_all(&frame[100..]).await.unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        assert_eq!(
            drain(&mut conn),
            [(OP_BINARY, (0..=255).collect::<Vec<u8>>())]
        );
        assert_eq!(Pool::Read.spare(), 1);
    }

    #[tokio::test]
    async fn fragments_read_apart_come_out_as_one_message() {
        let (mut conn, mut server) = pair(Vec::new());
        for (fin, op, part) in [
            (false, OP_TEXT, &b"he"[..]),
            (true, OP_CONTINUATION, b"llo"),
        ] {
            server
                .write_all(&server_frame(fin, op, part))
                .await
                .unwrap();
            assert!(matches!(conn.event().await, Event::Data));
            let got = drain(&mut conn);
            // The first fragment was copied out, so the buffer went back.
            assert_eq!(Pool::Read.spare(), 1);
            if fin {
                assert_eq!(got, [(OP_TEXT, b"hello".to_vec())]);
            } else {
                assert!(got.is_empty());
            }
        }
    }

    #[tokio::test]
    async fn bytes_read_with_the_handshake_are_parsed_before_any_read() {
        let mut leftover = server_frame(true, OP_BINARY, b"early");
        leftover.extend_from_slice(&server_frame(true, OP_BINARY, b"late")[..2]);
        let (mut conn, mut server) = pair(leftover);
        assert_eq!(drain(&mut conn), [(OP_BINARY, b"early".to_vec())]);
        server.write_all(b"late").await.unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        assert_eq!(drain(&mut conn), [(OP_BINARY, b"late".to_vec())]);
    }

    /// A connection whose reads and writes the caller does, as the epoll
    /// loop does, over a non-blocking socket pair.
    fn direct_pair() -> (
        Conn,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let (conn, _unused) = pair(Vec::new());
        (conn, ours, theirs)
    }

    #[tokio::test]
    async fn a_direct_read_says_when_the_socket_is_drained_and_the_buffer_goes_back() {
        use std::io::Write;
        let (mut conn, mut ours, mut server) = direct_pair();
        let room = 4096;
        // Exactly the buffer's room: the read cannot tell it took all.
        let big = server_frame(true, OP_BINARY, &vec![7u8; room - 4]);
        assert_eq!(big.len(), room);
        server.write_all(&big).unwrap();
        server
            .write_all(&server_frame(true, OP_TEXT, b"tail"))
            .unwrap();
        assert!(matches!(
            conn.read_from(&mut ours),
            Read::Data { drained: false }
        ));
        assert_eq!(drain(&mut conn), [(OP_BINARY, vec![7u8; room - 4])]);
        assert!(matches!(
            conn.read_from(&mut ours),
            Read::Data { drained: true }
        ));
        assert_eq!(drain(&mut conn), [(OP_TEXT, b"tail".to_vec())]);
        assert!(matches!(conn.read_from(&mut ours), Read::Nothing));
        assert_eq!(
            Pool::Read.spare(),
            1,
            "nothing unparsed: the buffer went back"
        );
        drop(server);
        assert!(matches!(conn.read_from(&mut ours), Read::Eof));
    }

    /// Takes a different number of bytes each call, across as many slices
    /// as that covers (from 1 byte to more than a frame), and every fifth
    /// call nothing: "would block".
    struct Ragged {
        got: Vec<u8>,
        calls: usize,
    }

    impl Ragged {
        fn take(&mut self) -> Option<usize> {
            const TAKES: [usize; 7] = [1, 7, 5000, 20, 70_000, 3, 131_072];
            self.calls += 1;
            (!self.calls.is_multiple_of(5)).then(|| TAKES[self.calls % TAKES.len()])
        }
    }

    impl std::io::Write for Ragged {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let Some(mut room) = self.take() else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let before = self.got.len();
            for b in bufs {
                let n = b.len().min(room);
                self.got.extend_from_slice(&b[..n]);
                room -= n;
            }
            Ok(self.got.len() - before)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Splits a client frame off the front of `wire`: its opcode, its
    /// mask key and its payload, unmasked.
    fn client_frame(wire: &mut &[u8]) -> (u8, [u8; 4], Vec<u8>) {
        let (opcode, len7) = (wire[0] & 0x0f, (wire[1] & 0x7f) as usize);
        assert!(wire[0] & 0x80 != 0 && wire[1] & 0x80 != 0, "FIN, masked");
        let (len, at) = match len7 {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n, 2),
        };
        let mask: [u8; 4] = wire[at..at + 4].try_into().unwrap();
        let mut payload = wire[at + 4..at + 4 + len].to_vec();
        codec::apply_mask(&mut payload, mask, 0);
        *wire = &wire[at + 4 + len..];
        (opcode, mask, payload)
    }

    /// The frames of `queued` as `sink` got them: each wire-pattern one
    /// masked with its key, and every one byte for byte what the payload
    /// module generates for it; then the close frame.
    fn check_frames(mut wire: &[u8], queued: &[(&Layout, u64, u64)]) {
        for &(l, seq, t) in queued {
            let (opcode, mask, got) = client_frame(&mut wire);
            assert_eq!(opcode, OP_BINARY);
            if let Some(key) = l.wire_key(4, seq) {
                assert_eq!(mask, key, "masked with its key");
            }
            let mut want = vec![0u8; l.size];
            l.write_masked(&mut want, 4, seq, t, [0; 4]);
            assert!(got == want, "seq {seq}");
            assert!(
                l.decode(&got, OP_BINARY)
                    .is_ok_and(|h| h.sent_ns == Some(t))
            );
            assert!(l.content_ok(&got, 4, seq));
        }
        let (opcode, _, close) = client_frame(&mut wire);
        assert_eq!((opcode, &close[..]), (OP_CLOSE, &1000u16.to_be_bytes()[..]));
        assert!(wire.is_empty());
    }

    /// Ten wire-pattern messages with small ones between them and a close
    /// frame after (more slices than one write takes) go out whole and in
    /// order through writes that stop anywhere: inside a header, inside a
    /// spliced piece, between slices, or not at all.
    #[tokio::test]
    async fn spliced_messages_go_out_whole_through_ragged_writes() {
        let (mut conn, _server) = pair(Vec::new());
        conn.io = Stream::Lent;
        let large = Layout::new(40_000, false).with_wire(99);
        let small = Layout::new(payload::WIRE_MIN - 1, false).with_wire(99);
        assert!(large.wire.is_some() && small.wire.is_none());
        let mut queued = Vec::new();
        for seq in 0..20 {
            let l = if seq % 2 == 0 { &large } else { &small };
            conn.queue_message(l, 4, seq, seq + 100);
            queued.push((l, seq, seq + 100));
        }
        conn.queue_close(1000);
        assert_eq!(conn.out.pieces().count(), 10, "one piece per large message");
        let total = conn.pending_write();
        let mut sink = Ragged {
            got: Vec::new(),
            calls: 0,
        };
        while conn.pending_write() > 0 {
            conn.write_to(&mut sink).unwrap();
            assert_eq!(conn.pending_write() + sink.got.len(), total);
        }
        assert!(conn.out.pieces().next().is_none() && conn.out.buf.is_empty());
        check_frames(&sink.got, &queued);
    }

    /// A wire-pattern message alone in the outbox goes out as one slice,
    /// its header joined to its piece of the pattern; two queued together
    /// go out as a vector.
    #[tokio::test]
    async fn a_lone_spliced_message_is_written_as_one_slice() {
        /// Takes everything; records how many slices each write had.
        struct Counting(Vec<u8>, Vec<usize>);
        impl std::io::Write for Counting {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.write_vectored(&[IoSlice::new(buf)])
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.1.push(bufs.len());
                let before = self.0.len();
                bufs.iter().for_each(|b| self.0.extend_from_slice(b));
                Ok(self.0.len() - before)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (mut conn, _server) = pair(Vec::new());
        conn.io = Stream::Lent;
        let large = Layout::new(16_384, false).with_wire(99);
        let mut sink = Counting(Vec::new(), Vec::new());
        conn.queue_message(&large, 4, 0, 100);
        conn.write_to(&mut sink).unwrap();
        assert_eq!(sink.1, [1]);
        conn.queue_message(&large, 4, 1, 101);
        conn.queue_message(&large, 4, 2, 102);
        conn.queue_close(1000);
        conn.write_to(&mut sink).unwrap();
        assert_eq!(sink.1[1..], [5], "head, piece, head, piece and the close");
        check_frames(
            &sink.0,
            &[(&large, 0, 100), (&large, 1, 101), (&large, 2, 102)],
        );
    }

    /// The task path writes spliced messages with `poll_write_vectored` on
    /// a real socket, whatever part of them each write takes.
    #[tokio::test]
    async fn the_task_path_writes_spliced_messages_to_a_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(client).unwrap();
        let rng = Rng::seeded(1);
        let mut conn = Conn::new(Stream::Plain(tcp), Vec::new(), 4096, rng, 1 << 20);
        let large = Layout::new(200_000, false).with_wire(5);
        let mut queued = Vec::new();
        for seq in 0..12 {
            conn.queue_message(&large, 4, seq, 7);
            queued.push((&large, seq, 7));
        }
        conn.queue_close(1000);
        let total = conn.pending_write();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            std::io::Read::read_exact(&mut server, &mut got).unwrap();
            got
        });
        let written = poll_fn(|cx| {
            if let Err(e) = conn.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            match conn.pending_write() {
                0 => Poll::Ready(Ok(())),
                _ => Poll::Pending,
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), written)
            .await
            .expect("written within 10 s")
            .unwrap();
        check_frames(&reader.join().unwrap(), &queued);
    }

    #[tokio::test]
    async fn a_direct_write_keeps_what_the_socket_did_not_take_until_it_does() {
        use std::io::Read as _;
        let (mut conn, mut ours, mut server) = direct_pair();
        // 512 KiB: more than a socket pair's buffer, less than the pool keeps.
        let layout = Layout::new(16 << 10, false);
        let mut queued = 0;
        for seq in 0..32 {
            conn.queue_message(&layout, 1, seq, 0);
            queued = conn.pending_write();
        }
        conn.write_to(&mut ours).unwrap();
        let left = conn.pending_write();
        assert!(left > 0 && left < queued, "{left} of {queued} left");
        assert_eq!(
            Pool::Write.spare(),
            0,
            "the unwritten tail keeps its buffer"
        );
        let mut sink = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < queued {
            read += server.read(&mut sink).unwrap();
            conn.write_to(&mut ours).unwrap();
        }
        assert_eq!((read, conn.pending_write()), (queued, 0));
        assert_eq!(Pool::Write.spare(), 1);
    }

    #[tokio::test]
    async fn the_timer_is_made_on_the_first_arming_only() {
        let (mut conn, _server) = pair(Vec::new());
        assert!(
            conn.timer.is_none(),
            "a connection the sweep times has none"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        conn.arm(deadline);
        let first = conn.timer.as_deref().map(std::ptr::from_ref);
        conn.arm(deadline + Duration::from_secs(1));
        let second = conn.timer.as_deref().map(std::ptr::from_ref);
        assert!(first.is_some() && first == second, "re-armed in place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_message_goes_out_in_the_same_poll_and_its_buffer_goes_back() {
        let (mut conn, mut server) = pair(Vec::new());
        let layout = Layout::new(1000, false);
        conn.queue_message(&layout, 3, 9, 42);
        assert_eq!(conn.pending_write(), 2 + 2 + 4 + 1000);
        assert_eq!(Pool::Write.spare(), 0);
        // Nothing comes back: the timer ends the wait (paused time skips it).
        conn.arm(tokio::time::Instant::now() + Duration::from_secs(5));
        assert!(matches!(conn.event().await, Event::Timer));
        assert_eq!((conn.pending_write(), Pool::Write.spare()), (0, 1));
        let mut frame = vec![0u8; 8 + 1000];
        server.read_exact(&mut frame).await.unwrap();
        assert_eq!((frame[0], frame[1] & 0x7f), (0x80 | OP_BINARY, 126));
        let mask = [frame[4], frame[5], frame[6], frame[7]];
        let payload = &mut frame[8..];
        codec::apply_mask(payload, mask, 0);
        let header = layout.decode(payload, OP_BINARY).unwrap();
        assert_eq!(
            (header.seq, header.conn, header.sent_ns),
            (9, Some(3), Some(42))
        );
        assert!(layout.filler_ok(payload, 3, 9));
    }
}
