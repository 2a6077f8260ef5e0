#!/usr/bin/env bash
# What wsecho-load's --pace-slack costs and buys in open loop: wsecho
# (release, one worker thread) pinned to CPU 0, wsecho-load (one worker
# thread) pinned to CPU 1 at a fixed rate, each slack in turn, REPS
# interleaved rounds. Prints one line per run: the rate achieved, the
# generator's and the server's CPU, and corrected and uncorrected p50/p99.
# Loopback only; every run is bounded by its duration.
#
# Usage: scripts/pace-slack.sh [SLACK...]     (default: 0 50us 100us 250us)
# Knobs: PORT=19977 REPS=2 RATE=40000 CONNS=100 SIZE=20 DURATION=8s
#        WARMUP=2s SERVER_CPU=0 CLIENT_CPU=1 (release binaries from target/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
PORT=${PORT:-19977} REPS=${REPS:-2} RATE=${RATE:-40000} CONNS=${CONNS:-100} SIZE=${SIZE:-20}
DURATION=${DURATION:-8s} WARMUP=${WARMUP:-2s} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
slacks=("$@")
((${#slacks[@]})) || slacks=(0 50us 100us 250us)
with_scratch

taskset -c "$SERVER_CPU" target/release/wsecho --listen "127.0.0.1:$PORT" --threads 1 --log warn &
server=$!
pids+=("$server")
wait_for_port "$PORT"
echo "$(date -u +%FT%TZ), $(git rev-parse --short HEAD): $CONNS x $SIZE B at $RATE msg/s, $DURATION after $WARMUP, $REPS rounds"
for rep in $(seq "$REPS"); do
    for slack in "${slacks[@]}"; do
        taskset -c "$CLIENT_CPU" target/release/wsecho-load "ws://127.0.0.1:$PORT/" -c "$CONNS" \
            -s "$SIZE" --rate "$RATE" -d "$DURATION" --warmup "$WARMUP" --threads 1 \
            --pace-slack "$slack" --server-pid "$server" -q --json "$work/run.json" >/dev/null
        python3 - "$work/run.json" "$slack" "$rep" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, u = r["latency_us"], r["latency_uncorrected_us"]
print(f"round {sys.argv[3]} slack {sys.argv[2]:>6}: {r['rates']['messages_received_per_s']:8.0f} msg/s, "
      f"generator {r['client_cpu_pct']:5.1f} % CPU, server {r['server']['cpu_pct']:5.1f} %, "
      f"p50/p99 {c['p50']}/{c['p99']} µs corrected, {u['p50']}/{u['p99']} uncorrected, "
      f"errors {sum(r['errors'].values())}")
PY
    done
done
