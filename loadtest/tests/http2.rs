//! `--http2`: WebSockets by extended CONNECT (RFC 8441) against the real
//! wsecho, in cleartext (h2c) and under TLS (ALPN `h2`), several on one
//! TCP connection; and refused cleanly by servers that do not speak it.

mod common;

use std::net::SocketAddr;

use common::{Fault, assert_valid, faulty_echo, load, scratch, tls_echo, url, wsecho};
use tokio::net::TcpListener;

/// The real wsecho serving `wss://` (and h2 by ALPN) with a throwaway
/// certificate for `localhost`.
async fn wsecho_tls() -> SocketAddr {
    use clap::Parser;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = scratch();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let config = wsecho::Config::parse_from(["wsecho", "--tls-cert", cert, "--tls-key", key]);
    let server = wsecho::Server::new(config).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    addr
}

fn assert_clean(run: &common::Run) {
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.nonzero_errors().is_empty(),
        "{:?}",
        run.nonzero_errors()
    );
    assert!(run.u64("/messages_received") > 0);
    assert_valid(run.json());
    assert_eq!(run.json()["config"]["protocol"], "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_websockets_share_one_h2c_connection() {
    let u = url(wsecho().await);
    let run = load(&[
        &u,
        "--http2",
        "--streams-per-connection",
        "8",
        "-c",
        "8",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "--in-flight",
        "4",
    ])
    .await;
    assert_clean(&run);
    assert_eq!(run.u64("/connections/opened"), 8);
    assert_eq!(run.u64("/connect_us/count"), 1, "one TCP connection");
    assert_eq!(run.u64("/handshake_us/count"), 8, "one CONNECT per stream");
    assert_eq!(run.u64("/config/streams_per_connection"), 8);
    assert_eq!(
        run.u64("/config/threads"),
        1,
        "no more workers than connections"
    );
    assert!(
        run.stdout.contains("over h2 (8 per TCP connection)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_over_64_kib_is_echoed_in_fragments_and_verified() {
    let u = url(wsecho().await);
    let run = load(&[
        &u,
        "--http2",
        "--streams-per-connection",
        "2",
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "--text",
        "-s",
        "200KiB",
        "--in-flight",
        "2",
    ])
    .await;
    assert_clean(&run);
    assert_eq!(
        run.u64("/connect_us/count"),
        2,
        "4 streams, 2 per connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_over_tls_with_alpn_h2() {
    let addr = wsecho_tls().await;
    let u = format!("wss://localhost:{}/echo", addr.port());
    let run = load(&[
        &u,
        "--insecure",
        "--http2",
        "--streams-per-connection",
        "3",
        "-c",
        "6",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "--binary",
        "-s",
        "100KiB",
    ])
    .await;
    assert_clean(&run);
    assert_eq!(run.u64("/tls_us/count"), 2, "two TLS connections");
    assert_eq!(run.u64("/connections/opened"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_alpn_h2_is_a_connect_error() {
    let addr = tls_echo().await;
    let u = format!("wss://localhost:{}/", addr.port());
    let args = [&u, "--insecure", "--http2", "-c", "2", "-d", "500ms"];
    let run = load(&[&args[..], &["--warmup", "0s"]].concat()).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(run.error("connect"), 2, "{:?}", run.nonzero_errors());
    let detail = run.json()["error_details"]["connect"].as_str().unwrap();
    assert!(detail.contains("ALPN"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_only_server_is_a_connect_error() {
    let u = url(faulty_echo(Fault::None).await);
    let run = load(&[&u, "--http2", "-c", "2", "-d", "500ms", "--warmup", "0s"]).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(run.error("connect"), 2, "{:?}", run.nonzero_errors());
    let detail = run.json()["error_details"]["connect"].as_str().unwrap();
    assert!(detail.contains("HTTP/2"), "{detail}");
}

#[tokio::test]
async fn streams_per_connection_needs_http2() {
    let run = common::load_raw(&["ws://127.0.0.1:9/", "--streams-per-connection", "2"]).await;
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--http2"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_servers_limit_are_refused_at_once() {
    // wsecho allows 256 streams per HTTP/2 connection.
    let u = url(wsecho().await);
    let run = load(&[
        &u,
        "--http2",
        "--streams-per-connection",
        "300",
        "-c",
        "300",
        "-d",
        "500ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(run.error("handshake"), 44, "{:?}", run.nonzero_errors());
    assert_eq!(run.u64("/connections/opened"), 256);
    let detail = run.json()["error_details"]["handshake"].as_str().unwrap();
    assert!(
        detail.contains("SETTINGS_MAX_CONCURRENT_STREAMS"),
        "{detail}"
    );
}
