#!/usr/bin/env bash
# One core against one core: wsecho (release) pinned to CPU 0 with one
# worker thread, wsecho-load pinned to CPU 1 with one worker thread, closed
# loop, 1 message in flight per connection:
#   100 connections x 20 B and 10 connections x 16 KiB,
# each run 10 s counted after a 2 s warm-up, 3 interleaved repetitions.
# Prints a Markdown table: median messages/s, each side's CPU (wsecho-load
# reads its own threads from /proc/self/task and the server's from
# /proc/PID/stat, over the counted window) and which side was the
# bottleneck. Loopback only; every run is bounded by its duration.
#
# Usage: loadtest/bench.sh            (from anywhere in the repository)
# Knobs: PORT=19909 REPS=3 DURATION=10s WARMUP=2s SERVER_CPU=0 CLIENT_CPU=1
#        MIN_RATE=10000 (echoes/s below which a run fails: the speed floor
#        that `cargo test` does not check, since a loaded CI machine may be
#        slow without anything being wrong)
set -euo pipefail

cd "$(dirname "$0")/.."
PORT=${PORT:-19909}
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MIN_RATE=${MIN_RATE:-10000}
MATRIX=("100 20" "10 16384")

cargo build --release --quiet -p wsecho --bin wsecho
cargo build --release --quiet -p wsecho-load
SERVER=target/release/wsecho
LOAD=target/release/wsecho-load

work=$(mktemp -d)
csv="$work/runs.csv"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$SERVER" --listen "127.0.0.1:$PORT" --threads 1 --log warn \
    >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
done

failures=0
for rep in $(seq "$REPS"); do
    for cell in "${MATRIX[@]}"; do
        read -r conns size <<<"$cell"
        echo "run $rep: $conns connections x $size B" >&2
        if ! taskset -c "$CLIENT_CPU" "$LOAD" "ws://127.0.0.1:$PORT/" -c "$conns" -s "$size" \
            -d "$DURATION" --warmup "$WARMUP" --threads 1 --server-pid "$server_pid" \
            --min-rate "$MIN_RATE" -q --csv "$csv" >"$work/run-$rep-$conns-$size.txt"; then
            failures=$((failures + 1))
            cat "$work/run-$rep-$conns-$size.txt" >&2
        fi
    done
done

kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with uncommitted changes)"; fi
echo "### wsecho vs wsecho-load, one core each"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) CPUs)"
echo "- kernel: $(uname -sr)"
echo "- rustc: $(rustc --version)"
echo "- commit: $commit"
echo "- wsecho: \`taskset -c $SERVER_CPU $SERVER --threads 1\`; wsecho-load: \`taskset -c $CLIENT_CPU $LOAD URL -c N -s SIZE -d $DURATION --warmup $WARMUP --threads 1 --server-pid PID\`"
echo "- closed loop, 1 message in flight per connection, binary; $REPS interleaved repetitions; median shown, every run listed"
echo
echo "| connections x payload | messages/s (median) | all runs | wsecho-load CPU % | wsecho CPU % | errors | bottleneck |"
echo "|---|---:|---|---:|---:|---:|---|"
awk -F, '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    key = $col["connections"] " x " $col["size"]
    if (!(key in n)) order[++keys] = key
    k = ++n[key]
    rate[key, k] = $col["messages_received_per_s"]
    client[key, k] = $col["client_cpu_pct"]
    server[key, k] = $col["server_cpu_pct"]
    errors[key] += $col["errors"]
}
function median(arr, key, count,    i, j, v, t) {
    for (i = 1; i <= count; i++) v[i] = arr[key, i] + 0
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return count % 2 ? v[(count + 1) / 2] : (v[count / 2] + v[count / 2 + 1]) / 2
}
END {
    for (o = 1; o <= keys; o++) {
        key = order[o]; c = n[key]
        all = ""
        for (i = 1; i <= c; i++) all = all (i > 1 ? ", " : "") sprintf("%.0f", rate[key, i])
        r = median(rate, key, c); cl = median(client, key, c); sv = median(server, key, c)
        split(key, parts, " x ")
        payload = parts[2] >= 1024 ? sprintf("%d KiB", parts[2] / 1024) : parts[2] " B"
        if (cl >= 90 && sv >= 90) verdict = (sv >= cl ? "both saturated; server the busier" : "both saturated; wsecho-load the busier")
        else verdict = (sv >= cl ? "server (wsecho-load has headroom)" : "wsecho-load (server has headroom)")
        printf "| %s x %s | %.0f | %s | %.1f | %.1f | %d | %s |\n", parts[1], payload, r, all, cl, sv, errors[key], verdict
    }
}' "$csv"
if ((failures > 0)); then
    echo
    echo "$failures run(s) exited non-zero (errors or thresholds); see above."
    exit 1
fi
