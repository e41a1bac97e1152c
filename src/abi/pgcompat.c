/* PostgreSQL functions that side modules import but pglite.wasm does not
 * export (its linker dropped them), provided by the host over guest memory
 * so the modules that need them work: the encoding-conversion helpers of
 * utf8_and_iso8859_1.so and friends. Errors are raised as real PostgreSQL
 * ERRORs through the main module's errstart/errcode/errmsg/errfinish. */
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
    ((void (*)(void *, u32, u32, u32))fin->func)(mi, 0, 0, 0);
    /* errfinish of an ERROR longjmps to PostgreSQL's handler. */
    abi_set_abort_message("errfinish returned for: %s", msg);
    abi_unwind(ABI_UNWIND_ABORT, 0);
}

static void hex_bytes(abi_host *h, u32 p, u32 len, char *out, size_t n) {
    size_t o = 0;
    out[0] = 0;
    for (u32 i = 0; i < len && i < 8 && o + 6 < n; i++) {
        uint8_t *b = abi_mem_ptr(h->mem, p + i, 1);
        if (!b)
            break;
        o += (size_t)snprintf(out + o, n - o, "%s0x%02x", i ? " " : "", *b);
    }
}

/* bool pg_utf8_islegal(const unsigned char *source, int length) */
u32 Z_envZ_pg_utf8_islegal(struct Z_env_instance_t *h, u32 src, u32 length) {
    if ((int32_t)length < 1 || (int32_t)length > 4)
        return 0;
    uint8_t *s = abi_mem_ptr(h->mem, src, length);
    if (!s)
        return 0;
    uint8_t a;
    switch (length) {
    case 4:
        a = s[3];
        if (a < 0x80 || a > 0xBF)
            return 0;
        /* fallthrough */
    case 3:
        a = s[2];
        if (a < 0x80 || a > 0xBF)
            return 0;
        /* fallthrough */
    case 2:
        a = s[1];
        switch (s[0]) {
        case 0xE0: if (a < 0xA0 || a > 0xBF) return 0; break;
        case 0xED: if (a < 0x80 || a > 0x9F) return 0; break;
        case 0xF0: if (a < 0x90 || a > 0xBF) return 0; break;
        case 0xF4: if (a < 0x80 || a > 0x8F) return 0; break;
        default: if (a < 0x80 || a > 0xBF) return 0; break;
        }
        /* fallthrough */
    case 1:
        a = s[0];
        if (a >= 0x80 && a < 0xC2)
            return 0;
        if (a > 0xF4)
            return 0;
        break;
    }
    return 1;
}

/* void report_invalid_encoding(int encoding, const char *mbstr, int len) */
void Z_envZ_report_invalid_encoding(struct Z_env_instance_t *h, u32 encoding, u32 mbstr,
                                    u32 len) {
    char bytes[64], msg[256];
    hex_bytes(h, mbstr, len, bytes, sizeof bytes);
    snprintf(msg, sizeof msg, "invalid byte sequence for encoding \"%s\": %s",
             enc_name(encoding), bytes);
    raise_error(h, MAKE_SQLSTATE('2', '2', '0', '2', '1'), msg);
}

/* void report_untranslatable_char(int src_encoding, int dest_encoding,
 *                                 const char *mbstr, int len) */
void Z_envZ_report_untranslatable_char(struct Z_env_instance_t *h, u32 src, u32 dst,
                                       u32 mbstr, u32 len) {
    char bytes[64], msg[320];
    hex_bytes(h, mbstr, len, bytes, sizeof bytes);
    snprintf(msg, sizeof msg,
             "character with byte sequence %s in encoding \"%s\" has no equivalent in "
             "encoding \"%s\"",
             bytes, enc_name(src), enc_name(dst));
    raise_error(h, MAKE_SQLSTATE('2', '2', 'P', '0', '5'), msg);
}
