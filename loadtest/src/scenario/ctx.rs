//! One worker thread's context, which each of its connections runs in:
//! the plan, the thread's stats and pools, its channel to the main thread,
//! and the [`Phases`] they all follow.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::pacer::Pacer;
use crate::plan::Plan;
use crate::stats::{Stats, Tick};

/// When the traffic starts, when the counted window opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub start_ns: u64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
}

impl Phases {
    #[inline]
    pub fn counts(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start_ns && t_ns < self.window_end_ns
    }

    pub fn window_secs(&self) -> f64 {
        (self.window_end_ns - self.window_start_ns) as f64 / 1e9
    }
}

/// From a worker thread to the main thread.
pub enum WorkerMsg {
    /// Every connection of this worker has been dialled (or failed).
    Ready,
    // Boxed: a tick (histogram and error counts) is large, and once a
    // second per thread is no allocation worth avoiding.
    Tick(Box<Tick>),
}

/// One worker thread's view: the plan, its stats, its channels.
pub struct WorkerCtx {
    pub plan: Arc<Plan>,
    pub index: usize,
    pub stats: RefCell<Stats>,
    /// Precise send timing, when something sends on a schedule.
    pub pacer: Option<Rc<Pacer>>,
    /// `--http2`: this worker's HTTP/2 connections.
    pub h2: Option<crate::http2::Pool>,
    /// Closed-loop echo on plain TCP: the epoll loop that drives it.
    pub direct: Option<super::direct::Direct>,
    pub(crate) tx: mpsc::UnboundedSender<WorkerMsg>,
    pub(crate) go: watch::Receiver<Option<Phases>>,
    /// Connections of this worker still being dialled.
    pub(crate) pending: Cell<u64>,
    /// The second the next tick will cover (see [`crate::engine`]'s ticker).
    pub(crate) next_tick: Cell<i64>,
}

impl WorkerCtx {
    /// Worker 0 of `plan`, outside a run, for unit tests of what a worker
    /// drives: nothing listens to what it reports.
    #[cfg(test)]
    pub fn for_tests(plan: Plan) -> Rc<WorkerCtx> {
        let (tx, _) = mpsc::unbounded_channel();
        let (_, go) = watch::channel(None);
        Rc::new(WorkerCtx {
            direct: plan.direct().then(|| super::direct::Direct::new().unwrap()),
            plan: Arc::new(plan),
            index: 0,
            stats: RefCell::new(Stats::default()),
            pacer: None,
            h2: None,
            tx,
            go,
            pending: Cell::new(0),
            next_tick: Cell::new(i64::MIN),
        })
    }

    /// Global indices of this worker's connections.
    pub fn connection_ids(&self) -> impl Iterator<Item = u64> + use<> {
        let (threads, index) = (self.plan.threads, self.index);
        let segment = self.plan.segment;
        (0..self.plan.connections)
            .filter(move |id| segment.owns(*id))
            .skip(index)
            .step_by(threads)
    }

    /// One of this worker's connections is up or has failed.
    pub fn dialled(&self) {
        let left = self.pending.get().saturating_sub(1);
        self.pending.set(left);
        if left == 0 {
            let _ = self.tx.send(WorkerMsg::Ready);
        }
    }

    /// Waits for the main thread to set the phases, then for the traffic
    /// to start (with `--start-at`, that may be well after every
    /// connection is up).
    pub async fn phases(&self) -> Phases {
        let mut go = self.go.clone();
        let phases = match go.wait_for(Option::is_some).await {
            Ok(p) => p.unwrap_or_else(|| unreachable!("waited for Some")),
            // The main thread is gone: nothing will be counted.
            Err(_) => Phases {
                start_ns: 0,
                window_start_ns: 0,
                window_end_ns: 0,
            },
        };
        if phases.start_ns > self.now_ns() {
            tokio::time::sleep_until(self.plan.clock.at(phases.start_ns)).await;
        }
        phases
    }

    pub fn now_ns(&self) -> u64 {
        self.plan.clock.now_ns()
    }
}
