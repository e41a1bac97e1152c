/* Several backends of one cluster (backend_clone): each its own PostgreSQL
 * session with its own pid, sharing the cluster's shared memory, running
 * on threads of their own. What PostgreSQL gives two connections: MVCC
 * between open transactions, row locks that wait and wake, deadlock
 * detection, lock_timeout, NOWAIT and SKIP LOCKED, cancel across sessions,
 * NOTIFY from one to the other, and the data on disk afterwards. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../support/fixture.h"
#include "backend/backend.h"
#include "wire/wire.h"

typedef struct reply {
    char val[256];   /* first column of the last DataRow */
    char state[6];   /* SQLSTATE of an ErrorResponse */
    uint32_t notify_pid; /* a NotificationResponse's sender */
    char notify_payload[64];
} reply;

static int sql(backend *b, const char *q, reply *out) {
    memset(out, 0, sizeof *out);
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, q);
    const uint8_t *o;
    size_t n;
    char err[512];
    int rc = backend_exchange(b, w.data, w.len, &o, &n, err, sizeof err);
    wire_buf_free(&w);
    if (rc != 0) {
        print_message("%s: %s\n", q, err);
        return -1;
    }
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, o, n);
    bool ready = false;
    while (wire_next(&r, &m) == 1) {
        if (m.type == 'D' && m.len >= 6) {
            int32_t l = (int32_t)((uint32_t)m.body[2] << 24 | (uint32_t)m.body[3] << 16 |
                                  (uint32_t)m.body[4] << 8 | m.body[5]);
            if (l >= 0 && (size_t)l < sizeof out->val && (uint32_t)l + 6 <= m.len) {
                memcpy(out->val, m.body + 6, (size_t)l);
                out->val[l] = 0;
            }
        } else if (m.type == 'E') {
            wire_error_field(&m, 'C', out->state, sizeof out->state);
        } else if (m.type == 'A' && m.len >= 6) {
            out->notify_pid = (uint32_t)m.body[0] << 24 | (uint32_t)m.body[1] << 16 |
                              (uint32_t)m.body[2] << 8 | m.body[3];
            const char *ch = (const char *)m.body + 4;
            snprintf(out->notify_payload, sizeof out->notify_payload, "%s", ch + strlen(ch) + 1);
        } else if (m.type == 'Z') {
            ready = true;
        }
    }
    assert_true(ready);
    return 0;
}

static const char *val(backend *b, const char *q) {
    static _Thread_local reply r;
    assert_int_equal(sql(b, q, &r), 0);
    if (r.state[0])
        print_message("%s: %s\n", q, r.state);
    assert_string_equal(r.state, "");
    return r.val;
}

