/* The embedded backend through the wire protocol: queries, errors and
 * recovery, statement_timeout, cancellation from another thread,
 * persistence across processes, and crash safety under SIGKILL. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "../support/fixture.h"
#include "backend/backend.h"
#include "wire/wire.h"

static char *new_cluster(void) { return fx_new_cluster("db"); }

static backend *start(const char *dir, const char *const *gucs) {
    backend_options o = {.data_dir = dir, .gucs = gucs};
    backend *b = NULL;
    char err[2048];
    if (backend_start(&o, &b, err, sizeof err) != 0)
        print_error("backend_start: %s\n", err);
    return b;
}

/* Run sql; the first column of the last DataRow into val (or ""), the
 * SQLSTATE of an error into state (or ""). Returns -1 if the backend died. */
static int sql(backend *b, const char *q, char *val, size_t vn, char *state) {
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, q);
    const uint8_t *out;
    size_t outlen;
    char err[512];
    int rc = backend_exchange(b, w.data, w.len, &out, &outlen, err, sizeof err);
    wire_buf_free(&w);
    if (val)
        val[0] = 0;
    if (state)
        state[0] = 0;
    if (rc != 0)
        return -1;
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, out, outlen);
    bool ready = false;
    while (wire_next(&r, &m) == 1) {
        if (m.type == 'D' && val && m.len >= 6) {
            uint16_t ncol = (uint16_t)(m.body[0] << 8 | m.body[1]);
            int32_t l = (int32_t)((uint32_t)m.body[2] << 24 | (uint32_t)m.body[3] << 16 |
                                  (uint32_t)m.body[4] << 8 | m.body[5]);
            if (ncol >= 1 && l >= 0 && (size_t)l < vn && (uint32_t)l + 6 <= m.len) {
                memcpy(val, m.body + 6, (size_t)l);
                val[l] = 0;
            }
        } else if (m.type == 'E' && state) {
            wire_error_field(&m, 'C', state, 6);
        } else if (m.type == 'Z') {
            ready = true;
        }
    }
    assert_true(ready); /* every cycle ends with ReadyForQuery */
    return 0;
}

static void test_queries_and_errors(void **state) {
    (void)state;
    char *dir = new_cluster();
    assert_non_null(dir);
    backend *b = start(dir, NULL);
    assert_non_null(b);
    size_t n;
    const uint8_t *hello = backend_startup_reply(b, &n);
    assert_true(n > 0 && hello[0] == 'R'); /* AuthenticationOk first */
    char v[256], st[8];
    assert_int_equal(sql(b, "SELECT 40 + 2", v, sizeof v, st), 0);
    assert_string_equal(v, "42");
    assert_int_equal(sql(b, "SELECT 1/0", v, sizeof v, st), 0);
    assert_string_equal(st, "22012");
    assert_int_equal(sql(b, "SELEC broken", v, sizeof v, st), 0);
    assert_string_equal(st, "42601");
    assert_int_equal(sql(b, "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)", v,
                         sizeof v, st), 0);
    assert_string_equal(st, "");
    assert_int_equal(sql(b, "INSERT INTO t VALUES (1)", v, sizeof v, st), 0);
    assert_string_equal(st, "23505");
    /* After errors the session goes on, also inside a failed transaction. */
    sql(b, "BEGIN", v, sizeof v, st);
    sql(b, "SELECT nope", v, sizeof v, st);
    assert_string_equal(st, "42703");
    sql(b, "SELECT 1", v, sizeof v, st);
    assert_string_equal(st, "25P02");
    sql(b, "ROLLBACK", v, sizeof v, st);
    assert_int_equal(sql(b, "SELECT count(*) FROM t", v, sizeof v, st), 0);
    assert_string_equal(v, "1");
    assert_int_equal(sql(b, "SHOW fsync", v, sizeof v, st), 0);
    assert_string_equal(v, "on"); /* durable by default */
    backend_close(b);
    fx_rmtree(dir);
    free(dir);
}

static void test_statement_timeout(void **state) {
    (void)state;
    char *dir = new_cluster();
    backend *b = start(dir, NULL);
    assert_non_null(b);
    char v[256], st[8];
    sql(b, "SET statement_timeout = '100ms'", v, sizeof v, st);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(sql(b, "SELECT pg_sleep(5)", v, sizeof v, st), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(st, "57014");
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 4.0);
    assert_int_equal(sql(b, "SELECT 'next'", v, sizeof v, st), 0);
    assert_string_equal(v, "next");
    assert_string_equal(st, "");
    backend_close(b);
    fx_rmtree(dir);
    free(dir);
}

static void *cancel_later(void *arg) {
    struct timespec d = {0, 300 * 1000 * 1000};
    nanosleep(&d, NULL);
    backend_cancel(arg);
    return NULL;
}

static void test_cancel(void **state) {
    (void)state;
    char *dir = new_cluster();
    backend *b = start(dir, NULL);
    assert_non_null(b);
    char v[256], st[8];
    /* sleeping, and busy computing */
    const char *qs[] = {"SELECT pg_sleep(10)",
                        "SELECT count(*) FROM generate_series(1, 2000000000)"};
    for (int i = 0; i < 2; i++) {
        pthread_t th;
        pthread_create(&th, NULL, cancel_later, b);
        assert_int_equal(sql(b, qs[i], v, sizeof v, st), 0);
        pthread_join(th, NULL);
        assert_string_equal(st, "57014");
        assert_int_equal(sql(b, "SELECT 7", v, sizeof v, st), 0);
        assert_string_equal(v, "7");
    }
    backend_close(b);
    fx_rmtree(dir);
    free(dir);
}

