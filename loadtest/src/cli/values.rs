//! The value parsers for `10s`, `500ms`, `10k`, `16KiB`, `i/N` and
//! `127.0.0.2-127.0.0.9` arguments, and the types they yield.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::{Stage, Stages};

/// Share `index` of `count` (`--segment i/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u64,
    pub count: u64,
}

impl Segment {
    /// Whether connection `id` of the whole load is this segment's.
    pub fn owns(self, id: u64) -> bool {
        id % self.count == self.index
    }
}

/// `i/N` with `i < N`.
pub fn parse_segment(s: &str) -> Result<Segment, String> {
    let (i, n) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("expected i/N, got {s:?}"))?;
    let index: u64 = i
        .trim()
        .parse()
        .map_err(|_| format!("not an index: {i:?}"))?;
    let count: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("not a count: {n:?}"))?;
    if count == 0 || index >= count {
        return Err(format!("{s:?}: need 0 <= i < N"));
    }
    Ok(Segment { index, count })
}

/// RFC 3339 (`2026-11-28T10:00:00Z`, fractions allowed) or unix seconds.
pub fn parse_start_at(s: &str) -> Result<std::time::SystemTime, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map(|d| std::time::UNIX_EPOCH + d)
            .map_err(|_| format!("bad unix time: {s:?}"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?}: {e} (RFC 3339 or unix seconds)"))
}

/// Local addresses to bind before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<IpAddr>);

/// The most addresses a range may expand to.
const MAX_SOURCE_IPS: u128 = 65_536;

/// Parses durations the way humantime does (`250ms`, `1.5s`, `2m`, `1h 30m`,
/// `500us`); a bare number is seconds, as `sleep` and `timeout` take it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration: {s:?}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses `100000`, `10k`, `1.5M`, `2G`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a number: {s:?}"))?;
    let scale = match unit.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        other => return Err(format!("unknown suffix {other:?} in {s:?}")),
    };
    let v = n * scale;
    if v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(format!("not a whole count: {s:?}"));
    }
    Ok(v as u64)
}

/// A count with an optional `/s`: `500`, `500/s`, `2k/s`.
pub fn parse_per_second(s: &str) -> Result<u64, String> {
    parse_count(s.trim().trim_end_matches("/s"))
}

/// Parses `30s:1000,2m:1000,30s:0` (counts take `10k`, `1.5M`).
pub fn parse_stages(s: &str) -> Result<Stages, String> {
    let mut stages = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (d, t) = part
            .split_once(':')
            .ok_or_else(|| format!("expected DURATION:TARGET, got {part:?}"))?;
        let duration = parse_duration(d)?;
        let target = parse_count(t)?;
        stages.push(Stage {
            duration_s: duration.as_secs_f64(),
            target,
        });
    }
    if stages.is_empty() {
        return Err("no stages given".into());
    }
    if stages.iter().all(|s| s.duration_s == 0.0) {
        return Err("the stages last no time".into());
    }
    Ok(Stages::new(stages))
}

/// Parses sizes the way bytesize does: `1024`, `64k` and `1MB` (decimal),
/// `16KiB` and `1.5GiB` (binary).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = s
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("{s:?}: {e}"))?
        .as_u64();
    usize::try_from(bytes).map_err(|_| format!("size too large: {s:?}"))
}

/// `Name: value` (the value may be empty).
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {s:?}"))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name || value.contains(['\r', '\n']) {
        return Err(format!("not a valid header: {s:?}"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// `127.0.0.2,127.0.0.3` or `127.0.0.2-127.0.0.9` (IPv4 or IPv6).
pub fn parse_source_ips(s: &str) -> Result<SourceIps, String> {
    let bad = |p: &str| format!("not an IP address: {p:?}");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((a, b)) = part.split_once('-') else {
            out.push(part.parse::<IpAddr>().map_err(|_| bad(part))?);
            continue;
        };
        let a: IpAddr = a.trim().parse().map_err(|_| bad(a))?;
        let b: IpAddr = b.trim().parse().map_err(|_| bad(b))?;
        let (lo, hi) = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(format!("range mixes IPv4 and IPv6: {part:?}")),
        };
        if hi < lo || hi - lo >= MAX_SOURCE_IPS {
            return Err(format!(
                "bad range {part:?} (at most {MAX_SOURCE_IPS} addresses)"
            ));
        }
        out.extend((lo..=hi).map(|n| match a {
            IpAddr::V4(_) => IpAddr::from((n as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(n.to_be_bytes()),
        }));
    }
    if out.is_empty() {
        return Err("no addresses given".to_owned());
    }
    Ok(SourceIps(out))
}
