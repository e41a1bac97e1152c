/* PostgreSQL's CRC-32C, for the generated code.
 *
 * pglite.wasm computes CRC-32C (every WAL record, pg_control, pages with
 * checksums) with PostgreSQL's portable slicing-by-8 function, a table
 * lookup per byte. tools/build/build-module.py --host-crc32c makes that
 * function a call of pglite_crc32c, which computes the same value (the
 * running CRC in, no inversion, as pg_comp_crc32c_sb8 and
 * pg_comp_crc32c_sse42 both do) with the CPU's crc32 instruction where
 * there is one (SSE 4.2 on x86-64: 8 bytes an instruction), else with a
 * slicing-by-8 of its own. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "engine/engine_internal.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (c & 1 ? CRC32C_POLY : 0);
        table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
#if defined(__x86_64__)
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sb8(uint32_t crc, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc; /* little-endian, as the tables are */
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
              table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
              table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                          size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

uint32_t pglite_crc32c_host(uint32_t crc, const void *data, size_t len) {
    pthread_once(&once, init);
#if defined(__x86_64__)
    if (use_hw)
        return crc_hw(crc, data, len);
#endif
    return crc_sb8(crc, data, len);
}

/* The call the generated code makes: data and len are the guest's; a range
 * beyond the memory traps, as the loads of the guest's own function would. */
uint32_t pglite_crc32c(wasm_rt_memory_t *mem, uint32_t crc, uint32_t data, uint32_t len) {
    if ((uint64_t)data + len > mem->size)
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    return pglite_crc32c_host(crc, mem->data + data, len);
}
