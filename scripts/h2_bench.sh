#!/usr/bin/env bash
# Gripway's SSE over TLS three ways, alternately, each run on a fresh server and a fresh origin:
#   h2-1   TLS + HTTP/2, 1 stream per connection   (examples/h2_load: STREAMS connections)
#   h2-10  TLS + HTTP/2, 10 streams per connection (examples/h2_load: STREAMS/10 connections)
#   h1     TLS + HTTP/1.1 SSE                      (fanbench run --transport sse, https://)
# Same streams, channels, messages, rate and payload size for all three (the defaults are
# bench-lib.sh's sse-5k-1ch: 5,000 subscribers, 1 channel, 50 messages at 10/s, 100 bytes).
# Certificates: a self-signed P-256 pair for localhost made by openssl (bench-lib.sh's
# make_certs); both clients accept it without verifying (loopback only).
#
# Usage: scripts/h2_bench.sh [--rounds N] [--streams N] [--channels K] [--messages M]
#                            [--rate R] [--size B] [--only "h2-1 h2-10 h1"]
#   --rounds   rounds of the three runs [2]
# Needs: a release build of gripway and of the example (nice -n 19 cargo build --release -p
# gripway --example h2_load; --bin gripway too), fanbench (../shared/bench/fanbench, built into
# $FANBENCH_TARGET if missing), openssl. Runs the servers and the load tools at nice -n -10
# ($NICE; root can raise priority).
# Results: bench/results/h2-<date>/<run>.r<N>.{json,txt,log}, the commands in commands.txt, and
# summary.md (one table row per run, every round).
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

ROUNDS=2 STREAMS=5000 CHANNELS=1 MESSAGES=50 RATE=10 SIZE=100 ONLY="h2-1 h2-10 h1" ARGV=("$@")
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --streams) STREAMS=${2:?}; shift 2 ;;
    --channels) CHANNELS=${2:?}; shift 2 ;;
    --messages) MESSAGES=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --only) ONLY=${2:?}; shift 2 ;;
    *) log "unknown argument $1"; exit 2 ;;
    esac
done
[ $((STREAMS % 10)) = 0 ] || { log "--streams must be a multiple of 10"; exit 2; }

GW=${GW:-$REPO/target/release/gripway}
H2LOAD=${H2LOAD:-$REPO/target/release/examples/h2_load}
for b in "$GW" "$H2LOAD"; do
    [ -x "$b" ] || { log "build first: nice -n 19 cargo build --release -p gripway --bin gripway --example h2_load"; exit 2; }
