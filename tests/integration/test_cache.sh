#!/usr/bin/env bash
# test_cache.sh BUILD_MODULE_PY [CC [CLANG]]
#
# The compiled-module cache of tools/build/build-module.py, on tiny modules
# made with wat2wasm: a cold build compiles and reports progress, a second
# build is a cache hit, a corrupt entry (flipped bytes, truncated archive,
# missing MANIFEST) is reported and rebuilt, an unwritable cache dir still
# builds, and the archives link and run (two modules in one program); each
# way of reaching linear memory (--memory-access) gives the same answers
# and still traps an out-of-bounds load; an instance made for a clone
# (pgl_instantiate_without_data) has its memory but no data segment; the
# key and the header alone are had without compiling (--print-key,
# --translate-only, the header cached and checked).
set -euo pipefail

bm=${1:?usage: test_cache.sh BUILD_MODULE_PY [CC [CLANG]]}
cc=${2:-cc}
clang=${3:-clang}   # the segue and profile cases (the build's clang)
rtimpl=/usr/share/wabt/wasm2c/wasm-rt-impl.c
command -v wat2wasm >/dev/null || { echo "wat2wasm not found (apt-get install wabt)"; exit 1; }
[ -f "$rtimpl" ] || { echo "$rtimpl not found"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pglite-test-cache.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"

fails=0
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
expect() { # expect DESCRIPTION FILE REGEX
    if grep -Eq -- "$3" "$2"; then ok "$1"; else fail "$1 (no /$3/ in $2:)"; sed 's/^/    /' "$2"; fi
}
expect_not() {
    if grep -Eq -- "$3" "$2"; then fail "$1 (unexpected /$3/ in $2:)"; sed 's/^/    /' "$2"; else ok "$1"; fi
}

# Module 1: imports a host function, has memory, a data segment, a table
# and several functions. Module 2 (one function) shares internal names with
# it (w2c_*, func_types): both must link into one program.
cat > calc.wat <<'WAT'
(module
  (type $un (func (param i32) (result i32)))
  (import "env" "host_add" (func $host_add (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\2a")
  (table 2 funcref)
  (elem (i32.const 0) $double $square)
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  (func (export "calc") (param $x i32) (result i32)
    ;; host_add(double(x), square(x)) + mem[16]
    (i32.add
      (call $host_add
        (call_indirect (type $un) (local.get $x) (i32.const 0))
        (call_indirect (type $un) (local.get $x) (i32.const 1)))
      (i32.load8_u (i32.const 16))))
  ;; a load and a store at a base read once; the load out of bounds traps
  (func (export "peek") (param $a i32) (result i32)
    (i32.store (i32.const 32) (i32.add (i32.load8_u (i32.const 16)) (i32.const 1)))
    (i32.add (i32.load (i32.const 32)) (i32.load (local.get $a)))))
WAT
cat > one.wat <<'WAT'
(module (func (export "one") (result i32) (i32.const 1)))
WAT
wat2wasm calc.wat -o calc.wasm
wat2wasm one.wat -o one.wasm

cat > main.c <<'C'
#include <stdio.h>
#include "calc.h"
#include "one.h"
#include "wasm-rt-impl.h"
#ifdef SEGUE /* --memory-access segue: gs is the base of calc's memory */
#include <asm/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
const char pglite_segue_host = 1; /* this program sets gs */
#endif

struct Z_env_instance_t { int calls; };

/* Set by the host around the instantiation of a clone, whose memory
 * becomes an image's: no data segment is written. */
_Thread_local int pgl_instantiate_without_data;

u32 Z_envZ_host_add(struct Z_env_instance_t *env, u32 a, u32 b) {
    env->calls++;
    return a + b;
}

int main(void) {
    struct Z_env_instance_t env = {0};
    Z_calc_instance_t calc;
    Z_one_instance_t one;
    wasm_rt_init();
    Z_calc_init_module();
    Z_one_init_module();
    Z_calc_instantiate(&calc, &env);
    Z_one_instantiate(&one);
#ifdef SEGUE
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)calc.w2c_memory.data) != 0)
        return 1;
#endif
    /* 5 -> host_add(10, 25) + 42 = 77 */
    u32 r = Z_calcZ_calc(&calc, 5);
    u32 o = Z_oneZ_one(&one);
    printf("calc(5)=%u one=%u calls=%d", r, o, env.calls);
    /* 43 + mem[0] (0) = 43; then 4 GiB - 16: out of bounds */
    printf(" peek(0)=%u", Z_calcZ_peek(&calc, 0));
    wasm_rt_trap_t t = wasm_rt_impl_try();
    if (t == WASM_RT_TRAP_NONE)
        printf(" oob=%u", Z_calcZ_peek(&calc, 0xfffffff0u));
    else
        printf(" oob:%s", t == WASM_RT_TRAP_OOB ? "trap" : "other trap");
    /* an instance without its data segment: mem[16] is 0, calc(5) 35 */
    Z_calc_instance_t bare;
    pgl_instantiate_without_data = 1;
    Z_calc_instantiate(&bare, &env);
    pgl_instantiate_without_data = 0;
#ifdef SEGUE
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)bare.w2c_memory.data) != 0)
        return 1;
