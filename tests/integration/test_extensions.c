/* Side modules through PostgreSQL's own dlopen: PL/pgSQL, every bundled
 * extension with one characteristic query each, and LOAD of a library
 * that is not there. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "../support/fixture.h"
#include "abi/dylink.h"

static char *g_data;

static int setup(void **state) {
    (void)state;
    g_data = fx_new_cluster("ext");
    return g_data ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fx_rmtree(g_data);
    free(g_data);
    return 0;
}

/* Run sql in single-user mode; return stdout, and stderr in *err. */
static char *run_sql(const char *sql, char **err, engine_result *r) {
    cluster_tree t;
    char msg[512];
    if (cluster_tree_open(&t, g_data, msg, sizeof msg) != 0)
        return NULL;
    char in[4096];
    snprintf(in, sizeof in, "%s/in.sql", t.scratch);
    fx_write_file(in, sql, strlen(sql));
    const char *argv[] = {"/pglite/bin/postgres", "--single", "-O", "-j", "-D",
                          "/pglite/data", "-c", "log_checkpoints=false", "template1"};
    char *out = NULL;
    fx_run_postgres(&t, 9, argv, in, &out, err, r);
    cluster_tree_close(&t);
    return out;
}

static void test_plpgsql(void **state) {
    (void)state;
    const char *sql =
        ""
        "CREATE FUNCTION sum_to(n int) RETURNS int LANGUAGE plpgsql AS $$\n"
        "DECLARE s int := 0;\n"
        "BEGIN\n"
        "  FOR i IN 1..n LOOP s := s + i; END LOOP;\n"
        "  BEGIN\n"
        "    PERFORM 1 / 0;\n"
        "  EXCEPTION WHEN division_by_zero THEN s := s + 1000000;\n"
        "  END;\n"
        "  RETURN s;\n"
        "END $$;\n\n"
        "SELECT sum_to(10) AS r;\n\n"
        "SELECT to_tsvector('english', 'The quick brown foxes') AS ts;\n\n"
        "SELECT convert_to('caf\xc3\xa9', 'LATIN1') AS latin1,\n"
        "       convert_from(convert_to('caf\xc3\xa9', 'LATIN1'), 'LATIN1') AS back;\n\n"
        "LOAD 'nonexistent';\n\n"
        "SELECT convert_to('\xe6\x97\xa5\xe6\x9c\xac abc', 'SJIS') AS sjis;\n\n"
        "SELECT 'alive' AS after;\n\n";
    char *err = NULL;
    engine_result r;
    char *out = run_sql(sql, &err, &r);
    assert_non_null(out);
    if (!strstr(out, "r = \"1000055\""))
        print_error("stdout:\n%s\nstderr:\n%s\n", out, err);
    assert_non_null(strstr(out, "r = \"1000055\""));
    /* Snowball stemming (dict_snowball.so) and an encoding conversion
     * (utf8_and_iso8859_1.so). */
    assert_non_null(strstr(out, "ts = \"'brown':3 'fox':4 'quick':2\""));
    assert_non_null(strstr(out, "latin1 = \"\\x636166e9\""));
    assert_non_null(strstr(out, "back = \"caf\xc3\xa9\""));
    /* LOAD of a library that is not bundled: PostgreSQL's normal ERROR. */
    assert_non_null(strstr(err, "could not access file \"nonexistent\""));
    /* A conversion through helpers pglite.wasm lacks (UtfToLocal, given by
     * the host over utf8_and_sjis.so's own map); test_encodings has the
     * rest. */
    assert_non_null(strstr(out, "sjis = \"\\x93fa967b20616263\""));
    assert_non_null(strstr(out, "after = \"alive\""));
    assert_int_equal(r.status, ENGINE_EXITED);
    free(out);
    free(err);
}

typedef struct {
    const char *ext;   /* extension(s) to create, comma separated */
    const char *query; /* returns one column r */
    const char *want;  /* the value of r; a query with an EXPLAIN must also
                        * show the plan line given after a '|' */
} ext_case;

