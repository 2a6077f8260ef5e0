//! `wss://` and `https://` through rustls, with a throwaway certificate.

mod common;

use common::{PATIENCE, start, throwaway_cert, tls_connect};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn wss_echo_works_with_a_test_certificate() {
    let (cert, key, client) = throwaway_cert("wss");
    let server = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let tls = tls_connect(server.addr, client).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
        .await
        .unwrap();
    for size in [0usize, 20, 1000, 70_000, 1 << 20] {
        let data = common::pattern(size, 3);
        ws.send(Message::binary(data.clone())).await.unwrap();
        let got = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::binary(data), "size {size}");
    }
    ws.send(Message::Ping(b"tls ping".to_vec().into()))
        .await
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Pong(b"tls ping".to_vec().into()));
}

#[tokio::test]
async fn https_healthz_answers_over_tls() {
    let (cert, key, client) = throwaway_cert("https");
    let server = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let mut tls = tls_connect(server.addr, client).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut res = String::new();
    tokio::time::timeout(PATIENCE, tls.read_to_string(&mut res))
        .await
        .unwrap()
        .unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.ends_with("ok\n"), "{res}");
}

#[tokio::test]
async fn plain_http_to_a_tls_port_is_refused_and_counted() {
    let (cert, key, _) = throwaway_cert("plain");
    let server = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let mut tcp = server.raw().await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "served plain HTTP on a TLS port"
    );
    // /metrics is TLS-only here, so read the registry in-process.
    let counted = "wsecho_handshake_failures_total{reason=\"tls\"} 1";
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !server.server.metrics().render().contains(counted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TLS failure never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
