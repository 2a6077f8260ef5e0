#!/usr/bin/env bash
# Where two setups differ, in nanoseconds of CPU per TCP segment: for each
# setup, a server pinned to CPU 0 and a generator pinned to CPU 1 (as in
# results/), `perf record` on one of them for 5 s once the load has run 3 s,
# and the kernel's count of TCP segments sent over the same 5 s (nstat
# TcpOutSegs: on loopback both directions, so an echoed message is two
# segments when no pure ACK is sent, which the script checks). Each
# symbol's samples become ns per segment, so setups with different rates
# compare by cost per unit of work, not by share of a different total.
# Prints both setups' rates and CPU, then the symbols that differ most.
# Loopback only; every run is bounded (wsecho-load by -d, load_test by
# `timeout`). Needs perf and nstat (Debian: linux-perf, iproute2).
#
# Usage: scripts/segment-costs.sh CONNECTIONS SIZE server|generator A B
#   A, B: SERVER:GENERATOR; SERVER is wsecho, uws (target/peers/EchoServer,
#   which results/run.sh builds on port 9904) or the path of a wsecho build;
#   GENERATOR is wsecho-load, wsecho-load/tasks (its --driver tasks) or
#   load_test (target/peers/load_test).
#   scripts/segment-costs.sh 1000 20 server wsecho:load_test uws:load_test
#   scripts/segment-costs.sh 1000 20 generator uws:wsecho-load uws:load_test
# Knobs: PORT=19941 SERVER_CPU=0 CLIENT_CPU=1 TOP=25 SECS=5 VERIFY=full
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
usage="usage: scripts/segment-costs.sh CONNECTIONS SIZE server|generator SERVER:GEN SERVER:GEN"
conns=${1:?$usage} size=${2:?$usage} who=${3:?$usage} a=${4:?$usage} b=${5:?$usage}
[[ "$who" == server || "$who" == generator ]] || { echo "$usage" >&2; exit 2; }
PORT=${PORT:-19941} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
TOP=${TOP:-25} SECS=${SECS:-5} VERIFY=${VERIFY:-full}
for tool in perf nstat; do
    command -v "$tool" >/dev/null || { echo "segment-costs.sh: $tool is not installed" >&2; exit 2; }
done
with_scratch

# measure NAME SERVER GENERATOR: writes $work/NAME.{report,txt}.
measure() {
    local name=$1 gen=$3
    start_server "$2" "$PORT"
    local spid=$server_pid port=$server_port
    case "$gen" in
        wsecho-load | wsecho-load/tasks)
            local driver=epoll
            [[ "$gen" == */tasks ]] && driver=tasks
            taskset -c "$CLIENT_CPU" target/release/wsecho-load "ws://127.0.0.1:$port/" -c "$conns" \
            -s "$size" -d "$((SECS + 10))s" --warmup 1s --threads 1 --verify "$VERIFY" --driver "$driver" \
            -q >/dev/null 2>&1 &
            gen_pid=$!
            pids+=("$gen_pid") ;;
        load_test) start_load_test "$conns" "$port" "$size" "$((SECS + 10))" ;;
        *) echo "segment-costs.sh: unknown generator $gen" >&2; exit 2 ;;
    esac
    local gpid=$gen_pid
    sleep 3
    local target=$spid
    if [[ "$who" == generator ]]; then target=$(working_pid "$gpid"); fi
    nstat -n >/dev/null
    perf record -q -o "$work/$name.data" -p "$target" -- sleep "$SECS" >/dev/null 2>&1
    nstat TcpOutSegs TcpExtTCPPureAcks >"$work/$name.nstat"
    kill "$gpid" "$spid" 2>/dev/null || true
    wait "$gpid" "$spid" 2>/dev/null || true
    perf report -i "$work/$name.data" --no-children --sort dso,sym --stdio -n 2>/dev/null >"$work/$name.report"
}
measure a "${a%%:*}" "${a#*:}"
measure b "${b%%:*}" "${b#*:}"

python3 - "$work" "$SECS" "$TOP" "$who" "$conns x $size" "$a" "$b" <<'PY'
import re, sys
work, secs, top, who, case, a, b = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
def load(name):
    syms, samples = {}, 0
    for line in open(f"{work}/{name}.report"):
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            n, sym = int(m.group(1)), m.group(3).strip()[:70]
            syms[sym] = syms.get(sym, 0) + n
            samples += n
    stat = {l.split()[0]: int(l.split()[1]) for l in open(f"{work}/{name}.nstat") if l.split()[1:2] and l.split()[1].isdigit()}
    return syms, samples, stat.get("TcpOutSegs", 0), stat.get("TcpExtTCPPureAcks", 0)
sides = {n: load(n) for n in "ab"}
print(f"{case}, perf on the {who}, {secs:.0f} s each (perf's default 4000 samples/s of CPU time)\n")
for n, label in (("a", a), ("b", b)):
    syms, samples, segs, acks = sides[n]
    cpu = samples / 4000 / secs
    print(f"{n}: {label}: {segs / secs:,.0f} segments/s ({acks} pure ACKs), {who} CPU {cpu * 100:.0f} %, "
          f"{cpu / (segs / secs) * 1e9:,.0f} ns per segment")
# ns per segment of one symbol = its samples x 250 us / segments.
ns = {n: {k: v * 250e3 / max(s[2], 1) for k, v in s[0].items()} for n, s in sides.items()}
rows = sorted(((ns["a"].get(k, 0) - ns["b"].get(k, 0), k) for k in set(ns["a"]) | set(ns["b"])), reverse=True)
print(f"\n| ns/segment a - b | a | b | symbol |\n|---:|---:|---:|---|")
for d, k in rows[:top] + [("...", "")] + rows[-top // 2:] if len(rows) > top else rows:
    if d == "...":
        print("| ... | | | |")
        continue
    print(f"| {d:+.0f} | {ns['a'].get(k, 0):.0f} | {ns['b'].get(k, 0):.0f} | `{k}` |")
PY
