/* The dynamic linker: _dlopen_js / _dlsym_js over the precompiled side
 * modules of the generated registry (see dylink.h), following Emscripten's
 * loader: data at a zeroed, aligned block of the guest heap, the function
 * table grown before instantiation, one GOT per guest instance in which the
 * first definition wins (main module first), relocations, then
 * constructors, then the exports made global for later modules. */
#define _GNU_SOURCE
#include "abi/dylink.h"
#include "abi/abi_internal.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets in the guest's struct dso (wasm32), as its libc lays it out. */
#define DSO_FLAGS 4
#define DSO_MEM_ALLOCATED 8
#define DSO_MEM_ADDR 12
#define DSO_MEM_SIZE 16
#define DSO_TABLE_ADDR 20
#define DSO_TABLE_SIZE 24
#define DSO_NAME 36
#define RTLD_GLOBAL_G 256

typedef struct lib {
    const abi_side_module *m;
    void *inst;
    uint32_t memory_base, table_base;
    uint32_t handle;
    bool global;
    bool complete; /* instantiated, linked and constructed */
} lib;

struct abi_dylink {
    abi_got got;
    struct Z_GOTZ2Emem_instance_t gm;
    struct Z_GOTZ2Efunc_instance_t gf;
    lib **libs; /* each lib is its own allocation: instances keep pointers
                 * to its memory_base/table_base cells */
    size_t nlibs, caplibs;
    lib *loading;
    void *main;
    uint32_t *stack_pointer;
    uint32_t *main_slot; /* per abi_main_symbols entry: appended slot or 0 */
    uint32_t memory_base, table_base; /* of a main module placed by the host */
    uint32_t heap_base;
    bool poisoned;       /* a GOT entry could not be resolved */
    abi_dylink *retired; /* states replaced by abi_host_reset */
    char poison[256];
};

void abi_dylink_global_init(void) {
    for (size_t i = 0; i < abi_side_module_count; i++)
        if (abi_side_modules[i].init_module)
            abi_side_modules[i].init_module();
}

abi_dylink *abi_dylink_new(void) {
    abi_dylink *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->got.ncells = (uint32_t)abi_got_count;
    d->got.cells = malloc((abi_got_count ? abi_got_count : 1) * sizeof *d->got.cells);
    d->main_slot = calloc(abi_main_symbol_count ? abi_main_symbol_count : 1,
                          sizeof *d->main_slot);
    if (!d->got.cells || !d->main_slot) {
        abi_dylink_free(d);
        return NULL;
    }
    for (size_t i = 0; i < abi_got_count; i++)
        d->got.cells[i] = ABI_GOT_UNRESOLVED;
    d->gm.got = &d->got;
    d->gf.got = &d->got;
    return d;
}

void abi_dylink_retire(abi_dylink *to, abi_dylink *old) {
    to->retired = old;
}

void abi_dylink_free(abi_dylink *d) {
    if (!d)
        return;
    abi_dylink_free(d->retired);
    for (size_t i = 0; i < d->nlibs; i++) {
        if (d->libs[i]->inst) {
            d->libs[i]->m->free(d->libs[i]->inst);
            free(d->libs[i]->inst);
        }
        free(d->libs[i]);
    }
    free(d->libs);
    free(d->got.cells);
    free(d->main_slot);
    free(d);
}

void abi_dylink_rebind(abi_dylink *to, const abi_dylink *from) {
    to->main = from->main;
    to->stack_pointer = from->stack_pointer;
}

void abi_dylink_set_main(abi_host *h, void *main_instance, uint32_t *sp) {
    h->dylink->main = main_instance;
    h->dylink->stack_pointer = sp;
}

void abi_dylink_place_main(abi_host *h, uint32_t memory_base, uint32_t table_base,
                           uint32_t *stack_pointer, uint32_t heap_base) {
    abi_dylink *d = h->dylink;
    d->memory_base = memory_base;
    d->table_base = table_base;
    d->stack_pointer = stack_pointer;
    d->heap_base = heap_base;
}

struct Z_GOTZ2Emem_instance_t *abi_dylink_got_mem(abi_host *h) { return &h->dylink->gm; }

/* The one GOT.mem import of a placed main module; no side module imports
 * it (gen-sidemodules.py would then define it too, and the link fail). */
u32 *Z_GOTZ2EmemZ___heap_base(struct Z_GOTZ2Emem_instance_t *g) {
    abi_dylink *d = (abi_dylink *)((char *)g - offsetof(abi_dylink, gm));
    return &d->heap_base;
}

uint32_t *abi_dylink_memory_base(abi_host *h) {
    abi_dylink *d = h->dylink;
    return d->loading ? &d->loading->memory_base : &d->memory_base;
}

