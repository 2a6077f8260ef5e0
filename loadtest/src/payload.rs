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

use std::cell::RefCell;
use std::sync::LazyLock;

use crate::cli::Verify;
use crate::codec::{OP_BINARY, OP_TEXT};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Bytes of the full binary header: seq (8), conn (4), send time (8).
pub const FULL_HEADER: usize = 20;
/// Length of the [`wire`] pattern, and the largest message with
/// [`Layout::wire`] filler: the pattern never repeats within a message, so
/// a server that echoes one stretch of it twice (a reused buffer) is
/// caught, as with any filler.
pub const WIRE_LEN: usize = 1 << 20;

/// Smallest message with [`Layout::wire`] filler. Below it the generated
/// filler is cheaper: a few hundred bytes are written faster than the
/// kernel takes a second slice, and a random key is one multiply where the
/// keyed hash is three rounds (1000 x 20 B lost 4 % per core to it).
pub const WIRE_MIN: usize = 2048;

/// The [`wire`] pattern is the binary filler of this seed: so its bytes can
/// be checked against arithmetic, as any filler is, not against a second
/// stream of loads.
const WIRE_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// The masked bytes of every [`Layout::wire`] message after its header:
/// payload byte `i` is `wire()[i]` XOR the message's mask key. Made on
/// first use (a run without such messages never touches its megabyte).
pub fn wire() -> &'static [u8] {
    static WIRE: LazyLock<Box<[u8]>> = LazyLock::new(|| {
        let mut w = vec![0u8; WIRE_LEN];
        fill_any::<false>(&mut w, WIRE_SEED, 0);
        w.into_boxed_slice()
    });
    &WIRE
}

/// Room in front of each thread's copy of the [`wire`] pattern
/// ([`joined`]): a frame header and a message header fit with room over.
const JOIN_ROOM: usize = 64;

thread_local! {
    /// `JOIN_ROOM` bytes of scratch, then the [`wire`] pattern up to the
    /// furthest byte sent from it. A head written over the pattern is
    /// undone right after its send, so between sends it is the pattern.
    static JOINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hands `send` the bytes `head` followed by `piece` (a slice of [`wire`])
/// as one slice: `head` is copied in front of the piece in this thread's
/// copy of the pattern. A message whose bytes after its header are the
/// pattern then goes out by one `send` of one buffer, as `load_test` sends
/// its frame, instead of a `sendmsg` of two, whose message header and
/// vector the kernel copies in and walks: 1-2 % more messages per CPU
/// second at 10 x 16 KiB (`scripts/generator-ab.sh`, loadtest/README).
/// `None`, and `send` not called, when `piece` is not a slice of [`wire`]
/// or `head` is longer than the pattern and the room in front of it.
pub fn joined<R>(head: &[u8], piece: &[u8], send: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let wire = wire();
    let at = piece.as_ptr().addr().checked_sub(wire.as_ptr().addr())?;
    let end = at + piece.len();
    if end > wire.len() || head.len() > JOIN_ROOM + at {
        return None;
    }
    JOINED.with_borrow_mut(|copy| {
        if copy.len() < JOIN_ROOM + end {
            // Grown in steps to the largest message, not to the whole
            // megabyte, so a 16 KiB run keeps 32 KiB of it warm.
            let to = end.next_power_of_two().min(wire.len());
            copy.resize(JOIN_ROOM, 0);
            copy.extend_from_slice(&wire[..to]);
        }
        let start = JOIN_ROOM + at - head.len();
        copy[start..JOIN_ROOM + at].copy_from_slice(head);
        let sent = send(&copy[start..JOIN_ROOM + end]);
        // What the head covered of the pattern is the pattern again, for
        // the next message, whose piece may start lower.
        let from = start.max(JOIN_ROOM);
        copy[from..JOIN_ROOM + at].copy_from_slice(&wire[from - JOIN_ROOM..at]);
        Some(sent)
    })
}

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

/// Text filler: each byte mapped into `'0'..='o'` (printable ASCII); no
/// carries cross bytes, so it stays one vector operation per word.
#[inline(always)]
fn ascii(w: u64) -> u64 {
    (w & 0x3f3f_3f3f_3f3f_3f3f) + 0x3030_3030_3030_3030
}

#[inline(always)]
fn filler_word<const TEXT: bool>(w: u64) -> u64 {
    if TEXT { ascii(w) } else { w }
}

fn fill<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
    #[cfg(target_arch = "x86_64")]
    if wide::fill::<TEXT>(dst, seed, m64) {
        return;
    }
    fill_any::<TEXT>(dst, seed, m64)
}

