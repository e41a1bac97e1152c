/* Internal to src/abi: the host instance and helpers shared by its files. */
#ifndef PGLITE_ABI_INTERNAL_H
#define PGLITE_ABI_INTERNAL_H

#include "abi/abi.h"
#include "abi/emscripten.h"

#include <stdbool.h>
#include <time.h>

#define ABI_MAX_FDS 1024

/* A syscall's failure as its import returns it: -errno (guest numbering). */
#define NEG(e) ((u32) - (int32_t)(e))

typedef enum {
    FD_FREE = 0,
    FD_HOST,  /* a host file, pipe end or stdio: host_fd */
    FD_DIR,   /* a host directory: host_fd (O_RDONLY|O_DIRECTORY) */
    FD_SYNTH, /* a synthetic guest directory */
    FD_DEV,   /* a virtual device */
} abi_fd_kind;

typedef struct abi_dirent {
    uint64_t ino;
    uint8_t type; /* guest DT_* */
    char *name;
} abi_dirent;

typedef struct abi_fd {
    abi_fd_kind kind;
    int host_fd;
    int flags;       /* guest open flags (status flags kept for F_GETFL) */
    int fd_flags;    /* FD_CLOEXEC */
    bool writable;   /* opened for writing on a writable mount */
    uint64_t pipe_id; /* both ends of one pipe (and their dups) share it; 0: not a pipe */
    vfs_dev dev;
    char *guest_path; /* canonical guest path (dirs and files) */
    /* The data directory's global/pg_control, open for writing: a write of
     * it at offset 0 is held until its fsync (or close), see fs.c. */
    bool control;
    uint8_t *held;
    size_t held_len;
    /* A relcache init file open for reading, read whole at open and read
     * from here (see fs.c); its position is whole_pos, not the host fd's. */
    uint8_t *whole;
    size_t whole_len, whole_pos;
    /* directory listing snapshot for getdents */
    abi_dirent *ents;
    size_t nents, pos;
    bool listed;
} abi_fd;

typedef struct abi_sjlj {
    void *jb[5]; /* __builtin_setjmp buffer */
    struct abi_sjlj *prev;
} abi_sjlj;

struct Z_env_instance_t {
    wasm_rt_memory_t *mem;
    wasm_rt_funcref_table_t *table;
    abi_exports ex;
    bool have_ex;
    struct Z_wasi_snapshot_preview1_instance_t wasi;

    vfs *vfs;
    struct abi_dylink *dylink;
    char cwd[VFS_PATH_MAX];
    uint32_t umask;
    abi_fd *fds[ABI_MAX_FDS];

    char **env;
    size_t nenv;

    int (*socket_open)(void *ctx);
    void *socket_ctx;
    uint32_t encname[43]; /* pg_encoding_to_char's strings (pgcompat.c) */

    void *blob_ctx;
    long (*blob_read)(void *ctx, void *buf, size_t len);
    long (*blob_write)(void *ctx, const void *buf, size_t len);

    /* itimers (ITIMER_REAL, VIRTUAL, PROF): absolute monotonic deadlines in
     * ms, 0 when disarmed. */
    double timer_deadline[3];
    atomic_int timer_armed;
    /* eventfd another thread writes to wake a waiting poll (cancel). */
    int wake_fd;
    /* The pid getpid() returns in this instance when the host gave it one
     * (0: the module's own constant), and the signals sent to it that it
     * has not taken yet (process.c). */
    uint32_t pid;
    _Atomic uint64_t sig_pending;
    void (*fork_point)(void *ctx);
    void *fork_ctx;
    /* The scheduler's hooks around a wait that blocks (process.c). */
    void (*sched_leave)(void *ctx);
    void (*sched_enter)(void *ctx);
    void (*sched_yield)(void *ctx); /* at an interrupt point */
    void *sched_ctx;
    /* MAP_SHARED file mappings made real host mappings (net.c): a DSM
     * segment in pg_dynshmem is one memory for every instance that maps
     * it, as between processes. */
    struct abi_map *maps;
    size_t nmaps, maps_cap;
};

typedef struct abi_map {
    uint32_t addr, len; /* guest range; len a multiple of the host page */
    uint8_t *host;      /* where that is in host memory */
    int host_fd;        /* a dup, kept for clones */
    uint64_t off;
} abi_map;

