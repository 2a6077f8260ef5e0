//! The workers of a run: their threads and runtimes, each worker's
//! context and once-a-second tick, and the phases every connection follows
//! (the main thread's part, from the live line to the report, is in
//! [`crate::run`]).
//!
//! Threading: one single-threaded tokio runtime per worker thread, each
//! connection pinned to one of them (connection `i` on thread `i % T`).
//! Worker 0 is the main thread, whose runtime also runs the main loop: with
//! `--threads 1` the process has one thread, and a single-threaded process
//! skips work on every system call that a second thread would cost it
//! (glibc's cancellation bookkeeping around each send and recv, the
//! kernel's shared file-table reference count in fdget/fput). No
//! work stealing means no cross-core wake-ups and no `Send` bounds, so a
//! thread's connections share its [`Stats`] through an `Rc<RefCell>`: the
//! hot path touches no atomic and no lock. Worker threads talk to the main
//! thread only through a channel: "my connections are up" once, one
//! [`Tick`](crate::stats::Tick) a second, and their `Stats` at the end.
//!
//! Phases, in run time (ns since start): every connection is dialled
//! (`--connect-rate` spaces the dials); once all are up (or failed) the
//! main thread sets [`Phases`]: traffic starts at once, the counted window
//! opens after `--warmup` and lasts `--duration`; then each connection
//! stops sending, waits for its outstanding echoes (up to `--timeout`) and
//! closes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

use crate::cli::Scenario;
use crate::cpu::WORKER_THREAD_PREFIX;
use crate::pacer::Pacer;
use crate::plan::Plan;
use crate::scenario::{self, Phases, WorkerCtx, WorkerMsg, chat::PeerEnd};
use crate::stats::Stats;

/// What a worker hands back.
pub struct WorkerResult {
    pub stats: Stats,
    /// Chat: each peer's view at the end, for the tail-drop count.
    pub peers: Vec<PeerEnd>,
}

/// Starts worker threads 1 and up; worker 0 is the caller's ([`worker`]).
pub fn spawn_workers(
    plan: &Arc<Plan>,
    tx: &mpsc::UnboundedSender<WorkerMsg>,
    go: &watch::Receiver<Option<Phases>>,
) -> std::io::Result<Vec<std::thread::JoinHandle<WorkerResult>>> {
    (1..plan.threads)
        .map(|index| {
            let (plan, tx, go) = (plan.clone(), tx.clone(), go.clone());
            std::thread::Builder::new()
                // Thread names show in /proc, where the CPU check finds them.
                .name(format!("{WORKER_THREAD_PREFIX}{index}"))
                .spawn(move || {
                    let rt = runtime().expect("a tokio runtime (out of file descriptors?)");
                    LocalSet::new().block_on(&rt, worker(plan, index, tx, go))
                })
        })
        .collect()
}

/// A worker's runtime: single-threaded, run inside a [`LocalSet`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// One worker: its connections, its ticker and pacer, until its part of
/// the run is over. Runs inside a [`LocalSet`].
pub async fn worker(
    plan: Arc<Plan>,
    index: usize,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    go: watch::Receiver<Option<Phases>>,
) -> WorkerResult {
    let ctx = worker_ctx(plan, index, tx, go);
    expect_dials(&ctx);
    let ticker = tokio::task::spawn_local(ticker(ctx.clone()));
    let pacer = ctx
        .pacer
        .clone()
        .map(|p| tokio::task::spawn_local(async move { p.run().await }));
    let peers = scenario::run(ctx.clone()).await;
    ticker.abort();
    last_tick(&ctx);
    if let Some(p) = pacer {
        p.abort();
    }
    let stats = take_stats(&ctx);
    WorkerResult { stats, peers }
}

/// The worker's context, with the pacer, HTTP/2 pool and epoll loop its
/// plan calls for.
fn worker_ctx(
    plan: Arc<Plan>,
    index: usize,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    go: watch::Receiver<Option<Phases>>,
) -> Rc<WorkerCtx> {
    let scheduled = plan.workload.scheduled();
    // Without a timerfd (never seen on Linux) sends fall back to the
    // millisecond tokio timer, which only makes corrected latency coarser.
    let pacer = scheduled
        .then(|| Pacer::new(plan.clock, plan.args.pace_slack.as_nanos() as u64).ok())
        .flatten()
        .map(Rc::new);
    let h2 = (plan.args.http2)
        .then(|| crate::http2::Pool::new(plan.args.streams_per_connection.unwrap_or(1)));
    // Without an epoll instance (out of descriptors) tasks drive it all.
    let direct = plan
        .direct()
        .then(|| crate::scenario::direct::Direct::new().ok())
        .flatten();
    Rc::new(WorkerCtx {
        plan,
        index,
        stats: RefCell::new(Stats::default()),
        pacer,
        h2,
        direct,
        tx,
        go,
        pending: Cell::new(0),
        next_tick: Cell::new(i64::MIN),
    })
}

/// How many dials the main thread waits for from this worker; none, and
/// it is told at once.
fn expect_dials(ctx: &WorkerCtx) {
    let pending = match ctx.plan.scenario() {
        // Churn and stages dial all the time: nothing to wait for.
        Scenario::Connect => 0,
        _ if ctx.plan.ramp.is_some() => 0,
        _ => ctx.connection_ids().count() as u64,
    };
    ctx.pending.set(pending);
    if pending == 0 {
        let _ = ctx.tx.send(WorkerMsg::Ready);
    }
}

/// What happened since the last tick goes to the second that tick
/// would have covered: a worker that ends just after the window
/// must not take its last second's figures with it.
fn last_tick(ctx: &WorkerCtx) {
    if ctx.next_tick.get() != i64::MIN {
        let tick = ctx.stats.borrow_mut().take_tick(ctx.next_tick.get());
        let _ = ctx.tx.send(WorkerMsg::Tick(Box::new(tick)));
    }
}

/// The worker's figures, with the bytes its deflate streams counted on
/// this thread.
fn take_stats(ctx: &WorkerCtx) -> Stats {
    let mut stats = ctx.stats.replace(Stats::default());
    stats
        .deflate
        .bytes
        .add(&crate::deflate::Bytes::take_thread());
    stats
}

/// Once a second, hands this thread's interval figures to the main thread.
/// Seconds are counted from the start of the counted window (negative in
/// the warm-up), so every thread's tick `m` covers the same second and the
/// time series has one sample per second of the window.
async fn ticker(ctx: Rc<WorkerCtx>) {
    const SECOND: u64 = 1_000_000_000;
    let phases = ctx.phases().await;
    let ws = phases.window_start_ns as i128;
    // The first boundary after now: ws + m·1s.
    let since = ctx.now_ns() as i128 - ws;
    let mut m = since.div_euclid(SECOND as i128) as i64 + 1;
    // Everything before that boundary (dial time included) is its second.
    ctx.next_tick.set(m - 1);
    loop {
        let at = (ws + m as i128 * SECOND as i128).max(0) as u64;
        tokio::time::sleep_until(ctx.plan.clock.at(at)).await;
        let tick = ctx.stats.borrow_mut().take_tick(m - 1);
        ctx.next_tick.set(m);
        if ctx.tx.send(WorkerMsg::Tick(Box::new(tick))).is_err() {
            return;
        }
        m += 1;
    }
}
