/* The compiled runtime in-process: postgres --version, single-user SQL
 * against a data directory (with an ERROR the session recovers from and a
 * recursion that must end in PostgreSQL's own stack-depth error), and the
 * guarantee that guest traps and exits come back as results. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../support/fixture.h"
#include "engine/engine_internal.h"
#include "runtime_version.h"

static void test_version(void **state) {
    (void)state;
    cluster_tree g;
    char msg[512];
    assert_int_equal(cluster_tree_open(&g, NULL, msg, sizeof msg), 0);
    const char *argv[] = {"/pglite/bin/postgres", "--version"};
    engine_result r;
    char *out = NULL, *err = NULL;
    fx_run_postgres(&g, 2, argv, NULL, &out, &err, &r);
    if (r.status != ENGINE_EXITED || r.exit_code != 0)
        print_error("status %d: %s\nstderr: %s\n", r.status, r.message, err ? err : "");
    assert_int_equal(r.status, ENGINE_EXITED);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(out);
    /* the version runtime.lock pins (runtime_version.h reads it from pglite.wasm) */
    assert_string_equal(out, "postgres (PostgreSQL) " PGLITE_PG_VERSION "\n");
    free(out);
    free(err);
    cluster_tree_close(&g);
}

static char *single_user(cluster_tree *g, const char *sql, char **err, engine_result *r) {
    char in[4096];
    snprintf(in, sizeof in, "%s/stdin.sql", g->scratch);
    if (fx_write_file(in, sql, strlen(sql)) != 0)
        return NULL;
    const char *argv[] = {"/pglite/bin/postgres", "--single", "-O", "-j", "-D",
                          "/pglite/data", "-c", "exit_on_error=false",
                          "-c", "log_checkpoints=false", "template1"};
    char *out = NULL;
    fx_run_postgres(g, 11, argv, in, &out, err, r);
    return out;
}

static void test_single_user(void **state) {
    (void)state;
    char *data = fx_mkdtemp("data");
    assert_non_null(data);
    assert_int_equal(chmod(data, 0700), 0);
    char msg[8192];
    int b = cluster_bootstrap(data, msg, sizeof msg);
    if (b != 0)
        print_error("%s\n", msg);
    assert_int_equal(b, 0);
    cluster_tree g;
    assert_int_equal(cluster_tree_open(&g, data, msg, sizeof msg), 0);
    char *err = NULL;

    /* -j: statements end at a semicolon followed by an empty line. */
    const char *sql =
        "CREATE TABLE t (id int primary key, name text);\n\n"
        "INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 1000) g;\n\n"
        "SELECT 1/0;\n\n"
        "SELECT count(*) AS n, sum(id) AS s FROM t;\n\n"
        "INSERT INTO t VALUES (1, 'dup');\n\n"
        "SELECT name FROM t WHERE id = 777;\n\n";
    engine_result r;
    char *out = single_user(&g, sql, &err, &r);
    assert_non_null(out);
    assert_non_null(err);
    if (!strstr(out, "n = \"1000\""))
        print_error("stdout:\n%s\nstderr:\n%s\n", out, err);
    /* The ERROR, and the session going on after it. */
    assert_non_null(strstr(err, "division by zero"));
    assert_non_null(strstr(out, "n = \"1000\""));
    assert_non_null(strstr(out, "s = \"500500\""));
    assert_non_null(strstr(err, "duplicate key value violates unique constraint"));
    assert_non_null(strstr(out, "name = \"n777\""));
    assert_int_equal(r.status, ENGINE_EXITED);
    assert_int_equal(r.exit_code, 0);
    free(out);
    free(err);

    /* The data persists into a new instance (a new "process" of the guest). */
    out = single_user(&g, "SELECT count(*) AS again FROM t;\n\n", &err, &r);
    assert_non_null(out);
    assert_non_null(strstr(out, "again = \"1000\""));
    free(out);
    free(err);

    /* Deep recursion ends in PostgreSQL's own error, not a native stack
     * overflow. */
    out = single_user(&g,
                      "CREATE FUNCTION f(n int) RETURNS int LANGUAGE sql AS "
                      "'SELECT CASE WHEN n = 0 THEN 0 ELSE f(n - 1) + 1 END';\n\n"
                      "SELECT f(1000000);\n\n"
                      "SELECT 'alive' AS after;\n\n",
                      &err, &r);
    assert_non_null(out);
    if (!strstr(err, "stack depth limit exceeded"))
        print_error("status %d %s\nstdout:\n%s\nstderr:\n%s\n", r.status, r.message, out, err);
    assert_non_null(strstr(err, "stack depth limit exceeded"));
    assert_non_null(strstr(out, "after = \"alive\""));
    assert_int_equal(r.status, ENGINE_EXITED);
    free(out);
    free(err);

    cluster_tree_close(&g);
    fx_rmtree(data);
    free(data);
}

/* A guest abort or trap is an error value, the instance is dead afterwards,
 * and the process and other instances go on. */
