/* PostgreSQL functions that side modules import but pglite.wasm does not
 * export (its linker dropped them), provided by the host over guest memory
 * so the modules that need them work: the helpers of the encoding
 * conversion modules (utf8_and_*.so, *_and_mic.so, ...): conv.c's
 * UtfToLocal/LocalToUtf over the modules' own radix-tree and combined
 * maps, local2local and the MULE_INTERNAL helpers, and wchar.c's
 * per-encoding verifier and error reports. Errors are raised as real
 * PostgreSQL ERRORs through the main module's errstart/errcode/errmsg/
 * errfinish, with PostgreSQL's SQLSTATEs and messages. */
#define _GNU_SOURCE
#include "abi/abi_internal.h"
#include "abi/dylink.h"

#include <stdio.h>
#include <string.h>

#define PG_ERROR 21 /* elog.h */
#define MAKE_SQLSTATE(a, b, c, d, e) \
    ((((a) - '0') & 0x3F) | ((((b) - '0') & 0x3F) << 6) | ((((c) - '0') & 0x3F) << 12) | \
     ((((d) - '0') & 0x3F) << 18) | ((((e) - '0') & 0x3F) << 24))

/* pg_enc2name_tbl order (pg_wchar.h). */
static const char *const encodings[] = {
    "SQL_ASCII", "EUC_JP", "EUC_CN", "EUC_KR", "EUC_TW", "EUC_JIS_2004", "UTF8",
    "MULE_INTERNAL", "LATIN1", "LATIN2", "LATIN3", "LATIN4", "LATIN5", "LATIN6",
    "LATIN7", "LATIN8", "LATIN9", "LATIN10", "WIN1256", "WIN1258", "WIN866",
    "WIN874", "KOI8R", "WIN1251", "WIN1252", "ISO_8859_5", "ISO_8859_6",
    "ISO_8859_7", "ISO_8859_8", "WIN1250", "WIN1253", "WIN1254", "WIN1255",
    "WIN1257", "KOI8U", "SJIS", "BIG5", "GBK", "UHC", "GB18030", "JOHAB",
    "SHIFT_JIS_2004"};

static const char *enc_name(uint32_t e) {
    return e < sizeof encodings / sizeof encodings[0] ? encodings[e] : "?";
}

static const abi_symbol *main_fn(const char *name) {
    for (size_t lo = 0, hi = abi_main_symbol_count; lo < hi;) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, abi_main_symbols[mid].name);
        if (c == 0)
            return abi_main_symbols[mid].kind == ABI_SYM_FUNC ? &abi_main_symbols[mid] : NULL;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ereport(ERROR, errcode(code), errmsg("%s", msg)): does not return. */
static _Noreturn void raise_error(abi_host *h, int code, const char *msg);

_Noreturn void abi_pg_error(abi_host *h, int sqlstate, const char *msg) {
    /* sqlstate as five hex-like digits, e.g. 0x0A000 for "0A000" */
    char s[6];
    snprintf(s, sizeof s, "%05X", (unsigned)sqlstate);
    raise_error(h, MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]), msg);
}

static _Noreturn void raise_error(abi_host *h, int code, const char *msg) {
    const abi_symbol *start = main_fn("errstart_cold"), *ecode = main_fn("errcode"),
                     *emsg = main_fn("errmsg_internal"), *fin = main_fn("errfinish");
    if (!start || !ecode || !emsg || !fin || !h->have_ex) {
        abi_set_abort_message("%s", msg);
        abi_unwind(ABI_UNWIND_ABORT, 0);
    }
    void *mi = h->ex.mi;
    uint32_t fmt = abi_guest_format(h, msg);
    if (!fmt) {
        abi_set_abort_message("%s", msg);
        abi_unwind(ABI_UNWIND_ABORT, 0);
    }
    ((u32(*)(void *, u32, u32))start->func)(mi, PG_ERROR, 0);
    ((u32(*)(void *, u32))ecode->func)(mi, (u32)code);
    ((u32(*)(void *, u32, u32))emsg->func)(mi, fmt, 0);
    /* errmsg_internal formatted the message into the error data already */
    if (h->ex.free)
        h->ex.free(mi, fmt);
    ((void (*)(void *, u32, u32, u32))fin->func)(mi, 0, 0, 0);
    /* errfinish of an ERROR longjmps to PostgreSQL's handler. */
    abi_set_abort_message("errfinish returned for: %s", msg);
    abi_unwind(ABI_UNWIND_ABORT, 0);
}

