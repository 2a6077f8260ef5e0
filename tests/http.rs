//! The plain HTTP answers (SPEC §1.1): health, wrong methods, plain GETs on
//! WebSocket paths, malformed upgrades.

mod common;

use common::{UPGRADE, get, start};

#[tokio::test]
async fn healthz_answers_200_ok() {
    let server = start(&[]).await;
    let (status, res) = server.http(&get("/healthz", "")).await;
    assert_eq!(status, 200);
    assert!(res.ends_with("\r\n\r\nok\n"), "{res}");
}

#[tokio::test]
async fn plain_get_on_a_websocket_path_gets_426_with_upgrade_header() {
    let server = start(&[]).await;
    for path in ["/echo", "/tutorial", "/anything"] {
        let (status, res) = server.http(&get(path, "")).await;
        assert_eq!(status, 426, "{path}");
        assert!(
            res.to_ascii_lowercase()
                .contains("\r\nupgrade: websocket\r\n"),
            "{res}"
        );
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let server = start(&[]).await;
    for method in ["POST", "PUT", "DELETE"] {
        let req = format!(
            "{method} /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (status, res) = server.http(&req).await;
        assert_eq!(status, 405, "{method}");
        assert!(res.to_ascii_lowercase().contains("\r\nallow: get"), "{res}");
    }
}

#[tokio::test]
async fn upgrade_with_a_post_gets_405() {
    let server = start(&[]).await;
    let req = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{UPGRADE}\r\n");
    assert_eq!(server.http(&req).await.0, 405);
}

#[tokio::test]
async fn upgrade_with_a_bad_key_gets_400_with_a_reason() {
    let server = start(&[]).await;
    let bad = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    let (status, res) = server.http(&get("/", &bad)).await;
    assert_eq!(status, 400);
    assert!(res.contains("Sec-WebSocket-Key"), "{res}");
}

#[tokio::test]
async fn upgrade_without_a_key_gets_400() {
    let server = start(&[]).await;
    let headers: String = UPGRADE
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Sec-WebSocket-Key"))
        .collect();
    assert_eq!(server.http(&get("/", &headers)).await.0, 400);
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_gets_400() {
    let server = start(&[]).await;
    let headers = UPGRADE.replace("Connection: Upgrade\r\n", "");
    let (status, res) = server.http(&get("/", &headers)).await;
    assert_eq!(status, 400);
    assert!(res.contains("Connection: Upgrade"), "{res}");
}

#[tokio::test]
async fn upgrade_with_version_8_gets_426_naming_version_13() {
    let server = start(&[]).await;
    let headers = UPGRADE.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let (status, res) = server.http(&get("/", &headers)).await;
    assert_eq!(status, 426);
    assert!(
        res.to_ascii_lowercase()
            .contains("\r\nsec-websocket-version: 13\r\n"),
        "{res}"
    );
}

#[tokio::test]
async fn upgrade_without_a_version_gets_400() {
    let server = start(&[]).await;
    let headers = UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", "");
    assert_eq!(server.http(&get("/", &headers)).await.0, 400);
}

#[tokio::test]
async fn handshake_failures_are_counted_in_metrics() {
    let server = start(&[]).await;
    let bad = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    server.http(&get("/", &bad)).await;
    let text = server.server.metrics().render();
    assert!(
        text.contains("wsecho_handshake_failures_total{reason=\"key\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn port_variable_without_listen_means_all_interfaces() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsecho"));
    cmd.args(["--threads", "1"])
        .env("PORT", port.to_string())
        .env_remove("WSECHO_LISTEN");
    let mut server = common::Spawned::launch(cmd).await;
    assert_eq!(server.addr.to_string(), format!("0.0.0.0:{port}"));
    // Reached here through loopback, one of all the interfaces.
    server.endpoint.addr = ([127, 0, 0, 1], port).into();
    assert_eq!(server.http(&get("/healthz", "")).await.0, 200);
}
