//! The machines around a run: whether the generator was saturated, and a
//! local server's CPU and memory.

use serde::{Deserialize, Serialize};

/// Was the generator saturated? Never "no" for lack of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bottleneck {
    Yes,
    No,
    /// The CPU samples around the window are missing.
    Unknown,
}

impl Bottleneck {
    /// Several runs: yes if any was, unknown if any is unknown, else no.
    pub fn combine(self, other: Bottleneck) -> Bottleneck {
        use Bottleneck::*;
        match (self, other) {
            (Yes, _) | (_, Yes) => Yes,
            (Unknown, _) | (_, Unknown) => Unknown,
            (No, No) => No,
        }
    }
}

impl std::fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bottleneck::Yes => "yes",
            Bottleneck::No => "no",
            Bottleneck::Unknown => "unknown",
        })
    }
}

/// A server on this machine, watched through `/proc/PID`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Server {
    pub pid: u32,
    /// Over the window, % of one core.
    pub cpu_pct: Option<f64>,
    /// What `cpu_pct` was read from (absent in reports from before it).
    #[serde(default)]
    pub cpu_clock: Option<crate::cpu::CpuClock>,
    /// Before the first connection was dialled.
    pub rss_before_kib: Option<u64>,
    /// Just before the end of the window.
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connections up.
    pub rss_per_connection_bytes: Option<f64>,
}