uint32_t *abi_dylink_table_base(abi_host *h) {
    abi_dylink *d = h->dylink;
    return d->loading ? &d->loading->table_base : &d->table_base;
}

_Noreturn void abi_dylink_missing(abi_host *h, const char *name) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "function %s is not available in this build of PostgreSQL", name);
    abi_pg_error(h, 0x0A000, msg);
}

/* The env imports every side module takes from the main module. */
wasm_rt_funcref_table_t *Z_envZ___indirect_function_table(struct Z_env_instance_t *h) {
    return h->table;
}
u32 *Z_envZ___stack_pointer(struct Z_env_instance_t *h) {
    return h->dylink->stack_pointer;
}
u32 *Z_envZ___memory_base(struct Z_env_instance_t *h) { return abi_dylink_memory_base(h); }
u32 *Z_envZ___table_base(struct Z_env_instance_t *h) { return abi_dylink_table_base(h); }

/* ---- symbols ------------------------------------------------------------ */

static int sym_cmp(const void *k, const void *e) {
    return strcmp(k, ((const abi_symbol *)e)->name);
}

static const abi_symbol *find_sym(const abi_symbol *t, size_t n, const char *name) {
    return bsearch(name, t, n, sizeof *t, sym_cmp);
}

static int got_cmp(const void *k, const void *e) {
    return strcmp(k, *(const char *const *)e);
}

static long got_id(const char *name) {
    const char *const *p = bsearch(name, abi_got_names, abi_got_count,
                                   sizeof *abi_got_names, got_cmp);
    return p ? (long)(p - abi_got_names) : -1;
}

/* Append a table entry for a function; 0 on failure. */
static uint32_t add_function(abi_host *h, const abi_symbol *s, void *inst) {
    wasm_rt_funcref_t ref = {s->func_type(), s->func, inst};
    uint32_t idx = wasm_rt_grow_funcref_table(h->table, 1, ref);
    return idx == (uint32_t)-1 ? 0 : idx;
}

/* Table index of a main-module function (its own elem slot when it has one,
 * so function pointers compare equal to the ones main code holds). */
static uint32_t main_func_index(abi_host *h, const abi_symbol *s) {
    if (s->elem >= 0)
        return (uint32_t)s->elem;
    size_t i = (size_t)(s - abi_main_symbols);
    if (!h->dylink->main_slot[i])
        h->dylink->main_slot[i] = add_function(h, s, h->dylink->main);
    return h->dylink->main_slot[i];
}

/* Value of a symbol of a loaded library (function index or address). */
static uint32_t lib_sym_value(abi_host *h, lib *l, const abi_symbol *s) {
    if (s->kind == ABI_SYM_DATA)
        return l->memory_base + s->data(l->inst);
    if (s->elem >= 0)
        return l->table_base + (uint32_t)s->elem;
    return add_function(h, s, l->inst);
}

static bool internal_name(const char *n) {
    return strcmp(n, "__wasm_call_ctors") == 0 ||
           strcmp(n, "__wasm_apply_data_relocs") == 0 ||
           strcmp(n, "__dso_handle") == 0 || strncmp(n, "__tls_", 6) == 0 ||
           strcmp(n, "__memory_base") == 0 || strcmp(n, "__table_base") == 0 ||
           strcmp(n, "__stack_pointer") == 0 ||
           strcmp(n, "__indirect_function_table") == 0;
}

/* Global lookup for an unresolved GOT entry: main, then global libs. */
static bool resolve_global(abi_host *h, const char *name, uint32_t *out) {
    const abi_symbol *s = find_sym(abi_main_symbols, abi_main_symbol_count, name);
    if (s) {
        if (s->kind == ABI_SYM_DATA) {
            *out = s->data(h->dylink->main);
            return true;
        }
        uint32_t idx = main_func_index(h, s);
        if (!idx)
            return false;
        *out = idx;
        return true;
    }
    abi_dylink *d = h->dylink;
    for (size_t i = 0; i < d->nlibs; i++) {
        lib *l = d->libs[i];
        if (!l->global || !l->complete)
            continue;
        s = find_sym(l->m->exports, l->m->nexports, name);
        if (s) {
            uint32_t v = lib_sym_value(h, l, s);
            if (s->kind == ABI_SYM_FUNC && !v)
                return false;
            *out = v;
            return true;
        }
    }
    return false;
}

