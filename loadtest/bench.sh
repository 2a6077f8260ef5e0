#!/usr/bin/env bash
# One core each: wsecho (release) pinned to CPU 0 with one worker thread;
# the generator pinned to CPU 1: wsecho-load with one worker thread and
# verification on, and (when UWS_DIR is set) the C load_test that
# fastwebsockets and uWebSockets publish their charts with, built here
# from the fastwebsockets crate source and uSockets from $UWS_DIR.
# Closed loop, 1 message in flight per connection, binary, for each
# matrix case; REPS interleaved repetitions (case by case, generator by
# generator). Prints a Markdown table: median messages/s, each generator's
# CPU over the counted window, and messages/s per core of the generator's
# own (rate / its CPU share), and the ratio wsecho-load / load_test.
# Loopback only; every run is bounded by its duration (load_test, which
# runs until killed, by `timeout`).
#
# Usage: loadtest/bench.sh            (from anywhere in the repository)
#        UWS_DIR=/path/to/uWebSockets loadtest/bench.sh
# Knobs: PORT=19909 REPS=3 DURATION=8s WARMUP=2s SERVER_CPU=0 CLIENT_CPU=1
#        MATRIX="100x20 10x1024 ..." (connections x payload bytes)
#        BUILD=0 (use the release binaries already in target/)
#        VERIFY=full|sample|header (wsecho-load's --verify; full by default);
#        several, e.g. VERIFY="full sample", run each mode in turn with the
#        others, one table per mode over the same load_test runs
#        TASKS=1 (also run wsecho-load --driver tasks, a tokio task per
#        connection, and show its per-core figure beside the epoll loop's)
#        MIN_RATE=10000 (echoes/s below which a wsecho-load run fails: the
#        speed floor that `cargo test` does not check, since a loaded CI
#        machine may be slow without anything being wrong)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=../scripts/lib.sh
source scripts/lib.sh
PORT=${PORT:-19909}
REPS=${REPS:-3}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MIN_RATE=${MIN_RATE:-10000}
read -r -a MODES <<<"${VERIFY:-full}"
read -r -a MATRIX <<<"${MATRIX:-100x20 10x1024 10x16384 200x16384 500x16384 1000x20}"
secs() { local d=${1%s}; echo "${d%.*}"; }

if [[ "${BUILD:-1}" == 1 ]]; then
    cargo build --release --quiet -p wsecho --bin wsecho
    cargo build --release --quiet -p wsecho-load
fi
SERVER=target/release/wsecho
LOAD=target/release/wsecho-load

with_scratch

