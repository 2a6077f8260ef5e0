//! The result document: what `--json` writes (schema: `loadtest/schema.json`),
//! what the text summary and the CSV row show, and what `merge` combines.
//! Histograms travel inside it (HdrHistogram V2 encoding, base64), so merged
//! percentiles are computed from the merged distributions, never averaged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cli::Scenario;
use crate::cpu::ThreadCpu;
use crate::stats::{ErrorKind, Errors};

mod config;
mod counts;
mod deflate;
mod histograms;
mod machines;
mod samples;

pub use config::{Protocol, RunConfig};
pub use counts::{Chat, Churn, Connections, Rates};
pub use deflate::{Deflate, DeflateOutcome};
pub use histograms::{Histograms, Percentiles, decode_hist, encode_hist};
pub use machines::{Bottleneck, Server};
pub use samples::{Sample, StageFigures};

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
