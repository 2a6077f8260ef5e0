//! `--csv FILE`: one row per run, appended, with the header written when the
//! file is new, so a benchmark matrix collects into one table.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::report::Report;
use crate::stats::ErrorKind;

pub fn header() -> String {
    let mut cols: Vec<&str> = vec![
        "started_unix_s",
        "scenario",
        "url",
        "connections",
        "size",
        "text",
        "in_flight",
        "rate",
        "threads",
        "duration_s",
        "messages_sent",
        "messages_received",
        "messages_sent_per_s",
        "messages_received_per_s",
        "bytes_sent_per_s",
        "bytes_received_per_s",
        "latency_p50_us",
        "latency_p90_us",
        "latency_p99_us",
        "latency_p999_us",
        "latency_max_us",
        "latency_uncorrected_p99_us",
        "connect_p50_us",
        "connect_p99_us",
        "handshake_p50_us",
        "handshake_p99_us",
        "errors",
    ];
    cols.extend(ErrorKind::ALL.iter().map(|k| k.name()));
    cols.extend([
        "client_cpu_pct",
        "client_thread_max_cpu_pct",
        "generator_bottleneck",
        "server_cpu_pct",
        "handshakes_per_s",
        "deliveries_per_s",
        "held",
        "server_rss_per_connection_bytes",
    ]);
    cols.join(",")
}

pub fn row(r: &Report) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let c = &r.config;
    let mut cells: Vec<String> = vec![
        r.started_unix_s.to_string(),
        r.scenario.clone(),
        quote(&r.url),
        c.connections.to_string(),
        c.size.to_string(),
        c.text.to_string(),
        opt(c.in_flight.map(|v| v.to_string())),
        opt(c.rate.map(|v| v.to_string())),
        c.threads.to_string(),
        format!("{:.3}", r.duration_s),
        r.messages_sent.to_string(),
        r.messages_received.to_string(),
        r.rates.messages_sent_per_s.to_string(),
        r.rates.messages_received_per_s.to_string(),
        r.rates.bytes_sent_per_s.to_string(),
        r.rates.bytes_received_per_s.to_string(),
        r.latency_us.p50.to_string(),
        r.latency_us.p90.to_string(),
        r.latency_us.p99.to_string(),
        r.latency_us.p999.to_string(),
        r.latency_us.max.to_string(),
        opt(r.latency_uncorrected_us.as_ref().map(|p| p.p99.to_string())),
        r.connect_us.p50.to_string(),
        r.connect_us.p99.to_string(),
        r.handshake_us.p50.to_string(),
        r.handshake_us.p99.to_string(),
        r.errors.total().to_string(),
    ];
    cells.extend(ErrorKind::ALL.iter().map(|k| r.errors.get(*k).to_string()));
    let max_thread = r
        .client_threads
        .iter()
        .map(|t| t.cpu_pct)
        .fold(0.0, f64::max);
    let server = r.server.as_ref();
    cells.extend([
        r.client_cpu_pct.to_string(),
        max_thread.to_string(),
        r.generator_bottleneck.to_string(),
        opt(server.and_then(|s| s.cpu_pct).map(|v| v.to_string())),
        opt(r.churn.as_ref().map(|c| c.handshakes_per_s.to_string())),
        opt(r.chat.as_ref().map(|c| c.deliveries_per_s.to_string())),
        opt(r.connections.held.map(|v| v.to_string())),
        opt(server
            .and_then(|s| s.rss_per_connection_bytes)
            .map(|v| v.to_string())),
    ]);
    cells.join(",")
}

/// RFC 4180 quoting where a value needs it.
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Appends the row; writes the header first into an empty file.
pub fn append(path: &Path, r: &Report) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(true);
    let mut text = String::new();
    if empty {
        text.push_str(&header());
        text.push('\n');
    }
    text.push_str(&row(r));
    text.push('\n');
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_column_count() {
        assert_eq!(quote("ws://a/"), "ws://a/");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\", ok"), "\"say \"\"hi\"\", ok\"");
        assert!(header().split(',').count() > 40);
    }
}
