/*
 * Unit tests for src/wire: encoders produce the bytes PostgreSQL expects,
 * decoders accept well-formed messages and refuse malformed ones (bad
 * lengths, truncation, trailing bytes) without reading past the end.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

/* The one message in b, checked to span all of b. */
static wire_msg only(const wire_buf *b) {
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, b->data, b->len);
    assert_int_equal(wire_next(&r, &m), 1);
    assert_int_equal(wire_next(&r, &m), 0);
    wire_reader_init(&r, b->data, b->len);
    wire_next(&r, &m);
    return m;
}

/* A message of type t with body bytes. */
static wire_msg msg(char t, const void *body, size_t n) {
    return (wire_msg){.type = t, .body = body, .len = (uint32_t)n};
}

/* Copy a body into an exactly sized heap block so ASan catches overreads. */
static uint8_t *exact(const void *p, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    memcpy(b, p, n);
    return b;
}

static void test_parse_bind_execute_sync(void **state) {
    (void)state;
    wire_buf b;
    wire_buf_init(&b);
    uint32_t types[2] = {20, 0};
    assert_int_equal(wire_parse(&b, "s1", "SELECT $1, $2", 2, types), 0);
    wire_msg m = only(&b);
    assert_int_equal(m.type, 'P');
    static const uint8_t want_p[] = "s1\0SELECT $1, $2\0\0\2\0\0\0\x14\0\0\0\0";
    assert_int_equal(m.len, sizeof want_p - 1);
    assert_memory_equal(m.body, want_p, m.len);

    wire_buf_reset(&b);
    uint8_t be8[8] = {0, 0, 0, 0, 0, 0, 0, 41};
    const char *vals[3] = {(const char *)be8, "x", NULL};
    int lens[3] = {8, 0, 0}, fmts[3] = {1, 0, 0};
    assert_int_equal(wire_bind(&b, "", "s1", 3, vals, lens, fmts, 1), 0);
    m = only(&b);
    assert_int_equal(m.type, 'B');
    static const uint8_t want_b[] =
        "\0s1\0"                 /* portal, statement */
        "\0\3\0\1\0\0\0\0"       /* 3 formats: binary, text, text */
        "\0\3"                   /* 3 values */
        "\0\0\0\x08\0\0\0\0\0\0\0\x29"
        "\0\0\0\1x"
        "\xff\xff\xff\xff"       /* NULL */
        "\0\1\0\1";              /* one result format: binary */
    assert_int_equal(m.len, sizeof want_b - 1);
    assert_memory_equal(m.body, want_b, m.len);

    /* text-only bind: no format codes */
    wire_buf_reset(&b);
    const char *tv[1] = {"42"};
    assert_int_equal(wire_bind(&b, "", "", 1, tv, NULL, NULL, 0), 0);
    m = only(&b);
    static const uint8_t want_t[] = "\0\0\0\0\0\1\0\0\0\2" "42" "\0\1\0\0";
    assert_int_equal(m.len, sizeof want_t - 1);
    assert_memory_equal(m.body, want_t, m.len);

    wire_buf_reset(&b);
    assert_int_equal(wire_describe(&b, 'P', ""), 0);
    assert_int_equal(wire_execute(&b, "", 0), 0);
    assert_int_equal(wire_close(&b, 'S', "s1"), 0);
    assert_int_equal(wire_sync(&b), 0);
    static const uint8_t want_seq[] = "D\0\0\0\6P\0" "E\0\0\0\11\0\0\0\0\0" "C\0\0\0\10Ss1\0"
                                      "S\0\0\0\4";
    assert_int_equal(b.len, sizeof want_seq - 1);
    assert_memory_equal(b.data, want_seq, b.len);
    wire_buf_free(&b);
}

static void test_encoder_rejects_bad_arguments(void **state) {
    (void)state;
    wire_buf b;
    wire_buf_init(&b);
    assert_int_equal(wire_parse(&b, NULL, "x", 0, NULL), -1);
    assert_int_equal(wire_parse(&b, "", NULL, 0, NULL), -1);
    assert_int_equal(wire_parse(&b, "", "x", -1, NULL), -1);
    assert_int_equal(wire_parse(&b, "", "x", 65536, NULL), -1);
    const char *v[1] = {"abc"};
    int f[1] = {1};
    assert_int_equal(wire_bind(&b, "", "", 1, NULL, NULL, NULL, 0), -1);
    assert_int_equal(wire_bind(&b, "", "", 1, v, NULL, f, 0), -1); /* binary without length */
    assert_int_equal(wire_describe(&b, 'X', ""), -1);
    assert_int_equal(wire_close(&b, 'S', NULL), -1);
    assert_int_equal(wire_execute(&b, NULL, 0), -1);
    assert_int_equal(wire_copy_fail(&b, NULL), -1);
    assert_int_equal(wire_query_len(&b, "a\0b", 3), -1);
    assert_int_equal(b.len, 0); /* nothing half-written */
    assert_int_equal(wire_query_len(&b, "SELECT 1; junk", 8), 0);
    wire_msg m = only(&b);
    assert_string_equal((const char *)m.body, "SELECT 1");
    wire_buf_free(&b);
}