static const char *sqlstate(backend *b, const char *q) {
    static _Thread_local reply r;
    assert_int_equal(sql(b, q, &r), 0);
    return r.state;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A session's statements on a thread of its own, as its client would send
 * them. */
typedef struct job {
    backend *b;
    const char *sql[3];
    reply last;
    atomic_int done;
    double ms;
    pthread_t t;
} job;

static void *job_main(void *arg) {
    job *j = arg;
    double t0 = now_ms();
    for (int i = 0; i < 3 && j->sql[i]; i++)
        if (sql(j->b, j->sql[i], &j->last) != 0)
            break;
    j->ms = now_ms() - t0;
    atomic_store(&j->done, 1);
    return NULL;
}

static void run_bg(job *j, backend *b, const char *s1, const char *s2, const char *s3) {
    memset(j, 0, sizeof *j);
    j->b = b;
    j->sql[0] = s1;
    j->sql[1] = s2;
    j->sql[2] = s3;
    assert_int_equal(pthread_create(&j->t, NULL, job_main, j), 0);
}

static void join(job *j) { pthread_join(j->t, NULL); }

static char *g_dir;
static backend *A, *B;
static char pid_a[16], pid_b[16];

static int setup(void **state) {
    (void)state;
    g_dir = fx_new_cluster("db");
    if (!g_dir)
        return -1;
    backend_options o = {.data_dir = g_dir, .sessions = 1};
    char err[2048];
    if (backend_start(&o, &A, err, sizeof err) != 0) {
        print_error("backend_start: %s\n", err);
        return -1;
    }
    if (backend_clone(A, NULL, 0, &B, err, sizeof err) != 0) {
        print_error("backend_clone: %s\n", err);
        return -1;
    }
    snprintf(pid_a, sizeof pid_a, "%s", val(A, "SELECT pg_backend_pid()"));
    snprintf(pid_b, sizeof pid_b, "%s", val(B, "SELECT pg_backend_pid()"));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    backend_close(B);
    backend_close(A);
    fx_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void test_own_pids(void **state) {
    (void)state;
    size_t n;
    const uint8_t *hello = backend_startup_reply(B, &n);
    assert_true(n > 0 && hello[0] == 'R'); /* AuthenticationOk first */
    /* BackendKeyData names its own pid. */
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, hello, n);
    uint32_t key_pid = 0;
    while (wire_next(&r, &m) == 1)
        if (m.type == 'K' && m.len >= 8)
            key_pid = (uint32_t)m.body[0] << 24 | (uint32_t)m.body[1] << 16 |
                      (uint32_t)m.body[2] << 8 | m.body[3];
    assert_int_equal(key_pid, (uint32_t)atoi(pid_b));
    assert_int_equal(hello[n - 6], 'Z');    /* ... ReadyForQuery last */
    assert_string_not_equal(pid_a, pid_b);
    char q[256];
    snprintf(q, sizeof q,
             "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity "
             "WHERE pid IN (%s, %s)", pid_a, pid_b);
    char want[40];
    snprintf(want, sizeof want, "%s,%s", atoi(pid_a) < atoi(pid_b) ? pid_a : pid_b,
             atoi(pid_a) < atoi(pid_b) ? pid_b : pid_a);
    assert_string_equal(val(B, q), want);
}

static void test_mvcc(void **state) {
    (void)state;
    val(A, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    val(A, "INSERT INTO t VALUES (1, 10), (2, 20)");
    assert_string_equal(val(B, "SELECT count(*) FROM t"), "2");
    val(A, "BEGIN");
    val(A, "INSERT INTO t VALUES (3, 30)");
    assert_string_equal(val(B, "SELECT count(*) FROM t"), "2");
    val(A, "COMMIT");
    assert_string_equal(val(B, "SELECT count(*) FROM t"), "3");
}

static void test_blocked_update_wakes(void **state) {
    (void)state;
    val(A, "BEGIN");
    val(A, "UPDATE t SET v = v + 100 WHERE id = 1");
    job j;
    run_bg(&j, B, "UPDATE t SET v = v + 1 WHERE id = 1", NULL, NULL);
    usleep(300 * 1000);
    assert_int_equal(atomic_load(&j.done), 0); /* waiting for A's row lock */
    char q[128];
    snprintf(q, sizeof q, "SELECT pg_blocking_pids(%s)::text", pid_b);
    char want[24];
    snprintf(want, sizeof want, "{%s}", pid_a);
    assert_string_equal(val(A, q), want);
    val(A, "COMMIT");
    join(&j);
    assert_string_equal(j.last.state, "");
    assert_string_equal(val(A, "SELECT v FROM t WHERE id = 1"), "111");
}

static void test_deadlock(void **state) {
    (void)state;
    val(A, "BEGIN");
    val(A, "UPDATE t SET v = v + 1 WHERE id = 1");
    job j;
    run_bg(&j, B, "BEGIN", "UPDATE t SET v = v + 1 WHERE id = 2",
           "UPDATE t SET v = v + 1 WHERE id = 1");
    usleep(300 * 1000);
    reply ra;
    assert_int_equal(sql(A, "UPDATE t SET v = v + 1 WHERE id = 2", &ra), 0);
    join(&j);
    /* Exactly one of the two is the deadlock's victim. */
    int victims = !strcmp(ra.state, "40P01") + !strcmp(j.last.state, "40P01");
    assert_int_equal(victims, 1);
    assert_true(ra.state[0] == 0 || j.last.state[0] == 0);
    val(A, "ROLLBACK");
    val(B, "ROLLBACK");
}

static void test_nowait_skip_locked_lock_timeout(void **state) {
    (void)state;
    val(A, "BEGIN");
    val(A, "SELECT v FROM t WHERE id = 1 FOR UPDATE");
    assert_string_equal(sqlstate(B, "SELECT v FROM t WHERE id = 1 FOR UPDATE NOWAIT"), "55P03");
    assert_string_equal(val(B, "SELECT string_agg(id::text, ',' ORDER BY id) FROM "
                               "(SELECT id FROM t ORDER BY id FOR UPDATE SKIP LOCKED) s"),
                        "2,3");
    val(B, "SET lock_timeout = '200ms'");
    double t0 = now_ms();
    assert_string_equal(sqlstate(B, "UPDATE t SET v = 0 WHERE id = 1"), "55P03");
    double waited = now_ms() - t0;
    assert_true(waited >= 150 && waited < 5000);
    val(B, "RESET lock_timeout");
    val(A, "ROLLBACK");
}

static void test_cancel_across_sessions(void **state) {
    (void)state;
    job j;
    run_bg(&j, B, "SELECT pg_sleep(30)", NULL, NULL);
    usleep(200 * 1000);
    /* A works meanwhile: B's sleep lets it run. */
    assert_string_equal(val(A, "SELECT count(*) FROM t"), "3");
    char q[64];
    snprintf(q, sizeof q, "SELECT pg_cancel_backend(%s)", pid_b);
    assert_string_equal(val(A, q), "t");
    join(&j);
    assert_string_equal(j.last.state, "57014");
    assert_true(j.ms < 5000);
    /* Itself, as PostgreSQL: the statement that asks is the one cancelled. */
    assert_string_equal(sqlstate(B, "SELECT pg_cancel_backend(pg_backend_pid())"), "57014");
    assert_string_equal(val(B, "SELECT 1"), "1");
}

static void test_notify_between_sessions(void **state) {
    (void)state;
    val(A, "LISTEN ch");
    val(B, "NOTIFY ch, 'hello'");
    reply r;
    assert_int_equal(sql(A, "SELECT 1", &r), 0);
    assert_int_equal(r.notify_pid, (uint32_t)atoi(pid_b));
    assert_string_equal(r.notify_payload, "hello");
    val(A, "UNLISTEN ch");
}

/* pg_terminate_backend ends the other session only (FATAL 57P01, its
 * backend gone from pg_stat_activity); the cluster takes new sessions
 * after it, and a session can end itself the same way. */
static void test_terminate(void **state) {
    (void)state;
    backend *C = NULL;
    char err[2048];
    assert_int_equal(backend_clone(A, NULL, 0, &C, err, sizeof err), 0);
    char pid_c[16], q[160];
    snprintf(pid_c, sizeof pid_c, "%s", val(C, "SELECT pg_backend_pid()"));
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%s)", pid_c);
    assert_string_equal(val(A, q), "t");
    reply r;
    assert_int_equal(sql(C, "SELECT 1", &r), -1); /* its session is over */
    backend_close(C);
    snprintf(q, sizeof q, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid_c);
    assert_string_equal(val(A, q), "0");
    /* Its exit left the cluster's files alone: another session starts. */
    assert_int_equal(backend_clone(A, NULL, 0, &C, err, sizeof err), 0);
    assert_string_equal(val(C, "SELECT count(*) FROM t"), "3");
    assert_int_equal(sql(C, "SELECT pg_terminate_backend(pg_backend_pid())", &r), -1);
    backend_close(C);
    assert_string_equal(val(B, "SELECT count(*) FROM t"), "3");
}

/* A CancelRequest (backend_cancel) reaches a new session's very first
 * statement: its start left nothing holding cancel off. */
static void test_cancel_first_statement(void **state) {
    (void)state;
    backend *C = NULL;
    char err[2048];
    assert_int_equal(backend_clone(A, NULL, 0, &C, err, sizeof err), 0);
    job j;
    run_bg(&j, C, "SELECT pg_sleep(30)", NULL, NULL);
    usleep(300 * 1000);
    backend_cancel(C);
    join(&j);
    assert_string_equal(j.last.state, "57014");
    assert_true(j.ms < 5000);
    backend_close(C);
}

/* The client's startup packet is the session's: PostgreSQL applies its
 * options and parameters as the session's defaults (RESET returns to
 * them), and refuses a database that does not exist with its own FATAL. */
static void test_startup_parameters(void **state) {
    (void)state;
    const char *params[] = {"user", "postgres", "database", "postgres",
                            "options", "-c work_mem=77MB", "application_name", "app-c", NULL};
    backend *C = NULL;
    char err[2048];
    assert_int_equal(backend_clone(A, params, 0, &C, err, sizeof err), 0);
    assert_string_equal(val(C, "SHOW work_mem"), "77MB");
    val(C, "SET work_mem = '1MB'");
    val(C, "RESET work_mem");
    assert_string_equal(val(C, "SHOW work_mem"), "77MB");
    assert_string_equal(val(A, "SELECT string_agg(application_name, ',') FROM pg_stat_activity "
                               "WHERE application_name = 'app-c'"), "app-c");
    assert_string_equal(val(B, "SHOW work_mem"), "4MB"); /* not another session's */
    backend_close(C);

    const char *nodb[] = {"user", "postgres", "database", "nosuchdb", NULL};
    int refused = backend_clone(A, nodb, 0, &C, err, sizeof err);
    if (refused != 1)
        print_message("%d: %s\n", refused, err);
    assert_int_equal(refused, 1);
    size_t n;
    const uint8_t *reply = backend_startup_reply(C, &n);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, reply, n);
    char code[6] = "";
    while (wire_next(&r, &m) == 1)
        if (m.type == 'E')
            wire_error_field(&m, 'C', code, sizeof code);
    assert_string_equal(code, "3D000");
    backend_close(C);
}

