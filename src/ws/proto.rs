//! The rules every route shares, applied to what the frame reader yields:
//! fragmentation, message and ping limits, UTF-8 (failing fast), control
//! frames; and the cut-through of large frames.
//!
//! A frame up to [`CHUNK`] bytes reaches the route whole, as one piece: from
//! the worker's receive buffer when it arrived in one read (no copy), or
//! assembled in `Proto::held` when it came in several. A larger frame goes
//! to the route piece by piece as it arrives, so a connection never holds
//! more than a read of it; the echo sends each piece back as a fragment.

use std::sync::OnceLock;
use std::time::Instant;

use fastwebsockets::OpCode;
use tokio::io::AsyncWrite;

use super::compressed::Compression;
use super::limits::Limits;
use super::out::Writer;
use super::reader::{FrameReader, Head, Item, is_control};
use super::route::{Handler, Piece, Reply};
use crate::close::code;
use crate::deflate::InflateError;
use crate::metrics::{Counts, FLUSH_EVERY, Limit, Metrics};
use crate::utf8::Utf8Stream;

mod control;

/// Frames up to this size are delivered (and echoed) whole; larger ones cut
/// through in pieces.
pub const CHUNK: u64 = 64 << 10;

/// Why the session stops reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A valid close from the peer (with this code, if any): answer it.
    PeerClosed(Option<u16>),
    /// Fail the connection with this code (RFC 6455 §7.1.7).
    Fail(u16, &'static str),
    /// The peer stopped reading; no close frame can reach it.
    Stalled,
    /// The connection broke.
    Dropped(std::io::ErrorKind),
}

#[derive(Debug)]
pub(crate) struct Proto {
    reader: FrameReader,
    /// The frame being received.
    frame: Option<Head>,
    /// No piece of [`Proto::frame`] was delivered yet (here, not in a
    /// struct with the head, where it would cost 8 bytes of padding).
    first: bool,
    /// The message in progress (text or binary) and its length so far.
    message: Option<OpCode>,
    message_len: u64,
    utf8: Utf8Stream,
    /// A small frame that arrived in several reads; freed once delivered.
    /// Boxed: rare, and an idle session should not carry a `Vec` header.
    #[allow(clippy::box_collection)] // one pointer, where a `Vec` is three
    held: Option<Box<Vec<u8>>>,
    /// Pings in the current one-second window, and which second it is
    /// (since [`epoch`]): 8 bytes where an `Instant` would take 16.
    pings: (u32, u32),
    /// permessage-deflate, when negotiated (boxed: most sessions have none).
    pub(crate) deflate: Option<Box<Compression>>,
    /// What the peer's input is, once a frame failed.
    pub(crate) input: Input,
    pub(crate) counts: Counts,
    flushed: Counts,
}

type Flow = Result<(), Stop>;

/// How much of the peer's input is still frames: the close handshake
/// after a failure reads on for the peer's close only while it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    Frames,
    /// The reader failed: the rest is not frames.
    Spent,
    /// The peer's close came, behind a frame we failed.
    Closed,
}

impl Proto {
    pub(crate) fn new(limits: &Limits, deflate: Option<Box<Compression>>) -> Self {
        let mut reader = FrameReader::new(limits.max_frame as u64);
        // RFC 7692 §6: RSV1 means "compressed" only once negotiated;
        // otherwise it stays a protocol error (1002).
        reader.allow_rsv1(deflate.is_some());
        Proto {
            reader,
            deflate,
            frame: None,
            first: false,
            message: None,
            message_len: 0,
            utf8: Utf8Stream::default(),
            held: None,
            pings: (0, 0),
            input: Input::Frames,
            counts: Counts::default(),
            flushed: Counts::default(),
        }
    }

