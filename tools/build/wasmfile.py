"""Reading WebAssembly binaries: sections, exports, element and data
segments, function bodies and their direct calls.

The one wasm reader of the build-time locators (gen-stack-limit.py,
patch-sessions.py). A module it cannot read raises WasmError; the callers
turn that into a build error naming what they looked for.
"""
import struct


class WasmError(Exception):
    pass


def _leb(b, i, signed):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            if signed and x & 0x40:
                r -= 1 << s
            return r, i


def leb_u(b, i):
    """(unsigned LEB128 at b[i], the offset after it)."""
    return _leb(b, i, False)


def leb_s(b, i):
    """(signed LEB128 at b[i], the offset after it)."""
    return _leb(b, i, True)


def name(b, i):
    n, i = leb_u(b, i)
    return b[i:i + n].decode("utf-8", "replace"), i + n


def uleb(v):
    """v as unsigned LEB128."""
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if not v:
            out.append(x)
            return bytes(out)
        out.append(x | 0x80)


def sleb(v):
    """v as signed LEB128."""
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if (v == 0 and not x & 0x40) or (v == -1 and x & 0x40):
            out.append(x)
            return bytes(out)
        out.append(x | 0x80)


def skip_locals(b, i):
    """The offset of a function body's first instruction (after its locals)."""
    ngroups, i = leb_u(b, i)
    for _ in range(ngroups):
        _, i = leb_u(b, i)
        i += 1
    return i


_BLOCKTYPES = (0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F)


def instructions(b, i, end, func="?"):
    """(start, opcode, end) of each instruction in b[i:end], in order."""
    while i < end:
        k = i
        op = b[i]
        i += 1
        if op in (0x02, 0x03, 0x04):            # block, loop, if
            if b[i] in _BLOCKTYPES:
                i += 1
            else:
                _, i = leb_s(b, i)
        elif op in (0x0C, 0x0D, 0x10, 0xD2):    # br, br_if, call, ref.func
            _, i = leb_u(b, i)
        elif op == 0x0E:                        # br_table
            n, i = leb_u(b, i)
            for _ in range(n + 1):
                _, i = leb_u(b, i)
        elif op == 0x11:                        # call_indirect
            _, i = leb_u(b, i)
            _, i = leb_u(b, i)
        elif op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26):
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
                raise WasmError(f"function {func}: unknown 0xFC {sub} instruction")
        elif op in (0xFD, 0xFE):
            raise WasmError(f"function {func}: SIMD/atomic instructions are not expected here")
        # everything else has no immediate
        yield k, op, i


class Module:
    def __init__(self, b, segments=True):
        """segments=False skips the element and data segments (a
        relocatable module's are placed by globals, not constants)."""
        if b[:4] != b"\0asm":
            raise WasmError("not a wasm module")
        self.b = b
        self.nimp = 0
        self.func_imports = []  # (module, name, type index) of each imported function
        self.sections = []    # (id, start of contents, end) in file order
        self.exports = {}
        self.bodies = []      # (start, end) of each defined function's code
        self.elems = {}       # table index -> function index
        self.data = []        # (address, bytes) of active data segments
        self.types = []       # (params, results) of each function type
        self.ftypes = []      # type index of each defined function
        self.gexports = {}    # exported global name -> global index
        self.nglobimp = 0
        self.globals = []     # constant i32 initial value (or None) of each defined global
        self.memory_imports = {}  # (module, name) -> (initial pages, max pages or None)
        self.customs = {}     # custom section name -> (start of its payload, end)
        i = 8
        while i < len(b):
            sid = b[i]
            size, j = leb_u(b, i + 1)
            end = j + size
            self.sections.append((sid, j, end))
            if sid == 0:
                nm, k = name(b, j)
                self.customs.setdefault(nm, (k, end))
            elif sid == 1:
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
            elif sid == 9 and segments:
                self._elems(j)
            elif sid == 10:
                self._code(j)
            elif sid == 11 and segments:
                self._data(j)
            i = end

    def _types(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            if b[i] != 0x60:
                raise WasmError("type section entry is not a function type")
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
            mod, i = name(b, i)
            nm, i = name(b, i)
            kind = b[i]
            i += 1
            if kind == 0:
                t, i = leb_u(b, i)
                self.func_imports.append((mod, nm, t))
                self.nimp += 1
            elif kind in (1, 2):
                if kind == 1:
                    i += 1
                flags, i = leb_u(b, i)
                initial, i = leb_u(b, i)
                mx = None
                if flags & 1:
                    mx, i = leb_u(b, i)
                if kind == 2:
                    self.memory_imports[(mod, nm)] = (initial, mx)
            elif kind == 3:
                i += 2
                self.nglobimp += 1
            elif kind == 4:
                i += 1
                _, i = leb_u(b, i)
            else:
                raise WasmError(f"unknown import kind {kind}")

    def _globals(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            i += 2  # valtype, mutability
            v = None
            if b[i] == 0x41:
                v, i = leb_s(b, i + 1)
            if b[i] != 0x0B:  # not a plain constant: skip to its end
                v = None
                while b[i] != 0x0B:
                    i += 1
            self.globals.append(v)
            i += 1

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
            raise WasmError("element/data segment offset is not an i32.const")
        v, i = leb_s(b, i + 1)
        if b[i] != 0x0B:
            raise WasmError("element/data segment offset expression is not a constant")
        return v, i + 1

    def _elems(self, i):
        b = self.b
        n, i = leb_u(b, i)
        for _ in range(n):
            flags, i = leb_u(b, i)
            if flags in (0, 2):  # active: [table index,] offset, [elemkind,] funcs
                if flags == 2:
                    _, i = leb_u(b, i)
                off, i = self._const_expr(i)
                if flags == 2:
                    i += 1
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
                raise WasmError(f"element segment kind {flags} is not handled")

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
                raise WasmError(f"data segment kind {flags} is not handled")
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
            raise WasmError(f"function {func} is not defined in the module")
        return self.bodies[k]

    def calls(self, func):
        """Direct call targets of func, in code order."""
        return self.decode(func)[0]

    def decode(self, func):
        """(direct call targets in code order, offsets where instructions start)."""
        b = self.b
        i, end = self.body(func)
        out = []
        starts = set()
        for k, op, _ in instructions(b, skip_locals(b, i), end, func):
            starts.add(k)
            if op == 0x10:
                out.append(leb_u(b, k + 1)[0])
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
        code = b"\x41" + sleb(addr)
        tail = b"\x41" + sleb(value)
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

    def const_users(self, value):
        """Functions with an i32.const value instruction (each match checked
        to start at an instruction boundary)."""
        code = b"\x41" + sleb(value)
        found = set()
        b = self.b
        k = b.find(code, self.bodies[0][0] if self.bodies else 0)
        while k >= 0:
            f = self.func_at(k)
            if f is not None and k in self.decode(f)[1]:
                found.add(f)
            k = b.find(code, k + 1)
        return sorted(found)

    def body_bytes(self, func):
        s, e = self.body(func)
        return self.b[s:e]
