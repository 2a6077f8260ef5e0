//! Load profiles (stages for connections and for the rate), the
//! per-second series, and one load split over two processes. Rates are the
//! feature here, so they are checked, with tolerances a loaded 2-core
//! machine holds (5 %).

mod common;

use common::{load, load_raw, scratch, url, wsecho};
use serde_json::Value;

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_stages_reach_each_target() {
    let addr = wsecho().await;
    let run = load(&[&url(addr), "--stages", "1s:20,2s:20,1s:40,2s:40,1s:0"]).await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let series = run.json()["series"].as_array().unwrap();
    assert_eq!(series.len(), 7, "one sample per second of a 7 s window");
    // Open during each second of the holds: the targets.
    for (t, want) in [(1, 20.0), (2, 20.0), (4, 40.0), (5, 40.0)] {
        let open = series[t]["open"].as_f64().unwrap();
        assert!(
            within(open, want, 0.05),
            "second {t}: {open} open, target {want}"
        );
        let target = series[t]["target"].as_f64().unwrap();
        assert_eq!(target, want, "second {t}");
    }
    let stages = run.json()["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    for (i, want) in [(1, 20.0), (3, 40.0)] {
        let mean = stages[i]["mean_open"].as_f64().unwrap();
        assert!(
            within(mean, want, 0.05),
            "stage {i}: mean {mean} open, target {want}"
        );
    }
    // Ramping down to 0 closes every connection cleanly.
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
    assert_eq!(run.u64("/close_codes/1000"), run.u64("/connections/opened"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_stages_reach_each_target() {
    let addr = wsecho().await;
    let run = load(&[
        &url(addr),
        "-c",
        "8",
        "--rate-stages",
        "1s:2k,2s:2k,1s:4k,2s:4k",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let stages = run.json()["stages"].as_array().unwrap();
    for (i, want) in [(1, 2000.0), (3, 4000.0)] {
        let rate = stages[i]["received_per_s"].as_f64().unwrap();
        assert!(
            within(rate, want, 0.05),
            "stage {i}: {rate}/s, target {want}"
        );
    }
    // The ramps send the area under the line: half the end rate on average.
    let ramp = stages[0]["received_per_s"].as_f64().unwrap();
    assert!(within(ramp, 1000.0, 0.05), "ramp to 2k: {ramp}/s");
    // Open loop: two latencies, and the live target is in the series.
    assert!(run.json()["latency_uncorrected_us"].is_object());
    assert_eq!(run.json()["series"][4]["target"].as_f64(), Some(4000.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_has_one_sample_per_second_of_the_window() {
    let addr = wsecho().await;
    let run = load(&[&url(addr), "-c", "4", "-d", "3s", "--warmup", "500ms"]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    let series = run.json()["series"].as_array().unwrap();
    let seconds: Vec<u64> = series.iter().map(|s| s["t_s"].as_u64().unwrap()).collect();
    assert_eq!(seconds, [0, 1, 2]);
    // The seconds add up to the window (up to a tick's timer lag at its
    // edges), and each has the generator's CPU.
    let sum: f64 = series
        .iter()
        .map(|s| s["received_per_s"].as_f64().unwrap() * s["seconds"].as_f64().unwrap())
        .sum();
    let total = run.u64("/messages_received") as f64;
    assert!(within(sum, total, 0.05), "series {sum} vs window {total}");
    assert!(
        series.iter().all(|s| s["cpu_pct"].is_number()),
        "{series:?}"
    );
    assert!(series.iter().all(|s| s["open"] == 4));
    let short = load(&[&url(addr), "-c", "1", "-d", "1500ms", "--warmup", "0s"]).await;
    let series = short.json()["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[1]["seconds"].as_f64(), Some(0.5));
}

/// `--start-at` a little ahead: after both processes have connected.
fn soon() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{:.3}", now.as_secs_f64() + 2.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_merged_match_one_process() {
    let addr = wsecho().await;
    let u = url(addr);
    let common = ["-c", "8", "--rate", "2000", "-d", "2s", "--warmup", "500ms"];
    let whole = load(&[&[u.as_str()][..], &common].concat()).await;
    assert_eq!(whole.status, 0, "{}", whole.stderr);
    let at = soon();
    let seg = |i: &'static str| {
        let mut args: Vec<&str> = vec![u.as_str()];
        args.extend(common);
        args.extend(["--segment", i, "--start-at", at.as_str()]);
        args
    };
    let (seg0, seg1) = (seg("0/2"), seg("1/2"));
    let (a, b) = tokio::join!(load(&seg0), load(&seg1));
    assert_eq!((a.status, b.status), (0, 0), "{}\n{}", a.stderr, b.stderr);
    // Both windows open at the --start-at moment, not when each was ready.
    let at_ms = (at.parse::<f64>().unwrap() * 1000.0).round() as u64;
    for run in [&a, &b] {
        let start = run.u64("/window_start_unix_ms");
        assert!(
            start.abs_diff(at_ms) <= 5,
            "window opened at {start}, asked {at_ms}"
        );
    }
    assert_eq!(
        a.u64("/config/connections") + b.u64("/config/connections"),
        8
    );
    let dir = scratch();
    let files: Vec<String> = [("a", &a), ("b", &b)]
        .iter()
        .map(|(name, run)| {
            let f = dir.join(format!("{name}.json"));
            std::fs::write(&f, serde_json::to_vec(run.json()).unwrap()).unwrap();
            f.to_str().unwrap().to_owned()
        })
        .collect();
    let out = dir.join("merged.json");
    let merged = load_raw(&[
        "merge",
        &files[0],
        &files[1],
        "--json",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(merged.status, 0, "{}", merged.stderr);
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    common::assert_valid(&doc);
    assert_eq!(
        doc["connections"]["opened"],
        whole.json()["connections"]["opened"]
    );
    let rate = |d: &Value| d["rates"]["messages_received_per_s"].as_f64().unwrap();
    assert!(
        within(rate(&doc), rate(whole.json()), 0.05),
        "merged {} vs one process {}",
        rate(&doc),
        rate(whole.json())
    );
    let overlap = doc["window_overlap"].as_f64().unwrap();
    assert!(overlap >= 0.95, "windows overlap {overlap}");
    let series = doc["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert!(series.iter().all(|s| s["open"] == 8), "{series:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_stage_thresholds_name_the_stage_that_broke_them() {
    let addr = wsecho().await;
    let u = url(addr);
    let stages = ["--stages", "500ms:2,1s:2"];
    // Whole-window thresholds that hold; per stage, an impossible rate.
    let run = load(&[&[u.as_str()][..], &stages, &["--min-rate", "1"]].concat()).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = load(
        &[
            &[u.as_str()][..],
            &stages,
            &["--min-rate", "1G", "--per-stage"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    for n in [1, 2] {
        assert!(
            run.stderr.contains(&format!("FAIL: stage {n}: ")),
            "stage {n}: {}",
            run.stderr
        );
    }
}
