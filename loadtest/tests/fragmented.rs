//! Echoes that come back in fragments (wsecho cuts frames over 64 KiB into a
//! fragmented message; other servers fragment as they like): reassembled and
//! verified like any echo, and a corrupted fragment is caught.

mod common;

use common::{load, url, wsecho};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// An echo server (tokio-tungstenite) that sends every message back as three
/// fragments, flipping a bit in the middle one of every `corrupt`-th.
async fn fragmenting_echo(corrupt: Option<u64>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                let mut n = 0u64;
                while let Some(Ok(msg)) = rx.next().await {
                    let data = match msg {
                        Message::Close(frame) => {
                            let _ = tx.send(Message::Close(frame)).await;
                            return;
                        }
                        Message::Text(_) => OpCode::Data(Data::Text),
                        Message::Binary(_) => OpCode::Data(Data::Binary),
                        _ => continue,
                    };
                    n += 1;
                    let mut bytes = msg.into_data().to_vec();
                    let third = bytes.len() / 3;
                    if corrupt.is_some_and(|k| n.is_multiple_of(k)) {
                        bytes[third + third / 2] ^= 0x01;
                    }
                    let parts = [
                        (data, &bytes[..third], false),
                        (
                            OpCode::Data(Data::Continue),
                            &bytes[third..2 * third],
                            false,
                        ),
                        (OpCode::Data(Data::Continue), &bytes[2 * third..], true),
                    ];
                    for (opcode, part, fin) in parts {
                        let frame = Frame::message(part.to_vec(), opcode, fin);
                        if tx.send(Message::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn run_against(addr: std::net::SocketAddr, size: &str) -> common::Run {
    let u = url(addr);
    load(&[
        &u,
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-s",
        size,
        "--in-flight",
        "2",
        "--timeout",
        "2s",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_echoes_are_reassembled_and_verified() {
    let addr = fragmenting_echo(None).await;
    for size in ["64", "1000", "70000"] {
        let run = run_against(addr, size).await;
        assert_eq!(run.status, 0, "size {size}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.nonzero_errors(), Vec::<String>::new(), "size {size}");
        assert!(run.u64("/messages_received") > 0, "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_middle_fragment_is_counted_corrupted() {
    let addr = fragmenting_echo(Some(5)).await;
    let run = run_against(addr, "3000").await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("corrupted") > 0, "{:?}", run.nonzero_errors());
    for kind in ["lost", "duplicated", "reordered"] {
        assert_eq!(run.error(kind), 0, "{kind}: {:?}", run.nonzero_errors());
    }
}

/// wsecho echoes frames over 64 KiB cut-through, as fragmented messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsecho_cut_through_echoes_verify_clean() {
    let addr = wsecho().await;
    let run = run_against(addr, "300000").await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
    assert!(run.u64("/messages_received") > 0);
}
