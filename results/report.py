"""Turns the raw wsecho-load results of results/matrix.py into results.json,
summary.md, SVG charts, and the README's results section."""

from __future__ import annotations

import html
import statistics
from pathlib import Path

COLORS = {"wsecho": "#2a6fdb", "fastwebsockets": "#e8832a", "tokio-tungstenite": "#3a9d5d", "node-ws": "#8e5ab5"}
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def cpu_us_per_msg(r: dict) -> float | None:
    server = r.get("server") or {}
    if server.get("cpu_pct") is None or not r["messages_received"]:
        return None
    return server["cpu_pct"] / 100 * r["duration_s"] * 1e6 / r["messages_received"]


def summarize(found: dict, meta: dict, names: list[str]) -> dict:
    rows = []
    for case, by_server in found.items():
        if case in ("rtt", "idle", "chat"):
            continue
        conns, size = (int(x) for x in case.split("x"))
        row = {"case": case, "connections": conns, "size": size, "servers": {}}
        for name in names:
            runs = by_server.get(name, [])
            rates = [r["rates"]["messages_received_per_s"] for r in runs]
            cpus = [c for c in map(cpu_us_per_msg, runs) if c is not None]
            row["servers"][name] = {
                "msgs_per_s": rates,
                "median": median(rates),
                "min": min(rates, default=0),
                "max": max(rates, default=0),
                "cpu_us_per_msg": median(cpus) if cpus else None,
                "server_cpu_pct": median([r["server"]["cpu_pct"] or 0 for r in runs if r.get("server")]),
                "load_cpu_pct": median([r["client_cpu_pct"] for r in runs]),
                "generator_bottleneck": any(r["generator_bottleneck"] for r in runs),
                "errors": sum(sum(r["errors"].values()) for r in runs),
                "exit_statuses": sorted({r["exit_status"] for r in runs}),
            }
        base = row["servers"][names[0]]["median"] or 1
        for name in names:
            row["servers"][name]["ratio"] = row["servers"][name]["median"] / base
        rows.append(row)
    rtt = {}
    for name, runs in found.get("rtt", {}).items():
        rtt[name] = {k: median([r["latency_us"][k] for r in runs]) for k in ("p50", "p90", "p99", "p999", "max")}
        rtt[name]["errors"] = sum(sum(r["errors"].values()) for r in runs)
    idle = {}
    for name, r in found.get("idle", {}).items():
        server = r.get("server") or {}
        idle[name] = {
            "connections": r["connections"].get("held", r["connections"]["opened"]),
            "rss_before_kib": server.get("rss_before_kib"),
            "rss_after_kib": server.get("rss_after_kib"),
            "kib_per_connection": (server.get("rss_per_connection_bytes") or 0) / 1024,
        }
    chat = {}
    for case, r in found.get("chat", {}).items():
        peers, rooms = (int(x) for x in case.split("x"))
        chat[case] = {
            "peers": peers, "rooms": rooms,
            "sent_per_s": r["rates"]["messages_sent_per_s"],
            "deliveries_per_s": r["rates"]["messages_received_per_s"],
            "latency_us": r["latency_us"],
            "errors": sum(r["errors"].values()),
            "server_cpu_pct": (r.get("server") or {}).get("cpu_pct"),
        }
    return {"meta": meta, "throughput": rows, "rtt": rtt, "idle": idle, "chat": chat, "servers": names}


def fmt_rate(x: float) -> str:
    return f"{x / 1000:,.1f}k" if x >= 1000 else f"{x:,.0f}"


