/* Internal to src/engine. */
#ifndef PGLITE_ENGINE_INTERNAL_H
#define PGLITE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* stack.c */
bool engine_in_guest(void);
bool engine_stack_guard_hit(uintptr_t addr);
int engine_on_guest_stack(void (*fn)(void *), void *arg);
/* max_stack_depth on the native stack (stack.c explains). */
/* From the SIGSEGV handler: 0 not the tripwire, 1 resume, -1 stuck (trap). */
int engine_stack_trip_hit(uintptr_t addr);
void engine_stack_unwound(void);             /* a longjmp was caught */
typedef struct engine_stack_scope {
    uint8_t *mem, *prev;
} engine_stack_scope;
/* Around each call into an instance: backend_mem is a pglite instance's
 * linear memory (NULL for others). */
void engine_stack_enter(uint8_t *backend_mem, engine_stack_scope *sc);
void engine_stack_leave(const engine_stack_scope *sc);
/* gen/engine_stack_pglite.c (tools/build/gen-stack-limit.py) */
extern const uint32_t engine_pglite_stack_base_ptr;
extern const uint32_t engine_pglite_max_stack_depth_bytes;

/* segue.c: the gs segment's base is the running instance's memory (for
 * modules built with --memory-access segue; otherwise these do nothing).
 * enter saves the thread's base and points it at base (NULL: not yet);
 * point moves it within a scope (a memory known only once instantiated);
 * leave puts the saved one back. -1: the base cannot be set. */
typedef struct engine_gs_scope {
    uintptr_t prev;
    bool set;
} engine_gs_scope;
int engine_gs_enter(void *base, engine_gs_scope *s);
int engine_gs_point(void *base);
void engine_gs_leave(const engine_gs_scope *s);

/* Where a dynamically linked main module's data, table slots, stack and
 * heap go (gen/engine_layout_<module>.c, tools/build/gen-layout.py). */
typedef struct engine_layout {
    uint32_t memory_base, table_base, stack_pointer, heap_base;
    uint32_t table_size, initial_pages, max_pages;
} engine_layout;
extern const engine_layout engine_layout_pg_dump;

/* pg_dump.c: the pg_dump.wasm module, apart from pglite.wasm's header. */
extern const size_t engine_pg_dump_instance_size;
void engine_pg_dump_init_module(void);
void engine_pg_dump_instantiate(void *mi, abi_host *h);
void engine_pg_dump_ctors(void *mi);
void engine_pg_dump_free(void *mi);
uint32_t engine_pg_dump_sp(void *mi);
void engine_pg_dump_sp_restore(void *mi, uint32_t sp);

/* wasm_rt.c */
int engine_memory_alloc(wasm_rt_memory_t *m, uint32_t initial, uint32_t max);
/* A memory that stays resident and is written sparsely (the clones'
 * scratch memory): 4 KiB pages, not the 2 MB ones of a guest's memory. */
void engine_memory_small_pages(wasm_rt_memory_t *m);
extern _Thread_local int pgl_instantiate_without_data; /* see wasm_rt.c */
void engine_signals_claim(void);     /* at most every 100 ms per thread */
void engine_signals_claim_now(void); /* making an instance: look now */

/* crc32c.c: PostgreSQL's CRC-32C (the running value in, no inversion);
 * pglite_crc32c is what a module built with --host-crc32c calls. */
uint32_t pglite_crc32c_host(uint32_t crc, const void *data, size_t len);
uint32_t pglite_crc32c(wasm_rt_memory_t *mem, uint32_t crc, uint32_t data, uint32_t len);

#endif
