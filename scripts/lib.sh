# Sourced by the benchmark, profiling and soak scripts.

# Gives the script a scratch directory, $work, and a list of processes to
# stop, `pids`: when it exits, however it ends, each is killed and the
# directory removed.
with_scratch() {
    # shellcheck disable=SC2034 # used by the scripts that source this
    work=$(mktemp -d)
    pids=()
    trap 'for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

# Waits up to 10 s for a listener on 127.0.0.1:PORT.
wait_for_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Sets the array `load_test_args` for the C load_test: CONNS connections to
# 127.0.0.1:PORT with SIZE-byte messages. Given a size, load_test always
# writes a 16-bit extended length, which below 126 bytes stalls it after one
# echo; without one it sends its built-in 20-byte frame. So 20 B runs without
# a size, and other sizes below 126 cannot be run.
set_load_test_args() {
    local conns=$1 port=$2 size=$3
    load_test_args=("$conns" 127.0.0.1 "$port" 0 0)
    if ((size >= 126)); then
        load_test_args+=("$size")
    elif ((size != 20)); then
        echo "load_test sends 20 B or 126 B and more, not $size B" >&2
        return 2
    fi
}

# Starts SERVER pinned to $SERVER_CPU, for a side-by-side measurement:
# uws (target/peers/EchoServer, which results/run.sh builds listening on
# 9904), wsecho (target/release/wsecho) or the path of a wsecho build, on
# PORT. Sets `server_pid` and `server_port` once it listens.
start_server() {
    local server=$1 port=$2
    case "$server" in
        uws) port=9904; taskset -c "$SERVER_CPU" target/peers/EchoServer >/dev/null 2>&1 & ;;
        wsecho) server=target/release/wsecho ;&
        *) taskset -c "$SERVER_CPU" "$server" --listen "127.0.0.1:$port" --threads 1 --log warn & ;;
    esac
    server_pid=$!
    pids+=("$server_pid")
    server_port=$port
    wait_for_port "$port"
}

# The process that does the work of generator PID: `timeout` (see
# start_load_test) forks its command, and the child is what a profile or a
# CPU count wants; a process without children is its own.
working_pid() {
    local child
    child=$(pgrep -P "$1" | head -n 1 || true)
    echo "${child:-$1}"
}

# Starts the C load_test pinned to $CLIENT_CPU: CONNS connections of SIZE
# bytes to 127.0.0.1:PORT, stopped by `timeout` after SECS seconds. Sets
# `gen_pid` (timeout's; load_test is its child).
start_load_test() {
    local conns=$1 port=$2 size=$3 secs=$4
    set_load_test_args "$conns" "$port" "$size"
    taskset -c "$CLIENT_CPU" timeout "$secs" target/peers/load_test "${load_test_args[@]}" >/dev/null 2>&1 &
    gen_pid=$!
    pids+=("$gen_pid")
}

# Copies UWS_DIR (a uWebSockets checkout with its uSockets submodule) to
# SCRATCH, makes examples/EchoServer.cpp listen on 127.0.0.1:9904 (it
# listens on port 9001 on every address; nothing else changes) and builds
# uSockets without SSL. results/run.sh and scripts/user-instructions.sh
# build their EchoServer from it.
prepare_uws() {
    local src=$1 scratch=$2
    rm -rf "$scratch" && cp -r "$src" "$scratch"
    sed -i 's/\.listen(9001, /.listen("127.0.0.1", 9904, /' "$scratch/examples/EchoServer.cpp"
    grep -q 'listen("127.0.0.1", 9904' "$scratch/examples/EchoServer.cpp" ||
        { echo "EchoServer.cpp: listen call not found" >&2; return 2; }
    make -C "$scratch/uSockets" # no WITH_OPENSSL: LIBUS_NO_SSL
}

# One line naming the uWebSockets and uSockets sources in SRC (a digest of
# every file a build of EchoServer reads), to tell a cached build's
# sources from others.
uws_sources() {
    (cd "$1" && find src uSockets/src examples/EchoServer.cpp -type f -print0 | sort -z |
        xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# Builds SCRATCH's EchoServer (after prepare_uws) for -march=MARCH, without
# zlib, into OUT.
build_uws_echo() {
    local scratch=$1 march=$2 out=$3
    (cd "$scratch" && g++ -march="$march" -O3 -std=c++2b -flto=auto -DUWS_NO_ZLIB -Isrc -IuSockets/src \
        examples/EchoServer.cpp uSockets/*.o -o "$out")
}
