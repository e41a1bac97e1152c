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
from wasmfile import leb_s, leb_u, name  # noqa: E402

PROG = "locate-sessions"


def fail(msg):
    sys.exit(f"{PROG}: {msg}")


def sleb_bytes(v):
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if (v == 0 and not x & 0x40) or (v == -1 and x & 0x40):
            out.append(x)
            return out
        out.append(x | 0x80)


class Module:
    def __init__(self, b):
        if b[:4] != b"\0asm":
            fail("not a wasm module")
        self.b = b
        self.nimp = 0
        self.exports = {}
        self.bodies = []      # (start, end) of each defined function's code
        self.elems = {}       # table index -> function index
        self.data = []        # (address, bytes) of active data segments
        self.types = []       # (params, results) of each function type
        self.ftypes = []      # type index of each defined function
        self.gexports = {}    # exported global name -> global index
        self.nglobimp = 0
        self.globals = []     # constant i32 initial value (or None) of each defined global
        i = 8
        while i < len(b):
            sid = b[i]
            size, j = leb_u(b, i + 1)
            end = j + size
            if sid == 1:
                self._types(j)
            elif sid == 3:
                n, k = leb_u(b, j)
                for _ in range(n):
                    t, k = leb_u(b, k)
                    self.ftypes.append(t)
            elif sid == 2:
                self._imports(j)
            elif sid == 6:
                self._globals(j)
            elif sid == 7:
                self._exports(j)
            elif sid == 9:
                self._elems(j)
            elif sid == 10:
                self._code(j)
            elif sid == 11:
                self._data(j)
            i = end

    def _types(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            if b[i] != 0x60:
                fail("type section entry is not a function type")
            np, i = leb_u(b, i + 1)
            params = bytes(b[i:i + np])
            i += np
            nr, i = leb_u(b, i)
            results = bytes(b[i:i + nr])
            i += nr
            self.types.append((params, results))

    def signature(self, func):
        """(params, results) of a defined function as strings of i/I/f/F."""
        code = {0x7F: "i", 0x7E: "I", 0x7D: "f", 0x7C: "F"}
        p, r = self.types[self.ftypes[func - self.nimp]]
        return ("".join(code.get(x, "?") for x in p), "".join(code.get(x, "?") for x in r))

    def _imports(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            _, i = name(b, i)
            _, i = name(b, i)
            kind = b[i]
            i += 1
            if kind == 0:
                _, i = leb_u(b, i)
                self.nimp += 1
            elif kind in (1, 2):
                if kind == 1:
                    i += 1
                flags, i = leb_u(b, i)
                _, i = leb_u(b, i)
                if flags & 1:
                    _, i = leb_u(b, i)
            elif kind == 3:
                i += 2
                self.nglobimp += 1
            elif kind == 4:
                i += 1
                _, i = leb_u(b, i)
            else:
                fail(f"unknown import kind {kind}")

    def _globals(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            i += 2  # valtype, mutability
            v = None
            if b[i] == 0x41:
                v, i = leb_s(b, i + 1)
            else:
                while b[i] != 0x0B:  # another constant expression: skip it
                    i += 1
            if b[i] != 0x0B:
                while b[i] != 0x0B:
                    i += 1
            i += 1
            self.globals.append(v)

    def global_addr(self, nm):
        """The constant value of an exported global (a data address)."""
        idx = self.gexports.get(nm)
        if idx is None or idx < self.nglobimp:
            return None
        return self.globals[idx - self.nglobimp]

    def _exports(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            nm, i = name(b, i)
            kind = b[i]
            idx, i = leb_u(b, i + 1)
            if kind == 0:
                self.exports[nm] = idx
            elif kind == 3:
                self.gexports[nm] = idx

    def _const_expr(self, i):
        b = self.b
        if b[i] != 0x41:
            fail("element/data segment offset is not an i32.const")
        v, i = leb_s(b, i + 1)
        if b[i] != 0x0B:
            fail("element/data segment offset expression is not a constant")
        return v, i + 1

    def _elems(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            flags, i = leb_u(b, i)
            if flags == 0:
                off, i = self._const_expr(i)
                cnt, i = leb_u(b, i)
                for k in range(cnt):
                    f, i = leb_u(b, i)
                    self.elems[off + k] = f
            elif flags == 2:
                _, i = leb_u(b, i)
                off, i = self._const_expr(i)
                i += 1  # elemkind
                cnt, i = leb_u(b, i)
                for k in range(cnt):
                    f, i = leb_u(b, i)
                    self.elems[off + k] = f
            elif flags in (1, 3):
                i += 1
                cnt, i = leb_u(b, i)
                for _ in range(cnt):
                    _, i = leb_u(b, i)
            else:
                fail(f"element segment kind {flags} is not handled")

    def _code(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            size, i = leb_u(b, i)
            self.bodies.append((i, i + size))
            i += size

    def _data(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            flags, i = leb_u(b, i)
            if flags == 0:
                off, i = self._const_expr(i)
            elif flags == 1:
                off = None
            elif flags == 2:
                _, i = leb_u(b, i)
                off, i = self._const_expr(i)
            else:
                fail(f"data segment kind {flags} is not handled")
            ln, i = leb_u(b, i)
            if off is not None:
                self.data.append((off, b[i:i + ln]))
            i += ln

    # ---- data ----------------------------------------------------------
    def cstrings(self, s):
        """Addresses of the NUL-terminated string s (a linker may share the
        tail of a longer string: "backend" inside "dead-end backend")."""
        want = s.encode() + b"\0"
        out = []
        for off, d in self.data:
            k = d.find(want)
            while k >= 0:
                out.append(off + k)
                k = d.find(want, k + 1)
        return out

    def words_equal(self, value):
        """Addresses of aligned 32-bit words holding value."""
        pat = struct.pack("<I", value)
        out = []
        for off, d in self.data:
            k = d.find(pat)
            while k >= 0:
                if (off + k) % 4 == 0:
                    out.append(off + k)
                k = d.find(pat, k + 1)
        return out

    def word(self, addr):
        for off, d in self.data:
            if off <= addr and addr + 4 <= off + len(d):
                return struct.unpack_from("<I", d, addr - off)[0]
        return None

    def cstring_at(self, addr):
        for off, d in self.data:
            if off <= addr < off + len(d):
                end = d.find(b"\0", addr - off)
                return d[addr - off:end].decode("utf-8", "replace") if end >= 0 else None
        return None

    # ---- code ----------------------------------------------------------
    def body(self, func):
        k = func - self.nimp
        if k < 0 or k >= len(self.bodies):
            fail(f"function {func} is not defined in the module")
        return self.bodies[k]

    def calls(self, func):
        """Direct call targets of func, in code order."""
        return self.decode(func)[0]

    def decode(self, func):
        """(direct call targets in code order, offsets where instructions start)."""
        b = self.b
        i, end = self.body(func)
        ngroups, i = leb_u(b, i)
        for _ in range(ngroups):
            _, i = leb_u(b, i)
            i += 1
        out = []
        starts = set()
        while i < end:
            starts.add(i)
            op = b[i]
            i += 1
            if op in (0x02, 0x03, 0x04):            # block, loop, if
                if b[i] in (0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
                    i += 1
                else:
                    _, i = leb_s(b, i)
            elif op in (0x0C, 0x0D):                # br, br_if
                _, i = leb_u(b, i)
            elif op == 0x0E:                        # br_table
                n, i = leb_u(b, i)
                for _ in range(n + 1):
                    _, i = leb_u(b, i)
            elif op == 0x10:                        # call
                f, i = leb_u(b, i)
                out.append(f)
            elif op == 0x11:                        # call_indirect
                _, i = leb_u(b, i)
                _, i = leb_u(b, i)
            elif op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2):
                _, i = leb_u(b, i)
            elif 0x28 <= op <= 0x3E:                # loads and stores
                _, i = leb_u(b, i)
                _, i = leb_u(b, i)
            elif op in (0x3F, 0x40, 0xD0):          # memory.size/grow, ref.null
                i += 1
            elif op in (0x41, 0x42):                # i32/i64.const
                _, i = leb_s(b, i)
            elif op == 0x43:
                i += 4
            elif op == 0x44:
                i += 8
            elif op == 0x1C:                        # select t*
                n, i = leb_u(b, i)
                i += n
            elif op == 0xFC:
                sub, i = leb_u(b, i)
                if sub == 8:
                    _, i = leb_u(b, i)
                    i += 1
                elif sub in (9, 13, 15, 16, 17):
                    _, i = leb_u(b, i)
                elif sub in (10, 14, 12):
                    if sub == 10:
                        i += 2
                    else:
                        _, i = leb_u(b, i)
                        _, i = leb_u(b, i)
                elif sub == 11:
                    i += 1
                elif sub > 17:
                    fail(f"function {func}: unknown 0xFC {sub} instruction")
            elif op in (0xFD, 0xFE):
                fail(f"function {func}: SIMD/atomic instructions are not expected here")
            # everything else has no immediate
        return out, starts

    def func_at(self, offset):
        """The defined function whose body holds a byte offset, or None."""
        lo, hi = 0, len(self.bodies)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.bodies[mid][1] <= offset:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.bodies) and self.bodies[lo][0] <= offset:
            return lo + self.nimp
        return None

    def compares_with(self, addr, value):
        """Functions that load the i32 at addr and compare it with value
        (i32.const addr; i32.load; i32.const value; i32.eq|i32.ne), each
        match checked to start at an instruction boundary."""
        code = bytearray([0x41]) + sleb_bytes(addr)
        tail = bytearray([0x41]) + sleb_bytes(value)
        found = set()
        b = self.b
        lo = self.bodies[0][0] if self.bodies else 0
        k = b.find(code, lo)
        while k >= 0:
            j = k + len(code)
            if b[j] == 0x28:
                _, j = leb_u(b, j + 1)
                off, j = leb_u(b, j)
                if off == 0 and b[j:j + len(tail)] == tail and b[j + len(tail)] in (0x46, 0x47):
                    f = self.func_at(k)
                    if f is not None and k in self.decode(f)[1]:
                        found.add(f)
            k = b.find(code, k + 1)
        return sorted(found)

    def body_bytes(self, func):
        s, e = self.body(func)
        return self.b[s:e]


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
