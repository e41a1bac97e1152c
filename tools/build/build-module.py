#!/usr/bin/env python3
"""Compile one WebAssembly module to a native static archive, with a cache.

    build-module.py --wasm pglite.wasm --name pglite --out-dir D \
        [--cache-dir C] [--cc gcc] [--cflags "-O2"] [--jobs N] [--units 8]
        [--memory-access wasm2c|no-barrier|hoisted|segue]
        [--profile-generate | --profile-use PROFDATA] [--host-crc32c] [--lto]

Writes D/lib<name>_wasm.a and D/<name>.h (the wasm2c header: imports the host
must provide, exports it may call). --translate-only (with --translation-dir)
writes only the header, and --print-key only prints the archive's cache key
(tools/build/train-profile.py: a cached profile needs no instrumented build).

Steps on a cache miss:
  1. wasm2c -n NAME turns the module into one big C file and a header.
  2. The C file is split at function boundaries into one "main" unit (prelude,
     type table, globals, data and element segments, export wrappers,
     instantiate/free) and up to N units holding the function bodies,
     balanced by size. Bodies lose their `static`; every unit sees the
     prototypes through a generated internal header as hidden symbols.
     With --host-crc32c, the module's CRC-32C function (PostgreSQL's
     pg_comp_crc32c_sb8, found by its tables, see locate_crc32c) is a call
     of the host's pglite_crc32c instead. Instantiation writes the data
     segments unless the host's pgl_instantiate_without_data is set (a
     clone, whose memory is an image's).
  3. The units are compiled in parallel (with --lto to LLVM bitcode).
  4. The objects are combined into one relocatable object (with --lto by
     lld's ThinLTO, which optimises the units as one program and writes
     native code) whose hidden
     symbols are then made local (so two modules, e.g. pglite and initdb, can
     be linked into the same program), and archived.

The cache key covers everything that decides the archive's content: the
wasm's hash, the wasm2c version, the compiler's version and target, the
flags, the memory access, the profile's content, wasm-rt.h, the unit count,
the module name, --host-crc32c, --lto, and this script with the wasm reader it
uses (wasmfile.py). An entry
is C/<name>-<key>/ with a MANIFEST of every file's sha256 and size; an entry
that fails any check is deleted and rebuilt, never used.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wasmfile import Module, WasmError  # noqa: E402

FORMAT = 1
MANIFEST_MAGIC = "pglite-wasm-cache %d" % FORMAT
HIDDEN = '__attribute__((visibility("hidden")))'
MANDATORY_CFLAGS = ["-fno-strict-aliasing", "-fvisibility=hidden", "-fPIC"]


class BuildError(Exception):
    pass


class CorruptEntry(Exception):
    pass


def log(msg):
    print("pglite: " + msg, flush=True)


def warn(msg):
    print("pglite: " + msg, file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def run_text(argv):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           check=True, universal_newlines=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError("cannot run %s: %s" % (" ".join(argv), e))
    return r.stdout.strip()


# --------------------------------------------------------------------------
# Splitting wasm2c 1.0.32 output


PROTO_RE = re.compile(r"^static (.+?) (w2c_\w+)\((.*)\);$")
DEF_START_RE = re.compile(r"^static [^(;]*? (w2c_\w+)\(")
FUNC_TYPES_RE = re.compile(r"^static (\w[\w ]*?) func_types\[(\d*)\];$")
SHARED_DATA_RE = re.compile(
    r"^static (const [\w ]+?) ((?:data_segment_data|elem_segment_exprs)_\w+)\[\] = \{$")
SHARED_REF_RE = re.compile(r"\b(?:data_segment_data|elem_segment_exprs)_w2c_\w+")


# How the generated code reaches linear memory (--memory-access; part of the
# cache key):
#   wasm2c      as wasm2c writes it: every access loads the memory's base
#               from the instance (instance->memory->data, two dependent
#               loads, redone after every store since a store may alias
#               them), and every load's result passes through an empty asm
#               that GCC must keep in place and in order (so that a load
#               whose value is unused still traps when out of bounds);
#   no-barrier  the same without that asm: the guard pages still trap every
#               access that is made, a dead load may be dropped;
#   hoisted     no barrier, and each function reads the base once into a
#               local (the engine never moves a linear memory: an 8 GiB
#               reservation grown in place), so an access is one load or
#               store at base + address.
#   segue       no barrier, and the base is the gs segment's (x86-64, clang's
#               __seg_gs): an access is one gs-relative load or store, no
#               register holds the base. The engine points gs at the
#               instance's memory on every entry into guest code
#               (src/engine/segue.c). Only for a module with one memory.
MEMORY_ACCESS = ("wasm2c", "no-barrier", "hoisted", "segue")
LOAD_BARRIER = '    wasm_asm("" ::"r"(result));'
ACCESS_RE = re.compile(
    r"\b((?:i32|i64|f32|f64)_(?:load|store)\w*)\((&?instance->\w+), ")
DEFINE_ACCESS_RE = re.compile(r"^DEFINE_(LOAD|STORE)\((\w+), (.*)\)$")


def memory_access_prelude(prelude, mode):
    """The prelude lines, changed for mode (see MEMORY_ACCESS)."""
    if mode == "wasm2c":
        return prelude
    out, dropped = [], 0
    for line in prelude:
        if line.rstrip("\n").rstrip(" \\") == LOAD_BARRIER.rstrip():
            dropped += 1
            out.append("\\\n" if line.rstrip("\n").endswith("\\") else "\n")
            continue
        out.append(line)
    if dropped != 2:
        raise BuildError("unexpected wasm2c output: %d load barriers in DEFINE_LOAD, not 2 "
                         "(is this wasm2c 1.0.32?)" % dropped)
    defs = [DEFINE_ACCESS_RE.match(l.rstrip("\n")) for l in prelude]
    defs = [m for m in defs if m]
    if mode in ("hoisted", "segue") and len(defs) < 20:
        raise BuildError("unexpected wasm2c output: %d DEFINE_LOAD/STORE lines" % len(defs))
    if mode == "segue":
        out.append("\n/* build-module.py --memory-access segue: accesses relative to the gs\n"
                   " * segment, whose base the engine sets to this instance's memory\n"
                   " * (the guard pages trap what is out of bounds). */\n"
                   "#if !WASM_RT_MEMCHECK_SIGNAL_HANDLER || !defined(__x86_64__) || "
                   "!defined(__clang__)\n"
                   "#error \"--memory-access segue needs clang, x86-64 and guard pages\"\n"
                   "#endif\n"
                   "/* Only a host that sets gs defines this (src/engine/segue.c): any\n"
                   " * other fails to link instead of faulting at run time. */\n"
                   "extern const char pglite_segue_host;\n"
                   "static const char* const pglite_segue_check __attribute__((used)) =\n"
                   "    &pglite_segue_host;\n"
                   "#define DEFINE_LOAD_GS(name, t1, t2, t3)                   \\\n"
                   "  static inline t3 name##_gs(u64 addr) {                 \\\n"
                   "    struct __attribute__((packed)) w { t1 v; };          \\\n"
                   "    return (t3)(t2)((const __seg_gs struct w*)(uintptr_t)addr)->v; \\\n"
                   "  }\n"
                   "#define DEFINE_STORE_GS(name, t1, t2)                      \\\n"
                   "  static inline void name##_gs(u64 addr, t2 value) {     \\\n"
                   "    struct __attribute__((packed)) w { t1 v; };          \\\n"
                   "    ((__seg_gs struct w*)(uintptr_t)addr)->v = (t1)value; \\\n"
                   "  }\n")
    if mode == "hoisted":
        out.append("\n/* build-module.py --memory-access hoisted: accesses at a base that\n"
                   " * each function read once (the guard pages trap what is out of\n"
                   " * bounds). */\n"
                   "#if !WASM_RT_MEMCHECK_SIGNAL_HANDLER || WABT_BIG_ENDIAN\n"
                   "#error \"--memory-access hoisted needs guard pages on a little-endian host\"\n"
                   "#endif\n"
                   "#define DEFINE_LOAD_MB(name, t1, t2, t3)                   \\\n"
                   "  static inline t3 name##_mb(u8* mb, u64 addr) {         \\\n"
                   "    t1 result;                                           \\\n"
                   "    wasm_rt_memcpy(&result, mb + addr, sizeof(t1));      \\\n"
                   "    return (t3)(t2)result;                               \\\n"
                   "  }\n"
                   "#define DEFINE_STORE_MB(name, t1, t2)                      \\\n"
                   "  static inline void name##_mb(u8* mb, u64 addr, t2 value) { \\\n"
                   "    t1 wrapped = (t1)value;                              \\\n"
                   "    wasm_rt_memcpy(mb + addr, &wrapped, sizeof(t1));     \\\n"
                   "  }\n")
    # every load and store of the prelude again, in the mode's way
    suffix = {"hoisted": "MB", "segue": "GS"}.get(mode)
    for m in defs if suffix else ():
        out.append("DEFINE_%s_%s(%s, %s)\n" % (m.group(1), suffix, m.group(2), m.group(3)))
    return out


def hoist_body(body):
    """A function body's lines with its memory accesses at hoisted bases."""
    open_at = next((k for k, line in enumerate(body[:64]) if line.rstrip().endswith("{")), None)
    if open_at is None:
        raise BuildError("unexpected wasm2c output: no '{' opens %s" % body[0][:120])
    mems = {}

    def sub(m):
        expr = m.group(2)
        if expr not in mems:
            mems[expr] = "w2c_mb%d" % len(mems)
        return "%s_mb(%s, " % (m.group(1), mems[expr])

    rest = [ACCESS_RE.sub(sub, line) for line in body[open_at + 1:]]
    if not mems:
        return body
    decls = ["  u8* const %s = (%s)->data;\n" % (v, e) for e, v in mems.items()]
    return body[:open_at + 1] + decls + rest