static void test_copy_messages(void **state) {
    (void)state;
    wire_buf b;
    wire_buf_init(&b);
    assert_int_equal(wire_copy_data(&b, "1\n", 2), 0);
    assert_int_equal(wire_copy_done(&b), 0);
    assert_int_equal(wire_copy_fail(&b, "no"), 0);
    static const uint8_t want[] = "d\0\0\0\0061\nc\0\0\0\4f\0\0\0\7no";
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, b.len);
    wire_buf_free(&b);
}

static void test_row_description(void **state) {
    (void)state;
    static const uint8_t body[] = "\0\2"
                                  "id\0\0\0\x40\0\0\1\0\0\0\x17\0\4\xff\xff\xff\xff\0\0"
                                  "name\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\1";
    size_t n = sizeof body - 1;
    uint8_t *p = exact(body, n);
    wire_msg m = msg('T', p, n);
    wire_field f[2];
    assert_int_equal(wire_row_description(&m, NULL, 0), 2);
    assert_int_equal(wire_row_description(&m, f, 1), 2); /* only one filled */
    assert_int_equal(wire_row_description(&m, f, 2), 2);
    assert_string_equal(f[0].name, "id");
    assert_int_equal(f[0].table_oid, 0x4000);
    assert_int_equal(f[0].column, 1);
    assert_int_equal(f[0].type_oid, 23);
    assert_int_equal(f[0].typlen, 4);
    assert_int_equal(f[0].typmod, -1);
    assert_int_equal(f[0].format, 0);
    assert_string_equal(f[1].name, "name");
    assert_int_equal(f[1].type_oid, 25);
    assert_int_equal(f[1].typlen, -1);
    assert_int_equal(f[1].format, 1);
    /* every truncation is refused */
    for (size_t k = 0; k < n; k++) {
        uint8_t *q = exact(body, k);
        wire_msg t = msg('T', q, k);
        assert_int_equal(wire_row_description(&t, f, 2), -1);
        free(q);
    }
    /* trailing bytes, wrong type, bad format code */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, body, n);
    longer[n] = 0;
    wire_msg t = msg('T', longer, n + 1);
    assert_int_equal(wire_row_description(&t, f, 2), -1);
    assert_int_equal(wire_row_description(&(wire_msg){.type = 'D', .body = p, .len = (uint32_t)n}, f, 2),
                     -1);
    longer[n - 1] = 7;
    t = msg('T', longer, n);
    assert_int_equal(wire_row_description(&t, f, 2), -1);
    free(longer);
    free(p);
}

static void test_data_row(void **state) {
    (void)state;
    static const uint8_t body[] = "\0\3\0\0\0\2" "42" "\xff\xff\xff\xff" "\0\0\0\0";
    size_t n = sizeof body - 1;
    uint8_t *p = exact(body, n);
    wire_msg m = msg('D', p, n);
    wire_value v[3];
    assert_int_equal(wire_data_row(&m, v, 3), 3);
    assert_int_equal(v[0].len, 2);
    assert_memory_equal(v[0].data, "42", 2);
    assert_int_equal(v[1].len, -1);
    assert_null(v[1].data);
    assert_int_equal(v[2].len, 0);
    for (size_t k = 0; k < n; k++) {
        uint8_t *q = exact(body, k);
        wire_msg t = msg('D', q, k);
        assert_int_equal(wire_data_row(&t, v, 3), -1);
        free(q);
    }
    /* a length past the end, a huge length, a negative length other than -1 */
    static const uint8_t past[] = "\0\1\0\0\0\5abc";
    static const uint8_t huge[] = "\0\1\x7f\xff\xff\xff" "a";
    static const uint8_t neg[] = "\0\1\xff\xff\xff\xfe";
    const uint8_t *bad[] = {past, huge, neg};
    size_t badn[] = {sizeof past - 1, sizeof huge - 1, sizeof neg - 1};
    for (int i = 0; i < 3; i++) {
        uint8_t *q = exact(bad[i], badn[i]);
        wire_msg t = msg('D', q, badn[i]);
        assert_int_equal(wire_data_row(&t, v, 3), -1);
        free(q);
    }
    free(p);
}

