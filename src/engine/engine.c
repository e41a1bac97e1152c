/* Instances of the compiled runtime and safe calls into them. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"
#include "engine/exports.h"

#include "pglite.h"
#include "initdb.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGLITE_INITIAL_PAGES 2048
#define PGLITE_MAX_PAGES 32768
#define MAX_CALLBACKS 16

typedef struct callback {
    engine_cb fn;
    void *ctx;
} callback;

struct engine {
    engine_module module;
    abi_host *host;
    wasm_rt_memory_t memory; /* pglite.wasm imports its memory */
    void *mi;                /* Z_pglite_instance_t or Z_initdb_instance_t */
    wasm_rt_funcref_table_t *table;
    const engine_export *exports;
    size_t nexports;
    bool instantiated;
    bool dead;
    char dead_reason[256];
    callback callbacks[MAX_CALLBACKS];
    int ncallbacks;
};

/* ---- module adapters ----------------------------------------------------- */

static u32 pg_sp(void *mi) { return Z_pgliteZ_emscripten_stack_get_current(mi); }
static void pg_sp_restore(void *mi, u32 sp) { Z_pgliteZ__emscripten_stack_restore(mi, sp); }
static void pg_threw(void *mi, u32 a, u32 b) { Z_pgliteZ_setThrew(mi, a, b); }
static void pg_timeout(void *mi, u32 w, double now) { Z_pgliteZ__emscripten_timeout(mi, w, now); }
static u32 pg_memalign(void *mi, u32 a, u32 n) { return Z_pgliteZ_emscripten_builtin_memalign(mi, a, n); }
static void pg_free(void *mi, u32 p) { Z_pgliteZ_free(mi, p); }

static u32 idb_sp(void *mi) { return Z_initdbZ_emscripten_stack_get_current(mi); }
static void idb_sp_restore(void *mi, u32 sp) { Z_initdbZ__emscripten_stack_restore(mi, sp); }
static void idb_threw(void *mi, u32 a, u32 b) { Z_initdbZ_setThrew(mi, a, b); }
static void idb_timeout(void *mi, u32 w, double now) { Z_initdbZ__emscripten_timeout(mi, w, now); }
static u32 idb_memalign(void *mi, u32 a, u32 n) { return Z_initdbZ_emscripten_builtin_memalign(mi, a, n); }
static void idb_free(void *mi, u32 p) {
    (void)mi; (void)p; /* initdb.wasm exports no free(); its mappings leak until exit */
}

/* ---- global init ---------------------------------------------------------- */

static pthread_once_t modules_once = PTHREAD_ONCE_INIT;

static void init_modules(void) {
    wasm_rt_init();
    Z_pglite_init_module();
    Z_initdb_init_module();
}

void engine_global_init(void) { pthread_once(&modules_once, init_modules); }

/* ---- frames --------------------------------------------------------------- */

typedef struct run_ctx {
    engine *e;
    void (*fn)(engine *, void *);
    void *arg;
    abi_frame frame;
} run_ctx;

static void run_on_stack(void *p) {
    run_ctx *c = p;
    engine *e = c->e;
    abi_frame_push(&c->frame);
    volatile uint32_t sp = 0;
    volatile bool have_sp = false;
    if (sigsetjmp(c->frame.jb, 0) == 0) {
        if (e->instantiated) {
            sp = e->module == ENGINE_PGLITE ? pg_sp(e->mi) : idb_sp(e->mi);
            have_sp = true;
        }
        c->fn(e, c->arg);
    } else if (have_sp && c->frame.kind == ABI_UNWIND_EXIT) {
        /* exit() abandons the guest's frames: give their shadow stack back. */
        if (e->module == ENGINE_PGLITE)
            pg_sp_restore(e->mi, sp);
        else
            idb_sp_restore(e->mi, sp);
    }
    abi_frame_pop(&c->frame);
}

