/* pglite_server_*: serve an open handle's database over a Unix socket and
 * use it from libpq and from the API in turn. */
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/fixture.h"
#include "backend/backend.h"
#include "client/client.h" /* a handle's session, for the crash below */
#include "pglite.h"

static void api_ok(pglite *db, const char *sql) {
    pglite_result **rs = NULL;
    int n = 0;
    int rc = pglite_exec(db, sql, &rs, &n);
    if (rc != PGLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, pglite_errmsg(db));
    assert_int_equal(rc, PGLITE_OK);
    pglite_results_free(rs, n);
}

static char *api_value(pglite *db, const char *sql) {
    pglite_result *r = NULL;
    assert_int_equal(pglite_query(db, sql, 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_OK);
    assert_int_equal(pglite_result_ntuples(r), 1);
    char *v = strdup(pglite_result_getvalue(r, 0, 0));
    pglite_result_free(r);
    return v;
}

static char *pq_value(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s\n", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void pq_ok(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "%s: %s\n", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

static void nap(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct waiter {
    const char *uri;
    atomic_int *done;
    char *value;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    PGconn *c = PQconnectdb(w->uri);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT v FROM t WHERE id = 4");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            w->value = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    atomic_store(w->done, 1);
    return NULL;
}

struct updater {
    pglite *db;
    atomic_int done;
    int rc;
};

static void *updater_main(void *arg) {
    struct updater *u = arg;
    u->rc = pglite_exec(u->db, "UPDATE t SET v = v || '+api' WHERE id = 4", NULL, NULL);
    atomic_store(&u->done, 1);
    return NULL;
}

static void test_unix_socket_round_trip(void **state) {
    (void)state;
    pglite *db;
    assert_int_equal(pglite_open(NULL, NULL, &db), PGLITE_OK);
    api_ok(db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'from api')");

    char *dir = fx_mkdtemp("apisrv");
    assert_non_null(dir);
    pglite_server_options so;
    pglite_server_options_init(&so);
    so.unix_socket = dir;
    pglite_server *srv;
    int rc = pglite_server_start(db, &so, &srv);
    if (rc != PGLITE_OK)
        fprintf(stderr, "pglite_server_start: %s\n", pglite_errmsg(db));
    assert_int_equal(rc, PGLITE_OK);
    const char *uri = pglite_server_uri(srv);
    assert_non_null(uri);
    assert_non_null(strstr(uri, "sslmode=disable"));
    assert_int_equal(pglite_server_port(srv), -1);
    /* a second server on the same database serves too */
    pglite_server_options so2;
    pglite_server_options_init(&so2);
    so2.tcp = "127.0.0.1:0";
    pglite_server *again;
    assert_int_equal(pglite_server_start(db, &so2, &again), PGLITE_OK);
    PGconn *c2 = PQconnectdb(pglite_server_uri(again));
    assert_int_equal(PQstatus(c2), CONNECTION_OK);
    char *v2 = pq_value(c2, "SELECT v FROM t WHERE id = 1");
    assert_string_equal(v2, "from api");
    free(v2);
    PQfinish(c2);
    pglite_server_stop(again);

    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "%s: %s\n", uri, PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *v = pq_value(c, "SELECT v FROM t WHERE id = 1");
    assert_string_equal(v, "from api");
    free(v);
    pq_ok(c, "INSERT INTO t VALUES (2, 'from libpq')");
    /* left open: rolled back when the client goes */
    pq_ok(c, "BEGIN");
    pq_ok(c, "INSERT INTO t VALUES (3, 'never')");
    PQfinish(c);

    v = api_value(db, "SELECT v FROM t WHERE id = 2");
    assert_string_equal(v, "from libpq");
    free(v);
    v = api_value(db, "SELECT count(*) FROM t");
    assert_string_equal(v, "2");
    free(v);
    assert_int_equal(pglite_transaction_status(db), PGLITE_TX_IDLE);

    /* a client is a session of its own next to the program's: the
     * program's open transaction is invisible to it until the commit,
     * and a client's row lock makes the program's update wait */
    assert_int_equal(pglite_begin(db), PGLITE_OK);
    api_ok(db, "INSERT INTO t VALUES (4, 'api tx')");
    pthread_t th;
    atomic_int done = 0;
    struct waiter w = {uri, &done, NULL};
    assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&done), 1);
    assert_null(w.value); /* not committed: not there */
    assert_int_equal(pglite_commit(db), PGLITE_OK);
    done = 0;
    assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_join(th, NULL);
    assert_non_null(w.value);
    assert_string_equal(w.value, "api tx");
    free(w.value);
    c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pq_ok(c, "BEGIN");
    pq_ok(c, "UPDATE t SET v = 'client' WHERE id = 4");
    struct updater u = {db, 0, 0};
    assert_int_equal(pthread_create(&th, NULL, updater_main, &u), 0);
    nap(300);
    assert_int_equal(atomic_load(&u.done), 0); /* waits for the client's lock */
    pq_ok(c, "COMMIT");
    pthread_join(th, NULL);
    assert_int_equal(u.rc, PGLITE_OK);
    PQfinish(c);
    v = api_value(db, "SELECT v FROM t WHERE id = 4");
    assert_string_equal(v, "client+api");
    free(v);

    pglite_server_stop(srv);
    /* the socket is gone, the handle works */
    c = PQconnectdb(uri);
    assert_int_not_equal(PQstatus(c), CONNECTION_OK);
    PQfinish(c);
    v = api_value(db, "SELECT count(*) FROM t");
    assert_string_equal(v, "3");
    free(v);
    assert_int_equal(pglite_close(db), PGLITE_OK);
    fx_rmtree(dir);
    free(dir);
}

static void test_tcp_and_stop_with_client(void **state) {
    (void)state;
    pglite *db;
    assert_int_equal(pglite_open(NULL, NULL, &db), PGLITE_OK);
    pglite_server_options so;
    pglite_server_options_init(&so);
    so.tcp = "127.0.0.1:0";
    so.password = "secret";
    pglite_server *srv;
    assert_int_equal(pglite_server_start(db, &so, &srv), PGLITE_OK);
    assert_true(pglite_server_port(srv) > 0);
    char ci[512];
    snprintf(ci, sizeof ci, "%s&password=secret", pglite_server_uri(srv));
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "%s: %s\n", ci, PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pq_ok(c, "CREATE TABLE u (n int)");
    pq_ok(c, "BEGIN");
    pq_ok(c, "INSERT INTO u VALUES (1)");
    /* stop with the client inside a transaction: rolled back */
    pglite_server_stop(srv);
    PQfinish(c);
    char *v = api_value(db, "SELECT count(*) FROM u");
    assert_string_equal(v, "0");
    free(v);
    assert_int_equal(pglite_transaction_status(db), PGLITE_TX_IDLE);
    /* bad options */
    so.tcp = "127.0.0.1:99999";
    assert_int_equal(pglite_server_start(db, &so, &srv), PGLITE_MISUSE);
    assert_int_equal(pglite_close(db), PGLITE_OK);
}

/* TLS from the API: a self-signed pair made in the data directory, which
 * libpq verifies (sslmode=verify-full); the Unix socket stays plain. */
static void test_tls_self_signed(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("tls");
    char path[4096], cert[4200];
    snprintf(path, sizeof path, "%s/db", dir);
    snprintf(cert, sizeof cert, "%s/server.crt", path);
    pglite *db;
    assert_int_equal(pglite_open(path, NULL, &db), PGLITE_OK);
    pglite_server_options so;
    pglite_server_options_init(&so);
    so.tcp = "127.0.0.1:0";
    so.unix_socket = dir;
    so.ssl_self_signed = 1;
    so.ssl_cert = "x.pem"; /* with ssl_self_signed, or without ssl_key: misuse */
    pglite_server *srv;
    assert_int_equal(pglite_server_start(db, &so, &srv), PGLITE_MISUSE);
    so.ssl_cert = NULL;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(pglite_server_start(db, &so, &srv), PGLITE_OK);
        char *before = fx_slurp(cert);
        assert_non_null(before);
        char ci[8500];
        snprintf(ci, sizeof ci, "host=localhost port=%d user=postgres dbname=postgres "
                 "sslmode=verify-full sslrootcert=%s", pglite_server_port(srv), cert);
        PGconn *c = PQconnectdb(ci);
        if (PQstatus(c) != CONNECTION_OK)
            fprintf(stderr, "%s: %s\n", ci, PQerrorMessage(c));
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        assert_int_equal(PQsslInUse(c), 1);
        char *v = pq_value(c, "SELECT 'over tls'");
        assert_string_equal(v, "over tls");
        free(v);
        PQfinish(c);
        snprintf(ci, sizeof ci, "host=%s port=%d user=postgres dbname=postgres", dir,
                 pglite_server_port(srv));
        c = PQconnectdb(ci);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        assert_int_equal(PQsslInUse(c), 0);
        PQfinish(c);
        pglite_server_stop(srv);
        /* the second start uses the pair the first one made */
        char *after = fx_slurp(cert);
        assert_string_equal(before, after);
        free(before);
        free(after);
    }
    assert_int_equal(pglite_close(db), PGLITE_OK);
    fx_rmtree(dir);
    free(dir);
}

