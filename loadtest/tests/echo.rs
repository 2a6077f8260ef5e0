//! Closed-loop echo runs against the real wsecho: a clean run is clean, in
//! every payload shape.

mod common;

use common::{load, url, wsecho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_run_against_wsecho_exits_0_with_counts_and_no_errors() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "-c",
        "8",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--in-flight",
        "2",
    ])
    .await;
    assert_eq!(
        run.status, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    // How many is bench.sh's question; here every one counted is timed.
    let received = run.u64("/messages_received");
    assert!(received > 0, "{}", run.stdout);
    assert!(run.u64("/messages_sent") > 0);
    assert_eq!(run.u64("/latency_us/count"), received);
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
    assert_eq!(
        run.u64("/close_codes/1000"),
        8,
        "every connection closed cleanly"
    );
    assert_eq!(run.u64("/connections/opened"), 8);
    assert!(run.u64("/latency_us/p50") > 0);
    assert!(run.u64("/connect_us/count") == 8 && run.u64("/handshake_us/count") == 8);
    assert!(run.stdout.contains("errors: none"), "{}", run.stdout);
    // The CPU was sampled inside the window, so the flag is a verdict.
    let flag = run.json()["generator_bottleneck"].as_str().unwrap();
    assert!(flag == "yes" || flag == "no", "{flag}");
    assert!(!run.json()["client_threads"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_text_payloads_are_still_verified() {
    let addr = wsecho().await;
    let u = url(addr);
    // 20 B text carries only the sequence number (as hex), 3 B binary only
    // its low bytes, 0 B nothing at all: each must still run clean.
    for (size, text, in_flight) in [
        ("20", true, "3"),
        ("41", true, "3"),
        ("3", false, "3"),
        ("0", false, "1"),
        ("12", false, "3"),
    ] {
        let mut args = vec![
            u.as_str(),
            "-c",
            "2",
            "-d",
            "500ms",
            "--warmup",
            "0s",
            "-s",
            size,
            "--in-flight",
            in_flight,
        ];
        if text {
            args.push("--text");
        }
        let run = load(&args).await;
        assert_eq!(
            run.status, 0,
            "size {size} text {text}: {}\n{}",
            run.stdout, run.stderr
        );
        assert!(run.u64("/messages_received") > 0, "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pipelined_messages_come_back_whole() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u,
        "-c",
        "2",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-s",
        "200KiB",
        "--in-flight",
        "4",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.u64("/messages_received") > 0);
    assert_eq!(
        run.u64("/bytes_received"),
        run.u64("/messages_received") * 200 * 1024
    );
}
