/* Internal to src/engine: by-name export tables generated from the wasm2c
 * headers by tools/build/gen-exports.py. */
#ifndef PGLITE_ENGINE_EXPORTS_H
#define PGLITE_ENGINE_EXPORTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ENGINE_EXPORT_FUNC = 1,   /* i32 parameters, void or i32 result */
    ENGINE_EXPORT_GLOBAL = 2, /* an exported global: its current value */
} engine_export_kind;

typedef struct engine_export {
    const char *name;
    engine_export_kind kind;
    uint8_t nparams;
    uint8_t has_result;
    uint32_t (*call)(void *module_instance, const uint32_t *args);
} engine_export;

extern const engine_export engine_exports_pglite[];
extern const size_t engine_exports_pglite_count;
extern const engine_export engine_exports_initdb[];
extern const size_t engine_exports_initdb_count;
extern const engine_export engine_exports_pg_dump[];
extern const size_t engine_exports_pg_dump_count;

#endif
