#!/usr/bin/env bash
# Cluster scale on one machine: NODES Gripway nodes behind one nats-server (JetStream) hold
# SUBSCRIBERS SSE subscribers together on one channel (more than one process may open here:
# 20,000 files per process), while fanbench publishes to the first node. Then one node
# alone with its share of the subscribers, the same messages, for comparison.
#
# Usage: scripts/cluster_scale.sh [--nodes N] [--subscribers S] [--messages M] [--rate R]
#   defaults: 6 nodes, 100,000 subscribers, 10 messages at 0.5/s
# Needs: a release build (cargo build --release -p gripway), .venv/bin/nats-server
# (scripts/test.sh installs it), fanbench (built into $FANBENCH_TARGET if missing).
# Prints fanbench's summary of both runs; JSON under bench/results/<date>-cluster-scale/.
# CPU and memory are summed over every Gripway node and nats-server (fanbench --server-pids).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/bench}
FANBENCH_TARGET=${FANBENCH_TARGET:-/tmp/fanbench-target}
FANBENCH=${FANBENCH:-$FANBENCH_TARGET/release/fanbench}
if [ ! -x "$FANBENCH" ]; then
    (cd "$SHARED/fanbench" && CARGO_TARGET_DIR=$FANBENCH_TARGET cargo build --release)
fi
GW=${GW:-$REPO/target/release/gripway}
NATS=${NATS_SERVER:-$REPO/.venv/bin/nats-server}
NODES=6 SUBS=100000 MESSAGES=10 RATE=0.5
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) NODES=${2:?}; shift 2 ;;
    --subscribers) SUBS=${2:?}; shift 2 ;;
    --messages) MESSAGES=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$REPO/bench/results/$(date +%Y%m%d-%H%M%S)-cluster-scale}
WORK=$(mktemp -d)
mkdir -p "$OUT"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*"; }

wait_port() { # PORT
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    log "nothing listens on $1"
    exit 1
}

start_origin() {
    "$FANBENCH" origin --listen 127.0.0.1:19080 --max-seconds 7200 2>"$WORK/origin.log" &
    PIDS+=($!)
    wait_port 19080
}

start_node() { # I [EXTRA...]: a node on ports 191I0 (clients) and 196I0 (publish)
    local i=$1
    shift
    "$GW" --port 127.0.0.1:$((19100 + i)) --publish-port 127.0.0.1:$((19600 + i)) \
        --admin-port off --log-level warn --route "* 127.0.0.1:19080,over_http" "$@" \
        >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PIDS+=($!)
    wait_port $((19100 + i))
    wait_port $((19600 + i))
}

run() { # LABEL SUBSCRIBERS WORKERS PROXIES PIDS
    "$FANBENCH" run --transport sse --proxy "$4" --publish "http://127.0.0.1:19600/publish/" \
        --subscribers "$2" --channels 1 --messages "$MESSAGES" --rate "$RATE" --size 100 \
        --workers "$3" --server-pids "$5" --label "$1" --json "$OUT/$1.json" \
        --connect-phase-timeout 300 --drain-timeout 120 | tee "$OUT/$1.txt"
}

# the cluster: NODES nodes on one nats-server
log "cluster: $NODES nodes, $SUBS subscribers"
"$NATS" -js -a 127.0.0.1 -p 19422 -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
NATS_PID=$!
wait_port 19422
start_origin
NODE_PIDS=()
proxies=()
for i in $(seq 0 $((NODES - 1))); do
    start_node "$i" --cluster nats://127.0.0.1:19422
    proxies+=("http://127.0.0.1:$((19100 + i))")
done
pids=$(IFS=,; echo "${NODE_PIDS[*]},$NATS_PID")
run cluster "$SUBS" "$NODES" "$(IFS=,; echo "${proxies[*]}")" "$pids"
cleanup
PIDS=()
WORK=$(mktemp -d)

# one node alone with one node's share
share=$(((SUBS + NODES - 1) / NODES))
log "single node: $share subscribers"
start_origin
NODE_PIDS=()
start_node 0
run single "$share" 1 "http://127.0.0.1:19100" "${NODE_PIDS[0]}"
log "results in $OUT"