/* A long statement does not hold the others off until it ends: at its
 * CHECK_FOR_INTERRUPTS, once its slice is over and another session waits,
 * it lets that one run. B's answer comes while A's statement still runs. */
/* New sessions start from clones made ahead (the spare), but each one is
 * PostgreSQL's own start: it sees the role and database created after
 * its clone was made, takes a pid of its own, and holds nothing before
 * its client comes (the database it used can be dropped at once). */
static void test_sessions_made_ahead(void **state) {
    (void)state;
    char err[2048];
    backend *c1;
    assert_int_equal(backend_clone(A, NULL, 0, &c1, err, sizeof err), 0);
    val(c1, "CREATE ROLE ahead_role LOGIN");
    val(c1, "CREATE DATABASE ahead_db OWNER ahead_role");
    backend_close(c1);
    const char *const params[] = {"user", "ahead_role", "database", "ahead_db", NULL};
    char prev[16] = "";
    for (int i = 0; i < 12; i++) {
        backend *s;
        assert_int_equal(backend_clone(A, params, 0, &s, err, sizeof err), 0);
        assert_string_equal(val(s, "SELECT current_user || '@' || current_database()"),
                            "ahead_role@ahead_db");
        char pid[16];
        snprintf(pid, sizeof pid, "%s", val(s, "SELECT pg_backend_pid()"));
        assert_string_not_equal(pid, pid_a);
        assert_string_not_equal(pid, pid_b);
        assert_string_not_equal(pid, prev);
        memcpy(prev, pid, sizeof prev);
        val(s, "CREATE TABLE IF NOT EXISTS seen (n int)");
        val(s, "INSERT INTO seen VALUES (1)");
        backend_close(s);
    }
    /* No session is connected to ahead_db now: neither the ended ones
     * nor the one made ahead for the next client. */
    assert_string_equal(val(A, "SELECT count(*) FROM pg_stat_activity "
                               "WHERE datname = 'ahead_db'"),
                        "0");
    /* B idles meanwhile, as a server's idle session does: parked, so
     * that it absorbs DROP DATABASE's barrier. */
    assert_int_equal(backend_park(B), 0);
    val(A, "DROP DATABASE ahead_db");
    val(A, "DROP ROLE ahead_role");
    const uint8_t *kept;
    size_t nkept;
    assert_int_equal(backend_unpark(B, &kept, &nkept), 0);
}

