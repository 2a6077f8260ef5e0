//! The time series in the report: one sample per second of the counted
//! window, and figures per stage of --stages / --rate-stages.

use serde::{Deserialize, Serialize};

use super::Percentiles;
use crate::stats::Errors;

/// One second of the counted window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Second of the window, from 0.
    pub t_s: u32,
    /// Its length: 1, or less for the last one.
    pub seconds: f64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
    pub errors: Errors,
    /// Most connections open at once during the second.
    pub open: u64,
    /// The generator process, % of one core.
    pub cpu_pct: Option<f64>,
    /// What the stages asked for (connections or messages/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// This second's latency histogram (V2, base64), for merging.
    pub latency_hist: String,
}

/// One stage of --stages or --rate-stages, from the seconds of the series
/// that overlap it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageFigures {
    /// When it ran, in seconds of the window.
    pub start_s: f64,
    pub end_s: f64,
    /// Where it was heading (connections or messages/s, this process's
    /// share with --segment).
    pub target: u64,
    pub received_per_s: f64,
    pub mean_open: f64,
    pub latency_us: Percentiles,
}
