//! The payload's header and filler round-trip and catch corruption; the
//! wide and portable loops agree; the wire pattern is sent and checked whole.

use super::filler::{fill_any, filler_ok_any};
use super::pattern::WIRE_SEED;
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
