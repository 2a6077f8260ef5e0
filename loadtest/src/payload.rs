//! What each message carries, and how an echo is checked against it.
//!
//! A payload starts with a header: the sequence number (8 bytes), the
//! connection id (4) and the send time in ns since the run began (8), all
//! little-endian; in text mode each header byte is two lowercase hex digits,
//! so text is plain ASCII and always valid UTF-8. Payloads too small for all
//! of it carry a prefix: `seq+conn` (12 B), `seq` (8 B), or the low bytes of
//! `seq`; the send time then comes from the connection's own record
//! ([`crate::window`]), so a 20-byte (or 1-byte) message is still timed and
//! verified. The rest is filler, a function of `(conn, seq)`, so an echo is
//! checked by regenerating what was sent instead of keeping a copy.
//!
//! The filler is one 64-bit word per 8 bytes, `seed + j·φ`: generating and
//! comparing it are straight loops the compiler vectorises, and generation
//! XORs the mask key in on the way, so a message is written once, masked,
//! into the send buffer.
//!
//! The echo scenario's binary messages of [`WIRE_MIN`] to [`WIRE_LEN`]
//! bytes have a filler of another kind ([`Layout::wire`]): the bytes that,
//! masked with the message's own key, are the run's [`wire`] pattern. The
//! key is fresh for every message, a keyed hash of `(conn, seq)` with a
//! secret drawn when the run starts, so the server sees a different payload
//! each time (RFC 6455 §5.3) and every byte of its echo is still checked;
//! but the frame's bytes after the header are the same in every message, so
//! the send path hands the kernel the shared pattern ([`crate::conn`]
//! splices it in: a message alone goes out as one slice ([`joined`]),
//! several by `sendmsg`) instead of generating the message into a buffer
//! of its own. Generating 16 KiB was most of the generator's own work per
//! echo at 16 KiB (`fill_avx512`, 191 ns a TCP segment at 10 x 16 KiB by
//! `scripts/segment-costs.sh`). Chat keeps the filler above: its
//! deliveries are checked by other processes under `--segment`, which do
//! not know this one's secret.

use crate::cli::Verify;
use crate::codec::{OP_BINARY, OP_TEXT};

mod filler;
mod pattern;
#[cfg(test)]
mod tests;

use filler::{fill, filler_ok};
pub use pattern::{WIRE_LEN, WIRE_MIN, joined, wire};
use pattern::{fill_wire, wire_ok};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Bytes of the full binary header: seq (8), conn (4), send time (8).
pub const FULL_HEADER: usize = 20;

/// Which header fields fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// seq, conn, send time.
    Full,
    /// seq, conn.
    ConnSeq,
    /// seq.
    Seq,
    /// The low `n` bytes of seq (1..=7).
    Short(u8),
    /// Nothing: echoes are matched in order.
    Empty,
}

impl Fields {
    fn bytes(self) -> usize {
        match self {
            Fields::Full => FULL_HEADER,
            Fields::ConnSeq => 12,
            Fields::Seq => 8,
            Fields::Short(n) => n as usize,
            Fields::Empty => 0,
        }
    }
}

/// The shape of every message in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: usize,
    pub text: bool,
    pub fields: Fields,
    /// `--payload text-json`: the filler is [`crate::textjson`] (text).
    pub json: bool,
    /// `--verify`: which echoes have their filler checked.
    pub verify: Verify,
    /// Binary messages whose masked filler is the [`wire`] pattern, their
    /// mask keys hashed from `(conn, seq)` with this secret: the echo
    /// scenario's (see the module's notes).
    pub wire: Option<u64>,
}

/// A decoded header. `seq` holds `seq_bits` low bits of the real number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub seq_bits: u32,
    pub conn: Option<u32>,
    pub sent_ns: Option<u64>,
}

/// Why an echo is not what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("wrong opcode")]
    Opcode,
    #[error("wrong length")]
    Length,
    #[error("unreadable header")]
    Header,
    #[error("header does not match what was sent")]
    Mismatch,
    #[error("filler bytes differ")]
    Filler,
}

