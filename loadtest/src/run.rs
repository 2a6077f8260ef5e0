//! The main thread's part of a run: build the [`Plan`], start the workers,
//! start the traffic once every connection is dialled, print the live
//! line, sample CPU and server memory at the window's edges, and turn the
//! workers' figures into a [`Report`].

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use tokio::sync::watch;

use crate::cli::Scenario;
use crate::cpu::{self, CpuSample};
use crate::engine::{self, Phases, WorkerMsg, WorkerResult};
use crate::output::live::Live;
use crate::plan::Plan;
use crate::report::Report;
use crate::scenario::chat;
use crate::summary;

/// What the main thread measured around the workers.
#[derive(Default)]
pub struct Observed {
    pub phases: Option<Phases>,
    pub cpu_start: Option<CpuSample>,
    pub cpu_end: Option<CpuSample>,
    pub server_ticks: Option<(Instant, u64)>,
    pub server_cpu_pct: Option<f64>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

/// Runs the whole thing and returns the report.
pub fn run(plan: Plan) -> anyhow::Result<Report> {
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan = Arc::new(plan);
    let mut seen = Observed {
        rss_before_kib: plan.args.server_pid.and_then(cpu::rss_kib),
        ..Observed::default()
    };
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(None);
    let workers = engine::spawn_workers(&plan, tx, go_rx).context("starting worker threads")?;
    main_loop(&plan, &rx, &go_tx, &mut seen, &workers);
    let results = workers
        .into_iter()
        .map(|w| w.join().map_err(|_| anyhow!("a worker thread panicked")))
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
fn main_loop(
    plan: &Plan,
    rx: &mpsc::Receiver<WorkerMsg>,
    go: &watch::Sender<Option<Phases>>,
    seen: &mut Observed,
    workers: &[std::thread::JoinHandle<WorkerResult>],
) {
    let mut live = Live::new(plan.threads, plan.args.quiet);
    let mut ready = 0;
    let start = |seen: &mut Observed| {
        let phases = phases(plan);
        seen.phases = Some(phases);
        go.send_replace(Some(phases));
    };
    loop {
        // A worker that died before it was ready (a panic) would keep the
        // others waiting for the start forever: start without it.
        if seen.phases.is_none() && workers.iter().any(|w| w.is_finished()) {
            start(seen);
        }
        sample(plan, seen, plan.clock.now_ns());
        let wait = next_sample_ns(plan, seen)
            .map_or(Duration::from_millis(250), |t| {
                Duration::from_nanos(t.saturating_sub(plan.clock.now_ns()))
            })
            .min(Duration::from_millis(250));
        match rx.recv_timeout(wait) {
            Ok(WorkerMsg::Ready) => {
                ready += 1;
                if ready == plan.threads && seen.phases.is_none() {
                    start(seen);
                }
            }
            Ok(WorkerMsg::Tick(tick)) => live.tick(tick, seen.phases),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// The traffic starts now (chat: after the settle time).
fn phases(plan: &Plan) -> Phases {
    let settle = match plan.scenario() {
        Scenario::Chat => chat::SETTLE.as_nanos() as u64,
        _ => 0,
    };
    let start_ns = plan.clock.now_ns() + settle;
    let window_start_ns = start_ns + plan.args.warmup.as_nanos() as u64;
    Phases {
        start_ns,
        window_start_ns,
        window_end_ns: window_start_ns + plan.args.duration.as_nanos() as u64,
    }
}

/// The end-of-window samples (server memory, our CPU) are taken a little
/// before the window closes, while every connection and every worker
/// thread is certainly still there.
fn end_sample_time(p: &Phases) -> u64 {
    let margin = ((p.window_end_ns - p.window_start_ns) / 2).min(100_000_000);
    p.window_end_ns - margin
}

fn next_sample_ns(plan: &Plan, seen: &Observed) -> Option<u64> {
    let p = seen.phases?;
    if seen.cpu_start.is_none() {
        Some(p.window_start_ns)
    } else if seen.cpu_end.is_none()
        || (seen.rss_after_kib.is_none() && plan.args.server_pid.is_some())
    {
        Some(end_sample_time(&p))
    } else {
        None
    }
}

fn sample(plan: &Plan, seen: &mut Observed, now: u64) {
    let Some(p) = seen.phases else { return };
    let pid = plan.args.server_pid;
    if seen.cpu_start.is_none() && now >= p.window_start_ns {
        seen.cpu_start = cpu::sample_self();
        seen.server_ticks = pid
            .and_then(cpu::process_ticks)
            .map(|t| (Instant::now(), t));
    }
    if let Some(pid) = pid
        && seen.rss_after_kib.is_none()
        && now >= end_sample_time(&p)
    {
        seen.rss_after_kib = cpu::rss_kib(pid);
    }
    if seen.cpu_start.is_some() && seen.cpu_end.is_none() && now >= end_sample_time(&p) {
        seen.cpu_end = cpu::sample_self();
        if let (Some(pid), Some((at, before))) = (pid, seen.server_ticks)
            && let Some(after) = cpu::process_ticks(pid)
        {
            let secs = at.elapsed().as_secs_f64();
            seen.server_cpu_pct = Some(cpu::pct_of_core(after.saturating_sub(before), secs));
        }
    }
}
