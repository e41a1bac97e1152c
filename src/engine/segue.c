/* The gs segment as the base of linear memory.
 *
 * A module built with --memory-access segue (tools/build/build-module.py)
 * reaches its memory with gs-relative loads and stores: no register holds
 * the base and nothing reloads it. gs belongs to the thread, so every entry
 * into guest code (engine_run) points it at the instance's memory and
 * every exit puts back what was there: two instances on one thread (a
 * call into one from inside another) and a host that uses gs for itself
 * between our calls both keep working. glibc does not use gs on x86-64.
 *
 * The base is written with wrgsbase where the kernel allows it
 * (HWCAP2_FSGSBASE, Linux 5.9 and later: a few cycles), else with
 * arch_prctl(ARCH_SET_GS), a system call that works on every x86-64
 * kernel. Without segue (other CPUs, other compilers) these do nothing. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdint.h>

#include "engine/engine_internal.h"

#if PGLITE_WASM_SEGUE
#include <asm/prctl.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool fsgsbase;

static void probe(void) { fsgsbase = (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) != 0; }

static int gs_get(uintptr_t *v) {
    if (fsgsbase) {
        __asm__ volatile("rdgsbase %0" : "=r"(*v));
        return 0;
    }
    unsigned long b = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_GS, &b) != 0)
        return -1;
    *v = b;
    return 0;
}

static int gs_set(uintptr_t v) {
    if (fsgsbase) {
        __asm__ volatile("wrgsbase %0" ::"r"(v) : "memory");
        return 0;
    }
    return syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)v) == 0 ? 0 : -1;
}

int engine_gs_enter(void *base, engine_gs_scope *s) {
    pthread_once(&probe_once, probe);
    s->set = false;
    if (gs_get(&s->prev) != 0)
        return -1;
    s->set = true;
    if (!base || s->prev == (uintptr_t)base)
        return 0;
    return gs_set((uintptr_t)base);
}

int engine_gs_point(void *base) {
    if (!base)
        return 0;
    uintptr_t cur;
    if (gs_get(&cur) != 0)
        return -1;
    return cur == (uintptr_t)base ? 0 : gs_set((uintptr_t)base);
}

void engine_gs_leave(const engine_gs_scope *s) {
    uintptr_t cur;
    if (s->set && gs_get(&cur) == 0 && cur != s->prev)
        gs_set(s->prev);
}

/* What the segue modules link against (tools/build/build-module.py). */
__attribute__((visibility("hidden"))) const char pglite_segue_host = 1;

#else

int engine_gs_enter(void *base, engine_gs_scope *s) {
    (void)base;
    s->set = false;
    s->prev = 0;
    return 0;
}
int engine_gs_point(void *base) {
    (void)base;
    return 0;
}
void engine_gs_leave(const engine_gs_scope *s) { (void)s; }

#endif
