/* The guest's native stack: one large mapping per thread (with a guard page
 * at its low end and an alternate signal stack to report overflow), entered
 * by switching the stack pointer on the calling thread. A switch costs a few
 * instructions; handing each call to another thread would cost
 * microseconds. */
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
 * keeps max_stack_depth (default 2 MB of shadow stack) the limit that
 * fires. */
#define GUEST_STACK ((size_t)1 << 30)
#define GUARD ((size_t)1 << 16)
#define ALTSTACK ((size_t)1 << 16)

typedef struct {
    uint8_t *base;  /* mapping start (guard at the bottom) */
    uint8_t *alt;   /* alternate signal stack */
    int depth;      /* nesting of engine calls on this thread */
} guest_stack;

static _Thread_local guest_stack ts;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void release(void *p) {
    guest_stack *s = p;
    if (s->alt) {
        stack_t none = {.ss_flags = SS_DISABLE};
        sigaltstack(&none, NULL);
        munmap(s->alt, ALTSTACK);
    }
    if (s->base)
        munmap(s->base, GUEST_STACK);
    s->base = s->alt = NULL;
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
    void *p = mmap(NULL, GUEST_STACK, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if (mprotect(p, GUARD, PROT_NONE) != 0) {
        munmap(p, GUEST_STACK);
        return -1;
    }
    void *alt = mmap(NULL, ALTSTACK, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt == MAP_FAILED) {
        munmap(p, GUEST_STACK);
        return -1;
    }
    stack_t ss = {.ss_sp = alt, .ss_size = ALTSTACK, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(alt, ALTSTACK);
        munmap(p, GUEST_STACK);
        return -1;
    }
    ts.base = p;
    ts.alt = alt;
    pthread_setspecific(key, &ts);
    return 0;
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
    return 0;
}