/* ---- encodings (pg_wchar.h, wchar.c) ------------------------------------ */

/* PostgreSQL's encoding ids, in pg_enc2name_tbl order (the ones named here
 * are those whose byte sequences differ; 8..34 are single-byte). */
enum {
    ENC_SQL_ASCII = 0,
    ENC_EUC_JP = 1,
    ENC_EUC_CN = 2,
    ENC_EUC_KR = 3,
    ENC_EUC_TW = 4,
    ENC_EUC_JIS_2004 = 5,
    ENC_UTF8 = 6,
    ENC_MULE_INTERNAL = 7,
    ENC_SJIS = 35,
    ENC_BIG5 = 36,
    ENC_GBK = 37,
    ENC_UHC = 38,
    ENC_GB18030 = 39,
    ENC_JOHAB = 40,
    ENC_SHIFT_JIS_2004 = 41,
    ENC_COUNT = 42,
};

#define SS2 0x8e
#define SS3 0x8f
#define HIGHBIT(c) (((c) & 0x80) != 0)
#define EUC_BYTE(c) ((c) >= 0xa1 && (c) <= 0xfe)
#define SJIS_LEAD(c) (((c) >= 0x81 && (c) <= 0x9f) || ((c) >= 0xe0 && (c) <= 0xfc))
#define SJIS_TRAIL(c) (((c) >= 0x40 && (c) <= 0x7e) || ((c) >= 0x80 && (c) <= 0xfc))

_Static_assert(sizeof encodings / sizeof encodings[0] == ENC_COUNT,
               "one name per encoding id");

static bool valid_encoding(int32_t e) { return e >= 0 && e < ENC_COUNT; }

static int utf_len(uint8_t c) {
    if (!HIGHBIT(c))
        return 1;
    if ((c & 0xe0) == 0xc0)
        return 2;
    if ((c & 0xf0) == 0xe0)
        return 3;
    if ((c & 0xf8) == 0xf0)
        return 4;
    return 1; /* not a lead byte: a character of one (invalid) byte */
}

static int mule_len(uint8_t c) {
    if (c >= 0x81 && c <= 0x8d) /* official single-byte charsets */
        return 2;
    if (c == 0x9a || c == 0x9b) /* private single-byte charsets */
        return 3;
    if (c >= 0x90 && c <= 0x99) /* official multibyte charsets */
        return 3;
    if (c == 0x9c || c == 0x9d) /* private multibyte charsets */
        return 4;
    return 1;
}

static int euc_len(uint8_t c) { return c == SS2 ? 2 : c == SS3 ? 3 : HIGHBIT(c) ? 2 : 1; }

/* The length of the character at s as the encoding's mblen reports it;
 * GB18030 also looks at s[1], which the caller must make readable. */
static int char_len(int32_t enc, const uint8_t *s) {
    uint8_t c = s[0];
    switch (enc) {
    case ENC_EUC_JP:
    case ENC_EUC_JIS_2004:
    case ENC_EUC_KR:
    case ENC_JOHAB:
        return euc_len(c);
    case ENC_EUC_CN:
    case ENC_BIG5:
    case ENC_GBK:
    case ENC_UHC:
        return HIGHBIT(c) ? 2 : 1;
    case ENC_EUC_TW:
        return c == SS2 ? 4 : c == SS3 ? 3 : HIGHBIT(c) ? 2 : 1;
    case ENC_UTF8:
        return utf_len(c);
    case ENC_MULE_INTERNAL:
        return mule_len(c);
    case ENC_SJIS:
    case ENC_SHIFT_JIS_2004:
        return c >= 0xa1 && c <= 0xdf ? 1 : HIGHBIT(c) ? 2 : 1;
    case ENC_GB18030:
        return !HIGHBIT(c) ? 1 : s[1] >= 0x30 && s[1] <= 0x39 ? 4 : 2;
    default:
        return 1; /* single-byte encodings, and invalid ids (as SQL_ASCII) */
    }
}

/* Whether the length bytes at s are one well-formed UTF-8 character
 * (pg_utf8_islegal: no overlong forms, surrogates or code points past
 * U+10FFFF). */
