#!/usr/bin/env bash
# One hot channel on this machine: bursts to every subscriber of one SSE channel, Gripway with
# its default worker threads and with `--workers 1`, for each binary given, alternately, on
# fresh servers (issue 12's sweep; ../shared/bench/cores.sh is the same on many cores).
#
# Usage: scripts/hot_channel.sh [--rounds N] [NAME=BINARY...]
#   NAME=BINARY  a Gripway binary to run under the name NAME [gripway=target/release/gripway]
#   --rounds     runs per binary and thread count [2]
#   Scenarios: burst-1k (1,000 subscribers, 1,000 messages, as fast as the publisher can) and
#   burst-15k (15,000 subscribers, 200 messages); fanbench's own origin; 100-byte payloads.
#   OUT=DIR      results (default bench/results/hot-channel-<date>): DIR/<label>.{json,txt}
#   WORKERS=N    the many-thread runs use `--workers N` instead of the default (one per core);
#                N above the core count oversubscribes, to see many threads' contention here
# Prints one line per run: deliveries/s, delivery p99 (ms), server CPU (s), loss.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2 BINS=()
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2 ;;
    *=*) BINS+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#BINS[@]} -gt 0 ] || BINS=(gripway=target/release/gripway)
FB=${FANBENCH:-../shared/bench/fanbench/target/release/fanbench}
[ -x "$FB" ] || (cd ../shared/bench/fanbench && cargo build --release -q) || exit 1
OUT=${OUT:-bench/results/hot-channel-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PORT=19999 PUB=19561 ORIGIN=19080

one() { # LABEL BINARY WORKERS-FLAG FANBENCH-ARGS...
    local label=$1 bin=$2 w=$3 op sp
    shift 3
    "$FB" origin --listen 127.0.0.1:$ORIGIN --max-seconds 600 >/dev/null 2>&1 &
    op=$!
    # shellcheck disable=SC2086
    "$bin" $w --port 127.0.0.1:$PORT --publish-port 127.0.0.1:$PUB --admin-port off \
        --log-level warn --route "* 127.0.0.1:$ORIGIN" >"$OUT/$label.server.log" 2>&1 &
    sp=$!
    sleep 1
    timeout 300 "$FB" run --proxy http://127.0.0.1:$PORT --publish http://127.0.0.1:$PUB/publish/ \
        --size 100 --server-pids "$sp" --label "$label" --json "$OUT/$label.json" "$@" \
        >"$OUT/$label.txt" 2>&1
    python3 - "$OUT/$label.json" "$label" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"{sys.argv[2]:<28} failed ({e})"); sys.exit()
dl, s = d["delivery"], d["server"]
print(f"{sys.argv[2]:<28} {dl['deliveries_per_s']:>10,.0f}/s  p99 {d['latency_ms']['p99']:>8.1f} ms"
      f"  cpu {s['cpu_publish_and_drain_s']:>6.2f} s  loss {dl['loss_pct']}%")
PY
    kill "$sp" "$op" 2>/dev/null
    wait "$sp" "$op" 2>/dev/null
    sleep 1
}

for r in $(seq 1 "$ROUNDS"); do
    for scen in ${SCENARIOS:-burst-1k burst-15k}; do
        case $scen in
        burst-1k) args=(--transport sse --subscribers 1000 --channels 1 --messages 1000 --rate 0) ;;
        burst-15k) args=(--transport sse --subscribers 15000 --channels 1 --messages 200 --rate 0) ;;
        esac
        for b in "${BINS[@]}"; do
            for w in all 1; do
                if [ $w = 1 ]; then
                    flag="--workers 1"
                else
                    flag=${WORKERS:+--workers $WORKERS} w=${WORKERS:-all}
                fi
                one "$scen-${b%%=*}-w$w-r$r" "${b#*=}" "$flag" "${args[@]}"
            done
        done
    done
done | tee "$OUT/summary.txt"
