/*
 * engine: the compiled PGlite runtime (pglite.wasm and initdb.wasm through
 * wasm2c) as C objects.
 *
 * An engine is one guest instance: its own linear memory (imported by
 * pglite.wasm: 2048 pages initially, at most 32768), its function table and
 * its abi host (fd table, vfs, clocks). Several may live in one process.
 *
 * Every call into the guest runs on a large per-thread native stack (a stack
 * switch on the calling thread, with a guard page, where PostgreSQL's
 * max_stack_depth is also enforced: see stack.c), and
 * inside an abi frame, so a trap, abort() or exit() of the guest comes back
 * as an engine_result, never as a crash or a process exit. A guest that
 * trapped or aborted is dead: later calls fail with ENGINE_DEAD.
 */
#ifndef PGLITE_ENGINE_H
#define PGLITE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "abi/abi.h"

typedef struct engine engine;

/* What an instance sees: its guest tree, environment, stdio (abi.h). */
typedef abi_config engine_config;
typedef abi_mount engine_mount;

typedef enum {
    ENGINE_PGLITE = 1, /* pglite.wasm: PostgreSQL */
    ENGINE_INITDB = 2, /* initdb.wasm */
    ENGINE_PGDUMP = 3, /* pg_dump.wasm (pglite-tools): a client program */
} engine_module;

typedef enum {
    ENGINE_OK = 0,      /* returned normally */
    ENGINE_EXITED = 1,  /* guest called exit(): see exit_code */
    ENGINE_TRAPPED = 2, /* wasm trap (out of bounds, stack exhausted, ...) */
    ENGINE_ABORTED = 3, /* guest abort() or failed assertion */
    ENGINE_DEAD = 4,    /* the instance trapped or aborted earlier */
    ENGINE_ERROR = 5,   /* bad call (unknown export, wrong arity, no memory) */
} engine_status;

typedef struct engine_result {
    engine_status status;
    int exit_code;          /* ENGINE_EXITED */
    uint32_t value;         /* ENGINE_OK: the export's i32 result */
    char message[256];      /* what happened, for anything but ENGINE_OK */
} engine_result;

/* Process-wide initialisation (signal handling, type registry); idempotent
 * and thread-safe. engine_new calls it. */
void engine_global_init(void);

/* Create an instance and run its constructors. cfg is copied into the abi
 * host. Returns NULL with a message in err on failure. */
engine *engine_new(engine_module module, const engine_config *cfg, char *err,
                   size_t errlen);
void engine_free(engine *e);

abi_host *engine_host(engine *e);
wasm_rt_memory_t *engine_memory(engine *e);

/* Call main(argc, argv) with argv[0] included. A guest that returns
 * or exits reports ENGINE_EXITED with the status (Emscripten's main returns
 * through exit()). */
engine_status engine_main(engine *e, int argc, const char *const *argv,
                          engine_result *res);

/* Call an exported function by name with i32 arguments (all of PGlite's
 * host-facing exports are i32-only). */
engine_status engine_call(engine *e, const char *name, const uint32_t *args,
                          int nargs, engine_result *res);

/* The value of an exported global (an address, for data exports). Returns 0
 * and sets *value, or -1 if there is no such global. */
int engine_global(engine *e, const char *name, uint32_t *value);

/* Host callbacks callable from the guest through the function table.
 * Signatures are i32-only: the callback gets its ctx and the i32 arguments.
 * Returns the table index, or 0 on failure. */
typedef uint32_t (*engine_cb)(void *ctx, const uint32_t *args);
uint32_t engine_add_callback(engine *e, int nparams, int has_result,
                             engine_cb fn, void *ctx);

/* Wake the guest from a wait (poll); safe from any thread. */
void engine_wake(engine *e);
/* The fd a wake (or a signal sent to the instance) makes readable, for
 * waiting on an idle instance; -1 if none. */
int engine_wake_fd(engine *e);
/* Run the signal handlers and timers due to an idle instance now. */
engine_status engine_deliver(engine *e, engine_result *res);

/* The pid the guest's getpid() returns (pglite.wasm, patched by
 * tools/build/patch-sessions.py): each instance gets one of its own, which
 * is also how kill() from other instances of this process reaches it.
 * MyProcPid is PostgreSQL's copy, read at its start: a clone's owner sets
 * it (and its latch's owner) to this. */
uint32_t engine_pid(engine *e);

/* Allocate / free guest memory with the guest's malloc. 0 on failure. */
uint32_t engine_malloc(engine *e, uint32_t size);
void engine_free_guest(engine *e, uint32_t ptr);

