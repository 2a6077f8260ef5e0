//! The connect, idle and chat scenarios.

mod common;

use common::{Fault, faulty_echo, load, url, wsecho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_churn_counts_handshakes_and_their_latency() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "--scenario",
        "connect",
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let handshakes = run.u64("/churn/handshakes");
    assert!(handshakes > 0, "{}", run.stdout);
    assert!(run.u64("/handshake_us/count") >= handshakes);
    assert!(run.u64("/connections/opened") >= handshakes);
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rate_paces_the_churn() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "--scenario",
        "connect",
        "-c",
        "2",
        "--connect-rate",
        "50",
        "-d",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    // Pacing caps the churn at 50 dials in the second (plus one per slot
    // on the boundary); how close a loaded machine gets to it is bench
    // material, not a test.
    let handshakes = run.u64("/churn/handshakes");
    assert!(
        (1..=52).contains(&handshakes),
        "{handshakes} handshakes at 50/s for 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_its_connections_and_reports_server_memory() {
    let addr = wsecho().await;
    let u = url(addr);
    // The server runs in this test's process, so its pid is ours.
    let pid = std::process::id().to_string();
    let run = load(&[
        &u,
        "--scenario",
        "idle",
        "-c",
        "50",
        "-d",
        "500ms",
        "--warmup",
        "0s",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.u64("/connections/held"), 50);
    let server = &run.json()["server"];
    assert!(
        server["rss_before_kib"].as_u64().is_some() && server["rss_after_kib"].as_u64().is_some()
    );
    assert!(server["rss_per_connection_bytes"].is_number());
    // Nanoseconds unless a thread left with its time: this process's other
    // tests come and go on threads of their own.
    assert!(server["cpu_pct"].is_number(), "{server}");
    assert!(
        ["ns", "ticks"].contains(&server["cpu_clock"].as_str().unwrap_or_default()),
        "{server}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_fans_out_to_every_other_peer() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "--scenario",
        "chat",
        "-c",
        "6",
        "--rooms",
        "2",
        "--rate",
        "300",
        "-d",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    // Rooms of 3: every message reaches the 2 others.
    let chat = &run.json()["chat"];
    let deliveries = chat["deliveries"].as_u64().unwrap();
    let expected = chat["expected_deliveries"].as_u64().unwrap();
    assert!(deliveries > 0, "{}", run.stdout);
    assert!(
        deliveries.abs_diff(expected) <= expected / 20,
        "{deliveries} vs {expected}"
    );
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_counts_a_peer_receiving_its_own_message() {
    // An echo server on /chat/... sends every message back to its sender.
    let addr = faulty_echo(Fault::None).await;
    let u = url(addr);
    let run = load(&[
        &u,
        "--scenario",
        "chat",
        "-c",
        "2",
        "--rate",
        "100",
        "-d",
        "500ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("self_delivery") > 0, "{:?}", run.nonzero_errors());
}
