#!/usr/bin/env python3
"""Runs the results matrix and writes results/<date>/.

Started by results/run.sh, which builds every server and both generators
first. For each case (connections x payload) the servers take turns, a fresh
process per run, pinned to CPU 0, with the generator pinned to CPU 1; every
case runs with both generators (wsecho-load, which verifies every echo, and
fastwebsockets' C load_test on uSockets, which counts echoed bytes);
repetitions interleave, the order turning by one place each time
(A B C D, B C D A, C D A B ...), so machine noise spreads over all servers
and none always runs first. Medians and min-max are reported. Also measured: server CPU time
per echoed message at saturation and at a fixed offered rate (open loop),
RSS per idle connection at 10,000 and ~19,000 connections with the kernel's
own per-socket memory, 1-connection latency, wsecho's chat rooms,
wsecho's WebSockets over HTTP/2 (all on one connection) beside HTTP/1.1, and
permessage-deflate (`--parts deflate`): compressible messages with and
without compression against the servers that compress, and RSS per idle
connection with deflate negotiated beside the same without.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "target/release/wsecho-load"
SERVER_CPU, LOAD_CPU = "0", "1"

MATRIX = [(100, 20), (10, 1024), (10, 16384), (200, 16384), (500, 16384), (1000, 20)]
# Open loop, neither process saturated: the clean efficiency figure on 2 cores.
RATE, RATE_CASES = 40_000, [(100, 20), (100, 1024)]
IDLE_CONNECTIONS = [10_000, 19_000]
# A ramp, not a SYN flood: opened all at once, 19,000 connections overflow the
# listen backlogs (SYN retransmits of seconds, handshake timeouts) and the
# figure would measure that instead. uWebSockets' EchoServer pings an idle
# connection after 16 s (wsecho-load answers); the slowest ramp plus the hold
# stays near that.
IDLE_CONNECT_RATE = 4_000
# load_test prints "Msg/sec: N" every LIBUS_TIMEOUT_GRANULARITY (4) seconds:
# the responses of that interval divided by 4.
LOADTEST_PERIOD_S = 4
LOADTEST_BUILTIN_SIZE = 20
# permessage-deflate: connections x bytes of `--payload text-json` (JSON-ish
# text, about 3:1 under deflate), and the idle connections held with it.
DEFLATE_CASE = (100, 1024)
DEFLATE_IDLE = 10_000
# Per source address: the ephemeral ports (32768-60999) to one server port.
# With --source-ip wsecho-load binds before it connects, and the kernel's
# search for a free port to bind slows to a crawl as the range fills (19,000
# from one address: thousands of handshakes took 10-25 s and failed).
PORTS_PER_BOUND_IP = 10_000


def servers(max_connections: int) -> list[dict]:
    """Each peer: how to start it on a port, and its version. Peers whose
    binary run.sh could not build are left out (run.sh says why in
    RESULTS_NOTES)."""
    env = os.environ
    specs = [
        {"name": "wsecho", "port": 9900,
         "cmd": [str(ROOT / "target/release/wsecho"), "--listen", "127.0.0.1:9900", "--threads", "1",
                 "--max-connections", str(max_connections)],
         "version": f"wsecho {cargo_version('wsecho')} ({git('rev-parse', '--short', 'HEAD')})"},
    ]
    if env.get("FWS_ECHO_BIN"):
        specs.append({"name": "fastwebsockets", "port": 9901, "cmd": [env["FWS_ECHO_BIN"]],
                      "version": f"fastwebsockets {env['FWS_VERSION']} examples/echo_server.rs"})
    tungstenite = ROOT / "target/release/examples/tungstenite_echo"
    if tungstenite.exists():
        specs.append({"name": "tokio-tungstenite", "port": 9902, "cmd": [str(tungstenite), "127.0.0.1:9902"],
                      "version": f"tokio-tungstenite {cargo_version('tokio-tungstenite')} (echo-server example)"})
    if (ROOT / "results/peers/node_modules/ws").exists():
        specs.append({"name": "node-ws", "port": 9903,
                      "cmd": ["node", str(ROOT / "results/peers/ws-echo.mjs"), "127.0.0.1:9903"],
                      "version": f"ws {npm_version('ws')} on Node.js {run_out(['node', '--version'])}"})
    if env.get("UWS_ECHO_BIN"):
        specs.append({"name": "uWebSockets", "port": 9904, "cmd": [env["UWS_ECHO_BIN"]],
                      "version": f"uWebSockets {env.get('UWS_VERSION', '?')} examples/EchoServer.cpp "
                                 f"({env.get('UWS_CXX', 'g++')}; no SSL, no zlib)"})
    if env.get("SOCKUDO_ECHO_BIN"):
        specs.append({"name": "sockudo-ws", "port": 9905, "cmd": [env["SOCKUDO_ECHO_BIN"]],
                      "version": f"sockudo-ws {env.get('SOCKUDO_VERSION', '?')} examples/simple_echo.rs"})
    if env.get("TCP_ECHO_BIN"):
        specs.append({"name": "raw-tcp", "port": 9906, "cmd": [env["TCP_ECHO_BIN"], "9906"],
                      "version": f"results/peers/tcp_echo.c ({env.get('TCP_ECHO_CC', 'cc')} -O2): the ceiling"})
    return specs


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


def cpu_seconds(pid: int) -> float | None:
    """A whole process's CPU time so far, to the nanosecond: its CPU clock
    (clock_getcpuclockid's id, ((~pid) << 3) | CPUCLOCK_SCHED), which counts
    every thread, those that have exited included; /proc/PID/stat's ticks
    count 10 ms steps."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return None


def child_of(pid: int) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


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


LIVE: set[subprocess.Popen] = set()
NOTES: list[str] = []  # for the summary, besides run.sh's RESULTS_NOTES


def kill_all(*_: object) -> None:
    """Every server and generator this script started, also on errors."""
    for proc in list(LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        LIVE.discard(proc)


class Server:
    """One fresh server process, pinned to CPU 0."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *spec["cmd"]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        LIVE.add(self.proc)
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
        LIVE.discard(self.proc)


def load(spec: dict, server: Server, out: Path, args: list[str], during=None) -> dict:
    """One wsecho-load run against `server`; its JSON result. `during` is
    called every half second while it runs."""
    cmd = ["taskset", "-c", LOAD_CPU, str(LOAD), f"ws://127.0.0.1:{spec['port']}/", "--threads", "1",
           "--quiet", "--server-pid", str(server.proc.pid), "--json", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    LIVE.add(proc)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if during:
                during()
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    finally:
        LIVE.discard(proc)
    if not out.exists():
        raise RuntimeError(f"wsecho-load failed ({proc.returncode}): {err.strip()[-500:]}")
    result = json.loads(out.read_text())
    result["exit_status"] = proc.returncode
    # The machine's 1-minute load average as the run ends: with the server
    # and the generator alone it stays near 2; more means something else
    # shared the two CPUs and msg/s is depressed.
    result["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
    return result


def load_test(spec: dict, server: Server, out: Path, conns: int, size: int, warm: int, count: int) -> dict:
    """One run of fastwebsockets' C load_test against `server`, in the shape
    of a wsecho-load result. It prints the echoes of each 4-second interval;
    the first `warm` intervals are warm-up, the next `count` are counted. The
    server's CPU is read from /proc when each counted line arrives, so the
    CPU window and the counted messages are the same intervals."""
    limit = LOADTEST_PERIOD_S * (warm + count + 2) + 30
    # Given a size, load_test always writes a 16-bit extended length, which
    # below 126 bytes is not the minimal encoding: servers echo the frame 2
    # bytes shorter than it waits for, and it stalls after one echo. Without
    # a size it sends its built-in 20-byte frame.
    if size < 126 and size != LOADTEST_BUILTIN_SIZE:
        raise ValueError(f"load_test cannot send {size}-byte frames")
    size_arg = [] if size == LOADTEST_BUILTIN_SIZE else [str(size)]
    cmd = ["taskset", "-c", LOAD_CPU, "timeout", str(limit), os.environ["LOADTEST_BIN"],
           str(conns), "127.0.0.1", str(spec["port"]), "0", "0", *size_arg]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    LIVE.add(proc)
    log, samples, gen = [], [], None
    try:
        for line in proc.stdout:
            log.append(line.rstrip())
            if line.startswith("Msg/sec:"):
                gen = gen or child_of(proc.pid)
                samples.append({"t": time.monotonic(), "server": cpu_seconds(server.proc.pid),
                                "gen": cpu_seconds(gen) if gen else None, "rate": float(line.split()[1])})
                if len(samples) >= warm + count:
                    break
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        LIVE.discard(proc)
    closed = sum(1 for l in log if l.startswith("Closed!"))
    broken = sum(1 for l in log if "ERROR" in l)
    ok = len(samples) >= warm + count and warm >= 1
    result = {"tool": "load_test", "command": " ".join(cmd[3:]), "log": log[-20:], "exit_status": 0 if ok else 1,
              "errors": {"closed": closed, "protocol": broken, "incomplete": 0 if ok else 1},
              "rates": {"messages_received_per_s": 0.0}, "messages_received": 0, "duration_s": 0.0,
              "server": {"cpu_pct": None}, "client_cpu_pct": 0.0, "generator_bottleneck": False}
    if ok:
        first, last = samples[warm - 1], samples[warm + count - 1]
        messages = round(sum(s["rate"] for s in samples[warm:warm + count]) * LOADTEST_PERIOD_S)
        wall = last["t"] - first["t"]
        result.update(messages_received=messages, duration_s=wall,
                      rates={"messages_received_per_s": messages / wall if wall else 0.0})
        if first["server"] is not None and last["server"] is not None:
            result["server"]["cpu_pct"] = (last["server"] - first["server"]) / wall * 100
        if first["gen"] is not None and last["gen"] is not None:
            result["client_cpu_pct"] = (last["gen"] - first["gen"]) / wall * 100
            result["generator_bottleneck"] = result["client_cpu_pct"] >= 90
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def turn(items: list, rep: int) -> list:
    """`items` rotated by one place per repetition (`rep` counts from 1), so
    that over the repetitions each server runs in each place of a case's
    sequence: always going first, right after another case's last run, or
    always following the same server would otherwise be a bias the ratios
    carry. With as many repetitions as servers, each place once."""
    k = (rep - 1) % len(items) if items else 0
    return items[k:] + items[:k]


def measure(specs: list[dict], raw: Path, reps: int, cases: list[tuple[int, int]], parts: set[str],
            warmup: str, duration: str, lt_warm: int, lt_count: int) -> dict:
    """The throughput matrix with both generators, interleaved; returns
    {"echo": {case: {server: [results]}}, "loadtest": ..., "rate": ..., "rtt": ...}."""
    found: dict = {"echo": {}, "loadtest": {}, "rate": {}, "rtt": {}}
    for rep in range(1, reps + 1):
        for conns, size in cases:
            case = f"{conns}x{size}"
            for spec in turn(specs, rep):
                if "echo" in parts:
                    out = raw / f"echo-{case}-{spec['name']}-r{rep}.json"
                    with Server(spec) as server:
                        r = load(spec, server, out, ["-c", str(conns), "-s", str(size), "--binary",
                                                     "--warmup", warmup, "-d", duration])
                    found["echo"].setdefault(case, {}).setdefault(spec["name"], []).append(r)
                    say(f"rep {rep} {case:>10} {spec['name']:<18} wsecho-load {r['rates']['messages_received_per_s']:>12,.0f} msg/s"
                        f"  errors {sum(r['errors'].values())}  load cpu {r['client_cpu_pct']:.0f}%")
                if "loadtest" in parts and os.environ.get("LOADTEST_BIN"):
                    out = raw / f"loadtest-{case}-{spec['name']}-r{rep}.json"
                    with Server(spec) as server:
                        r = load_test(spec, server, out, conns, size, lt_warm, lt_count)
                    found["loadtest"].setdefault(case, {}).setdefault(spec["name"], []).append(r)
                    say(f"rep {rep} {case:>10} {spec['name']:<18} load_test   {r['rates']['messages_received_per_s']:>12,.0f} msg/s"
                        f"  errors {sum(r['errors'].values())}  load cpu {r['client_cpu_pct']:.0f}%")
        if "rate" in parts:
            for conns, size in RATE_CASES:
                case = f"{conns}x{size}"
                for spec in turn(specs, rep):
                    out = raw / f"rate-{case}-{spec['name']}-r{rep}.json"
                    with Server(spec) as server:
                        r = load(spec, server, out, ["-c", str(conns), "-s", str(size), "--binary", "--rate", str(RATE),
                                                     "--warmup", warmup, "-d", duration])
                    found["rate"].setdefault(case, {}).setdefault(spec["name"], []).append(r)
                    say(f"rep {rep} {case:>10} {spec['name']:<18} at {RATE:,}/s: "
                        f"{report.cpu_us_per_msg(r) or 0:.2f} µs server CPU per message")
        if "rtt" in parts:
            for spec in turn(specs, rep):
                out = raw / f"rtt-{spec['name']}-r{rep}.json"
                with Server(spec) as server:
                    r = load(spec, server, out, ["-c", "1", "-s", "20", "--binary", "--warmup", warmup, "-d", duration])
                found["rtt"].setdefault(spec["name"], []).append(r)
    return found


SLAB_CACHES = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi")


def kernel_memory() -> dict:
    """Slab (kB, /proc/meminfo), the per-socket slab caches (/proc/slabinfo:
    active objects and object size) and TCP buffer pages (/proc/net/sockstat)."""
    found: dict = {"slab_kib": None, "caches": {}, "tcp_mem_pages": None}
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            found["slab_kib"] = int(line.split()[1])
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            f = line.split()
            if f[0] in SLAB_CACHES:
                found["caches"][f[0]] = {"active": int(f[1]), "objsize": int(f[3])}
    except OSError:
        pass
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            f = line.split()
            found["tcp_mem_pages"] = int(f[f.index("mem") + 1])
    return found


SOURCE_BLOCKS = iter(range(1, 255))


def source_ips(connections: int) -> list[str]:
    """Addresses to dial from, fresh for every idle run: past ~28k connections
    from one address to one port the ephemeral ports run out, and the servers
    close first (RFC 6455 §7.1.1), so each run leaves its connections in
    TIME_WAIT on the server's side for a minute, where they block the same
    address and port pairs for the next run (whose connects then crawl, and
    whose server holds thousands of half-done handshakes at once). All of
    127/8 is loopback: run k dials from 127.k.0.1, 127.k.0.2, ..."""
    n = math.ceil(connections / PORTS_PER_BOUND_IP)
    k = next(SOURCE_BLOCKS)
    return ["--source-ip", f"127.{k}.0.1-127.{k}.0.{n}"]


def idle(specs: list[dict], raw: Path, hold: str, counts: list[int]) -> dict:
    """{connections: {server: result}}; each result also carries the kernel's
    slab growth while the connections were held (both ends are on this host)."""
    found: dict = {}
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for n in counts:
        if n + 64 > nofile:
            NOTES.append(f"idle {n:,} connections: skipped, a process here may hold {nofile:,} descriptors (ulimit -n)")
            say(NOTES[-1])
            continue
        for spec in specs:
            out = raw / f"idle-{n}-{spec['name']}.json"
            with Server(spec) as server:
                before = kernel_memory()
                peak: dict = {"slab_kib": before["slab_kib"], "tcp_active": None}

                def sample() -> None:
                    k = kernel_memory()
                    if k["slab_kib"] and k["slab_kib"] > (peak["slab_kib"] or 0):
                        peak["slab_kib"] = k["slab_kib"]
                    tcp = k["caches"].get("TCP", {}).get("active")
                    if tcp is not None and tcp > (peak["tcp_active"] or 0):
                        peak["tcp_active"] = tcp

                r = load(spec, server, out, ["--scenario", "idle", "-c", str(n), *source_ips(n),
                                             "--connect-rate", str(IDLE_CONNECT_RATE),
                                             "--warmup", "0s", "-d", hold, "--timeout", "30s"], during=sample)
            held = r["connections"].get("held", r["connections"]["opened"])
            r["kernel"] = {"before": before, "peak_slab_kib": peak["slab_kib"], "peak_tcp_active": peak["tcp_active"],
                           "slab_bytes_per_socket": ((peak["slab_kib"] or 0) - (before["slab_kib"] or 0)) * 1024 / (2 * held)
                           if held else None}
            out.write_text(json.dumps(r, indent=1) + "\n")
            found.setdefault(str(n), {})[spec["name"]] = r
            say(f"idle {n:>6,} {spec['name']:<18} {r['server']['rss_per_connection_bytes'] or 0:,.0f} B/conn "
                f"(held {held:,}; kernel slab {r['kernel']['slab_bytes_per_socket'] or 0:,.0f} B/socket)")
    return found


def deflate_servers(specs: list[dict], only: list[str] | None) -> list[dict]:
    """The servers that compress: wsecho as it ships (`--deflate on`: no
    context takeover, pooled contexts), Node `ws` with `perMessageDeflate`
    (its defaults: context takeover both ways) and uWebSockets' EchoServer
    built with zlib, a shared compressor and decompressor, echoing with
    compression (run.sh builds it when UWS_DIR is set)."""
    out = []
    for s in specs:
        if s["name"] == "wsecho":
            out.append(s)
        elif s["name"] == "node-ws":
            out.append({**s, "cmd": [*s["cmd"], "--deflate"],
                        "version": f"{s['version']}, perMessageDeflate: true (ws defaults)"})
    bin_ = os.environ.get("UWS_DEFLATE_ECHO_BIN")
    if bin_ and (not only or "uWebSockets" in only):
        out.append({"name": "uWebSockets", "port": 9907, "cmd": [bin_],
                    "version": f"uWebSockets {os.environ.get('UWS_VERSION', '?')} examples/EchoServer.cpp "
                               f"({os.environ.get('UWS_CXX', 'g++')}; zlib {os.environ.get('UWS_ZLIB', '?')}; "
                               "SHARED_COMPRESSOR | SHARED_DECOMPRESSOR, echoes compressed)"})
    return out


def deflate(specs: list[dict], raw: Path, reps: int, warmup: str, duration: str, hold: str) -> dict:
    """{"echo": {server: {"deflate" | "plain": [results]}}, "idle": {server:
    {"deflate" | "plain": result}}}: the same compressible load with and
    without `--deflate` against the same server process configuration (the
    client decides), interleaved per repetition; then N idle connections
    held with deflate negotiated and without."""
    conns, size = DEFLATE_CASE
    modes = (("deflate", ["--deflate"]), ("plain", []))
    found: dict = {"echo": {}, "idle": {}}
    for rep in range(1, reps + 1):
        for spec in turn(specs, rep):
            for mode, extra in modes:
                out = raw / f"deflate-{conns}x{size}-{mode}-{spec['name']}-r{rep}.json"
                with Server(spec) as server:
                    r = load(spec, server, out, ["-c", str(conns), "-s", str(size), "--payload", "text-json",
                                                 "--warmup", warmup, "-d", duration, *extra])
                found["echo"].setdefault(spec["name"], {}).setdefault(mode, []).append(r)
                outcome = (r.get("deflate") or {}).get("outcome", "not offered")
                say(f"rep {rep} deflate {conns}x{size} {spec['name']:<14} {mode:<8} "
                    f"{r['rates']['messages_received_per_s']:>10,.0f} msg/s  {report.cpu_us_per_msg(r) or 0:.2f} µs/msg"
                    f"  errors {sum(r['errors'].values())}  ({outcome})")
    n = DEFLATE_IDLE
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if n + 64 > nofile:
        NOTES.append(f"deflate idle {n:,}: skipped, a process here may hold {nofile:,} descriptors")
        return found
    for spec in specs:
        for mode, extra in modes:
            out = raw / f"deflate-idle-{n}-{mode}-{spec['name']}.json"
            with Server(spec) as server:
                r = load(spec, server, out, ["--scenario", "idle", "-c", str(n), *source_ips(n),
                                             "--connect-rate", str(IDLE_CONNECT_RATE),
                                             "--warmup", "0s", "-d", hold, "--timeout", "30s", *extra])
            found["idle"].setdefault(spec["name"], {})[mode] = r
            say(f"deflate idle {n:,} {spec['name']:<14} {mode:<8} "
                f"{(r.get('server') or {}).get('rss_per_connection_bytes') or 0:,.0f} B/conn "
                f"({(r.get('deflate') or {}).get('outcome', 'not offered')})")
    return found


# peers, rooms, what else the case is (a suffix to its name) and the
# generator's arguments for it; 10 messages/s per peer. The default payload
# is 20 B of binary, which does not compress; the last two cases are 1 KiB of
# JSON-ish text to one room, without permessage-deflate and with it (wsecho
# compresses a relay once per room message for the peers that agreed to it).
CHAT_JSON = ["-s", "1KiB", "--payload", "text-json"]
CHAT = [(100, 1, "", []), (1000, 100, "", []),
        (100, 1, "json", CHAT_JSON), (100, 1, "json-deflate", [*CHAT_JSON, "--deflate"])]


def chat_case(peers: int, rooms: int, label: str) -> str:
    return f"{peers}x{rooms}" + (f"-{label}" if label else "")


def chat(spec: dict, raw: Path, reps: int, warmup: str, duration: str) -> dict:
    """Room fan-out through wsecho alone (the peers have no rooms): {case:
    [results]}, the cases interleaved per repetition. Latency near a busy
    core swings by several times within minutes (p50 0.36-0.69 ms at 100 x 1
    in three back-to-back runs), so one run per case says little."""
    found: dict = {}
    for rep in range(1, reps + 1):
        for peers, rooms, label, extra in CHAT:
            case = chat_case(peers, rooms, label)
            with Server(spec) as server:
                r = load(spec, server, raw / f"chat-{case}-r{rep}.json",
                         ["--scenario", "chat", "-c", str(peers), "--rooms", str(rooms), *extra,
                          "--warmup", warmup, "-d", duration])
            found.setdefault(case, []).append(r)
            say(f"rep {rep} chat {case:>18} {r['rates']['messages_received_per_s']:>12,.0f} deliveries/s"
                f"  p50 {r['latency_us']['p50']:,.0f} µs  errors {sum(r['errors'].values())}"
                f"  load cpu {r['client_cpu_pct']:.0f}%")
    return found


# wsecho's WebSockets over HTTP/2 (RFC 8441), all on one TCP connection, beside
# the same WebSockets over HTTP/1.1 (one connection each).
H2_CASES = [(100, 20), (100, 1024)]


def http2(spec: dict, raw: Path, reps: int, warmup: str, duration: str) -> dict:
    """wsecho alone (the peers do not speak RFC 8441): {case: {"http/1.1" |
    "h2": [results]}}, the two protocols interleaved per repetition."""
    found: dict = {}
    for rep in range(1, reps + 1):
        for conns, size in H2_CASES:
            case = f"{conns}x{size}"
            for proto, extra in (("http/1.1", []), ("h2", ["--http2", "--streams-per-connection", str(conns)])):
                out = raw / f"h2-{case}-{proto.replace('/', '')}-r{rep}.json"
                with Server(spec) as server:
                    r = load(spec, server, out, ["-c", str(conns), "-s", str(size), "--binary",
                                                 "--warmup", warmup, "-d", duration, *extra])
                found.setdefault(case, {}).setdefault(proto, []).append(r)
                say(f"rep {rep} {case:>10} wsecho over {proto:<8} {r['rates']['messages_received_per_s']:>12,.0f} msg/s"
                    f"  errors {sum(r['errors'].values())}  load cpu {r['client_cpu_pct']:.0f}%")
    return found


def first_line(cmd: list[str]) -> str:
    try:
        return run_out(cmd).splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unavailable"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "unknown")
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal:"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": run_out(["uname", "-sr"]),
        "rustc": run_out(["rustc", "-V"]),
        "cc": first_line(["cc", "--version"]),
        # run.sh exports UWS_CXX as the compiler's version line, not a command
        "cxx": os.environ.get("UWS_CXX") or first_line(["g++", "--version"]),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "commit": git("rev-parse", "HEAD") + (" (dirty)" if git("status", "--porcelain", "--", "src", "loadtest") else ""),
        "load": f"wsecho-load {cargo_version('wsecho-load')}",
        "load_test": os.environ.get("LOADTEST_VERSION", "not built"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 repetition of short runs: checks the pipeline")
    ap.add_argument("--reps", type=int, help="interleaved repetitions (default 3; --quick 1)")
    ap.add_argument("--servers", help="only these servers, comma-separated (e.g. wsecho,uWebSockets,raw-tcp)")
    ap.add_argument("--cases", help="only these matrix cases, comma-separated (e.g. 100x20,500x16384)")
    ap.add_argument("--parts", default="echo,loadtest,rate,rtt,idle,chat,h2,deflate",
                    help="which measurements (default: all of echo,loadtest,rate,rtt,idle,chat,h2,deflate; "
                         "chat: wsecho's rooms, 100 peers x 1 room and 1000 x 100 with 20 B binary, and "
                         "100 x 1 with 1 KiB of JSON text without and with permessage-deflate; "
                         "h2: wsecho's 100 WebSockets on one HTTP/2 connection beside HTTP/1.1; "
                         "deflate: 100 x 1 KiB of --payload text-json with and without --deflate against the "
                         "servers that compress, and 10,000 idle connections with deflate negotiated and without)")
    ap.add_argument("--idle", default=",".join(map(str, IDLE_CONNECTIONS)),
                    help="idle connection counts (default 10000,19000; past the descriptor limit they are skipped)")
    ap.add_argument("--out", type=Path, help="output directory (default results/<UTC date>)")
    ap.add_argument("--report-only", type=Path, metavar="DIR",
                    help="remake DIR's results.json, summary.md and charts from DIR/raw/found.json; no measuring")
    ap.add_argument("--readme", action="store_true",
                    help="with --report-only: also rewrite README.md's results section from DIR (a full run only)")
    args = ap.parse_args()
    if args.report_only:
        done = args.report_only.resolve()
        saved = json.loads((done / "raw/found.json").read_text())
        summary = report.summarize(saved["found"], saved["meta"], saved["names"])
        (done / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
        report.write(done, summary)
        if args.readme:
            if saved["meta"].get("partial") or saved["meta"].get("quick"):
                say("not a full run: README.md left as it is")
                return 2
            report.update_readme(ROOT / "README.md", done, summary)
        say(f"remade {done}")
        return 0
    reps = args.reps or (1 if args.quick else 3)
    # load_test: the first 4-second interval is warm-up, then 1 (quick) or 2 are counted.
    warmup, duration, hold, lt_count = ("1s", "2s", "2s", 1) if args.quick else ("2s", "8s", "5s", 2)
    parts = set(args.parts.split(","))
    cases = [c for c in MATRIX if not args.cases or f"{c[0]}x{c[1]}" in args.cases.split(",")]
    counts = [int(x) for x in args.idle.split(",") if x]
    # A process may raise its soft descriptor limit up to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    partial = args.quick or args.servers or args.cases or args.parts != ap.get_default("parts")
    # Absolute: the README links the run relative to the repository.
    out = (args.out or ROOT / "results" / (date + ("-quick" if args.quick else "-partial" if partial else ""))).resolve()
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    specs = servers(max(20_000, max(counts, default=0) + 1_000))
    if args.servers:
        specs = [s for s in specs if s["name"] in args.servers.split(",")]
    dspecs = deflate_servers(specs, args.servers.split(",") if args.servers else None)
    signal.signal(signal.SIGTERM, lambda *_: (kill_all(), sys.exit(143)))
    started = time.monotonic()
    # Before the run: a tree edited while it goes on would mark binaries
    # built from a clean commit "(dirty)".
    host = machine()
    try:
        found = measure(specs, raw, reps, cases, parts, warmup, duration, 1, lt_count)
        found["idle"] = idle(specs, raw, hold, counts) if "idle" in parts else {}
        wsecho = [s for s in specs if s["name"] == "wsecho"]
        found["chat"] = chat(wsecho[0], raw, reps, warmup, duration) if "chat" in parts and wsecho else {}
        found["http2"] = http2(wsecho[0], raw, reps, warmup, duration) if "h2" in parts and wsecho else {}
        found["deflate"] = deflate(dspecs, raw, reps, warmup, duration, hold) if "deflate" in parts else {}
    finally:
        kill_all()
    notes = [n for n in os.environ.get("RESULTS_NOTES", "").split("\n") if n.strip()] + NOTES
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": host,
        "servers": {s["name"]: s["version"] for s in specs},
        "commands": {s["name"]: " ".join(["taskset", "-c", SERVER_CPU, *[Path(c).name if "/" in c else c for c in s["cmd"]]])
                     for s in specs},
        "load_command": f"taskset -c {LOAD_CPU} wsecho-load ws://127.0.0.1:PORT/ --threads 1 --binary "
                        f"-c CONNS -s SIZE --warmup {warmup} -d {duration} --server-pid PID --json FILE",
        "load_test_command": f"taskset -c {LOAD_CPU} timeout LIMIT load_test CONNS 127.0.0.1 PORT 0 0 SIZE "
                             f"(first {LOADTEST_PERIOD_S} s interval warm-up, then {lt_count} counted)",
        "rate": RATE,
        # Runs before this key read whole-process ticks from /proc/PID/stat;
        # 2026-12-06-6 summed threads' schedstat for load_test runs too.
        "server_cpu_clock": "cpuclock",
        "rate_command": f"taskset -c {LOAD_CPU} wsecho-load ws://127.0.0.1:PORT/ --threads 1 --binary "
                        f"-c CONNS -s SIZE --rate {RATE} --warmup {warmup} -d {duration} --server-pid PID",
        "http2_command": f"taskset -c {LOAD_CPU} wsecho-load ws://127.0.0.1:PORT/ --threads 1 --binary "
                         f"-c CONNS -s SIZE [--http2 --streams-per-connection CONNS] --warmup {warmup} -d {duration}",
        "deflate_command": f"taskset -c {LOAD_CPU} wsecho-load ws://127.0.0.1:PORT/ --threads 1 "
                           f"-c {DEFLATE_CASE[0]} -s {DEFLATE_CASE[1]} --payload text-json [--deflate] "
                           f"--warmup {warmup} -d {duration} --server-pid PID",
        "deflate_idle": DEFLATE_IDLE,
        "deflate_servers": {s["name"]: {"version": s["version"], "command": " ".join(
            ["taskset", "-c", SERVER_CPU, *[Path(c).name if "/" in c else c for c in s["cmd"]]])}
            for s in dspecs} if "deflate" in parts else {},
        "idle_hold": hold,
        "idle_connect_rate": IDLE_CONNECT_RATE,
        "repetitions": reps,
        "quick": args.quick,
        "partial": bool(partial),
        "notes": notes,
        "wall_s": round(time.monotonic() - started),
    }
    # Everything the report is made from, so it can be remade without measuring again.
    (raw / "found.json").write_text(json.dumps({"found": found, "meta": meta, "names": [s["name"] for s in specs]}) + "\n")
    summary = report.summarize(found, meta, [s["name"] for s in specs])
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    report.write(out, summary)
    if not partial:
        report.update_readme(ROOT / "README.md", out, summary)
    say(f"wrote {out} in {meta['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
