#!/usr/bin/env bash
# Regenerates results/<date>/: wsecho and the servers a user would pick
# instead, measured with two load generators on this machine.
#
#   UWS_DIR=/path/to/uWebSockets results/run.sh   # the full matrix (about 75 minutes)
#   results/run.sh --quick     # 1 repetition, short runs: checks the pipeline
#   results/run.sh --no-build --quick --servers wsecho,raw-tcp --cases 100x20 --parts echo,loadtest
#                              # a subset, with the release binaries already built
#   results/run.sh --parts idle --idle 10000,100000   # where `ulimit -n` allows 100k
#   results/run.sh --no-build --servers wsecho --parts h2   # wsecho's 100 WebSockets on one
#                              # HTTP/2 connection (--http2) beside the same over HTTP/1.1
#   UWS_DIR=/path/to/uWebSockets results/run.sh --no-build --parts deflate --reps 3
#                              # permessage-deflate: wsecho, Node ws (perMessageDeflate) and a
#                              # compressing uWebSockets EchoServer; builds only those peers
#   python3 results/matrix.py --report-only results/DATE [--readme]
#                              # remakes a run's summary and charts (and, for a full run, the
#                              # README's results section) from its raw/found.json, no measuring
#   python3 results/pool.py results/DATE results/DATE-2 ...
#                              # wsecho against uWebSockets per case, the repetitions of several
#                              # runs of the same server builds pooled (medians, paired ratios)
#   python3 -m unittest discover -s results -p 'test_*.py'
#                              # checks that the README's results section, its run's summary and
#                              # the README's pooled table are what these scripts make of the
#                              # committed raw data (.ci/run runs it)
#   python3 results/check_pipeline.py
#                              # the measuring paths: a --quick run of every part against wsecho
#                              # and the raw TCP echo, its cells checked (.ci/run runs it)
#
# Builds everything from the package registries and UWS_DIR: wsecho and
# wsecho-load (release); fastwebsockets' own examples/echo_server.rs and
# sockudo-ws' examples/simple_echo.rs from their crate sources in the cargo
# registry (scratch copies in $TMPDIR with only the listen address patched,
# built outside this workspace with their own target directories under
# target/peers/); the tokio-tungstenite echo example of this workspace;
# Node.js `ws` (npm); uWebSockets' examples/EchoServer.cpp (no SSL, no zlib)
# and, for --parts deflate, a compressing variant of it (zlib, a shared
# compressor and decompressor, echoes sent compressed; needs the zlib headers,
# Debian's zlib1g-dev: installed with apt-get when missing and allowed, else
# skipped with a note), and fastwebsockets' C benches/load_test.c, both on UWS_DIR's uSockets
# (UWS_DIR: a `git clone --recursive` of uNetworking/uWebSockets; both are
# skipped, with a note in the summary, when it is unset); and the raw TCP
# echo results/peers/tcp_echo.c, the ceiling. Then results/matrix.py runs the
# matrix, server pinned to CPU 0 and the generator to CPU 1, and writes JSON,
# Markdown and SVG, and (full runs only) the README's results section.
# A peer that fails to build is left out with a note, not silently.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib.sh
source scripts/lib.sh
step() { printf '\n==> %s\n' "$*"; }

BUILD=1
ARGS=()
PARTS=""
prev=""
for a in "$@"; do
    if [ "$a" = "--no-build" ]; then BUILD=0; else ARGS+=("$a"); fi
    [ "$prev" = "--parts" ] && PARTS="$a"
    case "$a" in --parts=*) PARTS="${a#--parts=}" ;; esac
    prev="$a"
done
# --parts deflate alone runs wsecho, Node ws and the compressing uWebSockets:
# the other peers and load_test are not built.
ONLY_DEFLATE=0
[ "$PARTS" = "deflate" ] && ONLY_DEFLATE=1

command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs: server on CPU 0, load on CPU 1" >&2; exit 2; }

PEERS="$ROOT/target/peers"
SCRATCH_ROOT="${TMPDIR:-/tmp}/wsecho-peers"
REGISTRY="${CARGO_HOME:-$HOME/.cargo}/registry/src"
mkdir -p "$PEERS" "$SCRATCH_ROOT"
NOTES=()

if [ "$BUILD" = 1 ]; then
    step "build wsecho, wsecho-load and the tokio-tungstenite echo (release)"
    cargo build --release --bin wsecho -p wsecho
    cargo build --release --bin wsecho-load -p wsecho-load
    cargo build --release --example tungstenite_echo -p wsecho
else
    step "--no-build: using the release binaries in target/release as they are"
fi
for bin in target/release/wsecho target/release/wsecho-load; do
    [ -x "$bin" ] || { echo "$bin is missing: run without --no-build" >&2; exit 2; }