def size_label(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


def throughput_table(s: dict) -> list[str]:
    names = s["servers"]
    lines = ["| connections × payload | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in s["throughput"]:
        cells = []
        for name in names:
            v = row["servers"][name]
            mark = " ⚠" if v["generator_bottleneck"] else ""
            ratio = "" if name == names[0] else f" ({v['ratio']:.2f}×)"
            cells.append(f"**{fmt_rate(v['median'])}**{ratio}<br>{fmt_rate(v['min'])}–{fmt_rate(v['max'])}{mark}")
        lines.append(f"| {row['connections']} × {size_label(row['size'])} | " + " | ".join(cells) + " |")
    return lines


def markdown(s: dict) -> str:
    m, names = s["meta"], s["servers"]
    out = [f"# wsecho results, {m['date'][:10]}", ""]
    if m["quick"]:
        out += ["**Quick run** (1 repetition, short runs): a pipeline check, not a measurement.", ""]
    out += [f"Messages per second echoed and verified by wsecho-load (median of {m['repetitions']} interleaved "
            "runs, ratio to wsecho in brackets, min–max below). ⚠ marks a case where a wsecho-load thread was "
            "at 90 % of its core or more: there the generator, not the server, may have set the pace.", ""]
    out += throughput_table(s) + ["", "![messages per second](throughput.svg)", ""]
    out += ["## Server CPU per echoed message", "", "Server CPU time (user + system, from /proc) over the counted "
            "window divided by the messages echoed in it, in µs; and the server's CPU use.", "",
            "| connections × payload | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in s["throughput"]:
        cells = []
        for name in names:
            v = row["servers"][name]
            cpu = "–" if v["cpu_us_per_msg"] is None else f"{v['cpu_us_per_msg']:.2f} µs"
            cells.append(f"{cpu} ({v['server_cpu_pct']:.0f} %)")
        lines = f"| {row['connections']} × {size_label(row['size'])} | " + " | ".join(cells) + " |"
        out.append(lines)
    out += ["", "## Memory per idle connection", "",
            "Server RSS growth while wsecho-load holds 10,000 idle WebSocket connections, per connection.", "",
            "| server | connections held | RSS before → after | KiB per connection |", "|---|---|---|---|"]
    for name in names:
        v = s["idle"].get(name)
        if v:
            out.append(f"| {name} | {v['connections']:,} | {v['rss_before_kib'] or 0:,} → {v['rss_after_kib'] or 0:,} KiB "
                       f"| {v['kib_per_connection']:.1f} |")
    out += ["", "## Latency, one connection", "",
            "Round trip of a 20-byte message, one connection, one message in flight (µs, median over runs).", "",
            "| server | p50 | p90 | p99 | p99.9 | max |", "|---|---|---|---|---|---|"]
    for name in names:
        v = s["rtt"].get(name)
        if v:
            out.append(f"| {name} | {v['p50']:.0f} | {v['p90']:.0f} | {v['p99']:.0f} | {v['p999']:.0f} | {v['max']:.0f} |")
    if s.get("chat"):
        out += ["", "## Chat rooms (wsecho)", "",
                "`--scenario chat`: every peer sends 10 messages/s to its room; each message is delivered to every "
                "other peer. Latency is send → delivery (µs).", "",
                "| peers × rooms | sent/s | deliveries/s | p50 | p99 | p99.9 | max | errors | server CPU |",
                "|---|---|---|---|---|---|---|---|---|"]
        for v in s["chat"].values():
            l = v["latency_us"]
            out.append(f"| {v['peers']} × {v['rooms']} | {v['sent_per_s']:,.0f} | {v['deliveries_per_s']:,.0f} | "
                       f"{l['p50']:.0f} | {l['p99']:.0f} | {l['p999']:.0f} | {l['max']:.0f} | {v['errors']} | "
                       f"{v['server_cpu_pct'] or 0:.0f} % |")
    problems = [(row["case"], n, v) for row in s["throughput"] for n, v in row["servers"].items()
                if v["errors"] or v["exit_statuses"] != [0]]
    out += ["", "## Errors", ""]
    out += [f"- {case} {n}: {v['errors']} verification errors, wsecho-load exit status {v['exit_statuses']}"
            for case, n, v in problems] or ["None: every echo in every run was verified (wsecho-load exit status 0)."]
    bottlenecks = [f"{row['case']} {n} (wsecho-load at {v['load_cpu_pct']:.0f} %)" for row in s["throughput"]
                   for n, v in row["servers"].items() if v["generator_bottleneck"]]
    out += ["", "## Generator bottleneck", ""]
    out += ["wsecho-load reported itself the bottleneck in: " + "; ".join(bottlenecks) + "."] if bottlenecks else \
        ["wsecho-load never reported itself the bottleneck."]
    out += ["", "## How this was made", "",
            f"- Machine: {m['machine']['cpu']}, {m['machine']['cores']} CPUs, {m['machine']['kernel']}",
            f"- {m['machine']['rustc']}; commit {m['machine']['commit']}; {m['machine']['load']}",
            "- Each run: a fresh server process pinned to CPU 0, wsecho-load pinned to CPU 1 with one thread, "
            "closed loop (one message in flight per connection), binary messages, warm-up excluded.",
            f"- Load: `{m['load_command']}`",
            "- Idle: the same with `--scenario idle -c 10000`.",
            f"- Regenerate: `results/run.sh` (took {m['wall_s']} s).", "", "| server | version | command |", "|---|---|---|"]
    for name in names:
        out.append(f"| {name} | {m['servers'][name]} | `{m['commands'][name]}` |")
    return "\n".join(out) + "\n"


def bar_chart(s: dict, title: str, value, unit: str) -> str:
    """Small multiples: one panel per case, one bar per server, min-max whiskers."""
    names, rows = s["servers"], s["throughput"]
    pw, ph, cols = 300, 210, 3
    w, h = pw * cols, 60 + ph * ((len(rows) + cols - 1) // cols) + 30
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
         'font-family="sans-serif" font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="16">{html.escape(title)}</text>']
    for i, name in enumerate(names):
        x = 20 + i * 200
        e.append(f'<rect x="{x}" y="34" width="12" height="12" fill="{COLORS.get(name, "#777")}"/>'
                 f'<text x="{x + 16}" y="45">{html.escape(name)}</text>')
    for k, row in enumerate(rows):
        ox, oy = (k % cols) * pw, 60 + (k // cols) * ph
        vals = [value(row["servers"][n]) for n in names]
        top = max([v[2] for v in vals] + [1e-9]) * 1.1
        e.append(f'<text x="{ox + pw / 2}" y="{oy + 16}" text-anchor="middle">'
                 f'{row["connections"]} conns × {size_label(row["size"])}</text>')
        base, bh, bw = oy + ph - 30, ph - 60, (pw - 40) / len(names)
        e.append(f'<line x1="{ox + 20}" y1="{base}" x2="{ox + pw - 20}" y2="{base}" stroke="#999"/>')
        for j, (name, (mid, lo, hi)) in enumerate(zip(names, vals)):
            x, y = ox + 20 + j * bw + 6, base - bh * mid / top
            e.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 12:.1f}" height="{base - y:.1f}" '
                     f'fill="{COLORS.get(name, "#777")}"><title>{html.escape(name)}: {mid:,.2f} {unit}</title></rect>')
            cx, ylo, yhi = x + (bw - 12) / 2, base - bh * lo / top, base - bh * hi / top
            e.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="#333"/>')
            label = fmt_rate(mid) if unit == "msg/s" else f"{mid:.2f}"
            e.append(f'<text x="{cx:.1f}" y="{yhi - 4:.1f}" text-anchor="middle" font-size="10">{label}</text>')
    e.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" fill="#555">{html.escape(unit)}; '
             f'{html.escape(s["meta"]["date"][:10])}, {html.escape(s["meta"]["machine"]["cpu"])}</text>')
    return "\n".join(e + ["</svg>"]) + "\n"


def write(out: Path, s: dict) -> None:
    (out / "summary.md").write_text(markdown(s))
    (out / "throughput.svg").write_text(bar_chart(
        s, "Messages per second echoed (median, min–max)", lambda v: (v["median"], v["min"], v["max"]), "msg/s"))
    cpu = lambda v: (v["cpu_us_per_msg"] or 0,) * 3  # noqa: E731
    (out / "cpu.svg").write_text(bar_chart(s, "Server CPU per echoed message", cpu, "µs per message"))


def update_readme(readme: Path, out: Path, s: dict) -> None:
    rel = out.relative_to(readme.parent)
    block = [README_BEGIN, f"Measured {s['meta']['date'][:10]} on {s['meta']['machine']['cpu']} "
             f"({s['meta']['machine']['cores']} CPUs): messages per second echoed and verified, median of "
             f"{s['meta']['repetitions']} interleaved runs, ratio to wsecho in brackets, min–max below; server on "
             "one core, wsecho-load on the other. Full results, CPU per message, memory per connection and "
             f"latency: [{rel}/summary.md]({rel}/summary.md). Regenerate with `results/run.sh`.", ""]
    block += throughput_table(s) + ["", f"![messages per second]({rel}/throughput.svg)", README_END]
    text = readme.read_text()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + "\n".join(block) + rest.split(README_END, 1)[1]
    else:
        text += "\n## Results\n\n" + "\n".join(block) + "\n"
    readme.write_text(text)
