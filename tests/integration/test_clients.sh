#!/usr/bin/env bash
# Real client libraries against pglite-proxy on a Unix socket, one session
# each and several at once (MVCC, lock waits, a deadlock, SERIALIZABLE, an
# idle listener, transfers from 8 threads, a Pool of 10): psycopg2
# (Debian python3-psycopg2) and node-postgres (npm pg, the version pinned in
# tests/clients/package-lock.json, installed with `npm ci` into
# BUILD_DIR/clients once; later runs need no network).
#
#   test_clients.sh PATH/TO/pglite-proxy BUILD_DIR
set -u
. "$(dirname "$0")/../support/proxy.sh"

PROXY=${1:?usage: test_clients.sh PATH/TO/pglite-proxy BUILD_DIR}
BUILD=${2:?usage: test_clients.sh PATH/TO/pglite-proxy BUILD_DIR}
HERE=$(cd "$(dirname "$0")/../clients" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pglite-clients-test-XXXXXX")
SOCK=$WORK/sock
mkdir -p "$SOCK"
PASSED=0
FAILED=0
SKIPPED=0
PROXY_PID=

cleanup() {
    [ -n "$PROXY_PID" ] && kill -KILL "$PROXY_PID" 2>/dev/null
    wait 2>/dev/null
    [ "$FAILED" -gt 0 ] && proxy_crashes "$WORK"
    if [ -n "${PGLITE_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# run_client NAME COMMAND...: count its ok/FAIL lines; a non-zero exit
# without a FAIL line is one failure.
run_client() {
    local name=$1
    shift
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out"
    local ok bad
    ok=$(printf '%s\n' "$out" | grep -c '^ok ')
    bad=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        FAILED=$((FAILED + 1))
        echo "FAIL - $name exited with $rc"
    fi
}

# node-postgres into the build tree: npm ci when missing or the lock changed.
install_pg() {
    local dir=$BUILD/clients
    if [ -f "$dir/node_modules/pg/package.json" ] &&
        cmp -s "$HERE/package-lock.json" "$dir/package-lock.json"; then
        return 0
    fi
    mkdir -p "$dir"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$dir/"
    npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund >"$WORK/npm.log" 2>&1 ||
        { cat "$WORK/npm.log"; rm -rf "$dir/node_modules"; return 1; }
}

"$PROXY" --temporary --unix "$SOCK/.s.PGSQL.5432" --tcp 127.0.0.1:0 --log-level warning >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
PROXY_PID=$!
proxy_port "$WORK/proxy.out" "$PROXY_PID" >/dev/null
if [ ! -S "$SOCK/.s.PGSQL.5432" ]; then
    echo "FAIL - pglite-proxy starts"
    cat "$WORK/proxy.err"
    echo "0 passed, 1 failed"
    exit 1
fi
TCP_PORT=$(sed -n 's/^  tcp: .*:\([0-9][0-9]*\)$/\1/p' "$WORK/proxy.out")
echo "ok   - pglite-proxy starts on $SOCK and 127.0.0.1:$TCP_PORT"
PASSED=$((PASSED + 1))

if /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
    run_client psycopg2 /usr/bin/python3 "$HERE/psycopg2_test.py" "$SOCK" 5432
    run_client psycopg2-sessions /usr/bin/python3 "$HERE/psycopg2_sessions.py" "$SOCK" 5432
else
    echo "skip - psycopg2 (apt-get install python3-psycopg2)"
    SKIPPED=$((SKIPPED + 1))
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "skip - node-postgres (node and npm not found)"
    SKIPPED=$((SKIPPED + 1))
elif ! install_pg; then
    echo "skip - node-postgres (npm ci failed: offline?)"
    SKIPPED=$((SKIPPED + 1))
else
    run_client pg env NODE_PATH="$BUILD/clients/node_modules" node "$HERE/pg_test.js" "$SOCK" 5432
    run_client pg-pool env NODE_PATH="$BUILD/clients/node_modules" node "$HERE/pg_pool.js" "$SOCK" 5432
    run_client pg-quick-disconnect env NODE_PATH="$BUILD/clients/node_modules" \
        node "$HERE/pg_quick_disconnect.js" 127.0.0.1 "$TCP_PORT" 20
fi

# TLS: a second server with a self-signed pair in its data directory;
# node-postgres and psycopg2 verify it (sslmode=verify-full)
"$PROXY" --root "$WORK/tlsdb" --ssl-self-signed --no-unix --tcp 127.0.0.1:0 \
    --log-level warning >"$WORK/tls.out" 2>"$WORK/tls.err" &
TLS_PID=$!
TLS_PORT=$(proxy_port "$WORK/tls.out" "$TLS_PID")
CERT=$WORK/tlsdb/server.crt
if [ -z "$TLS_PORT" ] || [ ! -f "$CERT" ]; then
    echo "FAIL - pglite-proxy --ssl-self-signed starts"
    cat "$WORK/tls.err"
    FAILED=$((FAILED + 1))
else
    if [ -f "$BUILD/clients/node_modules/pg/package.json" ]; then
        run_client pg-ssl env NODE_PATH="$BUILD/clients/node_modules" \
            node "$HERE/pg_ssl.js" "$TLS_PORT" "$CERT"
    fi
    if /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
        run_client psycopg2-ssl /usr/bin/python3 -c '
import sys, psycopg2
c = psycopg2.connect(host="localhost", port=int(sys.argv[1]), user="postgres", dbname="postgres",
                     sslmode="verify-full", sslrootcert=sys.argv[2])
cur = c.cursor(); cur.execute("SELECT 41 + 1")
print("ok   - psycopg2 sslmode=verify-full" if cur.fetchone()[0] == 42 else "FAIL - psycopg2 TLS row")
try:
    psycopg2.connect(host="localhost", port=int(sys.argv[1]), user="postgres", dbname="postgres",
                     sslmode="verify-full", sslrootcert="/dev/null")
    print("FAIL - psycopg2 verify-full without the CA connected")
except psycopg2.OperationalError:
    print("ok   - psycopg2 verify-full without the CA is refused")
' "$TLS_PORT" "$CERT"
    fi
fi
kill -TERM "$TLS_PID" 2>/dev/null
wait "$TLS_PID" 2>/dev/null

# a clean stop: SIGTERM, exit 0, socket removed
kill -TERM "$PROXY_PID"
rc=0
wait "$PROXY_PID" || rc=$?
PROXY_PID=
if [ "$rc" -eq 0 ] && [ ! -e "$SOCK/.s.PGSQL.5432" ]; then
    echo "ok   - pglite-proxy stops cleanly"
    PASSED=$((PASSED + 1))
else
    echo "FAIL - pglite-proxy stops cleanly (exit $rc)"
    FAILED=$((FAILED + 1))
    tail -20 "$WORK/proxy.err"
fi

if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
    echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ] || exit 1
[ "$PASSED" -gt 2 ] || exit 77
exit 0
