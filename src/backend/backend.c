/* The embedded backend: PGlite's wire mode over the engine. */
#define _GNU_SOURCE
#include "backend/backend.h"

#include "cluster/cluster.h"
#include "engine/engine.h"
#include "wire/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ALIVE 99   /* main returned with the backend ready */
#define EXIT_LONGJMP 100 /* an ERROR longjmp'd to the main loop */
#define ERROR_RECURSION_MAX 16 /* nested ERRORs in the error handler */
#define MAX_ARGS 96

/* The backends of one cluster (backend_options.sessions): the image the
 * first one took at its fork point, which every other one is cloned from,
 * the memfd of PostgreSQL's main shared-memory segment they all map at
 * the same guest address, and the lock that lets one of them run guest
 * code at a time (the module has no atomics: PostgreSQL's spinlocks and
 * LWLocks are plain loads and stores). A backend holds the lock while it
 * runs and lets go of it only where a PostgreSQL process blocks: a wait in
 * poll() (a lock, a latch, a sleep), or waiting for its client. */
/* Clones the spare thread keeps made ahead: one more than a session's
 * start uses, so that a client never waits while the thread, which runs
 * only on CPU time sessions leave, makes the next. */
#define SPARES 2
/* Ended sessions' engines waiting for the spare thread to unmap them. */
#define REAPS 4

typedef struct backend_cluster {
    /* The cluster lock (run_lock), and under run_mu who holds it, since
     * when, how many times it was taken (run_cv: it was). */
    pthread_mutex_t run;
    pthread_mutex_t run_mu;
    pthread_cond_t run_cv;
    uint64_t acquired;
    int yielders;             /* threads in run_yield, waiting on run_cv */
    atomic_int waiting;       /* threads waiting for it */
    struct backend *holder;
    engine_runner *holder_runner; /* its thread */
    double held_since;        /* ms */
    bool poked, warned;
    /* A holder that has run stop_ms while others wait, without letting
     * go, is stopped where it runs guest code (engine_stop_probe):
     * stall_since is when it took the lock, when the first of the waiters
     * came, or when a probe last found it in host code. */
    double stall_since;
    unsigned probe_seen;
    bool probing;
    int stop_ms;
    /* The watchdog: asks the holder to let go once its slice is over. */
    pthread_t wd;
    pthread_cond_t wd_cv;
    bool wd_started, wd_stop;
    engine_image *image;
    int shm_fd;
    uint32_t shm_addr, shm_size;
    uint32_t cb_read, cb_write; /* the table indices of the I/O callbacks */
    atomic_int refs; /* taken and dropped by the threads of its backends */
    char fork_err[256];
    /* Parked backends (backend_park): the thread that takes their signals
     * while no one uses them, and the list it watches, under park_mu. */
    pthread_mutex_t park_mu;
    pthread_cond_t park_cv;
    struct backend *parked;
    pthread_t park_thread;
    bool park_started, park_stop;
    /* Every backend of the cluster (under park_mu), and whether one of
     * them crashed: a trap or an abnormal exit, after which shared memory
     * may be inconsistent (a spinlock or an LWLock held for ever, half a
     * change), so that, as PostgreSQL's postmaster does, every backend
     * ends and the cluster is started again. */
    struct backend *members;
    atomic_bool crashed;
    /* how the first backend was started, to start the cluster again */
    backend_options opts;
    char **gucs;
    /* The guest tree of the clones (their /tmp and /home/postgres are one,
     * as on one machine): made with the first clone, removed with the
     * cluster. Under the cluster lock. */
    cluster_tree tree;
    bool tree_made;
    atomic_ulong clones;
    /* The spares: clones made ahead by the spare thread, outside the
     * cluster lock, while the cluster serves others, so that a new session
     * starts at PostgreSQL's own part (see spare_main). Under spare_mu. */
    pthread_mutex_t spare_mu;
    pthread_cond_t spare_cv;
    pthread_t spare_thread;
    bool spare_started, spare_stop, spare_failed;
    engine *spare[SPARES];
    int spare_log_fd[SPARES];
    char spare_log_path[SPARES][4096];
    unsigned long made_ahead, made_inline; /* sessions' clones, by whom */
    /* Engines of ended sessions, freed by the spare thread (spare_give). */
    engine *reap[REAPS];
    int nreap;
} backend_cluster;

struct backend {
    cluster_tree tree;
    bool tree_shared;         /* the cluster's (a clone): not this backend's to remove */
    backend_cluster *cluster; /* NULL: a backend of its own */
    bool starting;            /* inside backend_start/backend_clone */
    bool learn;               /* to teach the image what its first exchange touched */
    engine *pg;
    int log_fd;          /* guest stderr while starting */
    char log_path[4096];
    /* current exchange */
    const uint8_t *in;
    size_t inlen, inpos;
    wire_buf out;
    wire_buf startup;
    bool dead;
    unsigned long errors; /* ERRORs recovered by PostgresMainLongJmp */
    char dead_msg[640];
    /* cancellation */
    atomic_int busy;
    /* more input mid-exchange (COPY FROM STDIN) */
    backend_input_fn more;
    void *more_ctx;
    uint32_t addr_cancel, addr_interrupt, addr_latch, addr_holdoff, addr_crit;
    char *env[16];
    /* parked (under cluster->park_mu) */
    bool is_parked, serving;
    struct backend *park_next;
    struct backend *member_next; /* cluster->members */
    wire_buf kept;       /* what idle signal handling produced for the client */
    wire_buf out_kept_prev; /* the last backend_unpark's answer */
    bool kept_failed;    /* ... and the session ended there */
};

int backend_alive(const backend *b) { return b && !b->dead; }

static void run_lock(backend_cluster *c, backend *b);
static void run_unlock(backend_cluster *c);

/* read(ptr, max): the next bytes of the current input. */
static uint32_t cb_read(void *ctx, const uint32_t *a) {
    backend *b = ctx;
    if (b->inpos >= b->inlen && b->more) {
        /* The backend waits for input we were not given (COPY FROM STDIN):
         * hand over the reply so far (CopyInResponse) and ask for more. */
        const uint8_t *in = NULL;
        size_t inlen = 0;
        if (b->cluster)
            run_unlock(b->cluster);
        int rc = b->more(b->more_ctx, b->out.data, b->out.len, &in, &inlen);
        if (b->cluster)
            run_lock(b->cluster, b);
        wire_buf_reset(&b->out);
        if (rc == 0 && in && inlen) {
            b->in = in;
            b->inlen = inlen;
            b->inpos = 0;
        }
    }
    size_t n = b->inlen - b->inpos;
    if (n > a[1])
        n = a[1];
    if (n && engine_write(b->pg, a[0], b->in + b->inpos, n) != 0)
        return 0;
    b->inpos += n;
    return (uint32_t)n;
}

/* write(ptr, len): the backend's output. */
static uint32_t cb_write(void *ctx, const uint32_t *a) {
    backend *b = ctx;
    wasm_rt_memory_t *m = engine_memory(b->pg);
    if (!abi_mem_ptr(m, a[0], a[1]))
        return 0;
    if (wire_put(&b->out, m->data + a[0], a[1]) != 0)
        return 0;
    return a[1];
}

static void read_log(backend *b, char *out, size_t n) {
    out[0] = 0;
    int fd = open(b->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)n - 1 ? end - (off_t)n + 1 : 0;
    ssize_t r = pread(fd, out, n - 1, from);
    out[r > 0 ? r : 0] = 0;
    close(fd);
    /* the most useful line: the FATAL or ERROR, if any */
    char *f = strstr(out, "FATAL:");
    if (!f)
        f = strstr(out, "ERROR:");
    if (f) {
        char *nl = strchr(f, '\n');
        if (nl)
            *nl = 0;
        memmove(out, f, strlen(f) + 1);
    }
}

/* The cancel-request struct ProcessStartupPacket fills (see backend_start). */
#define STARTUP_CANCEL_SIZE 268

static void kill_backend(backend *b, const char *why) {
    b->dead = true;
    /* The process is gone: its pid names no one now (kill(pid, 0) is
     * ESRCH, which pg_terminate_backend's wait looks for). */
    if (b->pg)
        abi_host_set_pid(engine_host(b->pg), 0);
    snprintf(b->dead_msg, sizeof b->dead_msg, "%s", why);
}

