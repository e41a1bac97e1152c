#!/usr/bin/env python3
"""Generate the side-module registry and linker glue (see src/abi/dylink.h).

usage: gen-sidemodules.py OUT.c MAIN.wasm MAIN.h MANIFEST [HOSTHEADER.h | HOST.c ...]

MANIFEST has one line per side module: `GUEST_PATH WASM HEADER CNAME`
(CNAME is the wasm2c module name given with -n). HOSTHEADERs are the wasm2c
headers of the modules whose imports the abi layer implements (pglite.h,
initdb.h): an env import of that name is already defined by the host; so
is any Z_envZ_<name> defined in a given host C file (src/abi/pgcompat.c).

It writes, from the wasm binaries and the wasm2c headers:
  - one abi_side_module descriptor per module (dylink.0 memory info, exports
    with their element-segment slots and types, GOT ids, lifecycle hooks);
  - abi_main_symbols: the main module's exports, functions with their table
    slots (from its element segment) and data globals;
  - abi_got_names and the GOT.mem / GOT.func import accessors;
  - forwarders from side modules' env function imports to main exports
    (or a stub that fails cleanly when a symbol is defined nowhere).
"""
import os
import re
import sys

VALTYPE = {0x7F: "WASM_RT_I32", 0x7E: "WASM_RT_I64", 0x7D: "WASM_RT_F32",
           0x7C: "WASM_RT_F64"}
CTYPE = {0x7F: "u32", 0x7E: "u64", 0x7D: "f32", 0x7C: "f64"}


class Reader:
    def __init__(self, data, pos=0, end=None):
        self.d, self.p = data, pos
        self.end = len(data) if end is None else end

    def u8(self):
        b = self.d[self.p]
        self.p += 1
        return b

    def uleb(self):
        r = s = 0
        while True:
            b = self.u8()
            r |= (b & 0x7F) << s
            s += 7
            if not b & 0x80:
                return r

    def sleb(self):
        r = s = 0
        while True:
            b = self.u8()
            r |= (b & 0x7F) << s
            s += 7
            if not b & 0x80:
                if b & 0x40:
                    r -= 1 << s
                return r

    def name(self):
        n = self.uleb()
        v = self.d[self.p:self.p + n].decode("utf-8")
        self.p += n
        return v

    def limits(self):
        flags = self.u8()
        self.uleb()
        if flags & 1:
            self.uleb()

    def const_expr(self):
        """Returns ('const', n) or ('global', idx)."""
        op = self.u8()
        if op == 0x41:
            v = ("const", self.sleb())
        elif op == 0x23:
            v = ("global", self.uleb())
        else:
            raise ValueError(f"unsupported init expression opcode {op:#x}")
        if self.u8() != 0x0B:
            raise ValueError("unsupported init expression")
        return v


