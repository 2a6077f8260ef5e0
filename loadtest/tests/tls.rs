//! wss:// through rustls, against a TLS echo server with a throwaway
//! certificate.

mod common;

use common::{load, tls_echo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_insecure_runs_clean() {
    let addr = tls_echo().await;
    let u = format!("wss://localhost:{}/", addr.port());
    let run = load(&[
        &u,
        "--insecure",
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-s",
        "1KiB",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.u64("/messages_received") > 0);
    assert_eq!(
        run.u64("/tls_us/count"),
        4,
        "TLS handshakes are timed apart"
    );
    assert!(run.json()["histograms"]["tls"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_refused_without_insecure() {
    let addr = tls_echo().await;
    let u = format!("wss://localhost:{}/", addr.port());
    let run = load(&[&u, "-c", "2", "-d", "500ms", "--warmup", "0s"]).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(run.error("connect"), 2, "{:?}", run.nonzero_errors());
    let detail = run.json()["error_details"]["connect"].as_str().unwrap();
    assert!(detail.contains("TLS"), "{detail}");
}
