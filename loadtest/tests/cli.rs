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
        vec!["ws://127.0.0.1:1/", "--server-pid", "4294967295"],
        vec![],
    ] {
        let run = load_raw(&args).await;
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
    }
}

/// A `--server-pid` that does not listen on the URL's port (here a child
/// process, as `cargo run` or `timeout` would be) is warned about; the
/// server's own pid is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_pid_that_does_not_listen_on_the_port_is_warned_about() {
    let addr = wsecho().await;
    let u = url(addr);
    let mut wrapper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let short = ["-c", "1", "-d", "200ms", "--warmup", "0s", "--server-pid"];
    let wrong = wrapper.id().to_string();
    let run = load(&[&[u.as_str()][..], &short, &[wrong.as_str()]].concat()).await;
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let warning = format!(
        "--server-pid {wrong} does not listen on port {}",
        addr.port()
    );
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    // The server runs in this test's process.
    let ours = std::process::id().to_string();
    let run = load(&[&[u.as_str()][..], &short, &[ours.as_str()]].concat()).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
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

/// Threads of a running process, from /proc (0 once it has gone).
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_thread_is_the_main_thread_alone() {
    // The main loop runs beside worker 0's connections on the main thread:
    // a second thread would cost every send and recv (see engine.rs).
    let addr = wsecho().await;
    let u = url(addr);
    for (threads, names) in [
        ("1", vec!["wsecho-load-0"]),
        ("2", vec!["wsecho-load-0", "wsecho-load-1"]),
    ] {
        let dir = common::scratch();
        let json = dir.join("result.json");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsecho-load"))
            .args([
                &u,
                "-c",
                "4",
                "-d",
                "1s",
                "--warmup",
                "0s",
                "--threads",
                threads,
                "-q",
            ])
            .arg("--json")
            .arg(&json)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut most = 0;
        let status = tokio::time::timeout(common::PATIENCE, async {
            loop {
                most = most.max(threads_of(pid));
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the run ends");
        assert!(status.success(), "--threads {threads}: {status}");
        assert_eq!(most.to_string(), threads, "threads seen in /proc");
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let seen: Vec<&str> = doc["client_threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(seen, names, "--threads {threads}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