    /// Handles every frame in `buf` (one read), writing replies through `w`.
    pub(crate) fn process<S: AsyncWrite + Unpin, H: Handler>(
        &mut self,
        buf: &mut [u8],
        w: &mut Writer<'_, '_, S>,
        h: &mut H,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Flow {
        let mut pos = 0;
        w.answering(buf.len());
        let flow = self.frames(buf, &mut pos, w, h, limits, metrics);
        if let Err(Stop::Fail(..)) = flow {
            // Our close goes out next, and the handshake waits for the
            // peer's. A peer may have sent its close right behind the frame
            // we failed: the rest of this read is looked at now, with the
            // reader still in step, or the close would be lost with it and
            // the wait run to its timeout.
            self.find_close(&mut buf[pos..]);
        }
        flow
    }

    /// [`Proto::process`] up to the first failure, `pos` left where the
    /// reader stopped.
    #[inline(always)]
    fn frames<S: AsyncWrite + Unpin, H: Handler>(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        w: &mut Writer<'_, '_, S>,
        h: &mut H,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Flow {
        loop {
            let item = match self.reader.next(buf, pos) {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.input = Input::Spent;
                    if e == super::reader::FrameError::TooBig {
                        metrics.limit_hit(Limit::FrameSize);
                    }
                    return Err(Stop::Fail(e.close_code(), e.reason()));
                }
            };
            match item {
                Item::Frame { head, start, end } => {
                    self.on_head(head, limits, metrics)?;
                    self.on_payload(&mut buf[..end], start, true, w, h, limits, metrics)?;
                    // The reader is between frames: with the read used up,
                    // asking it again would only say so.
                    if end == buf.len() {
                        return Ok(());
                    }
                }
                Item::Head(head) => self.on_head(head, limits, metrics)?,
                Item::Payload { start, end, last } => {
                    self.on_payload(&mut buf[..end], start, last, w, h, limits, metrics)?
                }
            }
        }
    }

    /// In the middle of a frame over [`CHUNK`], echoed as it arrives.
    pub(crate) fn cutting_through(&self) -> bool {
        self.frame.is_some_and(|f| f.len > CHUNK)
    }

    /// Looks for the peer's close after ours: true once it came (or the
    /// input stopped making sense, or already had).
    pub(crate) fn find_close(&mut self, buf: &mut [u8]) -> bool {
        let mut pos = 0;
        while self.input == Input::Frames {
            match self.reader.next(buf, &mut pos) {
                Ok(Some(Item::Head(head) | Item::Frame { head, .. }))
                    if head.opcode == OpCode::Close =>
                {
                    self.input = Input::Closed;
                }
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(_) => self.input = Input::Spent,
            }
        }
        true
    }

    fn on_head(&mut self, head: Head, limits: &Limits, metrics: &Metrics) -> Flow {
        if !is_control(head.opcode) {
            match (head.opcode, self.message) {
                (OpCode::Continuation, None) => {
                    return Err(protocol("continuation frame outside a message"));
                }
                (OpCode::Continuation, Some(_)) => {}
                (_, Some(_)) => return Err(protocol("new message inside a fragmented one")),
                (opcode, None) => {
                    self.message = Some(opcode);
                    self.message_len = 0;
                    if head.rsv1 {
                        // The reader allows RSV1 only when negotiated.
                        match self.deflate.as_deref_mut() {
                            Some(z) => z.start_message(),
                            None => return Err(protocol("RSV1 without an extension")),
                        }
                    }
                }
            }
            // RFC 7692 §6.1: only a message's first frame says "compressed".
            if head.rsv1 && head.opcode == OpCode::Continuation {
                return Err(protocol("RSV1 on a continuation frame"));
            }
            // Checked from the header: a message over the limit fails
            // before its payload arrives.
            self.message_len += head.len;
            if self.message_len > limits.max_message as u64 {
                metrics.limit_hit(Limit::MessageSize);
                return Err(Stop::Fail(code::TOO_BIG, "message too big"));
            }
        }
        self.frame = Some(head);
        self.first = true;
        Ok(())
    }

    /// A piece of the current frame: `read[start..]`, in the read it came
    /// in, whose bytes before `start` are all answered already.
    #[allow(clippy::too_many_arguments)]
    // Called for a whole frame and for a piece, it stopped being inlined:
    // the call cost 34 instructions per echo (scripts/user-instructions.sh).
    #[inline(always)]
    fn on_payload<S: AsyncWrite + Unpin, H: Handler>(
        &mut self,
        read: &mut [u8],
        start: usize,
        last: bool,
        w: &mut Writer<'_, '_, S>,
        h: &mut H,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Flow {
        let Some(head) = self.frame else {
            return Err(Stop::Fail(code::INTERNAL_ERROR, "payload without a frame"));
        };
        let piece = &read[start..];
        let first = std::mem::replace(&mut self.first, false);
        if last {
            self.frame = None;
        }
        if is_control(head.opcode) {
            return self.on_control_piece(head.opcode, piece, first, last, w, limits, metrics);
        }

        let message = self.message.unwrap_or(OpCode::Binary);
        let ends_message = last && head.fin;
        if self.deflate.as_ref().is_some_and(|z| z.receiving()) {
            return self.on_compressed(message, piece, ends_message, w, h, metrics);
        }
        if message == OpCode::Text {
            self.check_text(piece, ends_message)?;
        }
        self.counts.bytes_in += piece.len() as u64;
        if ends_message {
            self.message_ended(metrics);
        }

        if head.len > CHUNK {
            // Cut-through: the piece goes on as a fragment of the same
            // message; the first keeps the frame's opcode, the last its FIN.
            let opcode = if first {
                head.opcode
            } else {
                OpCode::Continuation
            };
            let src = Src::Read { read, start };
            return self.deliver(message, opcode, last && head.fin, src, w, h);
        }
        if first && last {
            let src = Src::Read { read, start };
            return self.deliver(message, head.opcode, head.fin, src, w, h);
        }
        // Copy forced by a small frame split across reads: it is echoed as
        // one frame, so it waits here, bounded by CHUNK.
        self.held.get_or_insert_default().extend_from_slice(piece);
        if !last {
            return Ok(());
        }
        let held = self.held.take().unwrap_or_default();
        self.deliver(message, head.opcode, head.fin, Src::Held(&held), w, h)
    }

    /// Fail fast: every piece of a text message is checked as it arrives,
    /// so invalid text ends the connection before the rest of it comes.
    #[inline]
    fn check_text(&mut self, piece: &[u8], ends_message: bool) -> Flow {
        let valid = self.utf8.feed(piece).and_then(|()| {
            if ends_message {
                self.utf8.finish()
            } else {
                Ok(())
            }
        });
        valid.map_err(|_| Stop::Fail(code::INVALID_PAYLOAD, "invalid UTF-8"))
    }

    /// A piece of a compressed message: inflated as it arrives (no
    /// cut-through), and the whole message delivered at its end.
    fn on_compressed<S: AsyncWrite + Unpin, H: Handler>(
        &mut self,
        message: OpCode,
        piece: &[u8],
        ends_message: bool,
        w: &mut Writer<'_, '_, S>,
        h: &mut H,
        metrics: &Metrics,
    ) -> Flow {
        let Some(z) = self.deflate.as_deref_mut() else {
            return Err(Stop::Fail(code::INTERNAL_ERROR, "no deflate state"));
        };
        let utf8 = (message == OpCode::Text).then_some(&mut self.utf8);
        let inflated = match z.inflate(piece, ends_message, utf8) {
            Ok(None) => return Ok(()),
            Ok(Some(inflated)) => inflated,
            Err(InflateError::TooLarge(_)) => {
                metrics.limit_hit(Limit::MessageSize);
                return Err(Stop::Fail(code::TOO_BIG, "message too big"));
            }
            Err(InflateError::Rejected) => {
                return Err(Stop::Fail(code::INVALID_PAYLOAD, "invalid UTF-8"));
            }
            Err(InflateError::Corrupt) => {
                return Err(Stop::Fail(code::INVALID_PAYLOAD, "invalid compressed data"));
            }
        };
        // Payload bytes as the route sees them, as on the way out: the
        // wire's share is in the deflate counters.
        self.counts.bytes_in += inflated.len() as u64;
        self.message_ended(metrics);
        self.deliver(message, message, true, Src::Inflated(&inflated), w, h)
    }

    fn message_ended(&mut self, metrics: &Metrics) {
        self.message = None;
        self.counts.messages_in += 1;
        if self.counts.messages_in.is_multiple_of(FLUSH_EVERY) {
            self.flush_counts(metrics, None);
        }
    }

    /// Hands a piece to the route and writes its answer. A piece that came
    /// compressed (a whole message) is echoed compressed too (RFC 7692 lets
    /// us choose; a client that compresses expects to be answered in kind).
    fn deliver<S: AsyncWrite + Unpin, H: Handler>(
        &mut self,
        message: OpCode,
        opcode: OpCode,
        fin: bool,
        src: Src<'_>,
        w: &mut Writer<'_, '_, S>,
        h: &mut H,
    ) -> Flow {
        let payload = src.payload();
        let len = payload.len();
        let piece = Piece {
            message,
            opcode,
            fin,
            payload,
        };
        match (h.on_data(piece), src) {
            (Reply::Nothing, _) => {}
            (Reply::Echo, Src::Inflated(payload)) => {
                let Some(z) = self.deflate.as_deref_mut() else {
                    return Err(Stop::Fail(code::INTERNAL_ERROR, "no deflate state"));
                };
                match z.compress(payload) {
                    Ok(deflated) => w.frame(fin, true, opcode, &deflated),
                    Err(_) => return Err(Stop::Fail(code::INTERNAL_ERROR, "deflate failed")),
                }
                self.counted_out(fin, len);
            }
            (Reply::Echo, Src::Read { read, start }) => {
                w.frame_in_place(read, start, fin, opcode);
                self.counted_out(fin, len);
            }
            (Reply::Echo, Src::Held(payload)) => {
                w.frame(fin, false, opcode, payload);
                self.counted_out(fin, len);
            }
            (Reply::Text(text), _) => {
                // Uncompressed: RFC 7692 leaves each message to the sender.
                w.frame(true, false, OpCode::Text, text.as_bytes());
                self.counted_out(true, text.len());
            }
        }
        Ok(())
    }

    pub(crate) fn counted_out(&mut self, fin: bool, len: usize) {
        self.counts.bytes_out += len as u64;
        self.counts.messages_out += fin as u64;
    }

    /// Adds the counts since the last flush (and a chat peer's relayed
    /// ones) to the shared metrics.
    pub(crate) fn flush_counts(&mut self, metrics: &Metrics, relayed: Option<(u64, u64)>) {
        if let Some((messages, bytes)) = relayed {
            self.counts.messages_out += messages;
            self.counts.bytes_out += bytes;
        }
        metrics.add(self.counts - self.flushed);
        self.flushed = self.counts;
        if let Some(z) = self.deflate.as_deref_mut() {
            metrics.add_deflate(std::mem::take(&mut z.bytes));
        }
    }
}

/// A process-wide time origin for second-granular bookkeeping.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Where a delivered piece is.
enum Src<'a> {
    /// `read[start..]`, in the worker's receive buffer, with everything
    /// before it answered: its echo's header can be written there.
    Read { read: &'a mut [u8], start: usize },
    /// Assembled from several reads.
    Held(&'a [u8]),
    /// A whole message inflated: its echo goes back compressed.
    Inflated(&'a [u8]),
}

impl Src<'_> {
    fn payload(&self) -> &[u8] {
        match self {
            Src::Read { read, start } => &read[*start..],
            Src::Held(p) | Src::Inflated(p) => p,
        }
    }
}

fn protocol(reason: &'static str) -> Stop {
    Stop::Fail(code::PROTOCOL_ERROR, reason)
}