/* Tell the guest's dlerror() what went wrong: __dl_seterr(fmt, 0). */
static void set_error(abi_host *h, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!h->have_ex || !h->ex.dl_seterr)
        return;
    uint32_t p = abi_guest_format(h, msg);
    if (!p)
        return;
    h->ex.dl_seterr(h->ex.mi, p, 0);
    if (h->ex.free)
        h->ex.free(h->ex.mi, p);
}

static const abi_side_module *find_module(const char *path) {
    for (size_t i = 0; i < abi_side_module_count; i++)
        if (strcmp(abi_side_modules[i].path, path) == 0)
            return &abi_side_modules[i];
    return NULL;
}

/* Normalise a guest path: collapse "//", "/./" and "x/../". */
static void normalize(const char *in, char *out, size_t n) {
    char tmp[VFS_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", in);
    const char *parts[256];
    int np = 0;
    for (char *save, *t = strtok_r(tmp, "/", &save); t && np < 256;
         t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0)
            continue;
        if (strcmp(t, "..") == 0) {
            if (np)
                np--;
            continue;
        }
        parts[np++] = t;
    }
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < np && o + 1 < n; i++)
        o += (size_t)snprintf(out + o, n - o, "/%s", parts[i]);
    if (!np)
        snprintf(out, n, "/");
}

static lib *find_loaded(abi_dylink *d, const abi_side_module *m) {
    for (size_t i = 0; i < d->nlibs; i++)
        if (d->libs[i]->m == m)
            return d->libs[i];
    return NULL;
}

typedef struct load_ctx {
    abi_host *h;
    lib *l;
} load_ctx;

/* Whether resolve_global would find name, without its side effects. */
static bool resolvable(abi_host *h, const char *name) {
    if (find_sym(abi_main_symbols, abi_main_symbol_count, name))
        return true;
    abi_dylink *d = h->dylink;
    for (size_t i = 0; i < d->nlibs; i++)
        if (d->libs[i]->global && d->libs[i]->complete &&
            find_sym(d->libs[i]->m->exports, d->libs[i]->m->nexports, name))
            return true;
    return false;
}

/* Load module m; returns NULL with the guest's dlerror set. */
static lib *load(abi_host *h, const abi_side_module *m, const char *path, bool global) {
    abi_dylink *d = h->dylink;
    if (d->poisoned) {
        set_error(h, "could not load dynamic lib: %s\n%s", path, d->poison);
        return NULL;
    }
    /* Every symbol the module needs must exist before anything is allocated
     * or published in the GOT: a library that cannot link (libpqwalreceiver
     * needs PrimaryConnInfo, which pglite.wasm lacks) then fails alone and
     * leaves no trace, and later loads in the session are unaffected. */
    for (size_t i = 0; i < m->ngot; i++) {
        const char *name = abi_got_names[m->got_ids[i]];
        if (d->got.cells[m->got_ids[i]] != ABI_GOT_UNRESOLVED ||
            find_sym(m->exports, m->nexports, name) || resolvable(h, name))
            continue;
        set_error(h, "could not load dynamic lib: %s\nundefined symbol: %s", path, name);
        return NULL;
    }
    if (d->nlibs == d->caplibs) {
        size_t nc = d->caplibs ? d->caplibs * 2 : 8;
        lib **nl = realloc(d->libs, nc * sizeof *nl);
        if (!nl) {
            set_error(h, "could not load dynamic lib: %s\nout of memory", path);
            return NULL;
        }
        d->libs = nl;
        d->caplibs = nc;
    }
    lib *l = calloc(1, sizeof *l);
    if (!l) {
        set_error(h, "could not load dynamic lib: %s\nout of memory", path);
        return NULL;
    }
    l->m = m;
    /* Data: calloc(size + align) in the guest, aligned up; never freed. */
    if (m->mem_size) {
        uint32_t align = 1u << m->mem_align_log2;
        uint32_t p = abi_guest_alloc(h, align < 8 ? 8 : align, m->mem_size);
        if (!p) {
            free(l);
            set_error(h, "could not load dynamic lib: %s\nout of guest memory", path);
            return NULL;
        }
        memset(abi_gptr(h, p, m->mem_size), 0, m->mem_size);
        l->memory_base = p;
    }
    /* Table: grown before instantiation (the elem segment lands there). */
    if (m->table_size) {
        uint32_t base = wasm_rt_grow_funcref_table(h->table, m->table_size,
                                                   wasm_rt_funcref_null_value);
        if (base == (uint32_t)-1) {
            free(l);
            set_error(h, "could not load dynamic lib: %s\ntable full", path);
            return NULL;
        }
        l->table_base = base;
    }
    l->inst = calloc(1, m->instance_size);
    if (!l->inst) {
        free(l);
        set_error(h, "could not load dynamic lib: %s\nout of memory", path);
        return NULL;
    }
    /* Recorded before anything can fail: like Emscripten, a library that
     * failed half-way is not instantiated again. */
    d->libs[d->nlibs++] = l;
    d->loading = l;
    m->instantiate(l->inst, h, &d->gm, &d->gf);
    d->loading = NULL;

    /* GOT: first the module's own exports (for entries nobody defined yet),
     * then everything else it needs from main and global libraries. */
    for (size_t i = 0; i < m->nexports; i++) {
        const abi_symbol *s = &m->exports[i];
        if (internal_name(s->name))
            continue;
        long id = got_id(s->name);
        if (id < 0 || d->got.cells[id] != ABI_GOT_UNRESOLVED)
            continue;
        /* Main and earlier global libraries win over this module. */
        uint32_t v;
        if (resolve_global(h, s->name, &v)) {
            d->got.cells[id] = v;
            continue;
        }
        v = lib_sym_value(h, l, s);
        if (s->kind == ABI_SYM_FUNC && !v) {
            set_error(h, "could not load dynamic lib: %s\ntable full", path);
            return NULL;
        }
        d->got.cells[id] = v;
    }
    for (size_t i = 0; i < m->ngot; i++) {
        uint32_t id = m->got_ids[i];
        if (d->got.cells[id] != ABI_GOT_UNRESOLVED)
            continue;
        uint32_t v;
        if (!resolve_global(h, abi_got_names[id], &v)) {
            d->poisoned = true;
            snprintf(d->poison, sizeof d->poison, "undefined symbol: %s",
                     abi_got_names[id]);
            set_error(h, "could not load dynamic lib: %s\n%s", path, d->poison);
            return NULL;
        }
        d->got.cells[id] = v;
    }
    if (m->apply_data_relocs)
        m->apply_data_relocs(l->inst);
    if (m->call_ctors)
        m->call_ctors(l->inst);
    l->global = global;
    l->complete = true;
    return l;
}

