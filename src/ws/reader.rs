//! wsecho's frame reader: an incremental parser over whatever bytes a read
//! returned, with no buffer of its own beyond a partial header.
//!
//! Why not fastwebsockets' `read_frame`: it keeps an 8 KiB buffer per
//! connection that grows to the largest frame and never shrinks (upstream
//! issue #127), it is not cancel-safe (#64), and it rejects RSV1, which
//! permessage-deflate needs. This reader is a plain state machine, no I/O and
//! no `async`: the session reads into a receive buffer shared by the worker
//! thread, hands the bytes here, and gets back whole frames, or frame heads
//! and payload pieces when a frame spans reads, unmasked in place. Between
//! reads a connection keeps at most a 14-byte header spill and a few
//! counters, whatever the frame size.
//!
//! Every header rule is checked from the header alone, before any payload
//! arrives (RFC 6455 §5.2): reserved bits and opcodes, the client mask,
//! control frames that are fragmented or over 125 bytes, 64-bit lengths with
//! the top bit set, and the frame size limit.

use fastwebsockets::OpCode;

/// The longest header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEAD: usize = 14;

/// A frame's header, once all of it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    /// RSV1: "compressed" under permessage-deflate (RFC 7692 §6).
    pub rsv1: bool,
    pub opcode: OpCode,
    pub len: u64,
}

/// What the next bytes were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A whole frame in this input: its header and its payload, bytes
    /// `start..end` of the input, unmasked in place. The common case, one
    /// item where a head and a piece would take two calls.
    Frame {
        head: Head,
        start: usize,
        end: usize,
    },
    /// A complete header whose payload is not all in this input; it follows
    /// as [`Item::Payload`] pieces.
    Head(Head),
    /// Payload bytes `start..end` of the input, unmasked in place. `last`:
    /// the frame's payload ends here. A frame with an empty payload still
    /// gets one (empty) piece, so every frame ends with `last`.
    Payload {
        start: usize,
        end: usize,
        last: bool,
    },
}

/// A frame the connection must be failed for, and the close code it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    ReservedBits,
    ReservedOpcode,
    Unmasked,
    FragmentedControl,
    ControlTooLong,
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthTopBit,
    TooBig,
}

impl FrameError {
    /// The close reason and log line.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::ReservedBits => "reserved bits set",
            FrameError::ReservedOpcode => "reserved opcode",
            FrameError::Unmasked => "unmasked frame",
            FrameError::FragmentedControl => "fragmented control frame",
            FrameError::ControlTooLong => "control frame over 125 bytes",
            FrameError::LengthTopBit => "64-bit length with the top bit set",
            FrameError::TooBig => "frame too big",
        }
    }

    /// The close code (RFC 6455 §7.4.1): 1009 for a frame over our limit,
    /// 1002 for every protocol violation.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig => crate::close::code::TOO_BIG,
            _ => crate::close::code::PROTOCOL_ERROR,
        }
    }
}

/// The parser's state between reads.
#[derive(Debug)]
pub struct FrameReader {
    /// Header bytes received so far (only while a header is incomplete).
    head: [u8; MAX_HEAD],
    head_len: u8,
    /// In a payload: bytes still to come, and the mask rotated to where the
    /// next byte falls.
    in_payload: bool,
    remaining: u64,
    mask: [u8; 4],
    max_frame: u64,
    allow_rsv1: bool,
}

impl FrameReader {
    /// A reader that fails frames longer than `max_frame` with 1009.
    pub fn new(max_frame: u64) -> Self {
        FrameReader {
            head: [0; MAX_HEAD],
            head_len: 0,
            in_payload: false,
            remaining: 0,
            mask: [0; 4],
            max_frame,
            allow_rsv1: false,
        }
    }

    /// Accept RSV1 on data frames (permessage-deflate was negotiated).
    pub fn allow_rsv1(&mut self, allow: bool) {
        self.allow_rsv1 = allow;
    }

    /// True between frames: no header byte or payload byte is pending.
    pub fn at_boundary(&self) -> bool {
        !self.in_payload && self.head_len == 0
    }