/* The nice value of this process's thread named name (proc(5):
 * /proc/self/task/TID/comm, and field 19 of its stat), or -100. */
static int thread_nice(const char *name) {
    int nice = -100;
    char path[128], comm[64], stat[1024];
    for (int tid = getpid(); nice == -100 && tid < getpid() + 100000; tid++) {
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int is = fgets(comm, sizeof comm, f) && strncmp(comm, name, strlen(name)) == 0 &&
                 comm[strlen(name)] == '\n';
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
        if (!is || !(f = fopen(path, "r")))
            continue;
        if (fgets(stat, sizeof stat, f)) {
            char *p = strrchr(stat, ')'); /* after the command name */
            long v[17];
            if (p && sscanf(p + 2, "%*c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld",
                            &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
                            &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]) == 16)
                nice = (int)v[15]; /* field 19 */
        }
        fclose(f);
    }
    return nice;
}

/* Waits (5 s at most) until A's cluster has both its spares made, and
 * asserts it has; the counts of sessions' clones made ahead and inline. */
static void wait_two_spares(unsigned long *ahead, unsigned long *inl) {
    int ready = 0;
    for (double t0 = now_ms(); now_ms() - t0 < 5000; usleep(20 * 1000)) {
        backend_spares(A, &ready, ahead, inl);
        if (ready == 2)
            break;
    }
    assert_int_equal(ready, 2);
}

