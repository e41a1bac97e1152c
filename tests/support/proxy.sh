# Sourced by the shell tests that start pglite-proxy.
#
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
