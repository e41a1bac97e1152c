#!/usr/bin/env python3
"""gen-suite.py OUTDIR [SEED]

Write PGlite's SQL speed suite (benchmark1.sql ... benchmark16.sql, after
SQLite's speedtest) into OUTDIR: the same statements, in the same order,
with the same row counts as the suite in ../shared/bench/sql, the random
numbers drawn from a fixed seed (default 1) so every run and every machine
gets the same files. `make bench` uses ../shared/bench/sql when it exists
and this generator otherwise.

Tables t1 (1,000 rows, then 12,000), t2 and t3 (25,000 each) hold
(a, b, c): a the row number, b a random integer in [0, 100000), c b in
English words ("forty-two thousand five hundred fifty-eight").
"""
import os
import random
import sys

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
        "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
        "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
        "ninety"]


def words(n):
    """n (0 <= n < 1,000,000) in English words, as the suite spells them."""
    parts = []
    if n >= 1000:
        parts.append(words(n // 1000) + " thousand")
        n %= 1000
        if n == 0:
            return parts[0]
    if n >= 100:
        parts.append(ONES[n // 100] + " hundred")
        n %= 100
        if n == 0:
            return " ".join(parts)
    if n >= 20:
        parts.append(TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else ""))
    elif n > 0 or not parts:
        parts.append(ONES[n])
    return " ".join(parts)


def rows(rng, n):
    return [(i, b, words(b)) for i, b in ((i, rng.randrange(100000)) for i in range(1, n + 1))]


def inserts(table, rs):
    return ["INSERT INTO %s VALUES(%d, %d, '%s');" % (table, a, b, c) for a, b, c in rs]


def multirow(table, rs):
    body = ",\n".join("(%d, %d, '%s')" % r for r in rs)
    return ["INSERT INTO %s VALUES\n%s;" % (table, body)]


def suite(seed):
    rng = random.Random(seed)
    create = "CREATE TABLE %s(a INTEGER, b INTEGER, c VARCHAR(100));"
    r1, r2, r3 = rows(rng, 1000), rows(rng, 25000), rows(rng, 25000)
    files = [
        ("1", [create % "t1"] + inserts("t1", r1)),
        ("2", ["BEGIN;", create % "t2"] + inserts("t2", r2) + ["COMMIT;"]),
        ("2.1", ["BEGIN;", create % "t2_1"] + multirow("t2_1", r2) + ["COMMIT;"]),
        ("3", ["BEGIN;", create % "t3", "CREATE INDEX i3 ON t3(c);"] + inserts("t3", r3) +
         ["COMMIT;"]),
        ("3.1", ["BEGIN;", create % "t3_1", "CREATE INDEX i3_1 ON t3(c);"] +
         multirow("t3_1", r3) + ["COMMIT;"]),
        ("4", ["BEGIN;"] + ["SELECT count(*), avg(b) FROM t2 WHERE b>=%d AND b<%d;"
                            % (i * 100, i * 100 + 1000) for i in range(100)] + ["COMMIT;"]),
        ("5", ["BEGIN;"] + ["SELECT count(*), avg(b) FROM t2 WHERE c LIKE '%%%s%%';" % words(i)
                            for i in range(1, 101)] + ["COMMIT;"]),
        ("6", ["CREATE INDEX i2a ON t2(a);", "CREATE INDEX i2b ON t2(b);"]),
        ("7", ["BEGIN;"] + ["SELECT count(*), avg(b) FROM t2 WHERE b>=%d AND b<%d;"
                            % (i * 100, i * 100 + 100) for i in range(5000)] + ["COMMIT;"]),
        ("8", ["BEGIN;"] + ["UPDATE t1 SET b=b*2 WHERE a>=%d AND a<%d;" % (i * 10, i * 10 + 10)
                            for i in range(1000)] + ["COMMIT;"]),
        ("9", ["BEGIN;"] + ["UPDATE t2 SET b=%d WHERE a=%d;" % (rng.randrange(100000), i)
                            for i in range(1, 25001)] + ["COMMIT;"]),
        ("10", ["BEGIN;"] + ["UPDATE t2 SET c='%s' WHERE a=%d;" % (words(rng.randrange(100000)), i)
                             for i in range(1, 25001)] + ["COMMIT;"]),
        ("11", ["BEGIN;", "INSERT INTO t1 SELECT b,a,c FROM t2;",
                "INSERT INTO t2 SELECT b,a,c FROM t1;", "COMMIT;"]),
        ("12", ["DELETE FROM t2 WHERE c LIKE '%fifty%';"]),
        ("13", ["DELETE FROM t2 WHERE a>10 AND a<20000;"]),
        ("14", ["INSERT INTO t2 SELECT * FROM t1;"]),
        ("15", ["BEGIN;", "DELETE FROM t1;"] + inserts("t1", rows(rng, 12000)) + ["COMMIT;"]),
        ("16", ["DROP TABLE t1;", "DROP TABLE t2;", "DROP TABLE t3;"]),
    ]
    return files


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: gen-suite.py OUTDIR [SEED]")
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) == 3 else 1
    os.makedirs(out, exist_ok=True)
    for name, stmts in suite(seed):
        path = os.path.join(out, "benchmark%s.sql" % name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(stmts) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
