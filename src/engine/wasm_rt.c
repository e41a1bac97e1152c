/* Our implementation of the wasm2c runtime API (wasm-rt.h) for the
 * generated code: traps unwind to the innermost abi frame of the calling
 * thread (not one process-wide jmp_buf), memories are 8 GiB reservations so
 * the generated code needs no bounds checks, and out-of-bounds accesses and
 * native stack exhaustion arrive as SIGSEGV and become traps. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define WASM_PAGE 65536u
#define RESERVE ((size_t)8 << 30) /* 4 GiB of addressable + 4 GiB offset slack */

/* ---- traps ---------------------------------------------------------------- */

void wasm_rt_trap(wasm_rt_trap_t code) {
    abi_unwind(ABI_UNWIND_TRAP, (int)code);
}

const char *wasm_rt_strerror(wasm_rt_trap_t trap) {
    if ((int)trap == ENGINE_TRAP_STOPPED)
        return "stopped: it ran without reaching a point where the others could run";
    switch (trap) {
    case WASM_RT_TRAP_NONE: return "no error";
    case WASM_RT_TRAP_OOB: return "out-of-bounds memory access";
    case WASM_RT_TRAP_INT_OVERFLOW: return "integer overflow";
    case WASM_RT_TRAP_DIV_BY_ZERO: return "integer divide by zero";
    case WASM_RT_TRAP_INVALID_CONVERSION: return "invalid conversion to integer";
    case WASM_RT_TRAP_UNREACHABLE: return "unreachable executed";
    case WASM_RT_TRAP_CALL_INDIRECT: return "invalid call_indirect";
    case WASM_RT_TRAP_UNCAUGHT_EXCEPTION: return "uncaught exception";
    case WASM_RT_TRAP_EXHAUSTION: return "call stack exhausted";
    }
    return "unknown trap";
}

/* ---- function types ------------------------------------------------------- */

typedef struct {
    uint32_t nparams, nresults;
    wasm_rt_type_t *types; /* params then results */
} func_type;

static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static func_type *types;
static uint32_t ntypes, captypes;

uint32_t wasm_rt_register_func_type(uint32_t params, uint32_t results, ...) {
    uint32_t n = params + results;
    wasm_rt_type_t buf[64];
    wasm_rt_type_t *t = n <= 64 ? buf : malloc(n * sizeof *t);
    if (!t) {
        fprintf(stderr, "pglite: out of memory registering types\n");
        abort(); /* generated code only, at module initialisation */
    }
    va_list ap;
    va_start(ap, results);
    for (uint32_t i = 0; i < n; i++)
        t[i] = va_arg(ap, wasm_rt_type_t);
    va_end(ap);
    pthread_mutex_lock(&types_lock);
    for (uint32_t i = 0; i < ntypes; i++) {
        if (types[i].nparams == params && types[i].nresults == results &&
            memcmp(types[i].types, t, n * sizeof *t) == 0) {
            pthread_mutex_unlock(&types_lock);
            if (t != buf)
                free(t);
            return i + 1;
        }
    }
    if (ntypes == captypes) {
        uint32_t nc = captypes ? captypes * 2 : 256;
        func_type *nt = realloc(types, nc * sizeof *nt);
        if (!nt) {
            fprintf(stderr, "pglite: out of memory registering types\n");
            abort();
        }
        types = nt;
        captypes = nc;
    }
    wasm_rt_type_t *keep = malloc((n ? n : 1) * sizeof *keep);
    if (!keep) {
        fprintf(stderr, "pglite: out of memory registering types\n");
        abort();
    }
    memcpy(keep, t, n * sizeof *t);
    if (t != buf)
        free(t);
    types[ntypes].nparams = params;
    types[ntypes].nresults = results;
    types[ntypes].types = keep;
    uint32_t id = ++ntypes;
    pthread_mutex_unlock(&types_lock);
    return id;
}

