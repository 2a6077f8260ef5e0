//! The result document: what `--json` writes (schema: `loadtest/schema.json`),
//! what the text summary and the CSV row show, and what `merge` combines.
//! Histograms travel inside it (HdrHistogram V2 encoding, base64), so merged
//! percentiles are computed from the merged distributions, never averaged.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::cli::{Scenario, Segment};
use crate::cpu::ThreadCpu;
use crate::profile::Stage;
use crate::stats::{ErrorKind, Errors, Hist};

/// Bumped when a field changes meaning or goes away (2: the bottleneck
/// flag became yes/no/unknown).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    /// Runs combined into this report (1 unless merged).
    pub runs: u32,
    pub url: String,
    pub scenario: Scenario,
    pub started_unix_s: u64,
    pub config: RunConfig,
    /// The counted window, in seconds.
    pub duration_s: f64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub rates: Rates,
    /// Round trip (chat: send to delivery); open loop: from the intended
    /// send time.
    pub latency_us: Percentiles,
    /// Open loop only: from the actual send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<Percentiles>,
    /// TCP connect.
    pub connect_us: Percentiles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_us: Option<Percentiles>,
    /// Upgrade request to `101` response.
    pub handshake_us: Percentiles,
    pub errors: Errors,
    /// The first message seen for each error kind.
    pub error_details: BTreeMap<ErrorKind, String>,
    /// Close codes the server sent (1005: close without code, 1006: no
    /// close frame at all), over the whole run.
    pub close_codes: BTreeMap<String, u64>,
    pub connections: Connections,
    /// Connect scenario: completed open-handshake-echo-close cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// Chat scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Chat>,
    /// Unsolicited first messages (greetings), not counted as echoes.
    pub greetings: u64,
    /// `--deflate`: the offer and what the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflate: Option<Deflate>,
    /// The generator's own CPU over the window, % of one core (the sum
    /// over its threads; merged reports: the busiest run's).
    pub client_cpu_pct: f64,
    pub client_threads: Vec<ThreadCpu>,
    /// Whether a worker thread was at or above 90 % of a core (the
    /// generator may have limited the run); unknown without a CPU sample.
    pub generator_bottleneck: Bottleneck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    pub histograms: Histograms,
    /// The counted window in wall-clock time (ms since the Unix epoch):
    /// runs merged from several machines show how well they overlapped.
    pub window_start_unix_ms: u64,
    pub window_end_unix_ms: u64,
    /// One sample per second of the counted window.
    pub series: Vec<Sample>,
    /// With --stages / --rate-stages: figures per stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageFigures>>,
    /// Merged runs: how much of the merged window every run covered (1.0:
    /// all started and ended together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_overlap: Option<f64>,
}

/// One second of the counted window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Second of the window, from 0.
    pub t_s: u32,
    /// Its length: 1, or less for the last one.
    pub seconds: f64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
    pub errors: Errors,
    /// Most connections open at once during the second.
    pub open: u64,
    /// The generator process, % of one core.
    pub cpu_pct: Option<f64>,
    /// What the stages asked for (connections or messages/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// This second's latency histogram (V2, base64), for merging.
    pub latency_hist: String,
}

/// One stage of --stages or --rate-stages, from the seconds of the series
/// that overlap it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageFigures {
    /// When it ran, in seconds of the window.
    pub start_s: f64,
    pub end_s: f64,
    /// Where it was heading (connections or messages/s, this process's
    /// share with --segment).
    pub target: u64,
    pub received_per_s: f64,
    pub mean_open: f64,
    pub latency_us: Percentiles,
}

/// Was the generator saturated? Never "no" for lack of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bottleneck {
    Yes,
    No,
    /// The CPU samples around the window are missing.
    Unknown,
}

impl Bottleneck {
    /// Several runs: yes if any was, unknown if any is unknown, else no.
    pub fn combine(self, other: Bottleneck) -> Bottleneck {
        use Bottleneck::*;
        match (self, other) {
            (Yes, _) | (_, Yes) => Yes,
            (Unknown, _) | (_, Unknown) => Unknown,
            (No, No) => No,
        }
    }
}

impl std::fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bottleneck::Yes => "yes",
            Bottleneck::No => "no",
            Bottleneck::Unknown => "unknown",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub connections: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub size: usize,
    pub text: bool,
    /// Closed loop: messages outstanding per connection (null: open loop).
    pub in_flight: Option<u64>,
    /// Open loop (and chat): messages per second in total.
    pub rate: Option<u64>,
    pub connect_rate: Option<u64>,
    pub threads: usize,
    pub rooms: Option<u64>,
    pub timeout_s: f64,
    /// --stages (connections of the whole load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Stage>>,
    /// --rate-stages (messages/s of the whole load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_stages: Option<Vec<Stage>>,
    /// --segment: this run's share of the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// What the WebSockets were opened over (files from before --http2:
    /// HTTP/1.1).
    #[serde(default)]
    pub protocol: Protocol,
    /// --http2: WebSockets per TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_per_connection: Option<u64>,
    /// --payload (files from before it: filler).
    #[serde(default)]
    pub payload: crate::cli::PayloadKind,
    /// --verify (files from before it: full).
    #[serde(default)]
    pub verify: crate::cli::Verify,
    /// --pace-slack, where sends are scheduled (open loop, chat); files from
    /// before it: none (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace_slack_us: Option<u64>,
}