/* What PostgreSQL's other backends tell their clients when one crashed
 * (quickdie's report after the postmaster's SIGQUIT). */
#define CRASH_MESSAGE "terminating connection because of crash of another server process"
#define CRASH_DETAIL                                                                          \
    "The postmaster has commanded this server process to roll back the current "            \
    "transaction and exit, because another server process exited abnormally and possibly " \
    "corrupted shared memory."
#define CRASH_HINT "In a moment you should be able to reconnect to the database and repeat " \
                   "your command."

static void cluster_members_add(backend *b) {
    backend_cluster *c = b->cluster;
    pthread_mutex_lock(&c->park_mu);
    b->member_next = c->members;
    c->members = b;
    pthread_mutex_unlock(&c->park_mu);
}

static void cluster_members_del(backend *b) {
    backend_cluster *c = b->cluster;
    pthread_mutex_lock(&c->park_mu);
    for (backend **pp = &c->members; *pp; pp = &(*pp)->member_next)
        if (*pp == b) {
            *pp = b->member_next;
            break;
        }
    pthread_mutex_unlock(&c->park_mu);
}

/* One backend of the cluster crashed (b, or NULL): mark the cluster and
 * wake every other backend, so that each ends at its next step: one
 * waiting inside the guest ends where it resumes (sched_enter), an idle
 * one at its signal fd (backend_idle), a busy one at its next wait. */
static void cluster_crash(backend_cluster *c, backend *b, const char *why) {
    if (!c || atomic_exchange(&c->crashed, true))
        return;
    fprintf(stderr, "pglite: a backend of the cluster crashed (%s): ending every session\n",
            why);
    pthread_mutex_lock(&c->park_mu);
    for (backend *m = c->members; m; m = m->member_next)
        if (m != b && m->pg)
            engine_wake(m->pg);
    pthread_mutex_unlock(&c->park_mu);
}

/* A backend of a crashed cluster: dead, with PostgreSQL's FATAL for its
 * client in b->out. */
static void end_for_crash(backend *b) {
    if (!b->dead)
        kill_backend(b, CRASH_MESSAGE);
    wire_buf_reset(&b->out);
    wire_error_response(&b->out, PqMsg_ErrorResponse, "FATAL", "57P02", CRASH_MESSAGE,
                        CRASH_DETAIL, CRASH_HINT);
}

static bool crashed(const backend *b) { return b->cluster && atomic_load(&b->cluster->crashed); }

static int poke_global(engine *e, const char *name, const void *v, size_t n);

/* Call an i32 export; on exit 100 finish the longjmp. Returns 0, or -1 if
 * the backend is gone (message set). */
static int pump_call(backend *b, const char *fn, const uint32_t *args, int n, uint32_t *ret) {
    engine_result r;
    engine_status s = engine_call(b->pg, fn, args, n, &r);
    if (s == ENGINE_OK) {
        if (ret)
            *ret = r.value;
        return 0;
    }
    /* An ERROR raised while its handler runs (reporting the first one, say:
     * the message cannot be converted to the client encoding) longjmps to
     * the same handler, as PostgreSQL's sigsetjmp block is re-entered: run
     * it again. elog.c bounds this itself (plain-ASCII reports past the
     * second recursion, a PANIC when its error stack is full); the limit
     * here only guards against a handler that never finishes. */
    for (int depth = 0; s == ENGINE_EXITED && r.exit_code == EXIT_LONGJMP &&
                        depth < ERROR_RECURSION_MAX;
         depth++) {
        s = engine_call(b->pg, "PostgresMainLongJmp", NULL, 0, &r);
        if (s == ENGINE_OK) {
            b->errors++;
            return 0;
        }
    }
    char msg[600];
    if (s == ENGINE_EXITED) {
        /* FATAL or a deliberate exit: the session is over */
        snprintf(msg, sizeof msg, "the backend exited (%s)", r.message);
    } else {
        snprintf(msg, sizeof msg, "the backend failed: %s", r.message);
    }
    kill_backend(b, msg);
    /* As the postmaster judges a child's exit: 0 and 1 (a FATAL) are
     * normal; a trap, an abort (PANIC) or any other code is a crash. */
    if (b->cluster && !b->starting &&
        (s != ENGINE_EXITED || (r.exit_code != 0 && r.exit_code != 1)) &&
        !atomic_load(&b->cluster->crashed))
        cluster_crash(b->cluster, b, r.message);
    return -1;
}

static int run_cycle(backend *b) {
    for (;;) {
        uint32_t remaining = 0;
        if (b->inpos >= b->inlen) {
            if (pump_call(b, "pq_buffer_remaining_data", NULL, 0, &remaining) != 0)
                return -1;
            if (!remaining)
                break;
        }
        if (pump_call(b, "PostgresMainLoopOnce", NULL, 0, NULL) != 0)
            return -1;
    }
    /* An ERROR while reporting the state before ReadyForQuery (a
     * ParameterStatus, say) leaves ReadyForQuery unsent: PostgreSQL's loop
     * goes round again after the handler, and so does this. */
    for (int tries = 0;; tries++) {
        unsigned long errors = b->errors;
        if (pump_call(b, "PostgresSendReadyForQueryIfNecessary", NULL, 0, NULL) != 0)
            return -1;
        if (b->errors == errors)
            break;
        if (tries == ERROR_RECURSION_MAX) {
            kill_backend(b, "the backend cannot get to ReadyForQuery: every attempt "
                            "raised an ERROR");
            return -1;
        }
    }
    return pump_call(b, "pgl_pq_flush", NULL, 0, NULL);
}


/* ---- the cluster lock ---------------------------------------------------------
 * One backend of a cluster runs guest code at a time. A backend that keeps
 * the lock longer than a slice while others wait is asked to let go (its
 * InterruptPending set, as a signal would: its next CHECK_FOR_INTERRUPTS
 * is an interrupt point), which it does when it holds no LWLock and is in
 * no critical section (PostgreSQL holds interrupts off meanwhile), and
 * then waits until another has taken the lock before it asks again. */
#define SLICE_MS 20
#define LIVELOCK_MS 10000      /* logged */
#define STOP_MS_DEFAULT 30000  /* stopped (backend_options.stop_ms) */

