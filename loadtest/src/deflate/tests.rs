//! The client side of permessage-deflate: offers checked at start-up, the
//! server's answer checked against them, messages round-tripped with and
//! without context takeover, the thread's shared contexts left fresh after
//! every message or error, the inflation cap and the RSV1 bit.

use super::*;

fn offer(v: &str) -> Offer {
    Offer::parse(v).unwrap()
}

#[test]
fn offers_are_checked_at_start_up() {
    let o = offer(DEFAULT_OFFER);
    assert_eq!(o.params.client_max_window_bits, Some(None));
    assert!(Offer::parse("permessage-deflate; server_no_context_takeover").is_ok());
    assert!(Offer::parse("x-webkit-deflate-frame").is_err());
    assert!(Offer::parse("permessage-deflate; foo").is_err());
    assert!(Offer::parse("permessage-deflate; server_max_window_bits=16").is_err());
    assert!(Offer::parse("permessage-deflate; server_max_window_bits").is_err());
    assert!(
        Offer::parse("permessage-deflate; client_no_context_takeover; client_no_context_takeover")
            .is_err()
    );
}

#[test]
fn answers_within_the_offer_are_accepted() {
    let o = offer(DEFAULT_OFFER);
    assert_eq!(accept(&o, None), Ok(None));
    assert_eq!(accept(&o, Some("")), Ok(None));
    let got = accept(
        &o,
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"),
    )
    .unwrap()
    .unwrap();
    assert!(got.server_no_context_takeover && got.client_no_context_takeover);
    assert_eq!(got.client_max_window_bits, Some(Some(10)));
    assert_eq!(
        got.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
    );
}

#[test]
fn answers_outside_the_offer_fail_the_connection() {
    let plain = offer("permessage-deflate");
    // RFC 7692 §7.1.2.2: client_max_window_bits only if the client offered it.
    assert!(
        accept(
            &plain,
            Some("permessage-deflate; client_max_window_bits=10")
        )
        .is_err()
    );
    assert!(accept(&plain, Some("permessage-deflate; client_max_window_bits")).is_err());
    assert!(accept(&plain, Some("permessage-deflate; bogus")).is_err());
    assert!(accept(&plain, Some("x-other")).is_err());
    assert!(accept(&plain, Some("permessage-deflate, permessage-deflate")).is_err());
    let nct = offer("permessage-deflate; server_no_context_takeover");
    assert!(accept(&nct, Some("permessage-deflate")).is_err());
    let bits = offer("permessage-deflate; server_max_window_bits=10");
    assert!(accept(&bits, Some("permessage-deflate; server_max_window_bits=12")).is_err());
    assert!(accept(&bits, Some("permessage-deflate; server_max_window_bits=9")).is_ok());
}

