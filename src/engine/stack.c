/* The guest's native stack: one large mapping per thread (with a guard page
 * at its low end and an alternate signal stack to report overflow), entered
 * by switching the stack pointer on the calling thread. A switch costs a few
 * instructions; handing each call to another thread would cost
 * microseconds.
 *
 * max_stack_depth on the native stack. PostgreSQL's check_stack_depth()
 * measures the distance from stack_base_ptr to a local variable, and in the
 * wasm build both live on the shadow stack in linear memory. Most C
 * functions keep their locals in wasm locals, which wasm2c makes native C
 * locals: a recursion such as the JSON parser's (parse_array calls
 * check_stack_depth at every level) grows the native stack by hundreds of
 * bytes a level and the shadow stack by nothing, so the check never fires
 * and the recursion runs until the native stack is gone (a trap, which
 * kills the session). So the limit is also enforced here, on the stack that
 * actually runs out:
 *
 * - A tripwire: one PROT_NONE zone of TRIP bytes on the native stack,
 *   first just beyond 100kB, the smallest max_stack_depth PostgreSQL
 *   accepts. Calls that never go that deep (all of PGlite's benchmark
 *   suite) never touch it and pay nothing.
 * - When the stack grows into it, the SIGSEGV handler (wasm_rt.c) reads the
 *   running backend's max_stack_depth_bytes from linear memory, so a SET
 *   earlier in the same message counts. Within the limit: the zone moves to
 *   just beyond the limit and the faulting instruction resumes (one fault
 *   per call that goes deeper than 100kB; the zone moves back up at the
 *   next call). Beyond it: the zone is lifted and max_stack_depth_bytes is
 *   set to 0, so the very next check_stack_depth() or stack_is_too_deep()
 *   the recursion makes, at a point PostgreSQL chose as safe, raises
 *   PostgreSQL's own ERROR 54001 "stack depth limit exceeded" (with the
 *   hint naming the real max_stack_depth, a separate variable). No guest
 *   code runs in the signal handler.
 * - The real value goes back as soon as the error has unwound to a frame
 *   within the limit (engine_stack_unwound, from the setThrew of the
 *   invoke_* that caught the longjmp) or the call into the guest ends
 *   (engine_stack_leave); a SET max_stack_depth made meanwhile is kept.
 *
 * The limit is max_stack_depth of native stack below the top of this stack
 * (the zone starts within TRIP beyond it; the error comes from the first
 * check after that), capped so that ERR_RESERVE bytes remain for reaching
 * the next check and raising the error. A recursion that never calls
 * check_stack_depth still ends in the guard page, as it would crash native
 * PostgreSQL.
 *
 * The tripwire needs our SIGSEGV handler in place: a host that installs its
 * own takes it over until engine_signals_claim (wasm_rt.c) takes it back,
 * at the next call 100 ms later at most; a statement going deeper than
 * 100kB in between reaches the host's handler, as a trap always has. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* wasm2c code uses far more native stack per PostgreSQL frame than the
 * guest's shadow stack; 1 GiB of address space (committed only as touched)
 * leaves room for any max_stack_depth PostgreSQL accepts. */
#define GUEST_STACK ((size_t)1 << 30)
#define GUARD ((size_t)1 << 16)
#define ALTSTACK ((size_t)1 << 16)
#define TRIP ((size_t)1 << 16)          /* tripwire zone and step */
#define ERR_RESERVE ((size_t)16 << 20)  /* kept for reaching the check and the error */
#define MIN_LIMIT ((size_t)100 << 10)   /* the smallest max_stack_depth (100kB) */

typedef struct {
    uint8_t *base;  /* mapping start (guard at the bottom) */
    uint8_t *alt;   /* alternate signal stack */
    int depth;      /* nesting of engine calls on this thread */
    uintptr_t top;  /* end of the mapping: depth is measured from here */
    size_t trip;    /* armed tripwire: zone [top-(trip+1)*TRIP, top-trip*TRIP); 0 none */
    uint8_t *lim_mem;    /* linear memory of the innermost running backend */
    uint8_t *poison_mem; /* memory whose max_stack_depth_bytes is zeroed */
    int32_t saved;       /* its real value */
    size_t poison_limit; /* the limit that was exceeded */
} guest_stack;

static _Thread_local guest_stack ts;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* Stacks of threads that have ended, for the next threads: pglite-proxy
 * gives every client a new thread, and a new stack cost each of them the
 * page faults of the frames it touched and their unmapping at its end. A
 * kept stack keeps its top KEEP_HOT bytes' pages; the rest go back. */
