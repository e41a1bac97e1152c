/* The host instance, unwinding, environment, clocks, timers, time zones and
 * the Emscripten runtime helpers. */
#define _GNU_SOURCE
#include "abi/abi_internal.h"
#include "abi/dylink.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- unwinding ---------------------------------------------------------- */

static _Thread_local abi_frame *frame_top;
_Thread_local abi_sjlj *abi_sjlj_top;
static _Thread_local char abort_msg[512];

void abi_frame_push(abi_frame *f) {
    f->prev = frame_top;
    f->saved_sjlj = abi_sjlj_top;
    f->kind = ABI_UNWIND_NONE;
    f->code = 0;
    abi_sjlj_top = NULL;
    frame_top = f;
}

void abi_frame_pop(abi_frame *f) {
    frame_top = f->prev;
    abi_sjlj_top = f->saved_sjlj;
}

_Noreturn void abi_unwind(abi_unwind_kind kind, int code) {
    abi_frame *f = frame_top;
    if (!f) {
        /* A guest call outside any engine frame is a host bug, not input. */
        fprintf(stderr, "pglite: guest unwind (kind %d, code %d) outside a "
                        "call frame\n", kind, code);
        abort();
    }
    f->kind = kind;
    f->code = code;
    siglongjmp(f->jb, 1);
}

const char *abi_abort_message(void) { return abort_msg; }

void abi_set_abort_message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(abort_msg, sizeof abort_msg, fmt, ap);
    va_end(ap);
}

/* ---- errno -------------------------------------------------------------- */

int abi_errno(int e) {
    switch (e) {
    case 0: return 0;
    case E2BIG: return G_E2BIG;
    case EACCES: return G_EACCES;
    case EADDRINUSE: return G_EADDRINUSE;
    case EADDRNOTAVAIL: return G_EADDRNOTAVAIL;
    case EAFNOSUPPORT: return G_EAFNOSUPPORT;
    case EAGAIN: return G_EAGAIN;
    case EALREADY: return G_EALREADY;
    case EBADF: return G_EBADF;
    case EBADMSG: return G_EBADMSG;
    case EBUSY: return G_EBUSY;
    case ECANCELED: return G_ECANCELED;
    case ECHILD: return G_ECHILD;
    case ECONNABORTED: return G_ECONNABORTED;
    case ECONNREFUSED: return G_ECONNREFUSED;
    case ECONNRESET: return G_ECONNRESET;
    case EDEADLK: return G_EDEADLK;
    case EDESTADDRREQ: return G_EDESTADDRREQ;
    case EDOM: return G_EDOM;
    case EDQUOT: return G_EDQUOT;
    case EEXIST: return G_EEXIST;
    case EFAULT: return G_EFAULT;
    case EFBIG: return G_EFBIG;
    case EHOSTUNREACH: return G_EHOSTUNREACH;
    case EIDRM: return G_EIDRM;
    case EILSEQ: return G_EILSEQ;
    case EINPROGRESS: return G_EINPROGRESS;
    case EINTR: return G_EINTR;
    case EINVAL: return G_EINVAL;
    case EIO: return G_EIO;
    case EISCONN: return G_EISCONN;
    case EISDIR: return G_EISDIR;
    case ELOOP: return G_ELOOP;
    case EMFILE: return G_EMFILE;
    case EMLINK: return G_EMLINK;
    case EMSGSIZE: return G_EMSGSIZE;
    case ENAMETOOLONG: return G_ENAMETOOLONG;
    case ENETDOWN: return G_ENETDOWN;
    case ENETUNREACH: return G_ENETUNREACH;
    case ENFILE: return G_ENFILE;
    case ENOBUFS: return G_ENOBUFS;
    case ENODEV: return G_ENODEV;
    case ENOENT: return G_ENOENT;
    case ENOEXEC: return G_ENOEXEC;
    case ENOLCK: return G_ENOLCK;
    case ENOMEM: return G_ENOMEM;
    case ENOSPC: return G_ENOSPC;
    case ENOSYS: return G_ENOSYS;
    case ENOTCONN: return G_ENOTCONN;
    case ENOTDIR: return G_ENOTDIR;
    case ENOTEMPTY: return G_ENOTEMPTY;
    case ENOTSOCK: return G_ENOTSOCK;
    case EOPNOTSUPP: return G_EOPNOTSUPP;
    case ENOTTY: return G_ENOTTY;
    case ENXIO: return G_ENXIO;
    case EOVERFLOW: return G_EOVERFLOW;
    case EPERM: return G_EPERM;
    case EPIPE: return G_EPIPE;
    case EPROTO: return G_EPROTO;
    case ERANGE: return G_ERANGE;
    case EROFS: return G_EROFS;
    case ESPIPE: return G_ESPIPE;
    case ESRCH: return G_ESRCH;
    case ETIMEDOUT: return G_ETIMEDOUT;
    case ETXTBSY: return G_ETXTBSY;
    case EXDEV: return G_EXDEV;
    default: return G_EIO;
    }
}

