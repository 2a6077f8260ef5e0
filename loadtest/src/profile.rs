//! Load profiles, k6-style: `--stages 30s:1000,2m:1000,30s:0` ramps the
//! connections and `--rate-stages 1m:10k,5m:50k` the open-loop rate,
//! linearly from one target to the next (from 0 at the start). Times here
//! are ns since the profile began (the start of the counted window).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One stage: reach `target` linearly over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub duration_s: f64,
    pub target: u64,
}

/// Stages in order; each starts where the previous one ended (the first
/// from 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// (start ns, end ns, from, to) per stage.
    spans: Vec<Span>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start_ns: u64,
    end_ns: u64,
    from: f64,
    to: f64,
    /// Integral of the target over the stages before this one (target·s).
    before: f64,
}

impl Span {
    fn secs(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }

    fn at(&self, t_ns: u64) -> f64 {
        let d = self.end_ns - self.start_ns;
        if d == 0 {
            return self.to;
        }
        let x = (t_ns.clamp(self.start_ns, self.end_ns) - self.start_ns) as f64 / d as f64;
        self.from + (self.to - self.from) * x
    }

    /// Integral of the target from the span's start to `t_ns` (target·s).
    fn area_to(&self, t_ns: u64) -> f64 {
        let tau = (t_ns.clamp(self.start_ns, self.end_ns) - self.start_ns) as f64 / 1e9;
        (self.from + self.at(t_ns)) / 2.0 * tau
    }
}

impl Stages {
    pub fn new(stages: Vec<Stage>) -> Stages {
        let mut spans = Vec::with_capacity(stages.len());
        let (mut t, mut from, mut before) = (0u64, 0.0, 0.0);
        for s in &stages {
            let end = t + Duration::from_secs_f64(s.duration_s).as_nanos() as u64;
            let span = Span {
                start_ns: t,
                end_ns: end,
                from,
                to: s.target as f64,
                before,
            };
            before += span.area_to(end);
            spans.push(span);
            (t, from) = (end, s.target as f64);
        }
        Stages { spans, stages }
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.spans.last().map_or(0, |s| s.end_ns))
    }

    pub fn max_target(&self) -> u64 {
        self.stages.iter().map(|s| s.target).max().unwrap_or(0)
    }

    /// The stage running at `t_ns` (the last one after the end).
    pub fn stage_at(&self, t_ns: u64) -> usize {
        self.spans
            .iter()
            .position(|s| t_ns < s.end_ns)
            .unwrap_or(self.spans.len() - 1)
    }

    /// (start, end) of stage `i`, in ns since the profile began.
    pub fn bounds(&self, i: usize) -> (u64, u64) {
        (self.spans[i].start_ns, self.spans[i].end_ns)
    }

    /// The target at `t_ns`.
    pub fn target_at(&self, t_ns: u64) -> f64 {
        self.spans[self.stage_at(t_ns)].at(t_ns)
    }

    /// Integral of the target from 0 to `t_ns`: for a rate, how many
    /// messages are due by then.
    pub fn area_to(&self, t_ns: u64) -> f64 {
        let s = &self.spans[self.stage_at(t_ns)];
        s.before + s.area_to(t_ns)
    }

    /// When the integral of the target reaches `k`: the intended send time
    /// of message number `k` (from 0) of a rate profile. None when the
    /// profile ends first.
    pub fn time_of(&self, k: f64) -> Option<u64> {
        let s = self
            .spans
            .iter()
            .find(|s| s.before + s.area_to(s.end_ns) > k)?;
        let left = k - s.before;
        let secs = s.secs();
        // area(τ) = from·τ + (to-from)/(2·secs)·τ², solved for τ.
        let a = (s.to - s.from) / (2.0 * secs);
        let tau = if a.abs() < 1e-12 {
            left / s.from
        } else {
            (-s.from + (s.from * s.from + 4.0 * a * left).max(0.0).sqrt()) / (2.0 * a)
        };
        Some(s.start_ns + (tau.max(0.0) * 1e9) as u64)
    }

    /// When connection slot `slot` is up: the spans of time in which the
    /// target is above it (slot `j` is wanted while target > j).
    pub fn active(&self, slot: u64) -> Vec<(u64, u64)> {
        let level = slot as f64;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut open: Option<u64> = None;
        for s in &self.spans {
            let d = (s.end_ns - s.start_ns) as f64;
            let cross = |frac: f64| s.start_ns + (frac * d) as u64;
            let (from_up, to_up) = (s.from > level, s.to > level);
            match (open, from_up, to_up) {
                (None, false, true) => {
                    // Rising through the level (a jump when d is 0).
                    open = Some(cross((level - s.from) / (s.to - s.from)));
                }
                (Some(at), true, false) => {
                    out.push((at, cross((s.from - level) / (s.from - s.to))));
                    open = None;
                }
                (None, true, _) => open = Some(s.start_ns),
                _ => {}
            }
        }
        if let Some(at) = open {
            out.push((at, self.total().as_nanos() as u64));
        }
        out.retain(|(a, b)| b > a);
        out
    }
}

#[cfg(test)]
mod tests;