/* Thread-local invoke chain (generated invoke_* use it). */
extern _Thread_local abi_sjlj *abi_sjlj_top;

/* Table entry idx, checked against the expected function type (traps like
 * call_indirect on a null entry, a bad index or a type mismatch). */
static inline const wasm_rt_funcref_t *abi_table_entry(abi_host *h, uint32_t idx,
                                                       uint32_t type) {
    wasm_rt_funcref_table_t *t = h->table;
    if (UNLIKELY(idx >= t->size || !t->data[idx].func ||
                 t->data[idx].func_type != type))
        wasm_rt_trap(WASM_RT_TRAP_CALL_INDIRECT);
    return &t->data[idx];
}

static inline wasm_rt_memory_t *abi_mem(abi_host *h) { return h->mem; }

/* Guest memory accessors; callers check bounds with abi_mem_ptr first or
 * use these, which trap (OOB) on a bad address like the guest would. */
uint8_t *abi_gptr(abi_host *h, uint32_t ptr, uint32_t len);
static inline void abi_w32(abi_host *h, uint32_t p, uint32_t v) {
    uint8_t *d = abi_gptr(h, p, 4);
    memcpy(d, &v, 4);
}
static inline void abi_w64(abi_host *h, uint32_t p, uint64_t v) {
    uint8_t *d = abi_gptr(h, p, 8);
    memcpy(d, &v, 8);
}
static inline void abi_w16(abi_host *h, uint32_t p, uint16_t v) {
    uint8_t *d = abi_gptr(h, p, 2);
    memcpy(d, &v, 2);
}
static inline uint32_t abi_r32(abi_host *h, uint32_t p) {
    uint32_t v;
    memcpy(&v, abi_gptr(h, p, 4), 4);
    return v;
}
static inline uint16_t abi_r16(abi_host *h, uint32_t p) {
    uint16_t v;
    memcpy(&v, abi_gptr(h, p, 2), 2);
    return v;
}
/* Read a guest C string into buf (size VFS_PATH_MAX). Returns its length
 * or -errno (EFAULT, ENAMETOOLONG). */
int abi_gstr(abi_host *h, uint32_t ptr, char *buf, size_t size);
/* Write a NUL-terminated string of at most size bytes (truncating). */
void abi_put_str(abi_host *h, uint32_t ptr, uint32_t size, const char *s);

/* A copy of msg in fresh guest heap with every '%' doubled, for guest
 * functions that take a printf format (0 on failure). */
uint32_t abi_guest_format(abi_host *h, const char *msg);

/* Raise a PostgreSQL ERROR with SQLSTATE (written as 0x0A000 for "0A000")
 * and message in the running statement (pgcompat.c). Only from an import
 * the guest called. Never returns. */
_Noreturn void abi_pg_error(abi_host *h, int sqlstate, const char *msg);

/* Guest heap allocation through the module's exports (0 on failure). */
uint32_t abi_guest_alloc(abi_host *h, uint32_t align, uint32_t size);

/* fd table */
abi_fd *abi_fd_get(abi_host *h, uint32_t fd);
int abi_fd_install(abi_host *h, abi_fd *f, int min_fd);
int abi_fd_socket(abi_host *h, int host_fd);
void abi_fd_release(abi_fd *f);
void abi_fds_close_all(abi_host *h);

/* Monotonic and wall clocks in ms (as emscripten_get_now/date_now). */
double abi_now_ms(void);
double abi_date_ms(void);

/* Take the signals sent to this instance (process.c), in the guest; true
 * if one was delivered. */
bool abi_host_take_signals(abi_host *h);
/* Deliver expired itimers; true if one was. */
bool abi_host_fire_timers(abi_host *h);

/* Check timers and signals; deliver what is due, and say whether a guest
 * signal handler ran (a blocking call it interrupted fails with EINTR).
 * Cheap when nothing is due. */
static inline bool abi_timers_check(abi_host *h) {
    bool ran = false;
    if (atomic_load_explicit(&h->timer_armed, memory_order_relaxed))
        ran = abi_host_fire_timers(h);
    if (UNLIKELY(atomic_load_explicit(&h->sig_pending, memory_order_relaxed) != 0))
        ran |= abi_host_take_signals(h);
    return ran;
}
/* Earliest armed deadline (ms, monotonic) or 0. */
double abi_timer_next(abi_host *h);

#endif
