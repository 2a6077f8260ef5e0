#!/usr/bin/env python3
"""Pools the repetitions of several results/run.sh runs: server CPU per
echoed message, wsecho against one other server, case by case.

One run's median of 3 moves by up to a tenth on this machine, so a case
that sits within a few per cent of 1.0 can land on either side of it from
one run to the next. Pooled over runs of the same server builds, the
repetitions say which side it is on. Per case and generator: each server's
median over all repetitions and their ratio; the median of the ratios of
the runs paired within a repetition (the two servers measured minutes
apart, under the same generator build); and in how many repetitions wsecho
used no more CPU per message than the other; and a 95 % interval for the
median paired ratio that assumes nothing of the ratios' distribution (order
statistics: the true median lies between the k-th smallest and k-th largest
ratio unless at least n-k+1 of n fell on one side of it, a binomial(n, 1/2)
tail), so a case whose interval holds 1.0 is level within what the
repetitions can tell.

It does not check that the runs measured the same builds: it prints each
run's server versions, and pooling runs of different servers is the
caller's mistake to avoid (`git diff A B -- src` between the commits named).

    python3 results/pool.py results/2026-12-05-2 results/2026-12-05-5 [--against uWebSockets] [--each]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

SECTIONS = (
    ("throughput", "saturation, wsecho-load"),
    ("throughput_load_test", "saturation, load_test"),
    ("rate", "fixed offered rate, wsecho-load"),
)


def pool(runs: list[dict], section: str, other: str) -> dict[str, dict]:
    """{case: {"ours": [...], "theirs": [...], "paired": [...]}} over runs."""
    out: dict[str, dict] = {}
    for run in runs:
        for row in run.get(section) or []:
            servers = row["servers"]
            if "wsecho" not in servers or other not in servers:
                continue
            ours = servers["wsecho"]["cpu_us_per_msg_runs"]
            theirs = servers[other]["cpu_us_per_msg_runs"]
            case = out.setdefault(row["case"], {"ours": [], "theirs": [], "paired": []})
            case["ours"] += ours
            case["theirs"] += theirs
            # Repetition i of one server beside repetition i of the other;
            # a run that lost a CPU sample (the lists leave it out) cannot be
            # paired by position.
            if len(ours) == len(theirs) == run["meta"]["repetitions"]:
                case["paired"] += [a / b for a, b in zip(ours, theirs) if b]
    return out


def median_interval(xs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The distribution-free interval for the median of `xs` at confidence
    of at least `level`: the k-th smallest and k-th largest, for the largest
    k whose two binomial tails (fewer than k of n on one side) together
    stay within 1 - `level`. None when n is too small for any k (n < 6 at
    95 %)."""
    n = len(xs)
    tail, k = 0.0, 0
    while k < n:
        tail += math.comb(n, k) / 2**n  # P(fewer than k + 1 below the median)
        if 2 * tail > 1 - level:
            break
        k += 1
    if k == 0:
        return None
    ordered = sorted(xs)
    return ordered[k - 1], ordered[n - k]


def case_name(case: str) -> str:
    conns, size = (int(x) for x in case.split("x"))
    shown = f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"
    return f"{conns} × {shown}"


def table(pooled: dict[str, dict], other: str) -> list[str]:
    lines = [
        f"| case | wsecho µs | {other} µs | ratio of medians | median paired ratio | its 95 % interval "
        "| reps at or below |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, p in pooled.items():
        if not p["ours"] or not p["theirs"] or not p["paired"]:
            continue
        ours, theirs = statistics.median(p["ours"]), statistics.median(p["theirs"])
        won = sum(r <= 1.0 for r in p["paired"])
        interval = median_interval(p["paired"])
        shown = f"{interval[0]:.3f}–{interval[1]:.3f}" if interval else "–"
        lines.append(
            f"| {case_name(case)} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.3f} "
            f"| {statistics.median(p['paired']):.3f} | {shown} | {won} of {len(p['paired'])} |"
        )
    return lines


def each(pooled: dict[str, dict]) -> list[str]:
    """The paired ratios themselves, repetition by repetition, run after run."""
    lines = ["| case | paired ratios, in repetition order |", "|---|---|"]
    for case, p in pooled.items():
        if p["paired"]:
            lines.append(f"| {case_name(case)} | {', '.join(f'{r:.3f}' for r in p['paired'])} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="results/<date> directories (each with results.json)")
    ap.add_argument("--against", default="uWebSockets", help="the server wsecho is compared with")
    ap.add_argument("--each", action="store_true", help="also print every paired ratio, in repetition order")
    args = ap.parse_args()
    runs = []
    for d in args.runs:
        summary = json.loads((d / "results.json").read_text())
        meta = summary["meta"]
        if meta.get("quick"):
            print(f"pool.py: {d} is a --quick run; left out", file=sys.stderr)
            continue
        versions = meta["servers"]
        print(f"- {d.name}: {meta['date']}, {meta['repetitions']} repetitions; "
              f"{versions.get('wsecho', '?')}; {args.against}: {versions.get(args.against, '?')}")
        runs.append(summary)
    if not runs:
        return 2
    for section, title in SECTIONS:
        pooled = pool(runs, section, args.against)
        if pooled:
            print(f"\nServer CPU per echoed message, {title}, {len(runs)} runs pooled:\n")
            print("\n".join(table(pooled, args.against)))
            if args.each:
                print("\n" + "\n".join(each(pooled)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
