//! `--csv FILE`: one row per run, appended, with the header written when the
//! file is new, so a benchmark matrix collects into one table. The columns
//! are the fields of [`Row`], written by the `csv` crate (header and
//! quoting included), so header and row cannot drift apart.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::cli::Scenario;
use crate::report::{Bottleneck, Report};

/// One run, flat. Error counts by kind are in the JSON; here their total
/// and a `kind=count` list, so a new kind never shifts a column.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub started_unix_s: u64,
    pub scenario: Scenario,
    pub url: &'a str,
    pub connections: u64,
    pub size: usize,
    pub text: bool,
    pub verify: crate::cli::Verify,
    pub in_flight: Option<u64>,
    pub rate: Option<u64>,
    pub threads: usize,
    pub duration_s: f64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub messages_sent_per_s: f64,
    pub messages_received_per_s: f64,
    pub bytes_sent_per_s: f64,
    pub bytes_received_per_s: f64,
    pub latency_p50_us: u64,
    pub latency_p90_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
    pub latency_uncorrected_p99_us: Option<u64>,
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    pub handshake_p50_us: u64,
    pub handshake_p99_us: u64,
    pub errors: u64,
    /// `lost=3 corrupted=1`, empty when clean.
    pub error_kinds: String,
    pub client_cpu_pct: f64,
    pub client_thread_max_cpu_pct: Option<f64>,
    pub generator_bottleneck: Bottleneck,
    pub server_cpu_pct: Option<f64>,
    pub handshakes_per_s: Option<f64>,
    pub deliveries_per_s: Option<f64>,
    pub held: Option<u64>,
    pub server_rss_per_connection_bytes: Option<f64>,
}

impl<'a> Row<'a> {
    pub fn of(r: &'a Report) -> Row<'a> {
        let c = &r.config;
        let server = r.server.as_ref();
        Row {
            started_unix_s: r.started_unix_s,
            scenario: r.scenario,
            url: &r.url,
            connections: c.connections,
            size: c.size,
            text: c.text,
            verify: c.verify,
            in_flight: c.in_flight,
            rate: c.rate,
            threads: c.threads,
            duration_s: (r.duration_s * 1000.0).round() / 1000.0,
            messages_sent: r.messages_sent,
            messages_received: r.messages_received,
            messages_sent_per_s: r.rates.messages_sent_per_s,
            messages_received_per_s: r.rates.messages_received_per_s,
            bytes_sent_per_s: r.rates.bytes_sent_per_s,
            bytes_received_per_s: r.rates.bytes_received_per_s,
            latency_p50_us: r.latency_us.p50,
            latency_p90_us: r.latency_us.p90,
            latency_p99_us: r.latency_us.p99,
            latency_p999_us: r.latency_us.p999,
            latency_max_us: r.latency_us.max,
            latency_uncorrected_p99_us: r.latency_uncorrected_us.as_ref().map(|p| p.p99),
            connect_p50_us: r.connect_us.p50,
            connect_p99_us: r.connect_us.p99,
            handshake_p50_us: r.handshake_us.p50,
            handshake_p99_us: r.handshake_us.p99,
            errors: r.errors.total(),
            error_kinds: r
                .errors
                .nonzero()
                .map(|(k, n)| format!("{}={n}", k.name()))
                .collect::<Vec<_>>()
                .join(" "),
            client_cpu_pct: r.client_cpu_pct,
            client_thread_max_cpu_pct: r.client_threads.iter().map(|t| t.cpu_pct).reduce(f64::max),
            generator_bottleneck: r.generator_bottleneck,
            server_cpu_pct: server.and_then(|s| s.cpu_pct),
            handshakes_per_s: r.churn.as_ref().map(|c| c.handshakes_per_s),
            deliveries_per_s: r.chat.as_ref().map(|c| c.deliveries_per_s),
            held: r.connections.held,
            server_rss_per_connection_bytes: server.and_then(|s| s.rss_per_connection_bytes),
        }
    }
}

/// Appends the row; writes the header first into an empty file.
pub fn append(path: &Path, r: &Report) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
    let mut w = csv::WriterBuilder::new()
        .has_headers(empty)
        .from_writer(file);
    w.serialize(Row::of(r))
        .and_then(|()| w.flush().map_err(Into::into))
        .with_context(|| format!("writing {}", path.display()))
}