    /// Parses the next item from `buf[*pos..]`, advancing `pos` past what it
    /// used. `Ok(None)`: every byte was used (a partial header is kept here)
    /// and more input is needed. After an error the reader is spent.
    ///
    /// Inlined as far as a whole frame in the input: the one path of every
    /// small message, where a call and a returned `Item` in memory were a
    /// tenth of the instructions an echo takes.
    #[inline(always)]
    pub fn next(&mut self, buf: &mut [u8], pos: &mut usize) -> Result<Option<Item>, FrameError> {
        if self.in_payload {
            return Ok(self.payload(buf, pos));
        }
        let input = &buf[*pos..];
        // Fast path: a whole header in this input, nothing spilled before.
        if self.head_len == 0
            && let Some(size) = head_size(input)
            && input.len() >= size
        {
            let parsed = parse(&input[..size], self.allow_rsv1)?;
            let start = *pos + size;
            let len = parsed.head.len;
            if len <= (input.len() - size) as u64 && len <= self.max_frame {
                let end = start + len as usize;
                unmask(&mut buf[start..end], parsed.mask);
                *pos = end;
                return Ok(Some(Item::Frame {
                    head: parsed.head,
                    start,
                    end,
                }));
            }
            *pos = start;
            return self.start(parsed).map(Some);
        }
        self.gather_head(buf, pos)
    }

    /// A header split across reads: gathered here, at most 14 bytes.
    #[inline(never)]
    fn gather_head(&mut self, buf: &mut [u8], pos: &mut usize) -> Result<Option<Item>, FrameError> {
        loop {
            let have = self.head_len as usize;
            let want = head_size(&self.head[..have]).unwrap_or(2);
            if have == want {
                self.head_len = 0;
                let head = parse(&self.head[..want], self.allow_rsv1)?;
                return self.start(head).map(Some);
            }
            let input = &buf[*pos..];
            if input.is_empty() {
                return Ok(None);
            }
            let take = (want - have).min(input.len());
            self.head[have..have + take].copy_from_slice(&input[..take]);
            self.head_len += take as u8;
            *pos += take;
            // The first two bytes decide most rules: fail before the rest.
            if have < 2 && self.head_len >= 2 {
                check_first_bytes(self.head[0], self.head[1], self.allow_rsv1)?;
            }
        }
    }

    fn start(&mut self, parsed: Parsed) -> Result<Item, FrameError> {
        if parsed.head.len > self.max_frame {
            return Err(FrameError::TooBig);
        }
        self.mask = parsed.mask;
        self.remaining = parsed.head.len;
        self.in_payload = true;
        Ok(Item::Head(parsed.head))
    }

    /// The next piece of the current payload: what `buf` holds of it, at
    /// least one byte unless the payload is empty.
    fn payload(&mut self, buf: &mut [u8], pos: &mut usize) -> Option<Item> {
        let start = *pos;
        let avail = (buf.len() - start) as u64;
        if avail == 0 && self.remaining > 0 {
            return None;
        }
        let take = avail.min(self.remaining) as usize;
        let end = start + take;
        unmask(&mut buf[start..end], self.mask);
        // The next piece starts `take` bytes further into the mask.
        self.mask.rotate_left(take % 4);
        self.remaining -= take as u64;
        *pos = end;
        let last = self.remaining == 0;
        if last {
            self.in_payload = false;
        }
        Some(Item::Payload { start, end, last })
    }
}

pub fn is_control(opcode: OpCode) -> bool {
    matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong)
}

/// The header's total size, once its first two bytes are known.
fn head_size(b: &[u8]) -> Option<usize> {
    let second = *b.get(1)?;
    let len_bytes = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + len_bytes + mask_bytes)
}

struct Parsed {
    head: Head,
    mask: [u8; 4],
}

/// Checks what the first two bytes alone decide: reserved bits (RSV1 only
/// on data frames, and only when an extension uses it), the opcode, the mask
/// bit, and the control-frame rules.
fn check_first_bytes(b0: u8, b1: u8, allow_rsv1: bool) -> Result<OpCode, FrameError> {
    let opcode = OpCode::try_from(b0 & 0x0f).map_err(|_| FrameError::ReservedOpcode)?;
    let rsv1_ok = allow_rsv1 && !is_control(opcode);
    if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && !rsv1_ok) {
        return Err(FrameError::ReservedBits);
    }
    // §5.1: a server MUST close on an unmasked client frame.
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    if is_control(opcode) {
        if b0 & 0x80 == 0 {
            return Err(FrameError::FragmentedControl);
        }
        // §5.5: control payloads are at most 125 bytes (126 and 127 are the
        // extended length markers).
        if b1 & 0x7f > 125 {
            return Err(FrameError::ControlTooLong);
        }
    }
    Ok(opcode)
}

