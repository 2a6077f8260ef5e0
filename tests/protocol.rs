//! RFC 6455 rules at the frame level, over raw TCP: close handshakes,
//! invalid UTF-8, limits, protocol errors.

mod common;

use common::{RawWs, encode, start};

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CONT: u8 = 0;
const CLOSE: u8 = 8;
const PING: u8 = 9;

/// After a close frame from the server: no second close frame, and the
/// server ends the TCP connection.
async fn assert_closed_once(ws: &mut RawWs) {
    if let Some(frame) = ws.recv().await {
        panic!("frame after the close: {frame:?}");
    }
}

#[tokio::test]
async fn close_handshake_echoes_the_code_then_ends_tcp() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']).await;
    assert_eq!(ws.expect_close().await, Some(1000));
    assert_closed_once(&mut ws).await;
}

#[tokio::test]
async fn application_close_codes_are_echoed() {
    let server = start(&[]).await;
    for code in [1001u16, 3000, 4999] {
        let mut ws = server.raw_ws("/").await;
        ws.send(true, CLOSE, &code.to_be_bytes()).await;
        assert_eq!(ws.expect_close().await, Some(code));
    }
}

#[tokio::test]
async fn empty_close_is_answered_with_an_empty_close() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, CLOSE, &[]).await;
    let frame = ws.recv().await.unwrap();
    assert_eq!((frame.opcode, frame.payload.len()), (CLOSE, 0));
    assert_closed_once(&mut ws).await;
}

#[tokio::test]
async fn close_with_invalid_code_closes_with_1002() {
    let server = start(&[]).await;
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 2999, 5000] {
        let mut ws = server.raw_ws("/").await;
        ws.send(true, CLOSE, &code.to_be_bytes()).await;
        assert_eq!(ws.expect_close().await, Some(1002), "close code {code}");
    }
}

#[tokio::test]
async fn one_byte_close_payload_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, CLOSE, &[0x03]).await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn close_payload_over_125_bytes_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.resize(126, b'x');
    ws.send(true, CLOSE, &payload).await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn close_reason_with_invalid_utf8_closes_with_1007() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, CLOSE, &[0x03, 0xe8, 0xff, 0xfe]).await;
    assert_eq!(ws.expect_close().await, Some(1007));
}

#[tokio::test]
async fn invalid_utf8_in_a_fragment_closes_with_1007_before_the_message_ends() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(false, TEXT, "κόσμε".as_bytes()).await;
    // The echo of the first fragment comes back at once.
    let first = ws.recv().await.unwrap();
    assert_eq!(
        (first.opcode, first.fin, &first.payload[..]),
        (TEXT, false, "κόσμε".as_bytes())
    );
    // A code point above U+10FFFF can never become valid: the server must not
    // wait for the final fragment to say so.
    ws.send(false, CONT, b"\xf4\x90\x80\x80").await;
    assert_eq!(ws.expect_close().await, Some(1007));
}

#[tokio::test]
async fn frame_over_the_limit_closes_with_1009() {
    let server = start(&["--max-message-size", "1KiB"]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, BINARY, &[0u8; 1024]).await;
    assert_eq!(ws.recv().await.unwrap().payload.len(), 1024);
    ws.send(true, BINARY, &[0u8; 1025]).await;
    assert_eq!(ws.expect_close().await, Some(1009));
}

#[tokio::test]
async fn continuation_without_a_message_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(true, CONT, b"orphan").await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn new_message_inside_a_fragmented_one_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(false, BINARY, b"first half").await;
    ws.recv().await.unwrap();
    ws.send(true, TEXT, b"interloper").await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn ping_between_fragments_is_answered_and_the_message_completes() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    ws.send(false, TEXT, b"Hello, ").await;
    ws.send(true, PING, b"mid").await;
    ws.send(true, CONT, b"world").await;
    let frames = [
        ws.recv().await.unwrap(),
        ws.recv().await.unwrap(),
        ws.recv().await.unwrap(),
    ];
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (TEXT, &b"Hello, "[..])
    );
    assert_eq!(
        (frames[1].opcode, &frames[1].payload[..]),
        (0xa, &b"mid"[..])
    );
    assert_eq!(
        (frames[2].opcode, frames[2].fin, &frames[2].payload[..]),
        (CONT, true, &b"world"[..])
    );
}

#[tokio::test]
async fn frames_sent_before_the_101_arrives_are_not_lost() {
    use tokio::io::AsyncWriteExt;
    let server = start(&[]).await;
    let mut tcp = server.raw().await;
    // Request head and first frame in one write: hyper reads both, and the
    // frame must be replayed to the session.
    let mut bytes = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", common::UPGRADE).into_bytes();
    bytes.extend(encode(true, TEXT, b"eager", true));
    tcp.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    let mut rest = Vec::new();
    let mut buf = [0u8; 1024];
    while !rest.ends_with(b"eager") {
        let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "closed before the echo");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            rest = head[end + 4..].to_vec();
        }
    }
    assert_eq!(rest, [0x81, 5, b'e', b'a', b'g', b'e', b'r']);
}