static double mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* now + ms, for pthread_cond_timedwait */
static struct timespec in_ms(long ms) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += ms * 1000000L;
    while (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static void run_lock(backend_cluster *c, backend *b) {
    if (pthread_mutex_trylock(&c->run) != 0) {
        if (atomic_fetch_add(&c->waiting, 1) == 0) {
            /* the first to wait wakes the watchdog, which then looks every
             * 10 ms while anyone waits; a runaway is one that has run that
             * long since then (not since it took the lock: a long
             * statement nobody waited for is no runaway) */
            pthread_mutex_lock(&c->run_mu);
            c->stall_since = mono_ms();
            c->probing = false;
            pthread_cond_signal(&c->wd_cv);
            pthread_mutex_unlock(&c->run_mu);
        }
        pthread_mutex_lock(&c->run);
        atomic_fetch_sub(&c->waiting, 1);
    }
    pthread_mutex_lock(&c->run_mu);
    c->holder = b;
    c->holder_runner = engine_runner_self();
    c->held_since = c->stall_since = mono_ms();
    c->poked = c->warned = c->probing = false;
    c->acquired++;
    if (c->yielders)
        pthread_cond_broadcast(&c->run_cv);
    pthread_mutex_unlock(&c->run_mu);
}

static void run_unlock(backend_cluster *c) {
    pthread_mutex_lock(&c->run_mu);
    c->holder = NULL;
    pthread_mutex_unlock(&c->run_mu);
    pthread_mutex_unlock(&c->run);
}

/* Let go of the lock until another backend has taken it (or no one waits
 * any more), then take it again. */
static void run_yield(backend_cluster *c, backend *b) {
    pthread_mutex_lock(&c->run_mu);
    uint64_t gen = c->acquired;
    pthread_mutex_unlock(&c->run_mu);
    run_unlock(c);
    pthread_mutex_lock(&c->run_mu);
    c->yielders++;
    while (c->acquired == gen && atomic_load(&c->waiting) > 0) {
        struct timespec t = in_ms(5);
        pthread_cond_timedwait(&c->run_cv, &c->run_mu, &t);
    }
    c->yielders--;
    pthread_mutex_unlock(&c->run_mu);
    run_lock(c, b);
}

static uint32_t guest_u32(backend *b, uint32_t addr) {
    wasm_rt_memory_t *m = engine_memory(b->pg);
    if (!addr || !abi_mem_ptr(m, addr, 4))
        return 0;
    return __atomic_load_n((uint32_t *)(m->data + addr), __ATOMIC_ACQUIRE);
}

static void *watchdog_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-watchdog");
    backend_cluster *c = arg;
    pthread_mutex_lock(&c->run_mu);
    while (!c->wd_stop) {
        if (atomic_load(&c->waiting) == 0) {
            pthread_cond_wait(&c->wd_cv, &c->run_mu);
            continue;
        }
        /* No holder: the lock is between two backends (the last one let
         * go, the next has not said so yet: held_since is still the last
         * one's), or a closer or a hold has it, which run no statement to
         * interrupt. */
        backend *h = c->holder;
        double held = mono_ms() - c->held_since;

        if (h && h->pg && held >= SLICE_MS && !c->poked && h->addr_interrupt) {
            wasm_rt_memory_t *m = engine_memory(h->pg);
            if (abi_mem_ptr(m, h->addr_interrupt, 4))
                __atomic_store_n((int32_t *)(m->data + h->addr_interrupt), 1, __ATOMIC_RELEASE);
            c->poked = true;
        }
        double stall = mono_ms() - c->stall_since;
        if (h && h->pg && stall >= LIVELOCK_MS && !c->warned) {
            fprintf(stderr,
                    "pglite: the session with pid %u has run for %.0f s without a point where "
                    "it could let the %d waiting run (a statement that never checks for "
                    "interrupts, or a loop holding a lock); at %.0f s it is stopped if it "
                    "is running guest code then\n",
                    engine_pid(h->pg), stall / 1000, atomic_load(&c->waiting),
                    c->stop_ms / 1000.0);
            c->warned = true;
        }
        /* A runaway: stop it where it runs guest code, which traps it; its
         * trap is a crash like any other (every session ends, the cluster
         * starts again with recovery), as a postmaster's SIGQUIT would be
         * the only way out of a backend that ignores its signals. A probe
         * that finds it in host code restarts the clock instead. */
        if (h && h->pg && c->holder_runner && stall >= c->stop_ms) {
            if (!c->probing) {
                c->probing = true;
                c->probe_seen = engine_runner_visits(c->holder_runner);
                fprintf(stderr, "pglite: the session with pid %u has run %.0f s while %d waited: "
                                "stopping it where it runs guest code\n",
                        engine_pid(h->pg), stall / 1000, atomic_load(&c->waiting));
                engine_stop_probe(c->holder_runner);
            } else if (engine_runner_visits(c->holder_runner) != c->probe_seen) {
                /* it was in host code (an import): not a runaway yet */
                c->stall_since = mono_ms();
                c->probing = false;
            } else {
                engine_stop_probe(c->holder_runner); /* not delivered yet */
            }
        }
        struct timespec until = in_ms(10);
        pthread_cond_timedwait(&c->wd_cv, &c->run_mu, &until);
    }
    pthread_mutex_unlock(&c->run_mu);
    return NULL;
}

/* ---- the cluster ---------------------------------------------------------- */

static void sched_leave(void *ctx) { run_unlock(((backend *)ctx)->cluster); }

static void sched_enter(void *ctx) {
    backend *b = ctx;
    run_lock(b->cluster, b);
    /* Another backend crashed while this one waited: what it waits for may
     * never come (a lock its holder took down with it). End here, as the
     * postmaster's SIGQUIT ends it, still holding the lock its caller
     * lets go of. */
    if (atomic_load(&b->cluster->crashed))
        engine_end_guest(137);
}

/* An interrupt point (ProcessInterrupts): let the waiting run first, if
 * any, when PostgreSQL could take a signal here (no LWLock held, no
 * critical section). */
static void sched_point(void *ctx) {
    backend *b = ctx;
    backend_cluster *c = b->cluster;
    if (atomic_load(&c->waiting) == 0 || !b->addr_holdoff || !b->addr_crit ||
        guest_u32(b, b->addr_holdoff) != 0 || guest_u32(b, b->addr_crit) != 0)
        return;
    run_yield(c, b);
    if (atomic_load(&c->crashed))
        engine_end_guest(137);
}

static void spare_end(backend_cluster *c);

static void cluster_unref(backend_cluster *c) {
    if (!c || atomic_fetch_sub(&c->refs, 1) > 1)
        return;
    spare_end(c);
    if (c->wd_started) {
        pthread_mutex_lock(&c->run_mu);
        c->wd_stop = true;
        pthread_cond_signal(&c->wd_cv);
        pthread_mutex_unlock(&c->run_mu);
        pthread_join(c->wd, NULL);
    }
    if (c->park_started) { /* nothing is parked: every backend has closed */
        pthread_mutex_lock(&c->park_mu);
        c->park_stop = true;
        pthread_mutex_unlock(&c->park_mu);
        pthread_join(c->park_thread, NULL);
    }
    pthread_mutex_destroy(&c->park_mu);
    pthread_cond_destroy(&c->park_cv);
    pthread_mutex_destroy(&c->spare_mu);
    pthread_cond_destroy(&c->spare_cv);
    for (size_t i = 0; c->gucs && c->gucs[i]; i++)
        free(c->gucs[i]);
    free(c->gucs);
    free((char *)c->opts.data_dir);
    engine_image_free(c->image);
    if (c->tree_made)
        cluster_tree_close(&c->tree);
    if (c->shm_fd >= 0)
        close(c->shm_fd);
    pthread_mutex_destroy(&c->run);
    pthread_mutex_destroy(&c->run_mu);
    pthread_cond_destroy(&c->run_cv);
    pthread_cond_destroy(&c->wd_cv);
    free(c);
}

/* PGShmemHeader.magic (storage/pg_shmem.h): the first word of the main
 * shared-memory segment, which its totalsize follows at offset 8. */
#define PG_SHMEM_MAGIC 679834894u

/* The fork point of the first backend (main(), just before InitProcess):
 * share the main segment (it is at the same guest address in every
 * instance: CreateSharedMemoryAndSemaphores is the same code on the same
 * heap) and take the image the other backends are cloned from. */
static void on_fork_point(engine *e, void *ctx) {
    backend *b = ctx;
    backend_cluster *c = b->cluster;
    uint32_t g = 0, p = 0, a = 0, size = 0;
    /* The segment is a 64 KiB-aligned block (the guest's anonymous mmap is
     * a memalign) holding MainLWLockArray, which points into it. */
    if (engine_global(e, "MainLWLockArray", &g) == 0 && engine_read(e, g, &p, 4) == 0)
        for (uint32_t x = p & ~0xFFFFu; x >= 0x10000 && x + 0x10000 > x; x -= 0x10000) {
            uint32_t magic = 0;
            if (engine_read(e, x, &magic, 4) != 0)
                break;
            if (magic == PG_SHMEM_MAGIC && engine_read(e, x + 8, &size, 4) == 0) {
                a = x;
                break;
            }
            if (p - x > (1u << 30))
                break;
        }
    wasm_rt_memory_t *m = engine_memory(e);
    if (!a || !size || size % 4096 || !abi_mem_ptr(m, a, size) || (uint64_t)a + size <= p) {
        snprintf(c->fork_err, sizeof c->fork_err,
                 "cannot find PostgreSQL's shared memory (MainLWLockArray at %u)", p);
        return;
    }
    int r = engine_share(e, a, size, &c->shm_fd);
    if (r != 0) {
        snprintf(c->fork_err, sizeof c->fork_err, "cannot share the shared memory (guest errno %d)",
                 -r);
        return;
    }
    c->shm_addr = a;
    c->shm_size = size;
    c->image = engine_image_take(e, c->fork_err, sizeof c->fork_err);
}

/* A start setting that would hang an embedded backend (see the start
 * arguments below): why, or NULL. PostgreSQL's own names and spellings
 * (case-insensitive names, "-" for "_"; values as the GUC parses them). */
