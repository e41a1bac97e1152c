#!/usr/bin/python3
"""psycopg2 (Debian python3-psycopg2) against pglite-proxy: parameters, a
transaction committed and one rolled back, an error caught and the
connection reused, NULL and bytea round trips.
Usage: psycopg2_test.py SOCKET_DIR [PORT]. Prints ok/FAIL lines; exit 1 on
a failure."""
import sys

import psycopg2
from tap import Checker

host = sys.argv[1]
port = sys.argv[2] if len(sys.argv) > 2 else "5432"
check = Checker("psycopg2")


conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres",
                        sslmode="disable", application_name="psycopg2_test")
cur = conn.cursor()
cur.execute("SELECT %s::int + %s, %s || 'x'", (40, 2, "ab"))
check("parameters", (42, "abx"), cur.fetchone())
cur.execute("SELECT current_setting('application_name')")
check("startup parameter", "psycopg2_test", cur.fetchone()[0])

cur.execute("DROP TABLE IF EXISTS py_t")
cur.execute("CREATE TABLE py_t (id int PRIMARY KEY, s text, b bytea)")
conn.commit()
cur.execute("INSERT INTO py_t VALUES (%s, %s, %s)", (1, "one", None))
conn.commit()
cur.execute("INSERT INTO py_t VALUES (%s, %s, %s)", (2, "two", None))
conn.rollback()
cur.execute("SELECT id FROM py_t ORDER BY id")
check("transaction: commit kept, rollback undone", [(1,)], cur.fetchall())
conn.commit()

try:
    cur.execute("INSERT INTO py_t VALUES (1, 'dup', NULL)")
    check("duplicate key raises", "IntegrityError", "no error")
except psycopg2.IntegrityError as e:
    check("duplicate key raises", "23505", e.pgcode)
    conn.rollback()
try:
    cur.execute("SELECT * FROM no_such_table")
    check("missing table raises", "42P01", "no error")
except psycopg2.Error as e:
    check("missing table raises", "42P01", e.pgcode)
    conn.rollback()
cur.execute("SELECT count(*) FROM py_t")
check("connection reused after errors", 1, cur.fetchone()[0])

cur.execute("SELECT %s::text IS NULL, %s::int", (None, None))
check("NULL round trip", (True, None), cur.fetchone())
blob = bytes(range(256)) * 4
cur.execute("UPDATE py_t SET b = %s WHERE id = 1", (psycopg2.Binary(blob),))
conn.commit()
cur.execute("SELECT b, length(b), s FROM py_t WHERE id = 1")
row = cur.fetchone()
check("bytea round trip", (blob, len(blob), "one"), (bytes(row[0]), row[1], row[2]))
cur.execute("SELECT s FROM py_t WHERE b IS NULL")
check("NULL stored", [], cur.fetchall())
conn.commit()

conn.autocommit = True
cur.execute("DROP TABLE py_t")
conn.close()
sys.exit(1 if check.failed else 0)
