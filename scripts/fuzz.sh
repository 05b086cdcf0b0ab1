#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of les/fuzz for FUZZ_SECONDS each, one at a time,
# under libFuzzer's allocation limits, and prints one summary line per target.
#
#   FUZZ_SECONDS=60 (default)   seconds per target
#   FUZZ_TARGETS="a b"          run only these targets (default: all)
#   FUZZ_SECONDS_<target>=N     override the time of one target (e.g. FUZZ_SECONDS_session=600)
#
# -malloc_limit_mb=128 makes any single allocation above 128 MiB a crash: far above the 10 MiB
# LES message cap plus frame overhead (~12 MiB), far below what trusting a peer's length field
# would ask for. -rss_limit_mb=2048 bounds the process as a whole. Corpora live in
# les/fuzz/corpus/<target>, crash inputs in les/fuzz/artifacts/<target>, logs in
# les/fuzz/artifacts/logs (all gitignored). Exits non-zero if any target crashed.
set -uo pipefail

cd "$(dirname "$0")/../les/fuzz"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-frame_reader les_message p2p handshake status_kv chain session}"

cargo +nightly fuzz build -O || exit 2

mkdir -p artifacts/logs
status=0
summary=()
for target in $targets; do
    override="FUZZ_SECONDS_${target}"
    run_seconds="${!override:-$seconds}"
    max_len=4096
    case "$target" in frame_reader | session) max_len=16384 ;; esac
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/logs/$target.log"
    start=$(date +%s)
    cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$run_seconds" -malloc_limit_mb=128 -rss_limit_mb=2048 \
        -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1
    code=$?
    elapsed=$(($(date +%s) - start))
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    [ -z "$runs" ] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    if [ "$code" -eq 0 ]; then
        result="ok"
    else
        result="CRASH (exit $code; see $log and artifacts/$target)"
        status=1
    fi
    line="$target: ${runs:-?} runs in ${elapsed}s (asked ${run_seconds}s): $result"
    echo "$line"
    summary+=("$line")
done

echo "---- fuzz summary ----"
printf '%s\n' "${summary[@]}"
exit $status