def segue_body(body, memories):
    """A function body's lines with its memory accesses gs-relative; adds
    the memories it reaches to the set memories."""
    def sub(m):
        memories.add(m.group(2))
        return "%s_gs(" % m.group(1)
    return [ACCESS_RE.sub(sub, line) for line in body]


# --------------------------------------------------------------------------
# --host-crc32c
#
# PostgreSQL built for WebAssembly computes CRC-32C (every WAL record, every
# page with checksums, pg_control) with its portable slicing-by-8 code, a
# table lookup per byte; x86-64's crc32 instruction does 8 bytes at once.
# The function is found by what it is: the one function of signature
# (i32, i32, i32) -> i32 that names the address of the eight 256-entry
# tables of the Castagnoli polynomial in the module's data.

CRC32C_POLY = 0x82F63B78
CRC32C_HOST = "pglite_crc32c"

# A clone's instance is instantiated and then given the image's memory,
# which holds everything its data segments would have written: the host
# sets this (per thread) around such an instantiation, and the module's
# init_memories then allocates its memories but writes no data segment
# (2.5 MB for pglite.wasm).
WITHOUT_DATA = "pgl_instantiate_without_data"
WITHOUT_DATA_DECL = "extern _Thread_local int %s;\n" % WITHOUT_DATA