/* ---- memory helpers ----------------------------------------------------- */

uint8_t *abi_gptr(abi_host *h, uint32_t ptr, uint32_t len) {
    uint8_t *p = abi_mem_ptr(h->mem, ptr, len);
    if (!p)
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    return p;
}

int abi_gstr(abi_host *h, uint32_t ptr, char *buf, size_t size) {
    wasm_rt_memory_t *m = h->mem;
    if (ptr == 0 || ptr >= m->size)
        return -G_EFAULT;
    size_t avail = m->size - ptr;
    const uint8_t *s = m->data + ptr;
    const uint8_t *nul = memchr(s, 0, avail < size ? avail : size);
    if (!nul)
        return avail < size ? -G_EFAULT : -G_ENAMETOOLONG;
    size_t n = (size_t)(nul - s);
    memcpy(buf, s, n + 1);
    return (int)n;
}

void abi_put_str(abi_host *h, uint32_t ptr, uint32_t size, const char *s) {
    if (!size)
        return;
    size_t n = strlen(s);
    if (n >= size)
        n = size - 1;
    uint8_t *d = abi_gptr(h, ptr, (uint32_t)n + 1);
    memcpy(d, s, n);
    d[n] = 0;
}

uint32_t abi_guest_format(abi_host *h, const char *msg) {
    char esc[2048];
    size_t j = 0;
    for (size_t i = 0; msg[i] && j + 2 < sizeof esc; i++) {
        if (msg[i] == '%')
            esc[j++] = '%';
        esc[j++] = msg[i];
    }
    esc[j] = 0;
    uint32_t p = abi_guest_alloc(h, 8, (uint32_t)j + 1);
    if (p)
        memcpy(abi_gptr(h, p, (uint32_t)j + 1), esc, j + 1);
    return p;
}

uint32_t abi_guest_alloc(abi_host *h, uint32_t align, uint32_t size) {
    if (!h->have_ex || !h->ex.memalign)
        return 0;
    return h->ex.memalign(h->ex.mi, align, size);
}

/* ---- the host instance -------------------------------------------------- */

static vfs *make_vfs(const abi_config *cfg, char *err, size_t errlen) {
    vfs *v = vfs_new();
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->nmounts; i++) {
        const abi_mount *m = &cfg->mounts[i];
        int r = vfs_mount(v, m->guest, m->host, m->writable ? VFS_RDWR : VFS_RDONLY);
        if (r < 0) {
            snprintf(err, errlen, "cannot map guest %s onto %s: %s", m->guest,
                     m->host, strerror(-r));
            vfs_free(v);
            return NULL;
        }
    }
    if (cfg->devices) {
        static const struct { const char *p; vfs_dev d; } devs[] = {
            {"/dev/null", VFS_DEV_NULL}, {"/dev/urandom", VFS_DEV_URANDOM},
            {"/dev/random", VFS_DEV_URANDOM}, {"/dev/blob", VFS_DEV_BLOB}};
        for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
            int r = vfs_add_device(v, devs[i].p, devs[i].d);
            if (r < 0) {
                snprintf(err, errlen, "cannot add %s: %s", devs[i].p, strerror(-r));
                vfs_free(v);
                return NULL;
            }
        }
    }
    return v;
}