/* Persistent: rows written by one process are there for the next. */
static void test_persistence(void **state) {
    (void)state;
    char *dir = new_cluster();
    pid_t pid = fork();
    if (pid == 0) {
        backend *b = start(dir, NULL);
        char v[64], st[8];
        if (!b || sql(b, "CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 500) g",
                      v, sizeof v, st) != 0 || st[0])
            _exit(1);
        backend_close(b);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Closing shut PostgreSQL down cleanly: pg_control says "shut down"
     * (DBState 1 at offset 16), so the next open needs no recovery. */
    char ctl[4096];
    snprintf(ctl, sizeof ctl, "%s/global/pg_control", dir);
    FILE *f = fopen(ctl, "rb");
    assert_non_null(f);
    uint32_t dbstate = 0;
    assert_int_equal(fseek(f, 16, SEEK_SET), 0);
    assert_int_equal(fread(&dbstate, 4, 1, f), 1);
    fclose(f);
    assert_int_equal(dbstate, 1);
    backend *b = start(dir, NULL);
    assert_non_null(b);
    char v[64], st[8];
    assert_int_equal(sql(b, "SELECT sum(id) FROM kept", v, sizeof v, st), 0);
    assert_string_equal(v, "125250");
    backend_close(b);
    fx_rmtree(dir);
    free(dir);
}

/* A backend on dir opened the way the library opens it (cluster_open: the
 * directory's lock, and a postmaster.pid left by a killed process removed;
 * a kill can land while PostgreSQL is still writing it, leaving it empty). */
static backend *start_locked(const char *dir, cluster **c) {
    cluster_options co = {.path = dir};
    char err[2048];
    if (cluster_open(&co, c, err, sizeof err) != 0) {
        print_error("cluster_open: %s\n", err);
        return NULL;
    }
    backend *b = start(cluster_data_dir(*c), NULL);
    if (!b) {
        cluster_close(*c);
        *c = NULL;
    }
    return b;
}

/* Crash: a child commits transactions and reports each commit; it is
 * SIGKILLed mid-stream, even while starting; every reported commit
 * survives recovery. */
static void test_crash_recovery(void **state) {
    (void)state;
    char *dir = new_cluster();
    backend *b = start(dir, NULL);
    char v[64], st[8];
    sql(b, "CREATE TABLE commits (n int primary key, pad text)", v, sizeof v, st);
    backend_close(b);
    int next = 1;
    for (int cycle = 0; cycle < 20; cycle++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            cluster *cl;
            backend *c = start_locked(dir, &cl);
            if (!c)
                _exit(2);
            for (int n = next;; n++) {
                char q[256];
                snprintf(q, sizeof q,
                         "INSERT INTO commits VALUES (%d, repeat('x', 2000))", n);
                if (sql(c, q, v, sizeof v, st) != 0 || st[0])
                    _exit(3);
                if (write(p[1], &n, sizeof n) != (ssize_t)sizeof n) /* reported */
                    _exit(4);
            }
        }
        close(p[1]);
        /* let it commit a while, then kill it wherever it is */
        struct timespec d = {0, (50 + 17 * cycle % 150) * 1000 * 1000};
        nanosleep(&d, NULL);
        int last = next - 1, n;
        kill(pid, SIGKILL);
        while (read(p[0], &n, sizeof n) == (ssize_t)sizeof n)
            last = n;
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        cluster *cl;
        b = start_locked(dir, &cl);
        assert_non_null(b);
        char q[128];
        snprintf(q, sizeof q, "SELECT count(*) FROM commits WHERE n <= %d", last);
        assert_int_equal(sql(b, q, v, sizeof v, st), 0);
        assert_int_equal(atoi(v), last);
        sql(b, "SELECT coalesce(max(n), 0) FROM commits", v, sizeof v, st);
        next = atoi(v) + 1;
        backend_close(b);
        cluster_close(cl);
    }
    assert_true(next > 20);
    fx_rmtree(dir);
    free(dir);
}

/* Two temporary databases in one process are isolated, and their
 * directories are gone after close. */
static void test_temporary_isolated(void **state) {
    (void)state;
    cluster *c1 = NULL, *c2 = NULL;
    char err[2048];
    assert_int_equal(cluster_open(NULL, &c1, err, sizeof err), 0);
    assert_int_equal(cluster_open(NULL, &c2, err, sizeof err), 0);
    char d1[4096], d2[4096];
    snprintf(d1, sizeof d1, "%s", cluster_data_dir(c1));
    snprintf(d2, sizeof d2, "%s", cluster_data_dir(c2));
    assert_string_not_equal(d1, d2);
    backend *b1 = start(d1, NULL), *b2 = start(d2, NULL);
    assert_non_null(b1);
    assert_non_null(b2);
    char v[64], st[8];
    assert_int_equal(sql(b1, "CREATE TABLE only_here (x int); INSERT INTO only_here VALUES (1)",
                         v, sizeof v, st), 0);
    assert_string_equal(st, "");
    assert_int_equal(sql(b2, "SELECT count(*) FROM only_here", v, sizeof v, st), 0);
    assert_string_equal(st, "42P01");
    assert_int_equal(sql(b1, "SELECT count(*) FROM only_here", v, sizeof v, st), 0);
    assert_string_equal(v, "1");
    backend_close(b1);
    backend_close(b2);
    cluster_close(c1);
    cluster_close(c2);
    assert_int_equal(access(d1, F_OK), -1);
    assert_int_equal(access(d2, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temporary_isolated),
        cmocka_unit_test(test_queries_and_errors),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_crash_recovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