static const ext_case cases[] = {
    {"amcheck", "SELECT 1 AS r FROM (SELECT bt_index_check('pg_class_oid_index'::regclass)) s", "1"},
    {"autoinc", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'autoinc'", "1"},
    {"bloom", "CREATE TABLE tb (a int);\n\nCREATE INDEX ON tb USING bloom (a);\n\n"
              "SELECT count(*) AS r FROM pg_indexes WHERE tablename = 'tb'", "1"},
    {"btree_gin", "CREATE TABLE tgin (a int);\n\nCREATE INDEX ON tgin USING gin (a);\n\n"
                  "SELECT count(*) AS r FROM pg_indexes WHERE tablename = 'tgin'", "1"},
    {"btree_gist", "CREATE TABLE tgist (a int);\n\nCREATE INDEX ON tgist USING gist (a);\n\n"
                   "SELECT count(*) AS r FROM pg_indexes WHERE tablename = 'tgist'", "1"},
    {"citext", "SELECT 'ABC'::citext = 'abc'::citext AS r", "t"},
    {"cube", "SELECT cube_dim('(1,2,3)'::cube) AS r", "3"},
    {"dict_int", "SELECT ts_lexize('intdict', '12345678')::text AS r", "{123456}"},
    {"dict_xsyn", "ALTER TEXT SEARCH DICTIONARY xsyn (RULES = 'xsyn_sample', KEEPORIG = false);\n\n"
                  "SELECT ts_lexize('xsyn', 'supernova')::text AS r", "{sn,sne,1987a}"},
    {"cube,earthdistance",
     "SELECT round(earth_distance(ll_to_earth(0, 0), ll_to_earth(0, 1)))::int AS r", "111320"},
    {"file_fdw", "CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;\n\n"
                 "SELECT count(*) AS r FROM pg_foreign_server", "1"},
    {"fuzzystrmatch", "SELECT levenshtein('kitten', 'sitting') AS r", "3"},
    {"hstore", "SELECT ('a=>1'::hstore) -> 'a' AS r", "1"},
    {"insert_username", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'insert_username'", "1"},
    {"intarray", "SELECT icount('{1,2,3}'::int[]) AS r", "3"},
    {"isn", "SELECT is_valid('978-0-306-40615-7'::isbn13) AS r", "t"},
    {"lo", "SELECT count(*) AS r FROM pg_type WHERE typname = 'lo'", "1"},
    {"ltree", "SELECT nlevel('a.b'::ltree) AS r", "2"},
    {"moddatetime", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'moddatetime'", "1"},
    {"pageinspect", "SELECT (page_header(get_raw_page('pg_class', 0))).pagesize AS r", "8192"},
    {"pg_buffercache", "SELECT count(*) > 0 AS r FROM pg_buffercache", "t"},
    {"pg_freespacemap", "SELECT count(*) >= 0 AS r FROM pg_freespace('pg_class')", "t"},
    {"pg_logicalinspect",
     "SELECT count(*) AS r FROM pg_proc WHERE proname = 'pg_get_logical_snapshot_meta'", "1"},
    {"pg_stat_statements",
     "SELECT count(*) AS r FROM pg_extension WHERE extname = 'pg_stat_statements'", "1"},
    {"pg_surgery", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'heap_force_kill'", "1"},
    {"pg_trgm", "SELECT similarity('word', 'two words') AS r", "0.36363637"},
    {"pg_visibility", "SELECT count(*) > 0 AS r FROM pg_visibility_map('pg_class')", "t"},
    {"pg_walinspect",
     "SELECT count(*) AS r FROM pg_proc WHERE proname = 'pg_get_wal_records_info'", "1"},
    {"pgcrypto", "SELECT encode(digest('abc', 'sha256'), 'hex') AS r",
     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"refint", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'check_primary_key'", "1"},
    {"seg", "SELECT seg_size('1.5 .. 2.5'::seg) AS r", "1"},
    {"tablefunc", "SELECT count(*) AS r FROM normal_rand(10, 5, 3)", "10"},
    {"tcn", "SELECT count(*) AS r FROM pg_proc WHERE proname = 'triggered_change_notification'", "1"},
    {"tsm_system_rows", "SELECT count(*) AS r FROM pg_class TABLESAMPLE system_rows(3)", "3"},
    {"tsm_system_time", "SELECT count(*) >= 0 AS r FROM pg_class TABLESAMPLE system_time(1000)", "t"},
    {"unaccent", "SELECT unaccent('H\xc3\xb4tel') AS r", "Hotel"},
    {"uuid-ossp", "SELECT length(uuid_generate_v4()::text) AS r", "36"},
    {"vector", "SELECT '[1,2,3]'::vector <-> '[1,2,4]' AS r", "1"},
    /* An HNSW index used by ORDER BY ... LIMIT. */
    {"vector",
     "CREATE TABLE items (id int PRIMARY KEY, v vector(3));\n\n"
     "INSERT INTO items SELECT g, ARRAY[g, g * 2, g % 7]::vector FROM generate_series(1, 2000) g;\n\n"
     "CREATE INDEX items_hnsw ON items USING hnsw (v vector_l2_ops);\n\n"
     "SET enable_seqscan = off;\n\n"
     "SELECT string_agg(id::text, ',' ORDER BY v <-> '[100,200,2.1]') AS r FROM "
     "(SELECT id, v FROM items ORDER BY v <-> '[100,200,2.1]' LIMIT 3) s;\n\n"
     "EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> '[100,200,2.1]' LIMIT 3",
     "100,101,99|Index Scan using items_hnsw on items"},
};

static void test_every_extension(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ext_case *c = &cases[i];
        char sql[8192];
        size_t n = 0;
        char exts[256];
        snprintf(exts, sizeof exts, "%s", c->ext);
        for (char *save, *e = strtok_r(exts, ",", &save); e; e = strtok_r(NULL, ",", &save))
            n += (size_t)snprintf(sql + n, sizeof sql - n,
                                  "CREATE EXTENSION IF NOT EXISTS \"%s\";\n\n", e);
        snprintf(sql + n, sizeof sql - n, "%s;\n\n", c->query);
        char *err = NULL;
        engine_result r;
        char *out = run_sql(sql, &err, &r);
        char want[512];
        const char *plan = strchr(c->want, '|');
        snprintf(want, sizeof want, "r = \"%.*s\"",
                 plan ? (int)(plan - c->want) : (int)strlen(c->want), c->want);
        if (!out || !strstr(out, want) || (plan && !strstr(out, plan + 1)) ||
            (err && strstr(err, "ERROR"))) {
            print_error("extension %s: want %s\nstatus %d %s\nstdout:\n%s\nstderr:\n%s\n",
                        c->ext, want, r.status, r.message, out ? out : "", err ? err : "");
            failures++;
        }
        free(out);
        free(err);
    }
    assert_int_equal(failures, 0);
}

/* LOAD of every library in the runtime tree's lib/postgresql, in one
 * session: each is a compiled side module (the registry has them all), and
 * each loads, except libpqwalreceiver (streaming replication: it needs
 * PrimaryConnInfo, which pglite.wasm does not have), whose failure is an
 * ERROR that leaves the other loads of the session unaffected. */
static void test_every_library_loads(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pglite/lib/postgresql", cluster_runtime_tree());
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    size_t cap = 1 << 16, n = 0, count = 0;
    char *sql = malloc(cap);
    assert_non_null(sql);
    for (struct dirent *de; (de = readdir(dp));) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        n += (size_t)snprintf(sql + n, cap - n, "LOAD '%.*s';\n\n", (int)(len - 3), de->d_name);
        assert_true(n < cap);
        count++;
    }
    closedir(dp);
    snprintf(sql + n, cap - n, "SELECT 'alive' AS after;\n\n");
    assert_int_equal(count, abi_side_module_count);
    assert_int_equal(count, 69);

    char *err = NULL;
    engine_result r;
    char *out = run_sql(sql, &err, &r);
    free(sql);
    assert_non_null(out);
    assert_non_null(err);
    int errors = 0;
    for (const char *p = err; (p = strstr(p, "ERROR:")); p++)
        errors++;
    if (errors != 1 || !strstr(err, "libpqwalreceiver.so") ||
        !strstr(err, "undefined symbol: PrimaryConnInfo") || !strstr(out, "after = \"alive\""))
        print_error("stdout:\n%s\nstderr:\n%s\n", out, err);
    assert_int_equal(errors, 1);
    assert_non_null(strstr(err, "undefined symbol: PrimaryConnInfo"));
    assert_non_null(strstr(out, "after = \"alive\""));
    free(out);
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plpgsql),
        cmocka_unit_test(test_every_extension),
        cmocka_unit_test(test_every_library_loads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
