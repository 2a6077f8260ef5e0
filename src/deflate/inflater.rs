//! Inflating one compressed message as its payload arrives, with its inflated
//! size capped so that a zip bomb costs at most the cap.

use flate2::{Decompress, FlushDecompress, Status};

use super::offer::Params;
use super::pool;

/// RFC 7692 §7.2.2: the sender strips this from every message (the end of
/// the empty stored block a sync flush writes); the receiver puts it back.
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced, and the buffer grown, at most this much at a time.
const CHUNK: usize = 64 * 1024;

/// Why a compressed message could not be inflated. Either way the
/// connection cannot go on: the shared LZ77 state is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The message inflates past the cap (close with 1009).
    #[error("inflated message exceeds {0} bytes")]
    TooLarge(usize),
    /// Not a valid deflate stream (close with 1007, as for bad payload data).
    #[error("invalid compressed data")]
    Corrupt,
    /// The caller's check refused a chunk (e.g. invalid UTF-8: 1007).
    #[error("inflated data refused")]
    Rejected,
}

/// The receiving half of permessage-deflate on one connection.
///
/// Per message: any number of [`feed`](Self::feed) calls with the payload
/// pieces of its frames, then [`finish`](Self::finish). Inflated bytes are
/// appended to the caller's buffer, which the caller may validate (UTF-8)
/// after each call. Without client context takeover the zlib context comes
/// from a per-thread pool at the first piece and goes back at `finish` (or
/// on drop), so an idle connection holds none.
#[derive(Debug)]
pub struct Inflater {
    ctx: Option<(Decompress, pool::Live)>,
    /// The client keeps its window across messages, so must we.
    takeover: bool,
    window_bits: u8,
    cap: usize,
    /// Inflated bytes of the current message so far.
    produced: usize,
    /// The sender ended the deflate stream (BFINAL) inside this message.
    ended: bool,
    /// Any payload byte of this message seen yet.
    fed: bool,
}

impl Inflater {
    /// An inflater for what the client sends under `params`; messages larger
    /// than `max_message_size` once inflated fail with
    /// [`InflateError::TooLarge`].
    pub fn new(params: &Params, max_message_size: usize) -> Self {
        // flate2 (like zlib) inflates with at least 9 bits; a larger window
        // than the sender's is always safe, and this also covers senders
        // that were told 8 and, being zlib, used 9.
        let takeover = !params.client_no_context_takeover;
        let window_bits = if takeover {
            params.client_window_bits().max(9)
        } else {
            pool::POOLED_INFLATE_BITS
        };
        Inflater {
            ctx: None,
            takeover,
            window_bits,
            cap: max_message_size,
            produced: 0,
            ended: false,
            fed: false,
        }
    }