#define POOL_MAX 16
#define KEEP_HOT ((size_t)1 << 20)
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint8_t *base, *alt;
    size_t trip; /* its tripwire, left armed (two mprotects a thread fewer) */
} pool[POOL_MAX];
static int npool;

static void release(void *p) {
    guest_stack *s = p;
    if (s->alt) {
        stack_t none = {.ss_flags = SS_DISABLE};
        sigaltstack(&none, NULL);
    }
    bool keep = s->base && s->alt;
    if (keep)
        madvise(s->base + GUARD, GUEST_STACK - GUARD - KEEP_HOT, MADV_DONTNEED);
    pthread_mutex_lock(&pool_mu);
    if (keep && npool < POOL_MAX) {
        pool[npool].base = s->base;
        pool[npool].alt = s->alt;
        pool[npool].trip = s->trip;
        npool++;
    } else {
        keep = false;
    }
    pthread_mutex_unlock(&pool_mu);
    if (!keep) {
        if (s->alt)
            munmap(s->alt, ALTSTACK);
        if (s->base)
            munmap(s->base, GUEST_STACK);
    }
    s->base = s->alt = NULL;
    s->trip = 0;
}

static void make_key(void) { pthread_key_create(&key, release); }

size_t engine_stack_size(void) { return GUEST_STACK - GUARD; }

bool engine_in_guest(void) { return ts.depth > 0; }

bool engine_stack_guard_hit(uintptr_t a) {
    return ts.base && a >= (uintptr_t)ts.base && a < (uintptr_t)ts.base + GUARD;
}

