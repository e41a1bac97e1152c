#!/usr/bin/env python3
"""Many sessions: pglite-proxy against native PostgreSQL, side by side.

In one run, each system on a fresh database with the same durability
(default off: fsync and synchronous_commit off everywhere):

  pgbench -i -s 2, then pgbench -c 1, -c 4, -c 8 (-j 2, -T SECONDS)   tps
  pgbench -n -C -c 1 -S (a connection per transaction)                 tps
  pgbench -n -c 1 -S                                                   tps
  a new connection to its first answer (psql -c 'SELECT 1'), median    ms
  RSS and PSS of the server with 1, 10 and 50 idle sessions            MB

Native PostgreSQL is Debian's postgresql-15 (PG15_BIN) and, when built,
PostgreSQL 18 (PG18_BIN, or bench/native-pg18.sh's build); the memory of a
native server is the sum over its processes. RSS counts a shared page once
in every process (native) or mapping (pglite-c's sessions) that has it
mapped, so shared buffers count many times; PSS (the proportional set
size, /proc/PID/smaps_rollup) divides each page among those sharing it,
and sums to the memory the server really holds. Written to bench/results/ and the
terminal.

    bench/sessions.py [--seconds N] [--durability off|durable] [--no-pg18]
"""
import argparse
import datetime
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the systems, as make bench runs them)


def pgbench(sock, *args):
    p = subprocess.run(["pgbench", "-h", sock, "-U", "postgres", *args, "postgres"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        bench.die("pgbench %s: %s" % (" ".join(args), p.stdout[-500:]))
    tps = [line for line in p.stdout.splitlines() if line.startswith("tps = ")]
    return float(tps[-1].split()[2]) if tps else None


def connect_ms(sock, n=20):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["psql", "-X", "-qAt", "-h", sock, "-U", "postgres", "-d", "postgres",
                        "-c", "SELECT 1"], stdout=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def idle_sessions(sock, n):
    """n connections that have logged in and sit idle."""
    conns = []
    body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0postgres\0\0"
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(sock, ".s.PGSQL.5432"))
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        got = b""
        while not got.endswith(b"Z\0\0\0\x05I"):
            d = s.recv(65536)
            if not d:
                bench.die("an idle session was refused")
            got += d
        conns.append(s)
    return conns


def mem_mb(system):
    """(RSS, PSS) of the server in MB, summed over a native server's
    processes; PSS is None where /proc/PID/smaps_rollup cannot be read
    (another user's process, without privilege)."""
    def one(pid):
        rss = pss = None
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        try:
            with open("/proc/%s/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = int(line.split()[1])
        except OSError:
            pass
        return rss or 0, pss
    if not isinstance(system, bench.Native):
        pids = [system.proc.pid]
    else:
        p = subprocess.run(["pgrep", "-f", "-d", " ", "postgres"], stdout=subprocess.PIPE, text=True)
        pids = []
        for pid in p.stdout.split():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if system.data.encode() in cmd or b"postgres:" in cmd:
                pids.append(pid)
    rss, pss = 0, 0
    for pid in pids:
        try:
            r, q = one(pid)
        except OSError:
            continue
        rss += r
        pss = None if pss is None or q is None else pss + q
    return rss / 1024, (pss / 1024 if pss is not None else None)


def measure(system, durability, seconds):
    sock = system.start(durability)
    r = {"start (ms)": system.started}
    try:
        r["first connection (ms)"] = connect_ms(sock, 1)
        r["new connection to first answer (ms)"] = connect_ms(sock)
        for n in (1, 10, 50):
            conns = idle_sessions(sock, n)
            time.sleep(0.5)
            r["RSS, %d idle sessions (MB)" % n], r["PSS, %d idle sessions (MB)" % n] = mem_mb(system)
            for c in conns:
                c.close()
            time.sleep(0.5)
        pgbench(sock, "-i", "-q", "-s", "2")
        for c in (1, 4, 8):
            r["pgbench -c %d tps" % c] = pgbench(sock, "-c", str(c), "-j", "2", "-T", str(seconds))
        r["pgbench -n -C -c 1 -S tps"] = pgbench(sock, "-n", "-C", "-c", "1", "-S", "-T", str(seconds))
        r["pgbench -n -c 1 -S tps"] = pgbench(sock, "-n", "-c", "1", "-S", "-T", str(seconds))
    finally:
        system.stop()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--durability", default="off", choices=["off", "durable"])
    ap.add_argument("--no-pg18", action="store_true")
    a = ap.parse_args()
    systems = [bench.Native("PostgreSQL 15", bench.PG15)]
    if not a.no_pg18:
        systems.append(bench.Native("PostgreSQL 18", bench.pg18_bin()))
    systems.append(bench.Proxy())
    results = {}
    for s in systems:
        bench.log("measuring %s" % s.label)
        results[s.label] = measure(s, a.durability, a.seconds)
    keys = list(results[systems[-1].label].keys())
    ref = systems[-2].label if len(systems) > 1 else None
    head = "| measure | " + " | ".join(s.label for s in systems) + \
        (" | pglite-c / %s |" % ref if ref else " |")
    lines = ["# Many sessions, %s (durability %s, pgbench runs of %d s)" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.durability, a.seconds), "",
        head, "|" + " --- |" * (len(systems) + 1 + (1 if ref else 0))]
    for k in keys:
        vals = [results[s.label].get(k) for s in systems]
        cells = ["%.1f" % v if v is not None else "-" for v in vals]
        ratio = ""
        if ref and vals[-1] and results[ref].get(k):
            ratio = " | %.2f" % (vals[-1] / results[ref][k])
        lines.append("| %s | %s%s |" % (k, " | ".join(cells), ratio))
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(bench.HERE, "results"), exist_ok=True)
    out = os.path.join(bench.HERE, "results",
                       datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-sessions.md")
    with open(out, "w") as f:
        f.write(text)
    print(text)
    bench.log("written to %s" % out)


if __name__ == "__main__":
    main()
