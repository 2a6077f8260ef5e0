//! The reader against hand-made frames, and against arbitrary bytes split at
//! arbitrary points: whatever the split, the same frames or the same error.

use super::*;

use crate::ws::testing::{MASK, client_frame as frame};

/// What a stream of bytes parses to: each frame's head and its whole
/// (unmasked) payload, then the error that ended it, if any.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    frames: Vec<(Head, Vec<u8>)>,
    error: Option<FrameError>,
}

/// Feeds `input` to a fresh reader in the pieces `cuts` makes.
fn parse_split(input: &[u8], cuts: &[usize], max_frame: u64, rsv1: bool) -> Parsed {
    let mut reader = FrameReader::new(max_frame);
    reader.allow_rsv1(rsv1);
    let mut out = Parsed {
        frames: Vec::new(),
        error: None,
    };
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let mut from = 0;
    for to in bounds {
        let mut piece = input[from..to].to_vec();
        from = to;
        let mut pos = 0;
        loop {
            match reader.next(&mut piece, &mut pos) {
                Ok(Some(Item::Frame { head, start, end })) => {
                    out.frames.push((head, piece[start..end].to_vec()));
                }
                Ok(Some(Item::Head(head))) => out.frames.push((head, Vec::new())),
                Ok(Some(Item::Payload { start, end, .. })) => {
                    let (_, payload) = out.frames.last_mut().expect("a head first");
                    payload.extend_from_slice(&piece[start..end]);
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        assert_eq!(pos, piece.len(), "every byte of a read is used");
    }
    out
}

fn parse(input: &[u8]) -> Parsed {
    parse_split(input, &[], 1 << 20, false)
}

#[test]
fn small_frame_in_one_read_is_one_item_unmasked_in_place() {
    let mut input = frame(0x81, b"hello");
    input.extend(frame(0x82, b"")); // an empty frame whole in the read too
    let mut reader = FrameReader::new(1 << 20);
    let mut pos = 0;
    let text = Head {
        fin: true,
        rsv1: false,
        opcode: OpCode::Text,
        len: 5,
    };
    assert_eq!(
        reader.next(&mut input, &mut pos),
        Ok(Some(Item::Frame {
            head: text,
            start: 6,
            end: 11
        }))
    );
    assert_eq!(&input[6..11], b"hello");
    assert!(reader.at_boundary());
    let empty = Head {
        opcode: OpCode::Binary,
        len: 0,
        ..text
    };
    assert_eq!(
        reader.next(&mut input, &mut pos),
        Ok(Some(Item::Frame {
            head: empty,
            start: 17,
            end: 17
        }))
    );
    assert_eq!(reader.next(&mut input, &mut pos), Ok(None));
}

#[test]
fn a_frame_cut_by_the_read_is_a_head_then_pieces_each_unmasked() {
    let input = frame(0x82, b"abcdefg");
    let mut reader = FrameReader::new(1 << 20);
    // The header and three payload bytes, then the rest.
    let (mut first, mut second) = (input[..9].to_vec(), input[9..].to_vec());
    let mut pos = 0;
    assert!(matches!(
        reader.next(&mut first, &mut pos),
        Ok(Some(Item::Head(Head { len: 7, .. })))
    ));
    assert_eq!(
        reader.next(&mut first, &mut pos),
        Ok(Some(Item::Payload {
            start: 6,
            end: 9,
            last: false
        }))
    );
    assert_eq!(&first[6..9], b"abc");
    assert_eq!(reader.next(&mut first, &mut pos), Ok(None));
    let mut pos = 0;
    assert_eq!(
        reader.next(&mut second, &mut pos),
        Ok(Some(Item::Payload {
            start: 0,
            end: 4,
            last: true
        }))
    );
    assert_eq!(second, b"defg", "the mask carried on where it stopped");
    assert!(reader.at_boundary());
}

#[test]
fn an_empty_frame_after_a_split_header_still_ends_with_a_last_piece() {
    let input = frame(0x82, b"");
    let mut reader = FrameReader::new(10);
    let (mut first, mut second) = (input[..3].to_vec(), input[3..].to_vec());
    let mut pos = 0;
    assert_eq!(reader.next(&mut first, &mut pos), Ok(None));
    let mut pos = 0;
    assert!(matches!(
        reader.next(&mut second, &mut pos),
        Ok(Some(Item::Head(_)))
    ));
    assert_eq!(
        reader.next(&mut second, &mut pos),
        Ok(Some(Item::Payload {
            start: 3,
            end: 3,
            last: true
        }))
    );
}

#[test]
fn every_length_encoding_parses_whatever_the_split() {
    for len in [0, 1, 125, 126, 127, 65535, 65536, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let input = frame(0x82, &payload);
        let whole = parse(&input);
        assert_eq!(whole.frames.len(), 1, "len {len}");
        assert_eq!(whole.frames[0].1, payload, "len {len}");
        for cut in [1, 2, 3, 5, 9, 13, 14, 15, input.len() / 2] {
            assert_eq!(parse_split(&input, &[cut], 1 << 20, false), whole);
        }
    }
}

#[test]
fn header_rules_fail_with_their_close_codes() {
    let cases: [(Vec<u8>, FrameError); 6] = [
        (frame(0xc1, b"x"), FrameError::ReservedBits),
        (frame(0xa1, b"x"), FrameError::ReservedBits),
        (frame(0x83, b"x"), FrameError::ReservedOpcode),
        (frame(0x09, b"x"), FrameError::FragmentedControl),
        (frame(0x89, &[0; 126]), FrameError::ControlTooLong),
        (vec![0x82, 0x05, 1, 2, 3, 4, 5], FrameError::Unmasked),
    ];
    for (input, want) in cases {
        assert_eq!(parse(&input).error, Some(want), "{input:02x?}");
        // The first two bytes alone are enough to fail.
        assert_eq!(
            parse_split(&input[..2], &[1], 1 << 20, false).error,
            Some(want)
        );
        assert_eq!(want.close_code(), 1002);
    }
}

#[test]
fn too_big_fails_from_the_header_alone_with_1009() {
    let mut head = vec![0x82, 0xff];
    head.extend_from_slice(&(1u64 << 62).to_be_bytes());
    head.extend_from_slice(&MASK);
    let got = parse_split(&head, &[3, 7], 1 << 20, false);
    assert_eq!(got.error, Some(FrameError::TooBig));
    assert_eq!(FrameError::TooBig.close_code(), 1009);
    let over = frame(0x82, &[0; 11]);
    assert_eq!(
        parse_split(&over[..8], &[], 10, false).error,
        Some(FrameError::TooBig)
    );
}

/// §5.2: the top bit of a 64-bit length MUST be 0. Refused as a protocol
/// error, not as too big: a limit of 2^63 or more would otherwise let it in.
#[test]
fn a_length_with_the_top_bit_set_is_a_protocol_error_whatever_the_limit() {
    let mut head = vec![0x82, 0xff];
    head.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    head.extend_from_slice(&MASK);
    for cuts in [&[][..], &[3, 7], &[10]] {
        let got = parse_split(&head, cuts, u64::MAX, false);
        assert_eq!(got.error, Some(FrameError::LengthTopBit), "cuts {cuts:?}");
    }
    assert_eq!(FrameError::LengthTopBit.close_code(), 1002);
}

#[test]
fn rsv1_only_on_data_frames_and_only_when_allowed() {
    let data = frame(0xc1, b"x");
    assert_eq!(parse_split(&data, &[], 100, true).error, None);
    assert!(parse_split(&data, &[], 100, true).frames[0].0.rsv1);
    let ping = frame(0xc9, b"x");
    assert_eq!(
        parse_split(&ping, &[], 100, true).error,
        Some(FrameError::ReservedBits)
    );
}

/// xorshift64*: reproducible input without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A byte stream that is mostly frames (so parsing goes deep) with some
/// corruption (so every error path is reached).
fn arbitrary_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(6) + 1 {
        let b0 = match rng.below(10) {
            0 => rng.next() as u8,
            1 => 0x89,
            2 => 0x0a,
            _ => [0x81, 0x82, 0x01, 0x00, 0x80, 0x88][rng.below(6) as usize],
        };
        let len = match rng.below(8) {
            0 => rng.below(70_000),
            1 => 126 + rng.below(3),
            _ => rng.below(130),
        } as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        out.extend(frame(b0, &payload));
        if rng.below(8) == 0 {
            let at = rng.below(out.len() as u64) as usize;
            out[at] = rng.next() as u8;
        }
    }
    if rng.below(5) == 0 {
        let keep = rng.below(out.len() as u64) as usize;
        out.truncate(keep);
    }
    out
}

/// Runs for a bounded time (`WSECHO_FUZZ_SECS`, default 2 s): CI gets a
/// fresh seed each run, printed so a failure can be replayed.
#[test]
#[allow(clippy::print_stdout)] // the seed, to replay a failure
fn arbitrary_bytes_parse_the_same_whatever_the_split() {
    let secs: u64 = std::env::var("WSECHO_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed = std::env::var("WSECHO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("WSECHO_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut runs = 0u64;
    while std::time::Instant::now() < deadline || runs < 100 {
        let input = arbitrary_stream(&mut rng);
        let max_frame = [125, 1 << 16, 1 << 20][rng.below(3) as usize];
        let rsv1 = rng.below(2) == 0;
        let whole = parse_split(&input, &[], max_frame, rsv1);
        let cuts: Vec<usize> = (0..rng.below(12))
            .map(|_| rng.below(input.len() as u64 + 1) as usize)
            .collect();
        let split = parse_split(&input, &cuts, max_frame, rsv1);
        assert_eq!(split, whole, "seed {seed}, run {runs}, cuts {cuts:?}");
        // Byte by byte, on a short prefix: the slowest path through headers.
        let prefix = &input[..input.len().min(300)];
        let bytewise: Vec<usize> = (1..prefix.len()).collect();
        assert_eq!(
            parse_split(prefix, &bytewise, max_frame, rsv1),
            parse_split(prefix, &[], max_frame, rsv1),
            "seed {seed}, run {runs}, byte by byte"
        );
        runs += 1;
    }
    println!("{runs} inputs");
}

#[test]
fn unmask_agrees_with_the_portable_one_at_every_length_and_alignment() {
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let mask = [0x12, 0x34, 0x56, 0x78];
    for offset in 0..8 {
        for len in 0..data.len() - offset {
            let mut portable = data.clone();
            let mut wide = data.clone();
            fastwebsockets::unmask(&mut portable[offset..offset + len], mask);
            unmask(&mut wide[offset..offset + len], mask);
            assert_eq!(wide, portable, "offset {offset}, length {len}");
            // Unmasking is its own inverse: a second pass gives the input.
            unmask(&mut wide[offset..offset + len], mask);
            assert_eq!(wide, data, "offset {offset}, length {len}");
        }
    }
}