/* Exceptions are not used by PGlite's modules (setjmp/longjmp is JS-style). */
uint32_t wasm_rt_register_tag(uint32_t size) { (void)size; return 0; }
void wasm_rt_load_exception(uint32_t tag, uint32_t size, const void *values) {
    (void)tag; (void)size; (void)values;
}
void wasm_rt_throw(void) { wasm_rt_trap(WASM_RT_TRAP_UNCAUGHT_EXCEPTION); }
static _Thread_local WASM_RT_UNWIND_TARGET *unwind_target;
WASM_RT_UNWIND_TARGET *wasm_rt_get_unwind_target(void) { return unwind_target; }
void wasm_rt_set_unwind_target(WASM_RT_UNWIND_TARGET *t) { unwind_target = t; }
uint32_t wasm_rt_exception_tag(void) { return 0; }
uint32_t wasm_rt_exception_size(void) { return 0; }
void *wasm_rt_exception(void) { return NULL; }

/* ---- memories ------------------------------------------------------------- */

/* Live reservations, read by the signal handler without locks. */
#define MAX_REGIONS 256
static _Atomic(uintptr_t) region_base[MAX_REGIONS];

static void region_add(void *base) {
    for (int i = 0; i < MAX_REGIONS; i++) {
        uintptr_t expect = 0;
        if (atomic_compare_exchange_strong(&region_base[i], &expect, (uintptr_t)base))
            return;
    }
}

static void region_del(void *base) {
    for (int i = 0; i < MAX_REGIONS; i++) {
        uintptr_t expect = (uintptr_t)base;
        if (atomic_compare_exchange_strong(&region_base[i], &expect, 0))
            return;
    }
}

static bool in_region(uintptr_t a) {
    for (int i = 0; i < MAX_REGIONS; i++) {
        uintptr_t b = atomic_load_explicit(&region_base[i], memory_order_relaxed);
        if (b && a >= b && a < b + RESERVE)
            return true;
    }
    return false;
}

/* The guest's memory.fill (and every other memset of the compiled
 * modules; the build renames their memset to this). PostgreSQL zeroes its
 * whole shared memory at start-up, most of which it never touches again: a
 * large zero fill inside a linear memory drops the pages instead (they
 * read back as zeros and cost nothing until used), except where the memory
 * is shared (dropped pages of a shared mapping read back its contents). */
void *pgl_guest_memset(void *dst, int c, size_t n) {
    if (c == 0 && n >= ((size_t)1 << 20) && in_region((uintptr_t)dst) &&
        in_region((uintptr_t)dst + n - 1) && !abi_shared_overlaps(dst, n)) {
        uintptr_t a = (uintptr_t)dst, e = a + n;
        uintptr_t pa = (a + 4095) & ~(uintptr_t)4095, pe = e & ~(uintptr_t)4095;
        if (pe > pa && madvise((void *)pa, pe - pa, MADV_DONTNEED) == 0) {
            memset(dst, 0, pa - a);
            memset((void *)pe, 0, e - pe);
            return dst;
        }
    }
    return memset(dst, c, n);
}

/* Set around the instantiation of a clone, whose memory is then an
 * image's: the module's init_memories writes no data segment (the build
 * makes it so, see build-module.py). */
_Thread_local int pgl_instantiate_without_data;