u32 Z_envZ__dlopen_js(struct Z_env_instance_t *h, u32 handle) {
    char raw[VFS_PATH_MAX], path[VFS_PATH_MAX];
    if (!h->dylink || abi_gstr(h, handle + DSO_NAME, raw, sizeof raw) < 0)
        return 0;
    uint32_t flags = abi_r32(h, handle + DSO_FLAGS);
    normalize(raw, path, sizeof path);
    const abi_side_module *m = find_module(path);
    if (!m) {
        set_error(h, "could not load dynamic lib: %s\nno such library is bundled", path);
        return 0;
    }
    lib *l = find_loaded(h->dylink, m);
    if (l && !l->complete) {
        set_error(h, "could not load dynamic lib: %s\nan earlier load failed", path);
        return 0;
    }
    if (!l)
        l = load(h, m, path, (flags & RTLD_GLOBAL_G) != 0);
    else if (flags & RTLD_GLOBAL_G)
        l->global = true;
    if (!l)
        return 0;
    l->handle = handle;
    abi_w32(h, handle + DSO_MEM_ALLOCATED, 1);
    abi_w32(h, handle + DSO_MEM_ADDR, l->memory_base);
    abi_w32(h, handle + DSO_MEM_SIZE, m->mem_size);
    abi_w32(h, handle + DSO_TABLE_ADDR, l->table_base);
    abi_w32(h, handle + DSO_TABLE_SIZE, m->table_size);
    return 1;
}

u32 Z_envZ__dlsym_js(struct Z_env_instance_t *h, u32 handle, u32 symp, u32 idxp) {
    (void)idxp;
    char name[512];
    if (!h->dylink || abi_gstr(h, symp, name, sizeof name) < 0)
        return 0;
    abi_dylink *d = h->dylink;
    if (handle == 0) {
        uint32_t v;
        if (resolve_global(h, name, &v))
            return v;
        set_error(h, "Tried to lookup unknown symbol \"%s\" in dynamic lib: __main__", name);
        return 0;
    }
    for (size_t i = 0; i < d->nlibs; i++) {
        lib *l = d->libs[i];
        if (l->handle != handle || !l->complete)
            continue;
        const abi_symbol *s = find_sym(l->m->exports, l->m->nexports, name);
        if (!s || internal_name(name)) {
            set_error(h, "Tried to lookup unknown symbol \"%s\" in dynamic lib: %s",
                      name, l->m->path);
            return 0;
        }
        /* A function already in the GOT keeps one index (pointer identity). */
        long id = got_id(name);
        if (s->kind == ABI_SYM_FUNC && id >= 0 && d->got.cells[id] != ABI_GOT_UNRESOLVED &&
            s->elem < 0)
            return d->got.cells[id];
        uint32_t v = lib_sym_value(h, l, s);
        if (s->kind == ABI_SYM_FUNC && s->elem < 0 && id >= 0 && v)
            d->got.cells[id] = v;
        return v;
    }
    set_error(h, "dlsym: invalid handle");
    return 0;
}

