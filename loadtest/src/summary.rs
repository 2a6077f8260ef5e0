//! From a run's merged figures to its [`Report`]: rates over the counted
//! window, percentiles, CPU shares and the bottleneck verdict.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::cpu::{
    self, BOTTLENECK_PCT, CpuClock, CpuSample, ProcessCpu, ThreadCpu, WORKER_THREAD_PREFIX,
};
use crate::plan::{Plan, Workload};
use crate::report::{
    self, Bottleneck, Chat, Churn, Connections, Histograms, Percentiles, Protocol, Rates, Report,
    RunConfig, Sample, Server, StageFigures,
};
use crate::scenario::Phases;
use crate::series::Collector;
use crate::stats::{ErrorKind, Stats};

/// What the main thread measured around the workers.
#[derive(Default)]
pub struct Observed {
    pub phases: Option<Phases>,
    /// Wall-clock time (ms since the epoch) of run time 0.
    pub epoch_unix_ms: f64,
    pub cpu_start: Option<CpuSample>,
    pub cpu_end: Option<CpuSample>,
    pub server_cpu: Option<(Instant, ProcessCpu)>,
    pub server_cpu_pct: Option<f64>,
    pub server_cpu_clock: Option<CpuClock>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// The end-of-window samples were taken (or tried).
    pub end_sampled: bool,
    /// The per-second figures.
    pub series: Collector,
}

pub fn build(
    plan: &Plan,
    stats: &Stats,
    seen: &Observed,
    tail_drops: u64,
    started_unix_s: u64,
) -> Report {
    let args = &plan.args;
    let workload = &plan.workload;
    let open_loop = workload.open_loop();
    let duration_s = seen.phases.map_or(0.0, |p| p.window_secs());
    let mut errors = stats.errors;
    *errors.get_mut(ErrorKind::Lost) += tail_drops;
    let cpu = own_cpu(seen);
    let generator_bottleneck = bottleneck(&cpu);
    let (client_cpu_pct, client_threads) = cpu.unwrap_or_default();
    let (series, stages) = series_and_stages(plan, seen, duration_s);
    let (window_start_unix_ms, window_end_unix_ms) = window_unix_ms(seen);
    let tls = plan.target.tls;
    Report {
        schema_version: report::SCHEMA_VERSION,
        tool: format!("wsecho-load {}", env!("CARGO_PKG_VERSION")),
        runs: 1,
        url: plan.target.url.to_string(),
        scenario: workload.scenario(),
        started_unix_s,
        config: config(plan),
        duration_s,
        messages_sent: stats.sent,
        messages_received: stats.received,
        bytes_sent: stats.bytes_sent,
        bytes_received: stats.bytes_received,
        rates: rates(stats, duration_s),
        latency_us: Percentiles::of(&stats.latency),
        latency_uncorrected_us: open_loop.then(|| Percentiles::of(&stats.latency_uncorrected)),
        connect_us: Percentiles::of(&stats.connect),
        tls_us: tls.then(|| Percentiles::of(&stats.tls)),
        handshake_us: Percentiles::of(&stats.handshake),
        errors,
        error_details: error_details(stats, tail_drops),
        close_codes: close_codes(stats),
        connections: connections(plan, workload, stats),
        churn: churn(workload, stats, duration_s),
        chat: workload
            .rooms()
            .map(|rooms| chat(rooms, stats, errors.get(ErrorKind::Lost), duration_s)),
        greetings: stats.greetings,
        deflate: deflate(args, stats),
        client_cpu_pct,
        generator_bottleneck,
        client_threads,
        server: args.server_pid.map(|pid| server(pid, stats, seen)),
        histograms: histograms(stats, open_loop, tls),
        window_start_unix_ms,
        window_end_unix_ms,
        series,
        stages,
        window_overlap: None,
    }
}

/// Whether a worker thread was saturated; unknown without both samples.
fn bottleneck(cpu: &Option<(f64, Vec<ThreadCpu>)>) -> Bottleneck {
    match cpu {
        None => Bottleneck::Unknown,
        Some((_, threads)) if threads.iter().any(|t| t.cpu_pct >= BOTTLENECK_PCT) => {
            Bottleneck::Yes
        }
        Some(_) => Bottleneck::No,
    }
}

/// One sample per second of the window and, with stages, figures per
/// stage; what the stages asked for is scaled to this process's share.
fn series_and_stages(
    plan: &Plan,
    seen: &Observed,
    duration_s: f64,
) -> (Vec<Sample>, Option<Vec<StageFigures>>) {
    let share = plan.own_connections() as f64 / plan.connections.max(1) as f64;
    let series = seen.series.samples(duration_s, |t| {
        plan.target_at(t).map(|target| target * share)
    });
    let stages = plan.stages().map(|st| {
        let bounds: Vec<(u64, u64)> = (0..st.stages.len()).map(|i| st.bounds(i)).collect();
        let targets: Vec<u64> = st
            .stages
            .iter()
            .map(|s| (s.target as f64 * share).round() as u64)
            .collect();
        crate::series::stage_figures(&series, &bounds, &targets)
    });
    (series, stages)
}

/// The counted window in wall-clock time (ms since the Unix epoch).
fn window_unix_ms(seen: &Observed) -> (u64, u64) {
    seen.phases.map_or((0, 0), |p| {
        let at = |ns: u64| (seen.epoch_unix_ms + ns as f64 / 1e6).round() as u64;
        (at(p.window_start_ns), at(p.window_end_ns))
    })
}