static bool utf8_legal(const uint8_t *s, int length) {
    if (length < 1 || length > 4)
        return false;
    for (int i = length - 1; i >= 2; i--)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return false;
    if (length >= 2) {
        uint8_t lo = 0x80, hi = 0xbf, a = s[1];
        switch (s[0]) {
        case 0xe0: lo = 0xa0; break;
        case 0xed: hi = 0x9f; break;
        case 0xf0: lo = 0x90; break;
        case 0xf4: hi = 0x8f; break;
        default: break;
        }
        if (a < lo || a > hi)
            return false;
    }
    return !(s[0] >= 0x80 && s[0] < 0xc2) && s[0] <= 0xf4;
}

/* pg_encoding_verifymbchar: the length of the valid character at s (len
 * bytes remain, len > 0, *s != 0), or -1. Reads only within len. */
static int verify_char(int32_t enc, const uint8_t *s, int32_t len) {
    uint8_t c = s[0];
    int l;
    switch (enc) {
    case ENC_EUC_JP:
    case ENC_EUC_JIS_2004:
        if (c == SS2) /* JIS X 0201 kana */
            return len >= 2 && s[1] >= 0xa1 && s[1] <= 0xdf ? 2 : -1;
        if (c == SS3) /* JIS X 0212 */
            return len >= 3 && EUC_BYTE(s[1]) && EUC_BYTE(s[2]) ? 3 : -1;
        if (!HIGHBIT(c))
            return 1;
        return len >= 2 && EUC_BYTE(c) && EUC_BYTE(s[1]) ? 2 : -1;
    case ENC_EUC_KR:
    case ENC_EUC_CN:
        if (!HIGHBIT(c))
            return 1;
        return len >= 2 && EUC_BYTE(c) && EUC_BYTE(s[1]) ? 2 : -1;
    case ENC_EUC_TW:
        if (c == SS2) /* CNS 11643 planes 1-7 */
            return len >= 4 && s[1] >= 0xa1 && s[1] <= 0xa7 && EUC_BYTE(s[2]) &&
                           EUC_BYTE(s[3])
                       ? 4
                       : -1;
        if (c == SS3)
            return -1;
        if (!HIGHBIT(c))
            return 1;
        return len >= 2 && EUC_BYTE(s[1]) ? 2 : -1;
    case ENC_JOHAB:
        l = euc_len(c);
        if (len < l)
            return -1;
        if (!HIGHBIT(c))
            return l;
        for (int i = 1; i < l; i++)
            if (!EUC_BYTE(s[i]))
                return -1;
        return l;
    case ENC_UTF8:
        if (!HIGHBIT(c))
            return c ? 1 : -1;
        l = utf_len(c);
        return len >= l && utf8_legal(s, l) ? l : -1;
    case ENC_MULE_INTERNAL:
        l = mule_len(c);
        if (len < l)
            return -1;
        for (int i = 1; i < l; i++)
            if (!HIGHBIT(s[i]))
                return -1;
        return l;
    case ENC_SJIS:
    case ENC_SHIFT_JIS_2004:
        l = c >= 0xa1 && c <= 0xdf ? 1 : HIGHBIT(c) ? 2 : 1;
        if (len < l)
            return -1;
        if (l == 1)
            return 1;
        return SJIS_LEAD(c) && SJIS_TRAIL(s[1]) ? 2 : -1;
    case ENC_BIG5:
    case ENC_GBK:
    case ENC_UHC:
        l = HIGHBIT(c) ? 2 : 1;
        if (len < l)
            return -1;
        return l == 2 && s[1] == 0 ? -1 : l;
    case ENC_GB18030:
        if (!HIGHBIT(c))
            return 1;
        if (len >= 4 && s[1] >= 0x30 && s[1] <= 0x39)
            return c >= 0x81 && c <= 0xfe && s[2] >= 0x81 && s[2] <= 0xfe && s[3] >= 0x30 &&
                           s[3] <= 0x39
                       ? 4
                       : -1;
        if (len >= 2 && c >= 0x81 && c <= 0xfe)
            return (s[1] >= 0x40 && s[1] <= 0x7e) || (s[1] >= 0x80 && s[1] <= 0xfe) ? 2 : -1;
        return -1;
    default:
        return 1; /* single-byte encodings, and invalid ids (as SQL_ASCII) */
    }
}

/* "0xe2 0x82 0xac": the bytes of the character at s (len remain), at most
 * eight, as report_invalid_encoding and report_untranslatable_char print
 * them. A character whose length cannot be known from what remains is
 * shown to the end of the input. */