static int ensure_stack(void) {
    if (ts.base)
        return 0;
    pthread_once(&key_once, make_key);
    uint8_t *base = NULL, *alt = NULL;
    size_t trip = 0;
    pthread_mutex_lock(&pool_mu);
    if (npool > 0) {
        npool--;
        base = pool[npool].base;
        alt = pool[npool].alt;
        trip = pool[npool].trip;
    }
    pthread_mutex_unlock(&pool_mu);
    if (!base) {
        void *p = mmap(NULL, GUEST_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        void *a = mmap(NULL, ALTSTACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED || mprotect(p, GUARD, PROT_NONE) != 0) {
            if (a != MAP_FAILED)
                munmap(a, ALTSTACK);
            munmap(p, GUEST_STACK);
            return -1;
        }
        base = p;
        alt = a;
    }
    stack_t ss = {.ss_sp = alt, .ss_size = ALTSTACK, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(alt, ALTSTACK);
        munmap(base, GUEST_STACK);
        return -1;
    }
    ts.base = base;
    ts.alt = alt;
    ts.top = (uintptr_t)base + GUEST_STACK;
    ts.trip = trip;
    pthread_setspecific(key, &ts);
    return 0;
}

/* ---- the tripwire (see the top of this file) ----------------------------- */

static size_t trip_last(void) {
    return (GUEST_STACK - GUARD - ERR_RESERVE) / TRIP - 1;
}

static void *trip_zone(size_t slot) { return (void *)(ts.top - (slot + 1) * TRIP); }

/* Arm slot (0: none). Async-signal-safe. */
static void trip_move(size_t slot) {
    if (slot == ts.trip)
        return;
    if (slot > trip_last())
        slot = 0;
    if (ts.trip) {
        if (mprotect(trip_zone(ts.trip), TRIP, PROT_READ | PROT_WRITE) != 0)
            return; /* keep it: the handler will see it again */
        ts.trip = 0;
    }
    if (slot && mprotect(trip_zone(slot), TRIP, PROT_NONE) == 0)
        ts.trip = slot;
}

static volatile int32_t *max_bytes_word(uint8_t *mem) {
    return (volatile int32_t *)(mem + engine_pglite_max_stack_depth_bytes);
}

/* The limit in bytes of native stack: the backend's max_stack_depth once
 * PostgreSQL has set its stack base, capped by what this stack can give. */
static size_t native_limit(void) {
    size_t cap = GUEST_STACK - GUARD - ERR_RESERVE;
    if (ts.lim_mem &&
        *(volatile uint32_t *)(ts.lim_mem + engine_pglite_stack_base_ptr) != 0) {
        int32_t v = *max_bytes_word(ts.lim_mem);
        if (v > 0 && (size_t)v < cap)
            return (size_t)v;
    }
    return cap;
}

/* Arm the first zone: just beyond the smallest max_stack_depth PostgreSQL
 * accepts, or, if this frame is already deeper, the first zone wholly below
 * it (never one holding live frames). */
static void trip_rearm(size_t depth) {
    size_t want = MIN_LIMIT / TRIP + 1;
    if (want * TRIP <= depth)
        want = depth / TRIP + 1;
    trip_move(want);
}

static size_t depth_here(void) { return ts.top - (uintptr_t)__builtin_frame_address(0); }

static void unpoison(void) {
    volatile int32_t *w = max_bytes_word(ts.poison_mem);
    if (*w == 0) /* a SET max_stack_depth since then wins */
        *w = ts.saved;
    ts.poison_mem = NULL;
}

int engine_stack_trip_hit(uintptr_t a) {
    if (!ts.trip || a < (uintptr_t)trip_zone(ts.trip) ||
        a >= (uintptr_t)trip_zone(ts.trip) + TRIP)
        return 0;
    size_t hit = ts.trip;
    size_t reached = hit * TRIP;
    size_t limit = native_limit();
    bool pg = ts.lim_mem &&
              *(volatile uint32_t *)(ts.lim_mem + engine_pglite_stack_base_ptr) != 0;
    if (reached > limit && pg && !ts.poison_mem) {
        ts.poison_mem = ts.lim_mem;
        ts.saved = *max_bytes_word(ts.lim_mem);
        ts.poison_limit = limit;
        *max_bytes_word(ts.lim_mem) = 0;
        trip_move(0);
    } else {
        size_t next = limit / TRIP + 1; /* just beyond the limit */
        trip_move(next > hit ? next : hit + 1);
    }
    return ts.trip == hit ? -1 : 1; /* -1: the zone could not be lifted */
}

void engine_stack_unwound(void) {
    if (!ts.base || ts.depth == 0)
        return;
    size_t depth = depth_here();
    if (ts.poison_mem) {
        if (depth >= ts.poison_limit)
            return; /* still beyond the limit: PostgreSQL would refuse here too */
        unpoison();
    }
    trip_rearm(depth);
}

void engine_stack_enter(uint8_t *backend_mem, engine_stack_scope *sc) {
    sc->prev = ts.lim_mem;
    sc->mem = backend_mem;
    ts.lim_mem = backend_mem;
    /* the first zone back in place after a deep call (else no system call) */
    if (backend_mem && ts.base && ts.depth > 0 && !ts.poison_mem)
        trip_rearm(depth_here());
}

void engine_stack_leave(const engine_stack_scope *sc) {
    if (ts.poison_mem && ts.poison_mem == sc->mem)
        unpoison();
    ts.lim_mem = sc->prev;
}

/* call_on_stack(arg, fn, top): run fn(arg) with the stack pointer at top. */
void pgl_call_on_stack(void *arg, void (*fn)(void *), void *top);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl pgl_call_on_stack\n"
        ".hidden pgl_call_on_stack\n"
        ".type pgl_call_on_stack,@function\n"
        "pgl_call_on_stack:\n"
        "  .cfi_startproc\n"
        "  pushq %rbp\n"
        "  .cfi_def_cfa_offset 16\n"
        "  .cfi_offset %rbp, -16\n"
        "  movq %rsp, %rbp\n"
        "  .cfi_def_cfa_register %rbp\n"
        "  movq %rdx, %rsp\n"
        "  callq *%rsi\n"
        "  movq %rbp, %rsp\n"
        "  popq %rbp\n"
        "  .cfi_def_cfa %rsp, 8\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size pgl_call_on_stack, .-pgl_call_on_stack\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl pgl_call_on_stack\n"
        ".hidden pgl_call_on_stack\n"
        ".type pgl_call_on_stack,%function\n"
        "pgl_call_on_stack:\n"
        "  stp x29, x30, [sp, #-16]!\n"
        "  mov x29, sp\n"
        "  mov sp, x2\n"
        "  blr x1\n"
        "  mov sp, x29\n"
        "  ldp x29, x30, [sp], #16\n"
        "  ret\n"
        ".size pgl_call_on_stack, .-pgl_call_on_stack\n");
#else
#error "pglite: no stack switch for this architecture"
#endif

int engine_on_guest_stack(void (*fn)(void *), void *arg) {
    if (ts.depth > 0) { /* nested: already on the guest stack */
        ts.depth++;
        fn(arg);
        ts.depth--;
        return 0;
    }
    if (ensure_stack() != 0)
        return -1;
    engine_signals_claim();
    uintptr_t top = ((uintptr_t)ts.base + GUEST_STACK - 64) & ~(uintptr_t)63;
    ts.depth = 1;
    pgl_call_on_stack(arg, fn, (void *)top);
    ts.depth = 0;
    if (ts.poison_mem)
        unpoison();
    return 0;
}
