/* Character set conversions through the real backend, with libpq as the
 * client of the in-process server: every conversion of pg_conversion, to
 * and from UTF8 with known bytes and between the other encodings; SET
 * client_encoding to every encoding, with rows, error messages and client
 * input converted; PostgreSQL's errors for invalid and untranslatable
 * input (22021, 22P05); and an ERROR raised while an ERROR is reported,
 * which must come back as an ERROR with the session still up.
 *
 * The expected bytes are PostgreSQL's (the conversion maps of its
 * conversion modules), checked against a native PostgreSQL server. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef HAVE_LIBPQ
#include <stdio.h>
int main(void) {
    puts("libpq (libpq-dev) not found at build time: skipped");
    return 77;
}
#else

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "server/server.h"
#include "../support/server_fixture.h"

static int setup(void **state) {
    (void)state;
    return fxs_start("client_encoding=UTF8");
}

/* One sample text per encoding that converts to and from UTF8: its UTF-8
 * bytes and its bytes in the encoding, both in hex. Encodings that share
 * a repertoire share a text, so the conversions between them can be
 * checked against the same bytes. */
typedef struct {
    const char *enc;
    const char *utf8; /* hex */
    const char *local; /* hex */
    const char *mic;   /* hex of the text in MULE_INTERNAL, if it converts */
} sample;

static const sample samples[] = {
    /* é ñ ü */
    {"LATIN1", "c3a920c3b120c3bc", "e920f120fc", "81e92081f12081fc"},
    /* Łódź */
    {"LATIN2", "c581c3b364c5ba", "a3f364bc", "82a382f36482bc"},
    /* Ħĝ ŭ */
    {"LATIN3", "c4a6c49d20c5ad", "a1f820fd", "83a183f82083fd"},
    /* ĀĒ ŗ */
    {"LATIN4", "c480c49220c597", "c0aa20b3", "84c084aa2084b3"},
    /* ğış */
    {"LATIN5", "c49fc4b1c59f", "f0fdfe", NULL},
    /* ŊĸĀ */
    {"LATIN6", "c58ac4b8c480", "afffc0", NULL},
    /* ąč ” */
    {"LATIN7", "c485c48d20e2809d", "e0e820a1", NULL},
    /* ḂŴ ẅ */
    {"LATIN8", "e1b882c5b420e1ba85", "a1d020be", NULL},
    /* €Šž */
    {"LATIN9", "e282acc5a0c5be", "a4a6b8", NULL},
    /* ȘțĄ€ */
    {"LATIN10", "c898c89bc484e282ac", "aafea1a4", NULL},
    /* Жизнь */
    {"ISO_8859_5", "d096d0b8d0b7d0bdd18c", "b6d8d7ddec", "8bf68bc98bda8bce8bd8"},
    /* عربي */
    {"ISO_8859_6", "d8b9d8b1d8a8d98a", "d9d1c8ea", NULL},
    /* Ελλάδα */
    {"ISO_8859_7", "ce95cebbcebbceacceb4ceb1", "c5ebebdce4e1", NULL},
    /* עברית */
    {"ISO_8859_8", "d7a2d791d7a8d799d7aa", "f2e1f8e9fa", NULL},
    /* Łódź */
    {"WIN1250", "c581c3b364c5ba", "a3f3649f", "82a382f36482bc"},
    /* Жизнь */
    {"WIN1251", "d096d0b8d0b7d0bdd18c", "c6e8e7edfc", "8bf68bc98bda8bce8bd8"},
    /* é€… */
    {"WIN1252", "c3a9e282ace280a6", "e98085", NULL},
    /* Ελλάδα€ */
    {"WIN1253", "ce95cebbcebbceacceb4ceb1e282ac", "c5ebebdce4e180", NULL},
    /* ğış€ */
    {"WIN1254", "c49fc4b1c59fe282ac", "f0fdfe80", NULL},
    /* עברית₪ */
    {"WIN1255", "d7a2d791d7a8d799d7aae282aa", "f2e1f8e9faa4", NULL},
    /* عربي€ */
    {"WIN1256", "d8b9d8b1d8a8d98ae282ac", "dad1c8ed80", NULL},
    /* ąč€ */
    {"WIN1257", "c485c48de282ac", "e0e880", NULL},
    /* Đ₫ơ */
    {"WIN1258", "c490e282abc6a1", "d0fef5", NULL},
    /* Жизнь */
    {"WIN866", "d096d0b8d0b7d0bdd18c", "86a8a7adec", "8bf68bc98bda8bce8bd8"},
    /* ไทย */
    {"WIN874", "e0b984e0b897e0b8a2", "e4b7c2", NULL},
    /* Жизнь */
    {"KOI8R", "d096d0b8d0b7d0bdd18c", "f6c9daced8", "8bf68bc98bda8bce8bd8"},
    /* Україна */
    {"KOI8U", "d0a3d0bad180d0b0d197d0bdd0b0", "f5cbd2c1a7cec1", NULL},
    /* 日本語ｱ (two-byte kanji, half-width katakana) */
    {"EUC_JP", "e697a5e69cace8aa9eefbdb1", "c6fccbdcb8ec8eb1", "92c6fc92cbdc92b8ec89b1"},
    {"SJIS", "e697a5e69cace8aa9eefbdb1", "93fa967b8ceab1", "92c6fc92cbdc92b8ec89b1"},
    /* 日本か゚ (か + combining semi-voiced mark: one character of JIS X 0213) */
    {"EUC_JIS_2004", "e697a5e69cace3818be3829a", "c6fccbdca4f7", NULL},
    {"SHIFT_JIS_2004", "e697a5e69cace3818be3829a", "93fa967b82f5", NULL},
    /* 中文 */
    {"EUC_CN", "e4b8ade69687", "d6d0cec4", "91d6d091cec4"},
    /* 한국어 */
    {"EUC_KR", "ed959ceab5adec96b4", "c7d1b1b9beee", "93c7d193b1b993beee"},
    /* 中文 */
    {"EUC_TW", "e4b8ade69687", "c4e3c5c6", "95c4e395c5c6"},
    {"BIG5", "e4b8ade69687", "a4a4a4e5", "95c4e395c5c6"},
    /* 中文丂 (丂 only in GBK's extension of GB2312) */
    {"GBK", "e4b8ade69687e4b882", "d6d0cec48140", NULL},
    /* 中文€𠀋 (the last one four bytes, by GB18030's algorithmic ranges) */
    {"GB18030", "e4b8ade69687e282acf0a0808b", "d6d0cec4a2e395328337", NULL},
    /* 한국어똠 (똠 only in UHC's extension of EUC-KR) */
    {"UHC", "ed959ceab5adec96b4eb98a0", "c7d1b1b9beee8c63", NULL},
    /* 中文 (Hangul would not come back: see test_to_and_from_utf8) */
    {"JOHAB", "e4b8ade69687", "f3e9e7fe", NULL},
};
#define NSAMPLES (sizeof samples / sizeof samples[0])

