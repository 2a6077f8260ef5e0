//! WebSockets over HTTP/2 (RFC 8441, SPEC §1.6), from an independent client
//! (the `h2` crate): extended CONNECT on every route, many WebSockets on one
//! connection, refusals with HTTP/2 statuses, stream resets, GOAWAY on
//! shutdown; in cleartext (h2c) and under TLS (ALPN).

mod common;

use common::h2ws::{self, H2Ws};
use common::{PATIENCE, Spawned, pattern, start, text_of, throwaway_cert, tls_connect};
use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use tokio_tungstenite::tungstenite::Message;

const TEXT: u8 = 1;
const BINARY: u8 = 2;

async fn assert_echo(ws: &mut H2Ws, opcode: u8, payload: &[u8]) {
    let (got_opcode, got) = ws.round_trip(opcode, payload).await;
    assert_eq!(got_opcode, opcode);
    assert!(got == payload, "echo of {} bytes differs", payload.len());
}

#[tokio::test]
async fn a_hundred_websockets_on_one_h2c_connection_echo_up_to_16_mib() {
    let server = start(&[]).await;
    let mut conn = server.h2c().await;
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..100u8 {
        let mut ws = conn.open("/echo").await;
        streams.spawn(async move {
            match i {
                0 => assert_echo(&mut ws, TEXT, text_of(16 << 20).as_bytes()).await,
                1 => assert_echo(&mut ws, BINARY, &pattern(16 << 20, 1)).await,
                _ => {
                    for size in [0, 1, 125, 126, 65_535, 65_536, 200_000] {
                        assert_echo(&mut ws, TEXT, text_of(size).as_bytes()).await;
                        assert_echo(&mut ws, BINARY, &pattern(size, i)).await;
                    }
                }
            }
            ws.close(1000).await;
            assert_eq!(ws.expect_close().await, Some(1000));
        });
    }
    while let Some(done) = tokio::time::timeout(PATIENCE * 6, streams.join_next())
        .await
        .expect("streams finish in time")
    {
        done.unwrap();
    }
    assert_eq!(
        server
            .metric("wsecho_websockets_total{protocol=\"h2\"}")
            .await,
        100.0
    );
}

#[tokio::test]
async fn tutorial_dialogue_and_metrics_over_h2() {
    let server = start(&[]).await;
    let mut conn = server.h2c().await;
    let mut ws = conn.open("/tutorial").await;
    assert_eq!(ws.recv_message().await, (TEXT, b"Hello webSocket".to_vec()));
    ws.send(true, TEXT, b"hi there").await;
    assert_eq!(
        ws.recv_message().await,
        (TEXT, b"I heard you say \"hi there\"".to_vec())
    );
    // The plain routes answer on the same connection.
    let (status, metrics) = conn.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("wsecho_websockets_open{protocol=\"h2\"} 1"),
        "{metrics}"
    );
    assert_eq!(conn.get("/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (status, page) = conn.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<html"), "{page}");
}

#[tokio::test]
async fn an_h2_peer_and_an_http11_peer_chat_in_one_room() {
    let server = start(&[]).await;
    let mut conn = server.h2c().await;
    let mut h2 = conn.open("/chat/mixed").await;
    let mut h1 = server.connect("/chat/mixed").await;
    // Both seats were taken before the answers, so nothing is lost here.
    h1.send(Message::text("from http/1.1")).await.unwrap();
    assert_eq!(h2.recv_message().await, (TEXT, b"from http/1.1".to_vec()));
    h2.send(true, BINARY, b"from h2").await;
    let got = tokio::time::timeout(PATIENCE, h1.next())
        .await
        .expect("relay in time");
    assert_eq!(got.unwrap().unwrap(), Message::binary(b"from h2".to_vec()));
}