engine_status engine_run(engine *e, void (*fn)(engine *, void *), void *arg,
                         engine_result *res) {
    engine_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (e->dead) {
        res->status = ENGINE_DEAD;
        snprintf(res->message, sizeof res->message, "instance is dead: %.200s",
                 e->dead_reason);
        return res->status;
    }
    run_ctx c = {.e = e, .fn = fn, .arg = arg};
    if (engine_on_guest_stack(run_on_stack, &c) != 0) {
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message,
                 "cannot allocate the guest stack");
        return res->status;
    }
    switch (c.frame.kind) {
    case ABI_UNWIND_NONE:
        res->status = ENGINE_OK;
        break;
    case ABI_UNWIND_EXIT:
        res->status = ENGINE_EXITED;
        res->exit_code = c.frame.code;
        snprintf(res->message, sizeof res->message, "exit(%d)", c.frame.code);
        break;
    case ABI_UNWIND_TRAP:
        res->status = ENGINE_TRAPPED;
        snprintf(res->message, sizeof res->message, "wasm trap: %s",
                 wasm_rt_strerror((wasm_rt_trap_t)c.frame.code));
        break;
    default:
        res->status = ENGINE_ABORTED;
        snprintf(res->message, sizeof res->message, "guest aborted: %s",
                 abi_abort_message());
        break;
    }
    if (res->status == ENGINE_TRAPPED || res->status == ENGINE_ABORTED) {
        e->dead = true;
        snprintf(e->dead_reason, sizeof e->dead_reason, "%s", res->message);
    }
    return res->status;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void do_instantiate(engine *e, void *arg) {
    (void)arg;
    if (e->module == ENGINE_PGLITE) {
        Z_pglite_instance_t *in = e->mi;
        Z_pglite_instantiate(in, e->host, abi_host_wasi(e->host));
        e->table = Z_pgliteZ___indirect_function_table(in);
        abi_exports ex = {in, pg_sp, pg_sp_restore, pg_threw, pg_timeout,
                          pg_memalign, pg_free};
        abi_host_set_exports(e->host, &ex);
    } else {
        Z_initdb_instance_t *in = e->mi;
        Z_initdb_instantiate(in, e->host, abi_host_wasi(e->host));
        abi_host_set_memory(e->host, Z_initdbZ_memory(in));
        e->table = Z_initdbZ___indirect_function_table(in);
        abi_exports ex = {in, idb_sp, idb_sp_restore, idb_threw, idb_timeout,
                          idb_memalign, idb_free};
        abi_host_set_exports(e->host, &ex);
    }
    abi_host_set_table(e->host, e->table);
    e->instantiated = true;
    /* Constructors read the environment (WASI environ_get): after the host
     * is ready, as Emscripten's JS does. */
    if (e->module == ENGINE_PGLITE)
        Z_pgliteZ___wasm_call_ctors(e->mi);
    else
        Z_initdbZ___wasm_call_ctors(e->mi);
}

engine *engine_new(engine_module module, const engine_config *cfg, char *err,
                   size_t errlen) {
    engine_global_init();
    if (module != ENGINE_PGLITE && module != ENGINE_INITDB) {
        snprintf(err, errlen, "unknown module %d", (int)module);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->module = module;
    e->host = abi_host_new(cfg, err, errlen);
    if (!e->host) {
        free(e);
        return NULL;
    }
    if (module == ENGINE_PGLITE) {
        e->mi = calloc(1, sizeof(Z_pglite_instance_t));
        e->exports = engine_exports_pglite;
        e->nexports = engine_exports_pglite_count;
        if (e->mi && engine_memory_alloc(&e->memory, PGLITE_INITIAL_PAGES,
                                         PGLITE_MAX_PAGES) != 0) {
            snprintf(err, errlen, "cannot reserve the guest's linear memory");
            free(e->mi);
            abi_host_free(e->host);
            free(e);
            return NULL;
        }
        abi_host_set_memory(e->host, &e->memory);
    } else {
        e->mi = calloc(1, sizeof(Z_initdb_instance_t));
        e->exports = engine_exports_initdb;
        e->nexports = engine_exports_initdb_count;
    }
    if (!e->mi) {
        snprintf(err, errlen, "out of memory");
        engine_free(e);
        return NULL;
    }
    engine_result r;
    if (engine_run(e, do_instantiate, NULL, &r) != ENGINE_OK) {
        snprintf(err, errlen, "instantiating the runtime failed: %s", r.message);
        engine_free(e);
        return NULL;
    }
    return e;
}

void engine_free(engine *e) {
    if (!e)
        return;
    if (e->mi) {
        if (e->module == ENGINE_PGLITE) {
            if (e->instantiated)
                Z_pglite_free(e->mi);
            wasm_rt_free_memory(&e->memory);
        } else {
            Z_initdb_instance_t *in = e->mi;
            if (e->instantiated)
                Z_initdb_free(in);
            wasm_rt_free_memory(&in->w2c_memory);
        }
        free(e->mi);
    }
    abi_host_free(e->host);
    free(e);
}

abi_host *engine_host(engine *e) { return e->host; }
wasm_rt_memory_t *engine_memory(engine *e) { return abi_host_memory(e->host); }

/* ---- exports -------------------------------------------------------------- */

static int export_cmp(const void *k, const void *el) {
    return strcmp(k, ((const engine_export *)el)->name);
}

static const engine_export *find_export(engine *e, const char *name) {
    return bsearch(name, e->exports, e->nexports, sizeof *e->exports, export_cmp);
}

typedef struct call_ctx {
    const engine_export *x;
    const uint32_t *args;
    uint32_t ret;
} call_ctx;

static void do_call(engine *e, void *p) {
    call_ctx *c = p;
    c->ret = c->x->call(e->mi, c->args);
}

engine_status engine_call(engine *e, const char *name, const uint32_t *args,
                          int nargs, engine_result *res) {
    engine_result local;
    if (!res)
        res = &local;
    const engine_export *x = find_export(e, name);
    if (!x || x->kind != ENGINE_EXPORT_FUNC || x->nparams != nargs) {
        memset(res, 0, sizeof *res);
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message,
                 x ? "export %s takes %d arguments" : "no exported function %s",
                 name, x ? x->nparams : 0);
        return res->status;
    }
    call_ctx c = {x, args, 0};
    engine_status s = engine_run(e, do_call, &c, res);
    if (s == ENGINE_OK)
        res->value = c.ret;
    return s;
}