/* More characters that take other paths of the converters. */
static const sample extras[] = {
    /* 丂: JIS X 0212, three bytes behind SS3 */
    {"EUC_JP", "e4b882", "8fb0a1", "94b0a1"},
    /* 乂: CNS 11643 plane 2, four bytes behind SS2 */
    {"EUC_TW", "e4b982", "8ea2a1a1", "96a1a1"},
    {"BIG5", "e4b982", "c940", "96a1a1"},
    /* ｱ丂 𠀋 ㇷ゚: SS2, SS3 (plane 2), a four-byte UTF-8 character and a
     * combined pair */
    {"EUC_JIS_2004", "efbdb1e4b88220f0a0808b20e387b7e3829a", "8eb18fa1a220aea220a6f8", NULL},
    {"SHIFT_JIS_2004", "f0a0808b20e387b7e3829a", "87a02083f6", NULL},
    /* U+0080 and 㐀: four-byte GB18030 codes of the map */
    {"GB18030", "c280e39080", "813081308139ee39", NULL},
};

static const sample *sample_of(const char *enc) {
    for (size_t i = 0; i < NSAMPLES; i++)
        if (strcmp(samples[i].enc, enc) == 0)
            return &samples[i];
    return NULL;
}

static PGconn *connect_db(void) {
    PGconn *c = PQconnectdb(g_conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        print_error("connect: %s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

/* The one value of a query (text), which must succeed. */
static char *value(PGconn *c, const char *sql) {
    static char v[1024];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(v, sizeof v, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* The query must fail with sqlstate and a primary message; the session
 * must then still answer. */
static void fails(PGconn *c, const char *sql, const char *sqlstate, const char *message) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR)
        print_error("%s: expected an error, got %s\n", sql, PQresStatus(PQresultStatus(r)));
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!st || strcmp(st, sqlstate) != 0 || !m || strcmp(m, message) != 0)
        print_error("%s:\n  expected %s %s\n  got      %s %s\n", sql, sqlstate, message,
                    st ? st : "-", m ? m : "-");
    assert_non_null(st);
    assert_string_equal(st, sqlstate);
    assert_non_null(m);
    assert_string_equal(m, message);
    PQclear(r);
    assert_string_equal(value(c, "SELECT 'alive'"), "alive");
}

static void hex_of(const unsigned char *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = 0;
}

/* Bytes from hex (no validation: the tables above are ours). */
static size_t unhex(const char *h, char *out) {
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    out[n] = 0;
    return n;
}

/* The encodings that pg_conversion converts to and from UTF8. */
static int utf8_partners(PGconn *c, char names[][32], int max) {
    PGresult *r = PQexec(c,
                         "SELECT pg_encoding_to_char(contoencoding) FROM pg_conversion "
                         "WHERE conforencoding = pg_char_to_encoding('UTF8') "
                         "INTERSECT SELECT pg_encoding_to_char(conforencoding) FROM pg_conversion "
                         "WHERE contoencoding = pg_char_to_encoding('UTF8') ORDER BY 1");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int n = PQntuples(r);
    assert_true(n <= max);
    for (int i = 0; i < n; i++)
        snprintf(names[i], 32, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return n;
}

static void check_to_from_utf8(PGconn *c, const sample *s) {
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT encode(convert_to(convert_from('\\x%s'::bytea, 'UTF8'), '%s'), 'hex')",
             s->utf8, s->enc);
    if (strcmp(value(c, sql), s->local) != 0)
        print_error("UTF8 -> %s: got %s, want %s\n", s->enc, value(c, sql), s->local);
    assert_string_equal(value(c, sql), s->local);
    snprintf(sql, sizeof sql, "SELECT encode(convert_to(convert_from('\\x%s'::bytea, '%s'), 'UTF8'), 'hex')",
             s->local, s->enc);
    if (strcmp(value(c, sql), s->utf8) != 0)
        print_error("%s -> UTF8: got %s, want %s\n", s->enc, value(c, sql), s->utf8);
    assert_string_equal(value(c, sql), s->utf8);
}

/* Every encoding pg_conversion pairs with UTF8, both ways, with known
 * bytes; and none is left without a sample. */
static void test_to_and_from_utf8(void **state) {
    (void)state;
    PGconn *c = connect_db();
    char names[64][32];
    int n = utf8_partners(c, names, 64);
    assert_int_equal(n, 39); /* PostgreSQL 18's list */
    for (int i = 0; i < n; i++) {
        const sample *s = sample_of(names[i]);
        if (!s)
            print_error("no sample for %s\n", names[i]);
        assert_non_null(s);
        check_to_from_utf8(c, s);
    }
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++)
        check_to_from_utf8(c, &extras[i]);
    /* PostgreSQL writes JOHAB's Hangul, but its JOHAB verifier wants every
     * trail byte in 0xa1..0xfe, so it cannot read them back */
    assert_string_equal(
        value(c, "SELECT encode(convert_to(convert_from('\\xed959ceab5adec96b4'::bytea, 'UTF8'), "
                 "'JOHAB'), 'hex')"),
        "d0658a82b4e1");
    fails(c, "SELECT convert_from('\\xd0658a82b4e1'::bytea, 'JOHAB')", "22021",
          "invalid byte sequence for encoding \"JOHAB\": 0xd0 0x65");
    PQfinish(c);
}

/* Every other conversion of pg_conversion: between two local encodings
 * (the same text in both), and to MULE_INTERNAL and back. */
static void test_between_other_encodings(void **state) {
    (void)state;
    PGconn *c = connect_db();
    PGresult *r = PQexec(c,
                         "SELECT pg_encoding_to_char(conforencoding), "
                         "pg_encoding_to_char(contoencoding) FROM pg_conversion "
                         "WHERE pg_char_to_encoding('UTF8') NOT IN (conforencoding, contoencoding) "
                         "ORDER BY 1, 2");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int n = PQntuples(r), to_mic = 0, from_mic = 0, direct = 0;
    assert_int_equal(n, 50);
    for (int i = 0; i < n; i++) {
        const char *a = PQgetvalue(r, i, 0), *b = PQgetvalue(r, i, 1);
        char sql[1024];
        bool a_mic = strcmp(a, "MULE_INTERNAL") == 0, b_mic = strcmp(b, "MULE_INTERNAL") == 0;
        const sample *s = sample_of(a_mic ? b : a), *t = sample_of(b_mic ? a : b);
        assert_non_null(s);
        assert_non_null(t);
        if (a_mic || b_mic) {
            const sample *l = a_mic ? t : s;
            if (!l->mic)
                print_error("no MULE_INTERNAL bytes for %s\n", l->enc);
            assert_non_null(l->mic);
            snprintf(sql, sizeof sql, "SELECT encode(convert('\\x%s'::bytea, '%s', '%s'), 'hex')",
                     a_mic ? l->mic : l->local, a, b);
            const char *want = a_mic ? l->local : l->mic;
            if (strcmp(value(c, sql), want) != 0)
                print_error("%s -> %s: got %s, want %s\n", a, b, value(c, sql), want);
            assert_string_equal(value(c, sql), want);
            if (a_mic)
                from_mic++;
            else
                to_mic++;
            continue;
        }
        /* the same text on both sides */
        if (strcmp(s->utf8, t->utf8) != 0)
            print_error("samples of %s and %s differ\n", a, b);
        assert_string_equal(s->utf8, t->utf8);
        snprintf(sql, sizeof sql, "SELECT encode(convert('\\x%s'::bytea, '%s', '%s'), 'hex')",
                 s->local, a, b);
        if (strcmp(value(c, sql), t->local) != 0)
            print_error("%s -> %s: got %s, want %s\n", a, b, value(c, sql), t->local);
        assert_string_equal(value(c, sql), t->local);
        direct++;
    }
    PQclear(r);
    assert_int_equal(to_mic, 15);
    assert_int_equal(from_mic, 15);
    assert_int_equal(direct, 20);
    /* the extra characters between EUC_TW and BIG5, EUC_JP and MULE */
    assert_string_equal(value(c, "SELECT encode(convert('\\x8ea2a1a1'::bytea, 'EUC_TW', 'BIG5'), 'hex')"),
                        "c940");
    assert_string_equal(value(c, "SELECT encode(convert('\\xc940'::bytea, 'BIG5', 'EUC_TW'), 'hex')"),
                        "8ea2a1a1");
    assert_string_equal(
        value(c, "SELECT encode(convert('\\x8fb0a1'::bytea, 'EUC_JP', 'MULE_INTERNAL'), 'hex')"),
        "94b0a1");
    PQfinish(c);
}

/* PostgreSQL's errors for what cannot be converted, from each kind of
 * converter, and for invalid bytes. */
static void test_conversion_errors(void **state) {
    (void)state;
    PGconn *c = connect_db();
    char names[64][32];
    int n = utf8_partners(c, names, 64);
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], "GB18030") == 0)
            continue; /* GB18030 has every Unicode character */
        /* 😀 from UTF8: a radix-tree map without it */
        char sql[128], msg[256];
        snprintf(sql, sizeof sql, "SELECT convert_to(U&'\\+01F600', '%.32s')", names[i]);
        snprintf(msg, sizeof msg,
                 "character with byte sequence 0xf0 0x9f 0x98 0x80 in encoding \"UTF8\" has no "
                 "equivalent in encoding \"%.32s\"",
                 names[i]);
        fails(c, sql, "22P05", msg);
    }
    /* to UTF8: unassigned codes that the encoding's byte syntax allows */
    fails(c, "SELECT convert_from('\\xa9a1'::bytea, 'EUC_JP')", "22P05",
          "character with byte sequence 0xa9 0xa1 in encoding \"EUC_JP\" has no equivalent in "
          "encoding \"UTF8\"");
    fails(c, "SELECT convert_from('\\x41f040'::bytea, 'SJIS')", "22P05",
          "character with byte sequence 0xf0 0x40 in encoding \"SJIS\" has no equivalent in "
          "encoding \"UTF8\"");
    /* GB18030's algorithmic function rejects a code between its ranges */
    fails(c, "SELECT convert_from('\\x8431a530'::bytea, 'GB18030')", "22P05",
          "character with byte sequence 0x84 0x31 0xa5 0x30 in encoding \"GB18030\" has no "
          "equivalent in encoding \"UTF8\"");
    /* between single-byte encodings, and through MULE_INTERNAL */
    fails(c, "SELECT convert('\\x80'::bytea, 'KOI8R', 'WIN1251')", "22P05",
          "character with byte sequence 0x80 in encoding \"KOI8R\" has no equivalent in "
          "encoding \"WIN1251\"");
    fails(c, "SELECT convert('\\x41a6'::bytea, 'WIN1250', 'LATIN2')", "22P05",
          "character with byte sequence 0xa6 in encoding \"WIN1250\" has no equivalent in "
          "encoding \"LATIN2\"");
    fails(c, "SELECT convert('\\x82a1'::bytea, 'MULE_INTERNAL', 'LATIN1')", "22P05",
          "character with byte sequence 0x82 0xa1 in encoding \"MULE_INTERNAL\" has no "
          "equivalent in encoding \"LATIN1\"");
    fails(c, "SELECT convert('\\x81'::bytea, 'MULE_INTERNAL', 'LATIN1')", "22021",
          "invalid byte sequence for encoding \"MULE_INTERNAL\": 0x81");
    /* and the values still convert afterwards */
    assert_string_equal(value(c, "SELECT encode(convert_to('Łódź', 'LATIN2'), 'hex')"), "a3f364bc");
    PQfinish(c);
}

