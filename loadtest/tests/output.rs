//! The JSON document matches the committed schema in every scenario, merge
//! combines runs, and CSV rows append under one header.

mod common;

use common::{assert_valid, load, load_raw, scratch, tls_echo, url, wsecho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_validates_against_schema_json_in_every_scenario() {
    let addr = wsecho().await;
    let pid = std::process::id().to_string();
    let short = "-c 2 -d 300ms --warmup 0s";
    let runs = [
        format!("{} {short}", url(addr)),
        format!("{} {short} --rate 200 --text -s 64", url(addr)),
        format!("{} {short} --scenario connect", url(addr)),
        format!("{} {short} --scenario idle --server-pid {pid}", url(addr)),
        format!(
            "{} -c 4 -d 300ms --warmup 0s --scenario chat --rooms 2",
            url(addr)
        ),
    ];
    for line in &runs {
        let args: Vec<&str> = line.split_whitespace().collect();
        let run = load(&args).await;
        assert_eq!(run.status, 0, "{line}: {}", run.stderr);
        assert_valid(run.json());
    }
    let tls = tls_echo().await;
    let wss = format!("wss://localhost:{}/", tls.port());
    let run = load(&[
        &wss,
        "--insecure",
        "-c",
        "1",
        "-d",
        "300ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_valid(run.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_rejects_a_document_missing_a_required_field() {
    let addr = wsecho().await;
    let run = load(&[&url(addr), "-c", "1", "-d", "200ms", "--warmup", "0s"]).await;
    let mut doc = run.json().clone();
    doc.as_object_mut().unwrap().remove("latency_us");
    assert!(!common::schema().is_valid(&doc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_adds_runs_up_and_recomputes_percentiles() {
    let addr = wsecho().await;
    let u = url(addr);
    let a = load(&[&u, "-c", "2", "-d", "500ms", "--warmup", "0s"]).await;
    let b = load(&[&u, "-c", "3", "-d", "500ms", "--warmup", "0s"]).await;
    let dir = scratch();
    let (fa, fb, merged) = (
        dir.join("a.json"),
        dir.join("b.json"),
        dir.join("merged.json"),
    );
    std::fs::write(&fa, serde_json::to_vec(a.json()).unwrap()).unwrap();
    std::fs::write(&fb, serde_json::to_vec(b.json()).unwrap()).unwrap();
    let run = load_raw(&[
        "merge",
        fa.to_str().unwrap(),
        fb.to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_valid(&doc);
    assert_eq!(doc["runs"], 2);
    assert_eq!(doc["config"]["connections"], 5);
    let sum = a.u64("/messages_received") + b.u64("/messages_received");
    assert_eq!(doc["messages_received"].as_u64(), Some(sum));
    assert_eq!(doc["latency_us"]["count"].as_u64(), Some(sum));
    assert!(run.stdout.contains("2 runs merged"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_append_under_one_header() {
    let addr = wsecho().await;
    let u = url(addr);
    let csv = scratch().join("runs.csv");
    let path = csv.to_str().unwrap();
    for _ in 0..2 {
        let run = load(&[
            &u, "-c", "1", "-d", "200ms", "--warmup", "0s", "--csv", path,
        ])
        .await;
        assert_eq!(run.status, 0, "{}", run.stderr);
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("started_unix_s,scenario,url"));
    let columns = lines[0].split(',').count();
    assert!(
        lines[1..].iter().all(|l| l.split(',').count() == columns),
        "{text}"
    );
}