int engine_memory_alloc(wasm_rt_memory_t *m, uint32_t initial, uint32_t max) {
    void *p = mmap(NULL, RESERVE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    /* PostgreSQL zeroes its shared memory (shared_buffers and friends) at
     * start-up: with 2 MB pages that is a few hundred page faults instead
     * of tens of thousands. Best effort. */
#ifdef MADV_HUGEPAGE
    madvise(p, RESERVE, MADV_HUGEPAGE);
#endif
    size_t len = (size_t)initial * WASM_PAGE;
    if (len && mprotect(p, len, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, RESERVE);
        return -1;
    }
    m->data = p;
    m->pages = initial;
    m->max_pages = max;
    m->size = (uint32_t)len; /* initial < 65536 pages */
    region_add(p);
    return 0;
}

void engine_memory_small_pages(wasm_rt_memory_t *m) {
#ifdef MADV_NOHUGEPAGE
    madvise(m->data, RESERVE, MADV_NOHUGEPAGE);
#else
    (void)m;
#endif
}

void wasm_rt_allocate_memory(wasm_rt_memory_t *m, uint32_t initial, uint32_t max) {
    if (engine_memory_alloc(m, initial, max) != 0) {
        /* Called by generated code only for modules that define their own
         * memory (initdb.wasm) inside an engine frame: make it a trap. */
        memset(m, 0, sizeof *m);
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    }
}

uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *m, uint32_t delta) {
    uint32_t old = m->pages;
    uint64_t np = (uint64_t)old + delta;
    if (np > m->max_pages || np > 65536)
        return (uint32_t)-1;
    if (delta == 0)
        return old;
    size_t from = (size_t)old * WASM_PAGE, add = (size_t)delta * WASM_PAGE;
    if (mprotect(m->data + from, add, PROT_READ | PROT_WRITE) != 0)
        return (uint32_t)-1;
    m->pages = (uint32_t)np;
    m->size = np == 65536 ? 0xFFFFFFFFu : (uint32_t)(np * WASM_PAGE);
    return old;
}

void wasm_rt_free_memory(wasm_rt_memory_t *m) {
    if (m->data) {
        region_del(m->data);
        munmap(m->data, RESERVE);
        m->data = NULL;
    }
}

/* ---- tables --------------------------------------------------------------- */

void wasm_rt_allocate_funcref_table(wasm_rt_funcref_table_t *t, uint32_t n,
                                    uint32_t max) {
    t->size = n;
    t->max_size = max;
    t->data = calloc(n ? n : 1, sizeof *t->data);
    if (!t->data) {
        t->size = 0;
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    }
}

void wasm_rt_free_funcref_table(wasm_rt_funcref_table_t *t) {
    free(t->data);
    t->data = NULL;
    t->size = 0;
}

uint32_t wasm_rt_grow_funcref_table(wasm_rt_funcref_table_t *t, uint32_t delta,
                                    wasm_rt_funcref_t init) {
    uint32_t old = t->size;
    uint64_t n = (uint64_t)old + delta;
    if (n > t->max_size || n > (1u << 24))
        return (uint32_t)-1;
    if (delta == 0)
        return old;
    wasm_rt_funcref_t *d = realloc(t->data, n * sizeof *d);
    if (!d)
        return (uint32_t)-1;
    for (uint64_t i = old; i < n; i++)
        d[i] = init;
    t->data = d;
    t->size = (uint32_t)n;
    return old;
}

void wasm_rt_allocate_externref_table(wasm_rt_externref_table_t *t, uint32_t n,
                                      uint32_t max) {
    t->size = n;
    t->max_size = max;
    t->data = calloc(n ? n : 1, sizeof *t->data);
}

void wasm_rt_free_externref_table(wasm_rt_externref_table_t *t) {
    free(t->data);
    t->data = NULL;
}

uint32_t wasm_rt_grow_externref_table(wasm_rt_externref_table_t *t, uint32_t delta,
                                      wasm_rt_externref_t init) {
    uint32_t old = t->size;
    uint64_t n = (uint64_t)old + delta;
    if (n > t->max_size)
        return (uint32_t)-1;
    wasm_rt_externref_t *d = realloc(t->data, (n ? n : 1) * sizeof *d);
    if (!d)
        return (uint32_t)-1;
    for (uint64_t i = old; i < n; i++)
        d[i] = init;
    t->data = d;
    t->size = (uint32_t)n;
    return old;
}

/* ---- signals -------------------------------------------------------------- */

