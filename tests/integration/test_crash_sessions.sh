#!/usr/bin/env bash
# kill -9 of pglite-proxy while 8 clients commit, 20 times: every commit a
# client saw acknowledged is there after the restart, and the cluster
# opens every time (PostgreSQL's crash recovery, with many sessions).
#
#   test_crash_sessions.sh PATH/TO/pglite-proxy [CYCLES]
set -u
PROXY=${1:?usage: test_crash_sessions.sh PATH/TO/pglite-proxy [CYCLES]}
CYCLES=${2:-20}
command -v psql >/dev/null || { echo "SKIP: no psql"; exit 77; }
WORK=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && { kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/s" "$WORK/tmp"
# the proxy's scratch directories (pglite-XXXXXX) in a TMPDIR of the test's
export TMPDIR="$WORK/tmp"
fails=0
Q() { psql -X -qAt -h "$WORK/s" -U postgres -d postgres "$@"; }
start() {
    "$PROXY" --root "$WORK/db" --unix "$WORK/s" --log-level error >>"$WORK/proxy.log" 2>&1 &
    PID=$!
    for _ in $(seq 300); do Q -c 'SELECT 1' >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
# Each client: INSERTs, each followed by an \echo that psql prints only
# once the INSERT's commit was acknowledged.
for k in $(seq 8); do
    for n in $(seq 5000); do echo "INSERT INTO acks VALUES (:c, $k, $n);"; echo "\\echo ack $n"; done \
        >"$WORK/client$k.sql"
done
start || { echo "not ok - the proxy did not start"; exit 1; }
Q -c 'CREATE TABLE acks (c int, k int, n int)' >/dev/null
for cyc in $(seq "$CYCLES"); do
    pids=""
    for k in $(seq 8); do
        Q -v c="$cyc" -f "$WORK/client$k.sql" >"$WORK/ack.$cyc.$k" 2>/dev/null &
        pids="$pids $!"
    done
    sleep 1.5
    kill -9 "$PID"
    wait "$PID" 2>/dev/null
    wait $pids 2>/dev/null
    if ! start; then
        echo "not ok - cycle $cyc: the cluster did not open after kill -9"; fails=$((fails + 1))
        tail -5 "$WORK/proxy.log"
        break
    fi
    acked=$(cat "$WORK"/ack."$cyc".* | grep -c '^ack ')
    lost=0
    for k in $(seq 8); do
        last=$(grep '^ack ' "$WORK/ack.$cyc.$k" | tail -1 | cut -d' ' -f2)
        [ -z "$last" ] && continue
        have=$(Q -c "SELECT count(*) FROM acks WHERE c = $cyc AND k = $k AND n <= $last")
        [ "$have" = "$last" ] || lost=$((lost + 1))
    done
    if [ "$lost" -eq 0 ] && [ "$acked" -gt 0 ]; then
        echo "ok - cycle $cyc: $acked acknowledged commits of 8 clients, all there after kill -9"
    else
        echo "not ok - cycle $cyc: $acked acknowledged, $lost clients lost some"; fails=$((fails + 1))
    fi
done
# each kill -9 left the proxy's scratch directories behind (its first
# backend's and its sessions'); the next start removed them (their owner's
# lock was free): only the running proxy's are there
left=$(ls -d "$TMPDIR"/pglite-* 2>/dev/null | wc -l)
if [ "$left" -ge 1 ] && [ "$left" -le 2 ]; then
    echo "ok - after $CYCLES kill -9, $left scratch directories: the running proxy's"
else
    echo "not ok - after $CYCLES kill -9, $left scratch directories in TMPDIR"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