static const char *unsupported_setting(const char *kv) {
    const char *eq = strchr(kv, '=');
    char name[64];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof name)
        return NULL;
    for (size_t i = 0; i < n; i++)
        name[i] = kv[i] == '-' ? '_' : (char)(kv[i] >= 'A' && kv[i] <= 'Z' ? kv[i] + 32 : kv[i]);
    name[n] = 0;
    const char *v = eq + 1;
    while (*v == ' ' || *v == '\'')
        v++;
    if (!strcmp(name, "max_worker_processes") && strtol(v, NULL, 10) != 0)
        return "an embedded backend has no postmaster to start background workers, so "
               "a parallel query would wait for them forever (only 0)";
    if (!strcmp(name, "io_method") && strncasecmp(v, "sync", 4) != 0)
        return "an embedded backend has no I/O worker processes (only sync)";
    return NULL;
}

static int start(const backend_options *o, backend_cluster *c, backend **out, char *err,
                 size_t errlen);

/* What a backend does with its client's startup packet (user, database):
 * ProcessStartupPacket, then for the first backend of a cluster PGlite's
 * own start (pgl_sendConnData), and for a clone what BackendMain does next,
 * InitProcess and PostgresMain (which returns, exit 99, with the session
 * ready). The reply (AuthenticationOk ... ReadyForQuery) is kept as the
 * startup reply. 0, or -1 with a message. */
static int connect_session(backend *b, const char *const *params, int minor, bool clone,
                           char *err, size_t errlen) {
    engine_result r;
    const char *user = "postgres", *db = NULL;
    for (size_t i = 0; params[i] && params[i + 1]; i += 2) {
        if (!strcmp(params[i], "user"))
            user = params[i + 1];
        else if (!strcmp(params[i], "database"))
            db = params[i + 1];
    }
    if (!db)
        db = user; /* as PostgreSQL: the database defaults to the user's name */
    if (engine_call(b->pg, "pgl_startPGlite", NULL, 0, &r) != ENGINE_OK) {
        snprintf(err, errlen, "PostgreSQL did not start: %s", r.message);
        return -1;
    }
    engine_global(b->pg, "QueryCancelPending", &b->addr_cancel);
    engine_global(b->pg, "InterruptPending", &b->addr_interrupt);
    engine_global(b->pg, "MyLatch", &b->addr_latch);

    /* The startup packet, as a client would send it. */
    wire_buf pkt;
    wire_buf_init(&pkt);
    wire_startup_version(&pkt, minor, params);
    b->in = pkt.data;
    b->inlen = pkt.len;
    b->inpos = 0;
    wire_buf_reset(&b->out);
    uint32_t port = 0, rc = 1;
    int fail = pump_call(b, "pgl_getMyProcPort", NULL, 0, &port);
    /* PGlite 0.5.17's ProcessStartupPacket(port, ssl_done, gss_done, cancel)
     * copies a CancelRequest into *cancel ({bool; int32 pid; int32 keylen;
     * char key[256]}) for its caller instead of acting on it. Ours is always
     * a startup packet, but the pointer must still be real guest memory. */
    uint32_t cancel = fail ? 0 : engine_malloc(b->pg, STARTUP_CANCEL_SIZE);
    uint32_t args[4] = {port, 1, 1, cancel};
    if (!fail && !cancel) {
        kill_backend(b, "out of guest memory");
        fail = 1;
    }
    if (!fail)
        fail = pump_call(b, "ProcessStartupPacket", args, 4, &rc);
    if (cancel && !b->dead)
        engine_free_guest(b->pg, cancel);
    if (!fail && rc == 0 && !clone) {
        fail = pump_call(b, "pgl_sendConnData", NULL, 0, NULL);
        if (!fail)
            fail = pump_call(b, "pgl_pq_flush", NULL, 0, NULL);
    } else if (!fail && rc == 0) {
        uint32_t names[2] = {engine_strdup(b->pg, db), engine_strdup(b->pg, user)};
        fail = !names[0] || !names[1] || pump_call(b, "pglitec_InitProcess", NULL, 0, NULL);
        if (!fail) {
            engine_status st = engine_call(b->pg, "pglitec_PostgresMain", names, 2, &r);
            if (st != ENGINE_EXITED || r.exit_code != EXIT_ALIVE) {
                kill_backend(b, st == ENGINE_EXITED ? "the session ended as it started"
                                                    : r.message);
                fail = 1;
            }
        }
        /* PostgresMain returned inside its first read of a command, with
         * cancel interrupts held off: that read is over. */
        if (!fail)
            fail = pump_call(b, "pglitec_resume_cancel_interrupts", NULL, 0, NULL);
        /* PostgresMain's greeting (AuthenticationOk ... BackendKeyData) is
         * in the port's buffer, and its main loop's first ReadyForQuery is
         * still to send (the exit came first): both out before the port is
         * made again. */
        uint32_t dest_remote = 2; /* DestRemote */
        if (!fail)
            fail = pump_call(b, "pglitec_ReadyForQuery", &dest_remote, 1, NULL);
        if (!fail)
            fail = pump_call(b, "pgl_pq_flush", NULL, 0, NULL);
        /* PostgresMainLoopOnce serves the port pgl_startPGlite makes: one
         * for this session, now that PostgresMain set it up. */
        if (!fail && engine_call(b->pg, "pgl_startPGlite", NULL, 0, &r) != ENGINE_OK) {
            kill_backend(b, r.message);
            fail = 1;
        }

    }
    wire_buf_free(&pkt);
    b->in = NULL;
    b->inlen = b->inpos = 0;
    if (fail || rc != 0) {
        char log[1024];
        read_log(b, log, sizeof log);
        snprintf(err, errlen, "the startup packet was refused: %s",
                 log[0] ? log : b->dead_msg);
        return -1;
    }
    wire_put(&b->startup, b->out.data, b->out.len);
    wire_buf_reset(&b->out);
    return 0;
}


