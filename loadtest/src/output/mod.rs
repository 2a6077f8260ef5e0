//! Output: the live line (stderr), the summary table (stdout), the JSON
//! document and the CSV row. Printing is this module's job, so it is the
//! one place allowed to use `println!`/`eprintln!`.

pub mod charts;
pub mod csv;
pub mod html;
pub mod live;
pub mod text;

use std::path::Path;

use anyhow::Context;

use crate::report::Report;

/// Writes the whole report, histograms included, as pretty JSON.
pub fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(report).context("encoding the report")?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads a report written by [`write_json`].
pub fn read_json(path: &Path) -> anyhow::Result<Report> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a wsecho-load report", path.display()))
}

/// `1234567` → `1.23M`, for rates on narrow lines.
pub fn si(x: f64) -> String {
    match x.abs() {
        v if v >= 1e9 => format!("{:.2}G", x / 1e9),
        v if v >= 1e6 => format!("{:.2}M", x / 1e6),
        v if v >= 1e4 => format!("{:.1}k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}

/// Microseconds, switching to ms and s where µs get hard to read.
pub fn duration_us(us: u64) -> String {
    match us {
        0..10_000 => format!("{us} µs"),
        10_000..10_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Bytes per second in MB/s (10^6), as network people count.
pub fn mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(123_456.0), "123.5k");
        assert_eq!(si(2_500_000.0), "2.50M");
        assert_eq!(duration_us(45), "45 µs");
        assert_eq!(duration_us(12_345), "12.3 ms");
        assert_eq!(mb_per_s(2_470_000.0), "2.47 MB/s");
    }
}
