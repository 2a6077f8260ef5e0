//! The main thread's part of a run: build the [`Plan`], start the workers,
//! start the traffic once every connection is dialled, print the live
//! line, sample CPU and server memory at the window's edges, and turn the
//! workers' figures into a [`Report`].

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use tokio::sync::watch;

use crate::cli::{RunArgs, Scenario};
use crate::clock::Clock;
use crate::cpu::{self, CpuSample};
use crate::engine::{self, Phases, Plan, WorkerMsg, WorkerResult};
use crate::handshake::Upgrade;
use crate::net::Dialer;
use crate::output::live::Live;
use crate::payload::Layout;
use crate::report::Report;
use crate::scenario::chat;
use crate::summary;
use crate::target::Target;

/// Largest message accepted from a server: our own size, or 64 MiB for
/// whatever else a server might send (a greeting, a broken echo).
const MAX_MESSAGE: usize = 64 << 20;

/// Checks the flags that clap cannot check alone; an `Err` is a usage error.
pub fn validate(args: &RunArgs) -> Result<(), String> {
    let url = args.url.as_deref().unwrap_or_default();
    Target::parse(url)?;
    let layout = Layout::new(args.size, args.text);
    match () {
        _ if args.connections == 0 => Err("--connections must be at least 1".into()),
        _ if args.duration.is_zero() => Err("--duration must be above 0".into()),
        _ if args.rate == Some(0) => Err("--rate must be above 0".into()),
        _ if args.connect_rate == Some(0) => Err("--connect-rate must be above 0".into()),
        _ if args.threads == Some(0) => Err("--threads must be at least 1".into()),
        _ if args.in_flight == 0 => Err("--in-flight must be at least 1".into()),
        _ if args.timeout.is_zero() => Err("--timeout must be above 0".into()),
        _ if args.size > MAX_MESSAGE => Err(format!("--size is capped at {MAX_MESSAGE} bytes")),
        _ if args.rate.is_some() && matches!(args.scenario, Scenario::Idle | Scenario::Connect) => {
            Err("--rate applies to the echo and chat scenarios".into())
        }
        _ if args.scenario == Scenario::Chat && !layout.carries_time() => Err(
            "chat messages carry sender, seq and send time: --size at least 20 (binary) or 40 (--text)"
                .into(),
        ),
        _ if args.scenario == Scenario::Chat && (args.rooms == 0 || args.rooms > args.connections) => {
            Err("--rooms must be between 1 and --connections".into())
        }
        _ if layout.seq_bits() < 64 && args.in_flight > max_in_flight(&layout) => Err(format!(
            "a {} B payload carries {} bits of sequence number: --in-flight at most {}",
            args.size,
            layout.seq_bits(),
            max_in_flight(&layout)
        )),
        _ => Ok(()),
    }
}

/// Most messages in flight that a payload's sequence bits tell apart: half
/// their range (the rest tells a late echo from an early one); with no bits
/// at all, echoes are matched in order, one at a time.
fn max_in_flight(layout: &Layout) -> u64 {
    match layout.seq_bits() {
        0 => 1,
        bits @ 1..64 => 1 << (bits - 1),
        _ => u64::MAX,
    }
}

/// Builds everything the workers share. Fails on what only shows at run
/// time: a name that does not resolve, a source address of the wrong family.
pub fn plan(args: RunArgs) -> anyhow::Result<Plan> {
    let target = Target::parse(args.url.as_deref().unwrap_or_default()).map_err(|e| anyhow!(e))?;
    let addr = target
        .resolve()
        .with_context(|| format!("cannot resolve {}", target.host))?;
    let tls = target
        .tls
        .then(|| crate::tls::client_config(args.insecure))
        .transpose()
        .context("TLS configuration")?;
    let sources = args.source_ip.clone().map(|s| s.0).unwrap_or_default();
    let dialer = Dialer::new(&target, addr, sources, tls, args.timeout).map_err(|e| anyhow!(e))?;
    let upgrade = Upgrade::new(&target, &args.headers, args.subprotocol.as_deref());
    if let Some(limit) = crate::net::raise_fd_limit()
        && args.connections.saturating_add(64) > limit
    {
        anyhow::bail!(
            "{} connections need more file descriptors than the limit of {limit} (ulimit -n)",
            args.connections
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or(cpus)
        .clamp(1, args.connections.max(1) as usize);
    Ok(Plan {
        layout: Layout::new(args.size, args.text),
        timeout_ns: args.timeout.as_nanos() as u64,
        max_message: MAX_MESSAGE.max(args.size),
        clock: Clock::start(),
        threads,
        args,
        target,
        dialer,
        upgrade,
    })
}

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
    if seen.cpu_end.is_none() {
        seen.cpu_end = cpu::sample_self();
    }
    let mut stats = crate::stats::Stats::default();
    let mut peers = Vec::new();
    for r in results {
        stats.merge(&r.stats);
        peers.extend(r.peers);
    }
    let tail = chat::tail_drops(&peers, plan.args.rooms.max(1));
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

/// Server memory is read a little before the window closes, while every
/// idle connection is certainly still up.
fn rss_time(p: &Phases) -> u64 {
    let margin = ((p.window_end_ns - p.window_start_ns) / 2).min(100_000_000);
    p.window_end_ns - margin
}

fn next_sample_ns(plan: &Plan, seen: &Observed) -> Option<u64> {
    let p = seen.phases?;
    if seen.cpu_start.is_none() {
        Some(p.window_start_ns)
    } else if seen.rss_after_kib.is_none() && plan.args.server_pid.is_some() {
        Some(rss_time(&p))
    } else if seen.cpu_end.is_none() {
        Some(p.window_end_ns)
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
        && now >= rss_time(&p)
    {
        seen.rss_after_kib = cpu::rss_kib(pid);
    }
    if seen.cpu_start.is_some() && seen.cpu_end.is_none() && now >= p.window_end_ns {
        seen.cpu_end = cpu::sample_self();
        if let (Some(pid), Some((at, before))) = (pid, seen.server_ticks)
            && let Some(after) = cpu::process_ticks(pid)
        {
            let secs = at.elapsed().as_secs_f64();
            seen.server_cpu_pct = Some(cpu::pct_of_core(after.saturating_sub(before), secs));
        }
    }
}