#[inline(always)]
fn fill_any<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
    let mut w = seed;
    let mut chunks = dst.chunks_exact_mut(8);
    for c in &mut chunks {
        w = w.wrapping_add(GOLDEN);
        c.copy_from_slice(&(filler_word::<TEXT>(w) ^ m64).to_le_bytes());
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        w = w.wrapping_add(GOLDEN);
        let bytes = (filler_word::<TEXT>(w) ^ m64).to_le_bytes();
        rem.copy_from_slice(&bytes[..rem.len()]);
    }
}

/// Compares bytes `start..`, XORed with `m64` (a key twice over, or 0),
/// with the filler: byte by byte in the (at most two) 8-byte chunks cut by
/// the header's or the payload's end, a word at a time between them,
/// OR-ing differences so the loop has no early exit and vectorises.
fn filler_ok<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(ok) = wide::filler_ok::<TEXT>(src, start, seed, m64) {
        return ok;
    }
    filler_ok_any::<TEXT>(src, start, seed, m64)
}

#[inline(always)]
fn filler_ok_any<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
    let n = src.len();
    let m = m64.to_le_bytes();
    if start >= n {
        return true;
    }
    let word =
        |j: usize| filler_word::<TEXT>(seed.wrapping_add((j as u64 + 1).wrapping_mul(GOLDEN)));
    let partial = |j: usize| {
        let expected = word(j).to_le_bytes();
        let (lo, hi) = ((8 * j).max(start), (8 * j + 8).min(n));
        (lo..hi).fold(0u8, |d, p| d | (src[p] ^ m[p & 7] ^ expected[p - 8 * j]))
    };
    let first_full = start.div_ceil(8);
    let full_end = n / 8;
    let mut diff = 0u64;
    if !start.is_multiple_of(8) {
        diff |= partial(start / 8) as u64;
    }
    if first_full < full_end {
        let mut w = seed.wrapping_add((first_full as u64).wrapping_mul(GOLDEN));
        for c in src[8 * first_full..8 * full_end].chunks_exact(8) {
            w = w.wrapping_add(GOLDEN);
            let got = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            diff |= got ^ m64 ^ filler_word::<TEXT>(w);
        }
    }
    if !n.is_multiple_of(8) && full_end >= first_full {
        diff |= partial(full_end) as u64;
    }
    diff == 0
}

/// Writes the wire pattern XOR `m64` (a key twice over, [`key_word`]) over all
/// of `dst`, from payload offset 0.
fn fill_wire(dst: &mut [u8], m64: u64) {
    fill::<false>(dst, WIRE_SEED, m64);
}

/// True when bytes `start..` of an (unmasked) echo, masked with the key of
/// `k64` ([`key_word`]), are the wire pattern.
fn wire_ok(src: &[u8], start: usize, k64: u64) -> bool {
    filler_ok::<false>(src, start, WIRE_SEED, k64)
}