def without_data(main, c_path):
    """The main unit's lines, init_memories returning before its first
    LOAD_DATA while WITHOUT_DATA is set."""
    out, inside, found = [], False, 0
    for line in main:
        if line.startswith("static void init_memories("):
            inside = True
        elif inside and line.startswith("}"):
            inside = False
        elif inside and line.startswith("  LOAD_DATA(") and not found:
            out.append("  if (%s)\n    return;\n" % WITHOUT_DATA)
            found = 1
        elif inside and found and not line.startswith("  LOAD_DATA("):
            raise BuildError("%s: init_memories does more than allocate memories and "
                             "then load data segments (is this wasm2c 1.0.32?): %s"
                             % (c_path, line.strip()))
        out.append(line)
    return out
CRC32C_DEF_RE = re.compile(r"^static u32 (w2c_\w+)\(\w+\* instance, u32 w2c_p0, u32 w2c_p1, "
                           r"u32 w2c_p2\) \{$")


def crc32c_tables():
    """The slicing-by-8 tables, as PostgreSQL's pg_crc32c_table holds
    them (little-endian)."""
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (CRC32C_POLY if c & 1 else 0)
        t0.append(c)
    rows = [t0]
    for _ in range(7):
        rows.append([(x >> 8) ^ t0[x & 0xFF] for x in rows[-1]])
    return b"".join(struct.pack("<256I", *r) for r in rows)


def locate_crc32c(wasm_path):
    """The address of the module's CRC-32C tables, which exactly one function
    (crc, data, len) -> crc uses."""
    try:
        with open(wasm_path, "rb") as f:
            m = Module(f.read())
        tables = crc32c_tables()
        at = [off + d.find(tables) for off, d in m.data if d.find(tables) >= 0]
        if len(at) != 1:
            raise BuildError("--host-crc32c: %d copies of the CRC-32C tables in %s, not 1"
                             % (len(at), wasm_path))
        funcs = [f for f in m.const_users(at[0]) if m.signature(f) == ("iii", "i")]
    except WasmError as e:
        raise BuildError("--host-crc32c: cannot read %s: %s" % (wasm_path, e))
    if len(funcs) != 1:
        raise BuildError("--host-crc32c: %d functions (crc, data, len) -> crc use the tables at "
                         "%d in %s, not 1" % (len(funcs), at[0], wasm_path))
    return at[0]


def crc32c_function(lines, bodies, table):
    """The index in bodies of the function (crc, data, len) -> crc whose
    code names the tables' address, as wasm2c wrote it (whatever name it
    gave the function)."""
    const = re.compile(r"\b%du;" % table)
    found = [k for k, (s, e) in enumerate(bodies)
             if CRC32C_DEF_RE.match(lines[s].rstrip("\n"))
             and any(const.search(lines[j]) for j in range(s, e))]
    if len(found) != 1:
        raise BuildError("--host-crc32c: %d translated functions (crc, data, len) -> crc name "
                         "the tables at %d, not 1" % (len(found), table))
    return found[0]


def crc32c_body(body):
    """The CRC-32C function's lines as a call of the host's."""
    mem = next((a.group(2) for line in body for a in [ACCESS_RE.search(line)] if a), None)
    if not mem:
        raise BuildError("--host-crc32c: no memory access in %s" % body[0][:120])
    return [body[0], "  return %s(%s, w2c_p0, w2c_p1, w2c_p2);\n" % (CRC32C_HOST, mem), "}\n"]


