#!/usr/bin/env python3
"""The profile of pglite.wasm's generated code, for its profile-guided build.

usage: train-profile.py --trainer EXE --instrumented ARCHIVE --suite-dir DIR
                        --profdata LLVM_PROFDATA --cache-dir C --out FILE

The trainer is bench/sqlsuite linked against the instrumented module
(clang -fprofile-instr-generate; cmake/PglitePgo.cmake). It runs the SQL
speed suite in-process twice, at once, each file as one message and
statement by statement, and llvm-profdata merges what it counted into FILE.

A run's counts differ a little from the last one's (timing, hash seeds),
and a profile that differs would make the optimised module miss its cache.
So the profile itself is cached, keyed by what it is trained from: the
instrumented archive's content, the suite's files and llvm-profdata's
version. A later build with the same inputs reuses it and trains nothing.
"""
import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

FORMAT = 1


def log(msg):
    print("pglite: profile: " + msg, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def suite_files(d):
    """benchmark1.sql, 2, 2.1, 3, 3.1, 4 ... in the suite's order."""
    files = []
    for p in glob.glob(os.path.join(d, "benchmark*.sql")):
        m = re.fullmatch(r"benchmark(\d+(?:\.\d+)*)\.sql", os.path.basename(p))
        if m:
            files.append((tuple(int(x) for x in m.group(1).split(".")), p))
    return [p for _, p in sorted(files)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--instrumented", required=True)
    ap.add_argument("--suite-dir", required=True)
    ap.add_argument("--profdata", required=True, help="llvm-profdata")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    files = suite_files(args.suite_dir)
    if not files:
        sys.exit("train-profile.py: no benchmark*.sql in %s" % args.suite_dir)
    version = subprocess.run([args.profdata, "merge", "--version"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    h = hashlib.sha256()
    h.update(("%d\n%s\n%s\n" % (FORMAT, version, sha256_file(args.instrumented))).encode())
    for f in files:
        h.update(("%s %s\n" % (os.path.basename(f), sha256_file(f))).encode())
    key = h.hexdigest()[:32]
    entry = os.path.join(args.cache_dir, "pglite-profile-%s.profdata" % key)
    tmp_out = args.out + ".tmp"

    if os.path.isfile(entry):
        shutil.copyfile(entry, tmp_out)
        os.replace(tmp_out, args.out)
        log("cache hit (%s)" % os.path.basename(entry))
        return

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pglite-profile-") as work:
        env = dict(os.environ, LLVM_PROFILE_FILE=os.path.join(work, "run-%p.profraw"))
        # The two runs at once (each its own temporary databases and
        # counts file): the trainer runs on one core.
        runs = [subprocess.Popen([args.trainer] + mode + files, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for mode in (["--message"], [])]
        for r in runs:
            out = r.communicate()[0]
            if r.returncode != 0:
                sys.exit("train-profile.py: the training run failed:\n" + out[-4000:])
        raws = glob.glob(os.path.join(work, "*.profraw"))
        if not raws:
            sys.exit("train-profile.py: the trainer wrote no profile (is it instrumented, "
                     "and linked with clang's profile runtime?)")
        subprocess.run([args.profdata, "merge", "-o", tmp_out] + raws, check=True)
    os.replace(tmp_out, args.out)
    log("trained on %d files in %.1f s" % (len(files), time.monotonic() - t0))
    try:
        os.makedirs(args.cache_dir, exist_ok=True)
        fd, t = tempfile.mkstemp(dir=args.cache_dir, prefix=".profile-")
        os.close(fd)
        shutil.copyfile(args.out, t)
        os.chmod(t, 0o644)
        os.replace(t, entry)
    except OSError as e:
        log("warning: not cached (%s)" % e)


if __name__ == "__main__":
    main()