int engine_global(engine *e, const char *name, uint32_t *value) {
    const engine_export *x = find_export(e, name);
    if (!x || x->kind != ENGINE_EXPORT_GLOBAL)
        return -1;
    *value = x->call(e->mi, NULL);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

typedef struct main_ctx {
    int argc;
    const char *const *argv;
    uint32_t ret;
    bool oom;
} main_ctx;

static void do_main(engine *e, void *p) {
    main_ctx *c = p;
    size_t total = 4 * ((size_t)c->argc + 1);
    for (int i = 0; i < c->argc; i++)
        total += strlen(c->argv[i]) + 1;
    uint32_t base = engine_malloc(e, (uint32_t)total);
    if (!base) {
        c->oom = true;
        return;
    }
    uint32_t strs = base + 4 * ((uint32_t)c->argc + 1);
    for (int i = 0; i < c->argc; i++) {
        size_t n = strlen(c->argv[i]) + 1;
        engine_write(e, strs, c->argv[i], n);
        engine_write(e, base + 4 * (uint32_t)i, &strs, 4);
        strs += (uint32_t)n;
    }
    uint32_t zero = 0;
    engine_write(e, base + 4 * (uint32_t)c->argc, &zero, 4);
    uint32_t a[2] = {(uint32_t)c->argc, base};
    const engine_export *x = find_export(e, "__main_argc_argv");
    c->ret = x->call(e->mi, a);
    /* Returning from main ends the program as exit() would: flush stdio. */
    const engine_export *fl = find_export(e, "fflush");
    if (fl) {
        uint32_t z = 0;
        fl->call(e->mi, &z);
    }
}

engine_status engine_main(engine *e, int argc, const char *const *argv,
                          engine_result *res) {
    engine_result local;
    if (!res)
        res = &local;
    if (argc < 1 || !argv) {
        memset(res, 0, sizeof *res);
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message, "main needs argv[0]");
        return res->status;
    }
    main_ctx c = {argc, argv, 0, false};
    engine_status s = engine_run(e, do_main, &c, res);
    if (s == ENGINE_OK) {
        if (c.oom) {
            res->status = ENGINE_ERROR;
            snprintf(res->message, sizeof res->message, "out of guest memory for argv");
            return res->status;
        }
        res->status = ENGINE_EXITED;
        res->exit_code = (int)c.ret;
        snprintf(res->message, sizeof res->message, "main returned %d", (int)c.ret);
    }
    return res->status;
}

/* ---- guest memory ---------------------------------------------------------- */

uint32_t engine_malloc(engine *e, uint32_t size) {
    const engine_export *x = find_export(e, "malloc");
    if (!x)
        return 0;
    if (engine_in_guest())
        return x->call(e->mi, &size);
    engine_result r;
    if (engine_call(e, "malloc", &size, 1, &r) != ENGINE_OK)
        return 0;
    return r.value;
}

