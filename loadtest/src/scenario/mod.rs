//! Scenarios: what each connection does, and the steps they share (the
//! dial ramp, opening a connection, bookkeeping of open connections).
//! They run in their worker's context ([`WorkerCtx`], [`Phases`]), which
//! holds the epoll loop ([`direct`]) that drives closed-loop echo; that
//! loop drives an [`echo::EchoLoop`], which holds the context: the three
//! refer to each other, so they live in this one module.

pub mod chat;
pub mod connect;
mod ctx;
pub mod direct;
pub mod echo;
pub mod idle;

pub use ctx::{Phases, WorkerCtx, WorkerMsg};

use std::future::Future;
use std::rc::Rc;

use tokio::task::JoinSet;

use crate::clock::Rng;
use crate::conn::Conn;
use crate::handshake::Upgrade;
use crate::http2::{OpenError, Opened};
use crate::plan::{Plan, Workload};
use crate::stats::ErrorKind;
use chat::PeerEnd;

/// Runs this worker's share of the scenario to the end; chat hands back
/// each peer's view for the tail-drop count.
pub async fn run(ctx: Rc<WorkerCtx>) -> Vec<PeerEnd> {
    match ctx.plan.workload {
        Workload::Echo(_) => each(&ctx, echo::connection).await,
        Workload::Connect => each(&ctx, connect::slot).await,
        Workload::Idle => each(&ctx, idle::connection).await,
        Workload::Chat { .. } => {
            return each(&ctx, chat::peer).await.into_iter().flatten().collect();
        }
    };
    Vec::new()
}

/// Runs `task` for each of this worker's connections and collects what
/// they return.
async fn each<F, Fut>(ctx: &Rc<WorkerCtx>, task: F) -> Vec<Fut::Output>
where
    F: Fn(Rc<WorkerCtx>, u64) -> Fut,
    Fut: Future + 'static,
    Fut::Output: 'static,
{
    let mut tasks = JoinSet::new();
    for id in ctx.connection_ids() {
        tasks.spawn_local(task(ctx.clone(), id));
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.extend(done.ok());
    }
    out
}

/// Waits for connection `n`'s turn under `--connect-rate`.
pub async fn ramp(ctx: &WorkerCtx, n: u64) {
    let at = ctx.plan.dial_at_ns(n);
    if at > 0 {
        tokio::time::sleep_until(ctx.plan.clock.at(at)).await;
    }
}

/// Dials connection `n` and upgrades it with `upgrade` (with `--http2`:
/// opens it as a stream of a shared connection). Connect, TLS and
/// handshake times are recorded when `record` is set; failures always
/// count.
pub async fn open(ctx: &WorkerCtx, n: u64, upgrade: &Upgrade, record: bool) -> Option<Conn> {
    let plan = &ctx.plan;
    let mut rng = Rng::seeded(n);
    let mut deflate = None;
    let opened = match &ctx.h2 {
        Some(pool) => pool.open(plan, n, upgrade.path()).await,
        None => http1(plan, n, upgrade, &mut rng, &mut deflate).await,
    };
    let (opened, leftover) = match opened {
        Ok(o) => o,
        Err(OpenError { kind, message }) => {
            ctx.stats.borrow_mut().error(kind, 1, || message);
            return None;
        }
    };
    let mut stats = ctx.stats.borrow_mut();
    if record {
        if let Some(us) = opened.connect_us {
            stats.connect.saturating_record(us);
        }
        if let Some(us) = opened.tls_us {
            stats.tls.saturating_record(us);
        }
        stats.handshake.saturating_record(opened.handshake_us);
    }
    stats.opened += 1;
    stats.open += 1;
    stats.interval.open_max = stats.interval.open_max.max(stats.open);
    let read_buf = plan.read_buf();
    let mut conn = Conn::new(opened.stream, leftover, read_buf, rng, plan.max_message);
    if plan.args.deflate.is_some() {
        stats.deflate.opened(deflate.as_ref());
    }
    if let Some(params) = deflate {
        conn.set_deflate(crate::deflate::Session::new(params));
    }
    Some(conn)
}

/// A TCP (or TLS) connection of its own and the HTTP/1.1 upgrade; also
/// the bytes that came after the response head.
async fn http1(
    plan: &Plan,
    n: u64,
    upgrade: &Upgrade,
    rng: &mut Rng,
    deflate: &mut Option<crate::deflate::Negotiated>,
) -> Result<(Opened, Vec<u8>), OpenError> {
    let dialed = plan.dialer.dial(n).await.map_err(|e| OpenError {
        kind: ErrorKind::Connect,
        message: format!("{}: {e}", plan.dialer.addr()),
    })?;
    let mut stream = dialed.stream;
    let upgraded = upgrade
        .run(&mut stream, rng.nonce(), plan.args.timeout)
        .await
        .map_err(|e| OpenError {
            kind: ErrorKind::Handshake,
            message: format!("{}: {e}", plan.target.path),
        })?;
    let opened = Opened {
        stream,
        connect_us: Some(dialed.connect_us),
        tls_us: dialed.tls_us,
        handshake_us: upgraded.handshake_us,
    };
    *deflate = upgraded.deflate;
    Ok((opened, upgraded.leftover))
}

/// A connection opened with [`open`] is gone.
pub fn closed(ctx: &WorkerCtx) {
    let mut stats = ctx.stats.borrow_mut();
    stats.open = stats.open.saturating_sub(1);
}

/// How long to wait for the closing handshake.
pub fn close_deadline(ctx: &WorkerCtx) -> tokio::time::Instant {
    let wait = ctx.plan.args.timeout.min(std::time::Duration::from_secs(2));
    tokio::time::Instant::now() + wait
}
