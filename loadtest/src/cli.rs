//! The command line: one clap-derived struct per command, and the parsers
//! for `10s`, `500ms`, `10k`, `16KiB` and `127.0.0.2-127.0.0.9` values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::profile::Stages;
use crate::target::Target;

#[cfg(test)]
mod tests;
mod values;

pub use values::{
    Segment, SourceIps, parse_count, parse_duration, parse_header, parse_per_second, parse_segment,
    parse_size, parse_source_ips, parse_stages, parse_start_at,
};

/// A WebSocket load generator that verifies every echo and measures latency
/// honestly (HDR histograms, coordinated-omission-corrected open loop).
///
/// Exit status: 0 clean run; 1 an echo failed verification, a connection
/// failed, or a threshold was broken (the reason is printed); 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "wsecho-load", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Combine result files (e.g. one per load machine) into one report.
    Merge(MergeArgs),
    /// Draw result files as one self-contained HTML page (charts and a
    /// summary table; several files are overlaid).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files written with --json (or by merge).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "report.html")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Result files written with --json.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub thresholds: Thresholds,
}

/// `--payload`: what fills a message after its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    #[default]
    Filler,
    TextJson,
}

/// `--verify`: how much of each echo is compared with what was sent,
/// ordered from most to least.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Every byte of every echo.
    #[default]
    Full,
    /// The header of every echo (sequence number, connection, send time,
    /// length, opcode) and every byte of one echo in 64.
    Sample,
    /// The header of every echo, no byte after it.
    Header,
}

impl Verify {
    /// `sample`: the sequence numbers whose every byte is checked.
    pub const SAMPLE_EVERY: u64 = 64;

    /// Whether message `seq`'s bytes after its header are checked.
    pub fn filler(self, seq: u64) -> bool {
        match self {
            Verify::Full => true,
            Verify::Sample => seq.is_multiple_of(Self::SAMPLE_EVERY),
            Verify::Header => false,
        }
    }

    /// What was checked, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Verify::Full => "every byte of every echo verified",
            Verify::Sample => "every echo's header and every byte of 1 in 64 verified",
            Verify::Header => "every echo's header verified, its other bytes not",
        }
    }
}