def split_module(c_path, name, units, memory_access="wasm2c", crc32c=None):
    """Return (main_text, internal_header_text, [unit_texts]) for the file;
    crc32c: the address of the CRC-32C tables, whose function becomes a
    call of the host's."""
    with open(c_path, "r", encoding="utf-8", errors="surrogateescape") as f:
        lines = f.readlines()

    include_line = '#include "%s.h"\n' % name
    # The prelude (includes, macros, static inline helpers) ends where the
    # module-specific part starts.
    prelude_end = None
    for i, line in enumerate(lines):
        if line.startswith("static bool s_module_initialized") or FUNC_TYPES_RE.match(line):
            prelude_end = i
            break
    if prelude_end is None or include_line not in lines[:prelude_end]:
        raise BuildError("unexpected wasm2c output in %s: no prelude/module boundary "
                         "(is this wasm2c 1.0.32?)" % c_path)
    prelude = memory_access_prelude(lines[:prelude_end], memory_access)

    protos = {}         # name -> (ret, params)
    proto_lines = set()
    for i in range(prelude_end, len(lines)):
        m = PROTO_RE.match(lines[i])
        if m:
            protos[m.group(2)] = (m.group(1), m.group(3))
            proto_lines.add(i)

    # Function bodies: from a definition line of a prototyped function to the
    # first top-level "}".
    bodies = []         # (start, end_exclusive)
    i = prelude_end
    n = len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("static ") and i not in proto_lines:
            m = DEF_START_RE.match(line)
            if m and m.group(1) in protos:
                j = i + 1
                while j < n and lines[j] != "}\n" and lines[j] != "}":
                    j += 1
                if j >= n:
                    raise BuildError("unterminated function %s in %s" % (m.group(1), c_path))
                bodies.append((i, j + 1))
                i = j + 1
                continue
        i += 1
    if len(bodies) != len(protos):
        raise BuildError("found %d function bodies for %d prototypes in %s"
                         % (len(bodies), len(protos), c_path))

    in_body = bytearray(n)
    for s, e in bodies:
        for k in range(s, e):
            in_body[k] = 1

    # Static data referenced by the bodies must be defined once and shared.
    shared_refs = set()
    for s, e in bodies:
        for k in range(s, e):
            if "_segment_" in lines[k]:
                shared_refs.update(SHARED_REF_RE.findall(lines[k]))

    hdr = []
    hdr.append("/* Generated by build-module.py: internal declarations shared by the\n"
               " * translation units of module %s. Not part of any interface. */\n" % name)
    hdr.append("#ifndef W2C_SPLIT_%s_INTERNAL_H\n#define W2C_SPLIT_%s_INTERNAL_H\n"
               % (name.upper(), name.upper()))

    main = []
    func_types_found = False
    for k in range(prelude_end, n):
        if in_body[k] or k in proto_lines:
            continue
        line = lines[k]
        m = FUNC_TYPES_RE.match(line)
        if m:
            func_types_found = True
            hdr.append("extern %s %s func_types[%s];\n" % (HIDDEN, m.group(1), m.group(2)))
            main.append("%s %s func_types[%s];\n" % (HIDDEN, m.group(1), m.group(2)))
            continue
        m = SHARED_DATA_RE.match(line)
        if m and m.group(2) in shared_refs:
            hdr.append("extern %s %s %s[];\n" % (HIDDEN, m.group(1), m.group(2)))
            main.append("%s %s %s[] = {\n" % (HIDDEN, m.group(1), m.group(2)))
            shared_refs.discard(m.group(2))
            continue
        main.append(line)
    if shared_refs:
        raise BuildError("function bodies use data not found at top level: %s"
                         % ", ".join(sorted(shared_refs)[:5]))
    if bodies and not func_types_found:
        # Only a problem if a body actually needs it; the compiler will say so.
        pass

    for fname, (ret, params) in protos.items():
        hdr.append("%s %s %s(%s);\n" % (HIDDEN, ret, fname, params))
    crc_body = crc32c_function(lines, bodies, crc32c) if crc32c is not None else None
    if crc_body is not None:
        hdr.append("u32 %s(wasm_rt_memory_t *mem, u32 crc, u32 data, u32 len);\n" % CRC32C_HOST)
    hdr.append("#endif\n")

    internal_name = "%s_internal.h" % name
    inc_internal = '#include "%s"\n' % internal_name

    # Main unit: the public header's declarations keep default visibility so
    # the export wrappers and instantiate/free stay callable from outside.
    main_prelude = []
    for line in prelude:
        if line == include_line:
            main_prelude.append('#pragma GCC visibility push(default)\n')
            main_prelude.append(line)
            main_prelude.append('#pragma GCC visibility pop\n')
        else:
            main_prelude.append(line)
    main_text = ("".join(main_prelude) + inc_internal + WITHOUT_DATA_DECL
                 + "".join(without_data(main, c_path)))

    # Body units, balanced by size (largest first onto the lightest unit);
    # the functions run once at load in a unit of their own (RUN_ONCE).
    sized, once = [], []
    for idx, (s, e) in enumerate(bodies):
        if DEF_START_RE.match(lines[s]).group(1) in RUN_ONCE:
            once.append(idx)
            continue
        size = sum(len(lines[k]) for k in range(s, e))
        sized.append((size, idx))
    n_units = max(0, min(units, len(sized)))
    buckets = [[0, []] for _ in range(n_units)]
    for size, idx in sorted(sized, reverse=True):
        b = min(buckets, key=lambda x: x[0])
        b[0] += size
        b[1].append(idx)
    if once:
        buckets.append([0, once])
    prelude_text = "".join(prelude)
    unit_texts = []
    memories = set()
    for total, idxs in buckets:
        parts = [prelude_text, inc_internal]
        for idx in sorted(idxs):           # keep source order inside a unit
            s, e = bodies[idx]
            first = lines[s]
            assert first.startswith("static ")
            body = lines[s:e]
            if idx == crc_body:
                body = crc32c_body(body)
            if memory_access == "hoisted":
                body = hoist_body(body)
            elif memory_access == "segue":
                body = segue_body(body, memories)
            parts.append("\n")
            parts.append(first[len("static "):])
            parts.extend(body[1:])
        unit_texts.append("".join(parts))
    if len(memories) > 1:
        raise BuildError("--memory-access segue: %s reaches %d memories (%s); gs holds one"
                         % (name, len(memories), ", ".join(sorted(memories))))
    once_text = unit_texts.pop() if once else None
    return main_text, internal_name, "".join(hdr), unit_texts, once_text, len(bodies)


# Functions a module runs once, when it is loaded, made of one long
# straight line of stores: a side module's data relocations (137,000 lines
# of C in pgcrypto's, 74,000 in dict_snowball's). Their unit is compiled at
# -O0 (as native code, without instrumentation): at -O2, clang's register
# allocation of pgcrypto's took 52 s and 1.5 GB (its other units: 15 s),
# for a function a load runs once.
RUN_ONCE = {"w2c___wasm_apply_data_relocs"}


def once_cflags(cflags):
    return [f for f in cflags if not f.startswith(("-O", "-flto", "-fprofile-instr"))] + ["-O0"]


# --------------------------------------------------------------------------
# Compiling


