#!/usr/bin/env bash
# Build the [sessions] proof of concept against a configured and built tree.
# usage: build.sh [BUILD_DIR]   (default: the repository's build/)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=$(cd "${1:-$root/build}" && pwd)
json="$B/runtime/sessions.json"
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$json" "$1"; }
ip=w2c_f$(field InitProcess) pm=w2c_f$(field PostgresMain)
out=${OUT:-$B/sessions-poc}
mkdir -p "$out"
objcopy --globalize-symbol="$ip" --globalize-symbol="$pm" \
    "$B/runtime/wasm/libpglite_wasm_linked.a" "$out/libpglite_wasm_poc.a"
cc -O1 -g -DINIT_PROCESS="$ip" -DPOSTGRES_MAIN="$pm" -DDB_DIR="\"$out/db\"" \
    -I"$root/include" -I"$root/src" -I"$B/runtime" -I/usr/include/wasm2c \
    "$here/poc.c" -o "$out/poc" \
    -Wl,--wrap=Z_envZ___syscall_dup -Wl,--wrap=Z_envZ_emscripten_date_now \
    -Wl,--wrap=engine_main -Wl,--wrap=engine_call -Wl,--wrap=Z_envZ__mmap_js -Wl,--wrap=Z_envZ__munmap_js \
    "$B/libpglite_core.a" "$out/libpglite_wasm_poc.a" "$B/runtime/wasm/libinitdb_wasm_linked.a" \
    "$B/runtime/side/libsidemodules_wasm.a" "$B/libpglite_core.a" "$out/libpglite_wasm_poc.a" \
    -lm -ldl -lssl -lcrypto -larchive
echo "built $out/poc (InitProcess $ip, PostgresMain $pm)"
