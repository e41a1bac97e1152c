#!/usr/bin/env bash
# The session entry points of the pinned runtime (tools/build/locate-sessions.py).
#
# usage: test_locate_sessions.sh LOCATOR PGLITE.wasm LIBPGLITE_WASM.a BUILD.json
#
# Checks that the locator finds them in the pinned pglite.wasm, that the
# build's copy describes this very wasm, and that the translated module the
# host links defines each located function under its wasm2c name (w2c_fN),
# which is what the host will call.
set -euo pipefail
locator=$1 wasm=$2 archive=$3 built=$4
fails=0
check() { # what, command...
    local what=$1; shift
    if "$@"; then echo "ok - $what"; else echo "not ok - $what"; fails=$((fails + 1)); fi
}
out=$(python3 "$locator" "$wasm")
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$out"; }
sha=$(sha256sum "$wasm" | cut -d' ' -f1)
check "the result names the wasm it describes" test "$(field wasm_sha256)" = "$sha"
check "the build's sessions.json is this wasm's" \
    test "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wasm_sha256"])' "$built")" = "$sha"
syms=$(nm "$archive" | awk '{print $NF}')
for f in InitProcess PostgresMain BackendMain; do
    idx=$(field "$f")
    check "$f is function $idx, defined as w2c_f$idx in the translated module" \
        grep -qx "w2c_f$idx" <<<"$syms"
done
check "every instance is one constant pid today (getpid)" test "$(field getpid_constant)" -gt 0
for idx in $(python3 -c 'import json,sys; print(*json.load(sys.stdin)["MyProcPid_compares"])' <<<"$out"); do
    check "a MyProcPid compare site, function $idx, is defined as w2c_f$idx" grep -qx "w2c_f$idx" <<<"$syms"
done

# A module without the expected code is refused with a message, not guessed.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '\0asm\1\0\0\0' > "$tmp/empty.wasm"
if python3 "$locator" "$tmp/empty.wasm" > "$tmp/out" 2> "$tmp/err"; then
    echo "not ok - an empty module was accepted"; fails=$((fails + 1))
else
    check "an empty module is refused, naming what is missing" grep -q 'child_process_kinds' "$tmp/err"
fi
head -c 100 "$wasm" > "$tmp/trunc.wasm"
if python3 "$locator" "$tmp/trunc.wasm" > "$tmp/out" 2> "$tmp/err"; then
    echo "not ok - a truncated module was accepted"; fails=$((fails + 1))
else
    check "a truncated module is refused without a traceback" bash -c "! grep -q Traceback '$tmp/err'"
fi
[ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
