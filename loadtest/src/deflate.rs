//! `--deflate`: permessage-deflate (RFC 7692) from the client's side. The
//! offer we send, the server's answer checked against it, and the
//! per-connection codec: compress what we send, inflate what comes back
//! (capped), honouring the negotiated context takeover and window bits.
//!
//! Kept apart from the framing code on purpose: the connection loop only
//! asks "is this frame compressed" ([`parse`]) and hands whole payloads to a
//! [`Session`]. Contexts are created on first use, so `--scenario idle`
//! with 10,000 negotiated connections costs the generator no zlib memory,
//! and a direction without context takeover uses its thread's, not one of
//! its own.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::bufpool::Pool;
use crate::codec::{self, OP_CONTINUATION, Parsed, ProtocolError};

mod counts;
mod offer;

use counts::count;
pub use counts::{Bytes, Counts, DECLINED, NEGOTIATED};
pub use offer::{DEFAULT_OFFER, Negotiated, Offer, Params, accept};

/// RFC 7692 §7.2.1: every compressed message ends in an empty stored block
/// whose last four bytes the sender removes and the receiver puts back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const RSV1: u8 = 0x40;

/// Window bits a peer may name (RFC 7692 §7.1.2).
const MIN_BITS: u8 = 8;
const MAX_BITS: u8 = 15;

/// Why a compressed echo could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("compressed message inflates past {0} bytes")]
    TooLarge(usize),
    #[error("compressed message is not valid deflate data")]
    Corrupt,
}

/// One connection's compression state. A direction with context takeover
/// keeps its zlib context here, the window carrying over from message to
/// message; one without starts each message afresh, so it borrows its
/// thread's context for the message and holds none: a
/// compressor is about 300 KiB, and 10,000 connections each holding one
/// were gigabytes of the generator's memory against a server that, as
/// wsecho does, answers with no context takeover either way.
pub struct Session {
    params: Negotiated,
    tx: Option<Compress>,
    rx: Option<Decompress>,
    /// The last message inflated (the caller verifies it from here):
    /// borrowed from [`Pool::Message`], and given back by the connection
    /// once the message has been handed out.
    pub inflated: Vec<u8>,
    /// The fragmented message being received is compressed.
    pub compressed_fragments: bool,
}

/// A thread's contexts for messages without context takeover, by window
/// bits (which also pick a compressor's level): reset after every message,
/// so each message finds one as fresh as a new one.
struct Shared {
    tx: Vec<(u8, Compress)>,
    rx: Vec<(u8, Decompress)>,
}

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared {
            tx: Vec::new(),
            rx: Vec::new(),
        })
    };
    /// The message being sent, plain and compressed: used within one
    /// [`Session::compress`], so the thread's, not each connection's.
    static SENDING: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The entry for `bits` in `slots`, made on first use.
fn slot<T>(slots: &mut Vec<(u8, T)>, bits: u8, make: impl FnOnce() -> T) -> &mut T {
    let i = match slots.iter().position(|(b, _)| *b == bits) {
        Some(i) => i,
        None => {
            slots.push((bits, make()));
            slots.len() - 1
        }
    };
    &mut slots[i].1
}

impl Session {
    pub fn new(params: Negotiated) -> Session {
        Session {
            params,
            tx: None,
            rx: None,
            inflated: Vec::new(),
            compressed_fragments: false,
        }
    }

    /// Compresses the `len`-byte message that `fill` writes and hands
    /// `emit` the result (the tail removed). On an error `emit` is not
    /// called and the caller sends the message uncompressed, which RFC 7692
    /// allows for any message.
    pub fn compress(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        emit: impl FnOnce(&[u8]),
    ) -> Result<(), flate2::CompressError> {
        SENDING.with_borrow_mut(|(plain, wire)| {
            plain.resize(len, 0);
            fill(plain);
            self.compress_into(plain, wire)?;
            emit(wire);
            Ok(())
        })
    }

    /// Compresses `plain` into `wire` (the tail removed).
    fn compress_into(
        &mut self,
        plain: &[u8],
        wire: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        let bits = match self.params.client_max_window_bits {
            Some(Some(b)) => b,
            _ => MAX_BITS,
        };
        let make = || {
            // zlib cannot deflate with a raw 8-bit window (it silently uses
            // 9, whose distances a strict 256-byte inflater rejects): stored
            // blocks have no back-references, so they fit any window.
            let level = if bits == MIN_BITS {
                Compression::none()
            } else {
                Compression::fast()
            };
            Compress::new_with_window_bits(level, false, bits.max(9))
        };
        let done = if self.params.client_no_context_takeover {
            SHARED.with_borrow_mut(|shared| {
                let tx = slot(&mut shared.tx, bits, make);
                let done = sync_flush(tx, plain, wire);
                if done.is_ok() {
                    // Afresh for the next message, whichever connection's.
                    tx.reset();
                } else {
                    // Stopped mid-message: made anew when next needed.
                    shared.tx.retain(|(b, _)| *b != bits);
                }
                done
            })
        } else {
            let tx = self.tx.get_or_insert_with(make);
            let done = sync_flush(tx, plain, wire);
            if done.is_err() {
                // The context stopped mid-message and this message goes
                // out plain, which the server's window never sees: start
                // afresh.
                self.tx = None;
            }
            done
        };
        done?;
        if wire.ends_with(&TAIL) {
            wire.truncate(wire.len() - TAIL.len());
        }
        let (plain, wire) = (plain.len() as u64, wire.len() as u64);
        count(|b| {
            b.plain_sent += plain;
            b.wire_sent += wire;
        });
        Ok(())
    }

