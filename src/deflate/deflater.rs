//! Compressing one outgoing message as RFC 7692 §7.2.1 asks: raw deflate,
//! a sync flush at the end of the message, the flush's 4-byte tail removed.

use zlib_rs::{Deflate, DeflateFlush, Status};

use super::inflater::TAIL;
use super::offer::Params;
use super::policy::DeflatePolicy;
use super::pool::{self, DeflaterKind};

/// The compressor failed; zlib only does so on misuse, so this is a bug, not
/// bad input (close with 1011).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deflate failed")]
pub struct DeflateError;

/// The sending half of permessage-deflate on one connection.
///
/// Per message: [`compress`](Self::compress) with the whole payload, or
/// [`feed`](Self::feed) with its pieces and then [`finish`](Self::finish).
/// The output is the payload of a message whose first frame carries RSV1.
/// Without server context takeover the zlib context is borrowed from a
/// per-thread pool for the message and returned at `finish`.
pub struct Deflater {
    ctx: Option<(Deflate, pool::Live)>,
    kind: DeflaterKind,
    takeover: bool,
}

impl Deflater {
    /// A deflater for what the server sends under `params`, tuned by `policy`
    /// (level, memLevel).
    pub fn new(params: &Params, policy: &DeflatePolicy) -> Self {
        let bits = params.server_window_bits();
        Deflater {
            ctx: None,
            kind: DeflaterKind {
                level: policy.level,
                mem_level: policy.mem_level,
                // zlib refuses a raw 8-bit window (its 256-byte window is
                // buggy; it used to silently use 9). Compressing with 9
                // after agreeing to 8 could emit distances the peer's
                // 256-byte window cannot resolve, so for 8 the compressor
                // allocates 9 bits but writes literals only: valid under
                // any window, Huffman coding still saves on text.
                window_bits: bits.max(9),
                huffman_only: bits < 9,
            },
            takeover: !params.server_no_context_takeover,
        }
    }

    /// Compresses a whole message, appending the payload to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.feed(message, out)?;
        self.finish(out)
    }

    /// Compresses one piece of the current message, appending to `out`
    /// whatever zlib chose to emit so far.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.run(input, out, DeflateFlush::NoFlush)
    }

    /// Ends the current message: flushes, and strips the tail the receiver
    /// restores (RFC 7692 §7.2.1). An empty message becomes the single byte
    /// 0x00 (§7.2.3.6).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let start = out.len();
        // zlib ignores a sync flush right after another with no input in
        // between ("duplicate flush"): an empty message under context
        // takeover would come out empty, not as its stored block. A no-op
        // NoFlush call first makes the flush always count.
        let result = self
            .run(&[], out, DeflateFlush::NoFlush)
            .and_then(|()| self.run(&[], out, DeflateFlush::SyncFlush));
        if !self.takeover
            && let Some((ctx, _live)) = self.ctx.take()
        {
            pool::give_deflater(self.kind, ctx);
        }
        result?;
        // A sync flush always ends with the empty stored block's LEN/NLEN.
        if out.len() < start + TAIL.len() || !out.ends_with(&TAIL) {
            return Err(DeflateError);
        }
        out.truncate(out.len() - TAIL.len());
        Ok(())
    }

    /// Whether a zlib context is held right now.
    pub fn holds_context(&self) -> bool {
        self.ctx.is_some()
    }

    /// Whether a message may go out uncompressed (RSV1 clear) instead of its
    /// compressed form, e.g. when that is not shorter. Only without server
    /// context takeover: otherwise the client's window would miss the
    /// message our compressor's window already holds.
    pub fn can_skip_compression(&self) -> bool {
        !self.takeover
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: DeflateFlush,
    ) -> Result<(), DeflateError> {
        let kind = self.kind;
        let (ctx, _) = match &mut self.ctx {
            Some(held) => held,
            slot @ None if self.takeover => slot.insert((kind.build(), pool::Live::new())),
            slot @ None => slot.insert((pool::take_deflater(kind), pool::Live::new())),
        };
        loop {
            // Room for what compressible input usually becomes; more rounds
            // when it does not compress.
            let room = (input.len() / 2).clamp(1024, 1 << 20);
            let start = out.len();
            out.resize(start + room, 0);
            let (in0, out0) = (ctx.total_in(), ctx.total_out());
            let status = ctx.compress(input, &mut out[start..], flush);
            let consumed = (ctx.total_in() - in0) as usize;
            let written = (ctx.total_out() - out0) as usize;
            out.truncate(start + written);
            input = &input[consumed..];
            match status {
                Ok(Status::Ok | Status::BufError) => {}
                // Only Finish ends a stream, and it is never asked for.
                Ok(Status::StreamEnd) | Err(_) => return Err(DeflateError),
            }
            // zlib is done when it left room unused with all input taken.
            if written < room && input.is_empty() {
                return Ok(());
            }
        }
    }
}

/// A compressor shared by every peer of a chat room that agreed to the same
/// one: without server context takeover a message's compressed form depends
/// only on the message and these settings, so the room compresses each
/// relayed message once per kind, not once per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedDeflate(DeflaterKind);

impl SharedDeflate {
    /// None under server context takeover: that peer's compressed stream is
    /// its own, so it is relayed plain messages.
    pub fn new(params: &Params, policy: &DeflatePolicy) -> Option<Self> {
        let deflater = Deflater::new(params, policy);
        (!deflater.takeover).then_some(SharedDeflate(deflater.kind))
    }

    /// Compresses a whole message with a pooled context, appending the
    /// payload to `out`.
    pub fn compress(self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        Deflater {
            ctx: None,
            kind: self.0,
            takeover: false,
        }
        .compress(message, out)
    }
}

// zlib_rs::Deflate has no Debug; its state would not help anyone anyway.
impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("kind", &self.kind)
            .field("takeover", &self.takeover)
            .field("holds_context", &self.ctx.is_some())
            .finish()
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // A message cut short leaves the context mid-stream; the pool resets it.
        if !self.takeover
            && let Some((ctx, _live)) = self.ctx.take()
        {
            pool::give_deflater(self.kind, ctx);
        }
    }
}