done
[ "$BUILD" = 1 ] || NOTES+=("--no-build: wsecho and wsecho-load as built at $(date -u -r target/release/wsecho +%FT%TZ) and $(date -u -r target/release/wsecho-load +%FT%TZ), which may predate the commit named below")
[ -x target/release/examples/tungstenite_echo ] ||
    NOTES+=("tokio-tungstenite: target/release/examples/tungstenite_echo was not built (--no-build); left out")

unset FWS_ECHO_BIN SOCKUDO_ECHO_BIN TCP_ECHO_BIN
if [ "$ONLY_DEFLATE" = 0 ]; then
step "build fastwebsockets' own echo_server from its crate source"
FWS_VERSION="$(cargo pkgid fastwebsockets | sed 's/.*[#@]//')"
FWS_SRC="$(ls -d "$REGISTRY"/*/fastwebsockets-"$FWS_VERSION" | head -n1)"
[ -d "$FWS_SRC" ] || { echo "fastwebsockets $FWS_VERSION source not in the cargo registry (run cargo fetch)" >&2; exit 2; }
# Outside this workspace, or cargo would take it for a member.
SCRATCH="$SCRATCH_ROOT/fastwebsockets-$FWS_VERSION"
rm -rf "$SCRATCH" && cp -r "$FWS_SRC" "$SCRATCH"
# Its rust-toolchain pins a compiler this machine does not have; its example
# binds 127.0.0.1:8080. Nothing else changes.
rm -f "$SCRATCH/rust-toolchain" "$SCRATCH/rust-toolchain.toml"
sed -i 's/127\.0\.0\.1:8080/127.0.0.1:9901/g' "$SCRATCH/examples/echo_server.rs"
(cd "$SCRATCH" && CARGO_TARGET_DIR="$PEERS/fastwebsockets-target" \
    cargo build --release --example echo_server --features upgrade)
export FWS_ECHO_BIN="$PEERS/fastwebsockets-target/release/examples/echo_server"
export FWS_VERSION

step "build sockudo-ws' simple_echo from its crate source"
# The crate source comes through cargo: a scratch project that depends on it,
# and `cargo fetch`. Its example binds 127.0.0.1:9001 and runs on tokio's
# multi-threaded runtime, which sizes itself to the one CPU it is pinned to.
SOCKUDO_VERSION="${SOCKUDO_VERSION:-3.1.0}"
FETCH="$SCRATCH_ROOT/sockudo-ws-fetch"
rm -rf "$FETCH" && mkdir -p "$FETCH/src"
printf '[package]\nname = "sockudo-ws-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\nsockudo-ws = "=%s"\n\n[workspace]\n' \
    "$SOCKUDO_VERSION" > "$FETCH/Cargo.toml"
echo 'fn main() {}' > "$FETCH/src/main.rs"
unset SOCKUDO_ECHO_BIN
if (cd "$FETCH" && cargo fetch --quiet) \
    && SOCKUDO_SRC="$(ls -d "$REGISTRY"/*/sockudo-ws-"$SOCKUDO_VERSION" | head -n1)" && [ -d "$SOCKUDO_SRC" ]; then
    SCRATCH="$SCRATCH_ROOT/sockudo-ws-$SOCKUDO_VERSION"
    rm -rf "$SCRATCH" && cp -r "$SOCKUDO_SRC" "$SCRATCH"
    rm -f "$SCRATCH/rust-toolchain" "$SCRATCH/rust-toolchain.toml"
    sed -i 's/127\.0\.0\.1:9001/127.0.0.1:9905/g' "$SCRATCH/examples/simple_echo.rs"
    grep -q '127.0.0.1:9905' "$SCRATCH/examples/simple_echo.rs" || { echo "sockudo-ws simple_echo: listen address not found" >&2; exit 2; }
    if (cd "$SCRATCH" && CARGO_TARGET_DIR="$PEERS/sockudo-ws-target" cargo build --release --example simple_echo); then
        export SOCKUDO_ECHO_BIN="$PEERS/sockudo-ws-target/release/examples/simple_echo" SOCKUDO_VERSION
    else
        NOTES+=("sockudo-ws $SOCKUDO_VERSION: examples/simple_echo.rs did not build here; left out (see run.sh's output)")
    fi
else
    NOTES+=("sockudo-ws $SOCKUDO_VERSION: cargo could not fetch its crate source; left out")
fi

step "build the raw TCP echo, the ceiling (results/peers/tcp_echo.c)"
cc -O2 -Wall -o "$PEERS/tcp_echo" results/peers/tcp_echo.c
export TCP_ECHO_BIN="$PEERS/tcp_echo" TCP_ECHO_CC="$(cc --version | head -n1)"
fi