done
read -r -a NICE <<<"${NICE:-nice -n -10}"
# ports apart from bench.sh (19xxx), side-by-side.sh (18xxx) and Pushpin (17xxx)
H2_PORT=${H2_PORT:-20999} H2_TLS_PORT=${H2_TLS_PORT:-20443} H2_PUB_PORT=${H2_PUB_PORT:-20561}
H2_ORIGIN_PORT=${H2_ORIGIN_PORT:-20080}
OUT=${OUT:-$REPO/bench/results/h2-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
CERTS_DIR=$WORK/certs
make_certs "$CERTS_DIR"

start_gripway() { # a fresh origin and Gripway with a TLS listener; sets GW_PID
    check_ports_free $H2_PORT $H2_TLS_PORT $H2_PUB_PORT $H2_ORIGIN_PORT
    start_origin $H2_ORIGIN_PORT
    "${NICE[@]}" "$GW" --port 127.0.0.1:$H2_PORT --tls-port 127.0.0.1:$H2_TLS_PORT \
        --tls-certs-dir "$CERTS_DIR" --publish-port 127.0.0.1:$H2_PUB_PORT --admin-port off \
        --log-level warn --route "* 127.0.0.1:$H2_ORIGIN_PORT,over_http" >"$WORK/gripway.log" 2>&1 &
    GW_PID=$!
    STARTED+=("$GW_PID")
    wait_up gripway "$GW_PID" "http://127.0.0.1:$H2_PORT" "http://127.0.0.1:$H2_PUB_PORT/publish/" ||
        { tail -20 "$WORK/gripway.log" >&2; exit 1; }
}

run_one() { # RUN ROUND
    local run=$1 r=$2 out cmd
    out="$OUT/$run.r$r"
    start_gripway
    local url="https://localhost:$H2_TLS_PORT" pub="http://127.0.0.1:$H2_PUB_PORT/publish/"
    local common=(--channels "$CHANNELS" --messages "$MESSAGES" --rate "$RATE" --size "$SIZE"
        --publish "$pub" --json "$out.json" --label "gripway/$run/r$r")
    case $run in
    h2-1 | h2-10)
        local per=${run#h2-}
        cmd=("$H2LOAD" --url "$url/sse" --insecure --connections $((STREAMS / per))
            --streams-per-conn "$per" --pid "$GW_PID" "${common[@]}") ;;
    h1)
        cmd=("$FANBENCH" run --transport sse --proxy "$url" --subscribers "$STREAMS"
            --server-pids "$GW_PID" "${common[@]}") ;;
    esac
    echo "${NICE[*]} ${cmd[*]}" | sed "s|$OUT/||g; s|$REPO/||g" >>"$OUT/commands.txt"
    if "${NICE[@]}" "${cmd[@]}" >"$out.txt" 2>"$out.log"; then
        log "$run r$r: $(tail -1 "$out.txt" | cut -c1-300)"
    else
        log "$run r$r failed (see $out.log)"
    fi
    grep -iE "warn|error" "$WORK/gripway.log" | sort | uniq -c | sort -rn | head -20 >"$out.gripway-log.txt" || true
    stop_all
    sleep 1
}

{
    echo "# Gripway SSE over TLS: HTTP/2 (1 and 10 streams per connection) and HTTP/1.1, $(date '+%Y-%m-%d %H:%M'), $(nproc) cores"
    echo
    echo "Command: \`scripts/h2_bench.sh ${ARGV[*]}\` ($STREAMS streams, $CHANNELS channel(s), $MESSAGES messages per channel at $RATE/s, $SIZE bytes)"
    echo
} >"$OUT/summary.md"
for r in $(seq 1 "$ROUNDS"); do
    for run in $ONLY; do
        log "== round $r/$ROUNDS: $run"
        run_one "$run" "$r"
    done
done
python3 - "$OUT" >>"$OUT/summary.md" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
print("| run | round | ready | KiB per idle stream (settled / at ready) | us CPU per delivery "
      "| deliveries/s | latency p50 / p99 ms | missing (loss %) | dup | out of order | load tool CPU s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"
for path in sorted(glob.glob(os.path.join(out, "*.json")), key=lambda p: (p.split(".r")[-1], p)):
    name = os.path.basename(path)[:-5]
    run, rnd = name.rsplit(".r", 1)
    d = json.load(open(path))
    s, dl, lat = d.get("server") or {}, d["delivery"], d["latency_ms"] if "latency_ms" in d else d["delivery"]["latency_ms"]
    if d.get("tool") == "h2_load":
        mem = f"{f(s.get('rss_per_idle_stream_kib'))} / {f(s.get('rss_per_stream_at_ready_kib'))}"
    else:
        mem = f"- / {f(s.get('rss_per_idle_connection_kib'))}"
    print(f"| {run} | {rnd} | {d['connect']['ready']} | {mem} | {f(s.get('cpu_us_per_delivery'))} "
          f"| {dl['deliveries_per_s']:.0f} | {f(lat['p50'])} / {f(lat['p99'])} "
          f"| {dl['missing']} ({dl['loss_pct']:.3f}) | {dl['duplicates']} | {dl['out_of_order']} "
          f"| {f(d['loadgen']['cpu_publish_and_drain_s'])} |")
EOF
cat "$OUT/summary.md"
log "results in $OUT"
