/*
 * abi: the host side of the Emscripten + WASI imports of PGlite's modules.
 *
 * wasm2c turns every import of a module into an extern C function taking a
 * pointer to `struct Z_env_instance_t` (module "env") or
 * `struct Z_wasi_snapshot_preview1_instance_t` (module "wasi_snapshot_preview1").
 * Both are defined here: one `abi_host` per guest instance holds everything
 * the imports need (linear memory, function table, fd table, the vfs, clocks,
 * timers, environment). The same import functions serve every module
 * (pglite.wasm, initdb.wasm, side modules).
 *
 * Errors go back to the guest in Emscripten's numbering (WASI errno values),
 * negated for the __syscall_* family, positive for the WASI functions.
 *
 * Non-local control flow (guest exit(), traps, setjmp/longjmp) is expressed
 * with abi frames: the engine pushes an abi_frame around every call into the
 * guest; exit() and traps unwind to it. invoke_* imports keep their own chain
 * of setjmp frames for Emscripten's JS-style setjmp/longjmp.
 *
 * This layer knows the wasm2c runtime types (wasm-rt.h) but not the
 * generated module headers: the engine hands it the few exports it needs as
 * function pointers.
 */
#ifndef PGLITE_ABI_H
#define PGLITE_ABI_H

#include <setjmp.h>
#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>

#include "wasm-rt.h"
#include "vfs/vfs.h"

/* wasm2c's core types, as the generated headers define them. */
#ifndef WASM_RT_CORE_TYPES_DEFINED
#define WASM_RT_CORE_TYPES_DEFINED
typedef uint8_t u8;
typedef int8_t s8;
typedef uint16_t u16;
typedef int16_t s16;
typedef uint32_t u32;
typedef int32_t s32;
typedef uint64_t u64;
typedef int64_t s64;
typedef float f32;
typedef double f64;
#endif

typedef struct Z_env_instance_t abi_host;

/* The "wasi_snapshot_preview1" import instance: a view of its abi_host. */
struct Z_wasi_snapshot_preview1_instance_t {
    abi_host *host;
};

/* Exports of the guest module that the imports call back into. */
typedef struct abi_exports {
    void *mi; /* the module instance passed to each of these */
    uint32_t (*stack_get_current)(void *mi);
    void (*stack_restore)(void *mi, uint32_t sp);
    void (*set_threw)(void *mi, uint32_t threw, uint32_t value);
    /* _emscripten_timeout(which, now_ms): delivers an itimer signal */
    void (*emscripten_timeout)(void *mi, uint32_t which, double now);
    /* emscripten_builtin_memalign(align, size) and free, for mmap */
    uint32_t (*memalign)(void *mi, uint32_t align, uint32_t size);
    void (*free)(void *mi, uint32_t ptr);
    /* __dl_seterr(fmt, va_list): what dlerror() reports (may be NULL) */
    void (*dl_seterr)(void *mi, uint32_t fmt, uint32_t va);
    /* raise(sig): delivers a signal sent by another instance (may be NULL) */
    uint32_t (*raise)(void *mi, uint32_t sig);
} abi_exports;

/* ---- unwinding ---------------------------------------------------------- */

typedef enum {
    ABI_UNWIND_NONE = 0,
    ABI_UNWIND_EXIT = 1, /* guest called exit()/proc_exit(): code = status */
    ABI_UNWIND_TRAP = 2, /* wasm trap: code = wasm_rt_trap_t */
    ABI_UNWIND_ABORT = 3, /* guest abort()/assert: code unused */
} abi_unwind_kind;

typedef struct abi_frame {
    sigjmp_buf jb;
    struct abi_frame *prev;
    void *saved_sjlj; /* invoke chain hidden while this frame is active */
    volatile int kind;
    volatile int code;
} abi_frame;

/* Enter/leave a frame; use as:
 *   abi_frame f; abi_frame_push(&f);
 *   if (sigsetjmp(f.jb, 0) == 0) { ...call guest...; }
 *   abi_frame_pop(&f);  -> f.kind / f.code tell what happened
 */
