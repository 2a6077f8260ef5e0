//! The live line: once a second on stderr, every worker's last second
//! merged: elapsed time and phase, messages/s, MB/s, p50, p99, errors so
//! far, open connections.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;

use crate::engine::Phases;
use crate::output::{duration_us, mb_per_s, si};
use crate::stats::{Hist, Tick, new_hist};

pub struct Live {
    threads: usize,
    quiet: bool,
    /// Seconds still waiting for some thread's tick.
    pending: BTreeMap<u64, Second>,
}

struct Second {
    parts: usize,
    received: u64,
    bytes: u64,
    latency: Hist,
    errors: u64,
    open: u64,
}

impl Live {
    pub fn new(threads: usize, quiet: bool) -> Live {
        Live {
            threads,
            quiet,
            pending: BTreeMap::new(),
        }
    }

    pub fn tick(&mut self, tick: Tick, phases: Option<Phases>) {
        if self.quiet {
            return;
        }
        let latest = tick.index;
        let s = self.pending.entry(tick.index).or_insert_with(|| Second {
            parts: 0,
            received: 0,
            bytes: 0,
            latency: new_hist(),
            errors: 0,
            open: 0,
        });
        s.parts += 1;
        s.received += tick.received;
        s.bytes += tick.bytes;
        let _ = s.latency.add(&tick.latency);
        s.errors += tick.errors;
        s.open += tick.open;
        // A second is printed once every thread has reported it, or once a
        // later second is under way (a busy thread skipped this one).
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().parts < self.threads && *entry.key() + 2 > latest {
                break;
            }
            let (index, second) = entry.remove_entry();
            eprintln!("{}", line(index, &second, phases));
        }
    }
}

fn line(index: u64, s: &Second, phases: Option<Phases>) -> String {
    let t_ns = index * 1_000_000_000;
    let phase = match phases {
        None => "connecting",
        Some(p) if t_ns <= p.start_ns => "connecting",
        Some(p) if t_ns <= p.window_start_ns => "warm-up",
        Some(p) if t_ns <= p.window_end_ns => "counted",
        Some(_) => "draining",
    };
    let (p50, p99) = if s.latency.is_empty() {
        ("-".to_owned(), "-".to_owned())
    } else {
        (
            duration_us(s.latency.value_at_quantile(0.5)),
            duration_us(s.latency.value_at_quantile(0.99)),
        )
    };
    format!(
        "[{index:>4}s {phase:<10}] {:>8} msg/s  {:>12}  p50 {p50:>8}  p99 {p99:>8}  errors {}  open {}",
        si(s.received as f64),
        mb_per_s(s.bytes as f64),
        s.errors,
        s.open,
    )
}
