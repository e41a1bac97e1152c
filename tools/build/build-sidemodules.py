#!/usr/bin/env python3
"""Compile every side module of the runtime tree to native code.

    build-sidemodules.py --tree TREE --out-dir DIR [build-module.py options]

Each TREE/pglite/lib/postgresql/*.so (the libraries of pglite.data and of
the unpacked extension archives) goes through build-module.py with the same
content-keyed cache as the main runtime. Writes into DIR:
  - lib<cname>_wasm.a and <cname>.h per module (cname = "sm_" + file stem);
  - MANIFEST: "GUEST_PATH WASM HEADER CNAME" lines for gen-sidemodules.py;
  - libsidemodules_wasm.a: one thin archive over all of them, to link.
Two modules compile at a time (they are small); the big ones get more units.
"""
import argparse
import concurrent.futures as cf
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def cname_of(path):
    stem = os.path.basename(path)[:-3]
    return "sm_" + re.sub(r"[^A-Za-z0-9_]", "_", stem)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir")
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cflags", default="-O2")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--wasm2c", default="wasm2c")
    ap.add_argument("--ar", default="ar")
    ap.add_argument("--objcopy", default="objcopy")
    ap.add_argument("--memory-access", default=None,
                    help="passed to build-module.py")
    ap.add_argument("--rename-section", action="append", default=[],
                    help="OLD=NEW, applied to each module's archive before it is linked "
                         "(the cached one is left as it is)")
    a = ap.parse_args()

    libdir = os.path.join(a.tree, "pglite", "lib", "postgresql")
    sos = sorted(glob.glob(os.path.join(libdir, "*.so")))
    if not sos:
        sys.exit(f"build-sidemodules: no side modules in {libdir}")
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.monotonic()

    def build(so):
        cname = cname_of(so)
        size = os.path.getsize(so)
        units = 1 if size < 512 * 1024 else 4
        cmd = [sys.executable, os.path.join(HERE, "build-module.py"), "--wasm", so,
               "--name", cname, "--out-dir", a.out_dir, "--cc", a.cc,
               "--cflags=" + a.cflags, "--jobs", "1" if units == 1 else str(a.jobs),
               "--units", str(units), "--wasm2c", a.wasm2c, "--ar", a.ar,
               "--objcopy", a.objcopy]
        if a.cache_dir:
            cmd += ["--cache-dir", a.cache_dir]
        if a.memory_access:
            cmd += ["--memory-access", a.memory_access]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        return so, cname, r

    manifest, libs, failed = [], [], []
    workers = max(1, min(2, a.jobs))
    done = 0
    # The largest first (pgcrypto is half of all the code), so that the
    # small ones fill the other worker meanwhile rather than wait behind
    # it at the end; reported and listed in name order.
    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        futures = {so: ex.submit(build, so) for so in sorted(sos, key=os.path.getsize, reverse=True)}
        for so, cname, r in (futures[so].result() for so in sos):
            done += 1
            if r.returncode != 0:
                failed.append((so, r.stdout[-3000:]))
                continue
            hit = "cache hit" if "cache hit" in r.stdout else "compiled"
            print(f"side modules: [{done}/{len(sos)}] {os.path.basename(so)} ({hit})", flush=True)
            guest = "/pglite/lib/postgresql/" + os.path.basename(so)
            manifest.append(f"{guest} {so} {os.path.join(a.out_dir, cname + '.h')} {cname}")
            lib = os.path.join(a.out_dir, f"lib{cname}_wasm.a")
            if a.rename_section:
                linked = os.path.join(a.out_dir, f"lib{cname}_wasm_linked.a")
                argv = [a.objcopy]
                for rs in a.rename_section:
                    argv += ["--rename-section", rs]
                r = subprocess.run(argv + [lib, linked], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True)
                if r.returncode != 0:
                    failed.append((so, r.stdout[-3000:]))
                    continue
                lib = linked
            libs.append(lib)
    if failed:
        for so, out in failed:
            sys.stderr.write(f"build-sidemodules: {so} failed:\n{out}\n")
        sys.exit(1)
    with open(os.path.join(a.out_dir, "MANIFEST.tmp"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    os.replace(os.path.join(a.out_dir, "MANIFEST.tmp"), os.path.join(a.out_dir, "MANIFEST"))
    thin = os.path.join(a.out_dir, "libsidemodules_wasm.a")
    if os.path.exists(thin):
        os.unlink(thin)
    r = subprocess.run([a.ar, "rcsT", thin] + libs, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        sys.exit(f"build-sidemodules: ar failed:\n{r.stdout}")
    print(f"side modules: {len(sos)} ready in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