# load_test from source: the fastwebsockets crate's benches/load_test.c on
# uSockets (epoll, no TLS), as its Makefile does, with gcc.
LOAD_TEST=""
if [[ -n "${UWS_DIR:-}" ]]; then
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/fastwebsockets-0.10.0/benches 2>/dev/null | head -1)
    us="$UWS_DIR/uSockets/src"
    if [[ -n "$src" && -d "$us" ]]; then
        LOAD_TEST="$work/load_test"
        gcc -O3 -flto -w -DLIBUS_NO_SSL -I"$us" "$us"/*.c "$us/eventing/epoll_kqueue.c" \
            "$us/crypto/openssl.c" "$src/load_test.c" -o "$LOAD_TEST"
    else
        echo "note: no fastwebsockets-0.10.0 crate source or no $us: load_test skipped" >&2
    fi
else
    echo "note: UWS_DIR is not set: load_test skipped (wsecho-load alone)" >&2
fi

taskset -c "$SERVER_CPU" "$SERVER" --listen "127.0.0.1:$PORT" --threads 1 --log warn \
    >"$work/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
wait_for_port "$PORT" || true

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# results: one line per run: generator case rate cpu_pct
results="$work/results.txt"
failures=0
run_wsecho_load() {
    local conns=$1 size=$2 mode=$4 driver=${5:-epoll} out="$work/wl-$1-$2-$3-$4-${5:-epoll}.json"
    local name=wsecho-load-$mode
    [[ "$driver" == tasks ]] && name=wsecho-load-$mode-tasks
    if ! taskset -c "$CLIENT_CPU" "$LOAD" "ws://127.0.0.1:$PORT/" -c "$conns" -s "$size" \
        -d "$DURATION" --warmup "$WARMUP" --threads 1 --server-pid "$server_pid" \
        --verify "$mode" --driver "$driver" --min-rate "$MIN_RATE" -q --json "$out" \
        >"$work/wl.txt" 2>&1; then
        failures=$((failures + 1))
        cat "$work/wl.txt" >&2
    fi
    python3 - "$out" "$conns" "$size" "$name" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(sys.argv[4], f"{sys.argv[2]}x{sys.argv[3]}", r["rates"]["messages_received_per_s"],
      r["client_cpu_pct"], r["errors"] and sum(r["errors"].values()))
PY
}
# load_test prints "Msg/sec" every 4 s (uSockets' timeout granularity),
# counted from its last connection; it runs until killed. The window is
# its 2nd and 3rd reports (4-12 s), and its CPU is read from /proc over
# the same span.
run_load_test() {
    local conns=$1 size=$2
    set_load_test_args "$conns" "$PORT" "$size"
    taskset -c "$CLIENT_CPU" stdbuf -oL "$LOAD_TEST" "${load_test_args[@]}" >"$work/lt.txt" 2>&1 &
    local pid=$!
    sleep 4.5
    local t0 a0 b
    t0=$(date +%s.%N)
    a0=$(ticks "$pid")
    sleep 8
    b=$(ticks "$pid")
    local t1
    t1=$(date +%s.%N)
    sleep 0.2
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk -v c="${conns}x${size}" -v a="$a0" -v b="$b" -v t0="$t0" -v t1="$t1" '
        /Msg\/sec/ { n++; if (n == 2 || n == 3) { sum += $2; k++ } }
        END { printf "load_test %s %.1f %.1f 0\n", c, (k ? sum / k : 0), (b - a) / (t1 - t0) }
    ' "$work/lt.txt" >>"$results"
}

for rep in $(seq "$REPS"); do
    for cell in "${MATRIX[@]}"; do
        conns=${cell%x*} size=${cell#*x}
        echo "run $rep: $conns connections x $size B" >&2
        for mode in "${MODES[@]}"; do run_wsecho_load "$conns" "$size" "$rep" "$mode"; done
        if [[ -n "$LOAD_TEST" ]]; then run_load_test "$conns" "$size"; fi
        if [[ "${TASKS:-0}" == 1 ]]; then run_wsecho_load "$conns" "$size" "$rep" "${MODES[0]}" tasks; fi
    done
done

kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with uncommitted changes)"; fi
echo "### wsecho-load vs load_test, one core each, against wsecho"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) CPUs)"
echo "- kernel: $(uname -sr)"
echo "- rustc: $(rustc --version)"
echo "- gcc: $(gcc --version | head -1)"
echo "- commit: $commit"
if [[ -n "$LOAD_TEST" ]]; then
    us_id=$(git -C "$UWS_DIR/uSockets" rev-parse --short HEAD 2>/dev/null ||
        cat "$UWS_DIR"/uSockets/src/*.c "$UWS_DIR"/uSockets/src/eventing/epoll_kqueue.c | sha256sum | cut -c1-12)
    echo "- load_test: fastwebsockets-0.10.0 benches/load_test.c on uSockets from \$UWS_DIR (commit, or sha256 of its C sources: $us_id), \`gcc -O3 -flto -DLIBUS_NO_SSL\`"
fi
verification() {
    case $1 in
    full) echo "the default: every byte of every echo checked" ;;
    sample) echo "every echo's header, every byte of 1 echo in 64" ;;
    *) echo "every echo's header, no byte after it" ;;
    esac
}
echo "- wsecho: \`taskset -c $SERVER_CPU $SERVER --threads 1\`; wsecho-load: \`taskset -c $CLIENT_CPU $LOAD URL -c N -s SIZE -d $DURATION --warmup $WARMUP --threads 1 --verify MODE\`, every round trip in the HDR histogram; load_test: \`taskset -c $CLIENT_CPU load_test N 127.0.0.1 PORT 0 0 [SIZE]\`, its reports over 4-12 s"
for mode in "${MODES[@]}"; do echo "- \`--verify $mode\`: $(verification "$mode")"; done
order=$(printf 'wsecho-load --verify %s, ' "${MODES[@]}")
echo "- closed loop, 1 message in flight per connection, binary; $REPS interleaved repetitions (${order}then load_test, case by case); medians shown; per core = messages/s / (generator CPU % / 100)"
if [[ "${TASKS:-0}" == 1 ]]; then
    echo "- wsecho-load as shipped drives these runs from one epoll loop per worker (\`--driver epoll\`); \"tasks\" is the same binary with \`--driver tasks\` (verification \`${MODES[0]}\`), a tokio task per connection, run in turn with the others"
fi
for mode in "${MODES[@]}"; do
    echo
    echo "#### \`--verify $mode\`"
    echo
    tasks_head="" tasks_rule=""
    if [[ "${TASKS:-0}" == 1 && "$mode" == "${MODES[0]}" ]]; then tasks_head=" tasks msg/s per core | epoll / tasks |" tasks_rule="---:|---:|"; fi
    echo "| connections x payload | wsecho-load msg/s | CPU % | msg/s per core | load_test msg/s | CPU % | msg/s per core | per-core ratio |$tasks_head ratio per repetition | wsecho-load runs (msg/s) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|$tasks_rule---|---|"
    python3 - "$results" "${MATRIX[*]}" "wsecho-load-$mode" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
gen = sys.argv[3]
def med(g, case, col):
    v = [float(r[col]) for r in runs if r[0] == g and r[1] == case]
    return statistics.median(v) if v else None
def per_core_runs(g, case):
    return [float(r[2]) / (float(r[3]) / 100) if float(r[3]) > 0 else None
            for r in runs if r[0] == g and r[1] == case]
def per_core(g, case):
    v = [x for x in per_core_runs(g, case) if x is not None]
    return statistics.median(v) if v else None
fmt = lambda x, d=0: "-" if x is None else f"{x:,.{d}f}"
for case in sys.argv[2].split():
    n, size = case.split("x")
    payload = f"{int(size)//1024} KiB" if int(size) >= 1024 else f"{size} B"
    wl, lt = per_core(gen, case), per_core("load_test", case)
    ratio = f"{wl/lt:.2f}x" if wl and lt else "-"
    all_runs = ", ".join(f"{float(r[2]):.0f}" for r in runs if r[0] == gen and r[1] == case)
    # Each repetition runs wsecho-load and then load_test back to back:
    # their ratio, rep by rep, shows how far the machine moved under the
    # median ratio, which the medians alone hide.
    paired = ", ".join(f"{a / b:.2f}" if a and b else "-"
                       for a, b in zip(per_core_runs(gen, case), per_core_runs("load_test", case)))
    tasks = ""
    if any(r[0] == gen + "-tasks" for r in runs):
        tk = per_core(gen + "-tasks", case)
        tasks = f" {fmt(tk)} | {f'{wl/tk:.2f}x' if wl and tk else '-'} |"
    print(f"| {n} x {payload} | {fmt(med(gen, case, 2))} | {fmt(med(gen, case, 3), 1)} | {fmt(wl)} "
          f"| {fmt(med('load_test', case, 2))} | {fmt(med('load_test', case, 3), 1)} | {fmt(lt)} | {ratio} |{tasks} {paired or '-'} | {all_runs} |")
PY
done
errors=$(awk '$1 ~ /^wsecho-load/ { n += $5 } END { print n + 0 }' "$results")
echo
echo "wsecho-load errors over all runs: $errors"
if ((failures > 0)); then
    echo
    echo "$failures run(s) exited non-zero (errors or thresholds); see above."
    exit 1
fi
