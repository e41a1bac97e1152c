#!/usr/bin/env python3
"""Locate, by content, the internal entry points that [sessions] needs in pglite.wasm.

usage: locate-sessions.py PGLITE.wasm [OUT.json]

pglite.wasm has no name section, and the functions that turn an instance
into a PostgreSQL backend of a shared cluster (InitProcess, PostgresMain,
BackendMain) are not exported. Their wasm function indices, which are also
the wasm2c symbol names (w2c_fNNNN), change with every PGlite release, so
they are derived here from what the code is, never written down by hand
(../shared/multisession/STUDY.md, section 3, has the 0.5.16 values):

  child_process_kinds[]  PostgreSQL's {name, main_fn, shmem_attach} table
                         (postmaster/launch_backend.c): the entry named
                         "backend" is followed two entries later by
                         "autovacuum launcher" (B_BACKEND,
                         B_DEAD_END_BACKEND, B_AUTOVAC_LAUNCHER).
  BackendMain            that entry's main_fn, a function table index,
                         resolved through the element segments.
  InitProcess,           the last two direct calls of BackendMain, after its
  PostgresMain           call of the exported ProcessStartupPacket; main()
                         (the single-user path) must call the same two, in
                         the same order, or the shape is not the expected one.
  pid                    the constant the exported getpid() returns (every
                         instance is that pid until the host gives them their
                         own).
  MyProcPid compares     the functions that load MyProcPid (exported) and
                         compare it with that constant: proc_exit and the
                         signal wrapper, which a backend with a pid of its
                         own needs patched (the study also names main(),
                         whose test has another shape and is not needed).

Anything not found, or found with another shape, stops with a message that
names it: a runtime bump re-runs this, not a hand search. With OUT.json the
result is written there with the wasm's SHA-256, so a consumer can check it
describes the runtime it is built against.
"""
import hashlib
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wasmfile import Module, WasmError, leb_s  # noqa: E402

PROG = "locate-sessions"


def fail(msg):
    sys.exit(f"{PROG}: {msg}")


def locate(m):
    found = {}
    # child_process_kinds[B_BACKEND]
    launcher = m.cstrings("autovacuum launcher")
    backend = set(m.cstrings("backend"))
    entries = []
    for s in launcher:
        for w in m.words_equal(s):
            e = w - 24
            if m.word(e) in backend:
                entries.append(e)
    if len(entries) != 1:
        fail(f"child_process_kinds[]: expected one \"backend\" entry two before "
             f"\"autovacuum launcher\", found {len(entries)}")
    found["child_process_kinds_backend"] = entries[0]
    slot = m.word(entries[0] + 4)
    if slot not in m.elems:
        fail(f"child_process_kinds[B_BACKEND].main_fn = table index {slot}, "
             "which no element segment fills")
    backend_main = m.elems[slot]
    found["BackendMain"] = backend_main
    found["BackendMain_table_index"] = slot

    psp = m.exports.get("ProcessStartupPacket")
    if psp is None:
        fail("ProcessStartupPacket is not exported")
    calls = m.calls(backend_main)
    if psp not in calls:
        fail(f"BackendMain (function {backend_main}) does not call ProcessStartupPacket "
             f"(function {psp}): not the expected BackendMain")
    after = calls[len(calls) - 1 - calls[::-1].index(psp) + 1:]
    if len(after) < 2:
        fail("BackendMain makes fewer than two calls after ProcessStartupPacket")
    init_process, postgres_main = after[-2], after[-1]
    main = m.exports.get("__main_argc_argv")
    if main is None:
        fail("__main_argc_argv is not exported")
    mc = m.calls(main)
    pairs = [k for k in range(len(mc) - 1)
             if mc[k] == init_process and mc[k + 1] == postgres_main]
    if not pairs:
        fail(f"main (function {main}) does not call InitProcess ({init_process}) then "
             f"PostgresMain ({postgres_main}) as BackendMain does: the single-user path "
             "has another shape")
    # void InitProcess(void); void PostgresMain(const char *dbname,
    # const char *username) (tcop/tcopprot.h).
    for what, f, want in (("InitProcess", init_process, ("", "")),
                          ("PostgresMain", postgres_main, ("ii", ""))):
        if m.signature(f) != want:
            fail(f"{what} (function {f}) has the wasm signature {m.signature(f)}, "
                 f"expected {want}")
    found["InitProcess"] = init_process
    found["PostgresMain"] = postgres_main
    found["main"] = main

    getpid = m.exports.get("getpid")
    if getpid is None:
        fail("getpid is not exported")
    gb = m.body_bytes(getpid)
    # locals: 0 groups; i32.const N; end
    if len(gb) < 3 or gb[0] != 0 or gb[1] != 0x41 or gb[-1] != 0x0B:
        fail("getpid() is not a constant: the runtime has real process ids")
    pid, k = leb_s(gb, 2)
    if k != len(gb) - 1:
        fail("getpid() is not a constant: the runtime has real process ids")
    found["getpid_constant"] = pid

    # Where PostgreSQL compares MyProcPid with that constant (proc_exit's
    # "called in child process" check, the signal wrapper's re-raise):
    # the sites a backend with a pid of its own needs patched.
    mypid = m.global_addr("MyProcPid")
    if mypid is None:
        fail("MyProcPid is not exported")
    found["MyProcPid"] = mypid
    sites = m.compares_with(mypid, pid)
    if len(sites) != 2:
        fail(f"expected MyProcPid to be compared with {pid} in two functions (proc_exit, "
             f"wrapper_handler), found {len(sites)}: {sites}")
    found["MyProcPid_compares"] = sites
    return found


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    try:
        with open(argv[1], "rb") as f:
            b = f.read()
    except OSError as e:
        fail(f"cannot read {argv[1]}: {e.strerror}")
    try:
        found = locate(Module(b))
    except WasmError as e:
        fail(str(e))
    except (IndexError, struct.error, UnicodeDecodeError):
        fail(f"{argv[1]} is not a well-formed wasm module (it ends inside a section)")
    found["wasm_sha256"] = hashlib.sha256(b).hexdigest()
    text = json.dumps(found, indent=2, sort_keys=True) + "\n"
    if len(argv) == 3:
        tmp = f"{argv[2]}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, argv[2])
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv)
