#!/usr/bin/env bash
# PGlite's SQL speed suite (benchmark*.sql) against three engines, one run:
#   native  PostgreSQL 15 (Debian), a private throw-away cluster in /dev/shm,
#           Unix socket only, driven by psql
#   pglite  pglite-c through build/tools/pglite-proxy --temporary, Unix
#           socket only, driven by psql
#   PGlite  the npm package in Node.js, in memory, db.exec() per file
#           (bench/sql-suite-pglite.mjs)
# Also each file as ONE Query message (bench/sql-suite-onequery.py) on a
# fresh database of native and pglite-c, as db.exec() does (second table).
# All three: fsync=off, synchronous_commit=off (compare engines, not disks).
# psql timings are wall clock around `psql -X -q -v ON_ERROR_STOP=1 -f FILE`
# (includes psql's start and connection, a few ms); Node's are around
# db.exec() alone. Peak RSS: VmHWM of pglite-proxy and of the node process.
#
#   bench/sql-suite.sh [SQL_DIR]      (default /work/shared/bench/sql)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SQL_DIR=${1:-/work/shared/bench/sql}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PROXY=$ROOT/build/tools/pglite-proxy
PGLITE_DIST=$ROOT/build/runtime/npm/pglite/package/dist
RUN_USER=${RUN_USER:-nobody}      # postgres refuses to run as root

# PGlite's own order (3.1 needs t3 from 3; 11-16 use the tables made before).
FILES=()
for n in 1 2 2.1 3 3.1 4 5 6 7 8 9 10 11 12 13 14 15 16; do
    f=$SQL_DIR/benchmark$n.sql
    [ -f "$f" ] && FILES+=("$f")
