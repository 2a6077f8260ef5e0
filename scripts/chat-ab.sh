#!/usr/bin/env bash
# Chat relay, several wsecho builds side by side in interleaved repetitions:
# deliveries/s, server CPU per delivery and p50 at 100 peers × 1 room and
# 1000 peers × 100 rooms (the chat rows of results/), each build pinned to
# CPU 0 and wsecho-load to CPU 1. For checking that a change did not
# regress chat without a full results/run.sh.
# Loopback only; each measurement is bounded by wsecho-load's -d.
#
# Usage: scripts/chat-ab.sh REPS SERVER...
#   SERVER: wsecho (target/release/wsecho) or the path of a wsecho build.
#   scripts/chat-ab.sh 3 /tmp/wsecho-before target/release/wsecho
# Knobs: PORT=19950 SERVER_CPU=0 CLIENT_CPU=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
usage="usage: scripts/chat-ab.sh REPS SERVER..."
reps=${1:?$usage}
shift
(($# > 0)) || { echo "$usage" >&2; exit 2; }
PORT=${PORT:-19950} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
with_scratch

for rep in $(seq "$reps"); do
    for case in "100 1" "1000 100"; do
        read -r peers rooms <<<"$case"
        for server in "$@"; do
            start_server "$server" "$PORT"
            # A run that writes no JSON must stop the script, not print the run before it.
            rm -f "$work/r.json"
            taskset -c "$CLIENT_CPU" target/release/wsecho-load "ws://127.0.0.1:$server_port/" \
                --threads 1 --quiet --server-pid "$server_pid" --json "$work/r.json" \
                --scenario chat -c "$peers" --rooms "$rooms" --warmup 2s -d 6s >/dev/null 2>&1 || true
            kill "$server_pid"
            wait "$server_pid" 2>/dev/null || true
            python3 - "$work/r.json" "$server" "$rep" "$peers × $rooms" <<'PY'
import json, sys
path, server, rep, case = sys.argv[1:]
j = json.load(open(path))
rate = j['rates']['messages_received_per_s']
cpu = j['server']['cpu_pct']
print(f"rep {rep} {case:>10} {server:>28} {rate:>9,.0f} deliveries/s  cpu {cpu:5.1f} %"
      f"  {cpu / 100 / rate * 1e6:6.2f} µs/delivery  p50 {j['latency_us']['p50']:,.0f} µs")
PY
        done
    done
done