static void test_traps_are_errors(void **state) {
    (void)state;
    char runtime[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    engine_mount m[] = {{"/pglite", runtime, 0}};
    engine_config cfg = {.mounts = m, .nmounts = 1, .devices = 1,
                         .env = cluster_guest_env(), .stdin_fd = -1,
                         .stdout_fd = -1, .stderr_fd = -1};
    char msg[256];
    engine *a = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    engine *b = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    assert_non_null(a);
    assert_non_null(b);

    /* free() of a wild pointer: the guest's allocator aborts or traps. */
    uint32_t wild = 0x7ffffff0u;
    engine_result r;
    engine_status s = engine_call(a, "free", &wild, 1, &r);
    assert_true(s == ENGINE_TRAPPED || s == ENGINE_ABORTED);
    assert_true(strlen(r.message) > 0);
    assert_int_equal(engine_call(a, "malloc", (uint32_t[]){16}, 1, &r), ENGINE_DEAD);

    /* A bad call is refused without touching the guest. */
    assert_int_equal(engine_call(b, "no_such_export", NULL, 0, &r), ENGINE_ERROR);
    assert_int_equal(engine_call(b, "malloc", NULL, 0, &r), ENGINE_ERROR);

    /* The other instance still works. */
    assert_int_equal(engine_call(b, "malloc", (uint32_t[]){64}, 1, &r), ENGINE_OK);
    assert_true(r.value != 0);
    uint32_t p = r.value;
    assert_int_equal(engine_write(b, p, "hello", 6), 0);
    char back[6];
    assert_int_equal(engine_read(b, p, back, 6), 0);
    assert_string_equal(back, "hello");
    assert_int_equal(engine_write(b, 0xfffffff0u, "x", 32), -1);

    /* exit() inside the guest is control flow, not the end of the process. */
    uint32_t code = 7;
    assert_int_equal(engine_call(b, "pgl_exit", &code, 1, &r), ENGINE_EXITED);
    assert_int_equal(r.exit_code, 7);
    assert_int_equal(engine_call(b, "malloc", (uint32_t[]){64}, 1, &r), ENGINE_OK);

    engine_free(a);
    engine_free(b);
}

/* The host's CRC-32C, which pglite.wasm's own (build-module.py
 * --host-crc32c) calls: the check value of the Castagnoli CRC, the same
 * result as a bit-at-a-time reference at every length and alignment and
 * when chained, the guest's bytes through the call the generated code
 * makes, a trap for a range beyond the memory, and PostgreSQL 18's
 * crc32c() through SQL. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n) {
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (crc & 1 ? 0x82F63B78u : 0);
    }
    return crc;
}

typedef struct crc_call {
    uint32_t data, len, got;
} crc_call;

static void crc_in_guest(engine *e, void *arg) {
    crc_call *c = arg;
    c->got = pglite_crc32c(engine_memory(e), 0xFFFFFFFFu, c->data, c->len);
}

static void test_host_crc32c(void **state) {
    (void)state;
    assert_int_equal(pglite_crc32c_host(0xFFFFFFFFu, "123456789", 9) ^ 0xFFFFFFFFu, 0xE3069283u);
    static uint8_t buf[600];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 3));
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= 520; n += n < 40 ? 1 : 37) {
            assert_int_equal(pglite_crc32c_host(0x12345678u, buf + off, n),
                             crc_ref(0x12345678u, buf + off, n));
            uint32_t half = pglite_crc32c_host(0xFFFFFFFFu, buf + off, n / 2);
            assert_int_equal(pglite_crc32c_host(half, buf + off + n / 2, n - n / 2),
                             crc_ref(0xFFFFFFFFu, buf + off, n));
        }

    char runtime[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    engine_mount m[] = {{"/pglite", runtime, 0}};
    engine_config cfg = {.mounts = m, .nmounts = 1, .devices = 1, .env = cluster_guest_env(),
                         .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    char msg[256];
    engine *e = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    assert_non_null(e);
    engine_result r;
    assert_int_equal(engine_call(e, "malloc", (uint32_t[]){sizeof buf}, 1, &r), ENGINE_OK);
    crc_call c = {.data = r.value + 3, .len = 500};
    assert_int_equal(engine_write(e, r.value, buf, sizeof buf), 0);
    assert_int_equal(engine_run(e, crc_in_guest, &c, &r), ENGINE_OK);
    assert_int_equal(c.got, crc_ref(0xFFFFFFFFu, buf + 3, 500));
    c = (crc_call){.data = (uint32_t)engine_memory(e)->size - 4, .len = 100};
    assert_int_equal(engine_run(e, crc_in_guest, &c, &r), ENGINE_TRAPPED);
    engine_free(e);

    char *dir = fx_new_cluster("crc");
    assert_non_null(dir);
    cluster_tree g;
    assert_int_equal(cluster_tree_open(&g, dir, msg, sizeof msg), 0);
    char *err = NULL;
    char *out = single_user(&g, "SELECT crc32c('123456789'::bytea) AS c;\n\n", &err, &r);
    assert_non_null(out);
    if (!strstr(out, "c = \"3808858755\""))
        print_error("stdout:\n%s\nstderr:\n%s\n", out, err ? err : "");
    assert_non_null(strstr(out, "c = \"3808858755\""));
    free(out);
    free(err);
    cluster_tree_close(&g);
    fx_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_single_user),
        cmocka_unit_test(test_traps_are_errors),
        cmocka_unit_test(test_host_crc32c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