abi_host *abi_host_new(const abi_config *cfg, char *err, size_t errlen) {
    abi_host *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->wasi.host = h;
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->vfs = make_vfs(cfg, err, errlen);
    if (!h->vfs) {
        if (h->wake_fd >= 0)
            close(h->wake_fd);
        free(h);
        return NULL;
    }
    h->dylink = abi_dylink_new();
    if (!h->dylink) {
        snprintf(err, errlen, "out of memory");
        abi_host_free(h);
        return NULL;
    }
    h->umask = 022;
    snprintf(h->cwd, sizeof h->cwd, "%s", cfg->cwd ? cfg->cwd : "/");
    h->blob_ctx = cfg->blob_ctx;
    h->blob_read = cfg->blob_read;
    h->socket_open = cfg->socket_open;
    h->socket_ctx = cfg->socket_ctx;
    h->blob_write = cfg->blob_write;
    size_t n = 0;
    if (cfg->env)
        while (cfg->env[n])
            n++;
    h->env = calloc(n + 1, sizeof *h->env);
    if (!h->env) {
        snprintf(err, errlen, "out of memory");
        abi_host_free(h);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        h->env[i] = strdup(cfg->env[i]);
        if (!h->env[i]) {
            h->nenv = i;
            snprintf(err, errlen, "out of memory");
            abi_host_free(h);
            return NULL;
        }
    }
    h->nenv = n;
    int fds[3] = {cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd};
    for (int i = 0; i < 3; i++) {
        if (abi_host_set_stdio(h, i, fds[i]) < 0) {
            snprintf(err, errlen, "cannot use host fd %d as guest fd %d", fds[i], i);
            abi_host_free(h);
            return NULL;
        }
    }
    return h;
}

void abi_host_set_blob(abi_host *h, void *ctx,
                       long (*read)(void *ctx, void *buf, size_t len),
                       long (*write)(void *ctx, const void *buf, size_t len)) {
    h->blob_ctx = ctx;
    h->blob_read = read;
    h->blob_write = write;
}

void abi_host_free(abi_host *h) {
    if (!h)
        return;
    abi_host_set_pid(h, 0);
    abi_host_forget_maps(h);
    abi_fds_close_all(h);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    abi_dylink_free(h->dylink);
    vfs_free(h->vfs);
    for (size_t i = 0; i < h->nenv; i++)
        free(h->env[i]);
    free(h->env);
    free(h);
}

void abi_host_wake(abi_host *h) {
    if (h->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(h->wake_fd, &one, sizeof one);
        (void)r;
    }
}

void abi_host_reset(abi_host *h) {
    for (int i = 0; i < 3; i++)
        h->timer_deadline[i] = 0;
    atomic_store_explicit(&h->timer_armed, 0, memory_order_relaxed);
    memset(h->encname, 0, sizeof h->encname); /* strings in the old memory */
    abi_dylink *d = abi_dylink_new();
    if (d) {
        /* The new state keeps the main-module binding. The old one stays
         * alive until the host goes: its table entries still point at its
         * instances. */
        abi_dylink_rebind(d, h->dylink);
        abi_dylink_retire(d, h->dylink);
        h->dylink = d;
    }
}

void abi_host_set_memory(abi_host *h, wasm_rt_memory_t *mem) { h->mem = mem; }
wasm_rt_memory_t *abi_host_memory(abi_host *h) { return h->mem; }
void abi_host_set_table(abi_host *h, wasm_rt_funcref_table_t *t) { h->table = t; }
void abi_host_set_exports(abi_host *h, const abi_exports *ex) {
    h->ex = *ex;
    h->have_ex = true;
}
struct Z_wasi_snapshot_preview1_instance_t *abi_host_wasi(abi_host *h) {
    return &h->wasi;
}

/* The module's memory import. */
wasm_rt_memory_t *Z_envZ_memory(struct Z_env_instance_t *h) { return h->mem; }

/* ---- environment -------------------------------------------------------- */