static void char_bytes(int32_t enc, const uint8_t *s, int32_t len, char *out, size_t n) {
    int l;
    if (len < 1 || (enc == ENC_GB18030 && HIGHBIT(s[0]) && len < 2))
        l = len;
    else
        l = char_len(enc, s);
    if (l > len)
        l = len;
    if (l > 8)
        l = 8;
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < l && o + 6 < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s0x%02x", i ? " " : "", s[i]);
}

static _Noreturn void invalid_encoding(abi_host *h, int32_t enc, const uint8_t *s, int32_t len) {
    char bytes[48], msg[160];
    char_bytes(enc, s, len, bytes, sizeof bytes);
    snprintf(msg, sizeof msg, "invalid byte sequence for encoding \"%s\": %s", enc_name((u32)enc),
             bytes);
    raise_error(h, MAKE_SQLSTATE('2', '2', '0', '2', '1'), msg);
}

static _Noreturn void untranslatable(abi_host *h, int32_t src, int32_t dst, const uint8_t *s,
                                     int32_t len) {
    char bytes[48], msg[240];
    char_bytes(src, s, len, bytes, sizeof bytes);
    snprintf(msg, sizeof msg,
             "character with byte sequence %s in encoding \"%s\" has no equivalent in "
             "encoding \"%s\"",
             bytes, enc_name((u32)src), enc_name((u32)dst));
    raise_error(h, MAKE_SQLSTATE('2', '2', 'P', '0', '5'), msg);
}

static _Noreturn void invalid_encoding_number(abi_host *h, int32_t enc) {
    char msg[64];
    snprintf(msg, sizeof msg, "invalid encoding number: %d", (int)enc);
    raise_error(h, MAKE_SQLSTATE('2', '2', '0', '2', '3'), msg);
}

/* The guest bytes [p, p+len) (len <= 0: none), or a trap like the guest's
 * own out-of-bounds read. */
static const uint8_t *guest_in(abi_host *h, u32 p, int32_t len) {
    static const uint8_t none[1];
    return len > 0 ? abi_gptr(h, p, (uint32_t)len) : none;
}

/* Output into guest memory at p, one byte at a time: the callers size the
 * buffer (the conversion procs allocate for the worst case), the host only
 * checks that every byte lands inside guest memory. */
typedef struct {
    abi_host *h;
    uint32_t p;
} guest_out;

static inline void put(guest_out *o, uint8_t b) {
    wasm_rt_memory_t *m = o->h->mem;
    if (UNLIKELY((uint64_t)o->p >= m->size))
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    m->data[o->p++] = b;
}

/* A character held in a uint32, its bytes most significant first, with
 * the zero bytes of the high end left out (conv.c's store_coded_char). */
static inline void put_code(guest_out *o, uint32_t code) {
    if (code & 0xff000000u)
        put(o, (uint8_t)(code >> 24));
    if (code & 0x00ff0000u)
        put(o, (uint8_t)(code >> 16));
    if (code & 0x0000ff00u)
        put(o, (uint8_t)(code >> 8));
    if (code & 0x000000ffu)
        put(o, (uint8_t)code);
}

/* ---- conversion maps (pg_mb_radix_tree and friends, in guest memory) ---- */

/* pg_mb_radix_tree as laid out by wasm32 (4-byte pointers): chars16 at 0,
 * chars32 at 4, then per input length a uint32 root and the byte bounds,
 * each root 4-aligned (b1root 8, b2root 16, b3root 24, b4root 36). */
typedef struct {
    uint32_t chars16, chars32;
    uint32_t root[5];  /* by input length 1..4 */
    uint8_t bound[5][8]; /* [length][2*i], [2*i+1]: lower, upper of byte i */
    const uint8_t *mem;  /* guest memory and its size when read: the maps */
    uint64_t size;       /* are module data, which never moves or shrinks */
} radix_map;

#define RADIX_SIZE 48

static void radix_read(abi_host *h, u32 p, radix_map *r) {
    const uint8_t *d = abi_gptr(h, p, RADIX_SIZE);
    static const uint8_t root_at[5] = {0, 8, 16, 24, 36}, bound_at[5] = {0, 12, 20, 28, 40};
    r->mem = h->mem->data;
    r->size = h->mem->size;
    memcpy(&r->chars16, d, 4);
    memcpy(&r->chars32, d + 4, 4);
    for (int l = 1; l <= 4; l++) {
        memcpy(&r->root[l], d + root_at[l], 4);
        memcpy(r->bound[l], d + bound_at[l], (size_t)(2 * l));
    }
}