impl Layout {
    pub fn new(size: usize, text: bool) -> Layout {
        let room = if text { size / 2 } else { size };
        let fields = match room {
            FULL_HEADER.. => Fields::Full,
            12.. => Fields::ConnSeq,
            8.. => Fields::Seq,
            1.. => Fields::Short(room as u8),
            0 => Fields::Empty,
        };
        Layout {
            size,
            text,
            fields,
            json: false,
            verify: Verify::Full,
            wire: None,
        }
    }

    /// The layout with [`Layout::wire`] filler keyed by `secret`: binary
    /// filler of [`WIRE_MIN`] to [`WIRE_LEN`] bytes only (text stays ASCII).
    pub fn with_wire(self, secret: u64) -> Layout {
        let sized = (WIRE_MIN..=WIRE_LEN).contains(&self.size);
        let wire = !self.text && !self.json && sized;
        Layout {
            wire: wire.then_some(secret),
            ..self
        }
    }

    /// The mask key message `(conn, seq)` is sent with when its filler is
    /// the wire pattern's; `None` for other layouts, whose keys are drawn
    /// at random per frame.
    #[inline]
    pub fn wire_key(&self, conn: u32, seq: u64) -> Option<[u8; 4]> {
        self.key_of(seed(conn, seq))
    }

    /// [`Layout::wire_key`] from the message's [`seed`].
    fn key_of(&self, seed: u64) -> Option<[u8; 4]> {
        let secret = self.wire?;
        Some((splitmix(seed ^ secret) as u32).to_le_bytes())
    }

    /// A text layout whose filler is compressible JSON-ish text.
    pub fn text_json(size: usize) -> Layout {
        Layout {
            json: true,
            ..Layout::new(size, true)
        }
    }

    pub fn opcode(&self) -> u8 {
        if self.text { OP_TEXT } else { OP_BINARY }
    }

    pub fn carries_time(&self) -> bool {
        self.fields == Fields::Full
    }

    /// Bits of the sequence number a payload carries (64, 8·n or 0).
    pub fn seq_bits(&self) -> u32 {
        match self.fields {
            Fields::Full | Fields::ConnSeq | Fields::Seq => 64,
            Fields::Short(n) => 8 * n as u32,
            Fields::Empty => 0,
        }
    }

    /// Payload bytes that hold the header (two hex digits a byte in text).
    pub fn header_len(&self) -> usize {
        self.fields.bytes() * if self.text { 2 } else { 1 }
    }

    /// Writes message `(conn, seq)` into `dst` (exactly `size` bytes),
    /// already XORed with the mask key: one pass, no copy.
    pub fn write_masked(&self, dst: &mut [u8], conn: u32, seq: u64, sent_ns: u64, mask: [u8; 4]) {
        debug_assert_eq!(dst.len(), self.size);
        let m64 = key_word(mask);
        let seed = seed(conn, seq);
        if let Some(key) = self.key_of(seed) {
            fill_wire(dst, key_word(key) ^ key_word(mask));
        } else if self.json {
            let start = self.header_len().min(dst.len());
            crate::textjson::fill(&mut dst[start..], seed);
            crate::codec::apply_mask(&mut dst[start..], mask, start);
        } else if self.text {
            fill::<true>(dst, seed, m64);
        } else {
            fill::<false>(dst, seed, m64);
        }
        self.write_header_masked(dst, conn, seq, sent_ns, mask);
    }

    /// What the send path writes: [`Layout::write_masked`], except that a
    /// binary message whose filler `--verify` will not check gets only its
    /// header, and the bytes after it stay as `dst` holds them (an earlier
    /// frame's, from the reused send buffer). Those bytes are masked like
    /// any payload (the server unmasks them to some binary filler and
    /// echoes that), nothing compares them, and generating 16 KiB that
    /// nothing reads was the largest part of the generator's own work per
    /// message (`fill_avx512`, about 240 ns per echo at 500 x 16 KiB by
    /// `scripts/segment-costs.sh`). Text must stay UTF-8 and JSON-like,
    /// so text is always generated; so is every byte under `--verify full`.
    pub fn write_for_send(&self, dst: &mut [u8], conn: u32, seq: u64, sent_ns: u64, mask: [u8; 4]) {
        if self.text || self.verify.filler(seq) {
            return self.write_masked(dst, conn, seq, sent_ns, mask);
        }
        debug_assert_eq!(dst.len(), self.size);
        self.write_header_masked(dst, conn, seq, sent_ns, mask);
    }

