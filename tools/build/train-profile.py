#!/usr/bin/env python3
"""The profile of pglite.wasm's generated code, for its profile-guided build.

usage: train-profile.py --suite-dir DIR --profdata LLVM_PROFDATA --cache-dir C
                        --instrumented ARCHIVE --out FILE
                        ::build-module:: CMD... ::objcopy:: CMD... ::link:: CMD...
       train-profile.py ... --instrument-only STAMP ::build-module:: CMD...
                        [::optimised:: CMD...]

CMD after ::build-module:: builds the instrumented module (build-module.py
--profile-generate, clang -fprofile-instr-generate) into ARCHIVE; after
::objcopy::, the command that makes the archive the host links from it
(the two paths are appended); after ::link::, the command that links the
trainer, bench/sqlsuite.c with the host, that archive (@INSTRUMENTED@)
and clang's profile runtime, into @OUT@ (cmake/PglitePgo.cmake).

The trainer runs the SQL speed suite in-process twice, at once, each file
as one message and statement by statement, and llvm-profdata merges what it
counted into FILE.

A run's counts differ a little from the last one's (timing, hash seeds),
and a profile that differs would make the optimised module miss its cache.
So the profile itself is cached, keyed by what it is trained from: the
instrumented archive's cache key (build-module.py --print-key: the module,
wasm2c, the compiler, its flags, build-module.py), the suite's files and
llvm-profdata's version. The key is known before anything is compiled, so a
build whose profile is cached compiles no instrumented module and trains
nothing. --instrument-only (run as soon as the module is translated,
beside the side modules) builds the instrumented module if the profile is
not cached; if it is, it builds the optimised module (CMD after
::optimised::, given --profile-use with the cached profile) into
build-module.py's cache, where the build of it that follows the profile
finds it (the profile's content, not its path, is in the key), so that its
compile fills the time the rest of the runtime leaves.
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

FORMAT = 2
SECTIONS = ("::build-module::", "::objcopy::", "::link::", "::optimised::")


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


def split_sections(argv):
    """argv's options, and the command after each section marker."""
    opts, cmds, cur = [], {}, None
    for a in argv:
        if a in SECTIONS:
            cur = cmds.setdefault(a, [])
        elif cur is None:
            opts.append(a)
        else:
            cur.append(a)
    return opts, cmds


def run(cmd, what):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit("train-profile.py: %s failed (exit %d):\n%s" % (what, r.returncode, r.stdout[-4000:]))
    return r.stdout


def cached(entry, profdata):
    """Whether the cache holds a profile that llvm-profdata can read (one
    that it cannot, truncated or damaged, is removed and trained again)."""
    if not os.path.isfile(entry):
        return False
    r = subprocess.run([profdata, "show", entry], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode == 0:
        return True
    log("warning: cached profile %s is corrupt (%s); training again"
        % (entry, r.stderr.strip()[-300:]))
    try:
        os.unlink(entry)
    except OSError:
        pass
    return False


def run_live(cmd, what):
    """A build, its progress shown as it goes (its errors are its own)."""
    sys.stdout.flush()
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        sys.exit("train-profile.py: %s failed (exit %d)" % (what, rc))


def instrument(cmds):
    """The instrumented module (build-module.py, with its own cache)."""
    run_live(cmds["::build-module::"], "the instrumented build")


def train(args, cmds, files, tmp_out):
    instrument(cmds)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pglite-profile-") as work:
        linked = os.path.join(work, "libpglite_wasm_linked.a")
        run(cmds["::objcopy::"] + [args.instrumented, linked], "objcopy of the instrumented module")
        trainer = os.path.join(work, "trainer")
        link = [linked if a == "@INSTRUMENTED@" else trainer if a == "@OUT@" else a
                for a in cmds["::link::"]]
        run(link, "linking the trainer")
        env = dict(os.environ, LLVM_PROFILE_FILE=os.path.join(work, "run-%p.profraw"))
        # The two runs at once (each its own temporary databases and
        # counts file): the trainer runs on one core.
        runs = [subprocess.Popen([trainer] + mode + files, env=env, stdout=subprocess.PIPE,
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
    log("trained on %d files in %.1f s" % (len(files), time.monotonic() - t0))


def main():
    opts, cmds = split_sections(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite-dir", required=True)
    ap.add_argument("--profdata", required=True, help="llvm-profdata")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--instrumented", required=True, help="the archive ::build-module:: writes")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", help="the profile")
    mode.add_argument("--instrument-only", metavar="STAMP",
                      help="build the instrumented module unless the profile is cached "
                           "(then the optimised one, if given), and write STAMP")
    args = ap.parse_args(opts)
    # (--instrument-only needs only the first)
    missing = [m for m in SECTIONS[:1 if args.instrument_only else 3] if not cmds.get(m)]
    if missing:
        ap.error("no command after %s" % ", ".join(missing))

    files = suite_files(args.suite_dir)
    if not files:
        sys.exit("train-profile.py: no benchmark*.sql in %s" % args.suite_dir)
    version = run([args.profdata, "merge", "--version"], "llvm-profdata --version")
    module_key = run(cmds["::build-module::"] + ["--print-key"], "build-module.py --print-key").strip()
    h = hashlib.sha256()
    h.update(("%d\n%s\n%s\n" % (FORMAT, version, module_key)).encode())
    for f in files:
        h.update(("%s %s\n" % (os.path.basename(f), sha256_file(f))).encode())
    key = h.hexdigest()[:32]
    entry = os.path.join(args.cache_dir, "pglite-profile-%s.profdata" % key)

    os.makedirs(os.path.dirname(os.path.abspath(args.instrument_only or args.out)), exist_ok=True)
    if args.instrument_only:
        if not cached(entry, args.profdata):
            instrument(cmds)
        elif cmds.get("::optimised::"):
            log("cached (%s): no instrumented build; the optimised one now"
                % os.path.basename(entry))
            run_live(cmds["::optimised::"] + ["--profile-use", entry], "the optimised build")
        else:
            log("cached (%s): no instrumented build" % os.path.basename(entry))
        with open(args.instrument_only, "w") as f:
            f.write(key + "\n")
        return

    tmp_out = args.out + ".tmp"
    if cached(entry, args.profdata):
        shutil.copyfile(entry, tmp_out)
        os.replace(tmp_out, args.out)
        log("cache hit (%s)" % os.path.basename(entry))
        return
    train(args, cmds, files, tmp_out)
    os.replace(tmp_out, args.out)
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