/* Two clones wait made ahead, so that sessions started back to back (a
 * pool filling up, pgbench -C) both start from one; the thread that makes
 * them runs at the lowest priority, after every session. */
static void test_two_spares(void **state) {
    (void)state;
    int ready = 0;
    unsigned long ahead0, inline0, ahead1, inline1;
    wait_two_spares(&ahead0, &inline0);
    char err[2048];
    backend *s1, *s2;
    assert_int_equal(backend_clone(A, NULL, 0, &s1, err, sizeof err), 0);
    assert_int_equal(backend_clone(A, NULL, 0, &s2, err, sizeof err), 0);
    assert_string_not_equal(val(s1, "SELECT pg_backend_pid()"), pid_a);
    backend_spares(A, &ready, &ahead1, &inline1);
    assert_int_equal(ahead1 - ahead0, 2);
    assert_int_equal(inline1, inline0);
    backend_close(s1);
    backend_close(s2);
    assert_int_equal(thread_nice("pglite-spare"), 19);
}

/* The page faults the calling thread has taken so far. */
static long thread_faults(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_minflt + ru.ru_majflt;
}

/* A session started from a ready spare, once the first sessions have
 * shown which pages a start and a first statement touch, finds them in
 * its memory: copied ahead where they are written, mapped ahead where
 * they are read (PostgreSQL's shared memory included). Measured: 402
 * faults with nothing done ahead, 158 with the written pages only, 77
 * with both (the first sessions of this program, which taught the image,
 * ran other first statements than this one). */
static void test_spare_prefaulted(void **state) {
    (void)state;
    const char *q = "SELECT count(*) FROM pg_class WHERE relname = 'pg_proc'";
    /* Enough sessions to learn from when this test runs alone; in the
     * whole file, earlier tests' sessions have taught the image already. */
    for (int i = 0; i < 4; i++) {
        char err[2048];
        backend *s;
        assert_int_equal(backend_clone(A, NULL, 0, &s, err, sizeof err), 0);
        assert_string_equal(val(s, q), "1");
        backend_close(s);
    }
    unsigned long ahead, inl;
    wait_two_spares(&ahead, &inl);
    char err[2048];
    backend *s;
    long f0 = thread_faults();
    assert_int_equal(backend_clone(A, NULL, 0, &s, err, sizeof err), 0);
    assert_string_equal(val(s, q), "1");
    long faults = thread_faults() - f0;
    backend_close(s);
    print_message("a start and first statement from a ready spare: %ld page faults\n", faults);
    assert_true(faults < 110);
}

/* The WAL writer: an asynchronous commit's WAL is on disk within a few
 * wal_writer_delay (200 ms) while the sessions idle, as PostgreSQL's WAL
 * writer flushes it; without one nothing would flush it until a later
 * synchronous commit. */
static void test_wal_writer_flushes(void **state) {
    (void)state;
    val(B, "CREATE TABLE ww (a int)");
    val(B, "SET synchronous_commit = off");
    val(B, "INSERT INTO ww VALUES (1)");
    char lsn[64], q[160];
    snprintf(lsn, sizeof lsn, "%s", val(B, "SELECT pg_current_wal_insert_lsn()"));
    snprintf(q, sizeof q, "SELECT pg_current_wal_flush_lsn() >= '%s'::pg_lsn", lsn);
    /* A idles as a server's first backend does: parked. */
    assert_int_equal(backend_park(A), 0);
    double t0 = now_ms();
    const char *flushed = "f";
    while (strcmp(flushed, "t") != 0 && now_ms() - t0 < 3000) {
        usleep(50 * 1000);
        flushed = val(B, q);
    }
    double ms = now_ms() - t0;
    const uint8_t *kept;
    size_t nkept;
    assert_int_equal(backend_unpark(A, &kept, &nkept), 0);
    print_message("the commit's WAL was flushed after %.0f ms\n", ms);
    assert_string_equal(flushed, "t");
    assert_true(ms < 1000);
    val(B, "RESET synchronous_commit");
    val(B, "DROP TABLE ww");
}