    pub fn write_header_masked(
        &self,
        dst: &mut [u8],
        conn: u32,
        seq: u64,
        sent_ns: u64,
        mask: [u8; 4],
    ) {
        let header = header_bytes(conn, seq, sent_ns);
        let header = &header[..self.fields.bytes()];
        if self.text {
            for (i, b) in header.iter().enumerate() {
                dst[2 * i] = HEX[(b >> 4) as usize] ^ mask[(2 * i) & 3];
                dst[2 * i + 1] = HEX[(b & 15) as usize] ^ mask[(2 * i + 1) & 3];
            }
        } else {
            for (i, b) in header.iter().enumerate() {
                dst[i] = b ^ mask[i & 3];
            }
        }
    }

    /// Checks opcode and length and reads the header of a received payload.
    pub fn decode(&self, src: &[u8], opcode: u8) -> Result<Header, Corrupt> {
        if opcode != self.opcode() {
            return Err(Corrupt::Opcode);
        }
        if src.len() != self.size {
            return Err(Corrupt::Length);
        }
        let n = self.fields.bytes();
        let mut raw = [0u8; FULL_HEADER];
        if self.text {
            for (i, pair) in src[..2 * n].chunks_exact(2).enumerate() {
                raw[i] = hex_value(pair[0]).ok_or(Corrupt::Header)? << 4
                    | hex_value(pair[1]).ok_or(Corrupt::Header)?;
            }
        } else {
            raw[..n].copy_from_slice(&src[..n]);
        }
        let word = |at: usize, len: usize| {
            let mut b = [0u8; 8];
            b[..len].copy_from_slice(&raw[at..at + len]);
            u64::from_le_bytes(b)
        };
        Ok(Header {
            seq: word(0, n.min(8)),
            seq_bits: self.seq_bits(),
            conn: (n >= 12).then(|| word(8, 4) as u32),
            sent_ns: (n >= FULL_HEADER).then(|| word(12, 8)),
        })
    }

    /// True when the bytes after the header are the filler of `(conn,
    /// seq)`, or `--verify` leaves this message's filler unchecked.
    pub fn content_ok(&self, src: &[u8], conn: u32, seq: u64) -> bool {
        !self.verify.filler(seq) || self.filler_ok(src, conn, seq)
    }

    /// True when every byte after the header is the filler of `(conn, seq)`.
    pub fn filler_ok(&self, src: &[u8], conn: u32, seq: u64) -> bool {
        let (start, seed) = (self.header_len(), seed(conn, seq));
        if let Some(key) = self.key_of(seed) {
            wire_ok(src, start, key_word(key))
        } else if self.json {
            crate::textjson::matches(src.get(start..).unwrap_or_default(), seed)
        } else if self.text {
            filler_ok::<true>(src, start, seed, 0)
        } else {
            filler_ok::<false>(src, start, seed, 0)
        }
    }
}

/// The filler's starting word: a hash, so neighbouring messages differ in
/// every byte and a message delivered to the wrong connection shows.
pub fn seed(conn: u32, seq: u64) -> u64 {
    splitmix(splitmix(conn as u64) ^ seq)
}

/// A mask key twice over: the key of every 8 bytes from a multiple of 4.
fn key_word(key: [u8; 4]) -> u64 {
    u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn header_bytes(conn: u32, seq: u64, sent_ns: u64) -> [u8; FULL_HEADER] {
    let mut h = [0u8; FULL_HEADER];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..12].copy_from_slice(&conn.to_le_bytes());
    h[12..].copy_from_slice(&sent_ns.to_le_bytes());
    h
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}
