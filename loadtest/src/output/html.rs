//! `wsecho-load report RUN.json... -o run.html`: one self-contained HTML
//! page (inline SVG and CSS, no script, nothing fetched) with the charts
//! and a summary table; several runs are overlaid for comparison.

use std::fmt::Write;

use crate::output::{charts, duration_us, mb_per_s, si};
use crate::report::Report;

/// The page for `runs` (name, report), in the order given.
pub fn render(runs: &[(String, Report)]) -> anyhow::Result<String> {
    let chart = |id: &str, svg: Result<String, Box<dyn std::error::Error>>| {
        svg.map(|svg| format!("<figure class=\"chart\" id=\"{id}\">{svg}</figure>\n"))
            .map_err(|e| anyhow::anyhow!("drawing {id}: {e}"))
    };
    let mut body = String::new();
    body.push_str(&chart("throughput", charts::throughput(runs))?);
    body.push_str(&chart("connections", charts::connections(runs))?);
    body.push_str(&chart(
        "latency-over-time",
        charts::latency_over_time(runs),
    )?);
    body.push_str(&chart("latency-distribution", charts::distribution(runs))?);
    let title = runs
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(" vs ");
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <title>wsecho-load: {title}</title>\n<style>{CSS}</style></head>\n<body>\n\
         <h1>wsecho-load report</h1>\n{}\n<h2>Over time</h2>\n{body}</body></html>\n",
        summary(runs),
        title = escape(&title),
    ))
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;\
text-align:right}th:first-child,td:first-child{text-align:left}figure{margin:1.5em 0}\
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em}";

/// One column per run.
fn summary(runs: &[(String, Report)]) -> String {
    let mut o = String::from("<table id=\"summary\">\n<tr><th></th>");
    header_row(&mut o, runs);
    setup_rows(&mut o, runs);
    result_rows(&mut o, runs);
    o.push_str("</table>");
    o
}

/// Each run's name beside its colour in the charts.
fn header_row(o: &mut String, runs: &[(String, Report)]) {
    for (i, (name, _)) in runs.iter().enumerate() {
        let c = charts::colour(i);
        let _ = write!(
            o,
            "<th><span class=\"swatch\" style=\"background:rgb({},{},{})\"></span>{}</th>",
            c.0,
            c.1,
            c.2,
            escape(name)
        );
    }
    o.push_str("</tr>\n");
}

/// One row: `label`, then `f` of each run.
fn row(o: &mut String, runs: &[(String, Report)], label: &str, f: &dyn Fn(&Report) -> String) {
    let _ = write!(o, "<tr><td>{label}</td>");
    for (_, r) in runs {
        let _ = write!(o, "<td>{}</td>", escape(&f(r)));
    }
    o.push_str("</tr>\n");
}

/// What was run: target, scenario, load and window.
fn setup_rows(o: &mut String, runs: &[(String, Report)]) {
    row(o, runs, "URL", &|r| r.url.clone());
    row(o, runs, "scenario", &|r| r.scenario.to_string());
    row(o, runs, "connections", &|r| {
        r.config.connections.to_string()
    });
    row(o, runs, "payload", &|r| {
        format!(
            "{} B {}",
            r.config.size,
            if r.config.text { "text" } else { "binary" }
        )
    });
    row(o, runs, "verified", &|r| {
        r.config.verify.describe().to_owned()
    });
    row(o, runs, "window", &|r| format!("{:.1} s", r.duration_s));
    row(o, runs, "runs merged", &|r| r.runs.to_string());
}

/// What came of it: rates, latency, errors and the generator's CPU.
fn result_rows(o: &mut String, runs: &[(String, Report)]) {
    row(o, runs, "messages/s sent", &|r| {
        si(r.rates.messages_sent_per_s)
    });
    row(o, runs, "messages/s received", &|r| {
        si(r.rates.messages_received_per_s)
    });
    row(o, runs, "payload received", &|r| {
        mb_per_s(r.rates.bytes_received_per_s)
    });
    for (label, q) in [("p50", 0), ("p90", 1), ("p99", 2), ("p99.9", 3), ("max", 4)] {
        row(o, runs, &format!("latency {label}"), &move |r| {
            let p = &r.latency_us;
            duration_us([p.p50, p.p90, p.p99, p.p999, p.max][q])
        });
    }
    row(o, runs, "errors", &|r| {
        let kinds: Vec<String> = r
            .errors
            .nonzero()
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect();
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        }
    });
    row(o, runs, "generator CPU", &|r| {
        format!("{:.1} %", r.client_cpu_pct)
    });
    row(o, runs, "generator bottleneck", &|r| {
        r.generator_bottleneck.to_string()
    });
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
