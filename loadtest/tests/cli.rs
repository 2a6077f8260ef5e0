//! Exit statuses: usage errors are 2; thresholds and unreachable servers
//! are 1, with the reason printed.

mod common;

use common::{load, load_raw, recording_echo, url, wsecho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    for args in [
        vec!["http://127.0.0.1:1/"],
        vec!["ws://127.0.0.1:1/", "--rate", "10", "--in-flight", "2"],
        vec!["ws://127.0.0.1:1/", "--scenario", "chat", "-s", "8"],
        vec!["ws://127.0.0.1:1/", "-d", "soon"],
        vec!["ws://127.0.0.1:1/", "--source-ip", "127.0.0.9-127.0.0.2"],
        vec!["ws://127.0.0.1:1/", "-c", "0"],
        vec![],
    ] {
        let run = load_raw(&args).await;
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_thresholds_exit_1_with_the_reason() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "-c",
        "2",
        "-d",
        "500ms",
        "--warmup",
        "0s",
        "--max-p99",
        "0us",
        "--min-rate",
        "1G",
    ])
    .await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("--max-p99"), "{}", run.stderr);
    assert!(run.stderr.contains("--min-rate"), "{}", run.stderr);
    let ok = load(&[
        &u,
        "-c",
        "2",
        "-d",
        "500ms",
        "--warmup",
        "0s",
        "--max-p99",
        "10s",
        "--min-rate",
        "1",
    ])
    .await;
    assert_eq!(ok.status, 0, "{}", ok.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_connect_error() {
    // Bind and drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let u = format!("ws://127.0.0.1:{port}/");
    let run = load(&[&u, "-c", "3", "-d", "500ms", "--warmup", "0s"]).await;
    assert_eq!(run.status, 1);
    assert_eq!(run.error("connect"), 3);
    assert!(run.stderr.contains("FAIL"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_addresses_are_used_in_turn() {
    // The server sees where each connection comes from: if --source-ip
    // were ignored, all four would come from 127.0.0.1.
    let (addr, peers) = recording_echo().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "-c",
        "4",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--source-ip",
        "127.0.0.2-127.0.0.3",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.u64("/connections/opened"), 4);
    let mut seen: Vec<String> = peers
        .lock()
        .unwrap()
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]);
}