int backend_start(const backend_options *o, backend **out, char *err, size_t errlen) {
    *out = NULL;
    if (!o || !o->data_dir) {
        snprintf(err, errlen, "no data directory");
        return -1;
    }
    if (!o->sessions)
        return start(o, NULL, out, err, errlen);
    backend_cluster *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    pthread_mutex_init(&c->run, NULL);
    pthread_mutex_init(&c->run_mu, NULL);
    pthread_cond_init(&c->run_cv, NULL);
    pthread_cond_init(&c->wd_cv, NULL);
    pthread_mutex_init(&c->park_mu, NULL);
    pthread_cond_init(&c->park_cv, NULL);
    pthread_mutex_init(&c->spare_mu, NULL);
    pthread_cond_init(&c->spare_cv, NULL);
    for (int k = 0; k < SPARES; k++)
        c->spare_log_fd[k] = -1;
    c->shm_fd = -1;
    c->refs = 1; /* this call's */
    c->opts = (backend_options){.debug = o->debug, .relaxed_durability = o->relaxed_durability,
                                .sessions = 1, .stop_ms = o->stop_ms};
    c->stop_ms = o->stop_ms > 0 ? o->stop_ms : STOP_MS_DEFAULT;
    size_t ng = 0;
    while (o->gucs && o->gucs[ng])
        ng++;
    c->gucs = calloc(ng + 1, sizeof *c->gucs);
    bool copied = c->gucs && (c->opts.data_dir = strdup(o->data_dir)) != NULL;
    for (size_t i = 0; copied && i < ng; i++)
        copied = (c->gucs[i] = strdup(o->gucs[i])) != NULL;
    if (!copied) {
        cluster_unref(c);
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    c->opts.gucs = (const char *const *)c->gucs;
    if (pthread_create(&c->wd, NULL, watchdog_main, c) == 0)
        c->wd_started = true;
    run_lock(c, NULL);
    int rc = start(o, c, out, err, errlen);
    run_unlock(c);
    cluster_unref(c);
    return rc;
}

static int start(const backend_options *o, backend_cluster *c, backend **out, char *err,
                 size_t errlen) {
    backend *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    if (c) {
        b->cluster = c;
        b->starting = true;
        atomic_fetch_add(&c->refs, 1);
        cluster_members_add(b);
    }
    wire_buf_init(&b->out);
    wire_buf_init(&b->startup);
    wire_buf_init(&b->kept);
    b->log_fd = -1;
    if (cluster_tree_open(&b->tree, o->data_dir, err, errlen) != 0) {
        free(b);
        return -1;
    }
    const char *user = o->user && *o->user ? o->user : "postgres";
    const char *db = o->database && *o->database ? o->database : "postgres";
    /* The environment PGlite gives the backend. */
    const char *const *base = cluster_guest_env();
    size_t ne = 0;
    for (size_t i = 0; base[i] && ne < 13; i++) {
        if (strncmp(base[i], "PGUSER=", 7) == 0 || strncmp(base[i], "PGDATABASE=", 11) == 0)
            continue;
        b->env[ne++] = strdup(base[i]);
    }
    if (asprintf(&b->env[ne++], "PGUSER=%s", user) < 0 ||
        asprintf(&b->env[ne++], "PGDATABASE=%s", db) < 0) {
        snprintf(err, errlen, "out of memory");
        backend_close(b);
        return PGL_ENOMEM;
    }
    snprintf(b->log_path, sizeof b->log_path, "%s/postgres.log", b->tree.scratch);
    b->log_fd = open(b->log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char msg[256];
    b->pg = cluster_engine_new(&b->tree, (const char *const *)b->env, -1,
                               o->debug > 0 ? STDERR_FILENO : -1, b->log_fd, msg, sizeof msg);
    if (!b->pg) {
        snprintf(err, errlen, "%s", msg);
        backend_close(b);
        return -1;
    }
    abi_host_set_blob(engine_host(b->pg), o->blob_ctx, o->blob_read, o->blob_write);
    if (c) {
        engine_set_fork_point(b->pg, on_fork_point, b);
        engine_set_scheduler(b->pg, sched_leave, sched_enter, sched_point, b);
        engine_global(b->pg, "InterruptHoldoffCount", &b->addr_holdoff);
        engine_global(b->pg, "CritSectionCount", &b->addr_crit);
    }
    uint32_t rcb = engine_add_callback(b->pg, 2, 1, cb_read, b);
    uint32_t wcb = engine_add_callback(b->pg, 2, 1, cb_write, b);
    if (c) {
        c->cb_read = rcb;
        c->cb_write = wcb;
    }
    uint32_t cbs[2] = {rcb, wcb};
    uint32_t one = 1;
    engine_result r;
    if (!rcb || !wcb) {
        /* (no guest call was made: r holds nothing to report) */
        snprintf(err, errlen, "cannot set up the backend: its function table is full");
        backend_close(b);
        return -1;
    }
    if (engine_call(b->pg, "pgl_set_rw_cbs", cbs, 2, &r) != ENGINE_OK ||
        engine_call(b->pg, "pgl_setPGliteActive", &one, 1, &r) != ENGINE_OK) {
        snprintf(err, errlen, "cannot set up the backend: %s", r.message);
        backend_close(b);
        return -1;
    }
    /* argv: PGlite's start parameters, but durable by default (no -F) and
     * otherwise with PostgreSQL's defaults (no -O: allow_system_table_mods
     * stays off; parallel plans as in PostgreSQL, a Gather run by the
     * leader). Only what an embedded backend cannot do is turned off, each
     * measured (docs/runtime.md, "What an embedded backend lacks"):
     * - max_worker_processes=0: there is no postmaster to start a
     *   background worker. With slots to register one, a parallel query
     *   waits forever for workers that never come; with none, Gather
     *   launches 0 workers and the leader runs the plan.
     * - io_method=sync: PostgreSQL 18's default, worker, hands reads to I/O
     *   worker processes that never start, and the first read from disk
     *   hangs. */
    const char *argv[MAX_ARGS];
    char *owned[MAX_ARGS];
    int argc = 0, nowned = 0;
    static const char *const start[] = {
        "/pglite/bin/postgres", "--single", "-j",
        "-c", "max_worker_processes=0", "-c", "io_method=sync", NULL};
    for (int i = 0; start[i]; i++)
        argv[argc++] = start[i];
    if (o->relaxed_durability) {
        argv[argc++] = "-c";
        argv[argc++] = "fsync=off";
        argv[argc++] = "-c";
        argv[argc++] = "synchronous_commit=off";
    }
    for (size_t i = 0; o->gucs && o->gucs[i] && argc < MAX_ARGS - 8; i++) {
        if (!strchr(o->gucs[i], '=')) {
            snprintf(err, errlen, "invalid setting \"%s\": expected name=value", o->gucs[i]);
            backend_close(b);
            return -1;
        }
        const char *why = unsupported_setting(o->gucs[i]);
        if (why) {
            snprintf(err, errlen, "setting \"%s\" is not supported: %s", o->gucs[i], why);
            backend_close(b);
            return -1;
        }
        argv[argc++] = "-c";
        argv[argc++] = o->gucs[i];
    }
    if (o->debug > 0) {
        if (asprintf(&owned[nowned], "%d", o->debug > 5 ? 5 : o->debug) > 0) {
            argv[argc++] = "-d";
            argv[argc++] = owned[nowned++];
        }
    }
    if (c) {
        /* Dynamic shared memory as files in pg_dynshmem, which every
         * backend maps shared (the default sysv is private guest heap). */
        argv[argc++] = "-c";
        argv[argc++] = "dynamic_shared_memory_type=mmap";
    }
    argv[argc++] = "-D";
    argv[argc++] = "/pglite/data";
    argv[argc++] = db;
    engine_main(b->pg, argc, argv, &r);
    if (c && r.status == ENGINE_EXITED && r.exit_code == EXIT_ALIVE && !c->image) {
        snprintf(err, errlen, "PostgreSQL started, but more sessions cannot: %s",
                 c->fork_err[0] ? c->fork_err : "the fork point was never reached");
        backend_close(b);
        return -1;
    }
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    if (r.status != ENGINE_EXITED || r.exit_code != EXIT_ALIVE) {
        char log[1024];
        read_log(b, log, sizeof log);
        snprintf(err, errlen, "PostgreSQL did not start (%s): %s", r.message,
                 log[0] ? log : "no message");
        backend_close(b);
        return -1;
    }
    const char *params[] = {"user", user, "database", db, NULL};
    if (connect_session(b, params, 0, false, err, errlen) != 0) {
        backend_close(b);
        return -1;
    }
    /* From now on the log is PostgreSQL's business only when debugging. */
    if (o->debug <= 0)
        abi_host_set_stdio(engine_host(b->pg), 2, -1);
    b->starting = false;
    *out = b;
    return 0;
}

/* Latch.owner_pid (storage/latch.h: is_set, maybe_sleeping, is_shared,
 * owner_pid; four bytes each on wasm32). */
#define LATCH_OWNER_PID 12

static int poke_global(engine *e, const char *name, const void *v, size_t n) {
    uint32_t a;
    return engine_global(e, name, &a) == 0 ? engine_write(e, a, v, n) : -1;
}

/* A clone of the image, its guest stderr in a log file of its own. It
 * touches nothing the running backends share: the image is read only, and
 * the engine's clone keeps its own instance, memory and host state (see
 * engine_clone). Any thread, with or without the cluster lock. */
static engine *new_clone(backend_cluster *c, int *log_fd, char *log_path, size_t n, char *msg,
                         size_t msglen) {
    snprintf(log_path, n, "%s/postgres-%lu.log", c->tree.scratch,
             (unsigned long)atomic_fetch_add(&c->clones, 1) + 1);
    *log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    engine *e = cluster_engine_clone(&c->tree, c->image, -1, -1, *log_fd, msg, msglen);
    if (!e) {
        if (*log_fd >= 0)
            close(*log_fd);
        *log_fd = -1;
        unlink(log_path);
    }
    return e;
}

/* The spare thread: keeps SPARES clones ready. Making one (the engine's
 * part of a session's start: its instance, memory map and host state)
 * runs beside the cluster, on another core where there is one;
 * PostgreSQL's part (InitProcess, InitPostgres) waits for the client's
 * startup packet, under the cluster lock, since before it a session would
 * hold a max_connections slot and a database. The thread runs at the
 * lowest priority (nice 19; Linux applies it per thread): a session,
 * which a client waits for, always comes first. At the normal one, a
 * session's thread woken on the core where the spare was being made
 * waited for it (0.6 ms, every other connection of pgbench -C on a 2-vCPU
 * VM) while the other core idled. A failure is not retried until a
 * session takes a spare's place again (spare_take). */
static void *spare_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-spare");
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    backend_cluster *c = arg;
    pthread_mutex_lock(&c->spare_mu);
    while (!c->spare_stop) {
        /* Ended sessions' engines first: their memory goes back. */
        engine *reap[REAPS];
        int nreap = c->nreap;
        memcpy(reap, c->reap, sizeof reap);
        c->nreap = 0;
        int slot = 0;
        while (slot < SPARES && c->spare[slot])
            slot++;
        if (!nreap && (slot == SPARES || c->spare_failed || atomic_load(&c->crashed))) {
            pthread_cond_wait(&c->spare_cv, &c->spare_mu);
            continue;
        }
        pthread_mutex_unlock(&c->spare_mu);
        if (nreap) {
            for (int k = 0; k < nreap; k++)
                engine_free(reap[k]);
            pthread_mutex_lock(&c->spare_mu);
            continue;
        }
        char path[sizeof c->spare_log_path[0]], msg[256];
        int fd = -1;
        engine *e = new_clone(c, &fd, path, sizeof path, msg, sizeof msg);
        if (e)
            engine_clone_prefault(c->image, e);
        pthread_mutex_lock(&c->spare_mu);
        if (!e) {
            c->spare_failed = true;
            continue;
        }
        c->spare[slot] = e;
        c->spare_log_fd[slot] = fd;
        memcpy(c->spare_log_path[slot], path, sizeof path);
    }
    pthread_mutex_unlock(&c->spare_mu);
    return NULL;
}

/* A spare for b (its engine and log), or NULL; then, the thread asked
 * for the next one. The thread starts with the second clone, so that a
 * program with one session of its own (a library handle) pays nothing for
 * spares. Under the cluster lock (the tree is made). */
static engine *spare_take(backend_cluster *c, backend *b) {
    engine *e = NULL;
    pthread_mutex_lock(&c->spare_mu);
    for (int k = 0; k < SPARES && !e; k++)
        if (c->spare[k]) {
            e = c->spare[k];
            b->log_fd = c->spare_log_fd[k];
            memcpy(b->log_path, c->spare_log_path[k], sizeof b->log_path);
            c->spare[k] = NULL;
            c->spare_log_fd[k] = -1;
        }
    if (e)
        c->made_ahead++;
    else
        c->made_inline++;
    c->spare_failed = false;
    if (!c->spare_started && !c->spare_stop && atomic_load(&c->clones) > 0 &&
        pthread_create(&c->spare_thread, NULL, spare_main, c) == 0)
        c->spare_started = true;
    pthread_cond_signal(&c->spare_cv);
    pthread_mutex_unlock(&c->spare_mu);
    return e;
}

/* Unmapping an ended session's engine (its memory's page tables, with a
 * TLB shootdown on the other cores) took ~200 us of the ending session's
 * thread, at the moment a client that reconnects needs the CPU for its
 * next session (pgbench -C): the spare thread, at the lowest priority,
 * does it instead. At most REAPS wait, so that memory is never held
 * back for long when that thread gets no CPU; then the caller frees. */
static bool spare_give(backend_cluster *c, engine *e) {
    bool taken = false;
    pthread_mutex_lock(&c->spare_mu);
    if (c->spare_started && !c->spare_stop && c->nreap < REAPS) {
        c->reap[c->nreap++] = e;
        taken = true;
        pthread_cond_signal(&c->spare_cv);
    }
    pthread_mutex_unlock(&c->spare_mu);
    return taken;
}

static void spare_end(backend_cluster *c) {
    pthread_mutex_lock(&c->spare_mu);
    c->spare_stop = true;
    pthread_cond_signal(&c->spare_cv);
    pthread_mutex_unlock(&c->spare_mu);
    if (c->spare_started)
        pthread_join(c->spare_thread, NULL);
    for (int k = 0; k < c->nreap; k++)
        engine_free(c->reap[k]);
    c->nreap = 0;
    for (int k = 0; k < SPARES; k++)
        if (c->spare[k]) {
            engine_free(c->spare[k]);
            c->spare[k] = NULL;
            if (c->spare_log_fd[k] >= 0)
                close(c->spare_log_fd[k]);
            unlink(c->spare_log_path[k]);
        }
}

void backend_spares(backend *first, int *ready, unsigned long *made_ahead,
                    unsigned long *made_inline) {
    backend_cluster *c = first ? first->cluster : NULL;
    *ready = 0;
    *made_ahead = *made_inline = 0;
    if (!c)
        return;
    pthread_mutex_lock(&c->spare_mu);
    for (int k = 0; k < SPARES; k++)
        *ready += c->spare[k] != NULL;
    *made_ahead = c->made_ahead;
    *made_inline = c->made_inline;
    pthread_mutex_unlock(&c->spare_mu);
}

int backend_clone(backend *first, const char *const *params, int minor, backend **out,
                  char *err, size_t errlen) {
    static const char *const dflt[] = {"user", "postgres", "database", "postgres", NULL};
    if (!params)
        params = dflt;
    *out = NULL;
    backend_cluster *c = first ? first->cluster : NULL;
    if (!c || !c->image) {
        snprintf(err, errlen, "not a backend of a cluster that takes more sessions");
        return -1;
    }
    backend *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    wire_buf_init(&b->out);
    wire_buf_init(&b->startup);
    wire_buf_init(&b->kept);
    b->log_fd = -1;
    b->cluster = c;
    b->starting = true;
    atomic_fetch_add(&c->refs, 1);
    cluster_members_add(b);
    run_lock(c, b);
    if (atomic_load(&c->crashed)) {
        run_unlock(c);
        b->starting = false;
        backend_close(b);
        snprintf(err, errlen, "the database system is in recovery mode: a backend crashed");
        return -1;
    }
    int rc = -1;
    char msg[256];
    if (!c->tree_made) {
        if (cluster_tree_open(&c->tree, first->tree.data_dir, err, errlen) != 0)
            goto out;
        c->tree_made = true;
    }
    b->tree = c->tree;
    b->tree_shared = true;
    b->pg = spare_take(c, b);
    if (!b->pg)
        b->pg = new_clone(c, &b->log_fd, b->log_path, sizeof b->log_path, msg, sizeof msg);
    if (!b->pg) {
        snprintf(err, errlen, "cannot start a session: %s", msg);
        goto out;
    }
    engine_set_scheduler(b->pg, sched_leave, sched_enter, sched_point, b);
    engine_global(b->pg, "InterruptHoldoffCount", &b->addr_holdoff);
    engine_global(b->pg, "CritSectionCount", &b->addr_crit);
    /* The I/O callbacks at the indices the image's memory names. */
    if (engine_callbacks(b->pg) != 0 || engine_add_callback(b->pg, 2, 1, cb_read, b) != c->cb_read ||
        engine_add_callback(b->pg, 2, 1, cb_write, b) != c->cb_write) {
        snprintf(err, errlen, "cannot start a session: its callbacks do not match the image's");
        goto out;
    }
    /* What InitPostmasterChild does in a forked child: its own pid (the
     * instance has one; PostgreSQL's copy and its process-local latch's
     * owner follow), under a postmaster. */
    uint32_t pid = engine_pid(b->pg), latch = 0, ml = 0;
    uint8_t one = 1;
    if (poke_global(b->pg, "MyProcPid", &pid, 4) != 0 || engine_global(b->pg, "MyLatch", &ml) != 0 ||
        engine_read(b->pg, ml, &latch, 4) != 0 || !latch ||
        engine_write(b->pg, latch + LATCH_OWNER_PID, &pid, 4) != 0 ||
        poke_global(b->pg, "IsUnderPostmaster", &one, 1) != 0) {
        snprintf(err, errlen, "cannot start a session: the image has no MyProcPid, MyLatch or "
                              "IsUnderPostmaster");
        goto out;
    }
    /* Not its parent's exit callbacks (on_exit_reset): those would remove
     * the cluster's pg_dynshmem files and postmaster.pid when it ends. */
    engine_result er;
    if (engine_call(b->pg, "pglitec_on_exit_reset", NULL, 0, &er) != ENGINE_OK) {
        snprintf(err, errlen, "cannot start a session: %s", er.message);
        goto out;
    }
    /* Its own random numbers (InitProcessGlobals seeds them per process). */
    uint8_t seed[16];
    uint32_t prng;
    if (engine_global(b->pg, "pg_global_prng_state", &prng) == 0 &&
        getentropy(seed, sizeof seed) == 0)
        engine_write(b->pg, prng, seed, sizeof seed);
    if (connect_session(b, params, minor, true, err, errlen) != 0) {
        /* PostgreSQL's own refusal (its FATAL, what a server sends the
         * client: no such role or database, too many clients...) is the
         * dead backend's startup reply. The FATAL's exit came before the
         * flush of its ErrorResponse: flush it now. */
        engine_result fr;
        if (b->pg)
            engine_call(b->pg, "pgl_pq_flush", NULL, 0, &fr);
        bool fatal = false;
        wire_reader rd;
        wire_msg msg;
        wire_reader_init(&rd, b->out.data, b->out.len);
        while (wire_next(&rd, &msg) == 1)
            fatal |= msg.type == 'E';
        if (b->pg && fatal) {
            wire_put(&b->startup, b->out.data, b->out.len);
            wire_buf_reset(&b->out);
            rc = 1;
        }
        goto out;
    }
    abi_host_set_stdio(engine_host(b->pg), 2, -1);
    /* What its start and first exchange touch, every session's do: the
     * spare's to fault in ahead (backend_exchange). */
    b->learn = true;
    engine_global(b->pg, "QueryCancelPending", &b->addr_cancel);
    engine_global(b->pg, "InterruptPending", &b->addr_interrupt);
    engine_global(b->pg, "MyLatch", &b->addr_latch);
    rc = 0;
out:
    run_unlock(c);
    b->starting = false;
    if (rc == 1) {
        b->dead = true;
        *out = b;
        return 1;
    }
    if (rc != 0) {
        backend_close(b);
        return -1;
    }
    *out = b;
    return 0;
}

int backend_signal_fd(backend *b) { return b && b->pg && !b->dead ? engine_wake_fd(b->pg) : -1; }

int backend_idle(backend *b, const uint8_t **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (b->dead) {
        snprintf(err, errlen, "%s", b->dead_msg);
        return -1;
    }
    uint64_t v;
    int fd = engine_wake_fd(b->pg);
    while (fd >= 0 && read(fd, &v, sizeof v) > 0)
        ;
    if (crashed(b)) {
        end_for_crash(b);
        *out = b->out.data;
        *outlen = b->out.len;
        snprintf(err, errlen, "%s", b->dead_msg);
        return -1;
    }
    if (b->cluster)
        run_lock(b->cluster, b);
    wire_buf_reset(&b->out);
    engine_result r;
    uint32_t flush = 1, pending = 0, addr;
    int rc = 0;
    /* The handlers first (procsignal's, die()'s), then what an idle
     * PostgreSQL backend does from its client read: the notifications,
     * and the interrupts (terminate: its FATAL). */
    if (engine_deliver(b->pg, &r) != ENGINE_OK) {
        kill_backend(b, r.message);
        rc = -1;
    }
    if (rc == 0)
        rc = pump_call(b, "pglitec_ProcessNotifyInterrupt", &flush, 1, NULL);
    /* Any other interrupt (a terminate's die, a ProcSignalBarrier that
     * DROP DATABASE waits for every backend to absorb, catch-up): what
     * CHECK_FOR_INTERRUPTS does in the client read. An idle session has
     * no statement to cancel, so a cancel is dropped first, as
     * PostgreSQL drops one that comes while it reads a command. */
    if (rc == 0 && engine_global(b->pg, "InterruptPending", &addr) == 0 &&
        engine_read(b->pg, addr, &pending, 4) == 0 && pending) {
        uint32_t zero = 0, qcp;
        if (engine_global(b->pg, "QueryCancelPending", &qcp) == 0)
            engine_write(b->pg, qcp, &zero, 1);
        rc = pump_call(b, "ProcessInterrupts", NULL, 0, NULL);
        if (rc != 0)
            engine_call(b->pg, "pgl_pq_flush", NULL, 0, &r); /* its FATAL */
    }
    if (b->cluster)
        run_unlock(b->cluster);
    *out = b->out.data;
    *outlen = b->out.len;
    if (rc != 0)
        snprintf(err, errlen, "%s", b->dead_msg);
    return rc;
}

void backend_set_blob(backend *b, void *ctx, long (*read)(void *ctx, void *buf, size_t len),
                      long (*write)(void *ctx, const void *buf, size_t len)) {
    if (b && b->pg)
        abi_host_set_blob(engine_host(b->pg), ctx, read, write);
}

void backend_hold_cluster(backend *b) {
    if (b && b->cluster)
        run_lock(b->cluster, NULL);
}

void backend_release_cluster(backend *b) {
    if (b && b->cluster)
        run_unlock(b->cluster);
}

void backend_set_input(backend *b, backend_input_fn fn, void *ctx) {
    b->more = fn;
    b->more_ctx = ctx;
}

const uint8_t *backend_startup_reply(backend *b, size_t *len) {
    *len = b->startup.len;
    return b->startup.data;
}

int backend_exchange(backend *b, const uint8_t *in, size_t len,
                     const uint8_t **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (b->dead) {
        snprintf(err, errlen, "%s", b->dead_msg);
        return -1;
    }
    wire_buf_reset(&b->out);
    if (len == 0 || (len >= 5 && in[0] == 'X' && (size_t)wire_frame_len(in, len) == len)) {
        *out = b->out.data;
        return 0; /* nothing to do; Terminate does not end the embedded backend */
    }
    b->in = in;
    b->inlen = len;
    b->inpos = 0;
    if (b->cluster)
        run_lock(b->cluster, b);
    int rc = -1;
    if (!crashed(b)) {
        atomic_store(&b->busy, 1);
        rc = run_cycle(b);
        atomic_store(&b->busy, 0);
    }
    bool crash = crashed(b);
    if (b->cluster)
        run_unlock(b->cluster);
    b->in = NULL;
    if (b->learn && !crash) {
        b->learn = false;
        engine_image_learn(b->cluster->image, b->pg);
    }
    if (crash) { /* another backend's crash (or this one's) ended it */
        end_for_crash(b);
        *out = b->out.data;
        *outlen = b->out.len;
        snprintf(err, errlen, "%s", b->dead_msg);
        return -1;
    }
    if (b->out.oom) {
        kill_backend(b, "out of memory for the reply");
        rc = -1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s", b->dead_msg);
        return -1;
    }
    *out = b->out.data;
    *outlen = b->out.len;
    return 0;
}

static void poke_i32(wasm_rt_memory_t *m, uint32_t addr, int32_t v) {
    if (addr && abi_mem_ptr(m, addr, 4))
        __atomic_store_n((int32_t *)(m->data + addr), v, __ATOMIC_RELEASE);
}

void backend_cancel(backend *b) {
    if (!b || b->dead || !atomic_load(&b->busy))
        return;
    /* What PostgreSQL's SIGINT handler does: flag the interrupt and set the
     * latch, then wake a waiting poll so the latch is seen. */
    wasm_rt_memory_t *m = engine_memory(b->pg);
    poke_i32(m, b->addr_cancel, 1);
    poke_i32(m, b->addr_interrupt, 1);
    if (b->addr_latch && abi_mem_ptr(m, b->addr_latch, 4)) {
        uint32_t latch = __atomic_load_n((uint32_t *)(m->data + b->addr_latch), __ATOMIC_ACQUIRE);
        poke_i32(m, latch, 1); /* Latch.is_set */
    }
    engine_wake(b->pg);
}

static void close_locked(backend *b) {
    if (b->pg && !b->dead && !crashed(b)) {
        uint32_t zero = 0;
        engine_result r;
        engine_call(b->pg, "pgl_setPGliteActive", &zero, 1, &r);
        /* PostgreSQL's exit handlers: end of session, shutdown checkpoint. */
        engine_call(b->pg, "pgl_run_atexit_funcs", NULL, 0, &r);
    }
}

/* ---- crash restart ---------------------------------------------------------- */

int backend_crashed(const backend *b) { return b && crashed(b); }

int backend_inject_crash(backend *b) {
    uint32_t bad = 0x7fffffff; /* no such table entry */
    return b && b->pg && !b->dead ? poke_global(b->pg, "ExecutorStart_hook", &bad, 4) : -1;
}

int backend_inject_stall(backend *b) {
    uint32_t one = 1;
    return b && b->pg && !b->dead ? poke_global(b->pg, "InterruptHoldoffCount", &one, 4) : -1;
}

int backend_restart(backend *first, backend **out, char *err, size_t errlen) {
    *out = NULL;
    backend_cluster *c = first ? first->cluster : NULL;
    if (!c || !atomic_load(&c->crashed)) {
        snprintf(err, errlen, "the cluster has not crashed");
        return -1;
    }
    /* The old cluster inert: its first backend dead (its pid free for the
     * new one's lock file), and no backend inside guest code, nor ever
     * again (each ends where it would run). */
    const uint8_t *kept;
    size_t nkept;
    backend_unpark(first, &kept, &nkept);
    end_for_crash(first);
    run_lock(c, NULL);
    run_unlock(c);
    /* Start again: PostgreSQL finds pg_control "in production" and runs
     * crash recovery from the last checkpoint, as after the postmaster's
     * reinitialisation. */
    return backend_start(&c->opts, out, err, errlen);
}

/* ---- parked backends -----------------------------------------------------
 * A PostgreSQL backend that waits for its client still takes its signals:
 * a ProcSignalBarrier (DROP DATABASE waits until every backend has
 * absorbed it), a terminate, a catch-up, a NOTIFY. A parked backend has no
 * thread of its own waiting for a client, so the cluster's park thread
 * waits on the signal fds of all of them and does it for them. Parking and
 * taking back cost a lock, no system call: the thread looks at the list
 * again every PARK_RESCAN_MS, so a backend parked meanwhile is served
 * from then on. */
#define PARK_RESCAN_MS 100

/* The park thread is done with b (b->serving): what it produced is kept
 * for its owner, who may take it back now. */
static void park_served(backend_cluster *c, backend *b, const uint8_t *out, size_t len,
                        bool failed) {
    pthread_mutex_lock(&c->park_mu);
    wire_put(&b->kept, out, len);
    if (failed)
        b->kept_failed = true;
    b->serving = false;
    pthread_cond_broadcast(&c->park_cv);
    pthread_mutex_unlock(&c->park_mu);
}

/* PostgreSQL's WAL writer, which the cluster has no process for: every
 * wal_writer_delay, XLogBackgroundFlush in a parked backend (the first
 * backend, which never holds a transaction, when it is parked). Without
 * it an asynchronous commit's WAL (synchronous_commit off, as relaxed
 * durability sets) reaches the disk only with a later synchronous commit,
 * a checkpoint or a full WAL buffer: a crash could lose any number of
 * commits instead of at most three times wal_writer_delay's, and until
 * then no hint bit is set on their rows, so every scan checks them in
 * full. Returns when to come again (mono_ms). */
static double wal_writer_tick(backend_cluster *c) {
    double now = mono_ms();
    backend *b = NULL;
    pthread_mutex_lock(&c->park_mu);
    for (backend *p = c->parked; p; p = p->park_next)
        if (!p->dead && !p->serving && (!b || !p->tree_shared))
            b = p;
    if (b)
        b->serving = true;
    pthread_mutex_unlock(&c->park_mu);
    uint32_t delay = 200, addr; /* wal_writer_delay's default, ms */
    if (b && !crashed(b)) {
        run_lock(c, b);
        if (engine_global(b->pg, "pglitec_WalWriterDelay", &addr) != 0 ||
            engine_read(b->pg, addr, &delay, 4) != 0 || delay < 1 || delay > 10000)
            delay = 200; /* PostgreSQL's bounds: 1 ms to 10 s */
        uint32_t done;
        wire_buf_reset(&b->out);
        pump_call(b, "pglitec_XLogBackgroundFlush", NULL, 0, &done);
        run_unlock(c);
    }
    if (b)
        park_served(c, b, b->out.data, b->out.len, b->dead); /* a FATAL or PANIC of its own */
    return now + delay;
}

static void *park_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-park");
    backend_cluster *c = arg;
    struct pollfd *pf = NULL;
    backend **who = NULL;
    size_t cap = 0;
    double next_flush = 0;
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&c->park_mu);
        if (c->park_stop) {
            pthread_mutex_unlock(&c->park_mu);
            break;
        }
        for (backend *b = c->parked; b; b = b->park_next) {
            int fd = backend_signal_fd(b);
            if (fd < 0)
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct pollfd *np = realloc(pf, nc * sizeof *np);
                if (np)
                    pf = np;
                backend **nw = np ? realloc(who, nc * sizeof *nw) : NULL;
                if (!nw)
                    break; /* the rest waits for the next round */
                who = nw;
                cap = nc;
            }
            pf[n] = (struct pollfd){.fd = fd, .events = POLLIN};
            who[n++] = b;
        }
        pthread_mutex_unlock(&c->park_mu);
        double now = mono_ms();
        if (now >= next_flush)
            next_flush = wal_writer_tick(c);
        int wait = PARK_RESCAN_MS;
        if (next_flush - now < wait)
            wait = next_flush - now < 1 ? 1 : (int)(next_flush - now);
        if (poll(pf, (nfds_t)n, wait) <= 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (!(pf[i].revents & POLLIN))
                continue;
            pthread_mutex_lock(&c->park_mu);
            backend *b = c->parked;
            while (b && b != who[i])
                b = b->park_next;
            if (b)
                b->serving = true;
            pthread_mutex_unlock(&c->park_mu);
            if (!b)
                continue; /* taken back meanwhile: its owner sees the signal */
            const uint8_t *out;
            size_t len;
            char err[640];
            int rc = backend_idle(b, &out, &len, err, sizeof err);
            park_served(c, b, out, len, rc != 0);
        }
    }
    free(pf);
    free(who);
    return NULL;
}