u32 Z_wasi_snapshot_preview1Z_environ_sizes_get(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 pcount, u32 psize) {
    abi_host *h = w->host;
    uint32_t size = 0;
    for (size_t i = 0; i < h->nenv; i++)
        size += (uint32_t)strlen(h->env[i]) + 1;
    abi_w32(h, pcount, (uint32_t)h->nenv);
    abi_w32(h, psize, size);
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_environ_get(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 penv, u32 pbuf) {
    abi_host *h = w->host;
    uint32_t off = 0;
    for (size_t i = 0; i < h->nenv; i++) {
        uint32_t len = (uint32_t)strlen(h->env[i]) + 1;
        memcpy(abi_gptr(h, pbuf + off, len), h->env[i], len);
        abi_w32(h, penv + 4 * (uint32_t)i, pbuf + off);
        off += len;
    }
    return 0;
}

/* ---- clocks and randomness ---------------------------------------------- */

double abi_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double abi_date_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)(ts.tv_nsec / 1000000);
}

f64 Z_envZ_emscripten_get_now(struct Z_env_instance_t *h) {
    abi_timers_check(h);
    return abi_now_ms();
}

f64 Z_envZ_emscripten_date_now(struct Z_env_instance_t *h) {
    abi_timers_check(h);
    return abi_date_ms();
}

u32 Z_wasi_snapshot_preview1Z_clock_time_get(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 id, u64 precision,
    u32 ptime) {
    (void)precision;
    abi_host *h = w->host;
    clockid_t c;
    switch (id) {
    case 0: c = CLOCK_REALTIME; break;
    case 1: c = CLOCK_MONOTONIC; break;
    case 2: c = CLOCK_PROCESS_CPUTIME_ID; break;
    case 3: c = CLOCK_THREAD_CPUTIME_ID; break;
    default: return G_EINVAL;
    }
    abi_timers_check(h);
    struct timespec ts;
    if (clock_gettime(c, &ts) != 0)
        return (u32)abi_errno(errno);
    abi_w64(h, ptime, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_random_get(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 buf, u32 len) {
    uint8_t *p = abi_mem_ptr(w->host->mem, buf, len);
    if (!p)
        return G_EFAULT;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (u32)abi_errno(errno);
        }
        p += n;
        len -= (u32)n;
    }
    return 0;
}

/* ---- itimers ------------------------------------------------------------ */

/* _setitimer_js(which, timeout_ms): arm (or with 0 disarm) a one-shot timer
 * that calls the guest's _emscripten_timeout(which, now) when it expires.
 * The host delivers it synchronously at the next safe point: any clock read,
 * poll/sleep or I/O import, exactly where a signal would be noticed by
 * PostgreSQL's CHECK_FOR_INTERRUPTS machinery. */
u32 Z_envZ__setitimer_js(struct Z_env_instance_t *h, u32 which, f64 timeout_ms) {
    if (which > 2)
        return (u32)-G_EINVAL;
    if (timeout_ms <= 0 || isnan(timeout_ms))
        h->timer_deadline[which] = 0;
    else
        h->timer_deadline[which] = abi_now_ms() + timeout_ms;
    int armed = 0;
    for (int i = 0; i < 3; i++)
        armed |= h->timer_deadline[i] != 0;
    atomic_store_explicit(&h->timer_armed, armed, memory_order_relaxed);
    return 0;
}

double abi_timer_next(abi_host *h) {
    double next = 0;
    for (int i = 0; i < 3; i++)
        if (h->timer_deadline[i] != 0 && (next == 0 || h->timer_deadline[i] < next))
            next = h->timer_deadline[i];
    return next;
}

bool abi_host_fire_timers(abi_host *h) {
    if (!h->have_ex || !h->ex.emscripten_timeout)
        return false;
    bool fired = false;
    double now = abi_now_ms();
    for (uint32_t i = 0; i < 3; i++) {
        if (h->timer_deadline[i] != 0 && h->timer_deadline[i] <= now) {
            h->timer_deadline[i] = 0;
            int armed = 0;
            for (int j = 0; j < 3; j++)
                armed |= h->timer_deadline[j] != 0;
            atomic_store_explicit(&h->timer_armed, armed, memory_order_relaxed);
            /* May re-arm through _setitimer_js. */
            h->ex.emscripten_timeout(h->ex.mi, i, now);
            fired = true;
        }
    }
    return fired;
}

/* ---- time zones --------------------------------------------------------- */

static void zone_name(char *out, size_t n, long gmtoff_sec) {
    /* As Emscripten: "UTC+0100" style names derived from the offset. */
    long west_min = -gmtoff_sec / 60;
    char sign = west_min >= 0 ? '-' : '+';
    int a = (int)((west_min < 0 ? -west_min : west_min) % (100 * 60));
    snprintf(out, n, "UTC%c%02d%02d", sign, a / 60, a % 60);
}