def compile_units(cc, cflags, srcs, jobs, workdir):
    """Compile srcs (list of (label, path) or (label, path, own cflags))
    with at most `jobs` at once.

    Prints one line per unit as it finishes. Returns object paths."""
    pending = sorted(srcs, key=lambda s: -os.path.getsize(s[1]))
    running = {}        # pid -> (label, proc, obj, logpath, t0, logfile)
    objs = {}
    failed = []
    total = len(pending)
    done = 0
    while pending or running:
        while pending and len(running) < jobs and not failed:
            unit = pending.pop(0)
            label, src = unit[:2]
            flags = unit[2] if len(unit) > 2 else cflags
            obj = os.path.splitext(src)[0] + ".o"
            logpath = os.path.splitext(src)[0] + ".log"
            lf = open(logpath, "wb")
            # The source by its name in workdir (the cwd), not by the
            # temporary directory's path: clang's profile instrumentation
            # names a static function after its file, and that name would
            # make every instrumented build's bytes (and the key of the
            # profile trained on it) differ.
            argv = cc + flags + ["-c", os.path.relpath(src, workdir), "-o", obj]
            proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, cwd=workdir)
            running[proc.pid] = (label, proc, obj, logpath, time.monotonic(), lf)
        if not running:
            break
        pid, status, ru = os.wait4(-1, 0)
        if pid not in running:
            continue
        label, proc, obj, logpath, t0, lf = running.pop(pid)
        lf.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        done += 1
        secs = time.monotonic() - t0
        if proc.returncode != 0:
            failed.append((label, logpath, proc.returncode))
            log("[%d/%d] unit %s FAILED after %.1f s" % (done, total, label, secs))
            for other in running.values():      # no point finishing the rest
                other[1].kill()
        else:
            objs[label] = obj
            log("[%d/%d] unit %s compiled in %.1f s (cpu %.1f s, max rss %d MB)"
                % (done, total, label, secs, ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024))
    if failed:
        label, logpath, rc = failed[0]
        with open(logpath, "r", errors="replace") as f:
            tail = f.read()[-4000:]
        raise BuildError("compiling unit %s failed (exit %d):\n%s" % (label, rc, tail))
    return [objs[unit[0]] for unit in srcs]


