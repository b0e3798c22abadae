#!/usr/bin/env bash
# What durable history costs the publish path: publish items/s with history in memory and on
# disk (fsync every write batch), alternating on fresh processes, for requests of 100 items
# whose every item has an id (so both stores keep them).
#
# Usage: scripts/durable_bench.sh [--rounds N] [--requests R] [--connections C] [--channels K]
# Needs: cargo build --release -p gripway && cargo build --release --example publish_load
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3 REQUESTS=1000 CONNECTIONS=4 CHANNELS=1000
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --channels) CHANNELS=$2; shift 2 ;;
    *) echo "unknown: $1" >&2; exit 2 ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
GW=$TARGET/release/gripway
LOAD=$TARGET/release/examples/publish_load
[ -x "$GW" ] && [ -x "$LOAD" ] || { echo "build first (see the header)" >&2; exit 2; }
PUB=127.0.0.1:${PUB_PORT:-19571}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
run() { # NAME EXTRA-ARGS...
    local name=$1; shift
    rm -rf "$WORK/history"
    "$GW" --port 127.0.0.1:0 --publish-port "$PUB" --admin-port off --log-level warn \
        --route '* test' "$@" >"$WORK/gw.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -s "http://$PUB/" >/dev/null && break; sleep 0.05; done
    local t0 t1
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    local out
    out=$("$LOAD" --publish "$PUB" --requests "$REQUESTS" --items 100 \
        --connections "$CONNECTIONS" --channels "$CHANNELS")
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null || true
    echo "$name $out cpu_s=$(echo "scale=2; ($t1-$t0)/$(getconf CLK_TCK)" | bc)"
}
for r in $(seq "$ROUNDS"); do
    run memory
    run disk --history-dir "$WORK/history"
done
