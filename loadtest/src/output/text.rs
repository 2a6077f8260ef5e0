//! The summary table printed on stdout at the end of a run (or a merge).

#![allow(clippy::print_stdout)]

use std::fmt::Write;

use crate::cli::Scenario;
use crate::cpu::BOTTLENECK_PCT;
use crate::output::{mb_per_s, si};
use crate::report::{Bottleneck, Percentiles, Report};

pub fn print(report: &Report) {
    print!("{}", render(report));
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let o = &mut out;
    header(o, r);
    traffic(o, r);
    latencies(o, r);
    stages(o, r);
    problems(o, r);
    cpu(o, r);
    out
}

fn header(o: &mut String, r: &Report) {
    let c = &r.config;
    let mode = match (r.scenario, c.in_flight, c.rate) {
        (Scenario::Echo, Some(k), _) if c.stages.is_some() => {
            format!("closed loop, {k} in flight per connection, connections following --stages")
        }
        (Scenario::Echo, Some(k), _) => format!("closed loop, {k} in flight per connection"),
        (Scenario::Echo, None, Some(rate)) => format!("open loop, {rate} msg/s in total"),
        (Scenario::Echo, None, None) if c.rate_stages.is_some() => {
            "open loop following --rate-stages".to_owned()
        }
        (Scenario::Chat, _, rate) => format!(
            "{} rooms, {} msg/s sent in total",
            c.rooms.unwrap_or(1),
            rate.map_or("default".into(), |r| r.to_string())
        ),
        (s, _, _) => s.to_string(),
    };
    let mode = match c.pace_slack_us {
        Some(us) if us > 0 => format!("{mode}, up to {us} µs early"),
        _ => mode,
    };
    let kind = match (c.payload, c.text) {
        (crate::cli::PayloadKind::TextJson, _) => "text-json",
        (_, true) => "text",
        (_, false) => "binary",
    };
    let _ = writeln!(o, "\n{} · {} {}", r.tool, r.scenario, r.url);
    let _ = writeln!(
        o,
        "{} connections{}, {} B {kind}, {mode}, {} thread{}{}",
        c.connections,
        match c.streams_per_connection {
            Some(n) => format!(" over {} ({n} per TCP connection)", c.protocol.name()),
            None => String::new(),
        },
        c.size,
        c.threads,
        if c.threads == 1 { "" } else { "s" },
        if r.runs > 1 {
            format!(", {} runs merged", r.runs)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "counted window {:.2} s after {:.2} s of warm-up; {}\n",
        r.duration_s,
        c.warmup_s,
        c.verify.describe()
    );
}

fn traffic(o: &mut String, r: &Report) {
    let _ = writeln!(o, "{:<16}{:>16}{:>16}", "", "sent", "received");
    let _ = writeln!(
        o,
        "{:<16}{:>16}{:>16}",
        "messages", r.messages_sent, r.messages_received
    );
    let _ = writeln!(
        o,
        "{:<16}{:>16}{:>16}",
        "messages/s",
        si(r.rates.messages_sent_per_s),
        si(r.rates.messages_received_per_s)
    );
    let _ = writeln!(
        o,
        "{:<16}{:>16}{:>16}",
        "payload bytes/s",
        mb_per_s(r.rates.bytes_sent_per_s),
        mb_per_s(r.rates.bytes_received_per_s)
    );
    if let Some(c) = &r.churn {
        let _ = writeln!(
            o,
            "handshakes      {:>16}   ({:.1}/s)",
            c.handshakes, c.handshakes_per_s
        );
    }
    if let Some(c) = &r.chat {
        let _ = writeln!(
            o,
            "deliveries      {:>16}   ({:.1}/s, {} expected, {} dropped)",
            c.deliveries, c.deliveries_per_s, c.expected_deliveries, c.drops
        );
    }
    if let Some(held) = r.connections.held {
        let _ = writeln!(
            o,
            "held to the end {:>16}   of {}",
            held, r.connections.requested
        );
    }
    let _ = writeln!(o);
}

fn latencies(o: &mut String, r: &Report) {
    let what = match r.scenario {
        Scenario::Chat => "send→delivery",
        _ if r.latency_uncorrected_us.is_some() => "RTT (corrected)",
        _ => "round trip",
    };
    let _ = writeln!(
        o,
        "{:<18}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}{:>11}",
        "latency (µs)", "p50", "p90", "p99", "p99.9", "max", "mean", "count"
    );
    row(o, what, &r.latency_us);
    if let Some(u) = &r.latency_uncorrected_us {
        row(o, "RTT (uncorrected)", u);
    }
    row(o, "TCP connect", &r.connect_us);
    if let Some(t) = &r.tls_us {
        row(o, "TLS handshake", t);
    }
    row(o, "WS handshake", &r.handshake_us);
    let _ = writeln!(o);
}

/// With stages: each stage's target beside what was achieved.
fn stages(o: &mut String, r: &Report) {
    let Some(stages) = &r.stages else { return };
    let connections = r.config.stages.is_some();
    let what = if connections { "connections" } else { "msg/s" };
    let _ = writeln!(
        o,
        "{:<8}{:>16}{:>14}{:>14}{:>12}{:>10}",
        "stage", "window (s)", "target", "achieved", "echoes/s", "p99 µs"
    );
    for (i, s) in stages.iter().enumerate() {
        let achieved = if connections {
            format!("{:.1}", s.mean_open)
        } else {
            si(s.received_per_s)
        };
        let _ = writeln!(
            o,
            "{:<8}{:>16}{:>14}{:>14}{:>12}{:>10}",
            i + 1,
            format!("{:.1}–{:.1}", s.start_s, s.end_s),
            format!("{} {what}", si(s.target as f64)),
            achieved,
            si(s.received_per_s),
            s.latency_us.p99
        );
    }
    let _ = writeln!(
        o,
        "(achieved: mean {} over the stage; a ramp's mean is about half way)\n",
        if connections {
            "connections open"
        } else {
            "echoes/s"
        }
    );
}

fn row(o: &mut String, name: &str, p: &Percentiles) {
    if p.count == 0 {
        let _ = writeln!(o, "{name:<18}{:>9}", "-");
        return;
    }
    let _ = writeln!(
        o,
        "{name:<18}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10.1}{:>11}",
        p.p50, p.p90, p.p99, p.p999, p.max, p.mean, p.count
    );
}

fn problems(o: &mut String, r: &Report) {
    if r.errors.total() == 0 {
        let _ = writeln!(o, "errors: none");
    } else {
        let _ = writeln!(o, "errors:");
        for (k, n) in r.errors.nonzero() {
            let detail = r.error_details.get(&k).map_or("", String::as_str);
            let _ = writeln!(o, "  {:<14}{:>10}   {detail}", k.name(), n);
        }
    }
    let codes: Vec<String> = r
        .close_codes
        .iter()
        .map(|(c, n)| format!("{c} ×{n}"))
        .collect();
    let codes = if codes.is_empty() {
        "none".to_owned()
    } else {
        codes.join(", ")
    };
    let _ = writeln!(o, "close codes from the server: {codes}");
    let c = &r.connections;
    let _ = writeln!(
        o,
        "connections: {} requested, {} opened, {} failed",
        c.requested, c.opened, c.failed
    );
    if r.greetings > 0 {
        let _ = writeln!(
            o,
            "greetings (unsolicited first messages, not echoes): {}",
            r.greetings
        );
    }
    if let Some(d) = &r.deflate {
        deflate(o, d);
    }
}

fn deflate(o: &mut String, d: &crate::report::Deflate) {
    use crate::report::DeflateOutcome as Out;
    let outcome = match d.outcome {
        Out::Negotiated => format!("negotiated on all {} connections", d.negotiated),
        Out::Declined => format!(
            "declined by the server on all {} connections (the run was uncompressed)",
            d.declined
        ),
        Out::Mixed => format!(
            "negotiated on {} connections, declined on {}",
            d.negotiated, d.declined
        ),
        Out::Unknown => "no connection opened".to_owned(),
    };
    let _ = writeln!(o, "permessage-deflate: {outcome}");
    let _ = writeln!(o, "  offered:  {}", d.offered);
    if let Some(answer) = &d.answer {
        let _ = writeln!(o, "  answered: {answer}");
    }
    let ratio = |plain: u64, wire: u64| {
        if wire == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}:1", plain as f64 / wire as f64)
        }
    };
    if d.negotiated > 0 {
        let _ = writeln!(
            o,
            "  payload bytes, whole run: sent {} -> {} on the wire ({}), received {} <- {} ({})",
            d.plain_bytes_sent,
            d.wire_bytes_sent,
            ratio(d.plain_bytes_sent, d.wire_bytes_sent),
            d.plain_bytes_received,
            d.wire_bytes_received,
            ratio(d.plain_bytes_received, d.wire_bytes_received),
        );
    }
}

