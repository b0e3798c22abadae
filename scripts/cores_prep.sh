#!/usr/bin/env bash
# Prepares issue 12's many-core check: the release Gripway and fanbench, stripped, beside
# ../shared/bench/cores.sh in target/cores/, so that the folder alone can be copied to a machine
# with many cores and run there in one go. Checks the folder here with a small load first.
#
# Usage: scripts/cores_prep.sh [--no-check]
#   On the many-core machine, from the repository root:
#     GRIPWAY=target/cores/gripway FANBENCH=target/cores/fanbench OUT=target/cores/out \
#         target/cores/cores.sh
#   then record target/cores/out/log.txt in BENCHMARKS.md ("Issue 12").
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=1
[ "${1:-}" = --no-check ] && CHECK=0
SRC=../shared/bench
[ -f "$SRC/cores.sh" ] || { echo "no $SRC/cores.sh" >&2; exit 1; }
cargo build --release -q -p gripway
(cd "$SRC/fanbench" && cargo build --release -q)
rm -rf target/cores
mkdir -p target/cores
strip -o target/cores/gripway target/release/gripway
strip -o target/cores/fanbench "$SRC/fanbench/target/release/fanbench"
cp "$SRC/cores.sh" target/cores/cores.sh
chmod +x target/cores/cores.sh
du -sh target/cores
if [ $CHECK = 1 ]; then
    # the same script with a load this machine takes in seconds: every run must deliver all
    MANY="--transport sse --subscribers 300 --channels 30 --messages 20 --rate 2000" \
    BURST="--transport sse --subscribers 300 --channels 1 --messages 20 --rate 0" \
    GRIPWAY=target/cores/gripway FANBENCH=target/cores/fanbench OUT=target/cores/check \
        target/cores/cores.sh
    n=$(grep -c '^== .* rc 0:' target/cores/check/log.txt || true)
    [ "$n" = 6 ] || { echo "check: $n of 6 runs ended well" >&2; exit 1; }
    python3 - target/cores/check/*.json <<'PY' || exit 1
import json, sys
lost = [f for f in sys.argv[1:] if json.load(open(f))["delivery"]["loss_pct"] != 0]
if lost:
    sys.exit(f"check: deliveries lost in {', '.join(lost)}")
PY
    rm -rf target/cores/check
    echo "target/cores is ready (checked here)"
fi
echo "on a machine with many cores, from the repository root:"
echo "  GRIPWAY=target/cores/gripway FANBENCH=target/cores/fanbench OUT=target/cores/out target/cores/cores.sh"