done
[ ${#FILES[@]} -gt 0 ] || { echo "no benchmark*.sql in $SQL_DIR" >&2; exit 1; }

TMP=$(mktemp -d -p /dev/shm sql-suite.XXXXXX)
chmod 755 "$TMP"
PROXY_PID= NATIVE_UP=
cleanup() {
    set +e
    if [ -n "$NATIVE_UP" ]; then
        runuser -u "$RUN_USER" -- "$PGBIN/pg_ctl" -D "$TMP/native" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
        kill -TERM "$PROXY_PID"
        for _ in $(seq 100); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$PROXY_PID" 2>/dev/null && kill -KILL "$PROXY_PID"
        wait "$PROXY_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%N; }
# run_onequery LABEL SOCKDIR: the same files again in a new database, each
# file as one Query message (as db.exec() does), into $TMP/LABEL-1q.tsv
run_onequery() {
    local label=$1 sock=$2
    psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres -c 'CREATE DATABASE onequery'
    python3 "$ROOT/bench/sql-suite-onequery.py" "$sock" onequery "${FILES[@]}" >"$TMP/$label-1q.tsv"
}
# run_psql LABEL SOCKDIR: one "file<TAB>ms" line per file into $TMP/LABEL.tsv
run_psql() {
    local label=$1 sock=$2 f t0 t1
    : >"$TMP/$label.tsv"
    for f in "${FILES[@]}"; do
        t0=$(now_ms)
        if ! psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres -f "$f" \
                >/dev/null 2>"$TMP/$label.err"; then
            echo "$label: $(basename "$f") failed:" >&2; cat "$TMP/$label.err" >&2; exit 1
        fi
        t1=$(now_ms)
        printf '%s\t%s\n' "$(basename "$f")" \
            "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e6}')" >>"$TMP/$label.tsv"
    done
}

echo "== native PostgreSQL ($("$PGBIN/postgres" --version))" >&2
mkdir -p "$TMP/native" "$TMP/native-sock"
chown "$RUN_USER" "$TMP/native" "$TMP/native-sock"
runuser -u "$RUN_USER" -- "$PGBIN/initdb" -D "$TMP/native" -U postgres --auth=trust \
    --no-sync -E UTF8 --locale=C >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; exit 1; }
NATIVE_UP=1
runuser -u "$RUN_USER" -- "$PGBIN/pg_ctl" -D "$TMP/native" -l "$TMP/native-sock/server.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories='$TMP/native-sock' -c fsync=off -c synchronous_commit=off" \
    start >/dev/null || { cat "$TMP/native-sock/server.log" >&2; exit 1; }
psql -X -qAt -h "$TMP/native-sock" -U postgres -d postgres \
    -c "SELECT 'native settings: fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' shared_buffers=' || current_setting('shared_buffers')" >&2
run_psql native "$TMP/native-sock"
run_onequery native "$TMP/native-sock"
runuser -u "$RUN_USER" -- "$PGBIN/pg_ctl" -D "$TMP/native" -m fast -w stop >/dev/null
NATIVE_UP=

echo "== pglite-c ($PROXY)" >&2
mkdir -p "$TMP/proxy-sock"
"$PROXY" --temporary --relaxed-durability --unix "$TMP/proxy-sock" --log-level error \
    >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 300); do
    [ -S "$TMP/proxy-sock/.s.PGSQL.5432" ] && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$TMP/proxy.log" >&2; exit 1; }
    sleep 0.1
done
psql -X -qAt -h "$TMP/proxy-sock" -U postgres -d postgres \
    -c "SELECT 'pglite-c settings: fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' shared_buffers=' || current_setting('shared_buffers')" >&2
run_psql pglitec "$TMP/proxy-sock"
run_onequery pglitec "$TMP/proxy-sock"
PROXY_RSS=$(awk '/VmHWM/{print $2}' "/proc/$PROXY_PID/status")
kill -TERM "$PROXY_PID"; wait "$PROXY_PID" || true; PROXY_PID=

echo "== PGlite (node $(node --version), $PGLITE_DIST)" >&2
node "$ROOT/bench/sql-suite-pglite.mjs" "$PGLITE_DIST" "${FILES[@]}" >"$TMP/pglite.out"
grep '^#settings' "$TMP/pglite.out" | sed 's/^#settings\t/PGlite settings: /' >&2
grep -v '^#' "$TMP/pglite.out" >"$TMP/pglite.tsv"
NODE_RSS=$(awk -F'\t' '/^#rss/{print $2}' "$TMP/pglite.out")

python3 - "$TMP/native.tsv" "$TMP/pglitec.tsv" "$TMP/pglite.tsv" "$PROXY_RSS" "$NODE_RSS" \
    "$TMP/native-1q.tsv" "$TMP/pglitec-1q.tsv" <<'EOF'
import math, sys
def load(p):
    return dict(l.rstrip('\n').split('\t') for l in open(p) if l.strip())
proxy_rss, node_rss = int(sys.argv[4]), int(sys.argv[5])
def table(nat, pgc, pgl):
  print('| file | native ms | pglite-c ms | PGlite ms | pglite-c/native | pglite-c/PGlite |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  r1, r2, tot = [], [], [0.0, 0.0, 0.0]
  for f in nat:
    a, b, c = float(nat[f]), float(pgc[f]), float(pgl[f])
    tot[0] += a; tot[1] += b; tot[2] += c
    x, y = b / a, b / c
    r1.append(x); r2.append(y)
    print(f'| {f} | {a:.1f} | {b:.1f} | {c:.1f} | {x:.2f} | {y:.2f} |')
  g = lambda r: math.exp(sum(map(math.log, r)) / len(r))
  print(f'| total | {tot[0]:.1f} | {tot[1]:.1f} | {tot[2]:.1f} | {tot[1]/tot[0]:.2f} | {tot[1]/tot[2]:.2f} |')
  print(f'| geometric mean of ratios | | | | {g(r1):.2f} | {g(r2):.2f} |')
  print()
pgl = load(sys.argv[3])
print('psql -f (one Query message per statement) for native and pglite-c; db.exec() for PGlite:')
print()
table(load(sys.argv[1]), load(sys.argv[2]), pgl)
print('Each file as ONE Query message (sql-suite-onequery.py, fresh database), as db.exec() does:')
print()
table(load(sys.argv[6]), load(sys.argv[7]), pgl)
print(f'Peak RSS (VmHWM): pglite-proxy {proxy_rss/1024:.0f} MiB, node (PGlite) {node_rss/1024:.0f} MiB')
EOF
