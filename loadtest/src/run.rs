//! The main thread's part of a run: start the workers (the main thread is
//! worker 0, so this runs as a task beside its connections), start the
//! traffic once every connection is dialled (or at `--start-at`), print the
//! live line, sample CPU every second of the window and server memory near
//! its end, and turn the workers' figures into a [`Report`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, LocalSet};

use crate::cli::Scenario;
use crate::cpu;
use crate::engine::{self, WorkerResult};
use crate::output::live;
use crate::plan::Plan;
use crate::report::Report;
use crate::scenario::{Phases, WorkerMsg, chat};
use crate::summary::{self, Observed};

const SECOND: u64 = 1_000_000_000;

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Runs the whole thing and returns the report.
pub fn run(plan: Plan) -> anyhow::Result<Report> {
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan = Arc::new(plan);
    let mut seen = Observed {
        rss_before_kib: plan.args.server_pid.and_then(cpu::rss_kib),
        epoch_unix_ms: unix_ms(SystemTime::now()) - plan.clock.now_ns() as f64 / 1e6,
        ..Observed::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(None);
    let rt = engine::runtime().context("starting the runtime")?;
    let local = LocalSet::new();
    let (first, others) = local.block_on(&rt, async {
        let threads = engine::spawn_workers(&plan, &tx, &go_rx).context("starting worker threads");
        let first = tokio::task::spawn_local(engine::worker(plan.clone(), 0, tx, go_rx));
        let threads = threads?;
        main_loop(&plan, &mut rx, &go_tx, &mut seen, &first, &threads).await;
        anyhow::Ok((first.await, threads))
    })?;
    let first = first.map_err(|_| anyhow!("worker 0 panicked"));
    let results = std::iter::once(first)
        .chain(
            others
                .into_iter()
                .map(|w| w.join().map_err(|_| anyhow!("a worker thread panicked"))),
        )
        .collect::<anyhow::Result<Vec<WorkerResult>>>()?;
    // No sample after the workers are gone: their threads would be missing
    // from it and the bottleneck flag would read "no" for want of data.
    let mut stats = crate::stats::Stats::default();
    let mut peers = Vec::new();
    for r in results {
        stats.merge(&r.stats);
        peers.extend(r.peers);
    }
    let tail = plan
        .workload
        .rooms()
        .map_or(0, |rooms| chat::tail_drops(&peers, rooms));
    Ok(summary::build(&plan, &stats, &seen, tail, started_unix_s))
}

/// Waits for the workers while printing the live line and taking samples.
async fn main_loop(
    plan: &Plan,
    rx: &mut mpsc::UnboundedReceiver<WorkerMsg>,
    go: &watch::Sender<Option<Phases>>,
    seen: &mut Observed,
    first: &JoinHandle<WorkerResult>,
    others: &[std::thread::JoinHandle<WorkerResult>],
) {
    let mut ready = 0;
    let mut printed = i64::MIN;
    let start = |seen: &mut Observed| {
        let phases = phases(plan, seen.epoch_unix_ms);
        seen.phases = Some(phases);
        go.send_replace(Some(phases));
    };
    loop {
        // A worker that died before it was ready (a panic) would keep the
        // others waiting for the start forever: start without it.
        if seen.phases.is_none() && (first.is_finished() || others.iter().any(|w| w.is_finished()))
        {
            start(seen);
        }
        sample(plan, seen, plan.clock.now_ns());
        let wait = next_sample_ns(seen)
            .map_or(Duration::from_millis(250), |t| {
                Duration::from_nanos(t.saturating_sub(plan.clock.now_ns()))
            })
            .min(Duration::from_millis(250));
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(WorkerMsg::Ready)) => {
                ready += 1;
                if ready == plan.threads && seen.phases.is_none() {
                    start(seen);
                }
            }
            Ok(Some(WorkerMsg::Tick(tick))) => {
                let done = seen.series.add(*tick, plan.threads, &mut printed);
                if let (false, Some(p)) = (plan.args.quiet, seen.phases) {
                    for m in done {
                        if let Some(s) = seen.series.second(m) {
                            live::print(plan, &p, m, s);
                        }
                    }
                }
            }
            Err(_elapsed) => {}
            // Every worker is done.
            Ok(None) => break,
        }
    }
}

