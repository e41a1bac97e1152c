/* The socket server in-process with libpq as the client: PQexecParams with
 * binary parameters and results, PQprepare, pipeline mode, COPY both ways,
 * notices and notifications, cancel from another thread, clients queueing
 * from several threads, and a fuzz run of >= 10,000 mutated frames from
 * valid sessions after which a normal client still gets right answers. */
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

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cluster/cluster.h"
#include "server/server.h"
#include "../support/server_fixture.h"
#include "wire/wire.h"

static int setup(void **state) {
    (void)state;
    return fxs_start(NULL);
}

static PGconn *connect_db(void) {
    PGconn *c = PQconnectdb(g_conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        print_error("connect: %s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void exec_ok(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(r));
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

static char *scalar(PGconn *c, const char *sql) {
    static char v[256];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(v, sizeof v, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void test_params_binary(void **state) {
    (void)state;
    PGconn *c = connect_db();
    uint32_t i4 = htonl(40);
    const char i8[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* int8 0x0102030405060708, network order */
    const char blob[] = {0, 1, 2, (char)255, 0};
    const char *values[4] = {(const char *)&i4, i8, blob, "text param"};
    int lengths[4] = {4, 8, 5, 0};
    int formats[4] = {1, 1, 1, 0};
    Oid types[4] = {23, 20, 17, 25};
    PGresult *r = PQexecParams(c, "SELECT $1::int4 + 2, $2::int8, length($3), $3, upper($4)", 4, types,
                               values, lengths, formats, 1 /* binary results */);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQfformat(r, 0), 1);
    assert_int_equal(PQgetlength(r, 0, 0), 4);
    uint32_t v;
    memcpy(&v, PQgetvalue(r, 0, 0), 4);
    assert_int_equal(ntohl(v), 42);
    assert_memory_equal(PQgetvalue(r, 0, 1), "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    memcpy(&v, PQgetvalue(r, 0, 2), 4);
    assert_int_equal(ntohl(v), 5);
    assert_int_equal(PQgetlength(r, 0, 3), 5);
    assert_memory_equal(PQgetvalue(r, 0, 3), blob, 5);
    assert_string_equal(PQgetvalue(r, 0, 4), "TEXT PARAM");
    PQclear(r);
    /* NULL parameters, text results */
    const char *nv[1] = {NULL};
    r = PQexecParams(c, "SELECT $1::text IS NULL", 1, NULL, nv, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    PQfinish(c);
}

static void test_prepare(void **state) {
    (void)state;
    PGconn *c = connect_db();
    PGresult *r = PQprepare(c, "add", "SELECT $1::int + $2::int", 2, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQdescribePrepared(c, "add");
    assert_int_equal(PQnparams(r), 2);
    assert_int_equal(PQparamtype(r, 0), 23);
    PQclear(r);
    for (int i = 0; i < 50; i++) {
        char a[16], b[16], want[16];
        snprintf(a, sizeof a, "%d", i);
        snprintf(b, sizeof b, "%d", i * 3);
        snprintf(want, sizeof want, "%d", i * 4);
        const char *vals[2] = {a, b};
        r = PQexecPrepared(c, "add", 2, vals, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), want);
        PQclear(r);
    }
    /* an error in an extended-protocol statement, then the session goes on */
    const char *bad[2] = {"1", "not a number"};
    r = PQexecPrepared(c, "add", 2, bad, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22P02");
    PQclear(r);
    assert_string_equal(scalar(c, "SELECT 'on'"), "on");
    PQfinish(c);
    /* the next session does not have the statement */
    c = connect_db();
    assert_string_equal(scalar(c, "SELECT count(*) FROM pg_prepared_statements"), "0");
    PQfinish(c);
}

static void test_pipeline(void **state) {
    (void)state;
    PGconn *c = connect_db();
    exec_ok(c, "CREATE TABLE IF NOT EXISTS pipe (n int)");
    assert_int_equal(PQenterPipelineMode(c), 1);
    for (int i = 0; i < 10; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", i);
        const char *v[1] = {n};
        assert_int_equal(PQsendQueryParams(c, "INSERT INTO pipe VALUES ($1)", 1, NULL, v, NULL, NULL, 0), 1);
    }
    assert_int_equal(PQsendQueryParams(c, "SELECT count(*) FROM pipe", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);
    /* an error aborts the rest of its pipeline, up to the next sync */
    assert_int_equal(PQsendQueryParams(c, "SELECT 1/0", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQsendQueryParams(c, "SELECT 2", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);
    assert_int_equal(PQsendQueryParams(c, "SELECT 3", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQsendFlushRequest(c), 1);
    assert_int_equal(PQflush(c), 0);
    /* results, in order */
    for (int i = 0; i < 10; i++) {
        PGresult *r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        assert_null(PQgetResult(c));
    }
    PGresult *r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int counted = atoi(PQgetvalue(r, 0, 0));
    assert_true(counted >= 10);
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22012");
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_ABORTED);
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    r = PQgetResult(c); /* SELECT 3, answered on the Flush request alone */
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "3");
    PQclear(r);
    assert_null(PQgetResult(c));
    assert_int_equal(PQpipelineSync(c), 1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    assert_int_equal(PQexitPipelineMode(c), 1);
    assert_string_equal(scalar(c, "SELECT 'out of the pipeline'"), "out of the pipeline");
    PQfinish(c);
}

static void test_copy(void **state) {
    (void)state;
    PGconn *c = connect_db();
    exec_ok(c, "CREATE TABLE cp (id int, t text)");
    PGresult *r = PQexec(c, "COPY cp FROM STDIN");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    char line[64];
    long sum = 0;
    for (int i = 1; i <= 100000; i++) { /* one CopyData per row: many exchanges' worth */
        int n = snprintf(line, sizeof line, "%d\trow %d\n", i, i);
        assert_int_equal(PQputCopyData(c, line, n), 1);
        sum += i;
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_string_equal(PQcmdTuples(r), "100000");
    PQclear(r);
    assert_null(PQgetResult(c));
    char want[32];
    snprintf(want, sizeof want, "%ld", sum);
    assert_string_equal(scalar(c, "SELECT sum(id) FROM cp"), want);
    /* COPY OUT */
    r = PQexec(c, "COPY (SELECT id FROM cp WHERE id <= 1000 ORDER BY id) TO STDOUT");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_OUT);
    PQclear(r);
    char *buf;
    int n, rows = 0;
    while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
        rows++;
        assert_int_equal(atoi(buf), rows);
        PQfreemem(buf);
    }
    assert_int_equal(n, -1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_int_equal(rows, 1000);
    /* a COPY the client gives up on */
    r = PQexec(c, "COPY cp FROM STDIN");
    PQclear(r);
    PQputCopyData(c, "1\tx\n", 4);
    assert_int_equal(PQputCopyEnd(c, "changed my mind"), 1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_non_null(strstr(PQresultErrorMessage(r), "changed my mind"));
    PQclear(r);
    assert_null(PQgetResult(c));
    assert_string_equal(scalar(c, "SELECT count(*) FROM cp"), "100000");
    exec_ok(c, "DROP TABLE cp");
    PQfinish(c);
}

static void notice_cb(void *arg, const PGresult *r) {
    snprintf(arg, 128, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
}

static void test_notices_notify(void **state) {
    (void)state;
    PGconn *c = connect_db();
    char notice[128] = "";
    PQsetNoticeReceiver(c, notice_cb, notice);
    exec_ok(c, "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$");
    assert_string_equal(notice, "hello from plpgsql");
    exec_ok(c, "LISTEN chan");
    exec_ok(c, "NOTIFY chan, 'payload'");
    PQconsumeInput(c);
    PGnotify *n = PQnotifies(c);
    assert_non_null(n);
    assert_string_equal(n->relname, "chan");
    assert_string_equal(n->extra, "payload");
    PQfreemem(n);
    PQfinish(c);
}

/* Wait up to ms for c's socket to be readable, then read: 1 if input came. */
static int wait_readable(PGconn *c, int ms) {
    struct pollfd pf = {.fd = PQsocket(c), .events = POLLIN};
    if (poll(&pf, 1, ms) != 1)
        return 0;
    PQconsumeInput(c);
    PQisBusy(c); /* parse what came */
    return 1;
}

/* An idle listener gets another session's NOTIFY at once, without a query
 * of its own, with the notifier's pid (as PostgreSQL pushes it from the
 * listener's idle read); an idle session that another terminates gets
 * FATAL 57P01 and its connection closes. */
static void test_idle_sessions(void **state) {
    (void)state;
    PGconn *l = connect_db(), *n = connect_db();
    exec_ok(l, "LISTEN idle_chan");
    char npid[16];
    snprintf(npid, sizeof npid, "%s", scalar(n, "SELECT pg_backend_pid()"));
    exec_ok(n, "NOTIFY idle_chan, 'while you wait'");
    assert_int_equal(wait_readable(l, 5000), 1);
    PGnotify *m = PQnotifies(l);
    assert_non_null(m);
    assert_string_equal(m->relname, "idle_chan");
    assert_string_equal(m->extra, "while you wait");
    assert_int_equal(m->be_pid, atoi(npid));
    PQfreemem(m);
    char q[96];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%d)", PQbackendPID(l));
    assert_string_equal(scalar(n, q), "t");
    /* libpq hands a FATAL that comes while idle to the notice receiver
     * (psql prints it), then finds the connection closed. */
    char fatal[128] = "";
    PQsetNoticeReceiver(l, notice_cb, fatal);
    for (int i = 0; i < 50 && PQstatus(l) != CONNECTION_BAD; i++)
        wait_readable(l, 100);
    assert_int_equal(PQstatus(l), CONNECTION_BAD);
    assert_string_equal(fatal, "terminating connection due to administrator command");
    assert_string_equal(scalar(n, "SELECT 'still here'"), "still here");
    PQfinish(l);
    PQfinish(n);
}

static void *cancel_soon(void *arg) {
    struct timespec d = {0, 400 * 1000 * 1000};
    nanosleep(&d, NULL);
    char err[256];
    PGcancel *k = PQgetCancel(arg);
    int ok = PQcancel(k, err, sizeof err);
    PQfreeCancel(k);
    return (void *)(intptr_t)ok;
}

static void test_cancel(void **state) {
    (void)state;
    PGconn *c = connect_db();
    pthread_t th;
    pthread_create(&th, NULL, cancel_soon, c);
    PGresult *r = PQexec(c, "SELECT pg_sleep(20)");
    void *ok;
    pthread_join(th, &ok);
    assert_int_equal((intptr_t)ok, 1);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57014");
    PQclear(r);
    assert_string_equal(scalar(c, "SELECT 'alive'"), "alive");
    PQfinish(c);
}

static void *client_thread(void *arg) {
    int id = (int)(intptr_t)arg;
    PGconn *c = PQconnectdb(g_conninfo);
    intptr_t good = 0;
    if (PQstatus(c) == CONNECTION_OK) {
        char q[128];
        snprintf(q, sizeof q, "INSERT INTO turns VALUES (%d) RETURNING n * 2", id);
        PGresult *r = PQexec(c, q);
        good = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) == id * 2;
        PQclear(r);
    }
    PQfinish(c);
    return (void *)good;
}

static void test_clients_take_turns(void **state) {
    (void)state;
    PGconn *c = connect_db();
    exec_ok(c, "CREATE TABLE turns (n int)");
    PQfinish(c);
    enum { N = 16 };
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, client_thread, (void *)(intptr_t)(i + 1));
    int good = 0;
    for (int i = 0; i < N; i++) {
        void *g;
        pthread_join(th[i], &g);
        good += (int)(intptr_t)g;
    }
    assert_int_equal(good, N);
    c = connect_db();
    assert_string_equal(scalar(c, "SELECT count(*) || ' ' || sum(n) FROM turns"), "16 136");
    PQfinish(c);
}

/* ---- a borrowed backend ------------------------------------------------------ */

/* The first DataRow's first value of sql through b directly. */
static void direct(backend *b, const char *sql, char *val, size_t n) {
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, sql);
    const uint8_t *out;
    size_t outlen;
    char err[256];
    val[0] = 0;
    assert_int_equal(backend_exchange(b, w.data, w.len, &out, &outlen, err, sizeof err), 0);
    wire_buf_free(&w);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, out, outlen);
    while (wire_next(&r, &m) == 1)
        if (m.type == 'D' && m.len > 6 && !val[0])
            snprintf(val, n, "%.*s", (int)(m.len - 6), (const char *)m.body + 6);
}

/* A program's cluster served next to its own session: the server borrows
 * the first backend and clones a session per client from it, while the
 * program uses a session of its own; stopping the server leaves both. */
static void test_borrowed_backend(void **state) {
    (void)state;
    cluster *cl;
    char err[2048], v[64];
    assert_int_equal(cluster_open(NULL, &cl, err, sizeof err), 0);
    backend_options bo = {.data_dir = cluster_data_dir(cl), .sessions = 1};
    backend *first, *own;
    assert_int_equal(backend_start(&bo, &first, err, sizeof err), 0);
    assert_int_equal(backend_park(first), 0);
    assert_int_equal(backend_clone(first, NULL, 0, &own, err, sizeof err), 0);
    server_options o = {.backend = first, .tcp_host = "127.0.0.1",
                        .log_level = SERVER_LOG_WARNING};
    server *s;
    assert_int_equal(server_start(&o, &s, err, sizeof err), 0);
    char ci[256];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable",
             server_tcp_port(s));
    PGconn *c = PQconnectdb(ci);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "CREATE TABLE shared (n int); INSERT INTO shared VALUES (7)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    /* the program's session sees it, with the client still connected,
     * and the client holds an open transaction the program does not see */
    r = PQexec(c, "BEGIN; INSERT INTO shared VALUES (8)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    direct(own, "SELECT sum(n) * 6 FROM shared", v, sizeof v);
    assert_string_equal(v, "42");
    PQfinish(c); /* its transaction rolled back by its session's end */
    /* every database, each client a session of its own */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=template1 sslmode=disable",
             server_tcp_port(s));
    c = PQconnectdb(ci);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    assert_string_equal(scalar(c, "SELECT current_database()"), "template1");
    PQfinish(c);
    server_stop(s);
    /* still the program's, still working */
    direct(own, "SELECT count(*) FROM shared", v, sizeof v);
    assert_string_equal(v, "1");
    backend_close(own);
    backend_close(first);
    cluster_close(cl);
}

/* ---- a crash ------------------------------------------------------------------ */

/* The cluster's first backend, started again after a crash, as the
 * library's shared_first does for a server it lends the cluster to. */
static backend *g_cur_first, *g_old_first;

static backend *cur_first(void *ctx) {
    (void)ctx;
    if (backend_crashed(g_cur_first) && !g_old_first) {
        backend *nb = NULL;
        char err[512];
        if (backend_restart(g_cur_first, &nb, err, sizeof err) == 0 && backend_park(nb) == 0) {
            g_old_first = g_cur_first;
            g_cur_first = nb;
        } else {
            print_error("backend_restart: %s\n", err);
        }
    }
    return g_cur_first;
}

/* The first backend crashes while it looks up a client's password, with
 * one client holding a row lock and another waiting for it: both get
 * PostgreSQL's FATAL 57P02 (none hangs), the connecting one is refused,
 * and the next client finds the cluster started again with recovery. */
static void test_crash_through_the_server(void **state) {
    (void)state;
    cluster *cl;
    char err[2048], ci[256];
    assert_int_equal(cluster_open(NULL, &cl, err, sizeof err), 0);
    backend_options bo = {.data_dir = cluster_data_dir(cl), .sessions = 1};
    assert_int_equal(backend_start(&bo, &g_cur_first, err, sizeof err), 0);
    assert_int_equal(backend_park(g_cur_first), 0);
    server_options o = {.backend = g_cur_first, .current = cur_first, .tcp_host = "127.0.0.1",
                        .password = "pw", .log_level = SERVER_LOG_ERROR};
    server *s;
    assert_int_equal(server_start(&o, &s, err, sizeof err), 0);
    snprintf(ci, sizeof ci,
             "host=127.0.0.1 port=%d user=postgres password=pw dbname=postgres sslmode=disable",
             server_tcp_port(s));
    PGconn *holder = PQconnectdb(ci), *waiter = PQconnectdb(ci);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    assert_int_equal(PQstatus(waiter), CONNECTION_OK);
    PQclear(PQexec(holder, "CREATE TABLE k (id int PRIMARY KEY, v int); INSERT INTO k VALUES (1, 1)"));
    PGresult *r = PQexec(holder, "BEGIN; UPDATE k SET v = 2 WHERE id = 1");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_int_equal(PQsendQuery(waiter, "UPDATE k SET v = 3 WHERE id = 1"), 1);
    usleep(300 * 1000); /* waiting for holder's row lock */
    assert_int_equal(backend_inject_crash(g_cur_first), 0);
    PGconn *late = PQconnectdb(ci); /* its password lookup crashes the first backend */
    assert_int_not_equal(PQstatus(late), CONNECTION_OK);
    PQfinish(late);
    r = PQgetResult(waiter); /* not a hang */
    assert_non_null(r);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57P02");
    PQclear(r);
    PQfinish(waiter);
    r = PQexec(holder, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_non_null(strstr(PQerrorMessage(holder), "crash of another server process"));
    PQclear(r);
    PQfinish(holder);
    /* the next client: started again, the crashed transaction gone */
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK)
        print_error("%s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    assert_string_equal(scalar(c, "SELECT v FROM k WHERE id = 1"), "1");
    PQfinish(c);
    server_stop(s);
    backend_close(g_cur_first);
    backend_close(g_old_first);
    cluster_close(cl);
}

/* ---- fuzz ------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static int raw_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_tcp_port(g_server))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read until ReadyForQuery (1), EOF (0) or timeout (-1). */
static int read_until_ready(int fd, int timeout_ms) {
    uint8_t buf[65536];
    size_t keep = 0;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, timeout_ms) <= 0)
            return -1;
        ssize_t n = recv(fd, buf + keep, sizeof buf - keep, 0);
        if (n <= 0)
            return 0;
        keep += (size_t)n;
        if (keep >= 6 && memcmp(buf + keep - 6, "Z\0\0\0\5", 5) == 0)
            return 1;
        if (keep > 16)
            memmove(buf, buf + keep - 16, 16), keep = 16;
    }
}

static void send_all(int fd, const void *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p = (const uint8_t *)p + w;
        n -= (size_t)w;
    }
}

/* Valid sessions (after the startup packet), one wire_buf each. */
static void corpus(wire_buf *s, int n) {
    for (int i = 0; i < n; i++)
        wire_buf_init(&s[i]);
    wire_query(&s[0], "SELECT 1");
    wire_query(&s[0], "SELECT count(*) FROM fz");
    /* extended: parse, bind with a parameter, describe, execute, sync */
    size_t off = wire_begin(&s[1], 'P');
    wire_put_str(&s[1], "st");
    wire_put_str(&s[1], "SELECT $1::int + 1, repeat('x', $1::int)");
    wire_put_u16(&s[1], 1);
    wire_put_u32(&s[1], 23);
    wire_end(&s[1], off);
    off = wire_begin(&s[1], 'B');
    wire_put_str(&s[1], "po");
    wire_put_str(&s[1], "st");
    wire_put_u16(&s[1], 1);
    wire_put_u16(&s[1], 0);
    wire_put_u16(&s[1], 1);
    wire_put_u32(&s[1], 2);
    wire_put(&s[1], "41", 2);
    wire_put_u16(&s[1], 1);
    wire_put_u16(&s[1], 1);
    wire_end(&s[1], off);
    off = wire_begin(&s[1], 'D');
    wire_put_u8(&s[1], 'P');
    wire_put_str(&s[1], "po");
    wire_end(&s[1], off);
    off = wire_begin(&s[1], 'E');
    wire_put_str(&s[1], "po");
    wire_put_u32(&s[1], 0);
    wire_end(&s[1], off);
    off = wire_begin(&s[1], 'C');
    wire_put_u8(&s[1], 'S');
    wire_put_str(&s[1], "st");
    wire_end(&s[1], off);
    wire_sync(&s[1]);
    /* a transaction */
    wire_query(&s[2], "BEGIN");
    wire_query(&s[2], "INSERT INTO fz VALUES (1, 'fuzz')");
    wire_query(&s[2], "SAVEPOINT a; SELECT 1/0");
    wire_query(&s[2], "ROLLBACK TO a");
    wire_query(&s[2], "COMMIT");
    /* COPY FROM STDIN */
    wire_query(&s[3], "COPY fz FROM STDIN");
    off = wire_begin(&s[3], 'd');
    wire_put(&s[3], "2\tcopied\n3\tcopied\n", 18);
    wire_end(&s[3], off);
    off = wire_begin(&s[3], 'c');
    wire_end(&s[3], off);
    /* unnamed statement with Flush, then Sync */
    off = wire_begin(&s[4], 'P');
    wire_put_str(&s[4], "");
    wire_put_str(&s[4], "SELECT n, t FROM fz ORDER BY n LIMIT 3");
    wire_put_u16(&s[4], 0);
    wire_end(&s[4], off);
    off = wire_begin(&s[4], 'B');
    wire_put_str(&s[4], "");
    wire_put_str(&s[4], "");
    wire_put_u16(&s[4], 0);
    wire_put_u16(&s[4], 0);
    wire_put_u16(&s[4], 0);
    wire_end(&s[4], off);
    off = wire_begin(&s[4], 'E');
    wire_put_str(&s[4], "");
    wire_put_u32(&s[4], 1);
    wire_end(&s[4], off);
    off = wire_begin(&s[4], 'H');
    wire_end(&s[4], off);
    wire_sync(&s[4]);
    /* FunctionCall: int4pl (oid 177) 40 + 2, binary */
    off = wire_begin(&s[5], 'F');
    wire_put_u32(&s[5], 177);
    wire_put_u16(&s[5], 1);
    wire_put_u16(&s[5], 1);
    wire_put_u16(&s[5], 2);
    wire_put_u32(&s[5], 4);
    wire_put_u32(&s[5], 40);
    wire_put_u32(&s[5], 4);
    wire_put_u32(&s[5], 2);
    wire_put_u16(&s[5], 1);
    wire_end(&s[5], off);
    wire_query(&s[5], "LISTEN x; NOTIFY x, 'y'; SET work_mem = '8MB'; CREATE TEMP TABLE tt (a int)");
}

/* Split a buffer of frames into frame offsets. */
static int frames(const wire_buf *b, size_t *off, size_t *len, int max) {
    int n = 0;
    size_t p = 0;
    while (p < b->len && n < max) {
        long l = wire_frame_len(b->data + p, b->len - p);
        if (l <= 0)
            break;
        off[n] = p;
        len[n++] = (size_t)l;
        p += (size_t)l;
    }
    return n;
}

/* Append frame f, mutated one way or another (or not at all). */
static void mutate(wire_buf *out, const uint8_t *f, size_t n) {
    uint8_t tmp[512];
    size_t m = n < sizeof tmp ? n : sizeof tmp;
    memcpy(tmp, f, m);
    static const char types[] = "QPBEDCSHFdcfX?p\0\xff";
    switch (rnd() % 10) {
    case 0: /* as it is */
    case 1:
        break;
    case 2: /* flip bits in the body */
        for (int k = 0; k < 1 + (int)(rnd() % 4) && m > 5; k++)
            tmp[5 + rnd() % (m - 5)] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 3: /* another type */
        tmp[0] = (uint8_t)types[rnd() % (sizeof types - 1)];
        break;
    case 4: { /* a wrong length */
        uint32_t l = (uint32_t)(m - 1);
        int32_t d = (int32_t)(rnd() % 9) - 4;
        l = rnd() % 8 == 0 ? rnd() : (uint32_t)((int32_t)l + d);
        tmp[1] = (uint8_t)(l >> 24);
        tmp[2] = (uint8_t)(l >> 16);
        tmp[3] = (uint8_t)(l >> 8);
        tmp[4] = (uint8_t)l;
        break;
    }
    case 5: /* truncated */
        m = rnd() % m;
        break;
    case 6: /* random bytes in place of the body */
        for (size_t k = 5; k < m; k++)
            tmp[k] = (uint8_t)rnd();
        break;
    case 7: /* duplicated */
        wire_put(out, tmp, m);
        break;
    case 8: /* cut the body short but keep a consistent length */
        if (m > 6) {
            m = 5 + rnd() % (m - 5);
            uint32_t l = (uint32_t)(m - 1);
            tmp[1] = (uint8_t)(l >> 24);
            tmp[2] = (uint8_t)(l >> 16);
            tmp[3] = (uint8_t)(l >> 8);
            tmp[4] = (uint8_t)l;
        }
        break;
    case 9: /* a few random bytes after it */
        wire_put(out, tmp, m);
        for (int k = 0; k < 1 + (int)(rnd() % 8); k++)
            wire_put_u8(out, (uint8_t)rnd());
        return;
    }
    wire_put(out, tmp, m);
}

static void test_fuzz(void **state) {
    (void)state;
    PGconn *c = connect_db();
    exec_ok(c, "CREATE TABLE fz (n int, t text)");
    PQfinish(c);
    enum { NS = 6 };
    wire_buf sess[NS];
    corpus(sess, NS);
    wire_buf start;
    wire_buf_init(&start);
    const char *params[] = {"user", "postgres", "database", "postgres", NULL};
    wire_startup(&start, params);
    long sent = 0, target = 10000;
    const char *env = getenv("PGLITE_FUZZ_FRAMES"); /* longer runs by hand */
    if (env && atol(env) > 0)
        target = atol(env);
    const char *seed = getenv("PGLITE_FUZZ_SEED");
    if (seed && strtoull(seed, NULL, 0))
        g_rng = strtoull(seed, NULL, 0);
    int conns = 0, answered = 0;
    while (sent < target) {
        int fd = raw_connect();
        assert_true(fd >= 0);
        conns++;
        if (rnd() % 10 == 0) { /* a damaged startup packet */
            wire_buf bad;
            wire_buf_init(&bad);
            mutate(&bad, start.data, start.len);
            send_all(fd, bad.data, bad.len);
            wire_buf_free(&bad);
            read_until_ready(fd, 200);
            close(fd);
            sent++;
            continue;
        }
        send_all(fd, start.data, start.len);
        if (read_until_ready(fd, 30000) != 1) {
            close(fd);
            continue;
        }
        /* a few sessions' frames, mixed and mutated */
        wire_buf out;
        wire_buf_init(&out);
        for (int k = 0; k < 4; k++) {
            const wire_buf *s = &sess[rnd() % NS];
            size_t off[32], len[32];
            int nf = frames(s, off, len, 32);
            for (int i = 0; i < nf; i++) {
                mutate(&out, s->data + off[i], len[i]);
                sent++;
            }
        }
        send_all(fd, out.data, out.len);
        wire_buf_free(&out);
        if (read_until_ready(fd, 200) == 1)
            answered++;
        close(fd);
    }
    wire_buf_free(&start);
    for (int i = 0; i < NS; i++)
        wire_buf_free(&sess[i]);
    print_message("fuzz: %ld frames over %d connections, %d answered with ReadyForQuery, "
                  "%d backend restarts\n",
                  sent, conns, answered, atomic_load(&g_backend_stops));
    /* A normal client still gets correct answers. */
    c = connect_db();
    assert_string_equal(scalar(c, "SELECT 6 * 7"), "42");
    exec_ok(c, "VACUUM fz");
    assert_string_equal(scalar(c, "SELECT count(*) = count(n) + count(*) FILTER (WHERE n IS NULL) FROM fz"), "t");
    assert_string_equal(scalar(c, "SELECT count(*) FROM pg_prepared_statements"), "0");
    assert_string_equal(scalar(c, "SHOW work_mem"), "4MB");
    assert_string_equal(scalar(c, "SELECT count(*) FROM pg_listening_channels()"), "0");
    assert_string_equal(scalar(c, "SELECT count(*) FROM pg_class WHERE relname = 'tt'"), "0");
    PQfinish(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_binary),
        cmocka_unit_test(test_prepare),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_notices_notify),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_idle_sessions),
        cmocka_unit_test(test_clients_take_turns),
        cmocka_unit_test(test_borrowed_backend),
        cmocka_unit_test(test_crash_through_the_server),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, fxs_teardown);
}
#endif