static void test_long_statement_shares(void **state) {
    (void)state;
    job j;
    run_bg(&j, A, "SELECT count(*) FROM generate_series(1, 30000000)", NULL, NULL);
    usleep(200 * 1000);
    assert_int_equal(atomic_load(&j.done), 0);
    for (int i = 0; i < 20; i++) /* each a new wait for the lock */
        assert_string_equal(val(B, "SELECT 41 + 1"), "42");
    assert_string_equal(val(B, "SELECT count(*) > 0 FROM t"), "t");
    assert_int_equal(atomic_load(&j.done), 0); /* A is still at it */
    join(&j);
    assert_string_equal(j.last.val, "30000000");
    assert_string_equal(j.last.state, "");
}

/* The cluster lock held by no session (a hold, as pglite_dump_archive
 * takes; a closing session's exit handlers) past a slice while a session
 * waits for it: the watchdog has no statement to interrupt and leaves it
 * alone (it used to look at the missing holder and crash the process),
 * and the waiter runs once the hold ends. */
static void test_hold_past_a_slice(void **state) {
    (void)state;
    backend_hold_cluster(A);
    job j;
    run_bg(&j, B, "SELECT 6 * 7", NULL, NULL);
    usleep(200 * 1000); /* ten slices, twenty looks of the watchdog */
    assert_int_equal(atomic_load(&j.done), 0);
    backend_release_cluster(A);
    join(&j);
    assert_string_equal(j.last.val, "42");
    assert_true(j.ms >= 150);
}

/* The SQLSTATE of a FATAL in out ("" if none). */
static void fatal_state(const uint8_t *o, size_t n, char *state) {
    state[0] = 0;
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, o, n);
    while (wire_next(&r, &m) == 1)
        if (m.type == 'E')
            wire_error_field(&m, 'C', state, 6);
}

typedef struct crash_job {
    backend *b;
    int rc;
    char state[6];
    pthread_t t;
} crash_job;

static void *crash_job_main(void *arg) {
    crash_job *j = arg;
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, "UPDATE c SET v = v + 1 WHERE id = 1");
    const uint8_t *o;
    size_t n;
    char err[512];
    j->rc = backend_exchange(j->b, w.data, w.len, &o, &n, err, sizeof err);
    fatal_state(o, n, j->state);
    wire_buf_free(&w);
    return NULL;
}

/* A crash (a trap) in one session while another waits for a lock it holds
 * and a third is idle: as under PostgreSQL's postmaster, every session
 * ends with FATAL 57P02 (none hangs), no new one starts, and the cluster
 * starts again with crash recovery: committed rows kept, the crashed
 * transaction's gone. */