static void test_small_messages(void **state) {
    (void)state;
    const char *s, *s2;
    int32_t pid;
    wire_msg m = msg('C', "INSERT 0 1", 11);
    assert_int_equal(wire_command_complete(&m, &s), 0);
    assert_string_equal(s, "INSERT 0 1");
    m = msg('C', "INSERT 0 1", 10); /* no NUL */
    assert_int_equal(wire_command_complete(&m, &s), -1);
    char st;
    m = msg('Z', "T", 1);
    assert_int_equal(wire_ready_for_query(&m, &st), 0);
    assert_int_equal(st, 'T');
    m = msg('Z', "X", 1);
    assert_int_equal(wire_ready_for_query(&m, &st), -1);
    m = msg('Z', "II", 2);
    assert_int_equal(wire_ready_for_query(&m, &st), -1);
    static const uint8_t nb[] = "\0\0\0\x2a" "ch\0" "hello";
    m = msg('A', nb, sizeof nb);
    assert_int_equal(wire_notification(&m, &pid, &s, &s2), 0);
    assert_int_equal(pid, 42);
    assert_string_equal(s, "ch");
    assert_string_equal(s2, "hello");
    m = msg('A', nb, sizeof nb - 1); /* payload unterminated */
    assert_int_equal(wire_notification(&m, &pid, &s, &s2), -1);
    m = msg('S', "TimeZone\0UTC", 13);
    assert_int_equal(wire_parameter_status(&m, &s, &s2), 0);
    assert_string_equal(s2, "UTC");
    static const uint8_t pd[] = "\0\2\0\0\0\x17\0\0\0\x19";
    uint32_t t[2];
    m = msg('t', pd, sizeof pd - 1);
    assert_int_equal(wire_parameter_description(&m, t, 2), 2);
    assert_int_equal(t[1], 25);
    m = msg('t', pd, sizeof pd - 2);
    assert_int_equal(wire_parameter_description(&m, t, 2), -1);
    static const uint8_t cr[] = "\0\0\2\0\0\0\0";
    int fmt;
    int16_t cf[2];
    m = msg('G', cr, sizeof cr - 1);
    assert_int_equal(wire_copy_response(&m, &fmt, cf, 2), 2);
    m = msg('G', cr, sizeof cr - 2);
    assert_int_equal(wire_copy_response(&m, &fmt, cf, 2), -1);
    uint32_t key;
    m = msg('K', "\0\0\0\1\0\0\0\2", 8);
    assert_int_equal(wire_backend_key(&m, &pid, &key), 0);
    assert_int_equal(key, 2);
    m = msg('K', "\0\0\0\1\0\0\0", 7);
    assert_int_equal(wire_backend_key(&m, &pid, &key), -1);
}

static void test_error_fields(void **state) {
    (void)state;
    static const uint8_t body[] = "SERROR\0C23505\0Mduplicate key\0DKey (id)=(1) already exists.\0";
    uint8_t *p = exact(body, sizeof body); /* with the final 0 */
    wire_msg m = msg('E', p, sizeof body);
    wire_cur c;
    wire_cur_init(&c, &m);
    char code;
    const char *v;
    int n = 0;
    while (wire_error_next(&c, &code, &v) == 1)
        n++;
    assert_int_equal(n, 4);
    char out[8];
    assert_int_equal(wire_error_field(&m, 'C', out, sizeof out), 5);
    assert_string_equal(out, "23505");
    /* truncated anywhere before the terminator: malformed */
    for (size_t k = 0; k < sizeof body; k++) {
        uint8_t *q = exact(body, k);
        wire_msg t = msg('E', q, k);
        wire_cur_init(&c, &t);
        int r;
        while ((r = wire_error_next(&c, &code, &v)) == 1)
            ;
        assert_int_equal(r, -1);
        free(q);
    }
    free(p);
}

static void test_reader_frames(void **state) {
    (void)state;
    /* a length word under 4, over the limit, and a truncated frame */
    static const uint8_t small[] = "Z\0\0\0\3";
    static const uint8_t big[] = "D\x7f\xff\xff\xff";
    static const uint8_t trunc[] = "Z\0\0\0\5";
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, small, 5);
    assert_int_equal(wire_next(&r, &m), -1);
    wire_reader_init(&r, big, 5);
    assert_int_equal(wire_next(&r, &m), -1);
    wire_reader_init(&r, trunc, 5);
    assert_int_equal(wire_next(&r, &m), -1);
    assert_int_equal(wire_frame_len(trunc, 5), 0);
    assert_int_equal(wire_frame_len(small, 5), -1);
    wire_reader_init(&r, "Z\0\0\0\5I", 6);
    assert_int_equal(wire_next(&r, &m), 1);
    assert_int_equal(wire_next(&r, &m), 0);
    /* cursor reads past the end fail and stay failed */
    wire_cur c;
    m = msg('x', "\1\2\3", 3);
    wire_cur_init(&c, &m);
    assert_int_equal(wire_get_u16(&c), 0x0102);
    assert_int_equal(wire_get_u32(&c), 0);
    assert_true(c.bad);
    assert_int_equal(wire_get_u8(&c), 0);
    assert_null(wire_get_str(&c));
    assert_int_equal(wire_cur_left(&c), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bind_execute_sync),
        cmocka_unit_test(test_encoder_rejects_bad_arguments),
        cmocka_unit_test(test_copy_messages),
        cmocka_unit_test(test_row_description),
        cmocka_unit_test(test_data_row),
        cmocka_unit_test(test_small_messages),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_reader_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
