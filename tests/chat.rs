//! Chat rooms on `/chat/{room}` (SPEC §1.3): fan-out to every other peer in
//! order, never to the sender or another room; slow consumers cut off with
//! 1008 while the room carries on; bounded memory.

mod common;

use common::{Client, PATIENCE, Spawned, UPGRADE, get, start};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn next_text(ws: &mut Client) -> String {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("message in time");
        match msg.expect("open").expect("no error") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_other_peer_in_order_and_no_one_else() {
    let server = start(&[]).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(server.connect("/chat/blue").await);
    }
    let mut outsider = server.connect("/chat/green").await;
    const N: usize = 50;
    for round in 0..N {
        for (id, ws) in peers.iter_mut().enumerate() {
            ws.send(Message::text(format!("{id}:{round}")))
                .await
                .unwrap();
        }
    }
    for (me, ws) in peers.iter_mut().enumerate() {
        let mut next_from = [0usize; 3];
        for _ in 0..(N * 2) {
            let text = next_text(ws).await;
            let (from, round) = text.split_once(':').unwrap();
            let (from, round): (usize, usize) = (from.parse().unwrap(), round.parse().unwrap());
            assert_ne!(from, me, "peer {me} got its own message back");
            assert_eq!(
                round, next_from[from],
                "peer {me}: message from {from} out of order"
            );
            next_from[from] += 1;
        }
    }
    // The outsider's room saw none of it: the first thing it receives is a
    // message sent in its own room afterwards.
    let mut neighbour = server.connect("/chat/green").await;
    neighbour.send(Message::text("hello green")).await.unwrap();
    assert_eq!(next_text(&mut outsider).await, "hello green");
    assert_eq!(server.metric("wsecho_rooms").await, 2.0);
    assert_eq!(server.metric("wsecho_room_peers").await, 5.0);
}

#[tokio::test]
async fn fragmented_and_binary_messages_are_relayed_whole() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = start(&[]).await;
    let mut a = server.connect("/chat/frag").await;
    let mut b = server.connect("/chat/frag").await;
    a.send(Message::Frame(Frame::message(
        b"Hello, ".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    a.send(Message::Frame(Frame::message(
        b"world".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    a.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(next_text(&mut b).await, "Hello, world");
    let got = tokio::time::timeout(PATIENCE, b.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::binary(vec![0u8, 1, 2, 255]));
}

#[tokio::test]
async fn bad_room_names_get_400_and_full_rooms_503() {
    let server = start(&["--max-room-peers", "1"]).await;
    for path in [
        "/chat/",
        "/chat/a%2Fb",
        "/chat/has%20space",
        &format!("/chat/{}", "x".repeat(65)),
    ] {
        assert_eq!(server.http(&get(path, UPGRADE)).await.0, 400, "{path}");
    }
    let _first = server.connect("/chat/tiny").await;
    assert_eq!(server.http(&get("/chat/tiny", UPGRADE)).await.0, 503);
    assert_eq!(
        server
            .metric("wsecho_limit_hits_total{limit=\"room_peers\"}")
            .await,
        1.0
    );
}

/// A peer that never reads is closed with 1008 once its queue is full; the
/// others keep receiving; the server's memory stays bounded. Run against
/// the binary in its own process, so RSS is the server's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_peer_is_closed_with_1008_and_the_room_carries_on() {
    let server = Spawned::start(&["--room-queue-bytes", "256KiB", "--close-timeout", "60s"]).await;
    let mut stalled = server.raw_ws("/chat/busy").await;
    let mut sender = server.connect("/chat/busy").await;
    let mut reader = server.connect("/chat/busy").await;
    let before = server.rss_bytes();

    let payload = "x".repeat(16 << 10);
    const MESSAGES: usize = 2000; // 32 MiB through the room
    // In step with the reading peer, so it is never the slow one.
    for i in 0..MESSAGES {
        sender
            .send(Message::text(format!("{i:06}{payload}")))
            .await
            .unwrap();
        let text = next_text(&mut reader).await;
        assert_eq!(
            &text[..6],
            format!("{i:06}"),
            "the reading peer lost or reordered a message"
        );
    }
    let grown = server.rss_bytes().saturating_sub(before);
    assert_eq!(
        server.metric("wsecho_slow_consumers_dropped_total").await,
        1.0
    );

    // The stalled peer now reads what reached it, then the 1008 close.
    assert_eq!(stalled.expect_close().await, Some(1008));
    assert!(
        grown < 24 << 20,
        "server RSS grew {grown} bytes while 32 MiB passed a stalled peer"
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "server RSS grew {} KiB while 32 MiB passed a stalled peer",
            grown >> 10
        );
    }
}

/// Two instances share a room through a real Redis, in order, and survive
/// a Redis restart. Needs `redis-server` (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run with --ignored"]
async fn rooms_cross_instances_through_redis_and_survive_a_restart() {
    let mut redis = common::Redis::start();
    let url = redis.url();
    let one = Spawned::start(&["--redis-url", &url]).await;
    let two = Spawned::start(&["--redis-url", &url]).await;
    one.await_metric("wsecho_redis_up", 1.0).await;
    two.await_metric("wsecho_redis_up", 1.0).await;

    let mut alice = one.connect("/chat/shared").await;
    let mut bob = two.connect("/chat/shared").await;
    // A subscription is made when a room's first local peer joins: wait
    // until bob's instance hears alice's.
    common::until_delivered(&mut alice, &mut bob, "sync-1").await;
    for i in 0..100 {
        alice.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(next_text(&mut bob).await, format!("m{i}"));
    }

    redis.restart();
    one.await_metric("wsecho_redis_up", 1.0).await;
    two.await_metric("wsecho_redis_up", 1.0).await;
    // Rooms resume: subscriptions were renewed on reconnect.
    common::until_delivered(&mut bob, &mut alice, "sync-2").await;
    bob.send(Message::text("after the restart")).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "after the restart");
}

/// A second instance started on the first one's port is let in (SO_REUSEPORT,
/// as an overlapping restart needs), so it would split its rooms: it starts
/// and says so.
#[tokio::test]
async fn a_second_instance_on_a_taken_port_warns_that_it_shares_it() {
    let first = Spawned::start(&[]).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsecho"));
    cmd.args(["--listen", &first.addr.to_string()]);
    let second = Spawned::launch(cmd).await;
    let log = || second.log.lock().unwrap().clone();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !log().iter().any(|l| l.contains("wsecho listening")) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", log());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(second.addr, first.addr);
    let warned = log()
        .iter()
        .any(|l| l.contains("another socket already listens here"));
    assert!(warned, "{:?}", log());
}
