/*
 * PostgreSQL's defaults and limits in the embedded backend, checked
 * through the public API against what PostgreSQL 18 does:
 *
 * - system catalogs are protected (allow_system_table_mods is off unless
 *   the user sets it);
 * - max_stack_depth holds for C recursion (JSON, jsonb, jsonpath, regular
 *   expressions), not only for SQL recursion: a statement too deep is
 *   ERROR 54001 (or the regex library's "too complex", as in PostgreSQL),
 *   and the same session answers the next statement;
 * - the parallel-query settings are PostgreSQL's, and a parallel plan runs
 *   in the leader (no background workers in an embedded backend).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pglite.h"

static pglite *g_db;

static int setup(void **state) {
    (void)state;
    if (pglite_open(NULL, NULL, &g_db) != PGLITE_OK) {
        fprintf(stderr, "pglite_open: %s\n", pglite_errmsg(NULL));
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return pglite_close(g_db);
}

static void ok_exec(const char *sql) {
    if (pglite_exec(g_db, sql, NULL, NULL) != PGLITE_OK)
        fail_msg("%s: %s", sql, pglite_errmsg(g_db));
}

/* The first cell of sql as text (static buffer). */
static const char *scalar(const char *sql) {
    static char buf[4096];
    pglite_result *r = NULL;
    if (pglite_query(g_db, sql, 0, NULL, NULL, NULL, NULL, 0, &r) != PGLITE_OK)
        fail_msg("%s: %s", sql, pglite_errmsg(g_db));
    const char *v = pglite_result_getvalue(r, 0, 0);
    snprintf(buf, sizeof buf, "%s", v ? v : "(null)");
    pglite_result_free(r);
    return buf;
}

/* sql must fail with sqlstate and message; the session must then answer. */
static void expect_error(const char *sql, const char *sqlstate, const char *message) {
    pglite_result *r = NULL;
    int rc = pglite_query(g_db, sql, 0, NULL, NULL, NULL, NULL, 0, &r);
    if (rc != PGLITE_ERROR)
        fail_msg("%.80s: expected ERROR %s, got status %d (%s)", sql, sqlstate, rc,
                 pglite_errmsg(g_db));
    const pglite_error *e = pglite_result_error(r);
    assert_non_null(e);
    if (strcmp(e->sqlstate, sqlstate) != 0 || strcmp(e->message, message) != 0)
        fail_msg("%.80s: expected %s \"%s\", got %s \"%s\"", sql, sqlstate, message,
                 e->sqlstate, e->message);
    pglite_result_free(r);
    assert_string_equal(scalar("SELECT 'still here'"), "still here");
}

#define STACK_DEPTH "stack depth limit exceeded"

/* cmocka installs its own SIGSEGV handler before each test, and the stack
 * limit needs the engine's (src/engine/stack.c): the engine takes it back
 * at its first call 100 ms or more after its last look, as it would from a
 * host program that installed one. */
static void take_back_signals(void) {
    usleep(150 * 1000);
    ok_exec("RESET max_stack_depth"); /* whatever a failed test left */
}

/* ---- system catalogs ---------------------------------------------------- */