/* Entry i of the map's value array; out of guest memory traps, as the
 * guest's own read would. */
static inline uint32_t radix_at(const radix_map *r, uint32_t i) {
    uint64_t at = r->chars32 ? r->chars32 + 4 * (uint64_t)i : r->chars16 + 2 * (uint64_t)i;
    unsigned w = r->chars32 ? 4 : 2;
    if (UNLIKELY(at + w > r->size))
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    if (w == 4) {
        uint32_t v;
        memcpy(&v, r->mem + at, 4);
        return v;
    }
    uint16_t v;
    memcpy(&v, r->mem + at, 2);
    return v;
}

/* The code the map gives the l-byte character b[0..l-1], or 0 for none. */
static uint32_t radix_lookup(const radix_map *r, int l, const uint8_t *b) {
    if (l < 1 || l > 4)
        return 0;
    const uint8_t *bd = r->bound[l];
    for (int i = 0; i < l; i++)
        if (b[i] < bd[2 * i] || b[i] > bd[2 * i + 1])
            return 0;
    /* The one-byte table is indexed from its root; longer inputs walk one
     * level per byte, each value the offset of the next table (16-bit
     * offsets when the values are 16-bit). */
    uint32_t idx = r->root[l];
    if (!r->chars32 && l > 1)
        idx = (uint16_t)idx;
    for (int i = 0; i < l; i++)
        idx = radix_at(r, b[i] + idx - bd[2 * i]);
    return idx;
}

/* Combined-character maps: sorted arrays of three uint32 per entry,
 * {utf1, utf2, code} from UTF-8 (sorted by utf1, utf2), {code, utf1, utf2}
 * to UTF-8 (sorted by code). The index of the matching entry or -1. */
