#!/usr/bin/env bash
# Where a generator's CPU goes, for one matrix case: wsecho (release) pinned
# to CPU 0 with one worker thread, the generator pinned to CPU 1, as in
# bench.sh. For wsecho-load and (when LOAD_TEST names a binary, e.g. the
# target/peers/load_test that results/run.sh builds) the C load_test:
#   - system calls per echoed message: `strace -c` on the generator for 4 s;
#   - where its CPU goes: `perf record` for 5 s, split by binary (kernel,
#     its own code, libc) and its hottest symbols.
# Loopback only; every run is bounded (wsecho-load by -d, load_test by
# `timeout`). Needs perf and strace (Debian: linux-perf, strace).
#
# Usage: loadtest/profile.sh CONNECTIONS SIZE
#        LOAD_TEST=target/peers/load_test loadtest/profile.sh 10 16384
# Knobs: PORT=19919 SERVER_CPU=0 CLIENT_CPU=1 TOP=12
#        WSECHO_LOAD=path (another wsecho-load build, e.g. before a change)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=../scripts/lib.sh
source scripts/lib.sh

conns=${1:?usage: loadtest/profile.sh CONNECTIONS SIZE}
size=${2:?usage: loadtest/profile.sh CONNECTIONS SIZE}
PORT=${PORT:-19919}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TOP=${TOP:-12}
LOAD_TEST=${LOAD_TEST:-}
WSECHO_LOAD=${WSECHO_LOAD:-target/release/wsecho-load}
for tool in perf strace; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 2; }
done
work=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a generator in the background and sets gen_pid to the process to
# look at (load_test's own pid, not its `timeout` wrapper's).
start_generator() {
    local gen=$1
    if [[ $gen == wsecho-load ]]; then
        taskset -c "$CLIENT_CPU" "$WSECHO_LOAD" "ws://127.0.0.1:$PORT/" -c "$conns" \
            -s "$size" -d 10s --warmup 1s --threads 1 -q >/dev/null 2>&1 &
        gen_pid=$!
    else
        set_load_test_args "$conns" "$PORT" "$size"
        timeout 12 taskset -c "$CLIENT_CPU" "$LOAD_TEST" "${load_test_args[@]}" >/dev/null 2>&1 &
        sleep 0.3
        gen_pid=$(pgrep -n -x "$(basename "$LOAD_TEST")")
    fi
}

wait_generator() {
    while kill -0 "$gen_pid" 2>/dev/null; do sleep 0.2; done
}

taskset -c "$SERVER_CPU" target/release/wsecho --listen "127.0.0.1:$PORT" --threads 1 --log warn \
    >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_port "$PORT" || true

gens=(wsecho-load)
[[ -n "$LOAD_TEST" ]] && gens+=(load_test)
echo "## $conns connections x $size B, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
for gen in "${gens[@]}"; do
    echo
    echo "### $gen"
    start_generator "$gen"
    sleep 2
    timeout -s INT 4 strace -c -f -p "$gen_pid" -o "$work/strace.txt" 2>/dev/null || true
    wait_generator
    # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall.
    awk '$NF ~ /^(sendto|recvfrom|epoll_wait|writev|write)$/ { calls[$NF] = $4 }
         END {
             sent = calls["sendto"] + calls["writev"] + calls["write"]
             printf "system calls in 4 s: sendto %d, recvfrom %d, epoll_wait %d (one epoll_wait per %.1f sends)\n",
                 calls["sendto"], calls["recvfrom"], calls["epoll_wait"],
                 calls["epoll_wait"] ? sent / calls["epoll_wait"] : 0
         }' "$work/strace.txt"
    start_generator "$gen"
    sleep 2
    perf record -q -g -F 1999 -p "$gen_pid" -o "$work/perf.data" -- sleep 5 2>/dev/null
    wait_generator
    echo "CPU by binary:"
    perf report -i "$work/perf.data" --no-children --stdio --sort dso 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -5 || true
    echo "hottest symbols:"
    perf report -i "$work/perf.data" --no-children --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -"$TOP" || true
done
