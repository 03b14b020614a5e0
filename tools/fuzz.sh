#!/bin/sh
# fuzz.sh: runs one libFuzzer harness of tests/fuzz for a given time.
#
#   tools/fuzz.sh TARGET SECONDS [--merge]      TARGET: npy, onnx, metadata, video, list
#
# Builds the harness with clang (-fsanitize=fuzzer,address,undefined; the whole library is
# instrumented) in $STX_FUZZ_BUILD (default build-fuzz/), then fuzzes at nice 19 with one
# process, starting from tests/fuzz/corpus/TARGET and the crash inputs kept so far. New inputs go
# to a scratch corpus under the build folder; a crash, leak or timeout is written to
# tests/fuzz/crashes/TARGET/ (the regression inputs ctest fuzz_replay_TARGET replays: fix the
# bug, keep the input). --merge then minimises scratch + committed corpus back into
# tests/fuzz/corpus/TARGET (libFuzzer -merge=1: the smallest set keeping the coverage).
# The log (libFuzzer's #N, cov:, ft: lines and final stats) is in $STX_FUZZ_BUILD/fuzz-logs/.
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: tools/fuzz.sh TARGET SECONDS [--merge]" >&2
    exit 2
fi
target=$1
seconds=$2
merge=${3:-}
case $target in
npy | metadata | list) max_len=4096 ;;
onnx | video) max_len=131072 ;;
*)
    echo "fuzz.sh: unknown target '$target' (npy, onnx, metadata, video, list)" >&2
    exit 2
    ;;
esac
./tools/setup.sh --fuzz
build=${STX_FUZZ_BUILD:-build-fuzz}
if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTX_FUZZ=ON >/dev/null
fi
nice -n 10 cmake --build "$build" --target "stx_fuzz_$target" -j2 >/dev/null
work="$build/fuzz-work/$target"
logs="$build/fuzz-logs"
crashes="tests/fuzz/crashes/$target"
mkdir -p "$work" "$logs" "$crashes"
log="$logs/$target.log"
echo "fuzz.sh: $target for ${seconds}s, log $log"
# -rss_limit_mb / -malloc_limit_mb: an input making stx allocate more than 2 GiB is a finding
# (limits are checked before allocating). ASan's leak checker is on (-detect_leaks=1).
status=0
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n 19 "$build/tests/fuzz/stx_fuzz_$target" -max_total_time="$seconds" \
    -max_len="$max_len" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "tests/fuzz/corpus/$target" \
    "$crashes" >"$log" 2>&1 || status=$?
grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -n 1 || true
grep -E '^stat::' "$log" || true
if [ "$status" -ne 0 ]; then
    echo "fuzz.sh: $target stopped with a finding (exit $status): see $log and $crashes/" >&2
    exit "$status"
fi
if [ "$merge" = "--merge" ]; then
    merged="$build/fuzz-work/$target.merged"
    rm -rf "$merged"
    mkdir -p "$merged"
    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 nice -n 19 \
        "$build/tests/fuzz/stx_fuzz_$target" -merge=1 -max_len="$max_len" -timeout=20 \
        "$merged" "tests/fuzz/corpus/$target" "$work" >>"$log" 2>&1
    rm -f "tests/fuzz/corpus/$target"/*
    cp "$merged"/* "tests/fuzz/corpus/$target/"
    echo "fuzz.sh: corpus/$target now holds $(ls "tests/fuzz/corpus/$target" | wc -l) inputs"
fi
