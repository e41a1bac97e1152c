/* Internal to src/engine. */
#ifndef PGLITE_ENGINE_INTERNAL_H
#define PGLITE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

/* stack.c */
bool engine_in_guest(void);
bool engine_stack_guard_hit(uintptr_t addr);
int engine_on_guest_stack(void (*fn)(void *), void *arg);

/* wasm_rt.c */
int engine_memory_alloc(wasm_rt_memory_t *m, uint32_t initial, uint32_t max);
void engine_signals_claim(void);

#endif