void abi_frame_push(abi_frame *f);
void abi_frame_pop(abi_frame *f);
/* Unwind to the innermost frame. Never returns. */
_Noreturn void abi_unwind(abi_unwind_kind kind, int code);
/* Message of the last ABI_UNWIND_ABORT on this thread ("" if none). */
const char *abi_abort_message(void);
void abi_set_abort_message(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ---- the host instance -------------------------------------------------- */

/* One guest directory mapped onto a host directory (see vfs_mount). */
typedef struct abi_mount {
    const char *guest; /* absolute guest directory, e.g. "/pglite/data" */
    const char *host;  /* existing host directory */
    int writable;
} abi_mount;

typedef struct abi_config {
    /* The guest tree: mounts (nested ones after their parents) and, with
     * devices set, /dev/null, /dev/urandom and /dev/blob. The host builds
     * and owns the vfs. */
    const abi_mount *mounts;
    size_t nmounts;
    int devices;
    const char *cwd;          /* initial guest cwd, default "/" */
    const char *const *env;   /* NULL-terminated "NAME=value" list */
    /* Host fds for guest stdin/stdout/stderr; -1 means /dev/null.
     * The fds are borrowed (dup'ed internally). */
    int stdin_fd, stdout_fd, stderr_fd;
    /* /dev/blob: called when the guest reads/writes the COPY channel.
     * Either may be NULL (reads give EOF, writes are discarded). */
    void *blob_ctx;
    long (*blob_read)(void *ctx, void *buf, size_t len);
    long (*blob_write)(void *ctx, const void *buf, size_t len);
    /* socket(): a host socket connected to where the guest's client
     * library is to talk (pg_dump's libpq: a session of the database), or
     * -1. NULL: no network (EAFNOSUPPORT). Connecting is the host's: the
     * guest's connect() is a no-op in pglite's libc. */
    int (*socket_open)(void *ctx);
    void *socket_ctx;
    /* Answer for popen("locale -a") and other popen/system calls routed
     * through the guest's fopen of the pseudo files: not used yet. */
} abi_config;

/* Returns NULL with a message in err on failure (bad mount, bad fd, no
 * memory). */
abi_host *abi_host_new(const abi_config *cfg, char *err, size_t errlen);
void abi_host_free(abi_host *h);

/* Set once the module is instantiated. */
void abi_host_set_memory(abi_host *h, wasm_rt_memory_t *mem);
wasm_rt_memory_t *abi_host_memory(abi_host *h);
void abi_host_set_table(abi_host *h, wasm_rt_funcref_table_t *table);
void abi_host_set_exports(abi_host *h, const abi_exports *ex);
struct Z_wasi_snapshot_preview1_instance_t *abi_host_wasi(abi_host *h);

/* Replace guest stdio at run time (e.g. between initdb steps). */
int abi_host_set_stdio(abi_host *h, int guest_fd, int host_fd);

/* Replace the /dev/blob callbacks (abi_config.blob_*) at run time. */
void abi_host_set_blob(abi_host *h, void *ctx,
                       long (*read)(void *ctx, void *buf, size_t len),
                       long (*write)(void *ctx, const void *buf, size_t len));

/* Forget per-run state that lived in guest memory the engine just
 * overwrote: armed timers and dlopen'ed libraries. The fd table stays. */
void abi_host_reset(abi_host *h);

/* Wake the guest if it is waiting in poll(); safe from any thread. */
void abi_host_wake(abi_host *h);

/* Process ids (process.c). Each instance is one PostgreSQL process: the
 * host gives it a pid, unique in this process, which the guest's getpid()
 * returns once the engine sets it there too, and by which kill() from
 * another instance reaches it. 0 takes the pid away. -EEXIST if another
 * instance has it. */
int abi_host_set_pid(abi_host *h, uint32_t pid);
/* Give the instance the next pid no other instance has; 0 or -errno. */
int abi_host_assign_pid(abi_host *h, uint32_t *pid);
/* Send signal sig (1..63, Emscripten's numbers) to the instance: it is
 * pending until the instance takes it, on its own thread, at its next safe
 * point, which waking it hastens. Safe from any thread. */
int abi_host_signal(abi_host *h, int sig);
/* Deliver now what is due to the instance (expired itimers, signals sent
 * to it), from the host, inside an engine frame; true if a handler ran.
 * The instance otherwise takes them at its next import. */
bool abi_host_deliver(abi_host *h);
/* The eventfd that becomes readable when the instance is woken
 * (abi_host_wake, a signal sent to it); -1 if none. Whoever waits on it
 * while the instance is idle reads it empty. */
int abi_host_wake_fd(const abi_host *h);
/* Call fn(ctx) at the module's fork point: main() reaches it with the
 * cluster's shared memory made and before InitProcess, on its way to
 * becoming a backend (pglite.wasm as patched by patch-sessions.py). NULL
 * clears it. */
void abi_host_set_fork_point(abi_host *h, void (*fn)(void *ctx), void *ctx);
/* The host's scheduler: leave(ctx) before the instance blocks in a wait
 * (a poll() that does not return at once: a latch or lock wait, a sleep),
 * enter(ctx) before it goes on, so that another instance may run guest
 * code meanwhile. NULL hooks: none. */
void abi_host_set_scheduler(abi_host *h, void (*leave)(void *ctx), void (*enter)(void *ctx),
                            void *ctx);
/* And yield(ctx) at each interrupt point (ProcessInterrupts, entered when
 * CHECK_FOR_INTERRUPTS found InterruptPending), where the scheduler may
 * let another instance run; NULL: none. */
void abi_host_set_yield(abi_host *h, void (*yield)(void *ctx));


/* ---- fork ------------------------------------------------------------------
 * A backend of a running cluster starts as a copy of an instance stopped at
 * its fork point (the engine copies the memory): what the host half of a
 * forked child inherits is saved here, and given to a new instance. */
typedef struct abi_fork_state abi_fork_state;
/* The fds but stdio (dups, as fork makes them), the cwd, the umask, and the
 * shared mappings. NULL if out of memory or fds. */
abi_fork_state *abi_host_fork_save(abi_host *h);
/* Give h (a new instance, its memory already a copy) that state: its fds
 * but stdio replaced by dups of the saved ones, each pipe a new pipe (a
 * pipe of the fork point is that instance's own, PostgreSQL's latch
 * self-pipe), the shared mappings mapped again at their addresses. 0 or
 * -errno (guest numbering). */
int abi_host_fork_restore(abi_host *h, const abi_fork_state *s);
void abi_fork_state_free(abi_fork_state *s);
/* The side modules loaded before the fork point (shared_preload_libraries),
 * for a new instance: each instantiated again at the memory and table
 * bases it had (no relocations, no constructors: the copied memory has
 * their effect), with the dynamic linker's state (GOT, handles) as it was.
 * Inside an engine frame (instantiation may trap), with h's table already
 * covering the libraries' slots and h's memory one whose data-segment
 * writes can be thrown away. 0 or -1 (out of memory). Their table entries
 * are the caller's to put back: abi_host_library_of tells which library
 * (by load order) a function instance of the fork point belongs to, and
 * abi_host_library_instance gives the new instance's. */
int abi_host_fork_restore_libraries(abi_host *h, const abi_fork_state *s);
size_t abi_fork_state_libraries(const abi_fork_state *s);
int abi_host_library_of(abi_host *h, const void *instance);
void *abi_host_library_instance(abi_host *h, int k);

/* Host memory that several instances share (a MAP_SHARED file mapping, the
 * cluster's shared memory): registered so that a zero fill there writes
 * zeros instead of dropping pages. */
int abi_shared_add(const void *p, size_t len);
void abi_shared_del(const void *p);
bool abi_shared_overlaps(const void *p, size_t len);
/* Map host_fd's [off, off+len) shared over the guest's [addr, addr+len)
 * (len a multiple of 4096), registered as above and kept across a fork.
 * 0 or -errno (guest numbering). */
int abi_host_map_shared(abi_host *h, uint32_t addr, uint32_t len, int host_fd, uint64_t off);
/* The i-th shared mapping h made after its fork point (one that s, the
 * fork point's state, does not have), as a guest range: true and *addr,
 * *len, or false past the last. */
bool abi_host_map_since(const abi_host *h, const abi_fork_state *s, size_t i, uint32_t *addr,
                        uint32_t *len);
/* Forget the shared mappings (the memory is going away). */
void abi_host_forget_maps(abi_host *h);

/* Number of guest fds open (for leak checks in tests). */
int abi_host_open_fds(abi_host *h);

/* Guest memory access: pointer to [ptr, ptr+len) or NULL if out of range. */
static inline uint8_t *abi_mem_ptr(wasm_rt_memory_t *m, uint32_t ptr,
                                   uint32_t len) {
    if ((uint64_t)ptr + len > m->size)
        return NULL;
    return m->data + ptr;
}

/* One-time registration of the function types the invoke_* family checks
 * table entries against (generated). */
void abi_invoke_init(void);

/* Linux errno -> Emscripten/WASI errno. */
int abi_errno(int host_errno);

#endif
