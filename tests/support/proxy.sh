# Sourced by the shell tests that start pglite-proxy: their checks (each
# counted in PASSED or FAILED, which the test sets to 0) and the wait for a
# proxy to start.
ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1"
    [ $# -gt 1 ] && printf '       %s\n' "$2" | head -20
    return 0
}
# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected [$2], got [$3]"; fi
}
# check_has NAME NEEDLE HAYSTACK
check_has() {
    case "$3" in *"$2"*) ok "$1" ;; *) bad "$1" "expected to contain [$2], got [$3]" ;; esac
}
# check_lacks NAME NEEDLE HAYSTACK
check_lacks() {
    case "$3" in *"$2"*) bad "$1" "expected not to contain [$2], got [$3]" ;; *) ok "$1" ;; esac
}

# proxy_crashes DIR: what a proxy that died of a fault wrote to its *.err in
# DIR (the crash report of src/engine/wasm_rt.c), so that a crash seen once
# can be read from the test's output.
proxy_crashes() {
    grep -h -B2 -A50 '^pglite: fatal' "$1"/*.err 2>/dev/null | head -80
}

# proxy_port OUT PID: wait (up to 60 s) until the proxy whose stdout is OUT
# prints its URI, or exits; print its TCP port (nothing if it did not start).
proxy_port() {
    for _ in $(seq 600); do
        grep -q '^  uri:' "$1" 2>/dev/null && break
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    sed -n 's/^  tcp: .*:\([0-9][0-9]*\)$/\1/p' "$1"
}