void engine_free_guest(engine *e, uint32_t ptr) {
    if (!ptr || !find_export(e, "free"))
        return;
    engine_call(e, "free", &ptr, 1, NULL);
}

int engine_write(engine *e, uint32_t ptr, const void *src, size_t len) {
    wasm_rt_memory_t *m = engine_memory(e);
    if (len > UINT32_MAX || !abi_mem_ptr(m, ptr, (uint32_t)len))
        return -1;
    memcpy(m->data + ptr, src, len);
    return 0;
}

int engine_read(engine *e, uint32_t ptr, void *dst, size_t len) {
    wasm_rt_memory_t *m = engine_memory(e);
    if (len > UINT32_MAX || !abi_mem_ptr(m, ptr, (uint32_t)len))
        return -1;
    memcpy(dst, m->data + ptr, len);
    return 0;
}

/* ---- host callbacks ------------------------------------------------------- */

static u32 cb0r(void *mi) { callback *c = mi; return c->fn(c->ctx, NULL); }
static u32 cb1r(void *mi, u32 a) { callback *c = mi; u32 v[] = {a}; return c->fn(c->ctx, v); }
static u32 cb2r(void *mi, u32 a, u32 b) { callback *c = mi; u32 v[] = {a, b}; return c->fn(c->ctx, v); }
static u32 cb3r(void *mi, u32 a, u32 b, u32 d) { callback *c = mi; u32 v[] = {a, b, d}; return c->fn(c->ctx, v); }
static void cb0v(void *mi) { callback *c = mi; c->fn(c->ctx, NULL); }
static void cb1v(void *mi, u32 a) { callback *c = mi; u32 v[] = {a}; c->fn(c->ctx, v); }
static void cb2v(void *mi, u32 a, u32 b) { callback *c = mi; u32 v[] = {a, b}; c->fn(c->ctx, v); }
static void cb3v(void *mi, u32 a, u32 b, u32 d) { callback *c = mi; u32 v[] = {a, b, d}; c->fn(c->ctx, v); }

uint32_t engine_add_callback(engine *e, int nparams, int has_result,
                             engine_cb fn, void *ctx) {
    if (nparams < 0 || nparams > 3 || !fn || e->ncallbacks >= MAX_CALLBACKS)
        return 0;
    static const wasm_rt_function_ptr_t tr[2][4] = {
        {(wasm_rt_function_ptr_t)cb0v, (wasm_rt_function_ptr_t)cb1v,
         (wasm_rt_function_ptr_t)cb2v, (wasm_rt_function_ptr_t)cb3v},
        {(wasm_rt_function_ptr_t)cb0r, (wasm_rt_function_ptr_t)cb1r,
         (wasm_rt_function_ptr_t)cb2r, (wasm_rt_function_ptr_t)cb3r}};
    uint32_t type;
    switch (nparams * 2 + (has_result ? 1 : 0)) {
    case 0: type = wasm_rt_register_func_type(0, 0); break;
    case 1: type = wasm_rt_register_func_type(0, 1, WASM_RT_I32); break;
    case 2: type = wasm_rt_register_func_type(1, 0, WASM_RT_I32); break;
    case 3: type = wasm_rt_register_func_type(1, 1, WASM_RT_I32, WASM_RT_I32); break;
    case 4: type = wasm_rt_register_func_type(2, 0, WASM_RT_I32, WASM_RT_I32); break;
    case 5: type = wasm_rt_register_func_type(2, 1, WASM_RT_I32, WASM_RT_I32, WASM_RT_I32); break;
    case 6: type = wasm_rt_register_func_type(3, 0, WASM_RT_I32, WASM_RT_I32, WASM_RT_I32); break;
    default: type = wasm_rt_register_func_type(3, 1, WASM_RT_I32, WASM_RT_I32, WASM_RT_I32, WASM_RT_I32); break;
    }
    callback *c = &e->callbacks[e->ncallbacks];
    c->fn = fn;
    c->ctx = ctx;
    wasm_rt_funcref_t ref = {type, tr[has_result ? 1 : 0][nparams], c};
    uint32_t idx = wasm_rt_grow_funcref_table(e->table, 1, ref);
    if (idx == (uint32_t)-1)
        return 0;
    e->ncallbacks++;
    return idx;
}
