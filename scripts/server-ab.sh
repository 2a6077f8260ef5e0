#!/usr/bin/env bash
# Server CPU per echoed message for several servers side by side, in
# interleaved repetitions: each server pinned to CPU 0 and a generator
# pinned to CPU 1 (as in results/), the server's CPU time (perf stat
# task-clock) and the kernel's count of TCP segments (nstat TcpOutSegs:
# on loopback both directions, so an echo is two segments once the pure
# ACKs, TcpExtTCPPureAcks, are taken out; they are printed) over the same
# SECS once the load has run 3 s, and then, over one more second, the
# server's epoll_wait calls (echoes per call: how many it finds at each
# look). For comparing two builds of wsecho, or one with uWebSockets, at
# one case; results/run.sh is the whole matrix.
# Loopback only; every run is bounded (wsecho-load by -d, load_test by
# `timeout`). Needs perf and nstat (Debian: linux-perf, iproute2).
#
# Usage: scripts/server-ab.sh REPS CONNECTIONS SIZE GENERATOR SERVER...
#   GENERATOR: load_test (target/peers/load_test, at saturation),
#   wsecho-load:MODE (closed loop, one message in flight per connection,
#   with --verify MODE: full, as in results/, sample or header) or rate:N
#   (wsecho-load, open loop at N msg/s in all);
#   SERVER: uws (target/peers/EchoServer, which results/run.sh builds on
#   port 9904), wsecho (target/release/wsecho) or the path of a wsecho build.
#   scripts/server-ab.sh 3 100 20 rate:40000 /tmp/wsecho-before target/release/wsecho uws
#   scripts/server-ab.sh 3 10 1024 load_test /tmp/wsecho-before target/release/wsecho uws
#   scripts/server-ab.sh 4 500 16384 wsecho-load:header wsecho uws
# Knobs: PORT=19942 SERVER_CPU=0 CLIENT_CPU=1 SECS=4
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
usage="usage: scripts/server-ab.sh REPS CONNECTIONS SIZE load_test|wsecho-load:MODE|rate:N SERVER..."
reps=${1:?$usage} conns=${2:?$usage} size=${3:?$usage} gen=${4:?$usage}
shift 4
(($# > 0)) || { echo "$usage" >&2; exit 2; }
PORT=${PORT:-19942} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1} SECS=${SECS:-4}
for tool in perf nstat; do
    command -v "$tool" >/dev/null || { echo "server-ab.sh: $tool is not installed" >&2; exit 2; }
done
with_scratch

# measure SERVER: prints one line, "SERVER us_per_echo pure_acks
# generator_us_per_echo echoes_per_s echoes_per_epoll_wait".
measure() {
    local server=$1
    start_server "$server" "$PORT"
    local spid=$server_pid port=$server_port
    case "$gen" in
        load_test) start_load_test "$conns" "$port" "$size" "$((SECS + 10))" ;;
        rate:* | wsecho-load:*)
            local load=(--rate "${gen#rate:}")
            if [[ "$gen" == wsecho-load:* ]]; then load=(--verify "${gen#wsecho-load:}"); fi
            taskset -c "$CLIENT_CPU" target/release/wsecho-load "ws://127.0.0.1:$port/" -c "$conns" \
            -s "$size" --binary "${load[@]}" -d "$((SECS + 10))s" --warmup 1s --threads 1 -q \
            >/dev/null 2>&1 &
            gen_pid=$!
            pids+=("$gen_pid") ;;
        *) echo "server-ab.sh: unknown generator $gen" >&2; exit 2 ;;
    esac
    local gpid=$gen_pid gcpu
    sleep 3
    gcpu=$(working_pid "$gpid")
    nstat -n >/dev/null
    perf stat -x, -e task-clock -p "$gcpu" -o "$work/gstat" -- sleep "$SECS" >/dev/null 2>&1 &
    local gstat=$!
    perf stat -x, -e task-clock -p "$spid" -o "$work/stat" -- sleep "$SECS" >/dev/null 2>&1
    wait "$gstat" || true
    nstat TcpOutSegs TcpExtTCPPureAcks >"$work/nstat"
    # The server's epoll_wait calls over one more second, apart: counting a
    # system call costs the server CPU time, which the window above must not
    # include.
    perf stat -x, -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait \
        -p "$spid" -o "$work/waits" -- sleep 1 >/dev/null 2>&1
    nstat TcpOutSegs TcpExtTCPPureAcks >"$work/nstat-waits"
    kill "$gpid" "$spid" 2>/dev/null || true
    wait "$gpid" "$spid" 2>/dev/null || true
    local ms gms segs acks waits wsegs wacks
    ms=$(awk -F, '$3 == "task-clock" {print $1}' "$work/stat")
    waits=$(awk -F, '$3 ~ /epoll_p?wait$/ {n += $1} END {print n + 0}' "$work/waits")
    wsegs=$(awk '$1 == "TcpOutSegs" {print $2}' "$work/nstat-waits")
    wacks=$(awk '$1 == "TcpExtTCPPureAcks" {print $2}' "$work/nstat-waits")
    gms=$(awk -F, '$3 == "task-clock" {print $1}' "$work/gstat")
    segs=$(awk '$1 == "TcpOutSegs" {print $2}' "$work/nstat")
    acks=$(awk '$1 == "TcpExtTCPPureAcks" {print $2}' "$work/nstat")
    # A pure ACK is a segment but no echo: counted as half of one, it would
    # flatter the server whose timing draws more of them.
    # The generator's CPU per echo too: where the generator is at its whole
    # core it sets the pace, and what the server's answers cost it shows.
    # Echoes per epoll_wait: how many the server finds per look. A server
    # that keeps up with a saturated generator finds few at a time, which
    # can cost both sides more per echo (README, 500 x 16 KiB).
    python3 -c "echoes = max((${segs:-0} - ${acks:-0}) / 2, 1)
print(f'$server {$ms * 1e3 / echoes:.3f} ${acks:-0} {${gms:-0} * 1e3 / echoes:.3f} {echoes / $SECS:.0f} {(${wsegs:-0} - ${wacks:-0}) / 2 / max($waits, 1):.1f}')"
}

echo "$conns x $size, $gen, server (and generator) CPU per echo over ${SECS} s, $reps interleaved repetitions"
for r in $(seq "$reps"); do
    for server in "$@"; do
        measure "$server" | tee -a "$work/runs"
    done
done
python3 - "$work/runs" "$@" <<'PY'
import statistics, sys
runs, servers = sys.argv[1], sys.argv[2:]
# Per server, one list per column of measure's line after the name.
cols = {}
for line in open(runs):
    name, *values = line.split()
    for col, v in zip(cols.setdefault(name, [[] for _ in values]), values):
        col.append(float(v))
med = lambda s, i: statistics.median(cols[s][i])  # noqa: E731
base = med(servers[-1], 0)
print(f"\n| server | µs per echo, median | runs | ÷ {servers[-1]} | generator µs per echo, median "
      "| echoes/s, median | echoes per epoll_wait, median |\n|---|---:|---|---:|---:|---:|---:|")
for s in servers:
    print(f"| {s} | {med(s, 0):.2f} | {', '.join(f'{x:.2f}' for x in cols[s][0])} | {med(s, 0) / base:.3f} "
          f"| {med(s, 2):.2f} | {med(s, 3):,.0f} | {med(s, 4):.1f} |")
PY
