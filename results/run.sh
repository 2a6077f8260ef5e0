#!/usr/bin/env bash
# Regenerates results/<date>/: wsecho and the servers a user would pick
# instead, measured with wsecho-load on this machine.
#
#   results/run.sh            # the full matrix (about 20 minutes)
#   results/run.sh --quick    # 1 repetition, short runs: checks the pipeline
#
# Builds everything from the package registries: wsecho and wsecho-load
# (release), fastwebsockets' own examples/echo_server.rs from its crate
# source in the cargo registry (a scratch copy in $TMPDIR, with only its
# listen address patched), the tokio-tungstenite echo example of this
# workspace, and Node.js `ws` (npm). Then results/matrix.py runs the matrix,
# server pinned to CPU 0 and wsecho-load to CPU 1, and writes JSON, Markdown
# and SVG, and the README's results section.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n==> %s\n' "$*"; }

command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs: server on CPU 0, load on CPU 1" >&2; exit 2; }

step "build wsecho, wsecho-load and the tokio-tungstenite echo (release)"
cargo build --release --bin wsecho -p wsecho
cargo build --release --bin wsecho-load -p wsecho-load
cargo build --release --example tungstenite_echo -p wsecho

step "build fastwebsockets' own echo_server from its crate source"
FWS_VERSION="$(cargo pkgid fastwebsockets | sed 's/.*[#@]//')"
SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/fastwebsockets-"$FWS_VERSION" | head -n1)"
[ -d "$SRC" ] || { echo "fastwebsockets $FWS_VERSION source not in the cargo registry (run cargo fetch)" >&2; exit 2; }
# Outside this workspace, or cargo would take it for a member.
SCRATCH="${TMPDIR:-/tmp}/wsecho-peers/fastwebsockets-$FWS_VERSION"
rm -rf "$SCRATCH" && mkdir -p "$(dirname "$SCRATCH")" && cp -r "$SRC" "$SCRATCH"
# Its rust-toolchain pins a compiler this machine does not have; its example
# binds 127.0.0.1:8080. Nothing else changes.
rm -f "$SCRATCH/rust-toolchain" "$SCRATCH/rust-toolchain.toml"
sed -i 's/127\.0\.0\.1:8080/127.0.0.1:9901/g' "$SCRATCH/examples/echo_server.rs"
(cd "$SCRATCH" && CARGO_TARGET_DIR="$ROOT/target/peers/fastwebsockets-target" \
    cargo build --release --example echo_server --features upgrade)
export FWS_ECHO_BIN="$ROOT/target/peers/fastwebsockets-target/release/examples/echo_server"
export FWS_VERSION

step "install Node.js ws (npm)"
(cd results/peers && npm ci --no-audit --no-fund --loglevel=error)

step "run the matrix"
python3 results/matrix.py "$@"
