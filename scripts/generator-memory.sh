#!/usr/bin/env bash
# The generator's own memory where a connection could hold a message of its
# own: wsecho-load's RSS (VmRSS, 5 s into a 6 s run) against one wsecho, in
# two cases at a fixed rate, each build in turn:
#   deflate:    2,000 connections with --deflate, 32 KiB of text-json each
#               (inflated echoes);
#   fragmented: 500 connections of 256 KiB binary (wsecho echoes a message
#               past 64 KiB in fragments, which the generator joins).
# For comparing two builds of wsecho-load (copy each binary aside first).
# Loopback only; every run is bounded by -d.
#
# Usage: scripts/generator-memory.sh NAME=BINARY...
#   scripts/generator-memory.sh old=/tmp/wl-old new=target/release/wsecho-load
# Knobs: PORT=19970 SERVER=target/release/wsecho
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
(($# > 0)) || { echo "usage: scripts/generator-memory.sh NAME=BINARY..." >&2; exit 2; }
PORT=${PORT:-19970} SERVER=${SERVER:-target/release/wsecho} SERVER_CPU=0
with_scratch
# 2,000 connections and the server's own descriptors.
ulimit -n 8192 2>/dev/null || true

start_server "$SERVER" "$PORT"

# rss NAME BINARY CASE ARGS...: one run; prints "CASE NAME RSS_KiB msg/s errors".
rss() {
    local name=$1 bin=$2 case=$3
    shift 3
    "$bin" "ws://127.0.0.1:$PORT/" --threads 1 -d 6s --warmup 1s -q --json "$work/out.json" "$@" \
        >/dev/null 2>&1 &
    local gen=$!
    pids+=("$gen")
    sleep 5.5
    local kib
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$gen/status")
    wait "$gen"
    python3 - "$case" "$name" "$kib" "$work/out.json" <<'EOF'
import json, sys
case, name, kib, path = sys.argv[1:]
d = json.load(open(path))
print(f"{case:<11} {name:<10} {int(kib):>9,} KiB  {d['rates']['messages_received_per_s']:>8,.0f} msg/s"
      f"  errors {sum(d['errors'].values())}")
EOF
}

for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=}
    rss "$name" "$bin" deflate -c 2000 -s 32KiB --payload text-json --deflate --rate 2000
    rss "$name" "$bin" fragmented -c 500 -s 256KiB --binary --rate 500
done