    /// Inflates one compressed message into `self.inflated`, never past
    /// `cap` bytes however small the input (a zip bomb from a broken
    /// server costs the cap).
    pub fn inflate(&mut self, compressed: &[u8], cap: usize) -> Result<&[u8], InflateError> {
        let bits = self.params.server_max_window_bits.unwrap_or(MAX_BITS);
        // zlib inflates with at least 9 bits; a larger window than the
        // sender's reads the same stream.
        let make = || Decompress::new_with_window_bits(false, bits.max(9));
        if self.inflated.capacity() == 0 {
            self.inflated = Pool::Message.take_empty();
        }
        let out = &mut self.inflated;
        if self.params.server_no_context_takeover {
            SHARED.with_borrow_mut(|shared| {
                let rx = slot(&mut shared.rx, bits, make);
                let done = inflate_into(rx, compressed, cap, out);
                // The server starts afresh each message: so does the next
                // one, whichever connection's, also after an error.
                rx.reset(false);
                done
            })?;
        } else {
            let rx = self.rx.get_or_insert_with(make);
            match inflate_into(rx, compressed, cap, out) {
                // A final block (BFINAL) ends the stream: the next message
                // starts a new one.
                Ok(true) => rx.reset(false),
                Ok(false) => {}
                Err(e) => {
                    self.rx = None;
                    return Err(e);
                }
            }
        }
        count(|b| {
            b.plain_received += out.len() as u64;
            b.wire_received += compressed.len() as u64;
        });
        Ok(&self.inflated)
    }
}

/// Inflates `compressed` and the tail into `out` (cleared first), growing
/// it by at most 64 KiB at a time and never past `cap` + 1; true when a
/// final block ended the stream.
fn inflate_into(
    rx: &mut Decompress,
    compressed: &[u8],
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<bool, InflateError> {
    out.clear();
    let mut ended = false;
    for piece in [compressed, &TAIL[..]] {
        let mut pos = 0;
        while !ended {
            if out.len() == out.capacity() {
                let room = (cap + 1).saturating_sub(out.len()).min(64 << 10);
                if room == 0 {
                    break;
                }
                out.reserve_exact(room);
            }
            let before = (rx.total_in(), out.len());
            let status = rx
                .decompress_vec(&piece[pos..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            pos += (rx.total_in() - before.0) as usize;
            ended = status == Status::StreamEnd;
            let progress = rx.total_in() != before.0 || out.len() != before.1;
            if (pos == piece.len() && out.len() < out.capacity()) || !progress {
                break;
            }
        }
        if out.len() > cap {
            return Err(InflateError::TooLarge(cap));
        }
    }
    Ok(ended)
}

/// Compresses all of `input` into `wire` and ends it with a sync flush.
fn sync_flush(
    tx: &mut Compress,
    input: &[u8],
    wire: &mut Vec<u8>,
) -> Result<(), flate2::CompressError> {
    wire.clear();
    let start_in = tx.total_in();
    loop {
        wire.reserve(input.len() / 2 + 64);
        let done = (tx.total_in() - start_in) as usize;
        tx.compress_vec(&input[done..], wire, FlushCompress::Sync)?;
        let consumed = (tx.total_in() - start_in) as usize == input.len();
        // A sync flush is complete once it stopped short of the space.
        if consumed && wire.len() < wire.capacity() {
            return Ok(());
        }
    }
}

/// [`codec::parse`] when RSV1 may be set: returns whether it was. RSV1 is
/// cleared in the buffer for the parser (and put back when the frame is not
/// all there yet). RSV1 on a control or continuation frame is an error
/// (RFC 7692 §6.1: only a message's first frame carries it).
pub fn parse(buf: &mut [u8], max_payload: usize) -> Result<(Parsed, bool), ProtocolError> {
    let rsv1 = buf.first().is_some_and(|b| b & RSV1 != 0);
    if !rsv1 {
        return codec::parse(buf, max_payload).map(|p| (p, false));
    }
    let opcode = buf[0] & 0x0f;
    if opcode == OP_CONTINUATION || opcode & 0x8 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    buf[0] &= !RSV1;
    let parsed = codec::parse(buf, max_payload);
    if !matches!(parsed, Ok(Parsed::Frame(_))) {
        buf[0] |= RSV1;
    }
    parsed.map(|p| (p, true))
}

/// Sets RSV1 on the client frame whose payload of `len` bytes ends at
/// `end` in `buf` (the header length follows from `len`: RFC 6455 §5.2).
pub fn mark_compressed(buf: &mut [u8], end: usize, len: usize) {
    let header = match len {
        0..126 => 2,
        126..65_536 => 4,
        _ => 10,
    } + 4;
    buf[end - len - header] |= RSV1;
}

#[cfg(test)]
mod tests;
