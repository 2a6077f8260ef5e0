//! What a connection reads, against in-memory and real sockets: frames
//! parsed as they arrive, the read buffer lent and given back, and the
//! poll loop's timer.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream};

use super::*;
use crate::codec::{OP_BINARY, OP_CONTINUATION, OP_TEXT};

fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

pub(super) fn pair(leftover: Vec<u8>) -> (Conn, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let conn = Conn::new(
        Stream::Duplex(ours),
        leftover,
        4096,
        Rng::seeded(1),
        1 << 20,
    );
    (conn, theirs)
}

/// Every complete message in the buffer, as (opcode, payload).
fn drain(conn: &mut Conn) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(msg) = conn.next_message().unwrap() {
        match msg {
            Msg::Data { opcode, payload } => got.push((opcode, payload.to_vec())),
            Msg::Close(code) => panic!("close {code:?}"),
        }
    }
    got
}

#[tokio::test]
async fn one_read_brings_every_echo_and_the_buffer_goes_back_once_parsed() {
    let (mut conn, mut server) = pair(Vec::new());
    let mut both = server_frame(true, OP_BINARY, b"first");
    both.extend(server_frame(true, OP_TEXT, &[b'x'; 300]));
    server.write_all(&both).await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
    assert_eq!(Pool::Read.spare(), 0, "lent while messages are unparsed");
    let got = drain(&mut conn);
    assert_eq!(
        got,
        [(OP_BINARY, b"first".to_vec()), (OP_TEXT, vec![b'x'; 300])]
    );
    assert_eq!(Pool::Read.spare(), 1);
}

#[tokio::test]
async fn a_partial_frame_keeps_its_buffer_until_the_rest_arrives() {
    let (mut conn, mut server) = pair(Vec::new());
    let frame = server_frame(true, OP_BINARY, &(0..=255).collect::<Vec<u8>>());
    server.write_all(&frame[..3]).await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
    assert!(drain(&mut conn).is_empty());
    assert_eq!(
        Pool::Read.spare(),
        0,
        "the partial frame stays with its connection"
    );
    server.write_all(&frame[3..100]).await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
    assert!(drain(&mut conn).is_empty());
    server.write_all(&frame[100..]).await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
    assert_eq!(
        drain(&mut conn),
        [(OP_BINARY, (0..=255).collect::<Vec<u8>>())]
    );
    assert_eq!(Pool::Read.spare(), 1);
}

/// The server sends `frame`, and the connection reads it.
async fn arrive(conn: &mut Conn, server: &mut DuplexStream, frame: &[u8]) {
    server.write_all(frame).await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
}

#[tokio::test]
async fn a_message_put_together_is_held_only_until_it_has_been_handed_out() {
    let (mut conn, mut server) = pair(Vec::new());
    let big = vec![b'y'; 3000];
    arrive(
        &mut conn,
        &mut server,
        &server_frame(false, OP_BINARY, &big),
    )
    .await;
    assert!(drain(&mut conn).is_empty());
    assert!(conn.frag.capacity() >= 3000, "held while in the making");
    assert_eq!(Pool::Message.spare(), 0);
    arrive(
        &mut conn,
        &mut server,
        &server_frame(true, OP_CONTINUATION, b"!"),
    )
    .await;
    // `drain` looks once more after the message: its buffer goes back then.
    assert_eq!(drain(&mut conn), [(OP_BINARY, [&big[..], b"!"].concat())]);
    assert_eq!(conn.frag.capacity(), 0);
    assert_eq!(Pool::Message.spare(), 1);
    // The next fragmented message borrows it again.
    arrive(&mut conn, &mut server, &server_frame(false, OP_TEXT, b"a")).await;
    assert!(drain(&mut conn).is_empty());
    assert_eq!(Pool::Message.spare(), 0);
    assert!(conn.frag.capacity() >= 3001);
}