int backend_park(backend *b) {
    backend_cluster *c = b ? b->cluster : NULL;
    if (!c || b->dead)
        return 0; /* no other backend can signal it */
    pthread_mutex_lock(&c->park_mu);
    if (!c->park_started && !c->park_stop) {
        if (pthread_create(&c->park_thread, NULL, park_main, c) != 0) {
            pthread_mutex_unlock(&c->park_mu);
            return -1;
        }
        c->park_started = true;
    }
    if (!b->is_parked) {
        b->is_parked = true;
        b->park_next = c->parked;
        c->parked = b;
    }
    pthread_mutex_unlock(&c->park_mu);
    return 0;
}

int backend_unpark(backend *b, const uint8_t **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    backend_cluster *c = b ? b->cluster : NULL;
    if (!c)
        return 0;
    pthread_mutex_lock(&c->park_mu);
    if (b->is_parked) {
        for (backend **pp = &c->parked; *pp; pp = &(*pp)->park_next)
            if (*pp == b) {
                *pp = b->park_next;
                break;
            }
        b->is_parked = false;
        while (b->serving)
            pthread_cond_wait(&c->park_cv, &c->park_mu);
    }
    pthread_mutex_unlock(&c->park_mu);
    /* Kept until the next unpark: the caller reads it before the next
     * exchange, which does not touch it. */
    wire_buf_free(&b->out_kept_prev);
    b->out_kept_prev = b->kept;
    wire_buf_init(&b->kept);
    *out = b->out_kept_prev.data;
    *outlen = b->out_kept_prev.len;
    int failed = b->kept_failed;
    b->kept_failed = false;
    return failed ? -1 : 0;
}