/* A crash of one session of a database the program has open: as under a
 * postmaster, every other session ends (the program's other handle with
 * 57P02 at its next call, a client of its server too), and the next open
 * or client starts the database again with crash recovery: the library's
 * own restart (shared_first), committed rows kept, the crashed
 * transaction's change gone. */
static void test_crash_of_an_open_database(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("apicrash");
    assert_non_null(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/db", dir);
    pglite *a, *b;
    assert_int_equal(pglite_open(path, NULL, &a), PGLITE_OK);
    assert_int_equal(pglite_open(path, NULL, &b), PGLITE_OK);
    api_ok(a, "CREATE TABLE k (id int PRIMARY KEY, v int); INSERT INTO k VALUES (1, 1)");
    pglite_server_options so;
    pglite_server_options_init(&so);
    so.unix_socket = dir;
    pglite_server *srv;
    assert_int_equal(pglite_server_start(b, &so, &srv), PGLITE_OK);
    PGconn *c = PQconnectdb(pglite_server_uri(srv));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    api_ok(a, "BEGIN; UPDATE k SET v = 2 WHERE id = 1");
    assert_int_equal(backend_inject_crash(a->be), 0);
    assert_int_not_equal(pglite_exec(a, "SELECT 1", NULL, NULL), PGLITE_OK); /* a trapped */
    /* b, idle meanwhile, is told at its next call */
    assert_int_equal(pglite_exec(b, "SELECT 1", NULL, NULL), PGLITE_DEAD);
    const pglite_error *e = pglite_last_error(b);
    assert_non_null(e);
    assert_string_equal(pglite_error_field(e, 'C'), "57P02");
    /* and so is the server's client */
    PGresult *r = PQexec(c, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_non_null(strstr(PQerrorMessage(c), "crash of another server process"));
    PQclear(r);
    PQfinish(c);
    /* started again by the next open, with recovery */
    pglite *d;
    int rc = pglite_open(path, NULL, &d);
    if (rc != PGLITE_OK)
        fprintf(stderr, "pglite_open after the crash: %s\n", pglite_errmsg(NULL));
    assert_int_equal(rc, PGLITE_OK);
    char *v = api_value(d, "SELECT v FROM k WHERE id = 1");
    assert_string_equal(v, "1");
    free(v);
    /* and the server's next client is served by the new cluster */
    c = PQconnectdb(pglite_server_uri(srv));
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "%s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    v = pq_value(c, "SELECT count(*) FROM k");
    assert_string_equal(v, "1");
    free(v);
    PQfinish(c);
    pglite_server_stop(srv);
    pglite_close(a);
    pglite_close(b);
    assert_int_equal(pglite_close(d), PGLITE_OK);
    fx_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_of_an_open_database),
        cmocka_unit_test(test_unix_socket_round_trip),
        cmocka_unit_test(test_tcp_and_stop_with_client),
        cmocka_unit_test(test_tls_self_signed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
