#!/usr/bin/env bash
# Gripway and Pushpin side by side with the independent load tool in ../shared/bench
# (fanbench): the same scenario against each, alternately, on fresh servers, in one session,
# so machine drift affects both alike. Prints and saves a Markdown table per scenario.
#
# Usage: scripts/bench.sh [--rounds N] [--with-floor] [SCENARIO...]
#   SCENARIO   any of bench-lib.sh's scenarios, plus sse-10k-1ch (10,000 SSE subscribers on one
#              channel, 50 messages at 10/s), sse-10-1ch (light load: 10 subscribers, 200
#              messages at 20/s, for the latency of the path itself) and stream-1k-1ch, stream-5k-1ch, stream-15k-1ch
#              (the same as the sse ones, plain HTTP streaming) [default: sse-10k-1ch]
#   --rounds   runs per server per scenario [2]
#   --with-floor  also run fanbench's limit-server (the machine's floor)
#   --no-pushpin  leave Pushpin out (quick checks against the floor)
#   --all      every scenario BENCHMARKS.md reports (about 90 minutes with --rounds 2)
#   --gripway-variant NAME:ARGS  also run Gripway with extra flags as server NAME (repeatable),
#              e.g. --gripway-variant "history-off:--config bench/history-off.toml"
#   --base-binary PATH  also run another Gripway binary (e.g. a copy of the release build
#              from before a change) as server gripway-base, first in each round
#   --ids      publish through scripts/id_proxy.py, which gives every item an id (so history
#              keeps them; fanbench's items have none); applies to every Gripway run
#   --cluster  also run Gripway as a one-node cluster (server gripway-cluster) on a fresh
#              nats-server with JetStream (.venv/bin/nats-server, or $NATS_SERVER); its CPU and
#              memory figures are Gripway's and nats-server's together; with --base-binary
#              also the base binary so (server gripway-base-cluster, just before it)
# Needs: Pushpin (apt-get install pushpin), a release build (cargo build --release), and
# fanbench (built from ../shared/bench/fanbench into $FANBENCH_TARGET if missing).
# Results: bench/results/<date>/<scenario>/<server>.r<N>.json and bench/results/<date>/summary.md
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/bench}
FANBENCH_TARGET=${FANBENCH_TARGET:-/tmp/fanbench-target}
export FANBENCH=${FANBENCH:-$FANBENCH_TARGET/release/fanbench}
if [ ! -x "$FANBENCH" ]; then
    (cd "$SHARED/fanbench" && CARGO_TARGET_DIR=$FANBENCH_TARGET cargo build --release)
fi
# shellcheck source=/dev/null
source "$SHARED/bench-lib.sh"

ROUNDS=2 FLOOR=0 PUSHPIN=1 IDS=0 CLUSTER=0 BASE_GW="" SCENARIOS=() VARIANTS=() ARGV=("$@")
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --with-floor) FLOOR=1; shift ;;
    --no-pushpin) PUSHPIN=0; shift ;;
    --gripway-variant) VARIANTS+=("${2:?}"); shift 2 ;;
    --ids) IDS=1; shift ;;
    --cluster) CLUSTER=1; shift ;;
    --base-binary) BASE_GW=${2:?}; shift 2 ;;
    --all)
        SCENARIOS+=(sse-1k-1ch sse-5k-1ch sse-15k-1ch sse-1k-1000ch sse-5k-1000ch sse-15k-1000ch
            stream-1k-1ch stream-5k-1ch stream-15k-1ch ws-5k-1ch poll-2k-1ch poll-2k-1ch-1hz
            poll-200-1ch burst-sse-1k publish-rate-1 publish-rate-100)
        shift ;;
    *) SCENARIOS+=("$1"); shift ;;
    esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(sse-10k-1ch)

eval "lib_$(declare -f scenario_args)"
scenario_args() { # adds the scenarios the issues ask for to bench-lib.sh's set
    local run="run --proxy $2 --publish $3 --size 100"
    case $1 in
    sse-10k-1ch) echo "$run --transport sse --subscribers 10000 --channels 1 --messages 50 --rate 10" ;;
    sse-10-1ch) echo "$run --transport sse --subscribers 10 --channels 1 --messages 200 --rate 20" ;;
    stream-1k-1ch | stream-5k-1ch | stream-15k-1ch)
        local n=${1#stream-}
        n=${n%%k-1ch}
        echo "$run --transport stream --subscribers $((n * 1000)) --channels 1 --messages 50 --rate 10" ;;
    *) lib_scenario_args "$@" ;;
    esac
}