/// The filler loops compiled for wider vectors, chosen at run time. At
/// 16 KiB they were a fifth of the generator's CPU (perf at 10 x 16 KiB:
/// `write_masked` 10 %, `filler_ok` 11 %) with SSE2, all that the release
/// build may assume of an x86-64 CPU; AVX-512 or AVX2 run the same loops
/// 4 or 2 words at a time. std caches the CPU check, so it costs a load.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide {
    use std::arch::is_x86_feature_detected;

    /// Fills as [`super::fill_any`] does; false when the CPU has neither.
    pub(super) fn fill<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) -> bool {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { fill_avx512::<TEXT>(dst, seed, m64) };
        } else if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { fill_avx2::<TEXT>(dst, seed, m64) };
        } else {
            return false;
        }
        true
    }

    /// Checks as [`super::filler_ok_any`] does; `None` when the CPU has
    /// neither.
    pub(super) fn filler_ok<const TEXT: bool>(
        src: &[u8],
        start: usize,
        seed: u64,
        m64: u64,
    ) -> Option<bool> {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            Some(unsafe { filler_ok_avx512::<TEXT>(src, start, seed, m64) })
        } else if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            Some(unsafe { filler_ok_avx2::<TEXT>(src, start, seed, m64) })
        } else {
            None
        }
    }

    #[target_feature(enable = "avx512f")]
    fn fill_avx512<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
        super::fill_any::<TEXT>(dst, seed, m64)
    }

    #[target_feature(enable = "avx2")]
    fn fill_avx2<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
        super::fill_any::<TEXT>(dst, seed, m64)
    }

    #[target_feature(enable = "avx512f")]
    fn filler_ok_avx512<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
        super::filler_ok_any::<TEXT>(src, start, seed, m64)
    }

    #[target_feature(enable = "avx2")]
    fn filler_ok_avx2<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
        super::filler_ok_any::<TEXT>(src, start, seed, m64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::apply_mask;

    const MASK: [u8; 4] = [0x12, 0x9a, 0xff, 0x01];

    fn sent(layout: &Layout, conn: u32, seq: u64, t: u64) -> Vec<u8> {
        let mut buf = vec![0u8; layout.size];
        layout.write_masked(&mut buf, conn, seq, t, MASK);
        apply_mask(&mut buf, MASK, 0);
        buf
    }

    #[test]
    fn verify_modes_check_the_filler_of_the_messages_they_name() {
        for (verify, seq_128, seq_129) in [
            (Verify::Full, true, true),
            (Verify::Sample, true, false),
            (Verify::Header, false, false),
        ] {
            let layout = Layout {
                verify,
                ..Layout::new(64, false)
            };
            for (seq, checked) in [(128, seq_128), (129, seq_129)] {
                let mut payload = sent(&layout, 3, seq, 7);
                assert!(layout.content_ok(&payload, 3, seq));
                *payload.last_mut().unwrap() ^= 1;
                assert_eq!(
                    layout.content_ok(&payload, 3, seq),
                    !checked,
                    "{verify:?}, seq {seq}"
                );
            }
        }
    }

    /// The send path leaves alone only filler that nothing will compare:
    /// a binary message outside the sample; a sampled one, any text one and
    /// every one under `full` are written whole, as `write_masked` does.
    #[test]
    fn the_send_path_skips_only_filler_that_is_never_checked() {
        const STALE: u8 = 0xa5;
        for (verify, text, seq, skipped) in [
            (Verify::Sample, false, 129, true),
            (Verify::Header, false, 128, true),
            (Verify::Sample, false, 128, false),
            (Verify::Full, false, 129, false),
            (Verify::Sample, true, 129, false),
        ] {
            let layout = Layout {
                verify,
                ..Layout::new(256, text)
            };
            let mut buf = vec![STALE; layout.size];
            layout.write_for_send(&mut buf, 3, seq, 7, MASK);
            let case = format!("{verify:?}, text {text}, seq {seq}");
            let filler = &buf[layout.header_len()..];
            assert_eq!(filler.iter().all(|&b| b == STALE), skipped, "{case}");
            apply_mask(&mut buf, MASK, 0);
            let header = layout.decode(&buf, layout.opcode()).unwrap();
            assert_eq!(
                (header.seq, header.conn, header.sent_ns),
                (seq, Some(3), Some(7)),
                "{case}"
            );
            assert!(layout.content_ok(&buf, 3, seq), "{case}");
            if !skipped {
                assert_eq!(buf, sent(&layout, 3, seq, 7), "{case}");
            }
        }
    }

    #[test]
    fn layouts_degrade_with_size() {
        assert_eq!(Layout::new(20, false).fields, Fields::Full);
        assert_eq!(Layout::new(20, true).fields, Fields::Seq);
        assert_eq!(Layout::new(40, true).fields, Fields::Full);
        assert_eq!(Layout::new(12, false).fields, Fields::ConnSeq);
        assert_eq!(Layout::new(3, false).fields, Fields::Short(3));
        assert_eq!(Layout::new(1, true).fields, Fields::Empty);
    }

    #[test]
    fn every_size_round_trips_in_both_modes() {
        for text in [false, true] {
            for size in (0..100).chain([1000, 16 << 10, 16 << 10 | 3]) {
                let l = Layout::new(size, text);
                let buf = sent(&l, 7, 0x0102_0304_0506_0708, 99);
                if text {
                    assert!(buf.is_ascii(), "size {size}");
                }
                let h = l.decode(&buf, l.opcode()).unwrap();
                let bits = l.seq_bits();
                let want = if bits == 64 {
                    0x0102_0304_0506_0708
                } else {
                    0x0102_0304_0506_0708 & ((1u64 << bits) - 1)
                };
                assert_eq!(h.seq, want, "size {size} text {text}");
                assert!(
                    l.filler_ok(&buf, 7, 0x0102_0304_0506_0708),
                    "size {size} text {text}"
                );
                if l.carries_time() {
                    assert_eq!((h.conn, h.sent_ns), (Some(7), Some(99)));
                }
            }
        }
    }

    #[test]
    fn every_single_byte_corruption_is_caught() {
        for text in [false, true] {
            for size in [20, 21, 40, 47, 64, 200] {
                let l = Layout::new(size, text);
                let good = sent(&l, 3, 41, 12345);
                let want = l.decode(&good, l.opcode()).unwrap();
                for i in 0..size {
                    let mut bad = good.clone();
                    bad[i] ^= 0x01;
                    let caught = match l.decode(&bad, l.opcode()) {
                        Err(_) => true,
                        Ok(h) => h != want || !l.filler_ok(&bad, 3, 41),
                    };
                    assert!(caught, "size {size} text {text} byte {i}");
                }
            }
        }
    }

    #[test]
    fn wrong_opcode_length_or_connection_is_caught() {
        let l = Layout::new(64, false);
        let good = sent(&l, 1, 5, 0);
        assert_eq!(l.decode(&good, OP_TEXT), Err(Corrupt::Opcode));
        assert_eq!(l.decode(&good[..63], OP_BINARY), Err(Corrupt::Length));
        // Another connection's message with the same seq: the filler differs.
        assert!(!l.filler_ok(&sent(&l, 2, 5, 0), 1, 5));
    }

    /// Wire-pattern messages: masked with their own key, every byte after
    /// the header is the pattern's, up to the pattern's length; they
    /// round-trip, and a flipped byte anywhere, another message's filler,
    /// another run's secret, or a stretch echoed twice is caught.
    #[test]
    fn wire_messages_are_the_pattern_masked_and_checked_whole() {
        for size in [WIRE_MIN, WIRE_MIN + 3, (64 << 10) + 5, WIRE_LEN] {
            let l = Layout::new(size, false).with_wire(7);
            let key = l.wire_key(3, 41).unwrap();
            assert_ne!(Some(key), l.wire_key(3, 42), "a key per message");
            let mut masked = vec![0u8; size];
            l.write_masked(&mut masked, 3, 41, 12345, key);
            let start = l.header_len().min(size);
            for (i, &b) in masked.iter().enumerate().skip(start) {
                assert_eq!(b, wire()[i], "size {size} byte {i}");
            }
            apply_mask(&mut masked, key, 0);
            let good = masked;
            let want = l.decode(&good, OP_BINARY).unwrap();
            assert!(l.filler_ok(&good, 3, 41), "size {size}");
            let other_run = Layout::new(size, false).with_wire(8);
            assert_eq!(
                other_run.filler_ok(&good, 3, 41),
                size <= start,
                "size {size}"
            );
            assert_eq!(l.filler_ok(&good, 3, 40), size <= start, "size {size}");
            let flips = (0..size.min(100)).chain(size.saturating_sub(100)..size);
            for i in flips.chain([64 << 10, (64 << 10) + 7].into_iter().filter(|&i| i < size)) {
                let mut bad = good.clone();
                bad[i] ^= 0x01;
                let caught = match l.decode(&bad, OP_BINARY) {
                    Err(_) => true,
                    Ok(h) => h != want || !l.filler_ok(&bad, 3, 41),
                };
                assert!(caught, "size {size} byte {i}");
            }
            // A server that sends a 64 KiB stretch twice (its buffer, reused).
            if size >= 2 * (64 << 10) + 64 {
                let mut twice = good.clone();
                twice.copy_within(64..(64 << 10) + 64, (64 << 10) + 64);
                assert!(!l.filler_ok(&twice, 3, 41), "size {size}");
            }
        }
        let large = Layout::new(WIRE_LEN + 1, false).with_wire(7);
        assert_eq!(large.wire, None, "nor a message longer than the pattern");
        assert_eq!(
            Layout::new(WIRE_MIN, true).with_wire(7).wire,
            None,
            "text keeps its filler"
        );
        let small = Layout::new(WIRE_MIN - 1, false).with_wire(7);
        assert_eq!(small.wire, None, "so does a small message");
    }

    /// The wire check at every start, with the wide loops (whichever this
    /// CPU runs) and the portable one.
    #[test]
    fn wire_checks_catch_a_flip_anywhere() {
        let k64 = key_word([1, 2, 3, 4]);
        for len in [0, 7, 8, 9, 63, 64, 65, 4099, WIRE_LEN] {
            let mut good = vec![0u8; len];
            fill_wire(&mut good, k64);
            let mut plain = good.clone();
            apply_mask(&mut plain, [1, 2, 3, 4], 0);
            assert!(plain == wire()[..len], "len {len}");
            for start in [0, 1, 7, 8, 20] {
                assert!(wire_ok(&good, start, k64), "len {len} start {start}");
                for i in [start, len / 2, len.saturating_sub(1)] {
                    if i < start || i >= len {
                        continue;
                    }
                    let mut bad = good.clone();
                    bad[i] ^= 0x40;
                    assert!(!wire_ok(&bad, start, k64), "len {len} byte {i}");
                    assert!(!filler_ok_any::<false>(&bad, start, WIRE_SEED, k64));
                }
            }
        }
    }

    /// The wide loops (whichever this CPU runs) agree with the portable
    /// ones byte for byte, and catch a flipped bit anywhere, including the
    /// last word a vector loop would leave to its scalar tail.
    #[test]
    fn wide_and_portable_loops_agree() {
        let m64 = 0x0123_4567_89ab_cdef;
        for text in [false, true] {
            for len in (0..80).chain([255, 256, 257, 1000, 4099, 16 << 10]) {
                let (mut wide, mut plain) = (vec![0u8; len], vec![0u8; len]);
                if text {
                    fill::<true>(&mut wide, 42, m64);
                    fill_any::<true>(&mut plain, 42, m64);
                } else {
                    fill::<false>(&mut wide, 42, m64);
                    fill_any::<false>(&mut plain, 42, m64);
                }
                assert_eq!(wide, plain, "len {len} text {text}");
                fill_any::<false>(&mut plain, 42, 0);
                for start in [0, 1, 7, 8, 20] {
                    let mut at = vec![len / 2, len.saturating_sub(1)];
                    at.retain(|&i| i >= start && i < len);
                    for i in at {
                        let mut bad = plain.clone();
                        bad[i] ^= 0x40;
                        assert!(
                            !filler_ok::<false>(&bad, start, 42, 0),
                            "len {len} byte {i}"
                        );
                        assert!(!filler_ok_any::<false>(&bad, start, 42, 0));
                    }
                    assert!(
                        filler_ok::<false>(&plain, start, 42, 0),
                        "len {len} start {start}"
                    );
                }
            }
        }
    }

    /// A head and a piece of the pattern come out as one slice, whatever
    /// the heads sent before from this thread overwrote in its copy.
    #[test]
    fn a_head_joined_to_a_piece_is_both_in_order() {
        let w = wire();
        let one = |head: &[u8], piece: &[u8]| joined(head, piece, <[u8]>::to_vec);
        let cases: [(&[u8], std::ops::Range<usize>); 4] = [
            (&[1; 28], 20..16_384),
            (&[2; 60], 9_000..9_100),
            (&[3; 5], 20..40_000),
            (&[], 0..100),
        ];
        // The high piece's head lands on what the later, lower pieces send.
        for (head, range) in cases.iter().chain(&cases) {
            let want = [*head, &w[range.clone()]].concat();
            assert!(one(head, &w[range.clone()]) == Some(want), "{range:?}");
        }
        assert_eq!(one(&[0; 85], &w[20..100]), None, "longer than the room");
        assert_eq!(one(&[0; 4], &[7; 100]), None, "not the pattern");
    }
}
