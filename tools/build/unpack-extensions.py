#!/usr/bin/env python3
"""Unpack PGlite's contrib extension archives into the runtime tree.

    unpack-extensions.py DIST_DIR TREE [EXTRA_ARCHIVE ...]

Each DIST_DIR/*.tar.gz (and each extra archive, e.g. pgvector's) holds paths
relative to /pglite: lib/postgresql/<name>.so, share/postgresql/extension/
<ext>.control and <ext>--*.sql, tsearch_data, include. They are extracted
under TREE/pglite with the tree's modes (files 0444, directories 0755). A
member with an absolute path, a "..", or of a type other than a file or a
directory is a hard error: archives never write outside the tree.

Idempotent: TREE/.extensions-stamp records a hash of the inputs and of this
script.
"""
import glob
import hashlib
import os
import sys
import tarfile


def fail(msg):
    sys.exit("unpack-extensions: " + msg)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    dist, tree = argv[1], argv[2]
    archives = sorted(glob.glob(os.path.join(dist, "*.tar.gz"))) + argv[3:]
    if not archives:
        fail(f"no extension archives in {dist}")
    h = hashlib.sha256()
    with open(__file__, "rb") as f:
        h.update(f.read())
    for a in archives:
        with open(a, "rb") as f:
            h.update(os.path.basename(a).encode() + b"\0" + hashlib.sha256(f.read()).digest())
    stamp = os.path.join(tree, ".extensions-stamp")
    digest = h.hexdigest()
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return
    except OSError:
        pass
    root = os.path.join(tree, "pglite")
    if not os.path.isdir(root):
        fail(f"{root} is missing: unpack pglite.data first")
    count = 0
    for a in archives:
        try:
            tf = tarfile.open(a, "r:gz")
        except (OSError, tarfile.TarError) as e:
            fail(f"{a}: {e}")
        with tf:
            for m in tf.getmembers():
                name = m.name
                while name.startswith("./"):
                    name = name[2:]
                if not name or name == ".":
                    continue
                parts = name.split("/")
                if name.startswith("/") or any(p in ("..", "") for p in parts if p != parts[-1]) \
                        or ".." in parts or "\0" in name:
                    fail(f"{a}: unsafe member path {m.name!r}")
                dest = os.path.join(root, *[p for p in parts if p])
                if m.isdir():
                    os.makedirs(dest, exist_ok=True)
                    os.chmod(dest, 0o755)
                elif m.isfile():
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    data = tf.extractfile(m).read()
                    if os.path.exists(dest):
                        os.chmod(dest, 0o644)
                    tmp = dest + ".tmp"
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, dest)
                    count += 1
                else:
                    fail(f"{a}: member {m.name!r} is neither a file nor a directory")
    with open(stamp + ".tmp", "w") as f:
        f.write(digest + "\n")
    os.replace(stamp + ".tmp", stamp)
    print(f"unpack-extensions: {count} files from {len(archives)} archives into {root}")


if __name__ == "__main__":
    main(sys.argv)