/* SET client_encoding to every encoding PostgreSQL knows: all but
 * MULE_INTERNAL (which has no conversion with UTF8) answer SET, and then
 * rows, error messages and the client's own bytes are converted. */
static void test_client_encoding_every(void **state) {
    (void)state;
    PGconn *c = connect_db();
    PGresult *r = PQexec(c, "SELECT pg_encoding_to_char(e) FROM generate_series(0, 63) e "
                            "WHERE pg_encoding_to_char(e) <> '' ORDER BY e");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int n = PQntuples(r), converted = 0;
    assert_int_equal(n, 42);
    for (int i = 0; i < n; i++) {
        const char *enc = PQgetvalue(r, i, 0);
        char sql[1024], want[512], got[1024];
        snprintf(sql, sizeof sql, "SET client_encoding TO '%s'", enc);
        if (strcmp(enc, "MULE_INTERNAL") == 0) {
            snprintf(want, sizeof want, "invalid value for parameter \"client_encoding\": \"%s\"", enc);
            fails(c, sql, "0A000", want);
            continue;
        }
        PGresult *s = PQexec(c, sql);
        if (PQresultStatus(s) != PGRES_COMMAND_OK)
            print_error("%s: %s\n", sql, PQresultErrorMessage(s));
        assert_int_equal(PQresultStatus(s), PGRES_COMMAND_OK);
        assert_string_equal(PQcmdStatus(s), "SET");
        PQclear(s);
        assert_string_equal(PQparameterStatus(c, "client_encoding"), enc);
        /* UTF8 and SQL_ASCII: the bytes as they are */
        static const sample raw = {"UTF8", "c3a9e282ac", "c3a9e282ac", NULL};
        const sample *smp = sample_of(enc);
        if (!smp) {
            assert_true(strcmp(enc, "UTF8") == 0 || strcmp(enc, "SQL_ASCII") == 0);
            smp = &raw;
        } else {
            converted++;
        }
        /* a row: the server's text in the client's encoding */
        snprintf(sql, sizeof sql, "SELECT convert_from('\\x%s'::bytea, 'UTF8')", smp->utf8);
        PGresult *q = PQexec(c, sql);
        assert_int_equal(PQresultStatus(q), PGRES_TUPLES_OK);
        hex_of((const unsigned char *)PQgetvalue(q, 0, 0), (size_t)PQgetlength(q, 0, 0), got);
        if (strcmp(got, smp->local) != 0)
            print_error("client_encoding %s: row %s, want %s\n", enc, got, smp->local);
        assert_string_equal(got, smp->local);
        PQclear(q);
        /* the client's bytes: the server sees them as UTF-8 */
        char local[256];
        unhex(smp->local, local);
        snprintf(sql, sizeof sql, "SELECT encode(convert_to('%s', 'UTF8'), 'hex')", local);
        if (strcmp(value(c, sql), smp->utf8) != 0)
            print_error("client_encoding %s: input %s, want %s\n", enc, value(c, sql), smp->utf8);
        assert_string_equal(value(c, sql), smp->utf8);
        /* an error message quoting the text comes back converted */
        snprintf(sql, sizeof sql, "SELECT '%s'::int", local);
        snprintf(want, sizeof want, "invalid input syntax for type integer: \"%s\"", local);
        fails(c, sql, "22P02", want);
    }
    PQclear(r);
    assert_int_equal(converted, 39);
    assert_int_equal(PQsetClientEncoding(c, "UTF8"), 0);
    assert_string_equal(value(c, "SELECT U&'\\00e9'"), "\xc3\xa9");
    PQfinish(c);
    assert_int_equal(atomic_load(&g_backend_stops), 0);
}