/// When the traffic starts and the window opens: now (chat: after the
/// settle time) plus the warm-up, or at `--start-at` with the warm-up
/// just before it (shortened if the moment is too close).
fn phases(plan: &Plan, epoch_unix_ms: f64) -> Phases {
    let settle = match plan.scenario() {
        Scenario::Chat => chat::SETTLE.as_nanos() as u64,
        _ => 0,
    };
    let warmup = plan.warmup.as_nanos() as u64;
    let earliest = plan.clock.now_ns() + settle;
    let window_start_ns = match plan.start_at {
        Some(at) => {
            let at_ns = ((unix_ms(at) - epoch_unix_ms) * 1e6).max(0.0) as u64;
            at_ns.max(earliest)
        }
        None => earliest + warmup,
    };
    Phases {
        start_ns: window_start_ns.saturating_sub(warmup).max(earliest),
        window_start_ns,
        window_end_ns: window_start_ns + plan.window.as_nanos() as u64,
    }
}

/// The end-of-window samples (server memory, our CPU) are taken a little
/// before the window closes, while every connection and every worker
/// thread is certainly still there.
fn end_sample_time(p: &Phases) -> u64 {
    let margin = ((p.window_end_ns - p.window_start_ns) / 2).min(100_000_000);
    p.window_end_ns - margin
}

/// The window's second boundaries still to sample (CPU per second): the
/// last one is the end sample.
fn next_boundary(seen: &Observed, p: &Phases) -> Option<(i64, u64)> {
    let n = (p.window_end_ns - p.window_start_ns).div_ceil(SECOND) as i64;
    (0..n)
        .find(|m| !seen.series.has_cpu_mark(*m))
        .map(|m| (m, p.window_start_ns + m as u64 * SECOND))
}

fn next_sample_ns(seen: &Observed) -> Option<u64> {
    let p = seen.phases?;
    let end = (!seen.end_sampled).then(|| end_sample_time(&p));
    let boundary = next_boundary(seen, &p).map(|(_, t)| t);
    match (boundary, end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn sample(plan: &Plan, seen: &mut Observed, now: u64) {
    let Some(p) = seen.phases else { return };
    let pid = plan.args.server_pid;
    if seen.cpu_start.is_none() && now >= p.window_start_ns {
        seen.cpu_start = cpu::sample_self();
        seen.server_cpu = pid.and_then(cpu::process_cpu).map(|c| (Instant::now(), c));
    }
    while let Some((m, at)) = next_boundary(seen, &p)
        && now >= at
    {
        // A boundary passed unsampled (the main thread was late) gets the
        // sample taken now, so every second still has its CPU figure.
        match cpu::sample_self() {
            Some(s) => seen.series.cpu_mark(m, s),
            None => break,
        }
    }
    if seen.end_sampled || now < end_sample_time(&p) {
        return;
    }
    seen.end_sampled = true;
    seen.rss_after_kib = pid.and_then(cpu::rss_kib);
    if seen.cpu_start.is_some() {
        seen.cpu_end = cpu::sample_self();
        if let Some(end) = &seen.cpu_end {
            let n = (p.window_end_ns - p.window_start_ns).div_ceil(SECOND) as i64;
            seen.series.cpu_mark(n, end.clone());
        }
        if let (Some(pid), Some((at, before))) = (pid, &seen.server_cpu)
            && let Some(after) = cpu::process_cpu(pid)
        {
            let secs = at.elapsed().as_secs_f64();
            let (used, clock) = cpu::cpu_secs_between(before, &after);
            seen.server_cpu_pct = Some(cpu::pct_of_core(used, secs));
            seen.server_cpu_clock = Some(clock);
        }
    }
}
