#!/usr/bin/env python3
"""Unpack PGlite's pglite.data into the read-only runtime tree.

    unpack-data.py PGLITE_JS PGLITE_DATA OUTDIR

pglite.data is an Emscripten file_packager bundle: the raw bytes of every
file, back to back. The list of files ({filename:"/pglite/...",start:N,end:M})
and the directories (Module["FS_createPath"]("/pglite","bin",true,true)) are
in pglite.js. Guest path /X becomes OUTDIR/X, so guest /pglite/bin/postgres is
OUTDIR/pglite/bin/postgres.

Modes: files under /pglite/bin/ 0555 (PostgreSQL checks that its binaries
are executable), other files 0444, directories 0755.

Idempotent: OUTDIR/.stamp records a hash of the inputs and of this script; a
matching stamp means nothing to do. Otherwise the tree is built beside OUTDIR
and swapped in, so OUTDIR is never half-written.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

BIN_PREFIX = "/pglite/bin/"

# One file entry: {filename:"...",start:N,end:M ...}; keys may be quoted.
ENTRY_RE = re.compile(
    r'\{\s*"?filename"?\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"?start"?\s*:\s*(\d+)\s*,'
    r'\s*"?end"?\s*:\s*(\d+)')
FILES_RE = re.compile(r'\bfiles\s*:\s*\[')
SIZE_RE = re.compile(r'"?remote_package_size"?\s*:\s*(\d+)')
PATH_RE = re.compile(
    r'FS_createPath"?\]?\s*\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"((?:[^"\\]|\\.)*)"')


class Error(Exception):
    pass


def js_string(s):
    try:
        return json.loads('"%s"' % s)
    except ValueError:
        raise Error("cannot decode JS string %r" % s)


def guest_path(p, what):
    """Check that p is a clean absolute guest path; return its parts."""
    if not p.startswith("/"):
        raise Error("%s %r is not absolute" % (what, p))
    parts = p.split("/")[1:]
    if not parts or any(x in ("", ".", "..") for x in parts) or "\0" in p:
        raise Error("%s %r is not a clean path" % (what, p))
    return parts


def parse(js_text):
    m = FILES_RE.search(js_text)
    if not m:
        raise Error("no file_packager file list (files:[...]) in pglite.js")
    # The list ends at the first "]" after the last entry; entries hold no "]".
    end = js_text.find("]", m.end())
    if end < 0:
        raise Error("unterminated file list in pglite.js")
    body = js_text[m.end():end]
    files = []
    for e in ENTRY_RE.finditer(body):
        files.append((js_string(e.group(1)), int(e.group(2)), int(e.group(3))))
    if not files:
        raise Error("the file list in pglite.js has no {filename,start,end} entries")
    # Every entry of the list must have been understood.
    if body.count("filename") != len(files):
        raise Error("could parse only %d of %d file entries in pglite.js"
                    % (len(files), body.count("filename")))
    dirs = []
    for d in PATH_RE.finditer(js_text):
        parent, name = js_string(d.group(1)), js_string(d.group(2))
        dirs.append(parent.rstrip("/") + "/" + name)
    size = None
    sm = SIZE_RE.search(js_text, m.end())
    if sm:
        size = int(sm.group(1))
    return files, dirs, size


def inputs_hash(js, data):
    h = hashlib.sha256()
    for p in (js, data, os.path.abspath(__file__)):
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def unpack(js, data, out):
    with open(js, "r", encoding="utf-8", errors="replace") as f:
        js_text = f.read()
    files, dirs, size = parse(js_text)
    with open(data, "rb") as f:
        blob = f.read()
    if size is not None and size != len(blob):
        raise Error("%s has %d bytes but pglite.js expects %d (mismatched package?)"
                    % (data, len(blob), size))

    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".%s.tmp-" % os.path.basename(out))
    try:
        os.chmod(tmp, 0o755)
        alldirs = set()
        for d in dirs:
            parts = guest_path(d, "directory")
            for i in range(1, len(parts) + 1):
                alldirs.add("/".join(parts[:i]))
        entries = []
        for name, start, end in files:
            parts = guest_path(name, "file")
            if not (0 <= start <= end <= len(blob)):
                raise Error("entry %s has range %d..%d outside %s (%d bytes)"
                            % (name, start, end, data, len(blob)))
            for i in range(1, len(parts)):
                alldirs.add("/".join(parts[:i]))
            entries.append(("/".join(parts), start, end, name))
        for d in sorted(alldirs):
            os.mkdir(os.path.join(tmp, d), 0o755)
            os.chmod(os.path.join(tmp, d), 0o755)
        seen = set()
        for rel, start, end, name in entries:
            if rel in seen or rel in alldirs:
                raise Error("duplicate path %s in the file list" % name)
            seen.add(rel)
            p = os.path.join(tmp, rel)
            with open(p, "wb") as f:
                f.write(blob[start:end])
            os.chmod(p, 0o555 if name.startswith(BIN_PREFIX) else 0o444)

        # Swap the new tree in.
        old = None
        if os.path.lexists(out):
            old = tempfile.mkdtemp(dir=parent, prefix=".%s.old-" % os.path.basename(out))
            os.rename(out, os.path.join(old, "t"))
        os.rename(tmp, out)
        tmp = None
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    tops = {}
    for rel, start, end, name in entries:
        parts = rel.split("/")
        top = "/" + "/".join(parts[:2]) if len(parts) > 2 else "/" + rel
        tops[top] = tops.get(top, 0) + 1
    return len(entries), len(alldirs), tops


def main(argv):
    if len(argv) != 4:
        print("usage: unpack-data.py PGLITE_JS PGLITE_DATA OUTDIR", file=sys.stderr)
        return 2
    js, data, out = argv[1:]
    stamp = os.path.join(out, ".stamp")
    try:
        want = inputs_hash(js, data)
    except OSError as e:
        print("unpack-data: error: %s" % e, file=sys.stderr)
        return 1
    try:
        with open(stamp) as f:
            if f.read().strip() == want:
                return 0
    except OSError:
        pass
    try:
        nfiles, ndirs, tops = unpack(js, data, out)
        with open(stamp + ".tmp", "w") as f:
            f.write(want + "\n")
        os.replace(stamp + ".tmp", stamp)
    except (Error, OSError) as e:
        print("unpack-data: error: %s" % e, file=sys.stderr)
        return 1
    print("unpack-data: %d files, %d directories in %s" % (nfiles, ndirs, out))
    print("unpack-data: top-level paths: " +
          ", ".join("%s (%d)" % (k, v) for k, v in sorted(tops.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
