#!/usr/bin/env bash
# Build fuzz_frames (clang, libFuzzer) and run it for a bounded time from the
# seed corpus (copied: the committed seeds stay as they are). A crash, leak
# or sanitizer report fails the test; the reproducer is kept and named.
# Usage: run_fuzz.sh CMAKE BUILD_DIR FUZZER SEED_DIR
# (FUZZ_RUNS, FUZZ_SECONDS override -runs=200000 -max_total_time=60.)
set -u
cmake=$1 build=$2 fuzzer=$3 seeds=$4
if ! "$cmake" --build "$build" --target fuzz_frames >/dev/null; then
    echo "cannot build fuzz_frames (clang with libFuzzer, e.g. libclang-rt-19-dev): skipped"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pglite-fuzz-XXXXXX")
mkdir "$work/corpus"
cp "$seeds"/* "$work/corpus/"
cd "$work" || exit 1
"$fuzzer" -runs="${FUZZ_RUNS:-200000}" -max_total_time="${FUZZ_SECONDS:-60}" \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/" corpus >"$work/log" 2>&1
rc=$?
tail -20 "$work/log"
if [ $rc -ne 0 ]; then
    echo "fuzz_frames failed ($rc); log and reproducer kept in $work"
    exit 1
fi
rm -rf "$work"
echo "fuzz_frames: no crash"