#endif
    printf(" bare=%u\n", Z_calcZ_calc(&bare, 5));
    Z_calc_free(&bare);
    Z_calc_free(&calc);
    Z_one_free(&one);
    wasm_rt_free();
    return 0;
}
C

build() { # build CACHE_DIR OUT_DIR LOG [MODULE [MEMORY_ACCESS [CC]]]
    local mod=${4:-calc}
    python3 "$bm" --wasm "$mod.wasm" --name "$mod" --out-dir "$2" --cache-dir "$1" \
        --cc "${6:-$cc}" --cflags=-O1 --jobs 2 --units 5 --memory-access "${5:-hoisted}" \
        --keep-work >"$3" 2>&1 ||
        { fail "build-module.py $mod ($3):"; sed 's/^/    /' "$3"; return 1; }
}

links() { # links OUT_DIR DESCRIPTION [CC FLAGS...] (module "one" comes from the cold build)
    local out=$1 what=$2 lcc=${3:-$cc}
    shift 2; [ $# -eq 0 ] || shift
    set -- "$out" "$what" "$@"
    [ "$1" = out1 ] || cp out1/libone_wasm.a out1/one.h "$1/"
    if "$lcc" "${@:3}" -o "$1/prog" -I"$1" -I"$(dirname "$rtimpl")" main.c "$1/libcalc_wasm.a" \
            "$1/libone_wasm.a" "$rtimpl" -lm >"$1/link.log" 2>&1; then
        local got
        got=$("$1/prog" 2>&1 || true)
        if [ "$got" = "calc(5)=77 one=1 calls=1 peek(0)=43 oob:trap bare=35" ]; then
            ok "$2: links and runs, traps out of bounds"
        else fail "$2: program printed '$got'"; fi
    else
        fail "$2: does not link:"; sed 's/^/    /' "$1/link.log"
    fi
}

cache=$work/cache
entry() { ls -d "$cache"/calc-*; }

# 1. Cold build.
build "$cache" out1 cold.log
build "$cache" out1 one.log one
expect "cold build is a cache miss" cold.log "cache miss for calc"
expect "cold build prints one line per unit" cold.log "\[[0-9]+/[0-9]+\] unit main compiled in"
expect "tiny module: fewer units than asked" cold.log "split 4 functions into 4 units"
[ -f out1/libcalc_wasm.a ] && [ -f out1/calc.h ] && ok "archive and header written" ||
    fail "archive and header written"
[ "$(ls -d "$cache"/calc-* | wc -l)" = 1 ] && [ -f "$(entry)/MANIFEST" ] &&
    ok "one cache entry with a MANIFEST" || fail "one cache entry with a MANIFEST"
links out1 "cold build"
if nm -g --defined-only out1/libcalc_wasm.a | grep -q ' T Z_calcZ_calc$' &&
   ! nm -g --defined-only out1/libcalc_wasm.a | grep -q 'func_types\|w2c_'; then
    ok "only the module's interface is global"
else fail "only the module's interface is global"; nm -g out1/libcalc_wasm.a | sed 's/^/    /'; fi

# 2. Cache hit.
build "$cache" out2 hit.log
expect "second build is a cache hit" hit.log "cache hit for calc"
expect_not "cache hit compiles nothing" hit.log "compiled in|wasm2c"
cmp -s out1/libcalc_wasm.a out2/libcalc_wasm.a && ok "hit gives the same archive" ||
    fail "hit gives the same archive"
links out2 "cache hit"

# 3. Corrupt entries are reported, removed and rebuilt.
corrupt_case() { # corrupt_case NAME COMMAND...
    local name=$1; shift
    ( cd "$(entry)" && "$@" )
    build "$cache" "out-$name" "$name.log" || return 0
    expect "$name: reported corrupt" "$name.log" "cache entry .* is corrupt \(.*\); rebuilding"
    expect "$name: rebuilt" "$name.log" "cache miss for calc"
    links "out-$name" "$name"
    build "$cache" "out-$name" "$name-after.log"
    expect "$name: next build hits the repaired entry" "$name-after.log" "cache hit for calc"
}
flip() { # overwrite 16 bytes in the middle of the archive, same size
    local f=libcalc_wasm.a size
    size=$(stat -c %s "$f")
    printf 'XXXXXXXXXXXXXXXX' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
}
corrupt_case flipped flip
corrupt_case truncated truncate -s 100 libcalc_wasm.a
corrupt_case no-manifest rm MANIFEST
corrupt_case bad-manifest sh -c 'echo garbage > MANIFEST'
corrupt_case no-archive rm libcalc_wasm.a

# 4. The ways of reaching linear memory: separate cache entries, the same
# answers, the out-of-bounds load trapped by the guard pages in each.
for mode in wasm2c no-barrier; do
    build "$cache" "out-$mode" "$mode.log" calc "$mode" || continue
    expect "--memory-access $mode: its own cache entry" "$mode.log" "cache miss for calc"
    links "out-$mode" "--memory-access $mode"
done
kept() { sed -n 's/^pglite: kept intermediate files in //p' "$1"; }
# segue (x86-64 and clang only): every access gs-relative, the program
# pointing gs at the instance's memory.
if [ "$(uname -m)" = x86_64 ] && command -v "$clang" >/dev/null; then
    if build "$cache" out-segue segue.log calc segue "$clang"; then
        links out-segue "--memory-access segue" "$clang" -DSEGUE
        if grep -q 'i32_load_gs(' "$(kept segue.log)"/calc_f*.c &&
           ! grep -q 'i32_load_mb(\|i32_load(&instance' "$(kept segue.log)"/calc_f*.c; then
            ok "segue: every access gs-relative"
        else fail "segue: every access gs-relative"; fi
        # a host that does not set gs cannot link it
        if "$clang" -o out-segue/nogs -Iout-segue -I"$(dirname "$rtimpl")" main.c \
                out-segue/libcalc_wasm.a out-segue/libone_wasm.a "$rtimpl" -lm \
                >out-segue/nogs.log 2>&1; then
            fail "segue: links into a host that does not set gs"
        else expect "segue: a host that does not set gs does not link" out-segue/nogs.log \
            "pglite_segue_host"; fi
    fi
    python3 "$bm" --wasm calc.wasm --name calc --out-dir out-segue-gcc --cache-dir "$cache" \
        --cc gcc --cflags=-O1 --jobs 2 --units 2 --memory-access segue >segue-gcc.log 2>&1 &&
        fail "segue with gcc: built" || true
    expect "segue with gcc: refused" segue-gcc.log "needs clang"
    # profile-guided: instrumented, run, merged, then used (the profile's
    # content in the key: a changed profile is a cache miss)
    prt=$("$clang" -print-file-name=libclang_rt.profile-x86_64.a)
    profdata=$("$clang" -print-prog-name=llvm-profdata)
    if [ -f "$prt" ] && command -v "$profdata" >/dev/null; then
        if python3 "$bm" --wasm calc.wasm --name calc --out-dir out-gen --cache-dir "$cache" \
               --cc "$clang" --cflags=-O1 --jobs 2 --units 2 --memory-access segue \
               --profile-generate >gen.log 2>&1 &&
           cp out1/libone_wasm.a out1/one.h out-gen/ &&
           "$clang" -DSEGUE -o out-gen/prog -Iout-gen -I"$(dirname "$rtimpl")" main.c \
               out-gen/libcalc_wasm.a out-gen/libone_wasm.a "$rtimpl" -lm "$prt" \
               -Wl,-u,__llvm_profile_runtime >out-gen/link.log 2>&1 &&
           LLVM_PROFILE_FILE=$work/calc.profraw out-gen/prog >/dev/null &&
           "$profdata" merge -o calc.profdata calc.profraw; then
            expect "profile-generate: the instrumented build is its own cache entry" gen.log \
                "cache miss for calc"
            python3 "$bm" --wasm calc.wasm --name calc --out-dir out-use --cache-dir "$cache" \
                --cc "$clang" --cflags=-O1 --jobs 2 --units 5 --memory-access segue \
                --profile-use calc.profdata >use.log 2>&1 ||
                fail "profile-use build: $(tail -3 use.log)"
            expect "profile-use: a cache entry of its own" use.log "cache miss for calc"
            links out-use "--memory-access segue --profile-use" "$clang" -DSEGUE
            python3 "$bm" --wasm calc.wasm --name calc --out-dir out-use --cache-dir "$cache" \
                --cc "$clang" --cflags=-O1 --jobs 2 --units 5 --memory-access segue \
                --profile-use calc.profdata >use2.log 2>&1
            expect "profile-use: the same profile hits" use2.log "cache hit"
        else
            fail "profile-generate: instrumented, run and merged"; cat gen.log out-gen/link.log 2>/dev/null
        fi
    else
        echo "skip - profile: no clang profile runtime or llvm-profdata"
    fi
else
    echo "skip - segue: needs x86-64 and clang"
fi
if grep -q 'i32_load_mb(w2c_mb0, ' "$(kept cold.log)"/calc_f*.c &&
   grep -q 'u8\* const w2c_mb0 = (&instance->w2c_memory)->data;' "$(kept cold.log)"/calc_f*.c &&
   ! grep -q 'wasm_asm("" ::"r"(result))' "$(kept cold.log)"/calc_f*.c; then
    ok "hoisted: accesses at a base read once, no load barrier"
else fail "hoisted: accesses at a base read once, no load barrier"; fi
grep -q 'wasm_asm("" ::"r"(result))' "$(kept wasm2c.log)"/calc_f*.c &&
    ok "wasm2c: the generated code as wasm2c wrote it" ||
    fail "wasm2c: the generated code as wasm2c wrote it"

# --host-crc32c: the function (crc, data, len) -> crc that names the
# CRC-32C tables becomes a call of the host's pglite_crc32c; a module
# without the tables is refused, naming what was not found.
python3 - <<'PY' > crc.wat
import struct
t0 = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    t0.append(c)
rows = [t0]
for _ in range(7):
    rows.append([(x >> 8) ^ t0[x & 0xFF] for x in rows[-1]])
data = b"".join(struct.pack("<256I", *r) for r in rows)
esc = "".join("\\%02x" % b for b in data)
print('(module (memory (export "memory") 1)')
print('  (data (i32.const 1024) "%s")' % esc)
print('  (func (export "crc") (param i32 i32 i32) (result i32)')
print('    (i32.xor (local.get 0) (i32.load (i32.add (i32.const 1024) (local.get 1))))))')
PY
wat2wasm crc.wat -o crc.wasm
if python3 "$bm" --wasm crc.wasm --name crc --out-dir out-crc --cache-dir "$cache" --cc "$cc" \
        --cflags=-O1 --jobs 2 --units 2 --host-crc32c --keep-work >crc.log 2>&1 &&
   grep -q 'return pglite_crc32c(&instance->w2c_memory, w2c_p0, w2c_p1, w2c_p2);' \
        "$(kept crc.log)"/crc_f*.c; then
    ok "host-crc32c: the CRC-32C function calls the host's"
else fail "host-crc32c: the CRC-32C function calls the host's"; sed 's/^/    /' crc.log; fi
python3 "$bm" --wasm calc.wasm --name calc --out-dir out-nocrc --cache-dir "$cache" --cc "$cc" \
    --cflags=-O1 --jobs 2 --units 2 --host-crc32c >nocrc.log 2>&1 &&
    fail "host-crc32c without the tables: built" || true
expect "host-crc32c without the tables: refused" nocrc.log "0 copies of the CRC-32C tables"

# 5. A cache dir that cannot be created still builds, with a warning.
touch not-a-dir
build "$work/not-a-dir/cache" out-nocache nocache.log
expect "unwritable cache dir: warned" nocache.log "is not writable"
links out-nocache "unwritable cache dir"

# 6. What a profile-guided build needs before it compiles: the archive's
# key (--print-key, the cached profile's key) and the header alone
# (--translate-only), which is cached by the translation and checked.
key() { python3 "$bm" --wasm calc.wasm --name calc --out-dir out-key --cache-dir "$cache" \
        --cc "$cc" --cflags="$1" --jobs 2 --units 5 --memory-access hoisted --print-key; }
k1=$(key -O1)
if [ -d "$cache/calc-$k1" ] && [ "$k1" != "$(key -O2)" ] && [ ! -e out-key ]; then
    ok "--print-key: the key of the entry these flags built, another for other flags, nothing built"
else
    fail "--print-key: $k1 (entries: $(ls "$cache" | tr '\n' ' '))"
fi
hdr() { # hdr OUT TRANSLATION_DIR LOG
    python3 "$bm" --wasm calc.wasm --name calc --out-dir "$1" --cache-dir "$cache" --cc "$cc" \
        --units 5 --memory-access hoisted --translation-dir "$2" --translate-only >"$3" 2>&1 ||
        { fail "--translate-only ($3):"; sed 's/^/    /' "$3"; }
}
hdr out-h1 tr1 h1.log
expect "--translate-only: translated" h1.log "wasm2c calc.wasm"
if cmp -s out-h1/calc.h out1/calc.h && [ ! -e out-h1/libcalc_wasm.a ] && [ -f tr1/calc-*/UNITS ]; then
    ok "--translate-only: the build's header, no archive, the generated C kept"
else
    fail "--translate-only: header differs, an archive, or no kept translation"
fi
hdr out-h2 tr2 h2.log
expect_not "--translate-only again: the header from the cache, no wasm2c" h2.log "wasm2c"
cmp -s out-h2/calc.h out1/calc.h && ok "cached header: the same" || fail "cached header differs"
for h in "$cache"/calc-*-*.h; do echo '#error corrupt' >> "$h"; done
hdr out-h3 tr3 h3.log
expect "corrupt cached header: reported" h3.log "cached header .* is corrupt; translating again"
cmp -s out-h3/calc.h out1/calc.h && ok "corrupt cached header: translated again, the same" ||
    fail "corrupt cached header: wrong header"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all cache checks passed"
