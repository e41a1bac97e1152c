/* [sessions] proof of concept, in progress: a primary backend and a clone
 * backend on one cluster, sharing PostgreSQL's main shared-memory segment
 * through a memfd (../shared/multisession/STUDY.md, section 7, day 1).
 *
 * Not part of the build or of the library: it drives the internal backend
 * API and wraps abi imports with the linker (--wrap), so that no project
 * file has to change while the approach is being proven. build.sh builds
 * it from a configured build tree; README.md says what it shows so far. */
#define _GNU_SOURCE
#include "pglite.h"
#include "backend/backend.h"
#include "engine/engine.h"
#include "abi/abi_internal.h"
#include "wasm/pglite.h"
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* InitProcess and PostgresMain, located by tools/build/locate-sessions.py
 * (build.sh passes their w2c_fN names and makes them global). */
void INIT_PROCESS(Z_pglite_instance_t *);
void POSTGRES_MAIN(Z_pglite_instance_t *, u32, u32);

static int armed, stopped, ndup, clone_mode, shm_fd = -1;
static uint8_t *snap; static uint32_t snap_size, snap_sp; static int snap_nmaps;
struct backend; static struct backend *primary; static char perr[1024];
#include "backend/backend.h"
static backend_options opts;
static uint32_t seg_a, seg_s;
static engine *clone_engine, *primary_engine;
u32 __real_Z_envZ___syscall_dup(struct Z_env_instance_t *h, u32 fd);
u32 __wrap_Z_envZ___syscall_dup(struct Z_env_instance_t *h, u32 fd) {
    ndup++;
    if (!stopped && ndup >= 10) armed = 1;
    return __real_Z_envZ___syscall_dup(h, fd);
}
f64 __real_Z_envZ_emscripten_date_now(struct Z_env_instance_t *h);
f64 __wrap_Z_envZ_emscripten_date_now(struct Z_env_instance_t *h) {
    if (armed && !stopped) { stopped = 1; armed = 0; abi_unwind(ABI_UNWIND_EXIT, 98); }
    return __real_Z_envZ_emscripten_date_now(h);
}
/* MAP_SHARED file mappings (the DSM segments in pg_dynshmem) as real shared
 * host mappings, so that every instance sees one copy. */