/* Bytes from the client that are not valid in its encoding. */
static void test_invalid_client_input(void **state) {
    (void)state;
    PGconn *c = connect_db();
    assert_int_equal(PQsetClientEncoding(c, "SJIS"), 0);
    fails(c, "SELECT '\x81'", "22021", "invalid byte sequence for encoding \"SJIS\": 0x81 0x27");
    fails(c, "SELECT '\xf0\x40'", "22P05",
          "character with byte sequence 0xf0 0x40 in encoding \"SJIS\" has no equivalent in "
          "encoding \"UTF8\"");
    assert_int_equal(PQsetClientEncoding(c, "EUC_JP"), 0);
    fails(c, "SELECT '\x8e'", "22021", "invalid byte sequence for encoding \"EUC_JP\": 0x8e 0x27");
    fails(c, "SELECT '\xa1\x41'", "22021",
          "invalid byte sequence for encoding \"EUC_JP\": 0xa1 0x41");
    assert_int_equal(PQsetClientEncoding(c, "GB18030"), 0);
    fails(c, "SELECT '\x81\x30'", "22021",
          "invalid byte sequence for encoding \"GB18030\": 0x81 0x30 0x27");
    assert_int_equal(PQsetClientEncoding(c, "BIG5"), 0);
    assert_string_equal(value(c, "SELECT encode(convert_to('\xa4\xa4', 'UTF8'), 'hex')"), "e4b8ad");
    PQfinish(c);
}

