//! Echo: every data message comes back to its sender, byte for byte, same
//! opcode, through an independent client (tokio-tungstenite).

mod common;

use common::{PATIENCE, pattern, start, text_of};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 16 << 20];

async fn next_message<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("echo in time")
        .expect("stream open")
        .unwrap()
}

/// Sends while reading the echo, as a browser does: a frame larger than
/// the socket buffers comes back while it is still being sent (cut-through),
/// so a client that only reads after sending all of it would stall.
async fn round_trip(ws: &mut common::Client, message: Message) -> Message {
    let (mut tx, mut rx) = ws.split();
    let (sent, echo) = tokio::join!(tx.send(message), next_message(&mut rx));
    sent.unwrap();
    echo
}

#[tokio::test]
async fn text_comes_back_unchanged_at_every_boundary_size() {
    let server = start(&[]).await;
    let mut ws = server.connect("/").await;
    for size in SIZES {
        let text = text_of(size);
        match round_trip(&mut ws, Message::text(text.clone())).await {
            Message::Text(got) => assert!(got.as_str() == text, "text of {size} bytes changed"),
            other => panic!("size {size}: expected text, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn binary_comes_back_unchanged_at_every_boundary_size() {
    let server = start(&[]).await;
    let mut ws = server.connect("/echo").await;
    for size in SIZES {
        let data = pattern(size, size as u8);
        match round_trip(&mut ws, Message::binary(data.clone())).await {
            Message::Binary(got) => assert!(got[..] == data[..], "binary of {size} bytes changed"),
            other => panic!("size {size}: expected binary, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn any_unreserved_path_echoes() {
    let server = start(&[]).await;
    let mut ws = server.connect("/some/other/path?x=1").await;
    ws.send(Message::text("ping?")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("ping?"));
}

async fn send_fragmented(ws: &mut common::Client, opcode: Data, parts: &[&[u8]]) {
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(opcode)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), op, i + 1 == parts.len());
        ws.send(Message::Frame(frame)).await.unwrap();
    }
}

#[tokio::test]
async fn fragmented_text_comes_back_complete_and_in_order() {
    let server = start(&[]).await;
    let mut ws = server.connect("/").await;
    // The split falls inside the multi-byte characters.
    let text = "κόσμε, 𝄞 and € across fragment boundaries";
    let b = text.as_bytes();
    send_fragmented(
        &mut ws,
        Data::Text,
        &[&b[..1], &b[1..3], &b[3..20], &b[20..21], &b[21..]],
    )
    .await;
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text(text));
    assert_eq!(next_message(&mut ws).await, Message::text("after"));
}

#[tokio::test]
async fn fragmented_binary_comes_back_complete_and_in_order() {
    let server = start(&[]).await;
    let mut ws = server.connect("/").await;
    let data = pattern(300_000, 7);
    let parts: Vec<&[u8]> = data.chunks(70_001).collect();
    send_fragmented(&mut ws, Data::Binary, &parts).await;
    assert_eq!(next_message(&mut ws).await, Message::binary(data));
}

#[tokio::test]
async fn ping_gets_a_pong_with_the_same_payload() {
    let server = start(&[]).await;
    let mut ws = server.connect("/").await;
    ws.send(Message::Ping(b"are you there?".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::Pong(b"are you there?".to_vec().into())
    );
}

#[tokio::test]
async fn greeting_is_sent_first_only_when_configured() {
    let server = start(&["--greeting", "welcome"]).await;
    let mut ws = server.connect("/").await;
    assert_eq!(next_message(&mut ws).await, Message::text("welcome"));
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("x"));

    let plain = start(&[]).await;
    let mut ws = plain.connect("/").await;
    ws.send(Message::text("first")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("first"));
}

#[tokio::test]
async fn handshake_names_the_server_instance() {
    let server = start(&["--server-name", "edge-7"]).await;
    let (_, res) = tokio_tungstenite::connect_async(server.url("/"))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-server"], "edge-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_clients_each_get_their_own_echoes() {
    let server = start(&[]).await;
    let clients = (0..100u8).map(|id| {
        let url = server.url("/");
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for seq in 0..20u8 {
                let msg = pattern(64 + seq as usize * 13, id ^ seq);
                ws.send(Message::binary(msg.clone())).await.unwrap();
                let got = next_message(&mut ws).await;
                assert_eq!(got, Message::binary(msg), "client {id} message {seq}");
            }
            ws.close(None).await.unwrap();
        })
    });
    for client in futures_util::future::join_all(clients).await {
        client.unwrap();
    }
}