#[tokio::test]
async fn h2_refusals_carry_http2_statuses() {
    let server = start(&[
        "--allowed-origins",
        "https://good.example",
        "--max-connections",
        "1",
    ])
    .await;
    let mut conn = server.h2c().await;

    let old = conn
        .try_open("/echo", &[("sec-websocket-version", "8")])
        .await
        .err()
        .expect("version 8 refused");
    // 426 needs `Upgrade`, which HTTP/2 forbids: 400 naming version 13.
    assert_eq!(old.status, StatusCode::BAD_REQUEST);
    assert_eq!(old.headers["sec-websocket-version"], "13");

    let foreign = conn
        .try_open("/echo", &[("origin", "https://evil.example")])
        .await
        .err()
        .expect("foreign origin refused");
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    let bad_room = conn
        .try_open("/chat/a%20b", &[])
        .await
        .err()
        .expect("bad room");
    assert_eq!(bad_room.status, StatusCode::BAD_REQUEST);

    let _first = conn.open("/echo").await;
    let full = conn
        .try_open("/echo", &[])
        .await
        .err()
        .expect("over the limit");
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);

    // A plain GET on a WebSocket path: no 426 without `Upgrade`.
    assert_eq!(conn.get("/echo").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        server
            .metric("wsecho_handshake_failures_total{reason=\"origin\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn draining_refuses_new_h2_websockets_with_503() {
    let server = start(&[]).await;
    server.server.begin_shutdown();
    let mut conn = server.h2c().await;
    let refused = conn.try_open("/echo", &[]).await.err().expect("refused");
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_stream_reset_mid_message_leaves_the_other_streams_alone() {
    let server = start(&[]).await;
    let mut conn = server.h2c().await;
    let mut victim = conn.open("/echo").await;
    let mut other = conn.open("/echo").await;
    assert_echo(&mut other, TEXT, b"before").await;

    // Half of a 1 MiB frame, then RST_STREAM.
    let frame = common::encode(true, BINARY, &pattern(1 << 20, 9), true);
    victim.write(frame[..300_000].to_vec().into()).await;
    victim.send.send_reset(h2::Reason::CANCEL);
    server
        .await_metric("wsecho_closes_total{code=\"1006\"}", 1.0)
        .await;

    assert_echo(&mut other, BINARY, &pattern(100_000, 4)).await;
    let mut later = conn.open("/echo").await;
    assert_echo(&mut later, TEXT, b"after").await;
}

#[tokio::test]
async fn h2_over_tls_is_chosen_by_alpn() {
    let (cert, key, client) = throwaway_cert("h2");
    let mut client = (*client).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let tls = tls_connect(server.addr, client.into()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let base = format!("https://localhost:{}", server.addr.port());
    let mut conn = h2ws::handshake(tls, &base).await;

    let mut ws = conn.open("/echo").await;
    assert_echo(&mut ws, BINARY, &pattern(1 << 20, 5)).await;
    let (status, json) = conn.get("/.http/tls?x=1").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["version"], "HTTP/2");
    assert_eq!(json["tls"]["alpn"], "h2");
    assert_eq!(json["tls"]["version"], "TLSv1.3");
    assert_eq!(json["query"], "x=1");
}

#[tokio::test]
async fn sigterm_sends_goaway_and_1001_on_every_stream() {
    let mut server = Spawned::start(&["--drain-timeout", "20s"]).await;
    let mut conn = server.h2c().await;
    let mut streams = vec![
        conn.open("/echo").await,
        conn.open("/chat/leaving").await,
        conn.open("/tutorial").await,
    ];
    assert_eq!(streams[2].recv_message().await.0, TEXT);
    assert_echo(&mut streams[0], TEXT, b"up").await;

    server.signal("TERM");
    for ws in &mut streams {
        assert_eq!(ws.expect_close().await, Some(1001));
        ws.close(1001).await;
    }
    // Once its streams are done, the server ends the connection it sent
    // GOAWAY on; the client refuses new streams on it.
    let ended = conn.ended.take().unwrap();
    tokio::time::timeout(PATIENCE, ended)
        .await
        .expect("connection closed in time")
        .expect("connection task")
        .expect("clean close after GOAWAY");
    let req = hyper::Request::get(format!("http://{}/healthz", server.addr))
        .body(())
        .unwrap();
    let err = conn.send.send_request(req, true).expect_err("GOAWAY seen");
    assert!(err.is_go_away() && err.is_remote(), "{err}");

    let status = server
        .exit_status(std::time::Duration::from_secs(20))
        .await
        .expect("exited after the drain");
    assert!(status.success(), "exit status {status}");
}