/* An ERROR raised while the backend reports an ERROR: here the first
 * message quotes a character the client's encoding lacks, so reporting it
 * fails. PostgreSQL reports the second error (plain ASCII) and goes on;
 * the backend must not die. The same for a NOTICE that cannot be sent. */
static void test_error_while_reporting_error(void **state) {
    (void)state;
    int stops = atomic_load(&g_backend_stops);
    PGconn *c = connect_db();
    assert_int_equal(PQsetClientEncoding(c, "LATIN1"), 0);
    const char *euro =
        "character with byte sequence 0xe2 0x82 0xac in encoding \"UTF8\" has no equivalent in "
        "encoding \"LATIN1\"";
    for (int i = 0; i < 3; i++)
        fails(c, "SELECT (U&'\\20AC')::int", "22P05", euro);
    fails(c, "DO $$BEGIN RAISE NOTICE 'x %', U&'\\20AC'; END$$", "22P05", euro);
    /* in a transaction: it is aborted, as after any error */
    PGresult *r = PQexec(c, "BEGIN");
    PQclear(r);
    r = PQexec(c, "SELECT (U&'\\20AC')::int");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    r = PQexec(c, "SELECT 1");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "25P02");
    PQclear(r);
    r = PQexec(c, "ROLLBACK");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_string_equal(value(c, "SELECT 'caf' || U&'\\00e9'"), "caf\xe9");
    PQfinish(c);
    /* the server goes on with the same backend */
    c = connect_db();
    assert_string_equal(value(c, "SELECT 'next'"), "next");
    PQfinish(c);
    assert_int_equal(atomic_load(&g_backend_stops), stops);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_and_from_utf8),
        cmocka_unit_test(test_between_other_encodings),
        cmocka_unit_test(test_conversion_errors),
        cmocka_unit_test(test_client_encoding_every),
        cmocka_unit_test(test_invalid_client_input),
        cmocka_unit_test(test_error_while_reporting_error),
    };
    return cmocka_run_group_tests(tests, setup, fxs_teardown);
}

#endif
