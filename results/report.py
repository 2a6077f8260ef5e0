"""Turns the raw wsecho-load results of results/matrix.py into results.json,
summary.md, SVG charts, and the README's results section."""

from __future__ import annotations

import html
import statistics
from pathlib import Path

COLORS = {"wsecho": "#2a6fdb", "fastwebsockets": "#e8832a", "tokio-tungstenite": "#3a9d5d", "node-ws": "#8e5ab5",
          "uWebSockets": "#c0392b", "sockudo-ws": "#16a2b8", "raw-tcp": "#555555"}
CEILING = "raw-tcp"
PLAN = (100_000, 1_000_000)
# Fixed rate: a median round trip above this means the echo was held back.
# At 40k msg/s over 100 connections each sends every 2.5 ms; servers that
# answer at once show 0.1-0.2 ms. fastwebsockets' example leaves Nagle on
# (no set_nodelay): its echoes wait ~2.6 ms for the delayed ACK and leave
# several per segment, which made it look 30 % cheaper under the 5 ms this
# was before.
BEHIND_P50_US = 1_000
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"



def bottleneck(runs: list[dict]) -> str:
    """Whether the generator may have set the pace: "yes" if it did in any
    run, "unknown" if a run could not tell (wsecho-load's CPU sample was
    missed), else "no". wsecho-load writes the word; load_test runs a bool."""
    def one(r: dict) -> str:
        v = r.get("generator_bottleneck")
        if isinstance(v, bool):
            return "yes" if v else "no"
        return v if v in ("yes", "no") else "unknown"
    words = {one(r) for r in runs}
    return "yes" if "yes" in words else "unknown" if "unknown" in words else "no"

def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def cpu_us_per_msg(r: dict) -> float | None:
    server = r.get("server") or {}
    if server.get("cpu_pct") is None or not r["messages_received"]:
        return None
    return server["cpu_pct"] / 100 * r["duration_s"] * 1e6 / r["messages_received"]


def rows(matrix: dict, names: list[str]) -> list[dict]:
    """{case: {server: [runs]}} -> one row per case: medians, min-max, CPU per
    message, ratios to the first server (wsecho) and to the raw TCP ceiling."""
    out = []
    for case, by_server in matrix.items():
        conns, size = (int(x) for x in case.split("x"))
        row = {"case": case, "connections": conns, "size": size, "servers": {}}
        for name in names:
            runs = by_server.get(name, [])
            if not runs:
                continue
            rates = [r["rates"]["messages_received_per_s"] for r in runs]
            cpus = [c for c in map(cpu_us_per_msg, runs) if c is not None]
            lat = [r["latency_us"] for r in runs if r.get("latency_us")]
            row["servers"][name] = {
                "msgs_per_s": rates,
                "median": median(rates),
                "min": min(rates, default=0),
                "max": max(rates, default=0),
                "cpu_us_per_msg": median(cpus) if cpus else None,
                "cpu_us_per_msg_runs": cpus,
                "server_cpu_pct": median([r["server"]["cpu_pct"] or 0 for r in runs if r.get("server")]),
                "load_cpu_pct": median([r["client_cpu_pct"] for r in runs]),
                "latency_us": {k: median([l[k] for l in lat]) for k in ("p50", "p99")} if lat else None,
                "generator_bottleneck": bottleneck(runs),
                "errors": sum(sum(r["errors"].values()) for r in runs),
                "exit_statuses": sorted({r["exit_status"] for r in runs}),
            }
        present = [n for n in names if n in row["servers"]]
        base = row["servers"][present[0]] if present else None
        ceiling = row["servers"].get(CEILING)
        for v in row["servers"].values():
            v["ratio"] = v["median"] / base["median"] if base and base["median"] else None
            v["cpu_ratio"] = (v["cpu_us_per_msg"] / base["cpu_us_per_msg"]
                              if base and base["cpu_us_per_msg"] and v["cpu_us_per_msg"] else None)
            v["ceiling_ratio"] = v["median"] / ceiling["median"] if ceiling and ceiling["median"] else None
            v["ceiling_cpu_ratio"] = (v["cpu_us_per_msg"] / ceiling["cpu_us_per_msg"]
                                      if ceiling and ceiling["cpu_us_per_msg"] and v["cpu_us_per_msg"] else None)
        out.append(row)
    return out


def kernel_per_socket(idle: dict) -> dict:
    """The kernel's own memory for one idle TCP socket: the sizes of the slab
    objects each socket holds (a tcp_sock, a socket inode, a struct file, a
    dentry, an epoll item: /proc/slabinfo), and, as a check, the slab growth
    measured while the most connections were held (both ends were on this
    host, so divided by twice the connections). The larger of the two is
    used for the plan. Idle sockets hold no buffer memory: skbs come and go
    with data."""
    caches, measured = {}, []
    for count in sorted(idle, key=int):
        for r in idle[count].values():
            k = r.get("kernel") or {}
            caches = k.get("before", {}).get("caches") or caches
    if idle:
        top = max(idle, key=int)
        # Only runs that held (nearly) every connection: lost ones skew it.
        measured = [r["kernel"]["slab_bytes_per_socket"] for r in idle[top].values()
                    if (r.get("kernel") or {}).get("slab_bytes_per_socket")
                    and r["connections"].get("held", 0) >= 0.99 * int(top)]
    objects = sum(c["objsize"] for c in caches.values())
    slab = median(measured) if measured else None
    return {"objects": {n: c["objsize"] for n, c in caches.items()}, "objects_bytes": objects,
            "measured_slab_bytes": slab, "bytes": max(objects, slab or 0)}


