#!/usr/bin/env bash
# A server's own instructions per echoed message, counted by callgrind:
# the same figure on every run, where CPU time on this machine drifts by
# several percent between runs. It counts user space only (the kernel's
# work per echo, one recvfrom and one sendto, is the same for wsecho and
# uWebSockets; scripts/server-ab.sh measures the whole). Each server runs
# under valgrind on CPU 0 while wsecho-load on CPU 1 sends 100 connections
# x SIZE bytes at RATE messages/s, once for SHORT seconds and once for
# LONG; the difference of the two counts over the difference of the echoes
# leaves start-up and handshakes out. At the default 2,000/s each echo has a
# wake-up of its own, so the figure includes the loop's cost per wake-up.
# Loopback only; every run is bounded by wsecho-load's -d.
#
# Usage: scripts/user-instructions.sh SERVER...
#   SERVER: wsecho (target/release/wsecho), uws (uWebSockets' EchoServer
#   built from UWS_DIR for x86-64-v3, as valgrind has no AVX-512), or
#   NAME=PATH for another wsecho binary (an A/B of two builds).
# Env: SIZE (20), RATE (2000), SHORT (4), LONG (12), TOP (0: how many
# functions to list, by instructions per echo).
# Needs valgrind (Debian: valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SIZE=${SIZE:-20} RATE=${RATE:-2000} SHORT=${SHORT:-4} LONG=${LONG:-12} TOP=${TOP:-0}
[ $# -gt 0 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
LOAD=target/release/wsecho-load
[ -x "$LOAD" ] || cargo build --release -q -p wsecho-load
with_scratch

# The cached build is used while UWS_DIR holds the sources it was built
# from (or when UWS_DIR is unset); other sources are built afresh.
uws_binary() {
    local bin=target/peers/EchoServer-valgrind sources=
    if [ -n "${UWS_DIR:-}" ]; then
        sources=$(uws_sources "$UWS_DIR")
        [ "$(cat "$bin.sources" 2>/dev/null)" = "$sources" ] || rm -f "$bin"
    fi
    if [ ! -x "$bin" ]; then
        [ -n "$sources" ] || { echo "uws needs UWS_DIR (see results/run.sh)" >&2; exit 2; }
        prepare_uws "$UWS_DIR" "$work/uws" >/dev/null || exit 2
        mkdir -p target/peers
        build_uws_echo "$work/uws" x86-64-v3 "$PWD/$bin"
        echo "$sources" >"$bin.sources"
    fi
    echo "$bin"
}

# One run: prints "instructions echoes" and leaves callgrind's file.
count() {
    local name=$1 secs=$2 port cmd
    case $name in
        uws) port=9904; cmd=("$(uws_binary)") ;;
        *) port=9913; cmd=("$3" --listen 127.0.0.1:$port --threads 1 --log warn) ;;
    esac
    local out=$work/$name-$secs.cg
    # A background job of a script starts with SIGINT ignored; the server
    # gets it back so that it ends, and valgrind writes its counts, on one.
    env --default-signal=INT taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_for_port "$port" || { echo "$name did not listen on $port" >&2; exit 1; }
    taskset -c 1 "$LOAD" "ws://127.0.0.1:$port/" -c 100 -s "$SIZE" --binary --rate "$RATE" \
        -d "${secs}s" --warmup 0s --threads 1 --json "$work/$name-$secs.json" -q >/dev/null
    # Still running, or another process held the port and answered.
    kill -INT "$pid" 2>/dev/null || { echo "$name exited early: is port $port taken?" >&2; exit 1; }
    wait "$pid" 2>/dev/null || true
    python3 - "$out" "$work/$name-$secs.json" <<'EOF'
import json, re, sys
total = next(int(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("totals:"))
print(total, json.load(open(sys.argv[2]))["messages_received"])
EOF
}

for server in "$@"; do
    name=${server%%=*} bin=target/release/wsecho
    [[ $server == *=* ]] && bin=${server#*=}
    read -r i1 e1 < <(count "$name" "$SHORT" "$bin")
    read -r i2 e2 < <(count "$name" "$LONG" "$bin")
    python3 - "$name" "$i1" "$e1" "$i2" "$e2" "$TOP" "$work/$name-$SHORT.cg" "$work/$name-$LONG.cg" <<'EOF'
import re, subprocess, sys
name, i1, e1, i2, e2, top = sys.argv[1], *map(int, sys.argv[2:7])
echoes = e2 - e1
print(f"{name}: {(i2 - i1) / echoes:,.0f} instructions per echo ({echoes:,} echoes apart)")
def functions(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True).stdout
    found = {}
    for line in out.split("Auto-annotated source")[0].splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            fn = re.sub(r" \[.*\]$", "", m.group(2).split(":", 1)[-1])
            found[fn] = found.get(fn, 0) + int(m.group(1).replace(",", ""))
    return found
if top:
    a, b = functions(sys.argv[7]), functions(sys.argv[8])
    rows = sorted(((b.get(f, 0) - a.get(f, 0)) / echoes, f) for f in a.keys() | b.keys())[::-1]
    for per, fn in rows[:top]:
        print(f"  {per:8.1f}  {fn[:140]}")
EOF
done
