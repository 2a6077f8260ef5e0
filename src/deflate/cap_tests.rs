//! The cap on a message's inflated size: what a zip bomb can cost.

use super::codec_tests::{MIB, ON, pair, text};
use super::*;

#[test]
fn a_message_of_exactly_the_cap_passes_and_one_byte_more_fails() {
    let cap = 100_000;
    for (len, ok) in [(cap, true), (cap + 1, false)] {
        let (mut deflater, mut inflater) = pair(&ON, cap);
        let mut wire = Vec::new();
        deflater.compress(&text(len, 1), &mut wire).unwrap();
        let mut back = Vec::new();
        let result = inflater
            .feed(&wire, &mut back)
            .and_then(|()| inflater.finish(&mut back));
        assert_eq!(
            result,
            if ok {
                Ok(cap)
            } else {
                Err(InflateError::TooLarge(cap))
            }
        );
        assert!(back.len() <= cap + 1);
    }
}

/// 1 GiB of zeros against a 4 MiB cap: inflating stops one byte past the
/// cap, and the buffer never grew past it. The bomb is streamed, never held:
/// compressed with a sync flush after each MiB, every MiB after the first
/// compresses to the same bytes, so the stream is the first MiB's output
/// followed by the second's 1,023 times (about 1 MiB in all).
#[test]
fn a_zip_bomb_costs_at_most_the_cap() {
    let cap = 4 * MIB;
    // Level 9: zlib's best ratio on zeros, about 1030:1.
    let policy: DeflatePolicy = "level=9".parse().unwrap();
    let (mut deflater, mut inflater) = pair(&policy, cap);
    let zeros = vec![0u8; MIB];
    let mut chunks = [Vec::new(), Vec::new(), Vec::new()];
    for chunk in &mut chunks {
        deflater.feed(&zeros, chunk).unwrap();
        deflater.finish(chunk).unwrap();
        chunk.extend_from_slice(&inflater::TAIL);
    }
    // Under no context takeover every chunk starts afresh: take over here.
    let [first, steady, again] = chunks;
    assert_eq!(steady, again, "the steady state repeats");
    let total = first.len() + 1023 * steady.len();
    assert!(
        total < 2 * MIB,
        "1 GiB of zeros compressed to {total} bytes"
    );

    let mut back = Vec::new();
    let mut result = inflater.feed(&first, &mut back);
    let mut fed = first.len();
    while result.is_ok() && fed < total {
        result = inflater.feed(&steady, &mut back);
        fed += steady.len();
    }
    assert_eq!(result, Err(InflateError::TooLarge(cap)));
    assert!(
        fed < 8 * steady.len(),
        "stopped after {fed} compressed bytes"
    );
    assert_eq!(back.len(), cap + 1);
    assert!(
        back.capacity() <= cap + 1,
        "buffer grew to {}",
        back.capacity()
    );
    assert!(back.iter().all(|&b| b == 0));
}

/// A bomb of invalid text is refused at its first chunk, not at the cap.
#[test]
fn a_check_stops_inflating_at_the_first_bad_chunk() {
    let (mut deflater, mut inflater) = pair(&ON, 64 * MIB);
    let mut wire = Vec::new();
    deflater.compress(&vec![0xff; 16 * MIB], &mut wire).unwrap();
    let mut back = Vec::new();
    let mut seen = 0;
    let result = inflater.feed_with(&wire, &mut back, |chunk| {
        seen += chunk.len();
        std::str::from_utf8(chunk).is_ok()
    });
    assert_eq!(result, Err(InflateError::Rejected));
    assert!(
        seen <= 64 * 1024 && back.len() == seen,
        "inflated {seen} bytes"
    );
    inflater.abandon();
    // The next message starts clean.
    let mut wire = Vec::new();
    deflater.compress(b"fine", &mut wire).unwrap();
    let mut back = Vec::new();
    inflater.feed(&wire, &mut back).unwrap();
    assert_eq!(inflater.finish(&mut back), Ok(4));
}

/// A caller that drains the buffer between pieces still gets the cap on
/// the message, and no panic.
#[test]
fn the_cap_counts_the_message_even_when_the_buffer_is_drained() {
    let cap = 200_000;
    let (mut deflater, mut inflater) = pair(&ON, cap);
    let mut wire = Vec::new();
    deflater.compress(&text(cap + 1, 4), &mut wire).unwrap();
    let mut back = Vec::new();
    let mut result = Ok(());
    for piece in wire.chunks(1000) {
        result = inflater.feed(piece, &mut back);
        back.clear();
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| inflater.finish(&mut back).map(drop));
    assert_eq!(result, Err(InflateError::TooLarge(cap)));
    // Feeding on after the error is refused, not a panic.
    assert_eq!(
        inflater.feed(&wire, &mut back),
        Err(InflateError::TooLarge(cap))
    );
}