class Wasm:
    def __init__(self, path):
        data = open(path, "rb").read()
        if data[:8] != b"\0asm\1\0\0\0":
            raise SystemExit(f"{path}: not a wasm module")
        self.path = path
        self.types, self.imports, self.funcs = [], [], []
        self.exports, self.elem = [], {}   # func index -> highest elem position
        self.elem_base = None              # ('const', n) or ('global', idx)
        self.globals = []                  # defined globals: (valtype, mut, expr)
        self.mem = None                    # (size, align_log2, table_size)
        self.nfunc_imports = self.nglobal_imports = 0
        self.global_imports = []
        r = Reader(data, 8)
        while r.p < len(data):
            sid = r.u8()
            size = r.uleb()
            end = r.p + size
            s = Reader(data, r.p, end)
            if sid == 0:
                name = s.name()
                if name == "dylink.0":
                    while s.p < end:
                        kind, sz = s.u8(), s.uleb()
                        nxt = s.p + sz
                        if kind == 1:
                            self.mem = (s.uleb(), s.uleb(), s.uleb())
                        s.p = nxt
            elif sid == 1:
                for _ in range(s.uleb()):
                    if s.u8() != 0x60:
                        raise SystemExit(f"{path}: unexpected type form")
                    params = [s.u8() for _ in range(s.uleb())]
                    results = [s.u8() for _ in range(s.uleb())]
                    self.types.append((params, results))
            elif sid == 2:
                for _ in range(s.uleb()):
                    mod, name, kind = s.name(), s.name(), s.u8()
                    if kind == 0:
                        self.imports.append((mod, name, "func", s.uleb()))
                        self.funcs.append(None)
                        self.nfunc_imports += 1
                    elif kind == 1:
                        s.u8()
                        s.limits()
                        self.imports.append((mod, name, "table", None))
                    elif kind == 2:
                        s.limits()
                        self.imports.append((mod, name, "memory", None))
                    elif kind == 3:
                        vt, mut = s.u8(), s.u8()
                        self.imports.append((mod, name, "global", (vt, mut)))
                        self.global_imports.append((mod, name))
                    else:
                        raise SystemExit(f"{path}: unknown import kind {kind}")
            elif sid == 3:
                for _ in range(s.uleb()):
                    self.funcs.append(s.uleb())
            elif sid == 6:
                for _ in range(s.uleb()):
                    vt, mut = s.u8(), s.u8()
                    self.globals.append((vt, mut, s.const_expr()))
            elif sid == 7:
                for _ in range(s.uleb()):
                    name, kind, idx = s.name(), s.u8(), s.uleb()
                    self.exports.append((name, kind, idx))
            elif sid == 9:
                for _ in range(s.uleb()):
                    flags = s.uleb()
                    if flags not in (0, 2):
                        raise SystemExit(f"{path}: element segment flags {flags} unsupported")
                    if flags == 2:
                        s.uleb()
                    off = s.const_expr()
                    if flags == 2:
                        s.u8()
                    if self.elem_base is not None and self.elem_base != off:
                        raise SystemExit(f"{path}: several element segments")
                    self.elem_base = off
                    for pos in range(s.uleb()):
                        self.elem[s.uleb()] = pos
            r.p = end

    def func_type(self, fidx):
        if fidx < self.nfunc_imports:
            if not hasattr(self, "_fimports"):
                self._fimports = [x for x in self.imports if x[2] == "func"]
            return self.types[self._fimports[fidx][3]]
        return self.types[self.funcs[fidx]]


def mangle(name):
    out = []
    for ch in name:
        if ch != "Z" and ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        else:
            out.extend("Z%02X" % b for b in ch.encode("utf-8"))
    return "".join(out)


