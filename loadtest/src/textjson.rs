//! `--payload text-json`: a compressible filler that looks like what a
//! WebSocket API sends (an array of small JSON records with repeated keys
//! and a small vocabulary), still a pure function of `(conn, seq)` so an
//! echo is verified by regenerating it. Compressing the default filler
//! (pseudo-random words) only measures deflate's overhead; this measures
//! what compression is for. Typical ratio with zlib level 1: about 3:1.

/// Longest record [`Records::next`] writes.
const MAX_RECORD: usize = 160;

const NAMES: [&str; 16] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil",
];
const CITIES: [&str; 8] = [
    "Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Quebec", "Tartu", "Perth",
];
const EVENTS: [&str; 8] = [
    "login", "logout", "click", "view", "purchase", "search", "share", "like",
];

/// The record stream of one message: a splitmix sequence picks each field.
struct Records {
    state: u64,
    id: u64,
}

impl Records {
    fn new(seed: u64) -> Records {
        Records {
            state: seed,
            id: seed % 100_000,
        }
    }

    fn rand(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Writes the next record into `buf`; returns its length.
    fn next(&mut self, buf: &mut [u8; MAX_RECORD]) -> usize {
        let r = self.rand();
        self.id += 1 + (r & 7);
        let mut w = Writer { buf, len: 0 };
        w.put(b"{\"id\":");
        w.num(self.id);
        w.put(b",\"user\":\"");
        w.put(NAMES[(r >> 8) as usize & 15].as_bytes());
        w.put(b"\",\"event\":\"");
        w.put(EVENTS[(r >> 12) as usize & 7].as_bytes());
        w.put(b"\",\"city\":\"");
        w.put(CITIES[(r >> 16) as usize & 7].as_bytes());
        w.put(b"\",\"score\":");
        w.num((r >> 20) % 1000);
        w.put(if (r >> 40) & 1 == 0 {
            b",\"active\":true},"
        } else {
            b",\"active\":false},"
        });
        w.len
    }
}

struct Writer<'a> {
    buf: &'a mut [u8; MAX_RECORD],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

/// Fills `dst` with the text of message `seed`: `[` then records.
pub fn fill(dst: &mut [u8], seed: u64) {
    walk(dst.len(), seed, |at, piece| {
        dst[at..at + piece.len()].copy_from_slice(piece)
    });
}

/// True when `src` is exactly what [`fill`] writes for `seed`.
pub fn matches(src: &[u8], seed: u64) -> bool {
    let mut ok = true;
    walk(src.len(), seed, |at, piece| {
        ok &= src[at..at + piece.len()] == *piece
    });
    ok
}

/// Calls `f(offset, bytes)` for consecutive pieces covering `len` bytes.
fn walk(len: usize, seed: u64, mut f: impl FnMut(usize, &[u8])) {
    if len == 0 {
        return;
    }
    f(0, b"[");
    let mut at = 1;
    let mut records = Records::new(seed);
    let mut buf = [0u8; MAX_RECORD];
    while at < len {
        let n = records.next(&mut buf).min(len - at);
        f(at, &buf[..n]);
        at += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text_and_any_change_shows() {
        for len in [0, 1, 2, 50, 1024, 16 << 10] {
            let mut a = vec![0u8; len];
            fill(&mut a, 42);
            assert!(a.is_ascii());
            assert!(matches(&a, 42));
            if len > 1 {
                assert!(!matches(&a, 43) || len < 50, "len {len}");
                let last = len - 1;
                a[last] ^= 1;
                assert!(!matches(&a, 42));
            }
        }
    }

    #[test]
    fn it_compresses_like_text() {
        let mut a = vec![0u8; 1024];
        fill(&mut a, 7);
        let mut z = flate2::Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(2048);
        z.compress_vec(&a, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.len() < a.len() / 2, "{} of {}", out.len(), a.len());
    }
}