/// `--deflate` (permessage-deflate): what was offered, what the server
/// answered, and payload bytes before and after compression (whole run,
/// warm-up and drain included: a ratio, not a rate).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deflate {
    pub offered: String,
    pub outcome: DeflateOutcome,
    /// Connections on which the server agreed / answered without it.
    pub negotiated: u64,
    pub declined: u64,
    /// The server's parameters (the first agreement seen).
    pub answer: Option<String>,
    pub plain_bytes_sent: u64,
    pub wire_bytes_sent: u64,
    pub plain_bytes_received: u64,
    pub wire_bytes_received: u64,
}

/// Whether the server agreed to `--deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeflateOutcome {
    /// On every connection opened.
    Negotiated,
    /// On none: the run was uncompressed.
    Declined,
    /// On some (several servers behind one address, or merged runs).
    Mixed,
    /// No connection opened.
    Unknown,
}

impl Deflate {
    pub fn of(offered: &str, c: &crate::deflate::Counts) -> Deflate {
        let mut d = Deflate {
            offered: offered.to_owned(),
            outcome: DeflateOutcome::Unknown,
            negotiated: c.negotiated,
            declined: c.declined,
            answer: c.answer.clone(),
            plain_bytes_sent: c.bytes.plain_sent,
            wire_bytes_sent: c.bytes.wire_sent,
            plain_bytes_received: c.bytes.plain_received,
            wire_bytes_received: c.bytes.wire_received,
        };
        d.judge();
        d
    }

    /// Adds another run's figures (merge).
    pub fn add(&mut self, o: &Deflate) {
        self.negotiated += o.negotiated;
        self.declined += o.declined;
        if self.answer.is_none() {
            self.answer.clone_from(&o.answer);
        }
        self.plain_bytes_sent += o.plain_bytes_sent;
        self.wire_bytes_sent += o.wire_bytes_sent;
        self.plain_bytes_received += o.plain_bytes_received;
        self.wire_bytes_received += o.wire_bytes_received;
        self.judge();
    }

    fn judge(&mut self) {
        self.outcome = match (self.negotiated, self.declined) {
            (0, 0) => DeflateOutcome::Unknown,
            (_, 0) => DeflateOutcome::Negotiated,
            (0, _) => DeflateOutcome::Declined,
            _ => DeflateOutcome::Mixed,
        };
    }
}

/// The HTTP version the WebSockets were opened with, by its ALPN name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// The RFC 6455 upgrade, one WebSocket per connection.
    #[default]
    #[serde(rename = "http/1.1")]
    Http1,
    /// `--http2`: extended CONNECT (RFC 8441).
    #[serde(rename = "h2")]
    H2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::H2 => "h2",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rates {
    pub messages_sent_per_s: f64,
    pub messages_received_per_s: f64,
    pub bytes_sent_per_s: f64,
    pub bytes_received_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    pub requested: u64,
    /// Handshakes completed (connect scenario: over the whole run).
    pub opened: u64,
    /// Failed to connect or to complete the handshake.
    pub failed: u64,
    /// Idle scenario: still up at the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Churn {
    pub handshakes: u64,
    pub handshakes_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Chat {
    pub rooms: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// What the messages sent in the window should have made.
    pub expected_deliveries: u64,
    /// Deliveries never made (sequence gaps plus what was missing at the end).
    pub drops: u64,
}

/// A server on this machine, watched through `/proc/PID`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Server {
    pub pid: u32,
    /// Over the window, % of one core.
    pub cpu_pct: Option<f64>,
    /// Before the first connection was dialled.
    pub rss_before_kib: Option<u64>,
    /// Just before the end of the window.
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connections up.
    pub rss_per_connection_bytes: Option<f64>,
}

/// HdrHistogram V2 encoding in base64; values in µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histograms {
    pub latency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected: Option<String>,
    pub connect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    pub handshake: String,
}

impl Percentiles {
    pub fn of(h: &Hist) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

pub fn encode_hist(h: &Hist) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory cannot fail");
    BASE64.encode(bytes)
}

pub fn decode_hist(s: &str) -> Result<Hist, String> {
    let bytes = BASE64.decode(s).map_err(|e| format!("histogram: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))
}

impl Report {
    /// The rate `--min-rate` is held against: echoes (connect: handshakes;
    /// chat: deliveries) per second. None for idle.
    pub fn primary_rate(&self) -> Option<(f64, &'static str)> {
        match self.scenario {
            Scenario::Idle => None,
            Scenario::Connect => Some((self.churn.as_ref()?.handshakes_per_s, "handshakes/s")),
            Scenario::Chat => Some((self.rates.messages_received_per_s, "deliveries/s")),
            Scenario::Echo => Some((self.rates.messages_received_per_s, "echoes/s")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn histograms_round_trip_through_base64() {
        let mut h = new_hist();
        for v in [10, 20, 30, 4000, 3_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_hist(&encode_hist(&h)).unwrap();
        assert_eq!(Percentiles::of(&back), Percentiles::of(&h));
        assert!(decode_hist("not base64!").is_err());
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        assert_eq!(Percentiles::of(&new_hist()), Percentiles::default());
    }
}