fn cpu(o: &mut String, r: &Report) {
    let threads: Vec<String> = r
        .client_threads
        .iter()
        .map(|t| format!("{} {:.1} %", t.name, t.cpu_pct))
        .collect();
    let _ = writeln!(
        o,
        "\ngenerator CPU: {:.1} % of a core in total; {}",
        r.client_cpu_pct,
        if threads.is_empty() {
            "no per-thread figures".to_owned()
        } else {
            threads.join(", ")
        }
    );
    if let Some(s) = &r.server {
        let cpu = s.cpu_pct.map_or("?".into(), |p| format!("{p:.1} %"));
        let rss = match (s.rss_before_kib, s.rss_after_kib) {
            (Some(a), Some(b)) => format!("RSS {a} KiB → {b} KiB"),
            _ => "RSS unknown".to_owned(),
        };
        let per = s
            .rss_per_connection_bytes
            .map_or(String::new(), |b| format!(" ({b:.0} B per connection)"));
        let _ = writeln!(o, "server (pid {}): CPU {cpu}, {rss}{per}", s.pid);
    }
    if r.generator_bottleneck == Bottleneck::Unknown {
        let _ = writeln!(
            o,
            "generator bottleneck: unknown (no CPU sample over the window): do not read these \
             numbers as the server's alone"
        );
    }
    if r.generator_bottleneck == Bottleneck::Yes {
        let _ = writeln!(
            o,
            "WARNING: a wsecho-load worker thread was at or above {BOTTLENECK_PCT:.0} % of a core: the \
             generator, not the server, may have set these numbers. Give it more --threads (and cores), \
             or spread the load over several machines and `wsecho-load merge` the results."
        );
    }
}