GW=$REPO/target/release/gripway
[ -x "$GW" ] || { log "build first: cargo build --release"; exit 2; }
TG_PORT=${TG_PORT:-19999} TG_PUB_PORT=${TG_PUB_PORT:-19561} TG_ORIGIN_PORT=${TG_ORIGIN_PORT:-19080}
OUT=${OUT:-$REPO/bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

start_gripway() { # [EXTRA ARGS...]  (the binary: $BIN, else $GW)
    check_ports_free $TG_PORT $TG_PUB_PORT $TG_ORIGIN_PORT
    start_origin $TG_ORIGIN_PORT
    # shellcheck disable=SC2068
    "${BIN:-$GW}" --port 127.0.0.1:$TG_PORT --publish-port 127.0.0.1:$TG_PUB_PORT --admin-port off \
        --log-level warn --route "* 127.0.0.1:$TG_ORIGIN_PORT,over_http" $@ >"$WORK/gripway.log" 2>&1 &
    TG_PID=$!
    STARTED+=("$TG_PID")
    if [ "$IDS" = 1 ]; then
        "$REPO/scripts/id_proxy.py" --listen 127.0.0.1:$((TG_PUB_PORT + 1)) \
            --to 127.0.0.1:$TG_PUB_PORT >"$WORK/id_proxy.log" 2>&1 &
        STARTED+=("$!")
        sleep 0.5
    fi
    wait_up gripway "$TG_PID" "http://127.0.0.1:$TG_PORT" "http://127.0.0.1:$TG_PUB_PORT/publish/" ||
        { tail -20 "$WORK/gripway.log" >&2; exit 1; }
}

NATS_SERVER=${NATS_SERVER:-$REPO/.venv/bin/nats-server}
TG_NATS_PORT=${TG_NATS_PORT:-19422}
start_nats() { # a fresh nats-server with JetStream; sets NATS_PID
    check_ports_free $TG_NATS_PORT
    rm -rf "$WORK/nats-store"
    "$NATS_SERVER" -js -a 127.0.0.1 -p $TG_NATS_PORT -sd "$WORK/nats-store" >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    STARTED+=("$NATS_PID")
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$TG_NATS_PORT) 2>/dev/null && return 0
        sleep 0.1
    done
    log "nats-server did not start"; tail -5 "$WORK/nats.log" >&2; exit 1
}

start_floor() {
    check_ports_free $TG_PORT $TG_PUB_PORT
    "$FANBENCH" limit-server --listen 127.0.0.1:$TG_PORT --publish-listen 127.0.0.1:$TG_PUB_PORT \
        --max-seconds 7200 >"$WORK/limit.log" 2>&1 &
    TG_PID=$!
    STARTED+=("$TG_PID")
    wait_up limit "$TG_PID" "http://127.0.0.1:$TG_PORT" "http://127.0.0.1:$TG_PUB_PORT/publish/" || exit 1
}

run_one() { # SERVER SCENARIO ROUND
    local server=$1 scen=$2 r=$3 port pub pid out
    case $server in
    pushpin) start_pushpin 0 0; port=$PP_PORT pub=$PP_PUB_PORT pid=$PP_PID ;;
    gripway) start_gripway; port=$TG_PORT pub=$TG_PUB_PORT pid=$TG_PID ;;
    gripway-base) BIN=$BASE_GW start_gripway; port=$TG_PORT pub=$TG_PUB_PORT pid=$TG_PID ;;
    gripway-cluster | gripway-base-cluster)
        start_nats
        local bin=$GW
        [ "$server" = gripway-base-cluster ] && bin=$BASE_GW
        BIN=$bin start_gripway --cluster nats://127.0.0.1:$TG_NATS_PORT
        port=$TG_PORT pub=$TG_PUB_PORT pid="$TG_PID,$NATS_PID" ;;
    gripway-*)
        local v extra=""
        for v in "${VARIANTS[@]}"; do [ "gripway-${v%%:*}" = "$server" ] && extra=${v#*:}; done
        # shellcheck disable=SC2086
        start_gripway $extra; port=$TG_PORT pub=$TG_PUB_PORT pid=$TG_PID ;;
    limit) start_floor; port=$TG_PORT pub=$TG_PUB_PORT pid=$TG_PID ;;
    esac
    out="$OUT/$scen/$server.r$r"
    [ "$IDS" = 1 ] && [[ $server == gripway* ]] && pub=$((pub + 1))
    read -r -a args <<<"$(scenario_args "$scen" "http://127.0.0.1:$port" "http://127.0.0.1:$pub/publish/")"
    "$FANBENCH" "${args[@]}" --server-pids "$pid" --label "$server/$scen/r$r" --json "$out.json" \
        >"$out.txt" 2>"$out.log" || log "fanbench failed for $server $scen r$r (see $out.log)"
    stop_all
    sleep 1
}

servers=(gripway)
[ -n "$BASE_GW" ] && servers=(gripway-base gripway)
[ "$PUSHPIN" = 1 ] && servers=(pushpin "${servers[@]}")
for v in "${VARIANTS[@]}"; do servers+=("gripway-${v%%:*}"); done
[ "$CLUSTER" = 1 ] && [ -n "$BASE_GW" ] && servers+=(gripway-base-cluster)
[ "$CLUSTER" = 1 ] && servers+=(gripway-cluster)
[ "$FLOOR" = 1 ] && servers+=(limit)
{
    echo "# Gripway vs Pushpin 1.36 (rate limits off), $(date '+%Y-%m-%d %H:%M'), $(nproc) cores"
    echo
    echo "Command: \`scripts/bench.sh ${ARGV[*]}\`"
    echo
} >"$OUT/summary.md"
for scen in "${SCENARIOS[@]}"; do
    mkdir -p "$OUT/$scen"
    for r in $(seq 1 "$ROUNDS"); do
        for server in "${servers[@]}"; do
            log "== $scen round $r/$ROUNDS: $server"
            run_one "$server" "$scen" "$r"
        done
    done
    "$SHARED/summarize.py" --side-by-side "$OUT/$scen" | tee -a "$OUT/summary.md"
done
log "results in $OUT"