# What a chat case's name after its shape stands for: matrix.CHAT names its
# cases with these keys (the runs before them were all 20 B binary).
CHAT_PAYLOADS = {"": ", 20 B binary", "json": ", 1 KiB JSON text",
                 "json-deflate": ", 1 KiB JSON text, permessage-deflate"}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f} %"


def cpu_clock(meta: dict) -> str:
    """How the run read the server's CPU time."""
    threads = ("its threads' nanoseconds on a CPU summed (/proc/PID/task/*/schedstat), or its user + system ticks "
               "(/proc/PID/stat) when more than two ticks went with threads that exited in the window")
    clock = meta.get("server_cpu_clock")
    if clock == "cpuclock":
        return f"the whole process, in nanoseconds: its CPU clock for load_test runs; for wsecho-load runs {threads}"
    if clock == "schedstat":
        return f"the whole process: {threads}"
    return "user + system of the whole process, from /proc/PID/stat"


def cpu_clocks(found) -> dict:
    """How many of the run's wsecho-load results read the server's CPU in
    nanoseconds and how many fell back to ticks (their server.cpu_clock;
    results from before that field count as neither)."""
    counts = {"ns": 0, "ticks": 0}
    stack = [found]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            server = item.get("server")
            if isinstance(server, dict) and server.get("cpu_clock") in counts:
                counts[server["cpu_clock"]] += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return counts


def clock_count(meta: dict) -> str:
    """A sentence on how many wsecho-load results fell back to ticks."""
    c = meta.get("cpu_clocks")
    if not c:
        return ""
    total = c["ns"] + c["ticks"]
    if not c["ticks"]:
        return f" All {total} wsecho-load results of this run that read the server's CPU read it in nanoseconds."
    return (f" {c['ticks']} of this run's {total} wsecho-load results fell back to ticks "
            "(a server thread that exited in the window took work with it).")


def summarize(found: dict, meta: dict, names: list[str]) -> dict:
    rtt = {}
    for name, runs in found.get("rtt", {}).items():
        rtt[name] = {k: median([r["latency_us"][k] for r in runs]) for k in ("p50", "p90", "p99", "p999", "max")}
        rtt[name]["errors"] = sum(sum(r["errors"].values()) for r in runs)
    idle: dict = {}
    for count, by_server in found.get("idle", {}).items():
        for name, r in by_server.items():
            server = r.get("server") or {}
            idle.setdefault(name, {})[count] = {
                "connections": r["connections"].get("held", r["connections"]["opened"]),
                "requested": int(count),
                "rss_before_kib": server.get("rss_before_kib"),
                "rss_after_kib": server.get("rss_after_kib"),
                "kib_per_connection": (server.get("rss_per_connection_bytes") or 0) / 1024,
                "errors": sum(r["errors"].values()),
            }
    kernel = kernel_per_socket(found.get("idle", {}))
    plan = {}
    for name, by_count in idle.items():
        # The most connections held cleanly (a run that lost some overstates RSS per connection).
        clean = [c for c, v in by_count.items() if v["connections"] >= 0.99 * v["requested"]] or list(by_count)
        top = by_count[max(clean, key=int)]
        user = top["kib_per_connection"] * 1024
        plan[name] = {"from_connections": top["connections"], "user_bytes": user,
                      "kernel_bytes": kernel["bytes"],
                      **{str(n): {"user_gib": user * n / 2**30, "kernel_gib": kernel["bytes"] * n / 2**30,
                                  "total_gib": (user + kernel["bytes"]) * n / 2**30} for n in PLAN}}
    chat = {}
    for case, runs in found.get("chat", {}).items():
        runs = runs if isinstance(runs, list) else [runs]  # runs before 2026-12-03-3: one per case
        shape, _, label = case.partition("-")
        peers, rooms = (int(x) for x in shape.split("x"))
        cpus = [c for c in ((r.get("server") or {}).get("cpu_pct") for r in runs) if c is not None]
        loads = [c for c in (r.get("client_cpu_pct") for r in runs) if c is not None]
        chat[case] = {
            "peers": peers, "rooms": rooms, "payload": label, "runs": len(runs),
            "sent_per_s": median([r["rates"]["messages_sent_per_s"] for r in runs]),
            "deliveries_per_s": median([r["rates"]["messages_received_per_s"] for r in runs]),
            "latency_us": {k: median([r["latency_us"][k] for r in runs]) for k in ("p50", "p99", "p999", "max")},
            "latency_range_us": {k: [min(r["latency_us"][k] for r in runs), max(r["latency_us"][k] for r in runs)]
                                 for k in ("p50", "p99")},
            "errors": sum(sum(r["errors"].values()) for r in runs),
            "server_cpu_pct": median(cpus) if cpus else None,
            "load_cpu_pct": median(loads) if loads else None,
        }
    http2 = {}
    for case, by_proto in found.get("http2", {}).items():
        conns, size = (int(x) for x in case.split("x"))
        http2[case] = {"connections": conns, "size": size, "protocols": {
            proto: {"messages_per_s": median([r["rates"]["messages_received_per_s"] for r in runs]),
                    "tcp_connections": median([r["connect_us"]["count"] for r in runs]),
                    **{k: median([r["latency_us"][k] for r in runs]) for k in ("p50", "p99")},
                    "server_cpu_us_per_msg": median([c for c in map(cpu_us_per_msg, runs) if c is not None]),
                    "errors": sum(sum(r["errors"].values()) for r in runs),
                    "exit_statuses": [r["exit_status"] for r in runs]}
            for proto, runs in by_proto.items()}}
    clocks = cpu_clocks(found)
    # Only where results recorded their clock: older runs remake unchanged.
    meta = {**meta, "cpu_clocks": clocks} if any(clocks.values()) else meta
    return {"meta": meta, "servers": names,
            "throughput": rows(found.get("echo", {}), names),
            "throughput_load_test": rows(found.get("loadtest", {}), names),
            "rate": rows(found.get("rate", {}), names),
            "rtt": rtt, "idle": idle, "kernel_per_socket": kernel, "plan": plan, "chat": chat,
            "http2": http2, "deflate": deflate_summary(found.get("deflate") or {})}


