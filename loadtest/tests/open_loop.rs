//! Open loop: the rate is held, and both latencies are reported.

mod common;

use common::{load, url, wsecho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_is_held_within_5_percent() {
    let addr = wsecho().await;
    let u = url(addr);
    let run = load(&[
        &u, "-c", "8", "--rate", "4000", "-d", "2s", "--warmup", "500ms",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let want = 4000.0 * run.json()["duration_s"].as_f64().unwrap();
    for field in ["/messages_sent", "/messages_received"] {
        let got = run.u64(field) as f64;
        assert!(
            (got - want).abs() <= want * 0.05,
            "{field}: {got} vs {want}"
        );
    }
    assert_eq!(run.json()["config"]["rate"], 4000);
    assert!(run.json()["config"]["in_flight"].is_null());
    // Both latencies: corrected (from the intended send time) is never
    // below uncorrected (from the actual one).
    let corrected = run.u64("/latency_us/p50");
    let uncorrected = run.u64("/latency_uncorrected_us/p50");
    assert!(corrected >= uncorrected, "{corrected} < {uncorrected}");
    assert!(run.stdout.contains("RTT (uncorrected)"), "{}", run.stdout);
}
