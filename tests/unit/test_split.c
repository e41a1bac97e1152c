/*
 * Unit tests for the SQL splitter of pglite_exec (sql_next_statement):
 * scripts cut into statements where psql would cut them.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "client/client.h"

/* The statements of script joined with " | ", each without the
 * whitespace around it. */
static char *split(const char *script) {
    static char out[4096];
    out[0] = 0;
    size_t pos = 0, start, len, n = strlen(script);
    int k = 0;
    while (sql_next_statement(script, n, &pos, &start, &len) == 1) {
        assert_true(start + len <= n);
        assert_true(pos <= n);
        /* the whitespace around a statement goes with it (as psql sends
         * it); compared without it */
        while (len && strchr(" \n\t", script[start])) {
            start++;
            len--;
        }
        while (len && strchr(" \n\t", script[start + len - 1]))
            len--;
        if (k++)
            strcat(out, " | ");
        strncat(out, script + start, len);
    }
    return out;
}

static void test_plain(void **state) {
    (void)state;
    assert_string_equal(split("SELECT 1; SELECT 2"), "SELECT 1 | SELECT 2");
    assert_string_equal(split("SELECT 1;;  ;\n"), "SELECT 1");
    assert_string_equal(split(""), "");
    assert_string_equal(split("  -- only a comment\n /* and another */ "), "");
}

static void test_quotes_and_comments(void **state) {
    (void)state;
    assert_string_equal(split("SELECT 'a;b'; SELECT \"x;y\""), "SELECT 'a;b' | SELECT \"x;y\"");
    assert_string_equal(split("SELECT 'it''s;'; SELECT 2"), "SELECT 'it''s;' | SELECT 2");
    assert_string_equal(split("SELECT E'\\';'; SELECT 2"), "SELECT E'\\';' | SELECT 2");
    assert_string_equal(split("SELECT $$a;b$$; SELECT $t$ $$;$$ $t$"),
                        "SELECT $$a;b$$ | SELECT $t$ $$;$$ $t$");
    assert_string_equal(split("SELECT 1 -- no; split\n; SELECT 2"),
                        "SELECT 1 -- no; split | SELECT 2");
    assert_string_equal(split("SELECT /* a /* nested; */ ; */ 1; SELECT 2"),
                        "SELECT /* a /* nested; */ ; */ 1 | SELECT 2");
    /* unterminated: runs to the end, for PostgreSQL to report */
    assert_string_equal(split("SELECT 'open; SELECT 2"), "SELECT 'open; SELECT 2");
}

static void test_parentheses_and_bodies(void **state) {
    (void)state;
    assert_string_equal(split("CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2); SELECT 3"),
                        "CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2) | SELECT 3");
    assert_string_equal(
        split("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;"
              " SELECT f()"),
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END"
        " | SELECT f()");
    /* BEGIN as a transaction is a statement of its own */
    assert_string_equal(split("BEGIN; SELECT 1; END;"), "BEGIN | SELECT 1 | END");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_quotes_and_comments),
        cmocka_unit_test(test_parentheses_and_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