/* ---- fork ----------------------------------------------------------------
 * Libraries an instance loaded before its fork point (PostgreSQL's
 * shared_preload_libraries, loaded before shared memory is made) are in
 * its image: their data, relocated and constructed, and the hooks they set
 * (ExecutorStart_hook...) hold their table slots. A clone gets the same
 * libraries at the same memory and table bases: each instantiated again
 * (its data-segment writes go where the engine discards them), without
 * relocations or constructors, since the memory already has their effect,
 * and the GOT, the handles and the main module's extra slots as they were.
 * The engine puts the table entries back (it owns the table). */
typedef struct saved_lib {
    const abi_side_module *m;
    uint32_t memory_base, table_base, handle;
    bool global, complete, instantiated;
} saved_lib;

struct abi_dylink_fork {
    saved_lib *libs;
    size_t nlibs;
    uint32_t *got;       /* abi_got_count cells */
    uint32_t *main_slot; /* abi_main_symbol_count */
    bool poisoned;
    char poison[256];
};

void abi_dylink_fork_free(abi_dylink_fork *f) {
    if (!f)
        return;
    free(f->libs);
    free(f->got);
    free(f->main_slot);
    free(f);
}

abi_dylink_fork *abi_dylink_fork_save(const abi_dylink *d) {
    abi_dylink_fork *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->nlibs = d->nlibs;
    f->libs = calloc(d->nlibs ? d->nlibs : 1, sizeof *f->libs);
    f->got = malloc((abi_got_count ? abi_got_count : 1) * sizeof *f->got);
    f->main_slot = malloc((abi_main_symbol_count ? abi_main_symbol_count : 1) *
                          sizeof *f->main_slot);
    if (!f->libs || !f->got || !f->main_slot) {
        abi_dylink_fork_free(f);
        return NULL;
    }
    for (size_t i = 0; i < d->nlibs; i++) {
        const lib *l = d->libs[i];
        f->libs[i] = (saved_lib){l->m, l->memory_base, l->table_base, l->handle,
                                 l->global, l->complete, l->inst != NULL};
    }
    memcpy(f->got, d->got.cells, abi_got_count * sizeof *f->got);
    memcpy(f->main_slot, d->main_slot, abi_main_symbol_count * sizeof *f->main_slot);
    f->poisoned = d->poisoned;
    memcpy(f->poison, d->poison, sizeof f->poison);
    return f;
}

size_t abi_dylink_fork_count(const abi_dylink_fork *f) { return f ? f->nlibs : 0; }

int abi_dylink_fork_restore(abi_host *h, const abi_dylink_fork *f) {
    abi_dylink *d = h->dylink;
    if (!f || !d || d->nlibs)
        return f && f->nlibs ? -1 : 0;
    if (f->nlibs) {
        d->libs = calloc(f->nlibs, sizeof *d->libs);
        if (!d->libs)
            return -1;
        d->caplibs = f->nlibs;
    }
    memcpy(d->got.cells, f->got, abi_got_count * sizeof *f->got);
    memcpy(d->main_slot, f->main_slot, abi_main_symbol_count * sizeof *f->main_slot);
    d->poisoned = f->poisoned;
    memcpy(d->poison, f->poison, sizeof d->poison);
    for (size_t i = 0; i < f->nlibs; i++) {
        const saved_lib *sl = &f->libs[i];
        lib *l = calloc(1, sizeof *l);
        if (!l)
            return -1;
        *l = (lib){.m = sl->m, .memory_base = sl->memory_base, .table_base = sl->table_base,
                   .handle = sl->handle, .global = sl->global, .complete = sl->complete};
        d->libs[d->nlibs++] = l;
        if (!sl->instantiated)
            continue;
        if (!(l->inst = calloc(1, sl->m->instance_size)))
            return -1;
        d->loading = l;
        sl->m->instantiate(l->inst, h, &d->gm, &d->gf);
        d->loading = NULL;
    }
    return 0;
}

int abi_dylink_lib_of(const abi_dylink *d, const void *instance) {
    for (size_t i = 0; instance && i < d->nlibs; i++)
        if (d->libs[i]->inst == instance)
            return (int)i;
    return -1;
}

void *abi_dylink_lib_instance(const abi_dylink *d, int k) {
    return k >= 0 && (size_t)k < d->nlibs ? d->libs[k]->inst : NULL;
}