    /// Inflates one piece of the current message's compressed payload,
    /// appending the output to `out`. `out` grows by at most the cap plus
    /// one byte per message, whatever the input. The caller may also drain
    /// `out` between calls; the cap counts the message, not the buffer.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        self.feed_with(input, out, |_| true)
    }

    /// [`feed`](Self::feed), with `check` shown each inflated chunk (at most
    /// 64 KiB) as soon as it exists: returning `false` stops with
    /// [`InflateError::Rejected`]. Text validation fails fast this way, one
    /// chunk in, rather than once a bomb of bad text reached the cap.
    pub fn feed_with(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        check: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), InflateError> {
        if input.is_empty() {
            return Ok(());
        }
        self.fed = true;
        self.run(input, out, check)
    }

    /// Ends the current message; returns its inflated length. The inflater
    /// is then ready for the next message, whatever the outcome.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<usize, InflateError> {
        self.finish_with(out, |_| true)
    }

    /// [`finish`](Self::finish), with `check` as in [`feed_with`](Self::feed_with).
    pub fn finish_with(
        &mut self,
        out: &mut Vec<u8>,
        check: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, InflateError> {
        // An empty payload is an empty message; the tail alone would leave
        // zlib inside a stored block header, waiting for its bytes.
        let result = if self.fed {
            self.run(&TAIL, out, check).map(|()| self.produced)
        } else {
            Ok(0)
        };
        self.end_message();
        result
    }

    /// Drops the current message half-way (the connection is closing).
    pub fn abandon(&mut self) {
        self.end_message();
    }

    /// Whether a zlib context is held right now.
    pub fn holds_context(&self) -> bool {
        self.ctx.is_some()
    }

    fn end_message(&mut self) {
        self.produced = 0;
        self.fed = false;
        let ended = std::mem::take(&mut self.ended);
        if !self.takeover {
            if let Some((ctx, _live)) = self.ctx.take() {
                pool::give_inflater(ctx);
            }
        } else if ended {
            // After BFINAL zlib takes no more input; the next message starts
            // a new stream (the window is lost, which the sender chose).
            self.ctx = None;
        }
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        mut check: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), InflateError> {
        let ctx = context(&mut self.ctx, self.takeover, self.window_bits);
        // Our buffer never holds more than this message plus one byte past
        // the cap: Vec's doubling must not reserve twice the cap.
        let limit = out
            .len()
            .saturating_sub(self.produced)
            .saturating_add(self.cap)
            .saturating_add(1);
        while !self.ended {
            let room = self
                .cap
                .saturating_add(1)
                .saturating_sub(self.produced)
                .min(CHUNK);
            if room == 0 {
                // Called again after TooLarge.
                return Err(InflateError::TooLarge(self.cap));
            }
            let start = out.len();
            grow(out, room, limit, self.cap);
            // Zero-filling the chunk is the price of staying in safe code; it
            // is small next to inflating into it.
            out.resize(start + room, 0);
            let (in0, out0) = (ctx.total_in(), ctx.total_out());
            let status = ctx.decompress(input, &mut out[start..], FlushDecompress::Sync);
            let consumed = (ctx.total_in() - in0) as usize;
            let written = (ctx.total_out() - out0) as usize;
            out.truncate(start + written);
            input = &input[consumed..];
            self.produced += written;
            if self.produced > self.cap {
                return Err(InflateError::TooLarge(self.cap));
            }
            if written > 0 && !check(&out[start..]) {
                return Err(InflateError::Rejected);
            }
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(Status::Ok | Status::BufError) => {}
            }
            if written < room && input.is_empty() {
                break;
            }
            if written == 0 && consumed == 0 && !self.ended {
                // Room and input but no progress: never spin on it.
                return Err(InflateError::Corrupt);
            }
        }
        Ok(())
    }
}

/// The context for this message: the one held, else a fresh one kept for
/// the connection (context takeover), else one borrowed from the pool.
fn context(
    slot: &mut Option<(Decompress, pool::Live)>,
    takeover: bool,
    bits: u8,
) -> &mut Decompress {
    let (ctx, _) = match slot {
        Some(held) => held,
        None if takeover => slot.insert((
            Decompress::new_with_window_bits(false, bits),
            pool::Live::new(),
        )),
        None => slot.insert((pool::take_inflater(), pool::Live::new())),
    };
    ctx
}

/// Makes room for `room` more bytes in `out`, which may hold `limit` bytes
/// in all. Doubling leaves each smaller copy behind (resident until the
/// allocator purges it): past an eighth of the cap, go straight to the
/// limit, whose pages only become resident as they are written. A message
/// then costs at most 1.25 times the cap, a bomb included.
fn grow(out: &mut Vec<u8>, room: usize, limit: usize, cap: usize) {
    let start = out.len();
    if start + room > out.capacity() {
        let doubled = out.capacity().saturating_mul(2);
        let want = if doubled > cap / 8 {
            limit
        } else {
            doubled.max(start + room).min(limit)
        };
        out.reserve_exact(want - start);
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if !self.takeover
            && let Some((ctx, _live)) = self.ctx.take()
        {
            pool::give_inflater(ctx);
        }
    }
}
