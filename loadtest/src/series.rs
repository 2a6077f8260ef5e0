//! The per-second time series: the workers' ticks added up second by
//! second (seconds counted from the start of the counted window), the
//! generator's CPU per second, and what the stages asked for. The live
//! line prints each second once every thread has reported it; the report
//! keeps one sample per second of the window.

use std::collections::BTreeMap;

use crate::cpu::{self, CpuSample};
use crate::report::{self, Percentiles, Sample, StageFigures, encode_hist};
use crate::stats::{Errors, Hist, Tick, new_hist};

/// One second, every thread's tick added up.
pub struct Second {
    pub parts: usize,
    pub sent: u64,
    pub received: u64,
    pub bytes: u64,
    pub latency: Hist,
    pub errors: Errors,
    pub errors_total: u64,
    pub open: u64,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            parts: 0,
            sent: 0,
            received: 0,
            bytes: 0,
            latency: new_hist(),
            errors: Errors::default(),
            errors_total: 0,
            open: 0,
        }
    }
}

// Here rather than in report: the document does not know how its
// seconds were collected.
impl Sample {
    pub fn of(
        t_s: u32,
        seconds: f64,
        s: &crate::series::Second,
        cpu_pct: Option<f64>,
        target: Option<f64>,
    ) -> Sample {
        let per_s = |n: u64| (n as f64 / seconds.max(1e-9) * 10.0).round() / 10.0;
        let p = Percentiles::of(&s.latency);
        Sample {
            t_s,
            seconds,
            sent_per_s: per_s(s.sent),
            received_per_s: per_s(s.received),
            latency_p50_us: p.p50,
            latency_p99_us: p.p99,
            latency_max_us: p.max,
            errors: s.errors,
            open: s.open,
            cpu_pct,
            target: target.map(|t| (t * 10.0).round() / 10.0),
            latency_hist: encode_hist(&s.latency),
        }
    }
}

#[derive(Default)]
pub struct Collector {
    seconds: BTreeMap<i64, Second>,
    /// Process CPU samples at the window's second boundaries.
    cpu: BTreeMap<i64, CpuSample>,
}

impl Collector {
    /// Adds one thread's tick; returns the seconds now complete (every
    /// thread reported, or a later second is under way) for the live line.
    pub fn add(&mut self, tick: Tick, threads: usize, printed: &mut i64) -> Vec<i64> {
        let latest = tick.index;
        let s = self.seconds.entry(tick.index).or_default();
        s.parts += 1;
        s.sent += tick.sent;
        s.received += tick.received;
        s.bytes += tick.bytes;
        let _ = s.latency.add(&tick.latency);
        s.errors.add(&tick.errors);
        s.errors_total += tick.errors_total;
        s.open += tick.open;
        let mut done = Vec::new();
        for (index, second) in self.seconds.range(*printed + 1..) {
            if second.parts < threads && *index + 2 > latest {
                break;
            }
            done.push(*index);
        }
        if let Some(last) = done.last() {
            *printed = *last;
        }
        done
    }

    pub fn second(&self, index: i64) -> Option<&Second> {
        self.seconds.get(&index)
    }

    /// Records the CPU sample taken at boundary `m` (the start of second m).
    pub fn cpu_mark(&mut self, m: i64, sample: CpuSample) {
        self.cpu.insert(m, sample);
    }

    pub fn has_cpu_mark(&self, m: i64) -> bool {
        self.cpu.contains_key(&m)
    }

    /// One sample per second of a window of `window_s` seconds (the last
    /// one shorter when the window is not whole seconds); `target(t_ns)`
    /// is what the stages asked for in the middle of each second.
    pub fn samples(&self, window_s: f64, target: impl Fn(u64) -> Option<f64>) -> Vec<Sample> {
        let n = window_s.ceil().max(0.0) as i64;
        (0..n)
            .map(|m| {
                let secs = (window_s - m as f64).min(1.0);
                let empty = Second::default();
                let s = self.seconds.get(&m).unwrap_or(&empty);
                let cpu_pct = match (self.cpu.get(&m), self.cpu.get(&(m + 1))) {
                    (Some(a), Some(b)) => Some(cpu::usage(a, b).total_pct),
                    _ => None,
                };
                let mid_ns = ((m as f64 + secs / 2.0) * 1e9) as u64;
                Sample::of(m as u32, secs, s, cpu_pct, target(mid_ns))
            })
            .collect()
    }
}

/// Figures per stage, from the seconds that overlap it (to the second: a
/// stage shorter than a second still gets the second it ran in).
pub fn stage_figures(
    samples: &[Sample],
    bounds: &[(u64, u64)],
    targets: &[u64],
) -> Vec<StageFigures> {
    bounds
        .iter()
        .zip(targets)
        .map(|(&(start, end), &target)| {
            let mut hist = new_hist();
            let (mut secs, mut received, mut open) = (0.0, 0u64, 0.0);
            for s in samples {
                let from = (s.t_s as f64 * 1e9) as u64;
                let to = ((s.t_s as f64 + s.seconds) * 1e9) as u64;
                if to <= start || from >= end {
                    continue;
                }
                if let Ok(h) = report::decode_hist(&s.latency_hist) {
                    hist.auto(true);
                    let _ = hist.add(&h);
                }
                secs += s.seconds;
                received += (s.received_per_s * s.seconds).round() as u64;
                open += s.open as f64 * s.seconds;
            }
            StageFigures {
                start_s: start as f64 / 1e9,
                end_s: end as f64 / 1e9,
                target,
                received_per_s: if secs > 0.0 {
                    received as f64 / secs
                } else {
                    0.0
                },
                mean_open: if secs > 0.0 { open / secs } else { 0.0 },
                latency_us: report::Percentiles::of(&hist),
            }
        })
        .collect()
}
