//! Graceful shutdown of the real binary on SIGTERM (SPEC §1.4): healthz and
//! new upgrades turn 503, every open WebSocket gets a 1001 close, and the
//! process exits 0 within the drain timeout.

mod common;

use std::time::Duration;

use common::{PATIENCE, Spawned, UPGRADE, get};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn expect_going_away(ws: &mut common::Client) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return assert_eq!(frame.code, CloseCode::Away);
            }
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }
}

/// SIGTERM, the 1001, and our close reply; then the process's exit
/// status, which must come well before a 60 s drain timeout.
async fn terminate_cooperatively(
    server: &mut Spawned,
    ws: &mut common::Client,
) -> std::process::ExitStatus {
    server.signal("TERM");
    expect_going_away(ws).await;
    // Polling on makes tungstenite send its close reply; the session ends,
    // and the drain with it.
    let _ = tokio::time::timeout(PATIENCE, async { while ws.next().await.is_some() {} }).await;
    server
        .exit_status(Duration::from_secs(20))
        .await
        .expect("exited once the peer had closed")
}

#[tokio::test]
async fn sigterm_sends_1001_to_every_peer_and_exits_0_after_the_drain() {
    let mut server = Spawned::start(&[
        "--drain-timeout",
        "2s",
        "--close-timeout",
        "30s",
        "--log",
        "debug",
    ])
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.connect("/").await);
    }
    // A peer that never answers our close keeps the drain open to its end.
    let mut mute = server.raw_ws("/tutorial").await;
    mute.recv().await.unwrap();

    server.signal("TERM");
    for ws in &mut clients {
        expect_going_away(ws).await;
    }
    assert_eq!(mute.expect_close().await, Some(1001));
    // Draining: the listener still answers, so a load balancer sees it.
    assert_eq!(server.http(&get("/healthz", "")).await.0, 503);
    assert_eq!(server.http(&get("/", UPGRADE)).await.0, 503);

    let status = server
        .exit_status(Duration::from_secs(10))
        .await
        .expect("exited within the drain timeout");
    assert!(status.success(), "exit status {status}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("drain timeout"), "{log}");
}

#[tokio::test]
async fn sigterm_with_cooperative_peers_exits_0_without_waiting_out_the_drain() {
    let mut server = Spawned::start(&["--drain-timeout", "60s", "--log", "debug"]).await;
    let mut ws = server.connect("/echo").await;
    let status = terminate_cooperatively(&mut server, &mut ws).await;
    assert!(status.success(), "exit status {status}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("drained"), "{log}");
}

/// Threads of a running process, from /proc.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn one_worker_is_one_thread_that_serves_and_drains() {
    use futures_util::SinkExt;
    // With --threads 1 the main thread is the worker as well: a second,
    // control thread would cost every recv and send (see src/main.rs).
    let mut server = Spawned::start(&["--threads", "1", "--drain-timeout", "60s"]).await;
    let mut ws = server.connect("/echo").await;
    ws.send(Message::text("one thread")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("one thread"));
    assert_eq!(threads_of(server.child.id()), 1);

    let status = terminate_cooperatively(&mut server, &mut ws).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn n_workers_are_n_threads() {
    let server = Spawned::start(&["--threads", "3", "--log", "debug"]).await;
    let _ws = server.connect("/echo").await;
    assert_eq!(threads_of(server.child.id()), 3);
}
