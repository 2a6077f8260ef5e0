//! The live line: once a second on stderr, every worker's second added
//! up: time since the traffic started and the phase, messages/s, MB/s,
//! p50, p99, errors so far, open connections, and with stages what they
//! asked for beside what was achieved.

#![allow(clippy::print_stderr)]

use crate::output::{duration_us, mb_per_s, si};
use crate::plan::Plan;
use crate::scenario::Phases;
use crate::series::Second;

const SECOND: i64 = 1_000_000_000;

/// Prints second `m` of the window (negative: warm-up).
pub fn print(plan: &Plan, phases: &Phases, m: i64, s: &Second) {
    eprintln!("{}", line(plan, phases, m, s));
}

fn line(plan: &Plan, p: &Phases, m: i64, s: &Second) -> String {
    let window_s = (p.window_end_ns - p.window_start_ns) as i64;
    let phase = match m * SECOND {
        t if t < 0 => "warm-up",
        t if t < window_s => "counted",
        _ => "draining",
    };
    let end_ns = p.window_start_ns as i64 + (m + 1) * SECOND;
    let elapsed = (end_ns - p.start_ns as i64).max(0) / SECOND;
    let (p50, p99) = if s.latency.is_empty() {
        ("-".to_owned(), "-".to_owned())
    } else {
        (
            duration_us(s.latency.value_at_quantile(0.5)),
            duration_us(s.latency.value_at_quantile(0.99)),
        )
    };
    let target = (m >= 0)
        .then(|| plan.target_at(((m as f64 + 0.5) * 1e9) as u64))
        .flatten()
        .map(|t| t * plan.own_connections() as f64 / plan.connections.max(1) as f64);
    let (rate_target, open_target) = match (target, plan.ramp.is_some()) {
        (Some(t), true) => (String::new(), format!(" (target {t:.0})")),
        (Some(t), false) => (format!(" (target {})", si(t)), String::new()),
        (None, _) => (String::new(), String::new()),
    };
    format!(
        "[{elapsed:>4}s {phase:<10}] {:>8} msg/s{rate_target}  {:>12}  p50 {p50:>8}  p99 {p99:>8}  errors {}  open {}{open_target}{}",
        si(s.received as f64),
        mb_per_s(s.bytes as f64),
        s.errors_total,
        s.open,
        deflate(plan),
    )
}

/// `--deflate`: what the servers answered so far.
fn deflate(plan: &Plan) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    if plan.args.deflate.is_none() {
        return String::new();
    }
    let on = crate::deflate::NEGOTIATED.load(Relaxed);
    let off = crate::deflate::DECLINED.load(Relaxed);
    match (on, off) {
        (0, 0) => "  deflate -".to_owned(),
        (_, 0) => "  deflate on".to_owned(),
        (0, _) => "  deflate declined".to_owned(),
        _ => format!("  deflate on {on}, declined {off}"),
    }
}
