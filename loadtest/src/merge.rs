//! Combining reports (`wsecho-load merge`), and judging one: errors,
//! empty runs and `--max-p99` / `--min-rate` decide the exit status.
//!
//! Merged runs are taken to have run at the same time against the same
//! service (one run per load machine): counts add up, the window is the
//! longest one, rates are recomputed from the sums, and percentiles come
//! from the added histograms.

use crate::cli::{Scenario, Thresholds};
use crate::report::{self, Percentiles, Report, Sample};
use crate::stats::Hist;

pub fn merge(reports: Vec<Report>) -> Result<Report, String> {
    let mut iter = reports.into_iter();
    let mut acc = iter.next().ok_or("nothing to merge")?;
    let mut hists = Hists::decode(&acc)?;
    for (i, r) in iter.enumerate() {
        if r.scenario != acc.scenario {
            return Err(format!(
                "cannot merge a {} run into a {} run",
                r.scenario, acc.scenario
            ));
        }
        hists.add(&Hists::decode(&r)?);
        add(&mut acc, r, i + 2);
    }
    finish(&mut acc, &hists);
    Ok(acc)
}

/// The histograms of one report, decoded.
struct Hists {
    latency: Hist,
    latency_uncorrected: Option<Hist>,
    connect: Hist,
    tls: Option<Hist>,
    handshake: Hist,
}

impl Hists {
    fn decode(r: &Report) -> Result<Hists, String> {
        let h = &r.histograms;
        let opt = |s: &Option<String>| s.as_deref().map(report::decode_hist).transpose();
        Ok(Hists {
            latency: report::decode_hist(&h.latency)?,
            latency_uncorrected: opt(&h.latency_uncorrected)?,
            connect: report::decode_hist(&h.connect)?,
            tls: opt(&h.tls)?,
            handshake: report::decode_hist(&h.handshake)?,
        })
    }

