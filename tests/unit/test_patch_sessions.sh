#!/usr/bin/env bash
# pglite.wasm patched for many sessions (tools/build/patch-sessions.py).
#
# usage: test_patch_sessions.sh PATCHER PGLITE.wasm PATCHED.wasm BUILD.json LIBPGLITE_WASM.a
#
# Checks that the patcher finds every point in the pinned pglite.wasm, that
# the build's module and sessions.json are what it makes of this very wasm,
# that the patched module is valid wasm whose functions the host links under
# the names sessions.json gives (w2c_fN), and that a module of another shape
# is refused with a message instead of being patched by guess.
set -euo pipefail
patcher=$1 wasm=$2 patched=$3 built=$4 archive=$5
fails=0
check() { # what, command...
    local what=$1; shift
    if "$@"; then echo "ok - $what"; else echo "not ok - $what"; fails=$((fails + 1)); fi
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

python3 "$patcher" "$wasm" "$tmp/p.wasm" "$tmp/p.json"
check "the patched module is valid wasm" wasm-validate "$tmp/p.wasm"
check "patching is deterministic: the build made the same module" cmp -s "$tmp/p.wasm" "$patched"
check "the build's sessions.json is the same" cmp -s "$tmp/p.json" "$built"
check "sessions.json names the pinned wasm it was made from" \
    test "$(field "$built" source_wasm_sha256)" = "$(sha256sum "$wasm" | cut -d' ' -f1)"
check "sessions.json names the module the build translates" \
    test "$(field "$built" wasm_sha256)" = "$(sha256sum "$patched" | cut -d' ' -f1)"

syms=$(nm "$archive" | awk '{print $NF}')
for f in BackendMain kill WaitEventSetWait; do
    idx=$(field "$built" "$f")
    check "$f is function $idx, defined as w2c_f$idx in the translated module" \
        grep -qx "w2c_f$idx" <<<"$syms"
done
for idx in $(python3 -c 'import json,sys; print(*json.load(open(sys.argv[1]))["pid_compares"])' "$built"); do
    check "a pid compare site, function $idx, is defined as w2c_f$idx" grep -qx "w2c_f$idx" <<<"$syms"
done
h=$(dirname "$archive")/pglite.h
check "the translated module imports env.pglitec_kill" grep -q 'Z_envZ_pglitec_kill' "$h"
for e in pid raise InitProcess PostgresMain ReadyForQuery on_exit_reset XLogBackgroundFlush \
         WalWriterDelay; do
    check "it exports pglitec_$e (what the host calls to give a clone its pid, signals, start, WAL writer)" \
        grep -q "Z_pgliteZ_pglitec_$e(" "$h"
done

# Another shape is refused with a message, never patched by guess.
if python3 "$patcher" "$patched" "$tmp/q.wasm" "$tmp/q.json" 2> "$tmp/err"; then
    echo "not ok - an already patched module was patched again"; fails=$((fails + 1))
else
    check "an already patched module is refused, naming what it lacks" grep -q 'patch-sessions: ' "$tmp/err"
fi
printf '\0asm\1\0\0\0' > "$tmp/empty.wasm"
if python3 "$patcher" "$tmp/empty.wasm" > "$tmp/out" 2> "$tmp/err"; then
    echo "not ok - an empty module was accepted"; fails=$((fails + 1))
else
    check "an empty module is refused, naming what is missing" grep -q 'child_process_kinds' "$tmp/err"
fi
head -c 100 "$wasm" > "$tmp/trunc.wasm"
if python3 "$patcher" "$tmp/trunc.wasm" > "$tmp/out" 2> "$tmp/err"; then
    echo "not ok - a truncated module was accepted"; fails=$((fails + 1))
else
    check "a truncated module is refused without a traceback" bash -c "! grep -q Traceback '$tmp/err'"
fi
[ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
