#!/usr/bin/env bash
# Runs every podtrace fuzz target for a bounded time (cargo-fuzz, libFuzzer).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 15 s, all targets
#
# Env: FUZZ_SANITIZER=address (nightly, ASan) | none (default, stable toolchain),
#      FUZZ_JOBS (parallel libFuzzer workers per target, default 1), FUZZ_RSS_MB (default 2048).
# Seeds: the fixture pcaps are imported with `podtrace import` and turned into per-target
# corpora by the analyzer's example `seed_corpora` (fuzz/corpus/<target>/). A crash leaves its
# input in fuzz/artifacts/<target>/ and fails the script; turn it into a regression test.
# Prints "target: N execs in S s" per target at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-15}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(http1 http2 redis postgres mysql hpack trace_context reassembler pipeline capture_reader redact)
fi
SAN=${FUZZ_SANITIZER:-none}
JOBS=${FUZZ_JOBS:-1}
RSS=${FUZZ_RSS_MB:-2048}
if [ "$SAN" = none ]; then TC=+stable; else TC=+nightly; fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Release build of the fuzz targets (one build for all).
# Debug assertions on: integer overflow and debug_assert! are bugs too.
# (into fuzz/target, where $BIN below looks, whatever CARGO_TARGET_DIR the caller set)
(cd fuzz && CARGO_TARGET_DIR="$ROOT/fuzz/target" cargo "$TC" fuzz build -O -a -s "$SAN")

# Seeds from the fixtures.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The debug podtrace and the seeder, with the workspace's features and profile: they share
# the artifacts of `cargo test --workspace` (make test), so no dependency compiles again.
cargo build -q --workspace --bin podtrace --example seed_corpora
DEBUG="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
PODTRACE="$DEBUG/podtrace"
caps=()
for pcap in fixtures/*/*.pcap; do
    out="$WORK/$(basename "$(dirname "$pcap")")-$(basename "$pcap" .pcap).parquet"
    if "$PODTRACE" import "$pcap" -o "$out" >/dev/null 2>&1; then caps+=("$out"); fi
done
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN=fuzz/target/$TRIPLE/release
"$DEBUG/examples/seed_corpora" "$ROOT/fuzz/corpus" "${caps[@]}"

declare -A RESULT
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$WORK/$t.log"
    start=$(date +%s)
    if ! "$BIN/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$SECS" -rss_limit_mb="$RSS" -max_len=1048576 -timeout=20 \
        -jobs="$JOBS" -workers="$JOBS" -print_final_stats=1 >"$log" 2>&1; then
        echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/):" >&2
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 >&2 || tail -30 "$log" >&2
        status=1
    fi
    [ "$JOBS" -gt 1 ] && cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log
    execs=$(grep -h "stat::number_of_executed_units" "$log" | awk '{s+=$2} END {print s+0}')
    RESULT[$t]="$execs execs in $(( $(date +%s) - start )) s, corpus $(ls "fuzz/corpus/$t" | wc -l)"
done
for t in "${TARGETS[@]}"; do echo "fuzz: $t: ${RESULT[$t]}"; done
exit $status
