//! The report's charts, drawn with plotters' SVG backend: one SVG string
//! per chart, each run a series in its own colour.

use plotters::prelude::*;

use crate::report::{self, Report};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 320;

/// Colour of run `i` (a palette that reads on white and in print).
pub fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// One line of a chart: its label, colour, dash, points.
struct Line {
    label: String,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Lines over the window's seconds, on a linear or log y axis.
fn over_time(title: &str, y_desc: &str, lines: &[Line], log_y: bool) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let points = lines.iter().flat_map(|l| &l.points);
        let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
        let top = points.clone().map(|p| p.1).fold(1.0, f64::max);
        // Headroom above the data keeps the legend (upper right) off it.
        let y_max = if log_y { top * 6.0 } else { top * 1.4 };
        let mut chart = ChartBuilder::on(&root);
        chart
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(70);
        if log_y {
            let y_min = points
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
                .fold(y_max, f64::min);
            let mut c = chart
                .build_cartesian_2d(0.0..x_max, ((y_min / 2.0).max(1.0)..y_max).log_scale())?;
            c.configure_mesh()
                .x_desc("seconds of the window")
                .y_desc(y_desc)
                .y_label_formatter(&|v| crate::output::si(*v))
                .draw()?;
            draw_lines(&mut c, lines)?;
        } else {
            let mut c = chart.build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            c.configure_mesh()
                .x_desc("seconds of the window")
                .y_desc(y_desc)
                .y_label_formatter(&|v| crate::output::si(*v))
                .draw()?;
            draw_lines(&mut c, lines)?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_lines<'a, DB, X, Y>(
    c: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    lines: &[Line],
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for l in lines {
        let style = ShapeStyle::from(l.colour).stroke_width(2);
        let series = if l.dashed {
            c.draw_series(DashedLineSeries::new(l.points.iter().copied(), 6, 4, style))?
        } else {
            c.draw_series(LineSeries::new(l.points.iter().copied(), style))?
        };
        let colour = l.colour;
        series
            .label(l.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Where a second's figure sits on the time axis: its middle.
fn mid(s: &report::Sample) -> f64 {
    s.t_s as f64 + s.seconds / 2.0
}

pub fn throughput(runs: &[(String, Report)]) -> Result<String> {
    let mut lines = Vec::new();
    for (i, (name, r)) in runs.iter().enumerate() {
        let pts = |f: fn(&report::Sample) -> f64| r.series.iter().map(|s| (mid(s), f(s))).collect();
        lines.push(Line {
            label: format!("{name}: received/s"),
            colour: colour(i),
            dashed: false,
            points: pts(|s| s.received_per_s),
        });
        if r.config.rate_stages.is_some() {
            lines.push(Line {
                label: format!("{name}: target"),
                colour: colour(i),
                dashed: true,
                points: pts(|s| s.target.unwrap_or(0.0)),
            });
        }
    }
    over_time("Throughput", "messages/s", &lines, false)
}

pub fn connections(runs: &[(String, Report)]) -> Result<String> {
    let mut lines = Vec::new();
    for (i, (name, r)) in runs.iter().enumerate() {
        lines.push(Line {
            label: format!("{name}: open"),
            colour: colour(i),
            dashed: false,
            points: r.series.iter().map(|s| (mid(s), s.open as f64)).collect(),
        });
        if r.config.stages.is_some() {
            lines.push(Line {
                label: format!("{name}: target"),
                colour: colour(i),
                dashed: true,
                points: r
                    .series
                    .iter()
                    .map(|s| (mid(s), s.target.unwrap_or(0.0)))
                    .collect(),
            });
        }
    }
    over_time("Connections", "connections", &lines, false)
}

pub fn latency_over_time(runs: &[(String, Report)]) -> Result<String> {
    let mut lines = Vec::new();
    for (i, (name, r)) in runs.iter().enumerate() {
        let pts = |f: fn(&report::Sample) -> u64| {
            r.series
                .iter()
                .filter(|s| f(s) > 0)
                .map(|s| (mid(s), f(s) as f64))
                .collect()
        };
        lines.push(Line {
            label: format!("{name}: p99"),
            colour: colour(i),
            dashed: false,
            points: pts(|s| s.latency_p99_us),
        });
        lines.push(Line {
            label: format!("{name}: p50"),
            colour: colour(i),
            dashed: true,
            points: pts(|s| s.latency_p50_us),
        });
    }
    over_time("Latency percentiles per second", "µs (log)", &lines, true)
}

/// The HDR percentile plot: latency against percentile, the x axis
/// stretched as 1/(1-q) so the tail (99 %, 99.9 %, ...) gets room.
pub fn distribution(runs: &[(String, Report)]) -> Result<String> {
    let mut lines = Vec::new();
    for (i, (name, r)) in runs.iter().enumerate() {
        let h = report::decode_hist(&r.histograms.latency)?;
        let points = h
            .iter_quantiles(1)
            .map(|v| {
                (
                    1.0 / (1.0 - v.quantile_iterated_to()).max(1e-6),
                    v.value_iterated_to() as f64,
                )
            })
            .filter(|(x, y)| *x >= 1.0 && *y > 0.0)
            .collect();
        lines.push(Line {
            label: format!("{name}: round trip"),
            colour: colour(i),
            dashed: false,
            points,
        });
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let points = lines.iter().flat_map(|l| &l.points);
        let x_max = points.clone().map(|p| p.0).fold(10.0, f64::max).min(1e6);
        let y_max = points.clone().map(|p| p.1).fold(2.0, f64::max) * 6.0;
        let y_min = points.map(|p| p.1).fold(y_max, f64::min).max(1.0);
        let mut c = ChartBuilder::on(&root)
            .caption(
                "Latency distribution (HDR percentile plot)",
                ("sans-serif", 18),
            )
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0..x_max).log_scale(), (y_min / 1.5..y_max).log_scale())?;
        c.configure_mesh()
            .x_desc("percentile")
            .y_desc("µs (log)")
            .y_label_formatter(&|v| crate::output::si(*v))
            .x_label_formatter(&|x| format!("{}%", percentile_label(*x)))
            .draw()?;
        draw_lines(&mut c, &lines)?;
        root.present()?;
    }
    Ok(svg)
}

/// 1/(1-q) back to a percentile: 10 → 90, 100 → 99, 1000 → 99.9.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (x.log10() - 2.0).ceil().max(0.0) as usize;
    format!("{p:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels() {
        assert_eq!(percentile_label(1.0), "0");
        assert_eq!(percentile_label(10.0), "90");
        assert_eq!(percentile_label(100.0), "99");
        assert_eq!(percentile_label(1000.0), "99.9");
        assert_eq!(percentile_label(10000.0), "99.99");
    }
}
