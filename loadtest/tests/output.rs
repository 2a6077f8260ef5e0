//! The JSON document matches the committed schema in every scenario, merge
//! combines runs, and CSV rows append under one header.

mod common;

use common::{assert_valid, load, load_raw, scratch, tls_echo, url, wsecho};
use wsecho_load::report::{Percentiles, decode_hist};
use wsecho_load::stats::ErrorKind;

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
    // The percentiles are those of the added distributions, recomputed
    // here from the two runs' own histograms (not averaged, not copied).
    let hist = |run: &serde_json::Value| {
        decode_hist(run["histograms"]["latency"].as_str().unwrap()).unwrap()
    };
    let mut both = hist(a.json());
    both.add(hist(b.json())).unwrap();
    let want = serde_json::to_value(Percentiles::of(&both)).unwrap();
    assert_eq!(doc["latency_us"], want);
    assert_eq!(
        doc["latency_us"]["max"].as_u64(),
        a.u64("/latency_us/max")
            .max(b.u64("/latency_us/max"))
            .into()
    );
    assert_eq!(
        decode_hist(doc["histograms"]["latency"].as_str().unwrap()).unwrap(),
        both
    );
    assert!(run.stdout.contains("2 runs merged"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_append_under_one_header() {
    let addr = wsecho().await;
    // A comma in the URL must be quoted, not split into a column.
    let u = format!("{}?a=1,2", url(addr));
    let csv = scratch().join("runs.csv");
    let path = csv.to_str().unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = load(&[
            &u, "-c", "1", "-d", "200ms", "--warmup", "0s", "--csv", path,
        ])
        .await;
        assert_eq!(run.status, 0, "{}", run.stderr);
        runs.push(run);
    }
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "started_unix_s");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "one header, two rows");
    for (row, run) in rows.iter().zip(&runs) {
        assert_eq!(row.len(), header.len());
        assert_eq!(&row[col("scenario")], "echo");
        assert!(row[col("url")].ends_with("?a=1,2"), "{row:?}");
        assert_eq!(
            row[col("messages_received")],
            run.u64("/messages_received").to_string()
        );
        assert_eq!(
            row[col("latency_p99_us")],
            run.u64("/latency_us/p99").to_string()
        );
        assert_eq!(row[col("errors")], *"0");
        assert_eq!(row[col("verify")], *"full");
        assert_eq!(row[col("error_kinds")], *"");
        let flag = run.json()["generator_bottleneck"].as_str().unwrap();
        assert_eq!(&row[col("generator_bottleneck")], flag);
    }
}

#[test]
fn the_schema_names_every_error_kind_and_no_other() {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema.json")).unwrap();
    let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
    let required: Vec<&str> = schema["$defs"]["errors"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, names);
    let details: Vec<&str> = schema["properties"]["error_details"]["propertyNames"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(details, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_draws_one_offline_page_with_every_chart() {
    let addr = wsecho().await;
    let dir = scratch();
    let mut files = Vec::new();
    for name in ["first", "second"] {
        let run = load(&[&url(addr), "-c", "2", "-d", "1s", "--warmup", "0s"]).await;
        assert_eq!(run.status, 0, "{}", run.stderr);
        let f = dir.join(format!("{name}.json"));
        std::fs::write(&f, serde_json::to_vec(run.json()).unwrap()).unwrap();
        files.push(f.to_str().unwrap().to_owned());
    }
    let page = dir.join("run.html");
    let run = load_raw(&["report", &files[0], &files[1], "-o", page.to_str().unwrap()]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    for id in [
        "throughput",
        "connections",
        "latency-over-time",
        "latency-distribution",
    ] {
        assert!(
            html.contains(&format!("<figure class=\"chart\" id=\"{id}\"><svg")),
            "{id}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 4);
    // Both runs are overlaid and named; nothing is loaded from elsewhere.
    assert!(html.contains("first: received/s") && html.contains("second: received/s"));
    assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("<script"));
}
