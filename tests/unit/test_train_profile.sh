#!/usr/bin/env bash
# test_train_profile.sh TRAIN_PROFILE_PY
#
# tools/build/train-profile.py's decisions, with stand-ins for the compiler,
# the linker, the trainer and llvm-profdata: the profile's key is known
# before anything is compiled, so a cached profile means no instrumented
# build, no trainer and no training (and --instrument-only builds the
# optimised module instead); a profile that is not cached is trained and
# cached; a cached profile llvm-profdata cannot read is trained again;
# another key misses; a failing step stops it with its name and
# leaves no profile.
set -euo pipefail

tp=${1:?usage: test_train_profile.sh TRAIN_PROFILE_PY}
work=$(mktemp -d "${TMPDIR:-/tmp}/pglite-test-train.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fails=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi
}
calls() { grep -c -- "$1" calls.log || true; }

mkdir -p suite cache out
echo "SELECT 1;" > suite/benchmark1.sql
echo "SELECT 2;" > suite/benchmark2.sql
# build-module.py: --print-key prints $KEY; a build logs itself and makes
# the archive under --out-dir.
cat > bm.sh <<'SH'
#!/usr/bin/env bash
if [ "${!#}" = --print-key ]; then echo "$KEY"; exit 0; fi
echo "build $*" >> calls.log
while [ $# -gt 0 ]; do [ "$1" = --out-dir ] && { mkdir -p "$2"; : > "$2/libpglite_wasm.a"; }; shift; done
SH
# The trainer's link: writes a trainer that counts into LLVM_PROFILE_FILE.
cat > ld.sh <<'SH'
#!/usr/bin/env bash
echo "link $*" >> calls.log
[ -n "${LINK_FAILS:-}" ] && { echo "ld: cannot find -lnothing"; exit 1; }
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '#!/bin/sh\necho "run $*" >> %s/calls.log\necho "counts $1" > "$(echo "$LLVM_PROFILE_FILE" | sed "s/%%p/$$/")"\n' "$PWD" > "$out"
chmod +x "$out"
SH
cat > profdata.sh <<'SH'
#!/usr/bin/env bash
[ "$2" = --version ] && { echo "fake llvm-profdata 1"; exit 0; }
[ "$1" = show ] && { grep -q '^counts' "$2" || { echo "$2: malformed profile" >&2; exit 1; }; exit 0; }
echo "merge" >> calls.log
out=$3; shift 3; cat "$@" | sort > "$out"
SH
chmod +x bm.sh ld.sh profdata.sh

common=(--suite-dir suite --profdata ./profdata.sh --cache-dir cache --instrumented instr/libpglite_wasm.a
        ::build-module:: ./bm.sh --out-dir instr --profile-generate)
train() { python3 "$tp" --out out/p.profdata "${common[@]}" ::objcopy:: cp ::link:: ./ld.sh x.o @INSTRUMENTED@ -o @OUT@; }
prefetch() { python3 "$tp" --instrument-only out/stamp "${common[@]}" ::optimised:: ./bm.sh --out-dir opt; }

export KEY=k1
: > calls.log
prefetch > log1 2>&1
check "not cached: --instrument-only builds the instrumented module" test "$(calls 'build .*--profile-generate')" = 1
check "not cached: and not the optimised one" test "$(calls 'build .*--out-dir opt')" = 0
check "--instrument-only touches its stamp" test -f out/stamp

: > calls.log
train > log2 2>&1
check "not cached: the trainer is linked with the instrumented archive" grep -q "link x.o .*libpglite_wasm_linked.a -o " calls.log
check "not cached: trained twice at once (one message, statement by statement)" \
    test "$(calls '^run --message suite/benchmark1.sql suite/benchmark2.sql')" = 1 -a "$(calls '^run suite/')" = 1
check "not cached: the two runs' counts merged into the profile" \
    test "$(grep -c '^counts' out/p.profdata)" = 2
entries=(cache/pglite-profile-*.profdata)
check "the profile is cached" cmp -s "${entries[0]}" out/p.profdata

: > calls.log
prefetch > log3 2>&1
check "cached: --instrument-only builds no instrumented module" test "$(calls 'build .*--profile-generate')" = 0
check "cached: it builds the optimised one with the cached profile" \
    grep -q "build --out-dir opt --profile-use ${entries[0]}" calls.log

: > calls.log
rm out/p.profdata
train > log4 2>&1
check "cached: the profile copied, nothing built, linked or run" test ! -s calls.log
check "cached: the same profile" cmp -s "${entries[0]}" out/p.profdata
check "cached: said so" grep -q "profile: cache hit" log4

head -c 5 "${entries[0]}" > cache/short && mv cache/short "${entries[0]}"
: > calls.log
prefetch > log4b 2>&1
check "a corrupt cached profile: reported" grep -q "cached profile .* is corrupt" log4b
check "a corrupt cached profile: trained again (the instrumented build)" \
    test "$(calls 'build .*--profile-generate')" = 1
train > log4c 2>&1
check "a corrupt cached profile: replaced by a sound one" grep -q '^counts' "${entries[0]}"

echo "SELECT 3;" > suite/benchmark2.sql
: > calls.log
prefetch > log5 2>&1
check "another suite: another key, a miss" test "$(calls 'build .*--profile-generate')" = 1
echo "SELECT 2;" > suite/benchmark2.sql
KEY=k2 prefetch > log6 2>&1
check "another instrumented module (its cache key): a miss" test "$(calls 'build .*--profile-generate')" = 2

export KEY=k3
rm -f out/p.profdata
if LINK_FAILS=1 train > log7 2>&1; then
    check "a failing link fails the step" false
else
    check "a failing link stops it, named, with the linker's message" \
        grep -q "linking the trainer failed (exit 1):" log7
    check "and the linker's own words" grep -q "cannot find -lnothing" log7
    check "and leaves no profile, cached or not" test ! -e out/p.profdata -a "$(ls cache | wc -l)" = 1
fi
if python3 "$tp" --out out/p.profdata "${common[@]}" ::objcopy:: cp > log8 2>&1; then
    check "a missing command is refused" false
else
    check "a missing command is refused, named" grep -q "no command after ::link::" log8
fi
rm -f suite/*.sql
if train > log9 2>&1; then check "an empty suite is refused" false; else
    check "an empty suite is refused, named" grep -q "no benchmark\*.sql in suite" log9
fi

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all train-profile checks passed"
