//! `GET /metrics` is well-formed OpenMetrics text and counts what happened.

mod common;

use common::{get, start};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A strict line check of the OpenMetrics text format: every line is a
/// `# HELP`/`# TYPE`/`# UNIT` comment, a sample `name{labels} value`, or the
/// final `# EOF`; every sample belongs to a declared family.
fn check_exposition(text: &str) -> Result<usize, String> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = 0;
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        return Err("missing the final # EOF".into());
    }
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
            if ![
                "counter",
                "gauge",
                "histogram",
                "info",
                "unknown",
                "stateset",
                "summary",
            ]
            .contains(&kind)
            {
                return Err(format!("unknown type: {line}"));
            }
            families.push((name.to_owned(), kind.to_owned()));
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
            value
                .parse::<f64>()
                .map_err(|_| format!("bad value: {line}"))?;
            let name = series.split('{').next().unwrap();
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(format!("bad metric name: {line}"));
            }
            let labels = &series[name.len()..];
            let well_formed =
                labels.starts_with('{') && labels.ends_with('}') && labels.contains("=\"");
            if !labels.is_empty() && !well_formed {
                return Err(format!("bad labels: {line}"));
            }
            let known = families.iter().any(|(f, kind)| {
                name == f
                    || (kind == "counter"
                        && (name == format!("{f}_total") || name == format!("{f}_created")))
            });
            if !known {
                return Err(format!("sample of an undeclared family: {line}"));
            }
            samples += 1;
        }
    }
    Ok(samples)
}

#[tokio::test]
async fn metrics_are_valid_openmetrics_text_and_count_traffic() {
    let server = start(&[]).await;
    let mut ws = server.connect("/").await;
    for i in 0..100 {
        ws.send(Message::text(format!("message {i:03}")))
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    while ws.next().await.is_some() {}
    server
        .await_metric("wsecho_closes_total{code=\"1000\"}", 1.0)
        .await;

    let (status, res) = server.http(&get("/metrics", "")).await;
    assert_eq!(status, 200);
    assert!(
        res.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{res}"
    );
    let body = &res[res.find("\r\n\r\n").unwrap() + 4..];
    let samples = check_exposition(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert!(samples >= 10, "{body}");
    assert_eq!(server.metric("wsecho_messages_received_total").await, 100.0);
    assert_eq!(server.metric("wsecho_messages_sent_total").await, 100.0);
    assert_eq!(server.metric("wsecho_received_bytes_total").await, 1100.0);
    assert_eq!(server.metric("wsecho_connections_total").await, 1.0);
    assert_eq!(server.metric("wsecho_connections_open").await, 0.0);
    assert!(server.metric("wsecho_process_resident_memory_bytes").await > 0.0);
}

#[test]
fn the_checker_rejects_malformed_text() {
    assert!(check_exposition("# TYPE a counter\na_total 1\n# EOF").is_ok());
    assert!(check_exposition("# TYPE a counter\na_total 1\n").is_err());
    assert!(check_exposition("# TYPE a counter\nb_total 1\n# EOF").is_err());
    assert!(check_exposition("# TYPE a gauge\na one\n# EOF").is_err());
}
