/* Processes: ids, signals between instances, the fork point.
 *
 * Every instance of pglite.wasm is one PostgreSQL process. The build patches
 * the module (tools/build/patch-sessions.py) so that getpid() is a value the
 * host sets and kill() of any other pid calls env.pglitec_kill. This file
 * keeps which host instance has which pid, and routes a signal the way a
 * kernel would: it is recorded as pending in the target and the target is
 * woken; the target takes it at its next safe point (an import that reads a
 * clock, polls, sleeps or does I/O, exactly where its itimers are taken),
 * on its own thread, through the guest's own raise(), which honours its
 * handlers and its signal mask. */
#define _GNU_SOURCE
#include "abi/abi_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static abi_host **registry;
static size_t registry_n, registry_cap;

static abi_host *find_locked(uint32_t pid) {
    for (size_t i = 0; i < registry_n; i++)
        if (registry[i]->pid == pid)
            return registry[i];
    return NULL;
}

static void unregister_locked(abi_host *h) {
    for (size_t i = 0; i < registry_n; i++)
        if (registry[i] == h) {
            registry[i] = registry[--registry_n];
            return;
        }
}

int abi_host_set_pid(abi_host *h, uint32_t pid) {
    pthread_mutex_lock(&registry_lock);
    abi_host *other = pid ? find_locked(pid) : NULL;
    if (other && other != h) {
        pthread_mutex_unlock(&registry_lock);
        return -EEXIST;
    }
    unregister_locked(h);
    h->pid = 0;
    if (pid) {
        if (registry_n == registry_cap) {
            size_t cap = registry_cap ? 2 * registry_cap : 16;
            abi_host **r = realloc(registry, cap * sizeof *r);
            if (!r) {
                pthread_mutex_unlock(&registry_lock);
                return -ENOMEM;
            }
            registry = r;
            registry_cap = cap;
        }
        registry[registry_n++] = h;
        h->pid = pid;
    }
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

/* pids are handed out in order from here, skipping any in use; PostgreSQL
 * shows them (pg_backend_pid, pg_stat_activity, log lines). */
#define FIRST_PID 1000u
static uint32_t next_pid = FIRST_PID;

int abi_host_assign_pid(abi_host *h, uint32_t *pid) {
    pthread_mutex_lock(&registry_lock);
    uint32_t p = next_pid;
    while (find_locked(p))
        p = p >= INT32_MAX ? FIRST_PID : p + 1;
    next_pid = p >= INT32_MAX ? FIRST_PID : p + 1;
    pthread_mutex_unlock(&registry_lock);
    /* Another thread may take p first: then try again. */
    int r = abi_host_set_pid(h, p);
    if (r == -EEXIST)
        return abi_host_assign_pid(h, pid);
    if (r == 0)
        *pid = p;
    return r;
}

/* Pending signals are a bit mask (signals 1..63, as Emscripten numbers
 * them: SIGINT 2, SIGUSR1 10, SIGTERM 15, SIGALRM 14, SIGURG 23). */
int abi_host_signal(abi_host *h, int sig) {
    if (sig < 1 || sig > 63)
        return -EINVAL;
    atomic_fetch_or_explicit(&h->sig_pending, (uint64_t)1 << sig, memory_order_release);
    abi_host_wake(h);
    return 0;
}

/* kill(pid, sig) of a pid other than the caller's own (which the guest
 * raises in place): 0, or -errno as a syscall returns it. A pid of 0 or a
 * negative one names a process group; each instance is its own group. */
u32 Z_envZ_pglitec_kill(struct Z_env_instance_t *h, u32 upid, u32 usig) {
    int32_t pid = (int32_t)upid, sig = (int32_t)usig;
    if (sig < 0 || sig > 63)
        return NEG(G_EINVAL);
    if (pid == 0)
        pid = (int32_t)h->pid;
    else if (pid < 0 && pid != INT32_MIN)
        pid = -pid;
    if (pid <= 0)
        return NEG(G_ESRCH);
    if ((uint32_t)pid == h->pid) {
        /* Itself (PostgreSQL signals its own process group, -pid): the
         * kernel delivers such a signal before kill() returns. */
        if (sig != 0 && h->have_ex && h->ex.raise)
            h->ex.raise(h->ex.mi, (uint32_t)sig);
        return 0;
    }
    pthread_mutex_lock(&registry_lock);
    abi_host *t = find_locked((uint32_t)pid);
    u32 r = 0;
    if (!t)
        r = NEG(G_ESRCH);
    else if (sig != 0 && abi_host_signal(t, sig) < 0)
        r = NEG(G_EINVAL);
    pthread_mutex_unlock(&registry_lock);
    return r;
}

bool abi_host_take_signals(abi_host *h) {
    uint64_t pending = atomic_exchange_explicit(&h->sig_pending, 0, memory_order_acquire);
    if (!pending || !h->have_ex || !h->ex.raise)
        return false;
    for (int sig = 1; sig < 64; sig++)
        if (pending & ((uint64_t)1 << sig))
            h->ex.raise(h->ex.mi, (uint32_t)sig);
    return true;
}

/* main() calls this just before InitProcess (the patch's fork point), the
 * point from which the backend layer clones more backends of the cluster. */
void Z_envZ_pglitec_fork_point(struct Z_env_instance_t *h) {
    if (h->fork_point)
        h->fork_point(h->fork_ctx);
}

void abi_host_set_fork_point(abi_host *h, void (*fn)(void *ctx), void *ctx) {
    h->fork_point = fn;
    h->fork_ctx = ctx;
}

void abi_host_set_scheduler(abi_host *h, void (*leave)(void *ctx), void (*enter)(void *ctx),
                            void *ctx) {
    h->sched_leave = leave;
    h->sched_enter = enter;
    h->sched_ctx = ctx;
}

void abi_host_set_yield(abi_host *h, void (*yield)(void *ctx)) { h->sched_yield = yield; }

/* ProcessInterrupts calls this first (the patch's interrupt point). */
void Z_envZ_pglitec_interrupt_point(struct Z_env_instance_t *h) {
    if (h->sched_yield)
        h->sched_yield(h->sched_ctx);
}

bool abi_host_deliver(abi_host *h) { return abi_timers_check(h); }

int abi_host_wake_fd(const abi_host *h) { return h->wake_fd; }