fn close_codes(stats: &Stats) -> BTreeMap<String, u64> {
    stats
        .close_codes
        .iter()
        .map(|(c, n)| (c.to_string(), *n))
        .collect()
}

fn connections(plan: &Plan, workload: &Workload, stats: &Stats) -> Connections {
    Connections {
        requested: plan.own_connections(),
        opened: stats.opened,
        failed: stats.errors.get(ErrorKind::Connect) + stats.errors.get(ErrorKind::Handshake),
        held: (*workload == Workload::Idle).then_some(stats.held),
    }
}

fn churn(workload: &Workload, stats: &Stats, duration_s: f64) -> Option<Churn> {
    (*workload == Workload::Connect).then(|| Churn {
        handshakes: stats.cycles,
        handshakes_per_s: per_s(stats.cycles, duration_s),
    })
}

fn deflate(args: &RunArgs, stats: &Stats) -> Option<report::Deflate> {
    args.deflate
        .as_ref()
        .map(|offer| crate::report::Deflate::of(&offer.header, &stats.deflate))
}

/// The whole process's CPU and its worker threads' over the window; None
/// when a sample is missing or no worker thread was in both.
fn own_cpu(seen: &Observed) -> Option<(f64, Vec<ThreadCpu>)> {
    let usage = cpu::usage(seen.cpu_start.as_ref()?, seen.cpu_end.as_ref()?);
    let workers: Vec<ThreadCpu> = usage
        .threads
        .into_iter()
        .filter(|t| t.name.starts_with(WORKER_THREAD_PREFIX))
        .collect();
    (!workers.is_empty()).then_some((usage.total_pct, workers))
}

fn chat(rooms: u64, stats: &Stats, drops: u64, secs: f64) -> Chat {
    Chat {
        rooms,
        deliveries: stats.received,
        deliveries_per_s: per_s(stats.received, secs),
        expected_deliveries: stats.expected_deliveries,
        drops,
    }
}

fn config(plan: &Plan) -> RunConfig {
    let args = &plan.args;
    let workload = &plan.workload;
    RunConfig {
        connections: plan.own_connections(),
        duration_s: plan.window.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        size: args.size,
        text: plan.layout.text,
        in_flight: workload.in_flight(),
        rate: workload.fixed_rate(),
        connect_rate: args.connect_rate,
        threads: plan.threads,
        rooms: workload.rooms(),
        stages: plan.ramp.as_ref().map(|s| s.stages.clone()),
        rate_stages: args.rate_stages.as_ref().map(|s| s.stages.clone()),
        segment: args.segment,
        timeout_s: args.timeout.as_secs_f64(),
        protocol: if args.http2 {
            Protocol::H2
        } else {
            Protocol::Http1
        },
        streams_per_connection: args.http2.then(|| args.streams_per_connection.unwrap_or(1)),
        payload: args.payload,
        verify: args.verify,
        pace_slack_us: workload
            .scheduled()
            .then_some(args.pace_slack.as_micros() as u64),
    }
}

/// The first message of each error kind (chat tail drops have their own).
fn error_details(stats: &Stats, tail_drops: u64) -> BTreeMap<ErrorKind, String> {
    let mut details = stats.first_errors.clone();
    if tail_drops > 0 {
        details
            .entry(ErrorKind::Lost)
            .or_insert_with(|| format!("{tail_drops} deliveries missing at the end"));
    }
    details
}

fn histograms(stats: &Stats, open_loop: bool, tls: bool) -> Histograms {
    Histograms {
        latency: report::encode_hist(&stats.latency),
        latency_uncorrected: open_loop.then(|| report::encode_hist(&stats.latency_uncorrected)),
        connect: report::encode_hist(&stats.connect),
        tls: tls.then(|| report::encode_hist(&stats.tls)),
        handshake: report::encode_hist(&stats.handshake),
    }
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

pub fn rates(stats: &Stats, secs: f64) -> Rates {
    Rates {
        messages_sent_per_s: per_s(stats.sent, secs),
        messages_received_per_s: per_s(stats.received, secs),
        bytes_sent_per_s: per_s(stats.bytes_sent, secs),
        bytes_received_per_s: per_s(stats.bytes_received, secs),
    }
}

fn server(pid: u32, stats: &Stats, seen: &Observed) -> Server {
    // Idle: the connections held; otherwise those that were opened (and
    // are up during the window, where the sample is taken).
    let up = if stats.held > 0 {
        stats.held
    } else {
        stats.opened
    };
    let per_connection = match (seen.rss_before_kib, seen.rss_after_kib) {
        (Some(before), Some(after)) if up > 0 => {
            Some(((after as f64 - before as f64) * 1024.0 / up as f64).round())
        }
        _ => None,
    };
    Server {
        pid,
        cpu_pct: seen.server_cpu_pct,
        cpu_clock: seen.server_cpu_clock,
        rss_before_kib: seen.rss_before_kib,
        rss_after_kib: seen.rss_after_kib,
        rss_per_connection_bytes: per_connection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cpu_samples_give_no_figures_rather_than_idle_ones() {
        assert!(own_cpu(&Observed::default()).is_none());
        // Both samples, but no worker thread in them (taken after the
        // workers were gone): still no verdict.
        let s = cpu::sample_self().unwrap();
        let seen = Observed {
            cpu_start: Some(s.clone()),
            cpu_end: Some(s),
            ..Observed::default()
        };
        assert!(own_cpu(&seen).is_none());
    }
}