/// `--driver`: what drives closed-loop echo connections over plain `ws://`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// One epoll loop per worker thread reads and writes their sockets.
    #[default]
    Epoll,
    /// A tokio task per connection, as in every other mode.
    Tasks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Send, verify every echo, measure round trips.
    Echo,
    /// Connection churn: open, handshake, one echo, close, repeat.
    Connect,
    /// Open N connections and hold them for the duration.
    Idle,
    /// N peers in --rooms rooms on /chat/room-{i}; fan-out latency.
    Chat,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name clap takes on the command line is the one shown.
        let value = self.to_possible_value().expect("no variant is skipped");
        f.write_str(value.get_name())
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Endpoint: `ws://host:port/path` or `wss://...`
    #[arg(required = true, value_parser = Target::parse)]
    pub url: Option<Target>,

    /// Connections (chat: peers).
    #[arg(short = 'c', long, default_value = "10", value_parser = parse_count)]
    pub connections: u64,

    /// Length of the counted window.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Traffic before the counted window, excluded from the figures (it
    /// starts once every connection is up) [default: 1s; 0 with stages,
    /// whose ramp is the warm-up].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// Ramp the connections, k6-style: `30s:1000,2m:1000,30s:0` goes
    /// linearly from 0 to 1000 in 30 s, holds, then down to 0. The stages
    /// are the counted window (instead of -c and -d). Echo, closed loop.
    #[arg(long, value_parser = parse_stages, conflicts_with_all = ["connections", "duration", "rate", "rate_stages"])]
    pub stages: Option<Stages>,

    /// Ramp the open-loop rate (messages/s in total, over -c
    /// connections): `1m:10k,5m:50k`, linearly from 0. The stages are the
    /// counted window (instead of -d).
    #[arg(long, value_parser = parse_stages, conflicts_with_all = ["duration", "rate", "in_flight"])]
    pub rate_stages: Option<Stages>,

    /// Run share `i` of `N` of this load (`0/4`): connections `j` with
    /// `j % N == i`, so each process takes its share of connections, rate
    /// and stages. `merge` adds the N results up.
    #[arg(long, value_parser = parse_segment)]
    pub segment: Option<Segment>,

    /// Start the counted window at this wall-clock moment (RFC 3339
    /// `2026-11-28T10:00:00Z`, or unix seconds), so that several processes
    /// count the same window; the warm-up runs just before it.
    #[arg(long, value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// Payload bytes per message (k/M = 1000s, KiB/MiB = 1024s).
    #[arg(short = 's', long, default_value = "20", value_parser = parse_size)]
    pub size: usize,

    /// Send text messages (ASCII, so always valid UTF-8).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,

    /// Send binary messages (the default).
    #[arg(long)]
    pub binary: bool,

    /// What fills each message after its sequence header: `filler`
    /// (pseudo-random words, incompressible) or `text-json` (text
    /// messages of JSON-ish records, deterministic and verified like the
    /// filler, about 3:1 under deflate).
    #[arg(long, value_enum, default_value = "filler", conflicts_with = "binary")]
    pub payload: PayloadKind,

    /// How much of each echo to compare with what was sent: `full` (every
    /// byte), `sample` (every echo's header: sequence number, connection,
    /// send time, length and opcode; every byte of one echo in 64) or
    /// `header` (the header alone). Less verification leaves more of the
    /// generator's CPU for load at large payloads (binary filler that will
    /// not be checked is not generated either); the report says which was
    /// used.
    #[arg(long, value_enum, default_value = "full")]
    pub verify: Verify,

    /// What drives closed-loop echo connections over plain `ws://` once
    /// their traffic starts: `epoll` (one epoll loop per worker thread
    /// reads and writes every connection's socket, without a task, waker
    /// and run-queue trip per event) or `tasks` (a tokio task per connection, as in every other
    /// mode: open loop, stages, `wss://`, `--http2`, the other scenarios).
    /// Both measure the same way.
    #[arg(long, value_enum, default_value = "epoll")]
    pub driver: Driver,

    /// Offer permessage-deflate (RFC 7692) and, when the server agrees,
    /// compress what is sent and inflate the echoes. Without a value it
    /// offers `permessage-deflate; client_max_window_bits` (what Chrome
    /// offers); a value is sent as the offer, e.g.
    /// `--deflate 'permessage-deflate; server_no_context_takeover'`.
    #[arg(long, value_name = "OFFER", num_args = 0..=1,
          default_missing_value = crate::deflate::DEFAULT_OFFER,
          value_parser = crate::deflate::Offer::parse)]
    pub deflate: Option<crate::deflate::Offer>,

    /// Closed loop: messages outstanding per connection.
    #[arg(long, default_value = "1", value_parser = parse_count, conflicts_with = "rate")]
    pub in_flight: u64,

    /// Open loop: messages per second in total, spread over the
    /// connections; latency is measured from the intended send time.
    /// Chat: total messages per second sent by all peers [default: 10 per peer].
    #[arg(long, value_parser = parse_count)]
    pub rate: Option<u64>,

    /// Open loop and chat: a message may leave up to this much before its
    /// time, with the one whose timer woke the thread (a wake-up costs more
    /// CPU than an echo on a VM); its latency is then counted from when it
    /// left. 0: each message on its own timer, never early.
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub pace_slack: Duration,

    /// New connections per second (ramp-up; connect scenario: churn rate).
    #[arg(long, value_parser = parse_per_second)]
    pub connect_rate: Option<u64>,

    /// Worker threads, each with its own single-threaded runtime
    /// [default: the CPUs this process may run on].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Extra request header on the handshake, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Ask for this subprotocol; the server must select it.
    #[arg(long)]
    pub subprotocol: Option<String>,

    /// wss://: accept any certificate (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,

    /// Open WebSockets over HTTP/2 by extended CONNECT (RFC 8441): prior
    /// knowledge (h2c) on ws://, ALPN `h2` on wss://.
    #[arg(long)]
    pub http2: bool,

    /// --http2: WebSockets multiplexed on each TCP connection; -c stays the
    /// number of WebSockets [default: 1].
    #[arg(long, requires = "http2", value_parser = parse_count)]
    pub streams_per_connection: Option<u64>,

    /// Local addresses to dial from, `a,b,c` or `first-last`, used in turn:
    /// past ~28k connections to one address the ephemeral ports run out.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ip: Option<SourceIps>,

    /// A message not echoed within this long is lost; also bounds connect,
    /// handshake and the drain after the window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub out: OutputArgs,

    #[command(flatten)]
    pub thresholds: Thresholds,

    /// What to do with the connections.
    #[arg(long, value_enum, default_value = "echo")]
    pub scenario: Scenario,

    /// Chat: rooms the peers are spread over (peer i joins room i % R).
    #[arg(long, default_value = "1", value_parser = parse_count)]
    pub rooms: u64,

    /// PID of a server on this machine: its CPU over the window and its
    /// memory growth (idle: per connection) are reported. Warned about when
    /// it does not listen on the URL's port (a wrapper's pid).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// No live line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Write the whole result (with serialized histograms) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Append one CSV row (header first if the file is new).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Thresholds {
    /// Fail (exit 1) when the p99 round trip is above this.
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,

    /// Fail (exit 1) when fewer messages per second came back (connect:
    /// handshakes; chat: deliveries).
    #[arg(long, value_parser = parse_count)]
    pub min_rate: Option<u64>,

    /// With --stages or --rate-stages: hold --max-p99 against each stage
    /// and --min-rate against each stage's target (scaled to the stage),
    /// not only against the whole window.
    #[arg(long)]
    pub per_stage: bool,
}
