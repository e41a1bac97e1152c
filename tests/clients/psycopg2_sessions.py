#!/usr/bin/python3
"""psycopg2 with several connections at once, each its own session, as
against a PostgreSQL server: MVCC between open transactions, a blocked
UPDATE that completes after the holder commits, one deadlock victim,
NOWAIT and SKIP LOCKED, a SERIALIZABLE write skew refused, an idle
listener notified, and 8 threads x 100 transfer transactions that keep
the total.
Usage: psycopg2_sessions.py SOCKET_DIR [PORT]. Prints ok/FAIL lines."""
import select
import sys
import threading
import time

import psycopg2
from tap import Checker
import psycopg2.errors

host = sys.argv[1]
port = sys.argv[2] if len(sys.argv) > 2 else "5432"
check = Checker("psycopg2 sessions")


def connect(autocommit=False):
    c = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres",
                         sslmode="disable")
    c.autocommit = autocommit
    return c


def one(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    return cur.fetchone()[0] if cur.description else None


setup = connect(True)
one(setup, "DROP TABLE IF EXISTS acct, skew")
one(setup, "CREATE TABLE acct (id int PRIMARY KEY, v int)")
one(setup, "INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g")
one(setup, "CREATE TABLE skew (id int PRIMARY KEY, on_call bool)")
one(setup, "INSERT INTO skew VALUES (1, true), (2, true)")

a, b = connect(), connect()
check("two connections, two pids", True,
      one(a, "SELECT pg_backend_pid()") != one(b, "SELECT pg_backend_pid()"))
a.rollback()
b.rollback()

# MVCC
one(a, "INSERT INTO acct VALUES (11, 0)")
check("an uncommitted row is invisible to the other", 0, one(b, "SELECT count(*) FROM acct WHERE id = 11"))
b.rollback()
a.commit()
check("and visible after commit", 1, one(b, "SELECT count(*) FROM acct WHERE id = 11"))
b.rollback()

# a blocked UPDATE
one(a, "UPDATE acct SET v = v + 10 WHERE id = 1")
res = {}


def blocked():
    t0 = time.time()
    one(b, "UPDATE acct SET v = v + 1 WHERE id = 1")
    b.commit()
    res["waited"] = time.time() - t0


t = threading.Thread(target=blocked)
t.start()
time.sleep(0.5)
check("the second UPDATE waits for the first's lock", True, t.is_alive())
a.commit()
t.join(10)
check("and completes after the commit", True, not t.is_alive() and res.get("waited", 0) >= 0.4)
check("with the value both updates give", 111, one(setup, "SELECT v FROM acct WHERE id = 1"))

# a deadlock: exactly one victim
one(a, "UPDATE acct SET v = v WHERE id = 2")
one(b, "UPDATE acct SET v = v WHERE id = 3")
errs = []


def cross(conn, row):
    try:
        one(conn, "UPDATE acct SET v = v WHERE id = %s", (row,))
        conn.commit()
    except psycopg2.errors.DeadlockDetected:
        errs.append("40P01")
        conn.rollback()


t1 = threading.Thread(target=cross, args=(a, 3))
t2 = threading.Thread(target=cross, args=(b, 2))
t1.start()
time.sleep(0.2)
t2.start()
t1.join(20)
t2.join(20)
check("a two-session deadlock has exactly one 40P01", ["40P01"], errs)

# NOWAIT and SKIP LOCKED
one(a, "SELECT v FROM acct WHERE id = 4 FOR UPDATE")
try:
    one(b, "SELECT v FROM acct WHERE id = 4 FOR UPDATE NOWAIT")
    check("NOWAIT on a locked row", "55P03", "no error")
except psycopg2.errors.LockNotAvailable:
    check("NOWAIT on a locked row", "55P03", "55P03")
b.rollback()
check("SKIP LOCKED skips it", 5,
      one(b, "SELECT id FROM acct WHERE id >= 4 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"))
b.rollback()
a.rollback()

# SERIALIZABLE write skew: one of the two commits fails
for c in (a, b):
    c.set_session(isolation_level="SERIALIZABLE")
one(a, "SELECT count(*) FROM skew WHERE on_call")
one(b, "SELECT count(*) FROM skew WHERE on_call")
one(a, "UPDATE skew SET on_call = false WHERE id = 1")
one(b, "UPDATE skew SET on_call = false WHERE id = 2")
outcome = []
for c in (a, b):
    try:
        c.commit()
        outcome.append("commit")
    except psycopg2.errors.SerializationFailure:
        outcome.append("40001")
        c.rollback()
check("a SERIALIZABLE write skew: one commits, one gets 40001", ["commit", "40001"], outcome)
for c in (a, b):
    c.set_session(isolation_level="READ COMMITTED")

# an idle listener
lst = connect(True)
one(lst, "LISTEN ch")
notifier = connect(True)
npid = one(notifier, "SELECT pg_backend_pid()")
one(notifier, "NOTIFY ch, 'to an idle listener'")
got = None
if select.select([lst], [], [], 5) != ([], [], []):
    lst.poll()
    if lst.notifies:
        n = lst.notifies.pop(0)
        got = (n.channel, n.payload, n.pid)
check("an idle listener is notified, with the notifier's pid", ("ch", "to an idle listener", npid), got)

# 8 threads x 100 transfers
before = one(setup, "SELECT sum(v) FROM acct")
bad = []


def transfers(k):
    c = connect()
    try:
        for i in range(100):
            src, dst = 1 + (k + i) % 10, 1 + (k * 3 + i * 7 + 1) % 10
            if src == dst:
                dst = 1 + dst % 10
            # rows in id order, as an application avoids deadlocks
            for row, d in sorted(((src, -1), (dst, 1))):
                one(c, "UPDATE acct SET v = v + %s WHERE id = %s", (d, row))
            c.commit()
    except Exception as e:  # noqa: BLE001
        bad.append(repr(e))
    finally:
        c.close()


ts = [threading.Thread(target=transfers, args=(k,)) for k in range(8)]
for x in ts:
    x.start()
for x in ts:
    x.join(120)
check("8 threads x 100 transfers: no failure", [], bad)
check("and the total is unchanged", before, one(setup, "SELECT sum(v) FROM acct"))
sys.exit(1 if check.failed else 0)
