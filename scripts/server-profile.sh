#!/usr/bin/env bash
# Where a server's CPU goes while the C load_test saturates it: the server
# pinned to CPU 0, load_test to CPU 1 (as in results/), `perf record` on the
# server for 6 s once the load has run 4 s; prints its CPU split by binary
# (kernel, its own code, libc) and its hottest user-space symbols.
# Loopback only; bounded by `timeout`. Needs perf (Debian: linux-perf).
#
# Usage: scripts/server-profile.sh CONNECTIONS SIZE PORT SERVER [ARGS...]
#   LOAD_TEST=target/peers/load_test scripts/server-profile.sh 500 16384 19931 \
#       target/release/wsecho --listen 127.0.0.1:19931 --threads 1 --log warn
#   LOAD_TEST=target/peers/load_test scripts/server-profile.sh 500 16384 9904 \
#       target/peers/EchoServer      # results/run.sh builds it listening on 9904
# load_test: built by results/run.sh (UWS_DIR) as target/peers/load_test.
# Knobs: SERVER_CPU=0 CLIENT_CPU=1 TOP=12
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
conns=${1:?usage: scripts/server-profile.sh CONNECTIONS SIZE PORT SERVER [ARGS...]}
size=${2:?}
port=${3:?}
shift 3
LOAD_TEST=${LOAD_TEST:-target/peers/load_test}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TOP=${TOP:-12}
set_load_test_args "$conns" "$port" "$size"
command -v perf >/dev/null || { echo "server-profile.sh: perf is not installed" >&2; exit 2; }
[[ -x "$LOAD_TEST" ]] || { echo "server-profile.sh: no load_test at $LOAD_TEST (results/run.sh with UWS_DIR builds it)" >&2; exit 2; }
with_scratch

taskset -c "$SERVER_CPU" "$@" >"$work/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
wait_for_port "$port" || true
timeout 12 taskset -c "$CLIENT_CPU" stdbuf -oL "$LOAD_TEST" "${load_test_args[@]}" >"$work/lt.txt" 2>&1 &
sleep 4
perf record -q -F 999 -p "$server_pid" -o "$work/perf.data" -- sleep 6 2>/dev/null
wait $! 2>/dev/null || true

echo "## $(basename "$1"), $conns connections x $size B, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
echo "load_test: $(grep 'Msg/sec' "$work/lt.txt" | tail -1)"
echo "CPU by binary:"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -6
echo "hottest user-space symbols:"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | grep -v kernel.kallsyms | head -"$TOP"