static long combined_find(const uint8_t *map, int32_t n, uint32_t k1, uint32_t k2, bool two) {
    long lo = 0, hi = (long)n - 1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        uint32_t e1, e2;
        memcpy(&e1, map + 12 * mid, 4);
        memcpy(&e2, map + 12 * mid + 4, 4);
        int c = k1 < e1 ? -1 : k1 > e1 ? 1 : !two ? 0 : k2 < e2 ? -1 : k2 > e2 ? 1 : 0;
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

static const uint8_t *combined_map(abi_host *h, u32 p, int32_t n) {
    if (!p || n <= 0)
        return NULL;
    return abi_gptr(h, p, (uint32_t)n * 12u);
}

/* An algorithmic conversion function of the module (uint32 -> uint32, 0
 * for "cannot convert"), called through the table like the guest would. */
static uint32_t call_conv(abi_host *h, u32 fn, uint32_t code) {
    static uint32_t type_ii;
    if (!type_ii)
        type_ii = wasm_rt_register_func_type(1, 1, WASM_RT_I32, WASM_RT_I32);
    const wasm_rt_funcref_t *e = abi_table_entry(h, fn, type_ii);
    return ((u32(*)(void *, u32))e->func)(e->module_instance, code);
}

static uint32_t pack(const uint8_t *b, int l) {
    uint32_t v = 0;
    for (int i = 0; i < l; i++)
        v = v << 8 | b[i];
    return v;
}

/* ---- the conversion helpers of conv.c ------------------------------------ */

/* int UtfToLocal(const unsigned char *utf, int len, unsigned char *iso,
 *                const pg_mb_radix_tree *map,
 *                const pg_utf_to_local_combined *cmap, int cmapsize,
 *                utf_local_conversion_func conv_func, int encoding,
 *                bool noError)
 * UTF-8 to the local encoding; for each character the combined map (with
 * the next character), then the map, then the function. Returns the input
 * bytes consumed (fewer than len only with noError). */
u32 Z_envZ_UtfToLocal(struct Z_env_instance_t *h, u32 utf, u32 len_, u32 iso, u32 map,
                      u32 cmap, u32 cmapsize, u32 conv_func, u32 encoding, u32 no_error) {
    int32_t len = (int32_t)len_, enc = (int32_t)encoding;
    bool noerr = no_error != 0;
    if (!valid_encoding(enc))
        invalid_encoding_number(h, enc);
    const uint8_t *in = guest_in(h, utf, len);
    radix_map rm;
    if (map)
        radix_read(h, map, &rm);
    const uint8_t *cm = combined_map(h, cmap, (int32_t)cmapsize);
    guest_out o = {h, iso};
    int32_t i = 0; /* input position */
    int l = 0;
    for (; len > 0; len -= l) {
        const uint8_t *s = in + i;
        if (s[0] == 0)
            break;
        l = utf_len(s[0]);
        if (len < l || !utf8_legal(s, l))
            break;
        if (l == 1) {
            put(&o, s[0]);
            i++;
            continue;
        }
        uint32_t code = pack(s, l);
        i += l;
        if (cmap && len > l) {
            /* a pair of characters may map to one */
            int32_t rest = len - l;
            const uint8_t *t = in + i;
            int l2 = utf_len(t[0]);
            if (rest < l2) {
                i -= l; /* need more input to decide */
                len = rest;
                break;
            }
            if (!utf8_legal(t, l2)) {
                if (!noerr)
                    invalid_encoding(h, ENC_UTF8, t, rest);
                i -= l;
                len = rest;
                break;
            }
            if (l2 > 1 && cm) {
                long k = combined_find(cm, (int32_t)cmapsize, code, pack(t, l2), true);
                if (k >= 0) {
                    uint32_t c;
                    memcpy(&c, cm + 12 * k + 8, 4);
                    put_code(&o, c);
                    i += l2;
                    len = rest;
                    l = l2;
                    continue;
                }
            }
        }
        if (map) {
            uint32_t c = radix_lookup(&rm, l, s);
            if (c) {
                put_code(&o, c);
                continue;
            }
        }
        if (conv_func) {
            uint32_t c = call_conv(h, conv_func, code);
            in = guest_in(h, utf, (int32_t)len_); /* the guest ran */
            if (c) {
                put_code(&o, c);
                continue;
            }
        }
        i -= l;
        if (noerr)
            break;
        untranslatable(h, ENC_UTF8, enc, in + i, len);
    }
    if (len > 0 && !noerr)
        invalid_encoding(h, ENC_UTF8, in + i, len);
    put(&o, 0);
    return (u32)i;
}

/* int LocalToUtf(const unsigned char *iso, int len, unsigned char *utf,
 *                const pg_mb_radix_tree *map,
 *                const pg_local_to_utf_combined *cmap, int cmapsize,
 *                utf_local_conversion_func conv_func, int encoding,
 *                bool noError)
 * The local encoding to UTF-8: the map, then the combined map, then the
 * function. */
u32 Z_envZ_LocalToUtf(struct Z_env_instance_t *h, u32 iso, u32 len_, u32 utf, u32 map,
                      u32 cmap, u32 cmapsize, u32 conv_func, u32 encoding, u32 no_error) {
    int32_t len = (int32_t)len_, enc = (int32_t)encoding;
    bool noerr = no_error != 0;
    if (!valid_encoding(enc))
        invalid_encoding_number(h, enc);
    const uint8_t *in = guest_in(h, iso, len);
    radix_map rm;
    if (map)
        radix_read(h, map, &rm);
    const uint8_t *cm = combined_map(h, cmap, (int32_t)cmapsize);
    guest_out o = {h, utf};
    int32_t i = 0;
    int l = 0;
    for (; len > 0; len -= l) {
        const uint8_t *s = in + i;
        if (s[0] == 0)
            break;
        if (!HIGHBIT(s[0])) {
            put(&o, s[0]);
            i++;
            l = 1;
            continue;
        }
        l = verify_char(enc, s, len);
        if (l < 0)
            break;
        if (l > 4) /* cannot happen: no encoding has longer characters */
            break;
        uint32_t code = pack(s, l);
        i += l;
        if (map) {
            uint32_t c = radix_lookup(&rm, l, s);
            if (c) {
                put_code(&o, c);
                continue;
            }
            if (cm) {
                long k = combined_find(cm, (int32_t)cmapsize, code, 0, false);
                if (k >= 0) {
                    uint32_t u1, u2;
                    memcpy(&u1, cm + 12 * k + 4, 4);
                    memcpy(&u2, cm + 12 * k + 8, 4);
                    put_code(&o, u1);
                    put_code(&o, u2);
                    continue;
                }
            }
        }
        if (conv_func) {
            uint32_t c = call_conv(h, conv_func, code);
            in = guest_in(h, iso, (int32_t)len_);
            if (c) {
                put_code(&o, c);
                continue;
            }
        }
        i -= l;
        if (noerr)
            break;
        untranslatable(h, enc, ENC_UTF8, in + i, len);
    }
    if (len > 0 && !noerr)
        invalid_encoding(h, enc, in + i, len);
    put(&o, 0);
    return (u32)i;
}

/* int local2local(const unsigned char *l, unsigned char *p, int len,
 *                 int src_encoding, int dest_encoding,
 *                 const unsigned char *tab, bool noError)
 * Between two single-byte encodings through a 128-entry table for the
 * high half (0: no equivalent). */
u32 Z_envZ_local2local(struct Z_env_instance_t *h, u32 src, u32 dst, u32 len_, u32 src_enc,
                       u32 dst_enc, u32 tab, u32 no_error) {
    int32_t len = (int32_t)len_;
    const uint8_t *in = guest_in(h, src, len), *t = abi_gptr(h, tab, 128);
    guest_out o = {h, dst};
    int32_t i = 0;
    for (; len > 0; len--, i++) {
        uint8_t c = in[i];
        if (c == 0) {
            if (no_error)
                break;
            invalid_encoding(h, (int32_t)src_enc, in + i, len);
        }
        if (!HIGHBIT(c)) {
            put(&o, c);
        } else if (t[c - 0x80]) {
            put(&o, t[c - 0x80]);
        } else {
            if (no_error)
                break;
            untranslatable(h, (int32_t)src_enc, (int32_t)dst_enc, in + i, len);
        }
    }
    put(&o, 0);
    return (u32)i;
}

/* latin2mic / latin2mic_with_table: a single-byte encoding to MULE_INTERNAL,
 * each high byte prefixed with the charset id lc, directly or through tab
 * (0 in tab: no equivalent). */
static u32 to_mic(abi_host *h, u32 src, u32 dst, int32_t len, u32 lc, int32_t enc, u32 tab,
                  bool noerr) {
    const uint8_t *in = guest_in(h, src, len), *t = tab ? abi_gptr(h, tab, 128) : NULL;
    guest_out o = {h, dst};
    int32_t i = 0;
    for (; len > 0; len--, i++) {
        uint8_t c = in[i];
        if (c == 0) {
            if (noerr)
                break;
            invalid_encoding(h, enc, in + i, len);
        }
        if (!HIGHBIT(c)) {
            put(&o, c);
            continue;
        }
        uint8_t m = t ? t[c - 0x80] : c;
        if (!m) {
            if (noerr)
                break;
            untranslatable(h, enc, ENC_MULE_INTERNAL, in + i, len);
        }
        put(&o, (uint8_t)lc);
        put(&o, m);
    }
    put(&o, 0);
    return (u32)i;
}

/* mic2latin / mic2latin_with_table: MULE_INTERNAL to a single-byte
 * encoding; only two-byte characters of charset lc translate. */
static u32 from_mic(abi_host *h, u32 src, u32 dst, int32_t len, u32 lc, int32_t enc, u32 tab,
                    bool noerr) {
    const uint8_t *in = guest_in(h, src, len), *t = tab ? abi_gptr(h, tab, 128) : NULL;
    guest_out o = {h, dst};
    int32_t i = 0;
    while (len > 0) {
        uint8_t c = in[i];
        if (c == 0) {
            if (noerr)
                break;
            invalid_encoding(h, ENC_MULE_INTERNAL, in + i, len);
        }
        if (!HIGHBIT(c)) {
            put(&o, c);
            i++;
            len--;
            continue;
        }
        int l = mule_len(c);
        if (len < l) {
            if (noerr)
                break;
            invalid_encoding(h, ENC_MULE_INTERNAL, in + i, len);
        }
        uint8_t out = 0;
        if (l == 2 && c == (uint8_t)lc && HIGHBIT(in[i + 1]))
            out = t ? t[in[i + 1] - 0x80] : in[i + 1];
        if (!out) {
            if (noerr)
                break;
            untranslatable(h, ENC_MULE_INTERNAL, enc, in + i, len);
        }
        put(&o, out);
        i += 2;
        len -= 2;
    }
    put(&o, 0);
    return (u32)i;
}

/* int latin2mic(const unsigned char *l, unsigned char *p, int len, int lc,
 *               int encoding, bool noError) */
u32 Z_envZ_latin2mic(struct Z_env_instance_t *h, u32 src, u32 dst, u32 len, u32 lc, u32 enc,
                     u32 no_error) {
    return to_mic(h, src, dst, (int32_t)len, lc, (int32_t)enc, 0, no_error != 0);
}

/* int mic2latin(const unsigned char *mic, unsigned char *p, int len, int lc,
 *               int encoding, bool noError) */
u32 Z_envZ_mic2latin(struct Z_env_instance_t *h, u32 src, u32 dst, u32 len, u32 lc, u32 enc,
                     u32 no_error) {
    return from_mic(h, src, dst, (int32_t)len, lc, (int32_t)enc, 0, no_error != 0);
}

/* int latin2mic_with_table(const unsigned char *l, unsigned char *p, int len,
 *                          int lc, int encoding, const unsigned char *tab,
 *                          bool noError) */
u32 Z_envZ_latin2mic_with_table(struct Z_env_instance_t *h, u32 src, u32 dst, u32 len, u32 lc,
                                u32 enc, u32 tab, u32 no_error) {
    if (!tab)
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    return to_mic(h, src, dst, (int32_t)len, lc, (int32_t)enc, tab, no_error != 0);
}

/* int mic2latin_with_table(const unsigned char *mic, unsigned char *p,
 *                          int len, int lc, int encoding,
 *                          const unsigned char *tab, bool noError) */
u32 Z_envZ_mic2latin_with_table(struct Z_env_instance_t *h, u32 src, u32 dst, u32 len, u32 lc,
                                u32 enc, u32 tab, u32 no_error) {
    if (!tab)
        wasm_rt_trap(WASM_RT_TRAP_OOB);
    return from_mic(h, src, dst, (int32_t)len, lc, (int32_t)enc, tab, no_error != 0);
}

/* int pg_encoding_verifymbchar(int encoding, const char *mbstr, int len) */
u32 Z_envZ_pg_encoding_verifymbchar(struct Z_env_instance_t *h, u32 encoding, u32 mbstr,
                                    u32 len) {
    int32_t n = (int32_t)len;
    /* verifychar may assume a first byte; it reads no further than len */
    const uint8_t *s = abi_gptr(h, mbstr, n > 0 ? (uint32_t)n : 1);
    return (u32)verify_char(valid_encoding((int32_t)encoding) ? (int32_t)encoding : ENC_SQL_ASCII,
                            s, n);
}

/* bool pg_utf8_islegal(const unsigned char *source, int length) */
u32 Z_envZ_pg_utf8_islegal(struct Z_env_instance_t *h, u32 src, u32 length) {
    int32_t n = (int32_t)length;
    if (n < 1 || n > 4)
        return 0;
    return utf8_legal(abi_gptr(h, src, (uint32_t)n), n);
}

/* void report_invalid_encoding(int encoding, const char *mbstr, int len) */
void Z_envZ_report_invalid_encoding(struct Z_env_instance_t *h, u32 encoding, u32 mbstr,
                                    u32 len) {
    int32_t n = (int32_t)len;
    invalid_encoding(h, (int32_t)encoding, guest_in(h, mbstr, n > 8 ? 8 : n), n);
}

/* void report_untranslatable_char(int src_encoding, int dest_encoding,
 *                                 const char *mbstr, int len) */
void Z_envZ_report_untranslatable_char(struct Z_env_instance_t *h, u32 src, u32 dst,
                                       u32 mbstr, u32 len) {
    int32_t n = (int32_t)len;
    untranslatable(h, (int32_t)src, (int32_t)dst, guest_in(h, mbstr, n > 8 ? 8 : n), n);
}

/* encnames.c's pg_encoding_to_char, which pg_dump.wasm imports (for its
 * "SET client_encoding" line) and pglite.wasm does not export: the name in
 * guest memory, made once per instance; "" for an invalid encoding, as
 * PostgreSQL gives. */
u32 Z_envZ_pg_encoding_to_char(struct Z_env_instance_t *h, u32 enc) {
    size_t n = sizeof encodings / sizeof encodings[0];
    uint32_t i = enc < n ? enc : (uint32_t)n;
    if (!h->encname[i]) {
        const char *s = i < n ? encodings[i] : "";
        uint32_t len = (uint32_t)strlen(s) + 1;
        uint32_t p = abi_guest_alloc(h, 8, len);
        uint8_t *dst = p ? abi_mem_ptr(h->mem, p, len) : NULL;
        if (!dst)
            wasm_rt_trap(WASM_RT_TRAP_OOB);
        memcpy(dst, s, len);
        h->encname[i] = p;
    }
    return h->encname[i];
}