def deflate_summary(found: dict) -> dict:
    """The permessage-deflate part: per server and mode ("deflate": the
    client offered it; "plain": it did not), medians over runs."""
    echo: dict = {}
    for name, by_mode in found.get("echo", {}).items():
        for mode, runs in by_mode.items():
            rates = [r["rates"]["messages_received_per_s"] for r in runs]
            cpus = [c for c in map(cpu_us_per_msg, runs) if c is not None]
            servers = [r.get("server") or {} for r in runs]
            rss = [s["rss_after_kib"] for s in servers if s.get("rss_after_kib")]
            d = [r.get("deflate") or {} for r in runs]
            ratio = [x["plain_bytes_sent"] / x["wire_bytes_sent"] for x in d if x.get("wire_bytes_sent")]
            ratio_in = [x["plain_bytes_received"] / x["wire_bytes_received"] for x in d if x.get("wire_bytes_received")]
            echo.setdefault(name, {})[mode] = {
                "median": median(rates), "min": min(rates, default=0), "max": max(rates, default=0),
                "cpu_us_per_msg": median(cpus) if cpus else None,
                "server_cpu_pct": median([s["cpu_pct"] for s in servers if s.get("cpu_pct") is not None]),
                "rss_after_kib": median(rss) if rss else None,
                "outcomes": sorted({x.get("outcome", "not offered") for x in d}),
                "answer": next((x["answer"] for x in d if x.get("answer")), None),
                "ratio_sent": median(ratio) if ratio else None,
                "ratio_received": median(ratio_in) if ratio_in else None,
                "load_cpu_pct": median([r["client_cpu_pct"] for r in runs]),
                "loadavg_1m_max": max((r["loadavg_1m"] for r in runs if "loadavg_1m" in r), default=None),
                "generator_bottleneck": bottleneck(runs),
                "errors": sum(sum(r["errors"].values()) for r in runs),
                "exit_statuses": [r["exit_status"] for r in runs],
            }
    idle: dict = {}
    for name, by_mode in found.get("idle", {}).items():
        for mode, r in by_mode.items():
            server = r.get("server") or {}
            idle.setdefault(name, {})[mode] = {
                "connections": r["connections"].get("held", r["connections"]["opened"]),
                "requested": r["connections"]["requested"],
                "rss_before_kib": server.get("rss_before_kib"),
                "rss_after_kib": server.get("rss_after_kib"),
                "bytes_per_connection": server.get("rss_per_connection_bytes") or 0,
                "outcome": (r.get("deflate") or {}).get("outcome", "not offered"),
                "answer": (r.get("deflate") or {}).get("answer"),
                "errors": sum(r["errors"].values()),
            }
    return {"echo": echo, "idle": idle}


def deflate_markdown(s: dict) -> list[str]:
    d, m = s["deflate"], s["meta"]
    out = ["", "## permessage-deflate", "",
           "Closed loop, 100 connections, one message in flight each, 1 KiB messages of `--payload text-json` "
           "(JSON-ish text, deterministic and verified byte for byte after inflation). Each server runs as "
           "configured for compression; *deflate*: wsecho-load offers `permessage-deflate; client_max_window_bits` "
           "and compresses what it sends; *plain*: it offers nothing (same server, uncompressed). Median of "
           f"{m['repetitions']} interleaved runs (min–max); server CPU per echoed message as above; server RSS at "
           "the end of the window; compression ratio of the payload bytes, sent / received. ⚠: the generator was "
           "at 90 % of its core or more.", "",
           "| server | mode | messages/s | server CPU µs/msg | server CPU | server RSS | ratio sent / received | negotiated | errors |",
           "|---|---|---|---|---|---|---|---|---|"]
    loads = [v["loadavg_1m_max"] for by_mode in d["echo"].values() for v in by_mode.values()
             if v.get("loadavg_1m_max") is not None]
    if loads and max(loads) > 2.5:
        out[4:4] = [f"⚠ The machine's 1-minute load average reached {max(loads):.1f} during these runs (about 2 is "
                    "the server and the generator alone): something else shared the two CPUs, so msg/s is "
                    "depressed and noisy; CPU per message and RSS are per process and less affected.", ""]
    for name, by_mode in d["echo"].items():
        for mode in ("deflate", "plain"):
            v = by_mode.get(mode)
            if not v:
                continue
            cpu = "–" if v["cpu_us_per_msg"] is None else f"**{v['cpu_us_per_msg']:.2f}**"
            rss = "–" if v["rss_after_kib"] is None else f"{v['rss_after_kib']:,.0f} KiB"
            ratio = "–" if v["ratio_sent"] is None else f"{v['ratio_sent']:.2f} / {v['ratio_received'] or 0:.2f}"
            flag = " ⚠" if v["generator_bottleneck"] == "yes" else ""
            neg = ", ".join(v["outcomes"]) + (f" (`{v['answer']}`)" if v["answer"] else "")
            out.append(f"| {name} | {mode} | **{fmt_rate(v['median'])}**{flag} ({fmt_rate(v['min'])}–{fmt_rate(v['max'])}) | "
                       f"{cpu} | {v['server_cpu_pct']:.0f} % | {rss} | {ratio} | {neg} | "
                       f"{v['errors']} (exit {v['exit_statuses']}) |")
    if d["idle"]:
        out += ["", f"### Memory per idle connection, deflate negotiated ({m.get('deflate_idle', 10000):,} connections)", "",
                "Server RSS growth while wsecho-load holds the connections idle (as in *Memory per idle connection*), "
                "with permessage-deflate negotiated on every one (`--deflate`) and without (no offer), same server "
                "configuration; the difference is what negotiation costs an idle connection.", "",
                "| server | deflate negotiated | uncompressed | difference | held | negotiated |", "|---|---|---|---|---|---|"]
        for name, by_mode in d["idle"].items():
            on, off = by_mode.get("deflate"), by_mode.get("plain")
            cell = lambda x: "–" if not x else f"**{x['bytes_per_connection'] / 1024:.2f} KiB** ({x['rss_before_kib'] or 0:,} → {x['rss_after_kib'] or 0:,} KiB)"
            diff = "–" if not (on and off) else f"{(on['bytes_per_connection'] - off['bytes_per_connection']) / 1024:+.2f} KiB"
            held = " / ".join(f"{x['connections']:,}" for x in (on, off) if x)
            neg = "–" if not on else on["outcome"] + (f" (`{on['answer']}`)" if on["answer"] else "")
            out.append(f"| {name} | {cell(on)} | {cell(off)} | {diff} | {held} | {neg} |")
    out += ["", f"- Load: `{m.get('deflate_command', '?')}`",
            f"- Idle: `wsecho-load ... --scenario idle -c {m.get('deflate_idle', '?'):,} --connect-rate "
            f"{m.get('idle_connect_rate', '?')} --warmup 0s -d {m.get('idle_hold', '?')} --timeout 30s [--deflate]`", "",
            "| server | version | command |", "|---|---|---|"]
    for name, v in m.get("deflate_servers", {}).items():
        out.append(f"| {name} | {v['version']} | `{v['command']}` |")
    return out


