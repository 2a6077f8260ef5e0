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
    assert_eq!(
        run.json()["config"]["pace_slack_us"],
        100,
        "the default slack"
    );
    // Both latencies, over the same echoes. The message a timer wakes the
    // thread for leaves after its intended time (the wake-up is a little
    // late, the write takes a little), and one sent early with it is timed
    // from when it left, so corrected latency is strictly higher on
    // average: equal to the 0.1 µs would mean both were timed from the
    // same moment.
    let lat = &run.json()["latency_us"];
    let unc = &run.json()["latency_uncorrected_us"];
    assert_eq!(lat["count"], unc["count"]);
    assert_eq!(lat["count"].as_u64(), Some(run.u64("/messages_received")));
    let (corrected, uncorrected) = (lat["mean"].as_f64().unwrap(), unc["mean"].as_f64().unwrap());
    assert!(corrected > uncorrected, "mean {corrected} <= {uncorrected}");
    assert!(lat["max"].as_u64() >= unc["max"].as_u64());
    assert!(run.stdout.contains("RTT (uncorrected)"), "{}", run.stdout);
}