/// Parses a whole header (`b.len()` is its size, mask included).
#[inline(always)]
fn parse(b: &[u8], allow_rsv1: bool) -> Result<Parsed, FrameError> {
    let opcode = check_first_bytes(b[0], b[1], allow_rsv1)?;
    let len = match b[1] & 0x7f {
        126 => u16::from_be_bytes([b[2], b[3]]) as u64,
        // §5.2: the most significant bit MUST be 0. A protocol error,
        // whatever the frame limit (a usize can exceed 2^63).
        127 => match u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) {
            n if n >> 63 != 0 => return Err(FrameError::LengthTopBit),
            n => n,
        },
        n => n as u64,
    };
    let mask = b[b.len() - 4..].try_into().expect("4 mask bytes");
    Ok(Parsed {
        head: Head {
            fin: b[0] & 0x80 != 0,
            rsv1: b[0] & 0x40 != 0,
            opcode,
            len,
        },
        mask,
    })
}

/// fastwebsockets' `unmask`, compiled for AVX-512 or AVX2 where the CPU has
/// them. It is a word loop that the compiler vectorises, and the release
/// build targets baseline x86-64, so it ran with SSE2: 5.0 % of the
/// server's CPU at 500 x 16 KiB, its largest item in user space (3.0 % with
/// AVX-512; `scripts/server-profile.sh`).
///
/// Below [`SHORT_PAYLOAD`] bytes a plain loop over 8-byte words does it:
/// there the vectorised loop's set-up and the feature check cost more than
/// the bytes (`scripts/user-instructions.sh` at 100 x 20 B: 74
/// instructions per payload through them; the server's own instructions
/// per echo 1,538 before, 1,506 after).
#[inline]
fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    if buf.len() < SHORT_PAYLOAD {
        unmask_short(buf, mask);
    } else {
        unmask_long(buf, mask);
    }
}

#[inline(never)]
fn unmask_long(buf: &mut [u8], mask: [u8; 4]) {
    #[cfg(target_arch = "x86_64")]
    if wide::unmask(buf, mask) {
        return;
    }
    fastwebsockets::unmask(buf, mask)
}

/// At most eight words and a remainder.
const SHORT_PAYLOAD: usize = 64;

#[inline(always)]
fn unmask_short(buf: &mut [u8], mask: [u8; 4]) {
    // The mask twice over, as a word: [a, b, c, d, a, b, c, d] in memory,
    // whatever the byte order (built from bytes, it took 25 instructions).
    let word = u64::from(u32::from_ne_bytes(mask)) * 0x1_0000_0001;
    let mut rest = buf;
    while rest.len() >= 8 {
        let (w, tail) = std::mem::take(&mut rest)
            .split_first_chunk_mut::<8>()
            .expect("8 bytes");
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
        rest = tail;
    }
    // What is left starts at a multiple of 8, so at the mask's first byte.
    if rest.len() >= 4 {
        let (w, tail) = std::mem::take(&mut rest)
            .split_first_chunk_mut::<4>()
            .expect("4 bytes");
        *w = (u32::from_ne_bytes(*w) ^ u32::from_ne_bytes(mask)).to_ne_bytes();
        rest = tail;
    }
    for (byte, m) in rest.iter_mut().zip(mask) {
        *byte ^= m;
    }
}

/// Calling a `#[target_feature]` function is `unsafe`: each call below
/// follows the run-time check that makes it sound.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide {
    use std::arch::is_x86_feature_detected;

    /// False when the CPU has neither (the caller unmasks portably).
    pub(super) fn unmask(buf: &mut [u8], mask: [u8; 4]) -> bool {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { unmask_avx512(buf, mask) };
        } else if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { unmask_avx2(buf, mask) };
        } else {
            return false;
        }
        true
    }

    #[target_feature(enable = "avx512f")]
    fn unmask_avx512(buf: &mut [u8], mask: [u8; 4]) {
        fastwebsockets::unmask(buf, mask)
    }

    #[target_feature(enable = "avx2")]
    fn unmask_avx2(buf: &mut [u8], mask: [u8; 4]) {
        fastwebsockets::unmask(buf, mask)
    }
}

#[cfg(test)]
mod tests;
