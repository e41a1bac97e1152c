#!/usr/bin/env python3
"""Locate PostgreSQL's stack-depth variables in pglite.wasm.

usage: gen-stack-limit.py OUT.c PGLITE.wasm

PostgreSQL's check_stack_depth() (src/backend/utils/misc/stack_depth.c)
compares the address of a local variable with stack_base_ptr and errors out
when the distance exceeds max_stack_depth_bytes. In the wasm build that
distance is measured on the shadow stack in linear memory, which the
recursion of most C functions (whose locals are wasm locals, kept on the
native stack by wasm2c) barely moves. The engine (src/engine/stack.c) makes
the limit hold on the native stack too, and for that needs the linear-memory
addresses of both variables. Neither is exported; they are read here from
the body of the exported check_stack_depth, whose code (stack_is_too_deep
inlined) starts with

    i32.const &stack_base_ptr  i32.load  local.tee/set  i32.eqz  br_if
    i32.const &max_stack_depth_bytes  i32.load  ...

and that shape is checked: a runtime whose check_stack_depth looks different
stops the build here instead of poking the wrong words at run time.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wasmfile import leb_s, leb_u, name  # noqa: E402


def sections(b):
    if b[:4] != b"\0asm":
        sys.exit("gen-stack-limit: not a wasm module")
    i = 8
    while i < len(b):
        sid = b[i]
        size, j = leb_u(b, i + 1)
        yield sid, j, j + size
        i = j + size


def imported_funcs(b, start):
    n, i = leb_u(b, start)
    funcs = 0
    for _ in range(n):
        _, i = name(b, i)
        _, i = name(b, i)
        kind = b[i]
        i += 1
        if kind == 0:      # func: type index
            _, i = leb_u(b, i)
            funcs += 1
        elif kind == 1:    # table: reftype, limits
            i += 1
            flags, i = leb_u(b, i)
            _, i = leb_u(b, i)
            if flags & 1:
                _, i = leb_u(b, i)
        elif kind == 2:    # memory: limits
            flags, i = leb_u(b, i)
            _, i = leb_u(b, i)
            if flags & 1:
                _, i = leb_u(b, i)
        elif kind == 3:    # global: valtype, mutability
            i += 2
        elif kind == 4:    # tag
            i += 1
            _, i = leb_u(b, i)
        else:
            sys.exit(f"gen-stack-limit: unknown import kind {kind}")
    return funcs


def export_func(b, start, want):
    n, i = leb_u(b, start)
    for _ in range(n):
        nm, i = name(b, i)
        kind = b[i]
        idx, i = leb_u(b, i + 1)
        if nm == want and kind == 0:
            return idx
    return None


def func_body(b, start, index):
    n, i = leb_u(b, start)
    if index >= n:
        return None
    for _ in range(index):
        size, i = leb_u(b, i)
        i += size
    size, i = leb_u(b, i)
    return b[i:i + size]


def locate(body):
    """The two addresses, or None if the body has another shape."""
    i = 0
    ngroups, i = leb_u(body, i)
    for _ in range(ngroups):
        _, i = leb_u(body, i)
        i += 1
    # Scan for: i32.const A; i32.load; local.tee|local.set x; [local.get x;]
    # i32.eqz; br_if d; i32.const B; i32.load
    n = len(body)
    for k in range(i, n - 12):
        if body[k] != 0x41:
            continue
        try:
            a, j = leb_s(body, k + 1)
            if body[j] != 0x28:
                continue
            _, j = leb_u(body, j + 1)  # align
            off, j = leb_u(body, j)
            if off != 0 or body[j] not in (0x21, 0x22):
                continue
            tee = body[j] == 0x22
            x, j = leb_u(body, j + 1)
            if not tee:
                if body[j] != 0x20:
                    continue
                y, j = leb_u(body, j + 1)
                if y != x:
                    continue
            if body[j] != 0x45 or body[j + 1] != 0x0D:
                continue
            _, j = leb_u(body, j + 2)
            if body[j] != 0x41:
                continue
            m, j = leb_s(body, j + 1)
            if body[j] != 0x28:
                continue
            _, j = leb_u(body, j + 1)
            off2, j = leb_u(body, j)
            if off2 != 0:
                continue
        except IndexError:
            return None
        if a > 0 and m > 0 and a % 4 == 0 and m % 4 == 0 and a != m:
            return a, m
    return None


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    out, wasm = argv[1:]
    with open(wasm, "rb") as f:
        b = f.read()
    nimp = 0
    fidx = None
    body = None
    secs = list(sections(b))
    for sid, s, _ in secs:
        if sid == 2:
            nimp = imported_funcs(b, s)
        elif sid == 7:
            fidx = export_func(b, s, "check_stack_depth")
    if fidx is None:
        sys.exit(f"gen-stack-limit: {wasm} exports no check_stack_depth")
    for sid, s, _ in secs:
        if sid == 10:
            body = func_body(b, s, fidx - nimp)
    found = locate(body) if body else None
    if not found:
        sys.exit(f"gen-stack-limit: check_stack_depth in {wasm} does not have the "
                 "expected shape (stack_base_ptr test, then max_stack_depth_bytes); "
                 "src/engine/stack.c cannot enforce max_stack_depth on the native "
                 "stack of this runtime until this locator is updated")
    base_ptr, max_bytes = found
    text = (f"/* Generated by tools/build/gen-stack-limit.py from {os.path.basename(wasm)}."
            " Do not edit. */\n"
            "#include <stdint.h>\n\n"
            "/* Linear-memory addresses of PostgreSQL's stack_base_ptr and\n"
            " * max_stack_depth_bytes (src/backend/utils/misc/stack_depth.c). */\n"
            f"const uint32_t engine_pglite_stack_base_ptr = {base_ptr}u;\n"
            f"const uint32_t engine_pglite_max_stack_depth_bytes = {max_bytes}u;\n")
    tmp = f"{out}.{os.getpid()}.tmp"  # two targets may generate it at once
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv)
