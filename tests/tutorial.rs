//! The tutorial's dialogue on `/tutorial`, byte for byte.

mod common;

use common::{PATIENCE, start};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn next(ws: &mut common::Client) -> Message {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn tutorial_greets_then_answers_each_message() {
    let server = start(&[]).await;
    let mut ws = server.connect("/tutorial").await;
    assert_eq!(next(&mut ws).await, Message::text("Hello webSocket"));
    ws.send(Message::text("I am listening")).await.unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::text("I heard you say \"I am listening\"")
    );
    ws.send(Message::text("")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("I heard you say \"\""));
    ws.send(Message::text("ünïcödé ✓")).await.unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::text("I heard you say \"ünïcödé ✓\"")
    );
}

#[tokio::test]
async fn tutorial_answers_a_binary_message_as_text() {
    let server = start(&[]).await;
    let mut ws = server.connect("/tutorial").await;
    next(&mut ws).await;
    ws.send(Message::binary(b"bytes".to_vec())).await.unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::text("I heard you say \"bytes\"")
    );
}