static void test_system_catalogs(void **state) {
    (void)state;
    assert_string_equal(scalar("SHOW allow_system_table_mods"), "off");

    pglite_result *r = NULL;
    assert_int_equal(pglite_query(g_db, "CREATE TABLE pg_catalog.t()", 0, NULL, NULL, NULL,
                                  NULL, 0, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "42501");
    assert_string_equal(pglite_result_error(r)->message,
                        "permission denied to create \"pg_catalog.t\"");
    assert_string_equal(pglite_result_error(r)->detail,
                        "System catalog modifications are currently disallowed.");
    pglite_result_free(r);
    assert_string_equal(scalar("SELECT count(*) FROM pg_class WHERE relname = 't' AND "
                               "relnamespace = 'pg_catalog'::regnamespace"),
                        "0");

    expect_error("ALTER TABLE pg_class ALTER relname SET NOT NULL", "42501",
                 "permission denied: \"pg_class\" is a system catalog");
    expect_error("ALTER TABLE pg_class ALTER relname DROP NOT NULL", "42501",
                 "permission denied: \"pg_class\" is a system catalog");

    /* RESET goes back to PostgreSQL's default, not to a start-up value */
    ok_exec("RESET allow_system_table_mods");
    assert_string_equal(scalar("SHOW allow_system_table_mods"), "off");
}

/* ---- max_stack_depth ------------------------------------------------------ */

static void test_stack_depth_json(void **state) {
    (void)state;
    take_back_signals();
    assert_string_equal(scalar("SHOW max_stack_depth"), "2MB");
    /* Within the default limit, deep JSON parses; unterminated, it is a
     * syntax error (PostgreSQL's answer while the stack suffices) */
    assert_string_equal(scalar("SELECT json_array_length((repeat('[', 2000) || "
                               "repeat(']', 2000))::json)"),
                        "1");
    expect_error("SELECT repeat('[', 10000)::json", "22P02",
                 "invalid input syntax for type json");
    /* far too deep for any limit: once the native stack trap killed the
     * session */
    expect_error("SELECT repeat('[', 20000000)::json", "54001", STACK_DEPTH);
    expect_error("SELECT repeat('[', 20000000)::jsonb", "54001", STACK_DEPTH);
    expect_error("SELECT ('{' || repeat('\"a\":{', 1000000) || '}')::jsonb", "54001",
                 STACK_DEPTH);

    /* a smaller limit is the limit, also in the call that sets it */
    expect_error("DO $$BEGIN SET max_stack_depth = '100kB'; "
                 "PERFORM repeat('[', 10000)::json; END$$",
                 "54001", STACK_DEPTH);
    ok_exec("RESET max_stack_depth");
    ok_exec("SET max_stack_depth = '100kB'");
    expect_error("SELECT repeat('[', 10000)::json", "54001", STACK_DEPTH);
    expect_error("SELECT repeat('[', 10000)::jsonb", "54001", STACK_DEPTH);
    expect_error("SELECT (repeat('[', 2000) || repeat(']', 2000))::json", "54001",
                 STACK_DEPTH);
    /* with PostgreSQL's hint naming the setting */
    pglite_result *r = NULL;
    assert_int_equal(pglite_query(g_db, "SELECT repeat('[', 10000)::json", 0, NULL, NULL,
                                  NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    assert_non_null(pglite_result_error(r)->hint);
    assert_non_null(strstr(pglite_result_error(r)->hint, "\"max_stack_depth\" (currently 100kB)"));
    pglite_result_free(r);
    /* shallow JSON still works */
    assert_string_equal(scalar("SELECT '[[[1]]]'::json -> 0 -> 0 ->> 0"), "1");
    ok_exec("RESET max_stack_depth");
    assert_string_equal(scalar("SELECT json_array_length((repeat('[', 2000) || "
                               "repeat(']', 2000))::json)"),
                        "1");
}

static void test_stack_depth_jsonpath_regex(void **state) {
    (void)state;
    take_back_signals();
    /* jsonpath: nested arithmetic, flattened recursively */
    const char *deep_path =
        "SELECT length((repeat('1 + (', 1000) || '1' || repeat(')', 1000))::jsonpath::text)";
    assert_string_equal(scalar(deep_path), "6001");
    ok_exec("SET max_stack_depth = '100kB'");
    expect_error(deep_path, "54001", STACK_DEPTH);
    ok_exec("RESET max_stack_depth");
    assert_string_equal(scalar(deep_path), "6001");

    /* Regular expressions: the regex library asks stack_is_too_deep() and
     * reports REG_ETOOBIG, as in PostgreSQL. Each pattern is new: compiled
     * ones are cached. */
    const char *deep_re = "SELECT '%c' ~ (repeat('(', 3000) || '%c' || repeat(')', 3000))";
    char sql[128];
    snprintf(sql, sizeof sql, deep_re, 'x', 'x');
    assert_string_equal(scalar(sql), "t");
    ok_exec("SET max_stack_depth = '100kB'");
    snprintf(sql, sizeof sql, deep_re, 'y', 'y');
    expect_error(sql, "2201B", "invalid regular expression: regular expression is too complex");
    ok_exec("RESET max_stack_depth");
    snprintf(sql, sizeof sql, deep_re, 'z', 'z');
    assert_string_equal(scalar(sql), "t");
}

static void test_stack_depth_caught(void **state) {
    (void)state;
    take_back_signals();
    /* A PL/pgSQL handler catches 54001, and the function goes on at full
     * depth afterwards (the limit is back once the error has unwound) */
    ok_exec("CREATE FUNCTION deep_json_caught() RETURNS text LANGUAGE plpgsql AS $$\n"
            "DECLARE msg text;\n"
            "BEGIN\n"
            "  BEGIN\n"
            "    PERFORM repeat('[', 20000000)::json;\n"
            "  EXCEPTION WHEN statement_too_complex THEN\n"
            "    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;\n"
            "  END;\n"
            "  RETURN msg || ' / ' || json_array_length((repeat('[', 2000) || "
            "repeat(']', 2000))::json);\n"
            "END $$");
    assert_string_equal(scalar("SELECT deep_json_caught()"), STACK_DEPTH " / 1");
    /* SQL-level recursion is still PostgreSQL's own check */
    ok_exec("CREATE FUNCTION infinite_recurse() RETURNS int AS "
            "'SELECT infinite_recurse()' LANGUAGE sql");
    expect_error("SELECT infinite_recurse()", "54001", STACK_DEPTH);
    /* and many errors in a row leave the session sound */
    for (int i = 0; i < 20; i++)
        expect_error("SELECT repeat('[', 1000000)::jsonb", "54001", STACK_DEPTH);
    assert_string_equal(scalar("SELECT sum(x) FROM generate_series(1, 100) x"), "5050");
}

/* ---- parallel query ---------------------------------------------------------- */

static void test_parallel_defaults(void **state) {
    (void)state;
    assert_string_equal(scalar("SHOW max_parallel_workers_per_gather"), "2");
    assert_string_equal(scalar("SHOW max_parallel_workers"), "8");
    assert_string_equal(scalar("SHOW max_parallel_maintenance_workers"), "2");
    /* what the start sets, and only that (each explained in docs/runtime.md) */
    assert_string_equal(scalar("SELECT string_agg(name || '=' || setting, ',' ORDER BY name) "
                               "FROM pg_settings WHERE source = 'command line'"),
                        "dynamic_shared_memory_type=mmap,io_method=sync,max_worker_processes=0");

    ok_exec("CREATE TABLE big AS SELECT g AS x FROM generate_series(1, 100000) g");
    ok_exec("ANALYZE big");
    ok_exec("SET parallel_setup_cost = 0");
    ok_exec("SET parallel_tuple_cost = 0");
    ok_exec("SET min_parallel_table_scan_size = 0");
    pglite_result *r = NULL;
    const char *explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) "
                          "SELECT count(*) FROM big";
    if (pglite_query(g_db, explain, 0, NULL, NULL, NULL, NULL, 0, &r) != PGLITE_OK)
        fail_msg("%s: %s", explain, pglite_errmsg(g_db));
    char plan[4096] = "";
    for (int i = 0; i < pglite_result_ntuples(r); i++) {
        strncat(plan, pglite_result_getvalue(r, i, 0), sizeof plan - strlen(plan) - 2);
        strcat(plan, "\n");
    }
    pglite_result_free(r);
    if (!strstr(plan, "Gather") || !strstr(plan, "Workers Planned: 2") ||
        !strstr(plan, "Workers Launched: 0") || !strstr(plan, "Parallel Seq Scan on big"))
        fail_msg("not a parallel plan run by the leader:\n%s", plan);
    assert_string_equal(scalar("SELECT count(*) FROM big"), "100000");
    assert_string_equal(scalar("SELECT sum(x) FROM big WHERE x % 7 = 0"), "714264285");
    /* a parallel index build is done by the leader too */
    ok_exec("CREATE INDEX big_x ON big (x)");
    assert_string_equal(scalar("SELECT count(*) FROM big WHERE x BETWEEN 10 AND 19"), "10");
    ok_exec("RESET ALL");
    assert_string_equal(scalar("SHOW max_parallel_workers_per_gather"), "2");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_catalogs),
        cmocka_unit_test(test_stack_depth_json),
        cmocka_unit_test(test_stack_depth_jsonpath_regex),
        cmocka_unit_test(test_stack_depth_caught),
        cmocka_unit_test(test_parallel_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