/// A server's side of one message: raw deflate, sync flush, tail removed.
fn server_compress(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// What `z` sends for `msg`: compressed, the tail removed.
fn sent(z: &mut Session, msg: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    z.compress(
        msg.len(),
        |plain| plain.copy_from_slice(msg),
        |w| wire = w.to_vec(),
    )
    .unwrap();
    assert!(!wire.is_empty());
    wire
}

#[test]
fn messages_round_trip_with_and_without_context_takeover() {
    for answer in [
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9",
        "permessage-deflate; client_max_window_bits=8",
    ] {
        let params = accept(&offer(DEFAULT_OFFER), Some(answer))
            .unwrap()
            .unwrap();
        let mut ours = Session::new(params);
        let mut server_rx = Decompress::new(false);
        let mut server_tx = Compress::new(Compression::default(), false);
        for i in 0..4 {
            let msg: Vec<u8> = (0..3000u32).map(|j| b'a' + ((j * i) % 7) as u8).collect();
            let mut wire = sent(&mut ours, &msg);
            wire.extend_from_slice(&TAIL);
            let mut back = Vec::with_capacity(msg.len() + 16);
            if params.client_no_context_takeover {
                server_rx.reset(false);
            }
            server_rx
                .decompress_vec(&wire, &mut back, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(back, msg, "{answer}: message {i} sent");
            let echo = server_compress(&mut server_tx, &msg);
            assert_eq!(ours.inflate(&echo, 1 << 20).unwrap(), &msg[..], "{answer}");
            if params.server_no_context_takeover {
                server_tx.reset();
            }
        }
    }
}

fn params(answer: &str) -> Negotiated {
    accept(&offer(DEFAULT_OFFER), Some(answer))
        .unwrap()
        .unwrap()
}

const AFRESH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Alike enough that a compressor which kept its window would refer back to
/// the previous message, which a fresh inflater cannot follow.
fn similar(i: u32, who: u8) -> Vec<u8> {
    let mut m = b"{\"kind\":\"echo\",\"text\":\"the same words again\"}".repeat(20);
    m.extend_from_slice(format!("{i}{who}").as_bytes());
    m
}

#[test]
fn connections_without_context_takeover_share_the_thread_s_contexts() {
    let (mut a, mut b) = (Session::new(params(AFRESH)), Session::new(params(AFRESH)));
    let mut kept = Session::new(params("permessage-deflate"));
    let mut server_tx = Compress::new(Compression::default(), false);
    let mut kept_rx = Decompress::new(false);
    let mut kept_tx = Compress::new(Compression::default(), false);
    for i in 0..6 {
        for (who, z) in [(b'a', &mut a), (b'b', &mut b)] {
            let msg = similar(i, who);
            // A new inflater per message reads it: nothing of another
            // message, this connection's or the other's, was referred to.
            let mut wire = sent(z, &msg);
            wire.extend_from_slice(&TAIL);
            let mut back = Vec::with_capacity(msg.len() + 16);
            Decompress::new(false)
                .decompress_vec(&wire, &mut back, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(back, msg, "message {i} of {}", who as char);
            let echo = server_compress(&mut server_tx, &msg);
            server_tx.reset();
            assert_eq!(z.inflate(&echo, 1 << 20).unwrap(), &msg[..]);
        }
        // Interleaved with them, a connection with context takeover keeps
        // its window.
        let msg = similar(i, b'k');
        let mut wire = sent(&mut kept, &msg);
        wire.extend_from_slice(&TAIL);
        let mut back = Vec::with_capacity(msg.len() + 16);
        kept_rx
            .decompress_vec(&wire, &mut back, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(back, msg);
        let echo = server_compress(&mut kept_tx, &msg);
        assert_eq!(kept.inflate(&echo, 1 << 20).unwrap(), &msg[..]);
    }
    assert!(a.tx.is_none() && a.rx.is_none() && b.tx.is_none() && b.rx.is_none());
    assert!(kept.tx.is_some() && kept.rx.is_some());
    // One of each for the thread, however many messages went through.
    assert_eq!(SHARED.with_borrow(|s| (s.tx.len(), s.rx.len())), (1, 1));
}

#[test]
fn a_message_that_ends_its_stream_leaves_the_shared_inflater_fresh() {
    let (mut a, mut b) = (Session::new(params(AFRESH)), Session::new(params(AFRESH)));
    // A final block (BFINAL) ends the stream: an inflater not reset after
    // it inflates nothing more.
    let msg = similar(0, b'a');
    let mut z = Compress::new(Compression::default(), false);
    let mut last = Vec::with_capacity(msg.len() + 64);
    z.compress_vec(&msg, &mut last, FlushCompress::Finish)
        .unwrap();
    assert_eq!(a.inflate(&last, 1 << 20).unwrap(), &msg[..]);
    let msg = similar(1, b'b');
    let echo = server_compress(&mut Compress::new(Compression::default(), false), &msg);
    assert_eq!(b.inflate(&echo, 1 << 20).unwrap(), &msg[..]);
}

#[test]
fn a_bad_message_leaves_the_shared_context_fresh_for_the_next() {
    let (mut a, mut b) = (Session::new(params(AFRESH)), Session::new(params(AFRESH)));
    let mut z = Compress::new(Compression::best(), false);
    let bomb = server_compress(&mut z, &vec![0u8; 4 << 20]);
    let mut b_gets = |i| {
        let msg = similar(i, b'b');
        let echo = server_compress(&mut Compress::new(Compression::default(), false), &msg);
        assert_eq!(
            b.inflate(&echo, 1 << 20).unwrap(),
            &msg[..],
            "after error {i}"
        );
    };
    assert_eq!(
        a.inflate(&bomb, 1 << 20),
        Err(InflateError::TooLarge(1 << 20))
    );
    b_gets(0);
    assert_eq!(
        a.inflate(b"\xff\xff\xff", 1 << 20),
        Err(InflateError::Corrupt)
    );
    b_gets(1);
}

#[test]
fn inflation_stops_at_the_cap() {
    let params = accept(&offer(DEFAULT_OFFER), Some("permessage-deflate"))
        .unwrap()
        .unwrap();
    let mut ours = Session::new(params);
    let mut z = Compress::new(Compression::best(), false);
    let bomb = server_compress(&mut z, &vec![0u8; 4 << 20]);
    assert!(bomb.len() < 8 << 10);
    assert_eq!(
        ours.inflate(&bomb, 1 << 20),
        Err(InflateError::TooLarge(1 << 20))
    );
    assert!(ours.inflated.capacity() <= (1 << 20) + (64 << 10));
    assert_eq!(
        ours.inflate(b"\xff\xff\xff", 1 << 20),
        Err(InflateError::Corrupt)
    );
}

#[test]
fn rsv1_is_read_only_on_a_message_s_first_frame() {
    // Compressed text "abc" frame: RSV1 + FIN + text.
    let mut frame = vec![0xC1, 3, 1, 2, 3];
    let (parsed, rsv1) = parse(&mut frame, 100).unwrap();
    assert!(rsv1 && matches!(parsed, Parsed::Frame(_)));
    let mut partial = vec![0xC1, 3, 1];
    assert!(matches!(
        parse(&mut partial, 100),
        Ok((Parsed::Need(5), true))
    ));
    assert_eq!(partial[0], 0xC1, "put back for the next try");
    assert_eq!(parse(&mut [0xC0, 0], 100), Err(ProtocolError::ReservedBits));
    assert_eq!(parse(&mut [0xC9, 0], 100), Err(ProtocolError::ReservedBits));
    assert_eq!(parse(&mut [0xA1, 0], 100), Err(ProtocolError::ReservedBits));
}

#[test]
fn the_compressed_bit_lands_on_the_frame_header() {
    for len in [0usize, 125, 126, 70_000] {
        let mut buf = vec![0u8; 3 + 14 + len];
        let h = codec::write_header(&mut buf[3..], 1, len, [1, 2, 3, 4]);
        mark_compressed(&mut buf, 3 + h + len, len);
        assert_eq!(buf[3], 0x80 | RSV1 | 1, "len {len}");
    }
}