void Z_envZ__tzset_js(struct Z_env_instance_t *h, u32 ptimezone, u32 pdaylight,
                      u32 std_name, u32 dst_name) {
    tzset();
    time_t now = time(NULL);
    struct tm t;
    localtime_r(&now, &t);
    int year = t.tm_year;
    struct tm jan = {.tm_year = year, .tm_mon = 0, .tm_mday = 1, .tm_isdst = -1};
    struct tm jul = {.tm_year = year, .tm_mon = 6, .tm_mday = 1, .tm_isdst = -1};
    time_t tj = mktime(&jan), tl = mktime(&jul);
    struct tm a, b;
    localtime_r(&tj, &a);
    localtime_r(&tl, &b);
    long winter = a.tm_gmtoff, summer = b.tm_gmtoff;
    long std = winter < summer ? winter : summer; /* standard = smaller offset east */
    abi_w32(h, ptimezone, (uint32_t)(int32_t)(-std));
    abi_w32(h, pdaylight, winter != summer);
    char wn[17], sn[17];
    zone_name(wn, sizeof wn, winter);
    zone_name(sn, sizeof sn, summer);
    if (summer > winter) { /* northern hemisphere style */
        abi_put_str(h, std_name, 17, wn);
        abi_put_str(h, dst_name, 17, sn);
    } else {
        abi_put_str(h, std_name, 17, sn);
        abi_put_str(h, dst_name, 17, wn);
    }
}

static void put_tm(abi_host *h, u32 p, const struct tm *t, bool local) {
    uint8_t *d = abi_gptr(h, p, local ? 40 : 32);
    int32_t v[10] = {t->tm_sec, t->tm_min, t->tm_hour, t->tm_mday, t->tm_mon,
                     t->tm_year, t->tm_wday, t->tm_yday, t->tm_isdst,
                     (int32_t)t->tm_gmtoff};
    memcpy(d, v, local ? 40 : 32);
}

static bool get_tm(abi_host *h, u32 p, struct tm *t) {
    uint8_t *d = abi_mem_ptr(h->mem, p, 40);
    if (!d)
        return false;
    int32_t v[10];
    memcpy(v, d, sizeof v);
    memset(t, 0, sizeof *t);
    t->tm_sec = v[0]; t->tm_min = v[1]; t->tm_hour = v[2]; t->tm_mday = v[3];
    t->tm_mon = v[4]; t->tm_year = v[5]; t->tm_wday = v[6]; t->tm_yday = v[7];
    t->tm_isdst = v[8];
    return true;
}

u32 Z_envZ__localtime_js(struct Z_env_instance_t *h, u64 tsec, u32 ptm) {
    time_t t = (time_t)(int64_t)tsec;
    struct tm r;
    if (!localtime_r(&t, &r))
        return 1;
    put_tm(h, ptm, &r, true);
    return 0;
}

/* The same for modules whose _localtime_js returns nothing (pg_dump.wasm,
 * linked to this name: see cmake/PgliteRuntime.cmake). */
void Z_envZ__localtime_js_void(struct Z_env_instance_t *h, u64 tsec, u32 ptm);
void Z_envZ__localtime_js_void(struct Z_env_instance_t *h, u64 tsec, u32 ptm) {
    (void)Z_envZ__localtime_js(h, tsec, ptm);
}

u32 Z_envZ__gmtime_js(struct Z_env_instance_t *h, u64 tsec, u32 ptm) {
    time_t t = (time_t)(int64_t)tsec;
    struct tm r;
    if (!gmtime_r(&t, &r))
        return 1;
    put_tm(h, ptm, &r, false);
    return 0;
}

u64 Z_envZ__mktime_js(struct Z_env_instance_t *h, u32 ptm) {
    struct tm t;
    if (!get_tm(h, ptm, &t))
        return (u64)-1;
    time_t r = mktime(&t);
    if (r == (time_t)-1)
        return (u64)(int64_t)-1;
    put_tm(h, ptm, &t, true);
    return (u64)(int64_t)r;
}

