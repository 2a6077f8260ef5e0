#!/usr/bin/env bash
# Bounded soak: MINUTES (default 2) of mixed traffic from wsecho-load against
# a release wsecho on loopback (echo, connection churn, idle connections and a
# chat room at once), sampling the server's RSS and open descriptors every
# second. Fails if any wsecho-load run saw an error, or if RSS or descriptors
# keep growing (last third of the run against the first third after warm-up),
# or if descriptors are not back to baseline once the load stops.
#
#   scripts/soak.sh [MINUTES]
# Writes target/soak/samples.csv and the wsecho-load JSON files.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=lib.sh
source scripts/lib.sh
MINUTES="${1:-2}"
SECS=$((MINUTES * 60))
OUT="$ROOT/target/soak"
PORT="${SOAK_PORT:-9977}"
URL="ws://127.0.0.1:$PORT"
step() { printf '\n==> %s\n' "$*"; }

step "build release binaries"
cargo build --release --bin wsecho -p wsecho
cargo build --release --bin wsecho-load -p wsecho-load
rm -rf "$OUT" && mkdir -p "$OUT"

step "start wsecho on 127.0.0.1:$PORT"
target/release/wsecho --listen "127.0.0.1:$PORT" --log warn 2>"$OUT/server.log" &
SERVER=$!
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
wait_for_port "$PORT" || true
fds() { find "/proc/$SERVER/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER/status"; }
BASE_FDS=$(fds)

step "mixed load for ${MINUTES} min: echo, churn, idle, chat"
LOAD=(target/release/wsecho-load --quiet --warmup 2s -d "${SECS}s" --threads 1)
"${LOAD[@]}" "$URL/echo" -c 50 -s 1024 --json "$OUT/echo.json" >"$OUT/echo.txt" & pids+=($!)
"${LOAD[@]}" "$URL/echo" --scenario connect -c 4 --json "$OUT/connect.json" >"$OUT/connect.txt" & pids+=($!)
"${LOAD[@]}" "$URL/echo" --scenario idle -c 1000 --connect-rate 500/s --json "$OUT/idle.json" >"$OUT/idle.txt" & pids+=($!)
"${LOAD[@]}" "$URL" --scenario chat -c 20 --rooms 4 --rate 2000 --json "$OUT/chat.json" >"$OUT/chat.txt" & pids+=($!)

echo "t_s,rss_kib,fds" >"$OUT/samples.csv"
for t in $(seq 0 $((SECS + 5))); do
    echo "$t,$(rss),$(fds)" >>"$OUT/samples.csv"
    sleep 1
done

step "wait for the load to finish"
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "soak: wsecho-load run $i exited with $?"; status=1; }
done
pids=()
sleep 3
AFTER_FDS=$(fds)
echo "soak: descriptors at start $BASE_FDS, after the load $AFTER_FDS"

step "judge"
python3 - "$OUT" "$BASE_FDS" "$AFTER_FDS" "$status" <<'EOF'
import csv, json, statistics, sys
from pathlib import Path
out, base_fds, after_fds, status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [(int(r["t_s"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(out / "samples.csv"))]
steady = [r for r in rows if r[0] >= 20] or rows
third = max(1, len(steady) // 3)
first, last = steady[:third], steady[-third:]
ok = status == 0
for name, i, slack in (("rss_kib", 1, 4096), ("fds", 2, 50)):
    a, b = statistics.mean(r[i] for r in first), statistics.mean(r[i] for r in last)
    vals = [r[i] for r in rows]
    print(f"soak: {name}: start {vals[0]}, end {vals[-1]}, max {max(vals)}; "
          f"mean of first third after warm-up {a:.0f}, of last third {b:.0f}")
    if b > a * 1.10 + slack:
        print(f"soak: FAIL: {name} keeps growing")
        ok = False
if after_fds > base_fds + 10:
    print(f"soak: FAIL: {after_fds} descriptors open after the load, {base_fds} before")
    ok = False
for f in sorted(out.glob("*.json")):
    r = json.loads(f.read_text())
    errors = {k: v for k, v in r["errors"].items() if v}
    print(f"soak: {f.stem}: {r['messages_received']:,} messages received, errors {errors or 'none'}")
    ok &= not errors
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
EOF
