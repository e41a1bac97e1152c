#!/usr/bin/env bash
# pglite-proxy with real clients: psql (-c, -f, \d, \copy both ways),
# errors and reuse, client encodings, two clients at once (the second is
# served while the first holds a transaction and never sees its rolled-back
# rows), cancel, SSL/GSS refusal, startup parameters and their FATALs,
# a new session for every client, hostile input, password auth,
# max_connections, pgbench, persistence, and a clean SIGTERM.
#
#   test_proxy.sh PATH/TO/pglite-proxy PATH/TO/runtime_version.h
set -u
. "$(dirname "$0")/../support/proxy.sh"

PROXY=${1:?usage: test_proxy.sh PATH/TO/pglite-proxy PATH/TO/runtime_version.h}
# The PostgreSQL version of the pinned runtime (runtime/runtime.lock; the
# build reads it from pglite.wasm into runtime_version.h).
PG_VERSION=$(sed -n 's/^#define PGLITE_PG_VERSION "\(.*\)"$/\1/p' "${2:?runtime_version.h}")
[ -n "$PG_VERSION" ] || { echo "no PGLITE_PG_VERSION in $2"; exit 1; }
command -v psql >/dev/null || { echo "psql not found: skipped"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pglite-proxy-test-XXXXXX")
SOCK=$WORK/sock
ROOT=$WORK/data
mkdir -p "$SOCK"
PASSED=0
FAILED=0
PROXY_PID=

cleanup() {
    [ -n "$PROXY_PID" ] && kill -KILL "$PROXY_PID" 2>/dev/null
    for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ "$FAILED" -gt 0 ] && proxy_crashes "$WORK"
    if [ -n "${PGLITE_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start_proxy LOGNAME ARGS...: sets PROXY_PID and PORT
start_proxy() {
    local log=$1
    shift
    "$PROXY" --tcp 127.0.0.1:0 --unix "$SOCK" "$@" >"$WORK/$log.out" 2>"$WORK/$log.err" &
    PROXY_PID=$!
    PORT=$(proxy_port "$WORK/$log.out" "$PROXY_PID")
    if [ -z "$PORT" ]; then
        bad "pglite-proxy starts ($log)" "$(cat "$WORK/$log.err")"
        echo "$PASSED passed, $FAILED failed"
        exit 1
    fi
    export PGHOST=127.0.0.1 PGPORT=$PORT
}

# stop_proxy LOGNAME: SIGTERM, expect a clean exit
stop_proxy() {
    kill -TERM "$PROXY_PID"
    local rc=0
    wait "$PROXY_PID" || rc=$?
    PROXY_PID=
    check "SIGTERM: clean exit ($1)" 0 "$rc"
    check_has "SIGTERM: database closed ($1)" "database closed" "$(cat "$WORK/$1.err")"
    if [ -e "$SOCK/.s.PGSQL.$PORT" ]; then bad "socket file removed ($1)"; else ok "socket file removed ($1)"; fi
}

export PGUSER=postgres PGDATABASE=postgres PGCONNECT_TIMEOUT=20 PGSSLMODE=disable
unset PGPASSWORD PGOPTIONS PGSERVICE
Q() { psql -X -A -t -q "$@" 2>&1; }

# ---------------------------------------------------------------------------
start_proxy main --root "$ROOT" --startup-timeout 3
grep -q "psql 'postgresql://postgres@127.0.0.1:$PORT/postgres?sslmode=disable'" "$WORK/main.out" &&
    ok "prints the URI and the psql command" || bad "prints the URI" "$(cat "$WORK/main.out")"

check "psql -c over TCP" "42" "$(Q -c 'SELECT 40 + 2')"
check "server_version is the pinned runtime's" "$PG_VERSION" "$(Q -c 'SHOW server_version')"
check "psql -c over the Unix socket" "unix" "$(Q -h "$SOCK" -c "SELECT 'unix'")"
check "psql with a URI" "postgres|postgres" \
    "$(Q "postgresql://postgres@127.0.0.1:$PORT/postgres?sslmode=disable" -c 'SELECT current_user, current_database()')"

# psql -f: a script of 1,000 INSERTs
{
    echo "CREATE TABLE items (id int PRIMARY KEY, name text);"
    for i in $(seq 1 1000); do echo "INSERT INTO items VALUES ($i, 'item $i');"; done
} >"$WORK/inserts.sql"
out=$(psql -X -q -v ON_ERROR_STOP=1 -f "$WORK/inserts.sql" 2>&1)
check "psql -f of 1,000 INSERTs" "" "$out"
check "the 1,000 rows are there" "1000|500500" "$(Q -c 'SELECT count(*), sum(id) FROM items')"

out=$(psql -X -c '\d items' 2>&1)
check_has "\\d describes the table" '"items_pkey" PRIMARY KEY, btree (id)' "$out"

# \copy both ways
seq 1 5000 | awk '{ printf "%d\tline %d\n", $1, $1 }' >"$WORK/in.tsv"
check "\\copy from a file" "COPY 5000" "$(psql -X -c 'CREATE TABLE copied (id int, t text)' -c "\\copy copied FROM '$WORK/in.tsv'" 2>&1 | tail -1)"
check "\\copy to a file" "COPY 5000" "$(psql -X -c "\\copy copied TO '$WORK/out.tsv'" 2>&1)"
check "\\copy round trip is byte-identical" "$(md5sum <"$WORK/in.tsv")" "$(md5sum <"$WORK/out.tsv")"
check "COPY FROM STDIN, CSV, through psql" "COPY 3" \
    "$(printf '1,a\n2,b\n3,c\n' | psql -X -c 'COPY copied FROM STDIN (FORMAT csv)' 2>&1)"
out=$(printf '1\tx\nnot a number\tz\n' | psql -X -c 'COPY copied FROM STDIN' 2>&1)
check_has "a bad COPY row is an error" "invalid input syntax for type integer" "$out"
check "the failed COPY left nothing" "5003" "$(Q -c 'SELECT count(*) FROM copied')"

# an error, then the same session goes on
out=$(psql -X -A -t -c 'SELECT 1/0' -c "SELECT 'reused'" 2>&1)
check_has "an error is reported" "division by zero" "$out"
check_has "the session is reused after the error" "reused" "$out"
out=$(psql -X -A -t -q 2>&1 <<'EOF'
BEGIN;
SELECT nope;
SELECT 1;
ROLLBACK;
SELECT 'after rollback';
EOF
)
check_has "a failed transaction reports 25P02" "current transaction is aborted" "$out"
check_has "and recovers after ROLLBACK" "after rollback" "$out"

# client encodings: rows come back converted (日本 in EUC_JP and SJIS, Łódź
# in LATIN2); an ERROR whose message the client's encoding cannot hold
# (it quotes €) is PostgreSQL's 22P05, the session and the server go on
hex() { od -An -tx1 | tr -d ' \n'; }
check "SET client_encoding TO EUC_JP, then a row in EUC_JP" "c6fccbdc0a" \
    "$(Q -c "SET client_encoding TO 'EUC_JP'" -c "SELECT U&'\\65E5\\672C'" | hex)"
check "PGCLIENTENCODING=SJIS: a row in SJIS" "534a49530a93fa967b0a" \
    "$(PGCLIENTENCODING=SJIS Q -c 'SHOW client_encoding' -c "SELECT U&'\\65E5\\672C'" | hex)"
check "SET client_encoding TO LATIN2: a row in LATIN2" "a3f364bc0a" \
    "$(Q -c "SET client_encoding TO 'LATIN2'" -c "SELECT U&'\\0141\\00f3d\\017a'" | hex)"
check "and the client's LATIN2 bytes reach the server as UTF-8" "c581c3b364c5ba" \
    "$(Q -c "SET client_encoding TO 'LATIN2'" -c $'SELECT encode(convert_to(\'\xa3\xf3d\xbc\', \'UTF8\'), \'hex\')')"
out=$(Q -c "SET client_encoding TO 'LATIN1'" -c "SELECT (U&'\\20AC')::int" -c "SELECT 'still here'")
check_has "an unconvertible error message is PostgreSQL's 22P05" \
    'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"' "$out"
check_has "and the session goes on" "still here" "$out"
check "the server goes on" "up" "$(Q -c "SELECT 'up'")"

# PostgreSQL's defaults and limits hold for a client of the proxy too
check "allow_system_table_mods is off" "off" "$(Q -c 'SHOW allow_system_table_mods')"
check_has "a system catalog cannot be altered" \
    'ERROR:  42501: permission denied: "pg_class" is a system catalog' \
    "$(psql -X -q -v VERBOSITY=verbose -c 'ALTER TABLE pg_class ALTER relname DROP NOT NULL' 2>&1)"
out=$(psql -X -A -t -q -v VERBOSITY=verbose 2>&1 <<'EOF'
SELECT repeat('[', 20000000)::json;
SELECT 'json survived';
SET max_stack_depth = '100kB';
SELECT repeat('[', 10000)::jsonb;
SELECT 'jsonb survived';
EOF
)
check_has "SET max_stack_depth and deep JSON in one Query message: 54001" \
    "ERROR:  54001: stack depth limit exceeded" \
    "$(psql -X -q -v VERBOSITY=verbose -c "SET max_stack_depth = '100kB'; SELECT repeat('[', 10000)::json" 2>&1)"
check "deep JSON is ERROR 54001, twice, and the connection goes on" \
    "2|json survived|jsonb survived" \
    "$(printf '%s\n' "$out" | grep -c '^ERROR:  54001: stack depth limit exceeded')|$(printf '%s\n' "$out" | grep -v -e '^ERROR' -e '^HINT' -e '^LOCATION' | paste -sd'|')"

# startup parameters, applied as PostgreSQL applies them
out=$(PGOPTIONS="-c search_path=foo,public --work-mem=7MB" PGTZ=Europe/Paris PGDATESTYLE=German PGAPPNAME=myapp \
    Q -c 'SHOW search_path' -c 'SHOW work_mem' -c 'SHOW TimeZone' -c 'SHOW DateStyle' -c 'SHOW application_name')
check "startup parameters (PGOPTIONS, PGTZ, PGDATESTYLE, PGAPPNAME)" \
    "$(printf 'foo,public\n7MB\nEurope/Paris\nGerman, DMY\nmyapp')" "$out"
out=$(PGOPTIONS="-c TimeZone=Mars/Olympus" Q -c 'SELECT 1')
check_has "an invalid startup parameter is PostgreSQL's FATAL" 'FATAL:  invalid value for parameter "TimeZone": "Mars/Olympus"' "$out"
out=$(PGOPTIONS="-c no_such_setting=1" Q -c 'SELECT 1')
check_has "an unknown startup parameter is FATAL" 'unrecognized configuration parameter "no_such_setting"' "$out"
check_has "a missing database is FATAL 3D000" 'FATAL:  database "nodb" does not exist' "$(Q -d nodb -c 'SELECT 1')"
check_has "a missing role is FATAL 28000" 'FATAL:  role "nobody" does not exist' "$(Q -U nobody -c 'SELECT 1')"
Q -c "CREATE ROLE alice LOGIN" >/dev/null
check "another existing role logs in" "alice|alice|off" "$(Q -U alice -c 'SELECT current_user, session_user, current_setting($$is_superuser$$)')"
check "another database, in a session of its own" "template1" "$(Q -d template1 -c 'SELECT current_database()')"
check_has "a non-superuser cannot become one: 42501" 'permission denied to set session authorization "postgres"' \
    "$(Q -U alice -c 'SET SESSION AUTHORIZATION postgres')"
check "RESET SESSION AUTHORIZATION returns to the login role" "alice|postgres" \
    "$(Q -c 'SET SESSION AUTHORIZATION alice' -c 'SELECT current_user' -c 'RESET SESSION AUTHORIZATION' -c 'SELECT current_user' | paste -sd'|')"
check "psql \\c is a new session, in another database" "template1|t" \
    "$(printf '%s\n' 'SELECT pg_backend_pid() AS p \gset' '\c template1' \
        'SELECT current_database(), pg_backend_pid() <> :p;' | Q)"
check "and back" "postgres|1000" "$(Q -c 'SELECT current_database(), count(*) FROM items')"

# the next client gets a session of its own: nothing of the last one
Q -c 'CREATE TEMP TABLE tmp1 (a int)' -c 'PREPARE p1 AS SELECT 1' -c 'SET work_mem = $$9MB$$' \
  -c 'LISTEN chan' -c 'BEGIN' -c 'INSERT INTO items VALUES (-1, $$left open$$)' >/dev/null
out=$(Q -c "SELECT count(*) FROM pg_class WHERE relname = 'tmp1'" -c 'SELECT count(*) FROM pg_prepared_statements' \
    -c 'SHOW work_mem' -c 'SELECT count(*) FROM pg_listening_channels()' -c 'SELECT count(*) FROM items WHERE id = -1')
check "a new client sees nothing of the last one's session" "$(printf '0\n0\n4MB\n0\n0')" "$out"

# cancel: psql sends a CancelRequest on SIGINT
psql -X -c 'SELECT pg_sleep(30)' >"$WORK/cancel.out" 2>&1 &
cpid=$!
sleep 1.5
kill -INT $cpid
wait $cpid
check_has "CancelRequest cancels the running statement" "canceling statement due to user request" "$(cat "$WORK/cancel.out")"
check "the next client is served after the cancel" "next" "$(Q -c "SELECT 'next'")"

# CREATE and DROP DATABASE with other sessions connected: every backend
# absorbs DROP's ProcSignalBarrier, idle ones too; a database in use is
# refused (55006), WITH (FORCE) ends its sessions
Q -c 'CREATE DATABASE dropme' -c 'CREATE DATABASE dropme2' >/dev/null
QT() { timeout 20 psql -X -A -t -q "$@" 2>&1; } # (a hang is a failure, not the test's end)
start=$(date +%s)
check "DROP DATABASE while other sessions are idle" "0" \
    "$(QT -c 'DROP DATABASE dropme' -c "SELECT count(*) FROM pg_database WHERE datname = 'dropme'")"
check "... at once" "1" "$(( $(date +%s) - start <= 5 ? 1 : 0 ))"
mkfifo "$WORK/fifo4"
psql -X -A -t -q -d dropme2 <"$WORK/fifo4" >"$WORK/e.out" 2>&1 &
epid=$!
exec 6>"$WORK/fifo4"
echo "SELECT 'E in';" >&6
for _ in $(seq 100); do grep -q 'E in' "$WORK/e.out" && break; sleep 0.1; done
check_has "a database in use is refused" "is being accessed by other users" "$(QT -c 'DROP DATABASE dropme2')"
check "WITH (FORCE) ends its sessions and drops it" "0" \
    "$(QT -c 'DROP DATABASE dropme2 WITH (FORCE)' -c "SELECT count(*) FROM pg_database WHERE datname = 'dropme2'")"
exec 6>&-
wait $epid 2>/dev/null

# a client that goes away mid-statement: its statement is cancelled and its
# session ends at once, letting go of its row lock (as PostgreSQL's
# client_connection_check_interval)
Q -c 'CREATE TABLE gone (id int PRIMARY KEY, v int)' -c 'INSERT INTO gone VALUES (1, 0)' >/dev/null
echo "BEGIN; UPDATE gone SET v = 1 WHERE id = 1; SELECT pg_sleep(60);" | psql -X -q >/dev/null 2>&1 &
gpid=$!
for _ in $(seq 50); do
    [ "$(Q -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'")" = 1 ] && break
    sleep 0.1
done
kill -KILL $gpid
wait $gpid 2>/dev/null
start=$(date +%s)
check "the row it held is free at once" "2" \
    "$(Q -c "SET lock_timeout = '10s'" -c 'UPDATE gone SET v = 2 WHERE id = 1 RETURNING v')"
check "within seconds, not the 60 s of its statement" "1" "$(( $(date +%s) - start <= 5 ? 1 : 0 ))"

# SSL and GSS encryption requests are answered 'N'
check "sslmode=prefer works (SSLRequest answered N)" "plain" "$(PGSSLMODE=prefer Q -c "SELECT 'plain'")"
check_has "sslmode=require is refused" "server does not support SSL" "$(PGSSLMODE=require Q -c 'SELECT 1')"
check "gssencmode=prefer works" "plain" "$(PGGSSENCMODE=prefer Q -c "SELECT 'plain'")"

# two clients at once, each its own session: the second is served while the
# first holds a transaction, and does not see the rows the first has not
# committed; the first's rows are gone when it is killed
mkfifo "$WORK/fifo"
psql -X -A -t -q <"$WORK/fifo" >"$WORK/a.out" 2>&1 &
apid=$!
exec 3>"$WORK/fifo"
echo "BEGIN; INSERT INTO items SELECT g, 'uncommitted' FROM generate_series(2001, 2100) g; SELECT 'A holds';" >&3
for _ in $(seq 100); do grep -q 'A holds' "$WORK/a.out" && break; sleep 0.1; done
check "client A is in its transaction" "A holds" "$(cat "$WORK/a.out")"
check "client B is served meanwhile and sees none of A's uncommitted rows" "B sees|0" \
    "$(timeout 10 psql -X -A -t -q \
        -c "SELECT 'B sees', count(*) FROM items WHERE id > 2000" 2>&1)"
check "A and this client are two sessions with pids of their own" "2" \
    "$(Q -c "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE backend_type = 'client backend'")"
# top -H, gdb and perf tell the proxy's threads apart by name: A's session
# has a thread of its own, next to the listener's
check "the proxy's threads are named" "pglite-listen|pglite-session" \
    "$(cat /proc/"$PROXY_PID"/task/*/comm 2>/dev/null | grep -E '^pglite-(listen|session)$' | sort -u | paste -sd'|')"
kill -KILL $apid
wait $apid 2>/dev/null
exec 3>&-
check "A's rows are gone after A is killed" "0" "$(Q -c "SELECT count(*) FROM items WHERE id > 2000")"

# a session thread whose client has gone serves the next client: 20
# clients one after the other leave at most 4 threads waiting (the
# server's SERVER_IDLE_WORKERS), each client still a session of its own
pids=""
for _ in $(seq 20); do pids="$pids $(Q -c 'SELECT pg_backend_pid()')"; done
check "20 clients one after the other are 20 sessions" "20" \
    "$(echo $pids | tr ' ' '\n' | sort -u | wc -l)"
sleep 0.2
nthreads=$(grep -cx pglite-session /proc/"$PROXY_PID"/task/*/comm 2>/dev/null | awk -F: '{n += $2} END {print n + 0}')
check "20 clients one after the other leave 1 to 4 session threads" "yes" \
    "$([ "$nthreads" -ge 1 ] && [ "$nthreads" -le 4 ] && echo yes || echo "no: $nthreads")"

# hostile input: garbage, bad lengths, unknown types, slowloris, protocol
# negotiation; then the server still serves psql
if command -v python3 >/dev/null; then
    out=$(python3 - "$PORT" 2>&1 <<'EOF'
import socket, struct, sys, time
port = int(sys.argv[1])
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=10)
def read(s, t=10):
    s.settimeout(t); out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: return out
            out += d
    except (socket.timeout, ConnectionResetError):
        return out + b"<no close>"
def startup(params, minor=0):
    body = struct.pack("!I", (3 << 16) | minor)
    for k, v in params: body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body
def msgs(data):
    out = []; i = 0
    while i + 5 <= len(data) and not data[i:].startswith(b"<no close>"):
        l = struct.unpack("!I", data[i+1:i+5])[0]
        out.append((chr(data[i]), data[i+5:i+1+l])); i += 1 + l
    return out
def err(data):
    for t, b in msgs(data):
        if t == 'E':
            f = dict((x[:1].decode(), x[1:].decode()) for x in b.split(b"\0") if x)
            return f.get("S", "") + " " + f.get("C", "") + " " + f.get("M", "")
    return "no error: %r" % data[:60]
def session():
    s = conn(); s.sendall(startup([("user", "postgres")]))
    d = b""
    while not d.endswith(b"Z\0\0\0\x05I"):
        c = s.recv(4096)
        if not c: break
        d += c
    return s
# a startup length PostgreSQL refuses: closed with no reply, as PostgreSQL does
s = conn(); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); print("garbage:", repr(read(s)))
s = conn(); s.sendall(struct.pack("!I", 1 << 30) + b"xxxx"); print("huge startup length:", repr(read(s)))
s = conn(); s.sendall(b"X\0\0\0\4"); print("Terminate first:", repr(read(s)))
s = conn(); s.sendall(b"\0\0\0\4"); print("startup length 4:", repr(read(s)))
s = conn(); s.sendall(b"\0\0\0\7\0\3\0"); print("startup length 7:", repr(read(s)))
s = conn(); s.sendall(struct.pack("!II", 8, 80877103)); n = s.recv(1)
s.sendall(b"X\0\0\0\4"); print("Terminate after N:", repr(n + read(s)))
s = conn(); s.sendall(struct.pack("!IIII", 16, 80877103, 0, 0)); n = s.recv(1)
s.sendall(startup([("user", "postgres")]))
print("a 16-byte SSLRequest:", n, [t for t, b in msgs(read(s, 1))][-1:]); s.close()
s = conn(); s.sendall(struct.pack("!II", 8, 2 << 16)); print("protocol 2:", err(read(s)))
s = conn(); s.sendall(struct.pack("!II", 8, 80877103) + b"junk"); print("data after SSLRequest:", err(read(s)))
s = conn(); s.sendall(startup([("user", "postgres"), ("_pq_.x", "1")], 9))
m = msgs(read(s, 1)); s.close(); print("3.9 negotiation:", [b for t, b in m if t == 'v'], [t for t, b in m][-1:])
s = conn(); s.sendall(startup([("user", "postgres")], 2))
m = msgs(read(s, 1)); s.close(); print("3.2 key length:", [len(b) for t, b in m if t == 'K'])
for name, payload in [("unknown message type", b"?\0\0\0\4"),
                      ("1 GB length", b"Q\x40\0\0\0"),
                      ("2 GB length", b"Q\x7f\xff\xff\xff"),
                      ("length below 4", b"Q\0\0\0\2"),
                      ("oversized Sync", b"S\0\1\0\0" + b"x" * 16),
                      ("password message after startup", b"p\0\0\0\5\0")]:
    s = session(); s.sendall(payload); print(name + ":", err(read(s))); s.close()
# truncated messages and clients that vanish mid-message
s = session(); s.sendall(b"Q\0\0\1\0SELECT"); s.close()
s = session(); s.sendall(b"Q\x3f\0\0\0" + b"x" * 200000); s.close()
s = session(); s.sendall(b"P\0\0\0\x10\0SELECT 1\0"); s.close()
# COPY FROM STDIN, the client vanishes in the middle
s = session(); s.sendall(b"Q" + struct.pack("!I", 4 + 23) + b"COPY copied FROM STDIN\0")
time.sleep(0.3); s.sendall(b"d\0\0\0\x0b" + b"9\tgone\n"); time.sleep(0.2); s.close()
# slowloris: half a startup packet, then nothing
s = conn(); s.sendall(b"\0\0"); t = time.time(); r = read(s, 30)
print("slowloris closed after the startup timeout:", 1.5 < time.time() - t < 10, err(r))
# random bytes
import random
random.seed(6)
for i in range(50):
    s = conn(); s.sendall(bytes(random.getrandbits(8) for _ in range(random.randint(1, 300)))); s.close()
for i in range(50):
    s = session(); s.sendall(bytes(random.getrandbits(8) for _ in range(random.randint(1, 300)))); s.close()
s = session(); s.sendall(b"Q" + struct.pack("!I", 4 + 9) + b"SELECT 7\0")
print("a normal client afterwards:", [b for t, b in msgs(read(s, 2)) if t == 'D'])
EOF
)
    echo "$out" | sed 's/^/       /'
    check_has "garbage before the startup packet: closed, no reply" "garbage: b''" "$out"
    check_has "a 1 GB startup length: closed, no reply" "huge startup length: b''" "$out"
    check_has "Terminate as the first packet: closed, no reply" "Terminate first: b''" "$out"
    check_has "a startup length of 4: closed, no reply" "startup length 4: b''" "$out"
    check_has "a startup length of 7: closed, no reply" "startup length 7: b''" "$out"
    check_has "Terminate after SSLRequest's N: closed, no other reply" "Terminate after N: b'N'" "$out"
    check_has "an SSLRequest longer than 8 bytes is answered as PostgreSQL does" "a 16-byte SSLRequest: b'N' ['Z']" "$out"
    check_has "protocol 2: FATAL 0A000" "protocol 2: FATAL 0A000" "$out"
    check_has "data pipelined after SSLRequest: FATAL 08P01" "data after SSLRequest: FATAL 08P01" "$out"
    check_has "protocol 3.9 gets NegotiateProtocolVersion 3.2" "3.9 negotiation: [b'\\x00\\x03\\x00\\x02\\x00\\x00\\x00\\x01_pq_.x\\x00'] ['Z']" "$out"
    check_has "protocol 3.2 gets a 32-byte cancel key" "3.2 key length: [36]" "$out"
    check_has "an unknown message type: FATAL 08P01" "unknown message type: FATAL 08P01 invalid frontend message type 63" "$out"
    check_has "a 1 GB length field: FATAL 08P01" "1 GB length: FATAL 08P01" "$out"
    check_has "a 2 GB length field: FATAL 08P01" "2 GB length: FATAL 08P01" "$out"
    check_has "a length below 4: FATAL 08P01" "length below 4: FATAL 08P01" "$out"
    check_has "an oversized Sync: FATAL 08P01" "oversized Sync: FATAL 08P01" "$out"
    check_has "a PasswordMessage after startup: FATAL 08P01" "password message after startup: FATAL 08P01" "$out"
    check_has "a slowloris client is closed after the startup timeout" "slowloris closed after the startup timeout: True FATAL 08P01" "$out"
    check_has "the server still answers afterwards" "a normal client afterwards: [b'\\x00\\x01\\x00\\x00\\x00\\x017']" "$out"
else
    bad "python3 for the hostile-input tests"
fi
check "psql is served after the hostile clients" "still here|5003" "$(Q -c "SELECT 'still here', count(*) FROM copied")"

# pgbench: -i uses COPY FROM STDIN; then 500 transactions
if command -v pgbench >/dev/null; then
    out=$(pgbench -i -s 2 2>&1)
    check_has "pgbench -i -s 2" "done in" "$out"
    check "pgbench_accounts has 200,000 rows" "200000|2|20" \
        "$(Q -c 'SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers)')"
    out=$(pgbench -c 1 -t 500 2>&1)
    check_has "pgbench -c 1 -t 500" "number of transactions actually processed: 500/500" "$out"
    check "pgbench_history has 500 rows" "500" "$(Q -c 'SELECT count(*) FROM pgbench_history')"
    out=$(pgbench -c 1 -t 200 -M prepared 2>&1)
    check_has "pgbench -M prepared (extended protocol)" "number of transactions actually processed: 200/200" "$out"
    check "the balances add up" "t" \
        "$(Q -c 'SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches) AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(bbalance) FROM pgbench_branches)')"
else
    echo "skip - pgbench not installed"
fi

grep -q "connected as user postgres to database postgres, application psql" "$WORK/main.err" &&
    ok "connects are logged" || bad "connects are logged"
grep -q "disconnected after" "$WORK/main.err" && ok "disconnects are logged" || bad "disconnects are logged"

# SIGTERM while a client holds a transaction: rolled back, clean exit
mkfifo "$WORK/fifo2"
psql -X -A -t -q <"$WORK/fifo2" >"$WORK/c.out" 2>&1 &
cpid=$!
exec 4>"$WORK/fifo2"
echo "BEGIN; INSERT INTO items VALUES (-7, 'at shutdown'); SELECT 'C holds';" >&4
for _ in $(seq 100); do grep -q 'C holds' "$WORK/c.out" && break; sleep 0.1; done
stop_proxy main
echo "SELECT 'after the shutdown';" >&4
exec 4>&-
wait $cpid 2>/dev/null
case "$(cat "$WORK/c.out")" in
*"terminating connection due to administrator command"* | *"server closed the connection"*)
    ok "the client in a transaction is cut off at the shutdown" ;;
*) bad "the client in a transaction is cut off at the shutdown" "$(cat "$WORK/c.out")" ;;
esac

# ---------------------------------------------------------------------------
# persistence, passwords and max_connections: the same data directory
start_proxy auth --root "$ROOT" --password 's3cret pw' -c max_connections=4
check "the data survived the restart" "1000|0" "$(PGPASSWORD='s3cret pw' Q -c 'SELECT count(*), count(*) FILTER (WHERE id < 0) FROM items')"
check "SCRAM-SHA-256 with the right password" "scram" "$(PGPASSWORD='s3cret pw' Q -c "SELECT 'scram'")"
check_has "a wrong password is FATAL 28P01" 'password authentication failed for user "postgres"' "$(PGPASSWORD=nope Q -c 'SELECT 1')"
check_has "no password is refused" "no password supplied" "$(Q -w -c 'SELECT 1')"
# Four backend slots: the cluster's first backend and three clients at
# once; a fourth client is refused as PostgreSQL refuses it.
# One at a time, each in its pg_sleep (its log line) before the next, so
# that no probe takes a slot one of them wanted.
sleepers=""
for i in 1 2 3; do
    before=$(grep -c 'application psql (pid' "$WORK/auth.err")
    PGPASSWORD='s3cret pw' Q -c "SELECT 'slept', pg_sleep(4)" >"$WORK/sleep$i.out" &
    sleepers="$sleepers $!"
    for _ in $(seq 100); do
        [ "$(grep -c 'application psql (pid' "$WORK/auth.err")" -gt "$before" ] && break
        sleep 0.05
    done
done
sleep 0.3
out=$(PGPASSWORD='s3cret pw' Q -c 'SELECT 1')
check_has "past max_connections: FATAL 53300" "sorry, too many clients already" "$out"
wait $sleepers
check "the three clients were served at once" "$(printf 'slept|\nslept|\nslept|')" \
    "$(cat "$WORK/sleep1.out" "$WORK/sleep2.out" "$WORK/sleep3.out")"
check "a client is served again once one has gone" "1" "$(PGPASSWORD='s3cret pw' Q -c 'SELECT 1')"
stop_proxy auth

start_proxy roles --root "$ROOT" --password 's3cret pw'
# Every role logs in with its own password, as pg_authid keeps it
# (PostgreSQL made the secrets, SASLprep included).
PGPASSWORD='s3cret pw' Q -c "CREATE ROLE bob LOGIN PASSWORD 'bob pw'; CREATE ROLE nopw LOGIN;
    CREATE ROLE uni LOGIN PASSWORD 'ﬁsh Ⅸ';
    CREATE ROLE expired LOGIN PASSWORD 'x' VALID UNTIL '2000-01-01';
    SET password_encryption = 'md5'; CREATE ROLE oldmd5 LOGIN PASSWORD 'md5pw'" >/dev/null
R() { local u=$1 pw=$2; shift 2; PGPASSWORD="$pw" Q -U "$u" -d postgres "$@"; }
check "a role logs in with its own password" "bob" "$(R bob 'bob pw' -c 'SELECT current_user')"
check_has "not with another role's" 'password authentication failed for user "bob"' "$(R bob 's3cret pw' -c 'SELECT 1')"
check_has "a role without a password cannot log in" 'password authentication failed for user "nopw"' "$(R nopw x -c 'SELECT 1')"
check_has "nor one whose password expired" 'password authentication failed for user "expired"' "$(R expired x -c 'SELECT 1')"
check_has "a role that does not exist: the same answer" 'password authentication failed for user "ghost"' "$(R ghost x -c 'SELECT 1')"
check "a non-ASCII password" "uni" "$(R uni 'ﬁsh Ⅸ' -c 'SELECT current_user')"
check "SASLprep: its normalised form is the same password" "uni" "$(R uni 'fish IX' -c 'SELECT current_user')"
check_has "an md5 secret does not do for SCRAM" 'password authentication failed for user "oldmd5"' "$(R oldmd5 md5pw -c 'SELECT 1')"
R bob 'bob pw' -c "ALTER ROLE bob PASSWORD 'newer'" >/dev/null
check "a changed password counts at the next login" "bob" "$(R bob newer -c 'SELECT current_user')"
check_has "and the old one no longer" 'password authentication failed' "$(R bob 'bob pw' -c 'SELECT 1')"
stop_proxy roles

for m in md5 password; do
    start_proxy $m --root "$ROOT" --password pw --auth-method $m
    check "$m authentication" "$m" "$(PGPASSWORD=pw Q -c "SELECT '$m'")"
    check_has "$m with a wrong password" "password authentication failed" "$(PGPASSWORD=px Q -c 'SELECT 1')"
    check "$m with a role's md5 secret" "oldmd5" "$(R oldmd5 md5pw -c 'SELECT current_user')"
    check "$m with a role's SCRAM secret" "bob" "$(R bob newer -c 'SELECT current_user')"
    stop_proxy $m
done

# a second server on the same directory is refused
start_proxy lock1 --root "$ROOT"
out=$("$PROXY" --root "$ROOT" --tcp 127.0.0.1:0 --no-unix 2>&1)
check_has "a data directory in use is refused" "is in use by process" "$out"
stop_proxy lock1

# Where --tcp listens: an empty host is loopback only; trust on any other
# address is refused with the reason, unless asked for by --trust-remote.
# listen_addrs PORT: the local addresses in LISTEN on PORT (from /proc).
listen_addrs() {
    python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
out = []
for name, fam in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
    try:
        lines = open(name).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        addr, p = f[1].split(":")
        if int(p, 16) != port or f[3] != "0A":
            continue
        raw = bytes.fromhex(addr)
        # /proc prints each 32-bit word in host order
        raw = b"".join(struct.pack("=I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
        out.append(socket.inet_ntop(fam, raw))
print(" ".join(sorted(out)))
PY
}
start_proxy anyhost --root "$ROOT" --tcp :0
check "--tcp :PORT listens on loopback only" "127.0.0.1" "$(listen_addrs "$PORT")"
check "--tcp :PORT serves" "1" "$(Q -c 'SELECT 1')"
stop_proxy anyhost
rc=0
out=$("$PROXY" --temporary --tcp 0.0.0.0:0 --no-unix 2>&1) || rc=$?
check "--tcp 0.0.0.0:PORT without a password exits non-zero" "1" "$rc"
check_has "... saying why" "refusing to listen on 0.0.0.0:0 with trust authentication" "$out"
check_has "... and how to ask for it" "--trust-remote" "$out"
rc=0
out=$("$PROXY" --temporary --tcp '[::]:0' --no-unix 2>&1) || rc=$?
check "--tcp [::]:PORT without a password exits non-zero" "1" "$rc"
start_proxy anyaddr --root "$ROOT" --tcp 0.0.0.0:0 --trust-remote
check "--trust-remote allows 0.0.0.0" "0.0.0.0" "$(listen_addrs "$PORT")"
stop_proxy anyaddr
start_proxy anypw --root "$ROOT" --tcp 0.0.0.0:0 --password pw
check "a password allows 0.0.0.0" "pw" "$(PGPASSWORD=pw Q -c "SELECT 'pw'")"
stop_proxy anypw
rc=0
out=$("$PROXY" --temporary --tcp 127.0.0.1:99999 2>&1) || rc=$?
check "--tcp with a bad port is a usage error" "2" "$rc"
check_has "... naming the argument" '"127.0.0.1:99999" is not HOST:PORT' "$out"

# TLS: a test certificate for localhost and 127.0.0.1
if command -v openssl >/dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
        -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        >"$WORK/openssl.log" 2>&1; then
    chmod 600 "$WORK/key.pem"
    start_proxy tls --root "$ROOT" --ssl-cert "$WORK/cert.pem" --ssl-key "$WORK/key.pem"
    TLS="host=localhost port=$PORT sslrootcert=$WORK/cert.pem"
    check "sslmode=verify-full connects over TCP" "tls" "$(Q "$TLS sslmode=verify-full" -c "SELECT 'tls'")"
    check_has "... and the connection is encrypted" "SSL connection (protocol: TLS" \
        "$(psql -X "$TLS sslmode=verify-full" -c '\conninfo' 2>&1)"
    check "sslmode=require connects" "required" "$(Q "$TLS sslmode=require" -c "SELECT 'required'")"
    check "a large result over TLS" "200000|21088895" "$(Q "$TLS sslmode=verify-full" \
        -c "SELECT count(*), sum(length(x)) FROM (SELECT repeat('x', 100) || g AS x FROM generate_series(1, 200000) g) s")"
    check "COPY TO STDOUT over TLS" "100000" "$(Q "$TLS sslmode=verify-full" \
        -c "COPY (SELECT g, repeat('z', 50) FROM generate_series(1, 100000) g) TO STDOUT" | wc -l)"
    check "verify-full refuses a certificate for another name" "1" \
        "$(Q "host=db.invalid hostaddr=127.0.0.1 port=$PORT sslrootcert=$WORK/cert.pem sslmode=verify-full" -c 'SELECT 1' | grep -c 'does not match host name')"
    check "sslmode=disable still connects" "plain" "$(Q "$TLS sslmode=disable" -c "SELECT 'plain'")"
    check "the Unix socket stays plain (SSLRequest answered N there)" "unix" \
        "$(PGSSLMODE=prefer Q -h "$SOCK" -c "SELECT 'unix'")"
    out=$(python3 - "$PORT" "$WORK/cert.pem" <<'PY' 2>&1
import socket, ssl, struct, sys
port, ca = int(sys.argv[1]), sys.argv[2]
body = struct.pack("!I", 3 << 16) + b"user\0postgres\0\0"
pkt = struct.pack("!I", len(body) + 4) + body
for alpn in (["postgresql"], None, ["http/1.1"]):
    ctx = ssl.create_default_context(cafile=ca)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(pkt)
        d = b""
        while not d.endswith(b"Z\0\0\0\x05I"):
            c = t.recv(4096)
            if not c:
                break
            d += c
        print("direct", alpn, "ready" if d.endswith(b"Z\0\0\0\x05I") else "closed")
    except (ssl.SSLError, OSError):
        print("direct", alpn, "refused")
PY
)
    check_has "direct SSL with ALPN postgresql (sslnegotiation=direct)" "direct ['postgresql'] ready" "$out"
    check_has "direct SSL without ALPN is closed" "direct None closed" "$out"
    check_has "direct SSL with another ALPN is refused" "direct ['http/1.1'] refused" "$out"
    stop_proxy tls
else
    bad "openssl for a test certificate" "$(cat "$WORK/openssl.log" 2>/dev/null)"
fi
rc=0
out=$("$PROXY" --temporary --ssl-cert "$WORK/none.pem" --ssl-key "$WORK/none.pem" 2>&1) || rc=$?
check "a missing certificate file: exit 1" "1" "$rc"
check_has "... naming it" "could not load server certificate file \"$WORK/none.pem\"" "$out"

# --ssl-self-signed: a pair made in the data directory, verified by psql
SSROOT=$WORK/selfsigned
start_proxy self --root "$SSROOT" --ssl-self-signed
check_has "--ssl-self-signed prints where the certificate is" "sslrootcert=$SSROOT/server.crt" \
    "$(cat "$WORK/self.out")"
check "a self-signed pair verifies with sslmode=verify-full" "t" \
    "$(Q "host=localhost port=$PORT sslmode=verify-full sslrootcert=$SSROOT/server.crt" \
         -c "SELECT true")"
check "... its key is private to the owner" "600" "$(stat -c %a "$SSROOT/server.key")"
stop_proxy self
first=$(md5sum <"$SSROOT/server.crt")
start_proxy self2 --root "$SSROOT" --ssl-self-signed
check "the next start keeps the pair" "$first" "$(md5sum <"$SSROOT/server.crt")"
stop_proxy self2
rc=0
out=$("$PROXY" --temporary --ssl-self-signed 2>&1) || rc=$?
check "--ssl-self-signed needs --root: usage error" "2" "$rc"

# shared_preload_libraries: every client's session has the libraries the
# cluster loaded before its shared memory was made (each one's first
# statement trapped before); pg_stat_statements counts the statements of
# all of them in one table.
start_proxy preload --temporary -c shared_preload_libraries=pg_stat_statements
check "preload: a client runs CREATE EXTENSION pg_stat_statements" "" \
    "$(Q -c "CREATE EXTENSION pg_stat_statements")"
for i in 1 2 3; do Q -c "SELECT 'counted'" >/dev/null; done
check "preload: three clients' statements in one shared table" "3" \
    "$(Q -c "SELECT calls FROM pg_stat_statements WHERE query = 'SELECT \$1'")"
stop_proxy preload

out=$("$PROXY" --help)
check_has "--help" "--postgres-config NAME=VALUE" "$out"
check_has "--version" "PostgreSQL $PG_VERSION" "$("$PROXY" --version)"
check "an unknown option is a usage error" "2" "$("$PROXY" --bogus >/dev/null 2>&1; echo $?)"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
