/*
 * The dynamic linker for Emscripten side modules (PostgreSQL's dlopen).
 *
 * Every side module PGlite ships (the .so files of pglite.data and of the
 * contrib archives) is translated by wasm2c and compiled at build time. A
 * generated registry describes each one with the types below; the linker in
 * dylink.c places a module's data in the guest heap, grows the function
 * table, fills its GOT, instantiates it, runs its relocations and
 * constructors and answers dlsym, as Emscripten's JS loader does.
 *
 * Generated code (tools/build/gen-sidemodules.py) provides:
 *   - abi_side_modules[] / abi_side_module_count: one descriptor per module;
 *   - abi_main_symbols[] / abi_main_symbol_count: the main module's exports
 *     (sorted by name) for GOT and env resolution;
 *   - abi_got_names[] / abi_got_count: every GOT symbol name any module
 *     imports, indexed by the ids the GOT accessors use;
 *   - the import accessors Z_GOTZ2EmemZ_<sym> / Z_GOTZ2EfuncZ_<sym>, which
 *     return cells of the per-instance GOT;
 *   - Z_envZ_<fn> forwarders from side-module env imports to main exports.
 */
#ifndef PGLITE_ABI_DYLINK_H
#define PGLITE_ABI_DYLINK_H

#include <stddef.h>
#include <stdint.h>

#include "abi/abi.h"

/* The import-module instances wasm2c passes to a side module's GOT
 * accessors: both point at the per-guest-instance GOT. */
typedef struct abi_got {
    uint32_t *cells;   /* indexed by GOT id; UINT32_MAX = unresolved */
    uint32_t ncells;
} abi_got;
struct Z_GOTZ2Emem_instance_t { abi_got *got; };
struct Z_GOTZ2Efunc_instance_t { abi_got *got; };

#define ABI_GOT_UNRESOLVED UINT32_MAX

typedef enum {
    ABI_SYM_FUNC = 1, /* a function: wrapper + type; elem slot if it has one */
    ABI_SYM_DATA = 2, /* an immutable global holding an address (relative to
                       * __memory_base for side modules, absolute for main) */
} abi_sym_kind;

typedef struct abi_symbol {
    const char *name;
    abi_sym_kind kind;
    /* FUNC: the C function implementing the export, called with the module
     * instance first (the wasm2c export wrapper), and its registered type. */
    wasm_rt_function_ptr_t func;
    uint32_t (*func_type)(void); /* registers/returns the type id */
    /* FUNC: index of this function in the module's own element segment
     * (relative to __table_base for side modules), or -1 if it has none. */
    int32_t elem;
    /* DATA: returns the global's value for a module instance. */
    uint32_t (*data)(void *module_instance);
} abi_symbol;

typedef struct abi_side_module {
    const char *path;         /* guest path, e.g. "/pglite/lib/postgresql/plpgsql.so" */
    uint32_t mem_size, mem_align_log2, table_size;
    size_t instance_size;     /* sizeof(Z_<name>_instance_t) */
    void (*init_module)(void);
    /* Z_<name>_instantiate with the import instances it takes. */
    void (*instantiate)(void *inst, abi_host *env, struct Z_GOTZ2Emem_instance_t *mem,
                        struct Z_GOTZ2Efunc_instance_t *func);
    void (*free)(void *inst);
    const abi_symbol *exports; /* sorted by name */
    size_t nexports;
    const uint32_t *got_ids;   /* GOT ids this module imports */
    size_t ngot;
    void (*apply_data_relocs)(void *inst); /* may be NULL */
    void (*call_ctors)(void *inst);        /* may be NULL */
} abi_side_module;

extern const abi_side_module abi_side_modules[];
extern const size_t abi_side_module_count;
extern const abi_symbol abi_main_symbols[];
extern const size_t abi_main_symbol_count;
extern const char *const abi_got_names[];
extern const size_t abi_got_count;

/* Per-instance linker state lives in the abi host; these are called by the
 * imports (_dlopen_js, _dlsym_js) and by the host's lifecycle. */
typedef struct abi_dylink abi_dylink;
/* Once per process, before any instance (wasm2c's per-module init). */
void abi_dylink_global_init(void);
abi_dylink *abi_dylink_new(void);
void abi_dylink_free(abi_dylink *d);
/* Carry the main-module binding over to a fresh state. */
void abi_dylink_rebind(abi_dylink *to, const abi_dylink *from);
/* Keep `old` alive (freed with `to`). */
void abi_dylink_retire(abi_dylink *to, abi_dylink *old);

/* Bind the main module once it is instantiated (engine): its instance and
 * the cell of its __stack_pointer global, which side modules share. */
void abi_dylink_set_main(abi_host *h, void *main_instance, uint32_t *stack_pointer);

/* The libraries of an instance at its fork point, for its clones (see
 * abi_host_fork_restore_libraries). */
typedef struct abi_dylink_fork abi_dylink_fork;
abi_dylink_fork *abi_dylink_fork_save(const abi_dylink *d);
int abi_dylink_fork_restore(abi_host *h, const abi_dylink_fork *f);
size_t abi_dylink_fork_count(const abi_dylink_fork *f);
void abi_dylink_fork_free(abi_dylink_fork *f);
/* Which library (its load order) instance belongs to, -1 none; and back. */
int abi_dylink_lib_of(const abi_dylink *d, const void *instance);
void *abi_dylink_lib_instance(const abi_dylink *d, int k);

/* A dynamically linked main module run on its own (pg_dump.wasm): it
 * imports where its data and table slots start and the cells of its stack
 * pointer and heap base (GOT.mem.__heap_base), which its JavaScript glue
 * would have given it. Before instantiating it (engine). */
void abi_dylink_place_main(abi_host *h, uint32_t memory_base, uint32_t table_base,
                           uint32_t *stack_pointer, uint32_t heap_base);
struct Z_GOTZ2Emem_instance_t *abi_dylink_got_mem(abi_host *h);

/* Cells the env accessors of a module being instantiated return. */
uint32_t *abi_dylink_memory_base(abi_host *h);
uint32_t *abi_dylink_table_base(abi_host *h);

/* Called by a generated stub for an env import defined nowhere (a function
 * pglite.wasm does not export): raises a PostgreSQL ERROR (0A000) in the
 * calling statement, so the session goes on. */
_Noreturn void abi_dylink_missing(abi_host *h, const char *name);

#endif