void backend_close(backend *b) {
    if (!b)
        return;
    const uint8_t *kept;
    size_t nkept;
    backend_unpark(b, &kept, &nkept);
    /* A backend that fails to start is closed by its starter, which holds
     * the cluster's lock already. */
    bool lock = b->cluster && !b->starting;
    if (lock)
        run_lock(b->cluster, NULL); /* not the holder: the watchdog leaves it alone */
    close_locked(b);
    if (lock)
        run_unlock(b->cluster);
    if (b->cluster)
        cluster_members_del(b); /* no crash wakes it now: its engine goes */
    /* Outside the cluster lock (when b was started), and in the spare
     * thread where there is one: unmapping the memory is the expensive
     * part of an ending, and the next session's start need not wait for
     * it. */
    if (b->pg && (!b->cluster || !spare_give(b->cluster, b->pg)))
        engine_free(b->pg);
    b->pg = NULL;
    if (b->log_fd >= 0)
        close(b->log_fd);
    if (b->tree_shared)
        unlink(b->log_path); /* before the cluster, which may remove the tree */
    else
        cluster_tree_close(&b->tree);
    cluster_unref(b->cluster);
    wire_buf_free(&b->out);
    wire_buf_free(&b->startup);
    wire_buf_free(&b->kept);
    wire_buf_free(&b->out_kept_prev);
    for (size_t i = 0; i < sizeof b->env / sizeof b->env[0]; i++)
        free(b->env[i]);
    free(b);
}
