#!/usr/bin/env bash
# Autobahn TestSuite conformance run for wsecho (SPEC 1.2 "Conformance").
#
#   scripts/autobahn.sh [--server-bin PATH | --url ws://127.0.0.1:PORT/] [options]
#
# Makes .venv-autobahn/ with the pinned kosoku, builds wsecho in release mode
# (unless --server-bin or --url is given), then runs scripts/autobahn.py, which
# starts the server on a free loopback port, runs every case with a time limit,
# stops the server and judges the results against autobahn/expected.json.
# Exit status: 0 pass, 1 conformance failure, 2 could not run. See autobahn/README.md.
set -euo pipefail

KOSOKU_VERSION=0.1.0 # keep in step with KOSOKU_VERSION in scripts/autobahn.py
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AUTOBAHN_VENV:-$ROOT/.venv-autobahn}"
# Upper bound for the harness itself (it has its own per-case and run deadlines).
RUN_TIMEOUT="${AUTOBAHN_RUN_TIMEOUT:-600}"
BUILD_TIMEOUT="${AUTOBAHN_BUILD_TIMEOUT:-1800}"

step() { echo "autobahn: step: $*"; }
die() {
    echo "autobahn: error: $*" >&2
    exit 2
}

usage() {
    cat <<EOF
usage: scripts/autobahn.sh [--server-bin PATH | --url URL] [options]

  --server-bin PATH     server binary to test (default: build target/release/wsecho)
  --url URL             test an already-running loopback server; none is built or started
  --server-arg ARG      extra argument for the server (repeatable)
  --update-expected     rewrite autobahn/expected.json from this run
  --cases GLOB          run only matching case ids, e.g. '6.4.*' (repeatable)
  --exclude GLOB        skip matching case ids (repeatable)
  --concurrency N       cases run at once (default 4)
  --case-timeout S      seconds one case may take (default 120: 12.2.15 alone takes 14-19 s here,
                        more than 30 s on CI's two shared cores)
  --deadline S          start no case after S seconds (default 480)
  --results FILE        per-case results (default target/autobahn/results.json)
  --kosoku-report DIR   also write kosoku's own HTML report into DIR

Environment: AUTOBAHN_VENV (default .venv-autobahn), AUTOBAHN_RUN_TIMEOUT (600 s),
AUTOBAHN_BUILD_TIMEOUT (1800 s), CARGO_TARGET_DIR.
EOF
}

build=1
args=("$@")
while (($#)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --server-bin | --url) build=0 ;;
    --server-bin=* | --url=*) build=0 ;;
    esac
    shift
done

apt_install() {
    command -v apt-get >/dev/null || die "$* missing and no apt-get here: install it yourself"
    step "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq || die "apt-get update failed"
    timeout 600 apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

venv_works() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

make_venv() {
    rm -rf "$VENV"
    local out
    out="$(python3 -m venv "$VENV" 2>&1)" && return 0
    echo "$out" | tail -n 3 >&2
    return 1
}

step "python virtualenv ${VENV#"$ROOT"/}"
if ! venv_works; then
    command -v python3 >/dev/null || apt_install python3 python3-venv
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "kosoku needs Python >= 3.10; python3 is $(python3 --version 2>&1)"
    if ! make_venv; then
        # Debian ships venv's ensurepip in a separate package.
        apt_install python3-venv
        make_venv || die "python3 -m venv $VENV failed even with python3-venv installed"
    fi
fi

kosoku_pinned() {
    "$VENV/bin/python" - "$KOSOKU_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata, sys
sys.exit(importlib.metadata.version("kosoku") != sys.argv[1])
EOF
}
if ! kosoku_pinned; then
    step "pip install kosoku==$KOSOKU_VERSION"
    timeout 600 "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        "kosoku==$KOSOKU_VERSION" || die "pip install kosoku==$KOSOKU_VERSION failed"
    kosoku_pinned || die "kosoku $KOSOKU_VERSION not importable after install"
fi

server=()
if ((build)); then
    step "cargo build --release --bin wsecho"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --bin wsecho) || die "cargo build failed"
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" == /* ]] || target_dir="$ROOT/$target_dir"
    server=(--server-bin "$target_dir/release/wsecho")
fi

cd "$ROOT"
# On the run timeout the harness gets SIGTERM and still stops the server.
rc=0
timeout --kill-after=30 "$RUN_TIMEOUT" "$VENV/bin/python" "$ROOT/scripts/autobahn.py" "${server[@]}" "${args[@]}" || rc=$?
if ((rc == 124 || rc == 137)); then
    die "the run took longer than AUTOBAHN_RUN_TIMEOUT=${RUN_TIMEOUT}s and was stopped"
fi
exit "$rc"