/* Copy between host and guest memory; -1 if the range is out of bounds. */
int engine_write(engine *e, uint32_t ptr, const void *src, size_t len);
int engine_read(engine *e, uint32_t ptr, void *dst, size_t len);

/* Run fn(arg) on the calling thread's guest stack, inside a frame that
 * catches exit/traps like engine_call. For host code that needs several
 * guest calls in one frame. */
engine_status engine_run(engine *e, void (*fn)(engine *, void *), void *arg,
                         engine_result *res);

/* A copy of the instance's linear memory and stack pointer, and putting it
 * back (what PGlite does to run postgres main several times in one
 * instance during initdb). Restoring also disarms timers and forgets
 * dlopen'ed libraries, whose data lived in the overwritten memory. */
typedef struct engine_snapshot engine_snapshot;
engine_snapshot *engine_snapshot_take(engine *e);
int engine_snapshot_restore(engine *e, const engine_snapshot *s);
void engine_snapshot_free(engine_snapshot *s);

/* Images and clones (pglite.wasm): what fork() gives PostgreSQL. An image
 * is an instance as it is now (taken at the module's fork point, from the
 * hook the abi calls there); a clone is a new instance whose memory is the
 * image's, copy-on-write, with its globals and its host state (fds with
 * fresh pipes, shared mappings: abi_host_fork_save), and a pid of its own.
 * Host callbacks are not part of it: the clone's owner adds the same ones
 * in the same order, so that the table indices in the copied memory name
 * them. */
typedef struct engine_image engine_image;
/* The scheduler's hooks around each blocking wait of the guest, and at
 * each interrupt point (see abi_host_set_scheduler, abi_host_set_yield). */
void engine_set_scheduler(engine *e, void (*leave)(void *ctx), void (*enter)(void *ctx),
                          void (*yield)(void *ctx), void *ctx);
/* Call fn(e, ctx) when the instance reaches its fork point (NULL clears). */
void engine_set_fork_point(engine *e, void (*fn)(engine *e, void *ctx), void *ctx);
engine_image *engine_image_take(engine *e, char *err, size_t errlen);
void engine_image_free(engine_image *img);
int engine_callbacks(const engine *e);
engine *engine_clone(const engine_image *img, const engine_config *cfg, char *err,
                     size_t errlen);
/* Which pages of img its clones write and read: learnt from the first few
 * clones (e, after its start and first exchange), and faulted in ahead
 * in a new clone that has not run yet (the number of pages), off the path
 * of the session it will be. Any thread; the clone's own to use. */
void engine_image_learn(engine_image *img, engine *e);
size_t engine_clone_prefault(const engine_image *img, engine *e);
/* From inside a host import the running instance calls (on its thread):
 * end it there, as a SIGKILL would, without returning to the guest; the
 * call that runs it reports ENGINE_EXITED with code. */
_Noreturn void engine_end_guest(int code);

/* Runaway guests: code that loops without reaching an import cannot be
 * ended cooperatively. engine_runner_self names the calling thread (valid
 * while it lives). engine_stop_probe, from another thread, asks r's
 * thread (SIGXCPU, told apart from any other by a flag of r's) to trap
 * where it is if it is running generated guest code right now (its call
 * then returns ENGINE_TRAPPED, "stopped: ..."); a thread in host code (an
 * import, the host's own work) is left alone and the visit counted
 * (engine_runner_visits): a count that changed after a probe means it
 * was in host code. -1 if the probe cannot be sent (the program has put a
 * handler of its own for SIGXCPU). On an architecture where the
 * interrupted instruction is not known, every probe counts as such a
 * visit (nothing is ever stopped). A host callback that runs while its
 * thread holds a backend (a /dev/blob callback) may see a blocking call
 * end with EINTR when a probe arrives. */
typedef struct engine_runner engine_runner;
engine_runner *engine_runner_self(void);
unsigned engine_runner_visits(engine_runner *r);
int engine_stop_probe(engine_runner *r);
/* The trap code of such a stop (beyond wasm_rt_trap_t's). */
#define ENGINE_TRAP_STOPPED 100

/* Make guest [addr, addr+len) (page-aligned) shared memory: a new memfd
 * holding its present contents, mapped shared over it. Every instance that
 * maps the fd sees the same memory; images keep the mapping. *fd is the
 * memfd (the caller's to close once the instances are gone). 0 or -errno
 * (guest numbering). */
int engine_share(engine *e, uint32_t addr, uint32_t len, int *fd);

/* Write a NUL-terminated string into fresh guest memory (malloc); 0 on
 * failure. */
uint32_t engine_strdup(engine *e, const char *s);

/* Stack-switching primitive (stack.c). */
size_t engine_stack_size(void);

#endif