static struct sigaction prev_segv, prev_bus;
static atomic_bool handler_installed;

/* A fault that is nobody's: say where before the process dies, so a crash
 * seen once (in CI, at a user's) can be read without a core file. Only
 * async-signal-safe calls; backtrace() was primed at init so it does not
 * load libgcc here. The frames are "binary(+offset)": addr2line -e binary. */
static void crash_report(int sig, uintptr_t addr) {
    char buf[160];
    int n = snprintf(buf, sizeof buf,
                     "pglite: fatal %s at address %#lx (thread %ld, %s guest code)\n",
                     sig == SIGBUS ? "SIGBUS" : "SIGSEGV", (unsigned long)addr,
                     (long)gettid(), engine_in_guest() ? "in" : "outside");
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        return;
    void *frames[48];
    int depth = backtrace(frames, 48);
    backtrace_symbols_fd(frames, depth, 2);
}

/* A signal that is not ours, to whoever had it before: true if handed over
 * (false: the default action, or SIG_IGN, is the caller's to take). */
static bool chain(const struct sigaction *p, int sig, siginfo_t *si, void *uc) {
    if (p->sa_flags & SA_SIGINFO) {
        if (!p->sa_sigaction)
            return false;
        p->sa_sigaction(sig, si, uc);
        return true;
    }
    if (p->sa_handler == SIG_DFL || p->sa_handler == SIG_IGN)
        return false;
    p->sa_handler(sig);
    return true;
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
    uintptr_t a = (uintptr_t)si->si_addr;
    if (engine_in_guest()) {
        int trip = engine_stack_trip_hit(a);
        if (trip > 0)
            return; /* the tripwire moved (or the limit was passed): resume */
        if (trip < 0)
            abi_unwind(ABI_UNWIND_TRAP, WASM_RT_TRAP_EXHAUSTION);
        if (engine_stack_guard_hit(a))
            abi_unwind(ABI_UNWIND_TRAP, WASM_RT_TRAP_EXHAUSTION);
        if (in_region(a))
            abi_unwind(ABI_UNWIND_TRAP, WASM_RT_TRAP_OOB);
    }
    /* Not ours: hand over to whoever was there before, or crash as usual. */
    if (chain(sig == SIGBUS ? &prev_bus : &prev_segv, sig, si, uc))
        return;
    crash_report(sig, a);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- stopping a runaway guest --------------------------------------------
 * An instance that loops in generated code never reaches an import, so
 * nothing cooperative can end it. engine_stop_probe sends its thread
 * ENGINE_STOP_SIGNAL; the handler traps there (the same unwind as an
 * out-of-bounds access) only when the interrupted instruction is generated
 * guest code: every module's code is in one section, wasm_guest_text (the
 * module archives' .text sections renamed: cmake/PgliteRuntime.cmake), so
 * no host import, libc routine or lock of the host is ever cut short.
 * Anywhere else it counts the visit (the thread was in an import: it was
 * not spinning in the guest) and returns. */
#define ENGINE_STOP_SIGNAL SIGXCPU

extern const char __start_wasm_guest_text[] __attribute__((weak));
extern const char __stop_wasm_guest_text[] __attribute__((weak));

struct engine_runner {
    pthread_t thread;
    atomic_uint in_host;
    atomic_bool asked; /* a SIGXCPU of ours is on its way */
};
static _Thread_local engine_runner runner;
static struct sigaction prev_stop;
static Dl_info self_obj; /* for where a stop happened: an offset in this object */

engine_runner *engine_runner_self(void) {
    runner.thread = pthread_self();
    return &runner;
}

static uintptr_t interrupted_pc(const void *uc) {
    const ucontext_t *u = uc;
#if defined(__x86_64__)
    return (uintptr_t)u->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)u->uc_mcontext.pc;
#else
    (void)u;
    return 0; /* unknown: never stopped (the watchdog only reports) */
#endif
}