/* ---- process control ---------------------------------------------------- */

void Z_envZ_exit(struct Z_env_instance_t *h, u32 status) {
    (void)h;
    abi_unwind(ABI_UNWIND_EXIT, (int)status);
}

/* Emscripten's way out of main() that keeps the runtime: for a program
 * the host runs to its end, the end (exit status 0). */
void Z_envZ_emscripten_exit_with_live_runtime(struct Z_env_instance_t *h) {
    (void)h;
    abi_unwind(ABI_UNWIND_EXIT, 0);
}

void Z_wasi_snapshot_preview1Z_proc_exit(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 status) {
    (void)w;
    abi_unwind(ABI_UNWIND_EXIT, (int)status);
}

void Z_envZ__abort_js(struct Z_env_instance_t *h) {
    (void)h;
    snprintf(abort_msg, sizeof abort_msg, "abort() called");
    abi_unwind(ABI_UNWIND_ABORT, 0);
}

void Z_envZ___assert_fail(struct Z_env_instance_t *h, u32 cond, u32 file,
                          u32 line, u32 func) {
    char c[256] = "?", f[256] = "?", fn[256] = "?";
    if (abi_gstr(h, cond, c, sizeof c) < 0) strcpy(c, "?");
    if (abi_gstr(h, file, f, sizeof f) < 0) strcpy(f, "unknown file");
    if (abi_gstr(h, func, fn, sizeof fn) < 0) strcpy(fn, "unknown function");
    snprintf(abort_msg, sizeof abort_msg, "Assertion failed: %s, at: %s:%u %s",
             c, f, line, fn);
    abi_unwind(ABI_UNWIND_ABORT, 0);
}

void Z_envZ__emscripten_runtime_keepalive_clear(struct Z_env_instance_t *h) {
    (void)h;
}

/* longjmp(): unwind to the innermost invoke_* of this thread. */
void Z_envZ__emscripten_throw_longjmp(struct Z_env_instance_t *h) {
    (void)h;
    abi_sjlj *s = abi_sjlj_top;
    if (!s) /* longjmp without a setjmp in scope */
        wasm_rt_trap(WASM_RT_TRAP_UNREACHABLE);
    __builtin_longjmp(s->jb, 1);
}

/* Signal delivery (raise(), itimers): call the handler in the table. */
void Z_envZ___call_sighandler(struct Z_env_instance_t *h, u32 fp, u32 sig) {
    wasm_rt_funcref_table_t *t = h->table;
    static uint32_t type_vi;
    if (!type_vi)
        type_vi = wasm_rt_register_func_type(1, 0, WASM_RT_I32);
    if (!t || fp >= t->size || !t->data[fp].func || t->data[fp].func_type != type_vi)
        wasm_rt_trap(WASM_RT_TRAP_CALL_INDIRECT);
    ((void (*)(void *, u32))t->data[fp].func)(t->data[fp].module_instance, sig);
}

/* ---- heap --------------------------------------------------------------- */

u32 Z_envZ_emscripten_get_heap_max(struct Z_env_instance_t *h) {
    (void)h;
    return 2147483648u - 65536u; /* 32768 pages, as a u32 byte count */
}

u32 Z_envZ_emscripten_resize_heap(struct Z_env_instance_t *h, u32 requested) {
    wasm_rt_memory_t *m = h->mem;
    uint64_t max = (uint64_t)m->max_pages * 65536u;
    if (requested > max)
        return 0;
    /* Over-grow like Emscripten (20 %, capped at +96 MiB) to keep sbrk cheap. */
    for (int cut = 1; cut <= 4; cut *= 2) {
        uint64_t over = (uint64_t)m->size + (uint64_t)m->size / (5 * (uint64_t)cut);
        if (over > (uint64_t)requested + 100663296u)
            over = (uint64_t)requested + 100663296u;
        uint64_t want = requested > over ? requested : over;
        want = (want + 65535) & ~(uint64_t)65535;
        if (want > max)
            want = max;
        if (want <= m->size)
            return 1;
        uint32_t delta = (uint32_t)((want - m->size) / 65536);
        if (wasm_rt_grow_memory(m, delta) != (uint32_t)-1)
            return 1;
    }
    return 0;
}
