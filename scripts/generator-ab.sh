#!/usr/bin/env bash
# Interleaved A/B of generators, per core of their own, against one wsecho:
# the server pinned to CPU 0, each generator in turn pinned to CPU 1, REPS
# rounds. Per run: messages/s from the kernel's TCP segment count over SECS
# (nstat TcpOutSegs less TcpExtTCPPureAcks; on loopback an echo is two
# segments, and a generator that answers late makes the server send pure
# ACKs, which would count as echoes), the generator's
# CPU from /proc/PID/stat over the same SECS, per core = msg/s / CPU share.
# Prints each run, then each generator's median per core. For comparing two
# builds of wsecho-load (copy each binary aside first) with load_test
# alongside; loadtest/bench.sh is the full matrix. Loopback only; every run
# is bounded (wsecho-load by -d, load_test killed after SECS).
#
# Usage: scripts/generator-ab.sh REPS CONNECTIONS SIZE NAME=BINARY...
#   BINARY is a wsecho-load build, or `load_test` (target/peers/load_test).
#   scripts/generator-ab.sh 3 500 16384 old=/tmp/wl-old new=target/release/wsecho-load lt=load_test
# Knobs: SECS=8 VERIFY=sample SERVER=target/release/wsecho PORT=19960
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
usage="usage: scripts/generator-ab.sh REPS CONNECTIONS SIZE NAME=BINARY..."
reps=${1:?$usage} conns=${2:?$usage} size=${3:?$usage}
shift 3
(($# > 0)) || { echo "$usage" >&2; exit 2; }
SECS=${SECS:-8} VERIFY=${VERIFY:-sample} SERVER=${SERVER:-target/release/wsecho} PORT=${PORT:-19960}
command -v nstat >/dev/null || { echo "generator-ab.sh: nstat is not installed" >&2; exit 2; }
with_scratch

taskset -c 0 "$SERVER" --listen "127.0.0.1:$PORT" --threads 1 --log warn >/dev/null 2>&1 &
pids+=($!)
wait_for_port "$PORT"
declare -A per_core
for rep in $(seq "$reps"); do
    for spec in "$@"; do
        name=${spec%%=*} bin=${spec#*=}
        if [[ "$bin" == load_test ]]; then
            set_load_test_args "$conns" "$PORT" "$size"
            taskset -c 1 target/peers/load_test "${load_test_args[@]}" >/dev/null 2>&1 &
        else
            taskset -c 1 "$bin" "ws://127.0.0.1:$PORT/" -c "$conns" -s "$size" --binary \
                -d "$((SECS + 6))s" --warmup 1s --threads 1 --verify "$VERIFY" -q >/dev/null 2>&1 &
        fi
        gen=$!
        pids+=("$gen")
        sleep 3
        nstat -n >/dev/null
        t0=$(awk '{print $14 + $15}' "/proc/$gen/stat")
        sleep "$SECS"
        t1=$(awk '{print $14 + $15}' "/proc/$gen/stat")
        segs=$(nstat TcpOutSegs TcpExtTCPPureAcks | awk '$1 == "TcpOutSegs" {s += $2}
            $1 == "TcpExtTCPPureAcks" {s -= $2} END {print s}')
        kill "$gen" 2>/dev/null || true
        wait "$gen" 2>/dev/null || true
        read -r rate cpu core < <(python3 -c "
m = $segs / 2 / $SECS; c = ($t1 - $t0) / $SECS / 100
print(round(m), round(c * 100), round(m / c))")
        echo "run $rep $name: $rate msg/s, CPU $cpu %, per core $core"
        per_core[$name]="${per_core[$name]:-} $core"
        sleep 1
    done
done
for spec in "$@"; do
    name=${spec%%=*}
    # shellcheck disable=SC2086 # the list is meant to split
    echo "$name: median per core $(python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:]))))' ${per_core[$name]})"
done
