use super::*;

pub(super) const ON: DeflatePolicy = DeflatePolicy::ON;
const TAKEOVER: DeflatePolicy = DeflatePolicy::TAKEOVER;
pub(super) const MIB: usize = 1 << 20;

/// xorshift64*: deterministic data and splits without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// JSON-ish chat lines: what compression is for.
pub(super) fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "hello", "deflate", "window", "echo", "frame", "message", "42",
    ];
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 128);
    let mut id = 0;
    while out.len() < len {
        id += 1;
        let user = rng.below(97);
        out.extend_from_slice(format!(r#"{{"id":{id},"user":"user{user}","text":""#).as_bytes());
        for _ in 0..rng.below(12) + 1 {
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\"}\n");
    }
    out.truncate(len);
    out
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Both ends of one connection under `policy`, offered the browsers' way.
pub(super) fn pair(policy: &DeflatePolicy, cap: usize) -> (Deflater, Inflater) {
    let params = negotiate([&b"permessage-deflate; client_max_window_bits"[..]], policy).unwrap();
    // The server's deflater stands in for the client's: same params, mirrored.
    let client_side = Params {
        server_no_context_takeover: params.client_no_context_takeover,
        server_max_window_bits: params.client_max_window_bits,
        ..params
    };
    (
        Deflater::new(&client_side, policy),
        Inflater::new(&params, cap),
    )
}

/// Feeds `data` in random pieces (empty ones too) to `f`.
fn in_pieces(data: &[u8], rng: &mut Rng, mut f: impl FnMut(&[u8])) {
    let mut rest = data;
    while !rest.is_empty() {
        let n = match rng.below(4) {
            0 => 0,
            1 => rng.below(8),
            _ => rng.below(rest.len().min(256 * 1024)) + 1,
        }
        .min(rest.len());
        f(&rest[..n]);
        rest = &rest[n..];
    }
}

fn round_trip(policy: &DeflatePolicy, messages: &[Vec<u8>], split: bool) {
    let (mut deflater, mut inflater) = pair(policy, 16 * MIB);
    let mut rng = Rng(7);
    for msg in messages {
        let mut wire = Vec::new();
        if split {
            in_pieces(msg, &mut rng, |p| deflater.feed(p, &mut wire).unwrap());
            deflater.finish(&mut wire).unwrap();
        } else {
            deflater.compress(msg, &mut wire).unwrap();
        }
        let mut back = Vec::new();
        if split {
            in_pieces(&wire, &mut rng, |p| inflater.feed(p, &mut back).unwrap());
        } else {
            inflater.feed(&wire, &mut back).unwrap();
        }
        assert_eq!(inflater.finish(&mut back), Ok(msg.len()));
        assert!(
            back == *msg,
            "{} bytes under `{policy}` came back different",
            msg.len()
        );
    }
}

#[test]
fn round_trips_from_empty_to_16_mib() {
    let sizes = [0, 1, 125, 126, 65_535, 65_536, 65_537, MIB, 16 * MIB];
    let messages: Vec<Vec<u8>> = sizes.iter().map(|&n| text(n, n as u64)).collect();
    for policy in [ON, TAKEOVER] {
        round_trip(&policy, &messages, false);
    }
}

#[test]
fn round_trips_fed_in_random_pieces() {
    let mut messages: Vec<Vec<u8>> = (0..20).map(|i| text(i * 3_001, i as u64)).collect();
    messages.push(noise(300_000, 3));
    messages.push(Vec::new());
    messages.push(text(4 * MIB, 11));
    for policy in [
        ON,
        TAKEOVER,
        "server_max_window_bits=9,client_max_window_bits=9"
            .parse()
            .unwrap(),
    ] {
        round_trip(&policy, &messages, true);
    }
}

#[test]
fn incompressible_data_round_trips() {
    let messages = [noise(2 * MIB + 3, 1), noise(10, 2)];
    round_trip(&ON, &messages, false);
    round_trip(&TAKEOVER, &messages, false);
}

#[test]
fn every_window_size_round_trips_with_context_takeover() {
    for bits in 8..=15 {
        let policy: DeflatePolicy =
            format!("server_max_window_bits={bits},client_max_window_bits={bits}")
                .parse()
                .unwrap();
        let messages: Vec<Vec<u8>> = (0..5).map(|i| text(20_000, i)).collect();
        round_trip(&policy, &messages, true);
    }
}

/// A 15-bit stream must never reach a receiver that honours a smaller
/// window: inflate what a 10-bit server sends with exactly 10 bits.
#[test]
fn server_window_is_honoured() {
    let params = negotiate(
        [&b"permessage-deflate; server_max_window_bits=10"[..]],
        &TAKEOVER,
    )
    .unwrap();
    let mut deflater = Deflater::new(&params, &TAKEOVER);
    let mut peer = flate2::Decompress::new_with_window_bits(false, 10);
    for i in 0..4 {
        let msg = text(200_000, i);
        let mut wire = Vec::new();
        deflater.compress(&msg, &mut wire).unwrap();
        wire.extend_from_slice(&inflater::TAIL);
        let mut back = Vec::with_capacity(msg.len() + 1);
        peer.decompress_vec(&wire, &mut back, flate2::FlushDecompress::Sync)
            .unwrap();
        assert!(back == msg);
    }
}

/// zlib cannot compress with a raw 8-bit window; literals only are valid
/// under it. A zlib-rs inflater with exactly 8 bits proves no distance
/// reaches past 256 bytes.
#[test]
fn an_8_bit_server_window_sends_literals_only() {
    let params = negotiate(
        [&b"permessage-deflate; server_max_window_bits=8"[..]],
        &TAKEOVER,
    )
    .unwrap();
    assert_eq!(params.server_window_bits(), 8);
    let mut deflater = Deflater::new(&params, &TAKEOVER);
    let mut peer = zlib_rs::Inflate::new(false, 8);
    let msg = text(100_000, 5);
    let mut wire = Vec::new();
    deflater.compress(&msg, &mut wire).unwrap();
    assert!(
        wire.len() < msg.len(),
        "Huffman coding alone still shrinks text"
    );
    wire.extend_from_slice(&inflater::TAIL);
    let mut back = vec![0; msg.len() + 16];
    peer.decompress(&wire, &mut back, zlib_rs::InflateFlush::SyncFlush)
        .unwrap();
    back.truncate(peer.total_out() as usize);
    assert!(back == msg);
}

#[test]
fn context_takeover_makes_a_repeated_message_smaller() {
    let msg = text(2_000, 9);
    let sizes = |policy: &DeflatePolicy| {
        let (mut deflater, _) = pair(policy, MIB);
        let mut lens = [0; 2];
        for len in &mut lens {
            let mut wire = Vec::new();
            deflater.compress(&msg, &mut wire).unwrap();
            *len = wire.len();
        }
        lens
    };
    let [first, second] = sizes(&TAKEOVER);
    assert!(second * 4 < first, "takeover: {first} then {second} bytes");
    let [first, second] = sizes(&ON);
    assert_eq!(
        first, second,
        "without takeover every message starts afresh"
    );
}

#[test]
fn no_context_is_held_between_messages_without_takeover() {
    for (policy, held) in [(ON, false), (TAKEOVER, true)] {
        let (mut deflater, mut inflater) = pair(&policy, MIB);
        let mut wire = Vec::new();
        deflater.feed(b"half", &mut wire).unwrap();
        assert!(deflater.holds_context());
        assert!(live_contexts() >= 1, "held contexts are counted");
        deflater.finish(&mut wire).unwrap();
        assert_eq!(deflater.holds_context(), held);
        assert_eq!(deflater.can_skip_compression(), !held);
        let mut back = Vec::new();
        inflater.feed(&wire, &mut back).unwrap();
        assert!(inflater.holds_context());
        inflater.finish(&mut back).unwrap();
        assert_eq!(inflater.holds_context(), held);
        assert_eq!(back, b"half");
    }
    // Contexts went back to this thread's pool, not away.
    let (inflaters, deflaters) = idle_contexts();
    assert!(inflaters >= 1 && deflaters >= 1);
}

#[test]
fn an_empty_message_is_one_zero_byte() {
    let (mut deflater, mut inflater) = pair(&ON, MIB);
    let mut wire = Vec::new();
    deflater.compress(b"", &mut wire).unwrap();
    assert_eq!(wire, [0x00]);
    let mut back = Vec::new();
    inflater.feed(&wire, &mut back).unwrap();
    assert_eq!(inflater.finish(&mut back), Ok(0));
}

/// Some senders send an empty message as an empty payload; under context
/// takeover that must not derail the stream for the next message.
#[test]
fn an_empty_payload_is_an_empty_message() {
    let (mut deflater, mut inflater) = pair(&TAKEOVER, MIB);
    let mut back = Vec::new();
    inflater.feed(&[], &mut back).unwrap();
    assert_eq!(inflater.finish(&mut back), Ok(0));
    let mut wire = Vec::new();
    deflater.compress(b"after", &mut wire).unwrap();
    inflater.feed(&wire, &mut back).unwrap();
    assert_eq!(inflater.finish(&mut back), Ok(5));
    assert_eq!(back, b"after");
}

/// Output of CPython's zlib (`compressobj(9, DEFLATED, -15)`, sync flush,
/// tail stripped): two messages from one compressor, the second referring
/// back to the first.
const PYTHON_FIRST: &str = "aa562aa92c4855b2524a2f4a4d2dc9cc4b57d2512a49ad28018a78a4e6e4e4eb2814a416e5a6161727a6a7eaa6a4a6e52496a42a02d5e4295919d60200";
const PYTHON_SECOND: &str = "aa265fb3512d00";
/// `compressobj(6, DEFLATED, -15)` ended with Z_FINISH: a BFINAL block.
const PYTHON_FINAL: &str = "7372f3f473f45148cd4b295628c9c82c56282e294a4dcc0500";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn python_zlib_output_inflates() {
    let params = negotiate([&b"permessage-deflate"[..]], &TAKEOVER).unwrap();
    let mut inflater = Inflater::new(&params, MIB);
    for (wire, n) in [(PYTHON_FIRST, 1), (PYTHON_SECOND, 2)] {
        let mut back = Vec::new();
        inflater.feed(&unhex(wire), &mut back).unwrap();
        inflater.finish(&mut back).unwrap();
        let want = format!(r#"{{"type":"greeting","text":"Hello, permessage-deflate!","n":{n}}}"#);
        assert_eq!(String::from_utf8(back).unwrap(), want);
    }
    // A sender may end the stream inside a message; the next one starts anew.
    for _ in 0..2 {
        let mut back = Vec::new();
        inflater.feed(&unhex(PYTHON_FINAL), &mut back).unwrap();
        inflater.finish(&mut back).unwrap();
        assert_eq!(back, b"BFINAL ends this stream");
    }
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    for policy in [ON, TAKEOVER] {
        let (_, mut inflater) = pair(&policy, MIB);
        let mut back = Vec::new();
        // BTYPE 11 is reserved.
        let result = inflater
            .feed(&[0xff, 0xff, 0xff], &mut back)
            .and_then(|()| inflater.finish(&mut back).map(drop));
        assert_eq!(result, Err(InflateError::Corrupt));
    }
}
