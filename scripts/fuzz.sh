#!/usr/bin/env bash
# Builds and runs every fuzz target in fuzz/ for a bounded time (FUZZING.md explains them).
#
#   scripts/fuzz.sh [--seconds N] [--target NAME]... [--toolchain nightly|stable]
#
# Installs cargo-fuzz if missing. With the nightly toolchain the targets run under
# AddressSanitizer; on stable (or --toolchain stable) with `--sanitizer none`. Each target's
# committed seeds (fuzz/seeds/<t>/) are copied into its corpus (fuzz/corpus/<t>/, not
# committed) first. Prints per target the executions per second and the corpus size, and
# exits non-zero if any target crashed (the input is left under fuzz/artifacts/<t>/ and the
# log under fuzz/artifacts/logs/).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
unset CARGO_TARGET_DIR
# builds are kept outside the checkout, so a fresh clone on the same machine reuses them
# (the first build takes minutes)
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gripway/fuzz-target}

SECONDS_EACH=20
TARGETS=()
TOOLCHAIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_EACH="$2"; shift 2 ;;
        --seconds=*) SECONDS_EACH="${1#*=}"; shift ;;
        --target) TARGETS+=("$2"); shift 2 ;;
        --target=*) TARGETS+=("${1#*=}"); shift ;;
        --toolchain) TOOLCHAIN="$2"; shift 2 ;;
        --toolchain=*) TOOLCHAIN="${1#*=}"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "[fuzz.sh] $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { log "cannot install cargo-fuzz"; exit 1; }
fi

if [ -z "$TOOLCHAIN" ]; then
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then TOOLCHAIN=nightly; else TOOLCHAIN=stable; fi
fi
if [ "$TOOLCHAIN" = nightly ]; then
    FUZZ=(cargo +nightly fuzz)
    FLAGS=(-O --target-dir "$FUZZ_TARGET_DIR")
    log "toolchain: nightly, AddressSanitizer"
else
    FUZZ=(cargo +stable fuzz)
    FLAGS=(-O --sanitizer none --target-dir "$FUZZ_TARGET_DIR")
    log "toolchain: stable, no sanitizer"
fi

cd "$ROOT/fuzz"
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <("${FUZZ[@]}" list)
fi

log "building ${#TARGETS[@]} targets"
if ! "${FUZZ[@]}" build "${FLAGS[@]}"; then
    log "build failed"
    exit 1
fi

mkdir -p artifacts/logs
failed=()
rows=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ -d "seeds/$t" ]; then cp -n "seeds/$t"/* "corpus/$t"/ 2>/dev/null; fi
    logfile="artifacts/logs/$t.log"
    log "running $t for ${SECONDS_EACH}s"
    "${FUZZ[@]}" run "${FLAGS[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$logfile" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logfile" | tail -1)
    files=$(find "corpus/$t" -type f | wc -l)
    kib=$(du -sk "corpus/$t" | cut -f1)
    if [ "$rc" -eq 0 ]; then
        status=ok
    else
        status="CRASH (exit $rc)"
        failed+=("$t")
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|Test unit written|artifact_prefix)' "$logfile" | head -8
    fi
    rows+=("$(printf '%-14s %8s s %12s execs %8s/s %6s files %7s KiB  %s' \
        "$t" "$SECONDS_EACH" "${execs:-?}" "${rate:-?}" "$files" "$kib" "$status")")
done

echo
log "results (logs in fuzz/artifacts/logs/)"
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    log "crashed: ${failed[*]}"
    exit 1
fi
log "no crashes"