unset UWS_ECHO_BIN UWS_DEFLATE_ECHO_BIN LOADTEST_BIN
if [ -n "${UWS_DIR:-}" ]; then
    [ -f "$UWS_DIR/examples/EchoServer.cpp" ] && [ -f "$UWS_DIR/uSockets/src/libusockets.h" ] || {
        echo "UWS_DIR=$UWS_DIR is not a uWebSockets checkout with its uSockets submodule (git clone --recursive)" >&2; exit 2; }
    if git -C "$UWS_DIR" rev-parse --git-dir >/dev/null 2>&1; then
        UWS_VERSION="$(git -C "$UWS_DIR" describe --tags --always --dirty) (uSockets $(git -C "$UWS_DIR/uSockets" describe --tags --always --dirty 2>/dev/null || echo '?'))"
    else
        UWS_VERSION="source tree without git metadata (src/*.h sha256 $(cat "$UWS_DIR"/src/*.h | sha256sum | cut -c1-12), uSockets/src sha256 $(cat "$UWS_DIR"/uSockets/src/*.c "$UWS_DIR"/uSockets/src/*/*.c | sha256sum | cut -c1-12))"
    fi
    export UWS_VERSION UWS_CXX="$(g++ --version | head -n1)"

    step "build uSockets and uWebSockets' examples/EchoServer.cpp (no SSL, no zlib; not for --parts deflate alone) from UWS_DIR"
    SCRATCH="$SCRATCH_ROOT/uWebSockets"
    prepare_uws "$UWS_DIR" "$SCRATCH" || exit 2
    if [ "$ONLY_DEFLATE" = 0 ]; then
    build_uws_echo "$SCRATCH" native "$PEERS/EchoServer"
    export UWS_ECHO_BIN="$PEERS/EchoServer"
    fi

    step "build a compressing uWebSockets EchoServer (zlib; shared compressor and decompressor)"
    if [ ! -f /usr/include/zlib.h ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y --no-install-recommends zlib1g-dev >/dev/null || true
    fi
    if [ -f /usr/include/zlib.h ]; then
        # The same example, on 127.0.0.1:9907, with compression the way uWS
        # saves memory (one zlib context pair per loop, so no context
        # takeover) and echoes sent compressed (the example sends them
        # uncompressed). Built with zlib: without -DUWS_NO_ZLIB, -lz.
        D="$SCRATCH_ROOT/uWebSockets-deflate"
        rm -rf "$D" && mkdir -p "$D" && cp "$SCRATCH/examples/EchoServer.cpp" "$D/"
        sed -i -e 's/listen("127.0.0.1", 9904, /listen("127.0.0.1", 9907, /' \
            -e 's/\.compression = uWS::CompressOptions([^)]*)/.compression = uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR)/' \
            -e 's/ws->send(message, opCode, false);/ws->send(message, opCode, true);/' "$D/EchoServer.cpp"
        grep -q 'SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR' "$D/EchoServer.cpp" && grep -q 'opCode, true)' "$D/EchoServer.cpp" \
            && grep -q '9907' "$D/EchoServer.cpp" || { echo "EchoServer.cpp: compression settings not found" >&2; exit 2; }
        (cd "$SCRATCH" && g++ -march=native -O3 -std=c++2b -flto=auto -Isrc -IuSockets/src \
            "$D/EchoServer.cpp" uSockets/*.o -lz -o "$PEERS/EchoServer-deflate")
        export UWS_DEFLATE_ECHO_BIN="$PEERS/EchoServer-deflate" \
            UWS_ZLIB="$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' /usr/include/zlib.h)"
    else
        NOTES+=("uWebSockets with compression: no zlib headers (Debian: zlib1g-dev), so it was skipped")
    fi

    if [ "$ONLY_DEFLATE" = 0 ]; then
    step "build fastwebsockets' C load_test on UWS_DIR's uSockets"
    U="$UWS_DIR/uSockets/src"
    SCRATCH="$SCRATCH_ROOT/load_test"
    rm -rf "$SCRATCH" && mkdir -p "$SCRATCH" && cp "$FWS_SRC/benches/load_test.c" "$SCRATCH/"
    (cd "$SCRATCH" && gcc -O3 -flto -DLIBUS_NO_SSL -I"$U" "$U"/*.c "$U"/eventing/*.c "$U"/crypto/*.c load_test.c \
        -o "$PEERS/load_test")
    export LOADTEST_BIN="$PEERS/load_test" \
        LOADTEST_VERSION="fastwebsockets $FWS_VERSION benches/load_test.c on uSockets from UWS_DIR ($(gcc --version | head -n1), -O3 -flto)"
    fi
else
    NOTES+=("UWS_DIR is unset: uWebSockets' EchoServer and the C load_test (built on its uSockets) were skipped, so every figure here rests on wsecho-load alone. Set UWS_DIR to a \`git clone --recursive\` of uNetworking/uWebSockets.")
fi

step "install Node.js ws (npm)"
(cd results/peers && npm ci --no-audit --no-fund --loglevel=error)

RESULTS_NOTES="$(printf '%s\n' ${NOTES[@]+"${NOTES[@]}"})"
export RESULTS_NOTES

step "run the matrix"
# exec: a signal to run.sh reaches matrix.py, which stops every server and
# generator it started.
exec python3 results/matrix.py ${ARGS[@]+"${ARGS[@]}"}