#define MAX_MAPS 64
static struct { abi_host *h; uint32_t addr, len; int fd; } maps[MAX_MAPS];
static int nmaps;
u32 __real_Z_envZ__mmap_js(struct Z_env_instance_t *h, u32 len, u32 prot, u32 flags, u32 fd, u64 off, u32 pallocated, u32 paddr);
u32 __wrap_Z_envZ__mmap_js(struct Z_env_instance_t *h, u32 len, u32 prot, u32 flags, u32 fd, u64 off, u32 pallocated, u32 paddr) {
    u32 rc = __real_Z_envZ__mmap_js(h, len, prot, flags, fd, off, pallocated, paddr);
    abi_fd *f = abi_fd_get(h, fd);
    if (getenv("POC_VERBOSE")) fprintf(stderr, "poc: _mmap_js len %u flags %#x fd %d rc %d\n", len, flags, (int)fd, (int)rc);
    if (rc == 0 && (flags & 1) && f && nmaps < MAX_MAPS) {
        uint32_t p; memcpy(&p, h->mem->data + paddr, 4);
        uint32_t n = (len + 4095u) & ~4095u;
        if (mmap(h->mem->data + p, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f->host_fd, (off_t)off) != h->mem->data + p) abort();
        maps[nmaps].h = h; maps[nmaps].addr = p; maps[nmaps].len = n; maps[nmaps].fd = dup(f->host_fd); nmaps++;
    }
    return rc;
}
u32 __real_Z_envZ__munmap_js(struct Z_env_instance_t *h, u32 addr, u32 len, u32 prot, u32 flags, u32 fd, u64 off);
u32 __wrap_Z_envZ__munmap_js(struct Z_env_instance_t *h, u32 addr, u32 len, u32 prot, u32 flags, u32 fd, u64 off) {
    u32 rc = __real_Z_envZ__munmap_js(h, addr, len, prot, flags, fd, off);
    for (int i = 0; i < nmaps; i++)
        if (maps[i].h == h && maps[i].addr == addr) {
            mmap(h->mem->data + addr, maps[i].len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            close(maps[i].fd); maps[i] = maps[--nmaps]; break;
        }
    return rc;
}

static void cont(engine *e, void *arg) {
    (void)arg;
    Z_pglite_instance_t *in = engine_host(e)->ex.mi;
    u32 db = engine_strdup(e, "postgres"), user = engine_strdup(e, "postgres");
    INIT_PROCESS(in);
    POSTGRES_MAIN(in, db, user);
}
static void find_seg(engine *e, uint32_t *a, uint32_t *size) {
    uint32_t g = 0, p = 0; *a = *size = 0;
    if (engine_global(e, "MainLWLockArray", &g) == 0 && engine_read(e, g, &p, 4) == 0)
        for (uint32_t x = p & ~0xFFFFu; x > 0x10000; x -= 0x10000) {
            uint32_t magic; engine_read(e, x, &magic, 4);
            if (magic == 679834894u) { *a = x; engine_read(e, x + 8, size, 4); break; }
        }
}
static void poke(engine *e, const char *g, uint8_t v) { uint32_t a; if (engine_global(e, g, &a) == 0) engine_write(e, a, &v, 1); }

engine_status __real_engine_main(engine *e, int argc, const char *const *argv, engine_result *res);
engine_status __wrap_engine_main(engine *e, int argc, const char *const *argv, engine_result *res) {
    stopped = armed = 0; ndup = 0;
    engine_status s = __real_engine_main(e, argc, argv, res);
    if (!(s == ENGINE_EXITED && res->exit_code == 98)) return s;
    wasm_rt_memory_t *m = engine_memory(e);
    uint32_t a, size;
    find_seg(e, &a, &size);
    if (!clone_mode) {
        shm_fd = memfd_create("pglite-shmem", MFD_CLOEXEC);
        if (ftruncate(shm_fd, size) != 0 || pwrite(shm_fd, m->data + a, size, 0) != (ssize_t)size) exit(1);
        seg_a = a; seg_s = size;
    } else if (seg_s && (a != seg_a || size != seg_s)) {
        fprintf(stderr, "poc: clone segment differs: %u/%u vs %u/%u\n", a, size, seg_a, seg_s); exit(1);
    }
    if (!clone_mode && mmap(m->data + a, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shm_fd, 0) != m->data + a) exit(1);
    fprintf(stderr, "poc: %s stopped before InitProcess; segment %u+%u shared\n", clone_mode ? "clone" : "primary", a, size);
    if (!clone_mode) {
        /* the state a clone starts from: P's memory at this point */
        snap_size = m->size; snap = malloc(m->size); memcpy(snap, m->data, m->size);
        snap_sp = engine_host(e)->ex.stack_get_current(engine_host(e)->ex.mi);
        snap_nmaps = nmaps;
        primary_engine = e;
        return engine_run(e, cont, NULL, res);
    }
    /* clone: C stopped; now the primary boots (its dsm_postmaster_startup
     * removes C's pg_dynshmem files, not the other way round) */
    int cmaps = nmaps;
    clone_mode = 0;
    if (backend_start(&opts, &primary, perr, sizeof perr) != 0) { fprintf(stderr, "A: %s\n", perr); exit(1); }
    clone_mode = 1;
    if (snap_size != m->size) { fprintf(stderr, "poc: memory sizes differ\n"); exit(1); }
    memcpy(m->data, snap, snap_size);
    engine_host(e)->ex.stack_restore(engine_host(e)->ex.mi, snap_sp);
    if (mmap(m->data + a, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shm_fd, 0) != m->data + a) exit(1);
    /* P's DSM mappings made during its boot (the control segment), at the same addresses */
    for (int i = cmaps; i < cmaps + snap_nmaps && i < nmaps; i++) {
        if (mmap(m->data + maps[i].addr, maps[i].len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, maps[i].fd, 0) != m->data + maps[i].addr) exit(1);
        fprintf(stderr, "poc: clone maps P's DSM segment at %u (+%u)\n", maps[i].addr, maps[i].len);
    }
    /* clone: InitProcess and PostgresMain come after the startup packet */
    if (getenv("POC_PID")) { /* a pid of its own: see README */
        uint32_t pa, pid = (uint32_t)atoi(getenv("POC_PID"));
        if (engine_global(e, "MyProcPid", &pa) == 0) engine_write(e, pa, &pid, 4);
    }
    poke(e, "IsUnderPostmaster", 1);
    poke(e, "IsPostmasterEnvironment", 1);
    clone_engine = e;
    res->status = ENGINE_EXITED; res->exit_code = 99;
    return ENGINE_EXITED;
}

static void query(backend *b, const char *who, const char *sql) {
    uint8_t msg[1024]; size_t n = strlen(sql) + 1; uint32_t len = htobe32((uint32_t)(n + 4));
    msg[0] = 'Q'; memcpy(msg + 1, &len, 4); memcpy(msg + 5, sql, n);
    const uint8_t *out; size_t outlen; char err[512];
    if (backend_exchange(b, msg, n + 5, &out, &outlen, err, sizeof err) != 0) { printf("%s: %s -> FAILED %s\n", who, sql, err); return; }
    printf("%s: %-60s ->", who, sql);
    for (size_t i = 0; i + 5 <= outlen;) {
        uint32_t l; memcpy(&l, out + i + 1, 4); l = be32toh(l);
        char t = (char)out[i];
        if (t == 'D') { /* first column */
            int32_t cl; memcpy(&cl, out + i + 7, 4); cl = (int32_t)be32toh((uint32_t)cl);
            printf(" row[%.*s]", cl < 0 ? 4 : cl, cl < 0 ? "NULL" : (const char *)out + i + 11);
        } else if (t == 'C') printf(" %s", out + i + 5);
        else if (t == 'A') { uint32_t pid; memcpy(&pid, out + i + 5, 4); const char *ch = (const char *)out + i + 9; printf(" NOTIFY(pid %u, %s, %s)", be32toh(pid), ch, ch + strlen(ch) + 1); }
        else if (t == 'E') { const char *p = (const char *)out + i + 5; while (*p) { if (*p == 'C' || *p == 'M') printf(" %c=%s", *p, p + 1); p += strlen(p) + 1; } }
        i += 1 + l;
    }
    printf("\n");
}


int main(void) {
    pglite *db;
    system("rm -rf " DB_DIR);
    if (pglite_open(DB_DIR, NULL, &db) != PGLITE_OK) { fprintf(stderr, "%s\n", pglite_errmsg(NULL)); return 1; }
    pglite_close(db);
    opts.data_dir = DB_DIR;
    /* DSM segments as files (pg_dynshmem), which can be shared mappings;
     * the template's sysv segments are private guest heap blocks. */
    static const char *const gucs[] = {"dynamic_shared_memory_type=mmap", NULL};
    opts.gucs = gucs;
    backend_options o = opts;
    backend *A, *B; char err[1024];
    clone_mode = 1;
    if (backend_start(&o, &B, err, sizeof err) != 0) { fprintf(stderr, "B: %s\n", err); return 1; }
    A = primary;
    query(A, "A", "create table t(id int primary key, v int)");
    query(A, "A", "insert into t values (1, 10), (2, 20)");
    size_t sl; const uint8_t *sr = backend_startup_reply(B, &sl);
    printf("B: startup reply %zu bytes, first message '%c'\n", sl, sl ? sr[0] : '-');
    query(B, "B", "select count(*) from t");
    query(A, "A", "begin");
    query(A, "A", "insert into t values (3, 30)");
    query(B, "B", "select count(*) from t");
    query(B, "B", "select count(*) from pg_stat_activity where backend_type = 'client backend'");
    query(A, "A", "update t set v = 11 where id = 1");
    query(B, "B", "select v from t where id = 1 for update nowait");
    query(B, "B", "select id from t order by id for update nowait");
    query(B, "B", "select id from t order by id for update skip locked");
    query(A, "A", "commit");
    query(B, "B", "select count(*), sum(v) from t");
    query(A, "A", "listen ch");
    query(B, "B", "notify ch, 'hello'");
    query(A, "A", "select 1");
    /* What a routed kill(pid, SIGUSR1) would do: run A's handler, which
     * reads A's ProcSignal slot in shared memory (B set the flag there). */
    uint32_t sig = 10;
    engine_result er;
    engine_status hs = engine_call(primary_engine, "procsignal_sigusr1_handler", &sig, 1, &er);
    fprintf(stderr, "poc: procsignal_sigusr1_handler(SIGUSR1) in A -> %d\n", hs);
    query(A, "A", "select 2");
    query(B, "B", "create database other");
    query(A, "A", "select datname from pg_database where datname = 'other'");
    query(A, "A", "select count(*) from pg_stat_activity where backend_type in ('client backend', 'standalone backend')");
    return 0;
}
engine_status __real_engine_call(engine *e, const char *name, const uint32_t *args, int nargs, engine_result *res);
engine_status __wrap_engine_call(engine *e, const char *name, const uint32_t *args, int nargs, engine_result *res) {
    if (e == clone_engine && !strcmp(name, "pgl_sendConnData")) {
        /* the clone: a real backend start instead (InitProcess, PostgresMain) */
        engine_status s = engine_run(e, cont, NULL, res);
        fprintf(stderr, "poc: clone InitProcess+PostgresMain -> %d exit %d (%s)\n", s, res->exit_code, res->message);
        if (s == ENGINE_EXITED && res->exit_code == 99) {
            { /* PostgresMainLoopOnce serves the port pgl_startPGlite made after PostgresMain */ s = __real_engine_call(e, "pgl_startPGlite", NULL, 0, res); fprintf(stderr, "poc: clone pgl_startPGlite after PostgresMain -> %d\n", s); }
            res->status = ENGINE_OK; return ENGINE_OK;
        }
        return s;
    }
    engine_status s = __real_engine_call(e, name, args, nargs, res);
    if (e == clone_engine && (s != ENGINE_OK || !strcmp(name, "ProcessStartupPacket")))
        fprintf(stderr, "poc: clone %s -> %d %s value %u\n", name, s, res ? res->message : "", res ? res->value : 0);
    return s;
}