    fn add(&mut self, other: &Hists) {
        let both = |a: &mut Hist, b: &Hist| {
            // Histograms decode with the bounds they were written with;
            // adding grows this one if needed (auto-resize is off, so a
            // value out of range is clamped rather than lost).
            a.auto(true);
            let _ = a.add(b);
        };
        both(&mut self.latency, &other.latency);
        both(&mut self.connect, &other.connect);
        both(&mut self.handshake, &other.handshake);
        match (&mut self.latency_uncorrected, &other.latency_uncorrected) {
            (Some(a), Some(b)) => both(a, b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
        match (&mut self.tls, &other.tls) {
            (Some(a), Some(b)) => both(a, b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
    }
}

fn add(acc: &mut Report, r: Report, run: usize) {
    add_setup(acc, &r);
    add_counts(acc, &r);
    add_window(acc, &r);
    // What is left takes `r` apart (error details, close codes, threads),
    // so it comes last.
    acc.errors.add(&r.errors);
    for (k, v) in r.error_details {
        acc.error_details.entry(k).or_insert(v);
    }
    for (k, v) in r.close_codes {
        *acc.close_codes.entry(k).or_default() += v;
    }
    acc.client_cpu_pct = acc.client_cpu_pct.max(r.client_cpu_pct);
    acc.client_threads
        .extend(r.client_threads.into_iter().map(|mut t| {
            t.name = format!("run{run}/{}", t.name);
            t
        }));
    acc.generator_bottleneck = acc.generator_bottleneck.combine(r.generator_bottleneck);
    // Several servers' CPU and memory do not add up to one figure.
    acc.server = None;
}

/// What was run: URLs, start, load, verification, window length (and how
/// well the windows overlapped).
fn add_setup(acc: &mut Report, r: &Report) {
    acc.window_overlap = Some(overlap(acc, r));
    acc.runs += r.runs;
    if acc.url != r.url {
        acc.url = format!("{} + {}", acc.url, r.url);
    }
    acc.started_unix_s = acc.started_unix_s.min(r.started_unix_s);
    acc.config.connections += r.config.connections;
    acc.config.threads += r.config.threads;
    // Merged runs are verified as their least-verified part.
    acc.config.verify = acc.config.verify.max(r.config.verify);
    acc.duration_s = acc.duration_s.max(r.duration_s);
}

/// Messages, bytes, connections and what each scenario counts.
fn add_counts(acc: &mut Report, r: &Report) {
    acc.messages_sent += r.messages_sent;
    acc.messages_received += r.messages_received;
    acc.bytes_sent += r.bytes_sent;
    acc.bytes_received += r.bytes_received;
    let c = &mut acc.connections;
    c.requested += r.connections.requested;
    c.opened += r.connections.opened;
    c.failed += r.connections.failed;
    c.held = match (c.held, r.connections.held) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    if let (Some(a), Some(b)) = (&mut acc.churn, &r.churn) {
        a.handshakes += b.handshakes;
    }
    if let (Some(a), Some(b)) = (&mut acc.chat, &r.chat) {
        a.deliveries += b.deliveries;
        a.expected_deliveries += b.expected_deliveries;
        a.drops += b.drops;
    }
    acc.greetings += r.greetings;
    match (&mut acc.deflate, &r.deflate) {
        (Some(a), Some(b)) => a.add(b),
        (None, Some(b)) => acc.deflate = Some(b.clone()),
        _ => {}
    }
}

/// The window in wall-clock time, its seconds and its stages.
fn add_window(acc: &mut Report, r: &Report) {
    acc.window_start_unix_ms = acc.window_start_unix_ms.min(r.window_start_unix_ms);
    acc.window_end_unix_ms = acc.window_end_unix_ms.max(r.window_end_unix_ms);
    add_series(&mut acc.series, &r.series);
    if let (Some(a), Some(b)) = (&mut acc.stages, &r.stages) {
        for (a, b) in a.iter_mut().zip(b) {
            a.target += b.target;
        }
    }
}

/// The share of the merged window that both windows cover (their
/// intersection over their union); the smallest such share over all runs.
fn overlap(acc: &Report, r: &Report) -> f64 {
    let (a0, a1) = (acc.window_start_unix_ms, acc.window_end_unix_ms);
    let (b0, b1) = (r.window_start_unix_ms, r.window_end_unix_ms);
    let both = a1.min(b1).saturating_sub(a0.max(b0)) as f64;
    let either = a1.max(b1).saturating_sub(a0.min(b0)) as f64;
    let this = if either > 0.0 { both / either } else { 1.0 };
    acc.window_overlap.unwrap_or(1.0).min(this)
}

/// Adds the runs' seconds up by their place in the window (the windows
/// are taken to start together, as with --start-at); latency percentiles
/// come from the added per-second histograms.
fn add_series(acc: &mut Vec<Sample>, other: &[Sample]) {
    for b in other {
        let Some(a) = acc.iter_mut().find(|a| a.t_s == b.t_s) else {
            acc.push(b.clone());
            continue;
        };
        a.sent_per_s += b.sent_per_s;
        a.received_per_s += b.received_per_s;
        a.errors.add(&b.errors);
        a.open += b.open;
        a.cpu_pct = match (a.cpu_pct, b.cpu_pct) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        a.target = match (a.target, b.target) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        };
        if let (Ok(mut h), Ok(hb)) = (
            report::decode_hist(&a.latency_hist),
            report::decode_hist(&b.latency_hist),
        ) {
            h.auto(true);
            let _ = h.add(&hb);
            let p = Percentiles::of(&h);
            (a.latency_p50_us, a.latency_p99_us, a.latency_max_us) = (p.p50, p.p99, p.max);
            a.latency_hist = report::encode_hist(&h);
        }
    }
    acc.sort_by_key(|s| s.t_s);
}

fn finish(acc: &mut Report, h: &Hists) {
    let secs = acc.duration_s;
    let per_s = |n: u64| {
        if secs > 0.0 {
            (n as f64 / secs * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    acc.rates.messages_sent_per_s = per_s(acc.messages_sent);
    acc.rates.messages_received_per_s = per_s(acc.messages_received);
    acc.rates.bytes_sent_per_s = per_s(acc.bytes_sent);
    acc.rates.bytes_received_per_s = per_s(acc.bytes_received);
    if let Some(c) = &mut acc.churn {
        c.handshakes_per_s = per_s(c.handshakes);
    }
    if let Some(c) = &mut acc.chat {
        c.deliveries_per_s = per_s(c.deliveries);
    }
    acc.latency_us = Percentiles::of(&h.latency);
    acc.latency_uncorrected_us = h.latency_uncorrected.as_ref().map(Percentiles::of);
    acc.connect_us = Percentiles::of(&h.connect);
    acc.tls_us = h.tls.as_ref().map(Percentiles::of);
    acc.handshake_us = Percentiles::of(&h.handshake);
    acc.histograms.latency = report::encode_hist(&h.latency);
    acc.histograms.latency_uncorrected = h.latency_uncorrected.as_ref().map(report::encode_hist);
    acc.histograms.connect = report::encode_hist(&h.connect);
    acc.histograms.tls = h.tls.as_ref().map(report::encode_hist);
    acc.histograms.handshake = report::encode_hist(&h.handshake);
    acc.tool = format!("wsecho-load {}", env!("CARGO_PKG_VERSION"));
    if let Some(stages) = &acc.stages {
        let bounds: Vec<(u64, u64)> = stages
            .iter()
            .map(|s| ((s.start_s * 1e9) as u64, (s.end_s * 1e9) as u64))
            .collect();
        let targets: Vec<u64> = stages.iter().map(|s| s.target).collect();
        acc.stages = Some(crate::series::stage_figures(&acc.series, &bounds, &targets));
    }
}

/// Why the run is not clean (empty: exit 0).
pub fn verdict(r: &Report, t: &Thresholds) -> Vec<String> {
    let mut reasons = Vec::new();
    if r.errors.total() > 0 {
        let kinds: Vec<String> = r
            .errors
            .nonzero()
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect();
        reasons.push(format!("errors: {}", kinds.join(", ")));
    }
    let nothing = match r.scenario {
        Scenario::Connect => r.churn.as_ref().is_none_or(|c| c.handshakes == 0),
        Scenario::Idle => r.connections.held.unwrap_or(0) == 0,
        Scenario::Echo | Scenario::Chat => r.messages_received == 0,
    };
    if nothing {
        reasons.push("nothing completed in the counted window".to_owned());
    }
    if let Some(max) = t.max_p99
        && r.latency_us.count > 0
        && r.latency_us.p99 as u128 > max.as_micros()
    {
        reasons.push(format!(
            "p99 latency {} µs is above --max-p99 {} µs",
            r.latency_us.p99,
            max.as_micros()
        ));
    }
    if let (Some(min), Some((rate, what))) = (t.min_rate, r.primary_rate())
        && rate < min as f64
    {
        reasons.push(format!("{rate:.1} {what} is below --min-rate {min}"));
    }
    if t.per_stage {
        for (i, s) in r.stages.iter().flatten().enumerate() {
            let n = i + 1;
            if let Some(max) = t.max_p99
                && s.latency_us.count > 0
                && s.latency_us.p99 as u128 > max.as_micros()
            {
                reasons.push(format!(
                    "stage {n}: p99 latency {} µs is above --max-p99 {} µs",
                    s.latency_us.p99,
                    max.as_micros()
                ));
            }
            if let Some(min) = t.min_rate
                && s.received_per_s < min as f64
            {
                reasons.push(format!(
                    "stage {n}: {:.1}/s is below --min-rate {min}",
                    s.received_per_s
                ));
            }
        }
    }
    reasons
}
