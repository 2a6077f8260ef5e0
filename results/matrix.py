#!/usr/bin/env python3
"""Runs the results matrix with wsecho-load and writes results/<date>/.

Started by results/run.sh, which builds every server first. For each case
(connections x payload) the servers take turns, a fresh process per run,
pinned to CPU 0, with wsecho-load pinned to CPU 1; repetitions interleave
(A B C D A B C D ...) so machine noise spreads over all servers. Medians and
min-max are reported. Also measured: server CPU time per echoed message,
RSS per idle connection at 10,000 connections, 1-connection latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "target/release/wsecho-load"
SERVER_CPU, LOAD_CPU = "0", "1"

MATRIX = [(100, 20), (10, 1024), (10, 16384), (200, 16384), (500, 16384), (1000, 20)]
IDLE_CONNECTIONS = 10_000


def servers() -> list[dict]:
    """Each peer: how to start it on a port, and its version."""
    return [
        {"name": "wsecho", "port": 9900,
         "cmd": [str(ROOT / "target/release/wsecho"), "--listen", "127.0.0.1:9900", "--threads", "1",
                 "--max-connections", "20000"],
         "version": f"wsecho {cargo_version('wsecho')} ({git('rev-parse', '--short', 'HEAD')})"},
        {"name": "fastwebsockets", "port": 9901, "cmd": [os.environ["FWS_ECHO_BIN"]],
         "version": f"fastwebsockets {os.environ['FWS_VERSION']} examples/echo_server.rs"},
        {"name": "tokio-tungstenite", "port": 9902,
         "cmd": [str(ROOT / "target/release/examples/tungstenite_echo"), "127.0.0.1:9902"],
         "version": f"tokio-tungstenite {cargo_version('tokio-tungstenite')} (echo-server example)"},
        {"name": "node-ws", "port": 9903,
         "cmd": ["node", str(ROOT / "results/peers/ws-echo.mjs"), "127.0.0.1:9903"],
         "version": f"ws {npm_version('ws')} on Node.js {run_out(['node', '--version'])}"},
    ]


def run_out(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def git(*args: str) -> str:
    return run_out(["git", "-C", str(ROOT), *args])


def cargo_version(package: str) -> str:
    return run_out(["cargo", "pkgid", "--manifest-path", str(ROOT / "Cargo.toml"), package]).rsplit("@", 1)[-1].rsplit("#", 1)[-1]


def npm_version(package: str) -> str:
    lock = json.loads((ROOT / "results/peers/package-lock.json").read_text())
    return lock["packages"][f"node_modules/{package}"]["version"]


def say(msg: str) -> None:
    print(f"results: {msg}", flush=True)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Server:
    """One fresh server process, pinned to CPU 0."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *spec["cmd"]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(spec["port"], self.proc)
        # The connection probe above is not part of any measurement.
        time.sleep(0.2)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(spec: dict, server: Server, out: Path, args: list[str]) -> dict:
    """One wsecho-load run against `server`; its JSON result."""
    cmd = ["taskset", "-c", LOAD_CPU, str(LOAD), f"ws://127.0.0.1:{spec['port']}/", "--threads", "1",
           "--quiet", "--server-pid", str(server.proc.pid), "--json", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if not out.exists():
        raise RuntimeError(f"wsecho-load failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result = json.loads(out.read_text())
    result["exit_status"] = done.returncode
    return result


def measure(specs: list[dict], raw: Path, reps: int, warmup: str, duration: str) -> dict:
    """The throughput matrix, interleaved; returns {case: {server: [results]}}."""
    found: dict = {}
    for rep in range(1, reps + 1):
        for conns, size in MATRIX:
            case = f"{conns}x{size}"
            for spec in specs:
                out = raw / f"echo-{case}-{spec['name']}-r{rep}.json"
                with Server(spec) as server:
                    r = load(spec, server, out, ["-c", str(conns), "-s", str(size), "--binary",
                                                 "--warmup", warmup, "-d", duration])
                found.setdefault(case, {}).setdefault(spec["name"], []).append(r)
                say(f"rep {rep} {case:>10} {spec['name']:<18} {r['rates']['messages_received_per_s']:>12,.0f} msg/s"
                    f"  errors {sum(r['errors'].values())}  load cpu {r['client_cpu_pct']:.0f}%")
        for spec in specs:
            out = raw / f"rtt-{spec['name']}-r{rep}.json"
            with Server(spec) as server:
                r = load(spec, server, out, ["-c", "1", "-s", "20", "--binary", "--warmup", warmup, "-d", duration])
            found.setdefault("rtt", {}).setdefault(spec["name"], []).append(r)
    return found


def idle(specs: list[dict], raw: Path, hold: str) -> dict:
    found = {}
    for spec in specs:
        out = raw / f"idle-{spec['name']}.json"
        with Server(spec) as server:
            found[spec["name"]] = load(spec, server, out, ["--scenario", "idle", "-c", str(IDLE_CONNECTIONS),
                                                           "--warmup", "0s", "-d", hold, "--timeout", "30s"])
        say(f"idle {spec['name']:<18} {found[spec['name']]['server']['rss_per_connection_bytes'] or 0:,.0f} B/conn")
    return found


CHAT = [(100, 1), (1000, 100)]  # peers, rooms; 10 messages/s per peer


def chat(spec: dict, raw: Path, warmup: str, duration: str) -> dict:
    """Room fan-out through wsecho alone (the peers have no rooms)."""
    found = {}
    for peers, rooms in CHAT:
        case = f"{peers}x{rooms}"
        with Server(spec) as server:
            found[case] = load(spec, server, raw / f"chat-{case}.json",
                               ["--scenario", "chat", "-c", str(peers), "--rooms", str(rooms),
                                "--warmup", warmup, "-d", duration])
        say(f"chat {case:>9} {found[case]['rates']['messages_received_per_s']:>12,.0f} deliveries/s")
    return found


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": run_out(["uname", "-sr"]),
        "rustc": run_out(["rustc", "-V"]),
        "commit": git("rev-parse", "HEAD") + (" (dirty)" if git("status", "--porcelain", "--", "src", "loadtest") else ""),
        "load": f"wsecho-load {cargo_version('wsecho-load')}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 repetition of short runs: checks the pipeline")
    ap.add_argument("--out", type=Path, help="output directory (default results/<UTC date>)")
    args = ap.parse_args()
    reps, warmup, duration, hold = (1, "1s", "2s", "2s") if args.quick else (3, "2s", "8s", "5s")
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or ROOT / "results" / (date + ("-quick" if args.quick else ""))
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    specs = servers()
    started = time.monotonic()
    found = measure(specs, raw, reps, warmup, duration)
    found["idle"] = idle(specs, raw, hold)
    found["chat"] = chat(specs[0], raw, warmup, duration)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "servers": {s["name"]: s["version"] for s in specs},
        "commands": {s["name"]: " ".join(["taskset", "-c", SERVER_CPU, *[Path(c).name if "/" in c else c for c in s["cmd"]]])
                     for s in specs},
        "load_command": f"taskset -c {LOAD_CPU} wsecho-load ws://127.0.0.1:PORT/ --threads 1 --binary "
                        f"-c CONNS -s SIZE --warmup {warmup} -d {duration} --server-pid PID --json FILE",
        "repetitions": reps,
        "quick": args.quick,
        "wall_s": round(time.monotonic() - started),
    }
    summary = report.summarize(found, meta, [s["name"] for s in specs])
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    report.write(out, summary)
    if not args.quick:
        report.update_readme(ROOT / "README.md", out, summary)
    say(f"wrote {out} in {meta['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