def fmt_rate(x: float) -> str:
    return f"{x / 1000:,.1f}k" if x >= 1000 else f"{x:,.0f}"


def size_label(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


def case_label(row: dict) -> str:
    return f"{row['connections']} × {size_label(row['size'])}"


def present(s: dict, rows: list[dict]) -> list[str]:
    return [n for n in s["servers"] if any(n in row["servers"] for row in rows)]


def throughput_table(s: dict, key: str = "throughput") -> list[str]:
    rows = s[key]
    names = present(s, rows)
    lines = ["| connections × payload | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in rows:
        cells = []
        for name in names:
            v = row["servers"].get(name)
            if not v:
                cells.append("–")
                continue
            mark = {"yes": " ⚠", "unknown": " ?"}.get(v["generator_bottleneck"], "")
            ratio = "" if name == names[0] or v["ratio"] is None else f" ({v['ratio']:.2f}×)"
            cells.append(f"**{fmt_rate(v['median'])}**{ratio}<br>{fmt_rate(v['min'])}–{fmt_rate(v['max'])}{mark}")
        lines.append(f"| {case_label(row)} | " + " | ".join(cells) + " |")
    return lines


def cpu_table(s: dict, key: str) -> list[str]:
    rows = s[key]
    names = present(s, rows)
    lines = ["| connections × payload | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in rows:
        cells = []
        for name in names:
            v = row["servers"].get(name)
            if not v or v["cpu_us_per_msg"] is None:
                cells.append("–")
                continue
            best = min(x["cpu_us_per_msg"] for x in row["servers"].values() if x["cpu_us_per_msg"])
            cpu = f"{v['cpu_us_per_msg']:.2f} µs"
            cpu = f"**{cpu}**" if v["cpu_us_per_msg"] == best else cpu
            ratio = "" if name == names[0] or v["cpu_ratio"] is None else f" {v['cpu_ratio']:.2f}×,"
            cells.append(f"{cpu} ({ratio} {v['server_cpu_pct']:.0f} %)".replace("( ", "("))
        lines.append(f"| {case_label(row)} | " + " | ".join(cells) + " |")
    return lines


def ceiling_table(s: dict, key: str) -> list[str]:
    rows = s[key]
    names = [n for n in present(s, rows) if n != CEILING]
    if not any(CEILING in row["servers"] for row in rows):
        return ["No raw TCP run for this generator."]
    lines = ["| connections × payload | raw TCP | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for row in rows:
        c = row["servers"].get(CEILING)
        head = "–" if not c else f"{fmt_rate(c['median'])} msg/s, {c['cpu_us_per_msg'] or 0:.2f} µs"
        cells = []
        for name in names:
            v = row["servers"].get(name)
            if not v or v["ceiling_ratio"] is None:
                cells.append("–")
                continue
            cpu = "" if v["ceiling_cpu_ratio"] is None else f" · CPU {v['ceiling_cpu_ratio']:.2f}×"
            cells.append(f"{v['ceiling_ratio']:.2f}×{cpu}")
        lines.append(f"| {case_label(row)} | {head} | " + " | ".join(cells) + " |")
    return lines


def markdown(s: dict) -> str:
    m, names = s["meta"], s["servers"]
    out = [f"# wsecho results, {m['date'][:10]}", ""]
    if m["quick"]:
        out += ["**Quick run** (1 repetition, short runs): a pipeline check, not a measurement.", ""]
    elif m.get("partial"):
        out += ["**Partial run** (a subset of servers, cases or parts): not the full matrix.", ""]
    for note in m.get("notes", []):
        out.append(f"- Note: {note}")
    if m.get("notes"):
        out.append("")
    if s["throughput"] or s["throughput_load_test"] or s["rate"]:
        out += [f"Every case runs with two generators, each pinned to CPU 1 with the server on CPU 0: **wsecho-load** "
                "(closed loop, one message in flight per connection, verifies every echo byte for byte) and "
                "fastwebsockets' C **load_test** on uSockets (closed loop, one message in flight per connection, counts "
                "echoed bytes, verifies nothing). Median of "
                f"{m['repetitions']} interleaved runs, a fresh server process per run; ratio to wsecho in brackets, "
                "min–max below. ⚠ marks a case where the generator was at 90 % of its core or more: there the "
                "generator, not the server, may have set the pace; read CPU per message there, not msg/s. ? marks a case where wsecho-load could not sample its own CPU inside the window.", ""]
    if s["throughput"]:
        out += ["## Messages per second, wsecho-load", ""] + throughput_table(s) + \
            ["", "![messages per second, wsecho-load](throughput.svg)", ""]
    if s["throughput_load_test"]:
        out += ["## Messages per second, load_test", ""] + throughput_table(s, "throughput_load_test") + \
            ["", "![messages per second, load_test](throughput-load_test.svg)", ""]
    if s["throughput"] or s["throughput_load_test"]:
        out += ["## Server CPU per echoed message at saturation", "",
                f"Server CPU time ({cpu_clock(m)}) over the counted window "
                "divided by the messages echoed in it, in µs; the lowest per case in bold; in brackets the ratio to "
                f"wsecho and the server's CPU use (100 % = its one core).{clock_count(m)}", ""]
    if s["throughput"]:
        out += ["### wsecho-load", ""] + cpu_table(s, "throughput") + \
            ["", "![server CPU per message, wsecho-load](cpu.svg)", ""]
    if s["throughput_load_test"]:
        out += ["### load_test", ""] + cpu_table(s, "throughput_load_test") + \
            ["", "![server CPU per message, load_test](cpu-load_test.svg)", ""]
    if s["throughput"] or s["throughput_load_test"]:
        out += ["## Ceiling ratio (server ÷ raw TCP echo)", "",
                "raw-tcp is `results/peers/tcp_echo.c`: one thread, epoll, one read and one write per ready socket; "
                "it answers the upgrade with a 101 and turns each client frame into a server frame (header copied "
                "without the mask key, payload unmasked on its way to the send buffer) and nothing else: the least "
                "any WebSocket echo can do. Per case: its msg/s and CPU per message, then each server's msg/s ÷ "
                "raw-tcp's (below 1: slower) and CPU per message ÷ raw-tcp's (above 1: more CPU).", ""]
    if s["throughput"]:
        out += ["### wsecho-load", ""] + ceiling_table(s, "throughput")
    if s["throughput_load_test"]:
        out += ["", "### load_test", ""] + ceiling_table(s, "throughput_load_test")
    if s["rate"]:
        out += ["", f"## Server CPU per message at a fixed offered rate ({m['rate']:,} msg/s)", "",
                "Open loop: wsecho-load sends "
                f"{m['rate']:,} messages per second in total, spread over the connections, whatever the echoes do; "
                "neither process is saturated, so this is the cleanest efficiency figure on 2 cores. Cells: "
                "server CPU per message (ratio to wsecho), the server's CPU use, messages echoed per second, "
                "round-trip p50 / p99 (µs, from the intended send time). ⚠ marks a run that echoed less than 95 % "
                f"of the offered rate, or whose median round trip was above {BEHIND_P50_US // 1000} ms (the echo "
                "waited: the server fell behind, or held echoes back as Nagle does, and sent many per wake-up, "
                "which makes each one look cheap): a side was "
                "saturated there, so the figure is not a fixed-rate one. On this "
                "shared VM the figure also depends on what else runs: a busy core batches more messages per "
                "wake-up and makes every server look cheaper, so take it on a quiet machine.", ""]
        rate_names = present(s, s["rate"])
        out += ["| server | " + " | ".join(case_label(r) for r in s["rate"]) + " |", "|---" * (len(s["rate"]) + 1) + "|"]
        for name in rate_names:
            cells = []
            for row in s["rate"]:
                v = row["servers"].get(name)
                if not v:
                    cells.append("–")
                    continue
                cpu = "–" if v["cpu_us_per_msg"] is None else f"**{v['cpu_us_per_msg']:.2f} µs**"
                ratio = "" if name == rate_names[0] or v["cpu_ratio"] is None else f" ({v['cpu_ratio']:.2f}×)"
                lat = v["latency_us"] or {"p50": 0, "p99": 0}
                short = rate_flag(v, m["rate"])
                cells.append(f"{cpu}{ratio}<br>{v['server_cpu_pct']:.0f} %, {fmt_rate(v['median'])}/s{short}, "
                             f"{lat['p50']:.0f} / {lat['p99']:.0f} µs")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += versus(s, "uWebSockets")
    if s["idle"]:
        counts = sorted({c for v in s["idle"].values() for c in v}, key=int)
        out += ["", "## Memory per idle connection", "",
                "Server RSS growth while wsecho-load holds N idle WebSocket connections (handshake done, no "
                f"traffic, held {m.get('idle_hold', '?')}), divided by the connections held. A process here may "
                f"hold at most {m['machine'].get('nofile', '?'):,} descriptors (the hard `nofile` limit), so "
                "~19,000 is the most this machine allows. ⚠: fewer than 99 % of the connections were held to the "
                "end (handshake timeouts, or the server closed idle ones); memory of the lost ones may still be in "
                "the RSS, so the figure is too high.", "",
                "| server | " + " | ".join(f"{int(c):,} connections" for c in counts) + " |",
                "|---" * (len(counts) + 1) + "|"]
        for name in names:
            v = s["idle"].get(name)
            if not v:
                continue
            cells = []
            for c in counts:
                x = v.get(c)
                short = "" if not x or x["connections"] >= 0.99 * x["requested"] else " ⚠"
                cells.append("–" if not x else f"**{x['kib_per_connection']:.2f} KiB**{short} ({x['connections']:,} held; "
                             f"{x['rss_before_kib'] or 0:,} → {x['rss_after_kib'] or 0:,} KiB)")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        k = s["kernel_per_socket"]
        objs = ", ".join(f"{n} {b} B" for n, b in k["objects"].items())
        slab = "not measured" if k["measured_slab_bytes"] is None else f"{k['measured_slab_bytes']:,.0f} B"
        out += ["", "### 100,000 and 1,000,000 connections, on paper", "",
                f"Not measurable here (the descriptor limit). Per connection: the server's RSS per idle connection "
                f"at the most connections it held cleanly (no ⚠), plus the kernel's own memory per idle TCP socket, which "
                f"is not in the process's RSS: {k['bytes']:,.0f} B, the larger of the slab objects each socket "
                f"holds ({objs}; sum {k['objects_bytes']:,} B, from /proc/slabinfo) and the kernel slab growth "
                f"measured while the most connections were held, per socket ({slab}, the median over the servers "
                "that held every connection: /proc/meminfo `Slab`, divided by twice the connections since both "
                "ends were on this host; other processes' allocations add noise). An idle socket holds no buffer memory (skbs are allocated as data arrives); under traffic "
                "add the socket buffers in flight. Where the clients run on the same machine, their sockets cost "
                "the kernel as much again.", "",
                "| server | user space per connection | " + " | ".join(f"{n:,}: process + kernel = total" for n in PLAN) + " |",
                "|---" * (len(PLAN) + 2) + "|"]
        for name in names:
            p = s["plan"].get(name)
            if not p:
                continue
            cells = [f"{p[str(n)]['user_gib']:.2f} + {p[str(n)]['kernel_gib']:.2f} = **{p[str(n)]['total_gib']:.2f} GiB**"
                     for n in PLAN]
            out.append(f"| {name} | {p['user_bytes']:,.0f} B (at {p['from_connections']:,}) | " + " | ".join(cells) + " |")
        out += ["", "To measure 100,000 on a machine that allows it: raise the descriptor limit for the server and "
                "for wsecho-load (`ulimit -n 200000`; the hard limit comes from `/etc/security/limits.conf` or "
                "`prlimit --nofile=200000:200000 --pid $$` as root), widen the ephemeral ports "
                "(`sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`), and dial from several loopback "
                "addresses, since one source address reaches one server port from ~28,000 ports at most: "
                "`results/run.sh --parts idle --idle 10000,100000` passes wsecho-load "
                "`--source-ip 127.0.0.1-127.0.0.4` (one address per 25,000 connections) and wsecho "
                "`--max-connections 101000`. By hand: `wsecho --listen 127.0.0.1:9900 --threads 1 "
                "--max-connections 101000 &` then `wsecho-load ws://127.0.0.1:9900/ --scenario idle -c 100000 "
                "--source-ip 127.0.0.1-127.0.0.4 --connect-rate 4000 --warmup 0s -d 10s --timeout 60s --server-pid $!`."]
    if any(s["rtt"].get(name) for name in names):
        out += ["", "## Latency, one connection", "",
                "Round trip of a 20-byte message, one connection, one message in flight (µs, median over runs; "
                "wsecho-load).", "",
                "| server | p50 | p90 | p99 | p99.9 | max |", "|---|---|---|---|---|---|"]
        for name in names:
            v = s["rtt"].get(name)
            if v:
                out.append(f"| {name} | {v['p50']:.0f} | {v['p90']:.0f} | {v['p99']:.0f} | {v['p999']:.0f} | "
                           f"{v['max']:.0f} |")
    if s.get("chat"):
        runs = max(v.get("runs", 1) for v in s["chat"].values())
        out += ["", "## Chat rooms (wsecho)", "",
                "`--scenario chat`: every peer sends 10 messages/s to its room; each message is delivered to every "
                "other peer. Latency is send → delivery (µs)"
                + (f"; median of {runs} interleaved runs, min–max below p50 and p99: a core near saturation "
                   "makes these swing by several times from run to run." if runs > 1 else "; one run."), "",
                "| peers × rooms | sent/s | deliveries/s | p50 | p99 | p99.9 | max | errors | server CPU | load CPU |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for v in s["chat"].values():
            l, span = v["latency_us"], v.get("latency_range_us")
            p50, p99 = f"{l['p50']:.0f}", f"{l['p99']:.0f}"
            if span and v.get("runs", 1) > 1:
                p50 += f"<br>{span['p50'][0]:.0f}–{span['p50'][1]:.0f}"
                p99 += f"<br>{span['p99'][0]:.0f}–{span['p99'][1]:.0f}"
            payload = CHAT_PAYLOADS.get(v.get("payload", ""), v.get("payload", ""))
            out.append(f"| {v['peers']} × {v['rooms']}{payload} | {v['sent_per_s']:,.0f} | "
                       f"{v['deliveries_per_s']:,.0f} | {p50} | {p99} | {l['p999']:.0f} | {l['max']:.0f} | "
                       f"{v['errors']} | {v['server_cpu_pct'] or 0:.0f} % | {pct(v.get('load_cpu_pct'))} |")
    if s.get("http2"):
        out += ["", "## WebSockets over HTTP/2 (wsecho)", "",
                "The same WebSockets, closed loop with one message in flight each, opened over HTTP/1.1 (one TCP "
                "connection each) and over HTTP/2 by extended CONNECT (RFC 8441; `--http2 "
                "--streams-per-connection 100`: all on one TCP connection, h2c). Medians over runs; latency in µs.", "",
                "| WebSockets × payload | protocol | TCP connections | messages/s | p50 | p99 | server CPU µs/msg | errors |",
                "|---|---|---|---|---|---|---|---|"]
        for v in s["http2"].values():
            for proto, p in v["protocols"].items():
                out.append(f"| {v['connections']} × {size_label(v['size'])} | {proto} | {p['tcp_connections']:.0f} | "
                           f"{p['messages_per_s']:,.0f} | {p['p50']:.0f} | {p['p99']:.0f} | "
                           f"{p['server_cpu_us_per_msg']:.2f} | {p['errors']} |")
    if s.get("deflate", {}).get("echo") or s.get("deflate", {}).get("idle"):
        out += deflate_markdown(s)
    problems = [(gen, row["case"], n, v) for gen, key in GENERATORS for row in s[key]
                for n, v in row["servers"].items() if v["errors"] or v["exit_statuses"] != [0]]
    out += ["", "## Errors", ""]
    out += [f"- {gen} {case} {n}: {v['errors']} errors (verification, closed connections, incomplete runs), "
            f"exit status {v['exit_statuses']}" for gen, case, n, v in problems] or \
        ["None: every run completed; every echo wsecho-load received was verified (exit status 0)."]
    bottlenecks = [f"{gen} {row['case']} {n} ({v['load_cpu_pct']:.0f} %)" for gen, key in GENERATORS
                   for row in s[key] for n, v in row["servers"].items() if v["generator_bottleneck"] == "yes"]
    out += ["", "## Generator bottleneck", ""]
    out += ["The generator was at 90 % of its core or more in: " + "; ".join(bottlenecks) + "."] if bottlenecks else \
        ["No generator was at 90 % of its core."]
    mm = m["machine"]
    out += ["", "## How this was made", "",
            f"- Date: {m['date']}",
            f"- Machine: {mm['cpu']}, {mm['cores']} CPUs, {mm.get('memory_gib', '?')} GiB, {mm['kernel']}, "
            f"descriptor limit {mm.get('nofile', '?')}",
            f"- {mm['rustc']}; C: {mm.get('cc', '?')}; C++: {mm.get('cxx', '?')}",
            f"- wsecho commit {mm['commit']}; {mm['load']}; load_test: {mm.get('load_test', '?')}",
            "- Each run: a fresh server process pinned to CPU 0 (`taskset -c 0`), the generator pinned to CPU 1, "
            "binary messages, warm-up excluded.",
            f"- wsecho-load: `{m['load_command']}`",
            f"- load_test: `{m.get('load_test_command', '?')}`. It prints the echoes of each 4-second interval; "
            "server CPU is read from /proc as each counted line arrives, so CPU and messages cover the same "
            "intervals. It sends one fixed masked frame (binary) and counts echoed bytes, so it works against "
            "the raw TCP echo as against every WebSocket server.",
            f"- Fixed rate: `{m.get('rate_command', '?')}`",
            f"- Idle: `wsecho-load ... --scenario idle -c N --connect-rate {m.get('idle_connect_rate', '?')} --warmup 0s "
            f"-d {m.get('idle_hold', '?')} --timeout 30s` "
            "(`--source-ip 127.0.0.1-127.0.0.K` past 25,000).",
            "- The raw TCP ceiling runs with both generators: tcp_echo.c answers the upgrade with a correct "
            "`Sec-WebSocket-Accept` and unmasks payloads, so wsecho-load's verification passes; load_test "
            "needs the mask key dropped from each echoed frame (it expects 4 bytes fewer back than it sent).",
            f"- Regenerate: `results/run.sh` (this run took {m['wall_s']} s).", "",
            "| server | version | command |", "|---|---|---|"]
    for name in names:
        out.append(f"| {name} | {m['servers'][name]} | `{m['commands'][name]}` |")
    return "\n".join(out) + "\n"


def rate_flag(v: dict, rate: int) -> str:
    """Why a fixed-rate run is not one: '' when it is."""
    lat = v["latency_us"] or {"p50": 0}
    return (" ⚠ below the offered rate" if v["median"] < 0.95 * rate else
            " ⚠ echo waited" if lat["p50"] > BEHIND_P50_US else "")


def versus_ratio(row: dict, peer: str) -> float | None:
    """wsecho's median CPU per message ÷ the peer's in one case; None when
    either has no CPU figure."""
    a, b = row["servers"].get("wsecho"), row["servers"].get(peer)
    if not a or not b or not a["cpu_us_per_msg"] or not b["cpu_us_per_msg"]:
        return None
    return a["cpu_us_per_msg"] / b["cpu_us_per_msg"]


def versus(s: dict, peer: str) -> list[str]:
    """wsecho's CPU per message ÷ the peer's, per case, generator and the
    fixed rate; and both idle figures: the issue's acceptance checks."""
    keys = [("wsecho-load", "throughput"), ("load_test", "throughput_load_test"), ("fixed rate", "rate")]
    if not any(peer in row["servers"] for _, key in keys for row in s[key]):
        return []
    def ratio(row: dict, key: str) -> str:
        r = versus_ratio(row, peer)
        if r is None:
            return "–"
        a, b = row["servers"]["wsecho"], row["servers"][peer]
        flag = " ⚠" if key == "rate" and (rate_flag(a, s["meta"]["rate"]) or rate_flag(b, s["meta"]["rate"])) else ""
        return f"{r:.2f}× {'✓' if r <= 1 else '✗'}{flag}"
    out = ["", f"## wsecho against {peer}", "",
           f"wsecho's server CPU per message ÷ {peer}'s (✓: at or below), medians of the runs above; ⚠: at the "
           "fixed rate one of the two fell behind, so that ratio is not a fixed-rate one.", "",
           "| connections × payload | " + " | ".join(g for g, _ in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    cases = []
    for _, key in keys:
        cases += [(r["connections"], r["size"]) for r in s[key] if (r["connections"], r["size"]) not in cases]
    for c in cases:
        cells = []
        for _, key in keys:
            row = next((r for r in s[key] if (r["connections"], r["size"]) == c), None)
            cells.append(ratio(row, key) if row else "–")
        out.append(f"| {c[0]} × {size_label(c[1])} | " + " | ".join(cells) + " |")
    w, u = s["idle"].get("wsecho", {}), s["idle"].get(peer, {})
    for count in sorted(set(w) & set(u), key=int):
        out.append(f"\nIdle, {int(count):,} connections: wsecho {w[count]['kib_per_connection']:.2f} KiB per connection "
                   f"({'✓' if w[count]['kib_per_connection'] <= 1 else '✗'} ≤ 1 KiB), {peer} "
                   f"{u[count]['kib_per_connection']:.2f} KiB.")
    return out


GENERATORS = (("wsecho-load", "throughput"), ("load_test", "throughput_load_test"), ("wsecho-load at fixed rate", "rate"))


def bar_chart(s: dict, title: str, value, unit: str, key: str = "throughput") -> str:
    """Small multiples: one panel per case, one bar per server, min-max whiskers."""
    rows = s[key]
    names = present(s, rows)
    pw, ph, cols = 360, 210, 3
    w, h = pw * cols, 80 + ph * ((len(rows) + cols - 1) // cols) + 30
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
         'font-family="sans-serif" font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="16">{html.escape(title)}</text>']
    for i, name in enumerate(names):
        x, y = 20 + (i % 5) * 210, 34 + (i // 5) * 18
        e.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS.get(name, "#777")}"/>'
                 f'<text x="{x + 16}" y="{y + 11}">{html.escape(name)}</text>')
    for k, row in enumerate(rows):
        ox, oy = (k % cols) * pw, 80 + (k // cols) * ph
        vals = [value(row["servers"][n]) if n in row["servers"] else (0, 0, 0) for n in names]
        top = max([v[2] for v in vals] + [1e-9]) * 1.1
        e.append(f'<text x="{ox + pw / 2}" y="{oy + 16}" text-anchor="middle">'
                 f'{row["connections"]} conns × {size_label(row["size"])}</text>')
        base, bh, bw = oy + ph - 30, ph - 60, (pw - 40) / max(len(names), 1)
        e.append(f'<line x1="{ox + 20}" y1="{base}" x2="{ox + pw - 20}" y2="{base}" stroke="#999"/>')
        for j, (name, (mid, lo, hi)) in enumerate(zip(names, vals)):
            x, y = ox + 20 + j * bw + 4, base - bh * mid / top
            e.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 8:.1f}" height="{base - y:.1f}" '
                     f'fill="{COLORS.get(name, "#777")}"><title>{html.escape(name)}: {mid:,.2f} {unit}</title></rect>')
            cx, ylo, yhi = x + (bw - 8) / 2, base - bh * lo / top, base - bh * hi / top
            e.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="#333"/>')
            label = fmt_rate(mid) if unit == "msg/s" else f"{mid:.2f}"
            e.append(f'<text x="{cx:.1f}" y="{yhi - 4:.1f}" text-anchor="middle" font-size="9">{label}</text>')
    e.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" fill="#555">{html.escape(unit)}; '
             f'{html.escape(s["meta"]["date"][:10])}, {html.escape(s["meta"]["machine"]["cpu"])}</text>')
    return "\n".join(e + ["</svg>"]) + "\n"


def write(out: Path, s: dict) -> None:
    (out / "summary.md").write_text(markdown(s))
    rate = lambda v: (v["median"], v["min"], v["max"])  # noqa: E731
    cpu = lambda v: (v["cpu_us_per_msg"] or 0,) * 3  # noqa: E731
    for key, suffix, gen in (("throughput", "", "wsecho-load"), ("throughput_load_test", "-load_test", "load_test")):
        if s[key]:
            (out / f"throughput{suffix}.svg").write_text(bar_chart(
                s, f"Messages per second echoed, {gen} (median, min–max)", rate, "msg/s", key))
            (out / f"cpu{suffix}.svg").write_text(bar_chart(
                s, f"Server CPU per echoed message, {gen}", cpu, "µs per message", key))


def update_readme(readme: Path, out: Path, s: dict) -> None:
    rel = out.relative_to(readme.parent)
    block = [README_BEGIN, f"Measured {s['meta']['date'][:10]} on {s['meta']['machine']['cpu']} "
             f"({s['meta']['machine']['cores']} CPUs): messages per second echoed and verified by wsecho-load, median of "
             f"{s['meta']['repetitions']} interleaved runs, ratio to wsecho in brackets, min–max below; server on "
             "one core, the generator on the other. The same matrix with fastwebsockets' C load_test, server CPU "
             "per message (at saturation and at a fixed offered rate), the ratio to a raw TCP echo (the ceiling), "
             "memory per idle connection at 10,000 and ~19,000 connections with 100,000 and 1,000,000 planned "
             "on paper (and how to measure 100,000 where the descriptor limit allows), and latency: "
             f"[{rel}/summary.md]({rel}/summary.md). Regenerate with `results/run.sh` "
             "(`UWS_DIR=path/to/uWebSockets` adds uWebSockets and load_test).", ""]
    block += throughput_table(s) + ["", f"![messages per second]({rel}/throughput.svg)", ""]
    block += ["Server CPU per echoed message at saturation (µs; ratio to wsecho, server CPU use), wsecho-load:", ""] + \
        cpu_table(s, "throughput")
    if s["throughput_load_test"]:
        block += ["", "The same with load_test:", ""] + cpu_table(s, "throughput_load_test")
    block += [README_END]
    text = readme.read_text()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + "\n".join(block) + rest.split(README_END, 1)[1]
    else:
        text += "\n## Results\n\n" + "\n".join(block) + "\n"
    readme.write_text(text)
