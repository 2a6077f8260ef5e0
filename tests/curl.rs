//! The HTTP side of the echo endpoint through curl (Debian's, an independent
//! HTTP/1.1 and HTTP/2 client): `/.http` describes the request as JSON, `/.sse`
//! streams events (SPEC §1.6).

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::{PATIENCE, start};
use serde_json::Value;
use tokio::sync::mpsc;

/// Runs curl with `args`; returns the status line, the header block and the body.
async fn curl(args: &[&str]) -> (String, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl (apt-get install curl)")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn curl_http11_post_is_described_as_documented() {
    let server = start(&["--server-name", "curl-test"]).await;
    let url = format!("http://{}/.http/a/b?q=1&r", server.addr);
    let (status, headers, body) = curl(&[
        "--http1.1",
        "-X",
        "POST",
        "-H",
        "X-Rep: one",
        "-H",
        "X-Other: x",
        "-H",
        "X-Rep: two",
        "--data-binary",
        "hello",
        &url,
    ])
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains("x-server: curl-test"), "{headers}");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["server"], "curl-test");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/.http/a/b");
    assert_eq!(json["query"], "q=1&r");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["tls"], Value::Null);
    assert!(
        json["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{json}"
    );
    let headers: Vec<(String, String)> = serde_json::from_value(json["headers"].clone()).unwrap();
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names[0], "host", "{headers:?}");
    let reps: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "x-rep")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(reps, ["one", "two"]);
    assert_eq!(json["body"]["length"], 5);
    assert_eq!(json["body"]["text"], "hello");
    assert_eq!(
        json["body"]["sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}

#[tokio::test]
async fn curl_h2c_prior_knowledge_is_described_as_http2() {
    let server = start(&[]).await;
    let url = format!("http://{}/.http", server.addr);
    let (status, _, body) = curl(&[
        "--http2-prior-knowledge",
        "-X",
        "PUT",
        "--data-binary",
        "\u{1}\u{2}",
        &url,
    ])
    .await;
    assert!(status.starts_with("HTTP/2 200"), "{status}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["version"], "HTTP/2");
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["authority"], server.addr.to_string());
    assert_eq!(json["body"]["length"], 2);
    assert_eq!(
        server
            .metric("wsecho_http_requests_total{protocol=\"h2\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn bodies_past_the_limit_get_413() {
    let server = start(&["--http-echo-max-body", "1KiB"]).await;
    let url = format!("http://{}/.http", server.addr);
    let big = "x".repeat(1025);
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (status, _, _) = curl(&[version, "--data-binary", &big, &url]).await;
        assert!(status.contains(" 413"), "{version}: {status}");
    }
    let (status, _, _) = curl(&["--data-binary", &"x".repeat(1024), &url]).await;
    assert!(status.contains(" 200"), "{status}");
}

/// curl streaming `url`; its output lines arrive on the channel.
fn stream_lines(args: &[&str]) -> (std::process::Child, mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "-i"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl (apt-get install curl)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads lines up to the next complete event; returns its fields.
async fn next_event(lines: &mut mpsc::UnboundedReceiver<String>) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("event in time")?;
        if line.is_empty() && !fields.is_empty() {
            return Some(fields);
        }
        if !line.is_empty() {
            fields.push(line);
        }
    }
}

#[tokio::test]
async fn sse_streams_numbered_events_with_the_server_name() {
    let server = start(&["--server-name", "sse-test"]).await;
    let url = format!("http://{}/.sse", server.addr);
    let (mut child, mut lines) = stream_lines(&[&url]);
    let head = next_event(&mut lines)
        .await
        .unwrap()
        .join("\n")
        .to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    for seq in 1..=2 {
        let event = next_event(&mut lines).await.expect("an event");
        assert_eq!(event[0], "event: tick");
        assert_eq!(event[1], format!("id: {seq}"));
        let data: Value = serde_json::from_str(event[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["server"], "sse-test");
        assert_eq!(data["seq"], seq);
        assert!(data["time"].as_str().unwrap().ends_with('Z'), "{data}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn draining_ends_the_event_stream_cleanly_over_h2() {
    let server = start(&[]).await;
    let url = format!("http://{}/.sse", server.addr);
    let (mut child, mut lines) = stream_lines(&["--http2-prior-knowledge", &url]);
    let head = next_event(&mut lines).await.unwrap().join("\n");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    next_event(&mut lines).await.expect("a first event");
    server.server.begin_shutdown();
    // The stream ends (no more events), and curl sees a complete response.
    while next_event(&mut lines).await.is_some() {}
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "curl: {status}");
}