#[tokio::test]
async fn an_inflated_message_is_held_only_until_it_has_been_handed_out() {
    use flate2::{Compress, Compression, FlushCompress};
    let (mut conn, mut server) = pair(Vec::new());
    let offer = crate::deflate::Offer::parse(crate::deflate::DEFAULT_OFFER).unwrap();
    let params = crate::deflate::accept(&offer, Some("permessage-deflate"))
        .unwrap()
        .unwrap();
    conn.set_deflate(crate::deflate::Session::new(params));
    let msg: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 13) as u8).collect();
    let mut wire = Vec::with_capacity(msg.len());
    Compress::new(Compression::fast(), false)
        .compress_vec(&msg, &mut wire, FlushCompress::Sync)
        .unwrap();
    wire.truncate(wire.len() - 4); // the tail, as RFC 7692 sends it
    // RSV1: compressed.
    arrive(
        &mut conn,
        &mut server,
        &server_frame(true, OP_BINARY | 0x40, &wire),
    )
    .await;
    match conn.next_message().unwrap() {
        Some(Msg::Data { opcode, payload }) => {
            assert_eq!((opcode, payload), (OP_BINARY, &msg[..]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(Pool::Message.spare(), 0, "lent while handed out");
    assert!(conn.next_message().unwrap().is_none());
    assert_eq!(Pool::Message.spare(), 1);
    assert_eq!(conn.deflate.as_ref().unwrap().inflated.capacity(), 0);
}

#[tokio::test]
async fn fragments_read_apart_come_out_as_one_message() {
    let (mut conn, mut server) = pair(Vec::new());
    for (fin, op, part) in [
        (false, OP_TEXT, &b"he"[..]),
        (true, OP_CONTINUATION, b"llo"),
    ] {
        server
            .write_all(&server_frame(fin, op, part))
            .await
            .unwrap();
        assert!(matches!(conn.event().await, Event::Data));
        let got = drain(&mut conn);
        // The first fragment was copied out, so the buffer went back.
        assert_eq!(Pool::Read.spare(), 1);
        if fin {
            assert_eq!(got, [(OP_TEXT, b"hello".to_vec())]);
        } else {
            assert!(got.is_empty());
        }
    }
}

#[tokio::test]
async fn bytes_read_with_the_handshake_are_parsed_before_any_read() {
    let mut leftover = server_frame(true, OP_BINARY, b"early");
    leftover.extend_from_slice(&server_frame(true, OP_BINARY, b"late")[..2]);
    let (mut conn, mut server) = pair(leftover);
    assert_eq!(drain(&mut conn), [(OP_BINARY, b"early".to_vec())]);
    server.write_all(b"late").await.unwrap();
    assert!(matches!(conn.event().await, Event::Data));
    assert_eq!(drain(&mut conn), [(OP_BINARY, b"late".to_vec())]);
}

/// A connection whose reads and writes the caller does, as the epoll
/// loop does, over a non-blocking socket pair.
pub(super) fn direct_pair() -> (
    Conn,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let (conn, _unused) = pair(Vec::new());
    (conn, ours, theirs)
}

#[tokio::test]
async fn a_direct_read_says_when_the_socket_is_drained_and_the_buffer_goes_back() {
    use std::io::Write;
    let (mut conn, mut ours, mut server) = direct_pair();
    let room = 4096;
    // Exactly the buffer's room: the read cannot tell it took all.
    let big = server_frame(true, OP_BINARY, &vec![7u8; room - 4]);
    assert_eq!(big.len(), room);
    server.write_all(&big).unwrap();
    server
        .write_all(&server_frame(true, OP_TEXT, b"tail"))
        .unwrap();
    assert!(matches!(
        conn.read_from(&mut ours),
        Read::Data { drained: false }
    ));
    assert_eq!(drain(&mut conn), [(OP_BINARY, vec![7u8; room - 4])]);
    assert!(matches!(
        conn.read_from(&mut ours),
        Read::Data { drained: true }
    ));
    assert_eq!(drain(&mut conn), [(OP_TEXT, b"tail".to_vec())]);
    assert!(matches!(conn.read_from(&mut ours), Read::Nothing));
    assert_eq!(
        Pool::Read.spare(),
        1,
        "nothing unparsed: the buffer went back"
    );
    drop(server);
    assert!(matches!(conn.read_from(&mut ours), Read::Eof));
}

#[tokio::test]
async fn the_timer_is_made_on_the_first_arming_only() {
    let (mut conn, _server) = pair(Vec::new());
    assert!(
        conn.timer.is_none(),
        "a connection the sweep times has none"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    conn.arm(deadline);
    let first = conn.timer.as_deref().map(std::ptr::from_ref);
    conn.arm(deadline + Duration::from_secs(1));
    let second = conn.timer.as_deref().map(std::ptr::from_ref);
    assert!(first.is_some() && first == second, "re-armed in place");
}
