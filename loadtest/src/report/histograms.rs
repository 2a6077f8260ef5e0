//! Histograms in the report (HdrHistogram V2, base64) and the
//! percentiles read from them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::stats::Hist;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Hist) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// HdrHistogram V2 encoding in base64; values in µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histograms {
    pub latency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected: Option<String>,
    pub connect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    pub handshake: String,
}

pub fn encode_hist(h: &Hist) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory cannot fail");
    BASE64.encode(bytes)
}

pub fn decode_hist(s: &str) -> Result<Hist, String> {
    let bytes = BASE64.decode(s).map_err(|e| format!("histogram: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn histograms_round_trip_through_base64() {
        let mut h = new_hist();
        for v in [10, 20, 30, 4000, 3_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_hist(&encode_hist(&h)).unwrap();
        assert_eq!(Percentiles::of(&back), Percentiles::of(&h));
        assert!(decode_hist("not base64!").is_err());
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        assert_eq!(Percentiles::of(&new_hist()), Percentiles::default());
    }
}