def script_hash():
    """This script and the wasm reader it uses (part of both keys)."""
    h = hashlib.sha256()
    for path in (os.path.abspath(__file__), os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "wasmfile.py")):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def translation_key(args, units):
    """What the generated C depends on: the module, wasm2c, this script
    and the split's options (not the compiler or its flags)."""
    blob = json.dumps({"format": FORMAT, "name": args.name, "wasm": sha256_file(args.wasm),
                       "wasm2c": run_text([args.wasm2c, "--version"]), "units": units,
                       "memory_access": args.memory_access, "host_crc32c": args.host_crc32c,
                       "script": script_hash()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def translate(args, units, work):
    """wasm2c and the split into work: [(label, file name)] of the units
    (main first), and the number of functions."""
    name = args.name
    t0 = time.monotonic()
    c_path = os.path.join(work, name + ".c")
    r = subprocess.run([args.wasm2c, "-n", name, os.path.abspath(args.wasm), "-o", c_path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        raise BuildError("wasm2c failed on %s:\n%s" % (args.wasm, r.stdout[-4000:]))
    log("wasm2c %s: %.1f s, %d MB of C" % (os.path.basename(args.wasm), time.monotonic() - t0,
                                           os.path.getsize(c_path) >> 20))

    t1 = time.monotonic()
    crc32c = locate_crc32c(args.wasm) if args.host_crc32c else None
    main_text, internal_name, hdr_text, unit_texts, once_text, nfuncs = split_module(
        c_path, name, units, args.memory_access, crc32c)
    os.unlink(c_path)
    with open(os.path.join(work, internal_name), "w") as f:
        f.write(hdr_text)
    files = [("main", main_text)] + [("f%d" % k, t) for k, t in enumerate(unit_texts)]
    if once_text is not None:
        files.append(("once", once_text))
    srcs = []
    for label, text in files:
        fn = "%s_%s.c" % (name, label)
        with open(os.path.join(work, fn), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        srcs.append((label, fn))
    log("split %d functions into %d units + main%s in %.1f s"
        % (nfuncs, len(unit_texts), " + once" if once_text is not None else "",
           time.monotonic() - t1))
    return srcs, nfuncs


def kept_translation(args, units):
    """The module's generated C kept in --translation-dir (a directory of
    the units, the internal header, <name>.h and UNITS), made there first
    if it is not: only the latest translation of each module is kept."""
    name = args.name
    tdir = os.path.abspath(args.translation_dir)
    kept = os.path.join(tdir, "%s-%s" % (name, translation_key(args, units)))
    if os.path.isfile(os.path.join(kept, "UNITS")):
        return kept
    os.makedirs(tdir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=tdir, prefix=".%s-" % name)
    try:
        srcs, nfuncs = translate(args, units, tmp)
        with open(os.path.join(tmp, "UNITS"), "w") as f:
            f.write(" ".join([str(nfuncs)] + [l for l, _ in srcs]) + "\n")
        for old in glob.glob(os.path.join(tdir, name + "-*")):
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, kept)
        except OSError:
            if not os.path.isfile(os.path.join(kept, "UNITS")):
                raise  # (else another build made the same one first)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return kept


def build(args, cc, cflags, units, dest, work):
    """Build lib<name>_wasm.a and <name>.h into dest (a fresh directory),
    using work (a fresh directory) for the intermediate files.

    With --translation-dir, the generated C is kept there for the next
    build of the same module with other compiler flags (pglite.wasm: the
    instrumented build, then the optimised one), which skips wasm2c and
    the split."""
    name = args.name
    t0 = time.monotonic()
    if args.translation_dir:
        kept = kept_translation(args, units)
        with open(os.path.join(kept, "UNITS")) as f:
            nfuncs, *labels = f.read().split()
        for fn in os.listdir(kept):
            if fn != "UNITS":
                shutil.copyfile(os.path.join(kept, fn), os.path.join(work, fn))
        srcs, nfuncs = [(l, "%s_%s.c" % (name, l)) for l in labels], int(nfuncs)
        log("generated C of %s from %s in %.1f s" % (name, kept, time.monotonic() - t0))
    else:
        srcs, nfuncs = translate(args, units, work)
    srcs = [(l, os.path.join(work, fn)) + ((once_cflags(cflags) + ["-I", work],) if l == "once" else ())
            for l, fn in srcs]

    t2 = time.monotonic()
    objs = compile_units(cc, cflags + ["-I", work], srcs, args.jobs, work)
    log("compiled %d units in %.1f s" % (len(objs), time.monotonic() - t2))

    # One relocatable object; hidden symbols become local so that several
    # modules (each with its own w2c_malloc, func_types, ...) can be linked
    # into one program.
    # With --lto the units are LLVM bitcode: lld optimises them as one
    # program (ThinLTO: each unit's functions can inline the others'), with
    # as many jobs, and writes native code.
    combined = os.path.join(work, "%s_wasm.o" % name)
    # Its code comes out a section per function (.text.w2c_f1, .text.hot.
    # ..., .text.unlikely....); a linker script gathers them into one .text
    # (the hot ones first), the section the engine's build renames to
    # wasm_guest_text, whose bounds tell its stop handler that a thread
    # runs guest code.
    lto = []
    if args.lto:
        script = os.path.join(work, "sections.ld")
        with open(script, "w") as f:
            f.write("SECTIONS {\n  .text : { *(.text.hot .text.hot.*) *(.text .text.*) }\n}\n")
        lto = ["-flto=thin", "-fuse-ld=lld", "-Wl,--thinlto-jobs=%d" % args.jobs,
               "-Wl,-T," + script] + [f for f in cflags if f.startswith("-O")]
    r = subprocess.run(cc + ["-r", "-nostdlib"] + lto + ["-o", combined] + objs,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        raise BuildError("partial link failed:\n" + r.stdout[-4000:])
    r = subprocess.run([args.objcopy, "--localize-hidden", combined],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        raise BuildError("objcopy --localize-hidden failed:\n" + r.stdout[-4000:])
    lib = os.path.join(dest, "lib%s_wasm.a" % name)
    r = subprocess.run([args.ar, "rcsD", lib, combined],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        raise BuildError("ar failed:\n" + r.stdout[-4000:])
    shutil.copyfile(os.path.join(work, name + ".h"), os.path.join(dest, name + ".h"))
    if args.keep_work:
        log("kept intermediate files in %s" % work)
    log("built lib%s_wasm.a (%d MB) in %.1f s"
        % (name, os.path.getsize(lib) >> 20, time.monotonic() - t0))


# --------------------------------------------------------------------------
# Cache entries


def outputs(name):
    return ["lib%s_wasm.a" % name, "%s.h" % name]


def write_manifest(entry, key, name):
    lines = [MANIFEST_MAGIC, "key " + key]
    for fn in outputs(name):
        p = os.path.join(entry, fn)
        lines.append("file %s %d %s" % (sha256_file(p), os.path.getsize(p), fn))
    tmp = os.path.join(entry, "MANIFEST.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(entry, "MANIFEST"))


def verify_entry(entry, key, name):
    """Raise CorruptEntry unless every file of the entry checks out."""
    mpath = os.path.join(entry, "MANIFEST")
    try:
        with open(mpath, "r") as f:
            text = f.read()
    except FileNotFoundError:
        raise CorruptEntry("no MANIFEST")
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptEntry("MANIFEST unreadable: %s" % e)
    lines = text.splitlines()
    if len(lines) < 2 or lines[0] != MANIFEST_MAGIC:
        raise CorruptEntry("MANIFEST has a bad header")
    if lines[1] != "key " + key:
        raise CorruptEntry("MANIFEST is for another key")
    listed = {}
    for line in lines[2:]:
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[0] != "file" or not re.fullmatch(r"[0-9a-f]{64}", parts[1]) \
                or not parts[2].isdigit() or "/" in parts[3]:
            raise CorruptEntry("MANIFEST line malformed: %r" % line[:80])
        listed[parts[3]] = (parts[1], int(parts[2]))
    for fn in outputs(name):
        if fn not in listed:
            raise CorruptEntry("MANIFEST does not list %s" % fn)
    for fn, (digest, size) in listed.items():
        p = os.path.join(entry, fn)
        try:
            st = os.stat(p)
            if st.st_size != size:
                raise CorruptEntry("%s has %d bytes, MANIFEST says %d" % (fn, st.st_size, size))
            got = sha256_file(p)
        except OSError as e:
            raise CorruptEntry("%s unreadable: %s" % (fn, e))
        if got != digest:
            raise CorruptEntry("%s sha256 mismatch" % fn)
    return {fn: listed[fn][0] for fn in outputs(name)}


def install(src_dir, out_dir, name, digests=None):
    """Copy the outputs into out_dir atomically (fresh mtimes, no hardlinks:
    a later edit in out_dir must never reach the cache). With digests, each
    copy is checked again, so an entry changed after verify_entry() is
    caught too."""
    os.makedirs(out_dir, exist_ok=True)
    for fn in outputs(name):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".%s." % fn)
        os.close(fd)
        try:
            shutil.copyfile(os.path.join(src_dir, fn), tmp)
            if digests is not None and sha256_file(tmp) != digests[fn]:
                raise CorruptEntry("%s changed while being copied" % fn)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(out_dir, fn))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def remove_tree(path):
    def onerror(func, p, exc):
        # Make directories writable so their contents can go.
        try:
            os.chmod(os.path.dirname(p), 0o755)
            os.chmod(p, 0o755)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=onerror)
    return not os.path.lexists(path)


def clean_stale_tmp(cache_dir):
    """Remove tmp-* dirs older than a day (left by killed builds)."""
    try:
        now = time.time()
        for e in os.scandir(cache_dir):
            if e.name.startswith("tmp-") and e.is_dir(follow_symlinks=False):
                if now - e.stat(follow_symlinks=False).st_mtime > 86400:
                    remove_tree(e.path)
    except OSError:
        pass


# --------------------------------------------------------------------------


def find_wasm_rt_include(cc):
    for d in ("/usr/include", "/usr/local/include", "/usr/share/wabt/wasm2c"):
        if os.path.exists(os.path.join(d, "wasm-rt.h")):
            return d
    raise BuildError("wasm-rt.h not found; pass --wasm-rt-include (Debian: apt-get install wabt)")


def compute_key(args, cc, cflags, units, wasm_rt_h):
    cc_version = run_text(cc + ["--version"]).splitlines()[0]
    target = run_text(cc + ["-dumpmachine"])
    inputs = {
        "format": FORMAT,
        "name": args.name,
        "memory_access": args.memory_access,
        "wasm_sha256": sha256_file(args.wasm),
        "wasm2c": run_text([args.wasm2c, "--version"]),
        "cc": cc_version,
        "target": target,
        "cflags": cflags,
        # profile-guided: the profile's content, not its path
        "profile_use": sha256_file(args.profile_use) if args.profile_use else None,
        "wasm_rt_h": sha256_file(wasm_rt_h),
        "units": units,
        "host_crc32c": args.host_crc32c,
        "lto": args.lto,
        "script": script_hash(),
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32], inputs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--name", required=True, help="module name for wasm2c -n (C identifier)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None,
                    help="default: $XDG_CACHE_HOME/pglite or ~/.cache/pglite")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--cflags", default="-O2")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--wasm2c", default="wasm2c")
    ap.add_argument("--ar", default="ar")
    ap.add_argument("--objcopy", default="objcopy")
    ap.add_argument("--wasm-rt-include", default=None)
    ap.add_argument("--memory-access", default="hoisted", choices=MEMORY_ACCESS,
                    help="how generated code reaches linear memory (see MEMORY_ACCESS)")
    ap.add_argument("--profile-generate", action="store_true",
                    help="instrument for a profile (clang -fprofile-instr-generate)")
    ap.add_argument("--profile-use", default=None, metavar="PROFDATA",
                    help="optimise with this profile (clang -fprofile-instr-use; "
                         "its content is part of the cache key)")
    ap.add_argument("--host-crc32c", action="store_true",
                    help="the module's CRC-32C computed by the host (see locate_crc32c)")
    ap.add_argument("--lto", action="store_true",
                    help="link-time optimisation of the units together (clang and lld: "
                         "-flto=thin, then lld's partial link)")
    ap.add_argument("--keep-work", action="store_true", help="keep generated C and objects")
    ap.add_argument("--translation-dir", default=None,
                    help="keep the generated C here, and take it from here when the module, "
                         "wasm2c and the split's options are the same")
    ap.add_argument("--translate-only", action="store_true",
                    help="with --translation-dir: make the generated C there, and write only "
                         "D/<name>.h (the header is the same whatever the compiler's flags)")
    ap.add_argument("--print-key", action="store_true",
                    help="print the cache key of the archive these arguments build, and exit")
    args = ap.parse_args()

    if args.translate_only and not args.translation_dir:
        ap.error("--translate-only needs --translation-dir")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args.name):
        ap.error("--name must be a C identifier")
    if args.units < 1 or args.jobs < 1:
        ap.error("--units and --jobs must be >= 1")
    if not os.path.isfile(args.wasm):
        ap.error("no such wasm file: %s" % args.wasm)
    if args.cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        args.cache_dir = os.path.join(base, "pglite")
    args.cache_dir = os.path.abspath(args.cache_dir)
    cc = shlex.split(args.cc)
    inc = args.wasm_rt_include or find_wasm_rt_include(cc)
    wasm_rt_h = os.path.join(inc, "wasm-rt.h")
    if not os.path.isfile(wasm_rt_h):
        raise BuildError("no wasm-rt.h in %s" % inc)
    # The include dir is a path, not content: keep it out of the key (the
    # key has wasm-rt.h's hash instead).
    cflags = shlex.split(args.cflags) + MANDATORY_CFLAGS
    if args.profile_generate:
        # Unoptimised: clang's front-end instrumentation counts source
        # regions, the same at every optimisation level, so the -O2 build
        # takes this profile as it would one trained at -O2 (pglite.wasm,
        # SQL suite: 98.2 % edge overlap between the two). Compiling it took
        # 193 s at -O2 and 50 s at -O0; training, 8.8 s and 43 s.
        cflags = [f for f in cflags if not f.startswith("-O")] + ["-O0", "-fprofile-instr-generate"]
    if args.lto:
        if "clang" not in run_text(cc + ["--version"]).splitlines()[0]:
            raise BuildError("--lto needs clang as --cc (apt-get install clang)")
        # the lld that -fuse-ld=lld runs: the compiler's own version's
        lld = run_text(cc + ["-print-prog-name=ld.lld"]).strip()
        if not (os.path.isabs(lld) and os.access(lld, os.X_OK)) and not shutil.which(lld):
            raise BuildError("--lto needs lld's ld.lld for %s (apt-get install lld-19 for "
                             "clang-19)" % cc[0])
        cflags.append("-flto=thin")
    if args.profile_use and not os.path.isfile(args.profile_use):
        ap.error("no such profile: %s" % args.profile_use)
    units = args.units
    out_dir = os.path.abspath(args.out_dir)
    name = args.name

    t0 = time.monotonic()
    if args.translate_only:
        # The header is cached by the translation's key (and named after
        # its own hash, checked on use): a build that finds it runs no
        # wasm2c unless a module it compiles is not cached.
        src = None
        prefix = os.path.join(args.cache_dir, "%s-%s-" % (name, translation_key(args, units)))
        for p in ([] if args.no_cache else glob.glob(prefix + "*.h")):
            if sha256_file(p)[:16] == p[len(prefix):-2]:
                src = p
                break
            warn("cached header %s is corrupt; translating again" % p)
            _unlink(p)
        if src is None:
            src = os.path.join(kept_translation(args, units), name + ".h")
            if not args.no_cache:
                try:
                    os.makedirs(args.cache_dir, exist_ok=True)
                    fd, t = tempfile.mkstemp(dir=args.cache_dir, prefix="tmp-h-")
                    os.close(fd)
                    shutil.copyfile(src, t)
                    os.chmod(t, 0o644)
                    os.replace(t, prefix + sha256_file(t)[:16] + ".h")
                except OSError as e:
                    warn("%s.h not cached (%s)" % (name, e))
        os.makedirs(out_dir, exist_ok=True)
        tmp_h = os.path.join(out_dir, ".%s.h.tmp" % name)
        shutil.copyfile(src, tmp_h)
        os.replace(tmp_h, os.path.join(out_dir, name + ".h"))
        log("%s.h ready in %s (%.1f s)" % (name, out_dir, time.monotonic() - t0))
        return 0
    key, inputs = compute_key(args, cc, cflags, units, wasm_rt_h)
    if args.print_key:
        print(key)
        return 0
    if args.memory_access == "segue" and (
            "clang" not in inputs["cc"] or not inputs["target"].startswith("x86_64")):
        raise BuildError("--memory-access segue needs clang for x86-64 (the gs address "
                         "space); --cc is %s for %s" % (inputs["cc"], inputs["target"]))
    cflags = cflags + ["-I", inc]
    if args.profile_use:
        cflags += ["-fprofile-instr-use=" + os.path.abspath(args.profile_use),
                   "-Wno-profile-instr-unprofiled", "-Wno-profile-instr-out-of-date"]
    entry = os.path.join(args.cache_dir, "%s-%s" % (name, key))

    # 1. A valid entry: use it.
    if not args.no_cache and os.path.lexists(entry):
        try:
            if not os.path.isdir(entry):
                raise CorruptEntry("not a directory")
            digests = verify_entry(entry, key, name)
            install(entry, out_dir, name, digests)
            log("cache hit for %s (%s) in %.1f s" % (name, entry, time.monotonic() - t0))
            return 0
        except CorruptEntry as e:
            warn("cache entry %s is corrupt (%s); rebuilding" % (entry, e))
            if os.path.isdir(entry) and not os.path.islink(entry):
                removed = remove_tree(entry)
            else:
                removed = _unlink(entry)
            if not removed:
                warn("could not remove corrupt cache entry %s" % entry)

    # 2. Build, into the cache if we can write there.
    tmp = None
    if not args.no_cache:
        try:
            os.makedirs(args.cache_dir, exist_ok=True)
            clean_stale_tmp(args.cache_dir)
            tmp = tempfile.mkdtemp(dir=args.cache_dir, prefix="tmp-")
        except OSError as e:
            warn("cache dir %s is not writable (%s); building without cache"
                 % (args.cache_dir, e.strerror or e))
            tmp = None
    use_cache = tmp is not None
    if not use_cache:
        os.makedirs(out_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=out_dir, prefix=".build-%s-" % name)
    log("cache miss for %s: building %s (key %s, %d units, %d jobs)"
        % (name, os.path.basename(args.wasm), key, units, args.jobs))
    if args.keep_work:
        work = os.path.join(out_dir, "%s.work" % name)
        if os.path.isdir(work):
            remove_tree(work)
        os.makedirs(work)
    else:
        work = os.path.join(tmp, "work")
        os.makedirs(work)
    try:
        build(args, cc, cflags, units, tmp, work)
        if not args.keep_work:
            remove_tree(work)
        if use_cache:
            write_manifest(tmp, key, name)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, entry)
                src = entry
            except OSError:
                # Another build won the race: use its entry if it is sound.
                try:
                    digests = verify_entry(entry, key, name)
                    install(entry, out_dir, name, digests)
                    log("another build stored %s first; using it" % entry)
                    src = None
                except CorruptEntry:
                    src = tmp
            if src:
                install(src, out_dir, name)
        else:
            install(tmp, out_dir, name)
    finally:
        if os.path.isdir(tmp):
            remove_tree(tmp)
    log("%s ready in %s (%.1f s)" % (name, out_dir, time.monotonic() - t0))
    return 0


def _unlink(p):
    try:
        os.unlink(p)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BuildError, OSError) as e:
        print("pglite: error: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