def type_key(t):
    params, results = t
    return "".join("ijfd"["\x7f\x7e\x7d\x7c".index(chr(p))] for p in params) + "_" + \
        "".join("ijfd"["\x7f\x7e\x7d\x7c".index(chr(p))] for p in results)


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    out, main_wasm, main_h, manifest = argv[1:5]
    host_headers = argv[5:]
    host_defined = set()
    for hh in host_headers:
        text = open(hh).read()
        if hh.endswith(".c"):
            host_defined |= set(re.findall(r"^\w+ Z_envZ_(\w+)\(struct Z_env_instance_t \*", text, re.M))
        else:
            host_defined |= set(re.findall(r"Z_envZ_(\w+)\(struct Z_env_instance_t\*", text))
    # Defined specially by src/abi/dylink.c and host.c.
    host_defined |= {"memory", "__indirect_function_table", "__stack_pointer",
                     "__memory_base", "__table_base"}

    mods = []
    for line in open(manifest):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        gpath, wasm, header, cname = line.split()
        mods.append((gpath, Wasm(wasm), open(header).read(), cname, os.path.basename(header)))

    mw = Wasm(main_wasm)
    mh = open(main_h).read()
    # Names declared in each header, found once (searching a large header
    # per export is quadratic).
    decl_re = re.compile(r"(u32\*|\w+)\s+Z_(\w+?)Z_(\w+)\(")

    def declared(text, mod):
        funcs, globs = set(), set()
        for ret, m, name in decl_re.findall(text):
            if m == mod:
                (globs if ret == "u32*" else funcs).add(name)
        return funcs | globs, globs
    types = {}

    def tfunc(t):
        k = type_key(t)
        types[k] = t
        return f"ft_{k}"

    lines = ["/* Generated by tools/build/gen-sidemodules.py. Do not edit. */",
             "#define _GNU_SOURCE", '#include "abi/dylink.h"',
             '#include "abi/abi_internal.h"', f'#include "wasm/{os.path.basename(main_h)}"']
    for m in mods:
        lines.append(f'#include "side/{m[4]}"')
    lines.append("")
    body = []

    # ---- GOT names ----
    got = sorted({name for m in mods for (mod, name, kind, _) in m[1].imports
                  if mod in ("GOT.mem", "GOT.func")}, key=lambda s: s.encode())
    got_id = {n: i for i, n in enumerate(got)}
    body.append("const char *const abi_got_names[] = {")
    body += [f'    "{n}",' for n in got] or ['    ""']
    body.append("};")
    body.append(f"const size_t abi_got_count = {len(got)};")
    body.append("")
    for kind, inst in (("mem", "Z_GOTZ2Emem_instance_t"), ("func", "Z_GOTZ2Efunc_instance_t")):
        names = sorted({name for m in mods for (mod, name, k, _) in m[1].imports
                        if mod == "GOT." + kind})
        for n in names:
            body.append(f"u32 *Z_GOTZ2E{kind}Z_{mangle(n)}(struct {inst} *g) "
                        f"{{ return &g->got->cells[{got_id[n]}]; }}")
    body.append("")

    # ---- main symbols ----
    main_base = 0
    if mw.elem_base and mw.elem_base[0] == "const":
        main_base = mw.elem_base[1]
    msyms = []
    main_decl, main_globs = declared(mh, "pglite")
    for name, kind, idx in mw.exports:
        c = mangle(name)
        if kind == 0:
            if c not in main_decl:
                continue
            t = mw.func_type(idx)
            elem = main_base + mw.elem[idx] if idx in mw.elem else -1
            msyms.append((name, f'{{"{name}", ABI_SYM_FUNC, (wasm_rt_function_ptr_t)Z_pgliteZ_{c}, '
                                f'{tfunc(t)}, {elem}, NULL}}'))
        elif kind == 3:
            if c not in main_globs:
                continue
            body.append(f"static uint32_t md_{c}(void *i) {{ return *Z_pgliteZ_{c}(i); }}")
            msyms.append((name, f'{{"{name}", ABI_SYM_DATA, NULL, NULL, -1, md_{c}}}'))
    msyms.sort(key=lambda x: x[0].encode())
    main_funcs = {name: mw.func_type(idx) for name, kind, idx in mw.exports if kind == 0}

    # ---- per module ----
    env_needed = {}  # name -> (type, first module)
    entries = []
    for gpath, w, h, cname, _ in mods:
        if not w.mem:
            raise SystemExit(f"{w.path}: no dylink.0 memory info")
        base_global = None
        if w.elem_base is not None:
            if w.elem_base[0] != "global":
                raise SystemExit(f"{w.path}: element segment not at __table_base")
            gi = w.elem_base[1]
            if w.global_imports[gi] != ("env", "__table_base"):
                raise SystemExit(f"{w.path}: element segment not at __table_base")
            base_global = gi
        exps = []
        mod_decl, _ = declared(h, cname)
        for name, kind, idx in w.exports:
            c = mangle(name)
            if kind == 0:
                if c not in mod_decl:
                    raise SystemExit(f"{w.path}: export {name} not in its header")
                t = w.func_type(idx)
                elem = w.elem[idx] if (base_global is not None and idx in w.elem) else -1
                exps.append((name, f'{{"{name}", ABI_SYM_FUNC, (wasm_rt_function_ptr_t)Z_{cname}Z_{c}, '
                                   f'{tfunc(t)}, {elem}, NULL}}'))
            elif kind == 3:
                gidx = idx - len(w.global_imports)
                if gidx < 0 or w.globals[gidx][1]:
                    continue  # imported or mutable: not an address
                body.append(f"static uint32_t d_{cname}_{c}(void *i) "
                            f"{{ return *Z_{cname}Z_{c}(i); }}")
                exps.append((name, f'{{"{name}", ABI_SYM_DATA, NULL, NULL, -1, d_{cname}_{c}}}'))
        exps.sort(key=lambda x: x[0].encode())
        body.append(f"static const abi_symbol exports_{cname}[] = {{")
        body += [f"    {e[1]}," for e in exps] or ['    {"", 0, NULL, NULL, -1, NULL},']
        body.append("};")
        ids = sorted(got_id[n] for (mod, n, k, _) in w.imports if mod in ("GOT.mem", "GOT.func"))
        body.append(f"static const uint32_t got_{cname}[] = {{{', '.join(map(str, ids)) or '0'}}};")
        # instantiate adapter: wasm2c orders import instances by module name
        m = re.search(rf"void Z_{cname}_instantiate\(Z_{cname}_instance_t\*((?:, struct \w+\*)*)\);", h)
        if not m:
            raise SystemExit(f"{w.path}: no instantiate in header")
        order = re.findall(r"struct (\w+)\*", m.group(1))
        arg = {"Z_env_instance_t": "env", "Z_GOTZ2Emem_instance_t": "gm",
               "Z_GOTZ2Efunc_instance_t": "gf"}
        for o in order:
            if o not in arg:
                raise SystemExit(f"{w.path}: imports from unsupported module {o}")
        body.append(f"static void inst_{cname}(void *i, abi_host *env, "
                    f"struct Z_GOTZ2Emem_instance_t *gm, struct Z_GOTZ2Efunc_instance_t *gf) {{")
        body.append("    (void)env; (void)gm; (void)gf;")
        body.append(f"    Z_{cname}_instantiate(i{''.join(', ' + arg[o] for o in order)});")
        body.append("}")
        body.append(f"static void free_{cname}(void *i) {{ Z_{cname}_free(i); }}")
        has_relocs = "__wasm_apply_data_relocs" in mod_decl
        has_ctors = "__wasm_call_ctors" in mod_decl
        if has_relocs:
            body.append(f"static void relocs_{cname}(void *i) {{ Z_{cname}Z___wasm_apply_data_relocs(i); }}")
        if has_ctors:
            body.append(f"static void ctors_{cname}(void *i) {{ Z_{cname}Z___wasm_call_ctors(i); }}")
        body.append("")
        entries.append((gpath, w.mem, cname, len(exps), len(ids),
                        bool(has_relocs), bool(has_ctors)))
        for (mod, n, k, tidx) in w.imports:
            if mod == "env" and k == "func" and n not in host_defined and not n.startswith("invoke_"):
                t = w.types[tidx]
                prev = env_needed.get(n)
                if prev and prev[0] != t:
                    raise SystemExit(f"{w.path}: env.{n} imported with two signatures")
                env_needed.setdefault(n, (t, cname, h))

    # ---- env forwarders ----
    for n, (t, cname, h) in sorted(env_needed.items()):
        params, results = t
        ret = CTYPE[results[0]] if results else "void"
        formals = "".join(f", {CTYPE[p]} a{i}" for i, p in enumerate(params))
        actuals = "".join(f", a{i}" for i in range(len(params)))
        c = mangle(n)
        if n in ("getTempRet0", "setTempRet0"):
            target = "_emscripten_tempret_get" if n == "getTempRet0" else "_emscripten_tempret_set"
            call = f"Z_pgliteZ_{target}((Z_pglite_instance_t *)h->ex.mi{actuals})"
        elif n in main_funcs and main_funcs[n] == t and c in main_decl:
            call = f"Z_pgliteZ_{c}((Z_pglite_instance_t *)h->ex.mi{actuals})"
        else:
            call = None
        body.append(f"{ret} Z_envZ_{c}(struct Z_env_instance_t *h{formals}) {{")
        if call is None:
            body.append(f"   {''.join(f' (void)a{i};' for i in range(len(params)))}")
            body.append(f'    abi_dylink_missing(h, "{n}");')
        elif ret == "void":
            body.append(f"    {call};")
        else:
            body.append(f"    return {call};")
        body.append("}")
    body.append("")

    # ---- tables ----
    body.append("const abi_side_module abi_side_modules[] = {")
    for (gpath, mem, cname, nexp, ngot, rel, ctor) in entries:
        body.append(f'    {{"{gpath}", {mem[0]}u, {mem[1]}u, {mem[2]}u, sizeof(Z_{cname}_instance_t), '
                    f"Z_{cname}_init_module, inst_{cname}, free_{cname}, exports_{cname}, {nexp}, "
                    f"got_{cname}, {ngot}, {'relocs_' + cname if rel else 'NULL'}, "
                    f"{'ctors_' + cname if ctor else 'NULL'}}},")
    if not entries:
        body.append('    {"", 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL},')
    body.append("};")
    body.append(f"const size_t abi_side_module_count = {len(entries)};")
    body.append("")
    body.append("const abi_symbol abi_main_symbols[] = {")
    body += [f"    {s[1]}," for s in msyms]
    body.append("};")
    body.append(f"const size_t abi_main_symbol_count = {len(msyms)};")

    tdefs = []
    for k, (params, results) in sorted(types.items()):
        allt = "".join(", " + VALTYPE[x] for x in params + results)
        tdefs.append(f"static uint32_t ft_{k}(void) {{ static uint32_t id; if (!id) "
                     f"id = wasm_rt_register_func_type({len(params)}, {len(results)}{allt}); "
                     f"return id; }}")
    text = "\n".join(lines + tdefs + [""] + body) + "\n"
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main(sys.argv)