static void test_crash_restart(void **state) {
    (void)state;
    char *dir = fx_new_cluster("crash");
    assert_non_null(dir);
    backend_options o = {.data_dir = dir, .sessions = 1};
    char err[2048];
    backend *first, *a, *b, *c, *d;
    assert_int_equal(backend_start(&o, &first, err, sizeof err), 0);
    assert_int_equal(backend_park(first), 0);
    assert_int_equal(backend_clone(first, NULL, 0, &a, err, sizeof err), 0);
    assert_int_equal(backend_clone(first, NULL, 0, &b, err, sizeof err), 0);
    assert_int_equal(backend_clone(first, NULL, 0, &c, err, sizeof err), 0);
    val(a, "CREATE TABLE c (id int PRIMARY KEY, v int)");
    val(a, "INSERT INTO c VALUES (1, 10)");
    val(a, "BEGIN");
    val(a, "UPDATE c SET v = 99 WHERE id = 1");
    crash_job j = {.b = b};
    assert_int_equal(pthread_create(&j.t, NULL, crash_job_main, &j), 0);
    usleep(300 * 1000); /* b waits for a's row lock */
    assert_int_equal(backend_crashed(a), 0);
    assert_int_equal(backend_inject_crash(a), 0);
    reply r;
    assert_int_not_equal(sql(a, "SELECT count(*) FROM c", &r), 0); /* a trapped */
    assert_int_equal(backend_crashed(a), 1);
    pthread_join(j.t, NULL); /* b did not hang */
    assert_int_equal(j.rc, -1);
    assert_string_equal(j.state, "57P02");
    /* the idle one is told at once, through its signal fd */
    struct pollfd pf = {.fd = backend_signal_fd(c), .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    const uint8_t *out;
    size_t n;
    assert_int_equal(backend_idle(c, &out, &n, err, sizeof err), -1);
    char st[6];
    fatal_state(out, n, st);
    assert_string_equal(st, "57P02");
    assert_int_equal(backend_clone(first, NULL, 0, &d, err, sizeof err), -1);
    /* started again, with recovery */
    backend *nf;
    if (backend_restart(first, &nf, err, sizeof err) != 0)
        print_error("backend_restart: %s\n", err);
    backend_close(a);
    backend_close(b);
    backend_close(c);
    backend_close(first);
    assert_int_equal(backend_clone(nf, NULL, 0, &d, err, sizeof err), 0);
    assert_string_equal(val(d, "SELECT v FROM c WHERE id = 1"), "10");
    val(d, "UPDATE c SET v = v + 1 WHERE id = 1");
    assert_string_equal(val(d, "SELECT v FROM c"), "11");
    backend_close(d);
    backend_close(nf);
    fx_rmtree(dir);
    free(dir);
}

/* A cluster of the test's own: its first backend started and parked, and
 * n sessions cloned from it into s[]. */
static char *own_cluster(const char *name, backend_options o, backend **first, backend **s,
                         int n) {
    char *dir = fx_new_cluster(name);
    assert_non_null(dir);
    o.data_dir = dir;
    o.sessions = 1;
    char err[2048];
    if (backend_start(&o, first, err, sizeof err) != 0)
        print_error("backend_start: %s\n", err);
    assert_non_null(*first);
    assert_int_equal(backend_park(*first), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(backend_clone(*first, NULL, 0, &s[i], err, sizeof err), 0);
    return dir;
}

/* A runaway: a session whose statement never lets the others run (it
 * holds interrupts off, as a loop holding an LWLock would) while another
 * waits is stopped once it has run stop_ms, where it runs guest code: a
 * crash, so the waiter gets 57P02 instead of waiting for ever, and the
 * cluster starts again with recovery. */
static void test_runaway_stopped(void **state) {
    (void)state;
    backend *first, *s[2];
    char *dir = own_cluster("runaway", (backend_options){.stop_ms = 1000}, &first, s, 2);
    backend *a = s[0], *b = s[1];
    char err[2048];
    val(a, "CREATE TABLE r (id int PRIMARY KEY, v int)");
    val(a, "INSERT INTO r VALUES (1, 10)");
    assert_int_equal(backend_inject_stall(a), 0);
    job j;
    /* generate_series in the select list streams its rows (ProjectSet):
     * in FROM they would go to a tuplestore, and a runaway that is not
     * stopped would fill the disk with its temporary files (68 GB, the
     * day the stop handler missed guest code) before it ended. */
    run_bg(&j, a, "SELECT count(*) FROM (SELECT generate_series(1, 4000000000)) g", NULL, NULL);
    usleep(100 * 1000);
    double t0 = now_ms();
    reply r;
    assert_int_not_equal(sql(b, "SELECT 1", &r), 0); /* ended, not served */
    double waited = now_ms() - t0;
    join(&j);
    assert_int_equal(atomic_load(&j.done), 1);
    assert_true(j.ms < 60000);
    assert_int_equal(backend_crashed(b), 1);
    print_message("the waiter was ended after %.0f ms, the runaway after %.0f ms\n", waited,
                  j.ms);
    assert_true(waited >= 800);
    backend *nf, *d;
    if (backend_restart(first, &nf, err, sizeof err) != 0)
        print_error("backend_restart: %s\n", err);
    backend_close(a);
    backend_close(b);
    backend_close(first);
    assert_int_equal(backend_clone(nf, NULL, 0, &d, err, sizeof err), 0);
    assert_string_equal(val(d, "SELECT v FROM r WHERE id = 1"), "10");
    backend_close(d);
    backend_close(nf);
    fx_rmtree(dir);
    free(dir);
}

/* ... but a long statement that lets the others run is no runaway, even
 * when it has run past stop_ms before anyone waits: the clock starts with
 * the first waiter, and a slice later it lets that one in. */
static void test_long_statement_is_no_runaway(void **state) {
    (void)state;
    backend *first, *s[2];
    char *dir = own_cluster("long", (backend_options){.stop_ms = 1000}, &first, s, 2);
    backend *a = s[0], *b = s[1];
    job j;
    /* streamed (see test_runaway_stopped): some 7 s, no temporary file */
    run_bg(&j, a, "SELECT count(*) FROM (SELECT generate_series(1, 150000000)) g", NULL, NULL);
    usleep(2500 * 1000); /* a has run 2.5 stop_ms with nobody waiting */
    assert_int_equal(atomic_load(&j.done), 0);
    for (int i = 0; i < 100; i++) /* each a new wait, over more than a stop_ms */
        assert_string_equal(val(b, "SELECT 41 + 1"), "42");
    join(&j);
    assert_string_equal(j.last.state, "");
    assert_string_equal(j.last.val, "150000000");
    assert_int_equal(backend_crashed(b), 0);
    backend_close(a);
    backend_close(b);
    backend_close(first);
    fx_rmtree(dir);
    free(dir);
}

/* shared_preload_libraries: loaded by the first backend before shared
 * memory is made, as a postmaster loads them, and so part of the image
 * every session is cloned from: each session has the libraries, at the
 * same table slots the hooks they set name (it trapped at its first
 * statement before), sharing their shared memory. pg_stat_statements
 * counts the statements of two sessions in one table; auto_explain's
 * executor hooks report a plan in a third. */
static void test_preload_libraries(void **state) {
    (void)state;
    const char *gucs[] = {"shared_preload_libraries=pg_stat_statements,auto_explain", NULL};
    backend *first, *s[2], *c;
    char *dir = own_cluster("preload", (backend_options){.gucs = gucs}, &first, s, 2);
    backend *a = s[0], *b = s[1];
    char err[2048];
    val(a, "CREATE EXTENSION pg_stat_statements");
    for (int i = 0; i < 3; i++) {
        val(a, "SELECT 'from a and b'");
        val(b, "SELECT 'from a and b'");
    }
    assert_string_equal(val(b, "SELECT calls FROM pg_stat_statements "
                               "WHERE query = 'SELECT $1'"),
                        "6");
    assert_string_equal(val(a, "SHOW shared_preload_libraries"),
                        "pg_stat_statements,auto_explain");
    /* a session started after all that */
    assert_int_equal(backend_clone(first, NULL, 0, &c, err, sizeof err), 0);
    val(c, "SET client_min_messages = log");
    val(c, "SET auto_explain.log_min_duration = 0");
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, "SELECT count(*) FROM pg_class");
    const uint8_t *o2;
    size_t n;
    assert_int_equal(backend_exchange(c, w.data, w.len, &o2, &n, err, sizeof err), 0);
    wire_buf_free(&w);
    bool plan = false;
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, o2, n);
    while (wire_next(&r, &m) == 1)
        if (m.type == 'N') {
            char msg[512];
            wire_error_field(&m, 'M', msg, sizeof msg);
            plan |= strstr(msg, "plan:") != NULL && strstr(msg, "Aggregate") != NULL;
        }
    assert_true(plan);
    assert_string_equal(val(c, "SELECT calls >= 1 FROM pg_stat_statements "
                               "WHERE query = 'SELECT count(*) FROM pg_class'"),
                        "t");
    backend_close(c);
    backend_close(b);
    backend_close(a);
    backend_close(first);
    fx_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_pids),
        cmocka_unit_test(test_mvcc),
        cmocka_unit_test(test_blocked_update_wakes),
        cmocka_unit_test(test_deadlock),
        cmocka_unit_test(test_nowait_skip_locked_lock_timeout),
        cmocka_unit_test(test_cancel_across_sessions),
        cmocka_unit_test(test_notify_between_sessions),
        cmocka_unit_test(test_terminate),
        cmocka_unit_test(test_startup_parameters),
        cmocka_unit_test(test_cancel_first_statement),
        cmocka_unit_test(test_sessions_made_ahead),
        cmocka_unit_test(test_two_spares),
        cmocka_unit_test(test_spare_prefaulted),
        cmocka_unit_test(test_wal_writer_flushes),
        cmocka_unit_test(test_long_statement_shares),
        cmocka_unit_test(test_hold_past_a_slice),
        cmocka_unit_test(test_crash_restart),
        cmocka_unit_test(test_runaway_stopped),
        cmocka_unit_test(test_long_statement_is_no_runaway),
        cmocka_unit_test(test_preload_libraries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