static bool in_guest_text(uintptr_t pc) {
    return __start_wasm_guest_text && pc >= (uintptr_t)__start_wasm_guest_text &&
           pc < (uintptr_t)__stop_wasm_guest_text;
}

static void on_stop(int sig, siginfo_t *si, void *uc) {
    if (si->si_code != SI_TKILL || si->si_pid != getpid() ||
        !atomic_exchange(&runner.asked, false)) {
        /* not a probe of ours: whoever was there before, or the default */
        if (!chain(&prev_stop, sig, si, uc) && !(prev_stop.sa_flags & SA_SIGINFO) &&
            prev_stop.sa_handler == SIG_DFL) {
            signal(sig, SIG_DFL);
            raise(sig);
        }
        return;
    }
    uintptr_t pc = interrupted_pc(uc);
    if (!engine_in_guest() || !in_guest_text(pc)) {
        atomic_fetch_add(&runner.in_host, 1);
        return;
    }
    char buf[200];
    int n = snprintf(buf, sizeof buf,
                     "pglite: stopping thread %ld in guest code at %s+%#lx (addr2line -f -e)\n",
                     (long)gettid(), self_obj.dli_fname ? self_obj.dli_fname : "?",
                     (unsigned long)(pc - (uintptr_t)self_obj.dli_fbase));
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        n = 0;
    abi_unwind(ABI_UNWIND_TRAP, ENGINE_TRAP_STOPPED);
}

unsigned engine_runner_visits(engine_runner *r) { return atomic_load(&r->in_host); }

int engine_stop_probe(engine_runner *r) {
    /* Only while the handler is still ours: the program may have put its
     * own (or the default, which would end the process) since. */
    struct sigaction cur;
    if (sigaction(ENGINE_STOP_SIGNAL, NULL, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO) ||
        cur.sa_sigaction != on_stop)
        return -1;
    atomic_store(&r->asked, true);
    return pthread_kill(r->thread, ENGINE_STOP_SIGNAL) == 0 ? 0 : -1;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    /* SA_NODEFER: the handler leaves by longjmp without restoring the mask. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
    sigaction(SIGBUS, &sa, &prev_bus);
    struct sigaction st = sa;
    st.sa_sigaction = on_stop;
    st.sa_flags |= SA_RESTART;
    sigaction(ENGINE_STOP_SIGNAL, &st, &prev_stop);
    dladdr((void *)on_stop, &self_obj);
    void *prime[1];
    backtrace(prime, 1); /* loads the unwinder now, not in the handler */
    atomic_store(&handler_installed, true);
    abi_invoke_init();
}

void wasm_rt_init(void) { pthread_once(&init_once, do_init); }

/* Keep our fault handler first in line: a host program (or a test
 * framework) may have installed its own since. Ours passes faults that are
 * not the guest's on to it. */
static _Thread_local struct timespec last_claim;

static void claim(void) {
    clock_gettime(CLOCK_MONOTONIC_COARSE, &last_claim);
    struct sigaction cur;
    for (int i = 0; i < 2; i++) {
        int sig = i ? SIGBUS : SIGSEGV;
        if (sigaction(sig, NULL, &cur) != 0)
            continue;
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, sig == SIGBUS ? &prev_bus : &prev_segv);
    }
}

void engine_signals_claim(void) {
    /* Two sigaction calls cost about a microsecond: on the query path,
     * look at most every 100 ms per thread (a handler installed since then
     * is noticed at the next look, or when an instance is made). */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (last_claim.tv_sec && (now.tv_sec - last_claim.tv_sec) * 1000000000L +
                                     (now.tv_nsec - last_claim.tv_nsec) < 100000000L)
        return;
    claim();
}

void engine_signals_claim_now(void) { claim(); }

bool wasm_rt_is_initialized(void) { return atomic_load(&handler_installed); }
void wasm_rt_free(void) {}
