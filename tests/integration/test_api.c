/*
 * The public API (include/pglite.h) against the real embedded PostgreSQL:
 * one test per feature, checking what PostgreSQL does (values, SQLSTATEs,
 * details, notices, notifications, COPY data), plus bad input that must
 * come back as an error and never crash.
 *
 * Most tests share one temporary database (g_db) and use their own tables;
 * those about opening make their own.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/fixture.h"
#include "runtime_version.h"
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

/* Run sql on db and expect success; the result (to free). */
static pglite_result *ok_query(pglite *db, const char *sql) {
    pglite_result *r = NULL;
    int rc = pglite_query(db, sql, 0, NULL, NULL, NULL, NULL, 0, &r);
    if (rc != PGLITE_OK)
        fail_msg("%s: %s", sql, pglite_errmsg(db));
    return r;
}

static void ok_exec(pglite *db, const char *sql) {
    int rc = pglite_exec(db, sql, NULL, NULL);
    if (rc != PGLITE_OK)
        fail_msg("%s: %s", sql, pglite_errmsg(db));
}

/* The first cell of sql as text (static buffer). */
static const char *scalar(pglite *db, const char *sql) {
    static char buf[256];
    pglite_result *r = ok_query(db, sql);
    snprintf(buf, sizeof buf, "%s", pglite_result_getvalue(r, 0, 0) ? pglite_result_getvalue(r, 0, 0) : "(none)");
    pglite_result_free(r);
    return buf;
}

/* ---- open / close ------------------------------------------------------------ */

static void test_open_temporary_and_options(void **state) {
    (void)state;
    pglite_options o;
    pglite_options_init(&o);
    const char *gucs[] = {"work_mem=7MB", "application_name=api-test", NULL};
    o.gucs = gucs;
    o.relaxed_durability = 1;
    pglite *db;
    assert_int_equal(pglite_open(NULL, &o, &db), PGLITE_OK);
    assert_int_equal(pglite_errcode(db), PGLITE_OK);
    assert_string_equal(pglite_errmsg(db), "not an error");
    const char *v = pglite_parameter_status(db, "server_version");
    assert_non_null(v);
    assert_string_equal(v, PGLITE_PG_VERSION); /* runtime_version.h, from runtime.lock */
    assert_string_equal(scalar(db, "SHOW server_version"), PGLITE_PG_VERSION);
    assert_string_equal(pglite_parameter_status(db, "server_encoding"), "UTF8");
    assert_string_equal(scalar(db, "SHOW work_mem"), "7MB");
    assert_string_equal(scalar(db, "SHOW fsync"), "off");
    assert_string_equal(scalar(db, "SELECT current_user"), "postgres");
    assert_string_equal(scalar(db, "SELECT current_database()"), "postgres");
    assert_int_equal(pglite_close(db), PGLITE_OK);

    /* durable by default */
    assert_string_equal(scalar(g_db, "SHOW fsync"), "on");
}

static void test_open_persistent_and_errors(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("api");
    char path[4096];
    snprintf(path, sizeof path, "%s/db", dir);
    pglite *db;
    assert_int_equal(pglite_open(path, NULL, &db), PGLITE_OK);
    ok_exec(db, "CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 100) g;"
                "CREATE DATABASE other; CREATE ROLE alice LOGIN");
    assert_int_equal(pglite_close(db), PGLITE_OK);

    /* reopened as it is */
    assert_int_equal(pglite_open(path, NULL, &db), PGLITE_OK);
    assert_string_equal(scalar(db, "SELECT sum(id) FROM kept"), "5050");
    assert_int_equal(pglite_close(db), PGLITE_OK);

    /* another database and a missing one */
    pglite_options o;
    pglite_options_init(&o);
    o.database = "other";
    assert_int_equal(pglite_open(path, &o, &db), PGLITE_OK);
    assert_string_equal(scalar(db, "SELECT current_database()"), "other");
    assert_int_equal(pglite_close(db), PGLITE_OK);
    o.database = "nosuchdb";
    db = (pglite *)1;
    assert_int_equal(pglite_open(path, &o, &db), PGLITE_CANTOPEN);
    assert_null(db);
    assert_non_null(strstr(pglite_errmsg(NULL), "\"nosuchdb\" does not exist"));
    assert_non_null(pglite_open_error());
    assert_string_equal(pglite_open_error()->sqlstate, "3D000"); /* PostgreSQL's FATAL */
    o.database = NULL;
    o.username = "alice";
    assert_int_equal(pglite_open(path, &o, &db), PGLITE_OK);
    assert_string_equal(scalar(db, "SELECT current_user || ' ' || session_user"), "alice alice");
    assert_int_equal(pglite_exec(db, "CREATE DATABASE nope", NULL, NULL), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(db)->sqlstate, "42501"); /* not a superuser */
    assert_int_equal(pglite_close(db), PGLITE_OK);
    o.username = "nobody";
    assert_int_equal(pglite_open(path, &o, &db), PGLITE_CANTOPEN);
    assert_non_null(strstr(pglite_errmsg(NULL), "\"nobody\" does not exist"));

    /* a directory with something else in it is left alone */
    char junk[4200];
    snprintf(junk, sizeof junk, "%s/junk", dir);
    mkdir(junk, 0700);
    char f[4300];
    snprintf(f, sizeof f, "%s/file.txt", junk);
    fx_write_file(f, "x", 1);
    assert_int_equal(pglite_open(junk, NULL, &db), PGLITE_CANTOPEN);
    assert_non_null(strstr(pglite_errmsg(NULL), "not a PostgreSQL data directory"));
    char *still = fx_slurp(f);
    assert_string_equal(still, "x");
    free(still);

    /* bad options */
    pglite_options bad;
    memset(&bad, 0, sizeof bad);
    assert_int_equal(pglite_open(path, &bad, &db), PGLITE_MISUSE);
    assert_int_equal(pglite_open(path, NULL, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_open("", NULL, &db), PGLITE_MISUSE);
    pglite_options_init(&bad);
    const char *badguc[] = {"no_equals_sign", NULL};
    bad.gucs = badguc;
    assert_int_equal(pglite_open(path, &bad, &db), PGLITE_CANTOPEN);
    fx_rmtree(dir);
    free(dir);
}


/* A second open of a directory this process has open is another session
 * on the same database, as a second connection to a server is; another
 * process gets PGLITE_BUSY. */
static void test_second_open_and_busy(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("busy");
    pglite_options o;
    pglite_options_init(&o);
    o.fresh = 1; /* the real initdb instead of the template */
    pglite *a, *b = (pglite *)1, *c;
    assert_int_equal(pglite_open(dir, &o, &a), PGLITE_OK);
    assert_string_equal(scalar(a, "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"),
                        "1");
    assert_int_equal(pglite_open(dir, NULL, &b), PGLITE_OK);
    char pa[32];
    snprintf(pa, sizeof pa, "%s", scalar(a, "SELECT pg_backend_pid()"));
    assert_string_not_equal(pa, scalar(b, "SELECT pg_backend_pid()"));
    /* MVCC between them: uncommitted rows invisible, then visible */
    ok_exec(a, "CREATE TABLE t (n int)");
    ok_exec(a, "BEGIN; INSERT INTO t VALUES (1)");
    assert_string_equal(scalar(b, "SELECT count(*) FROM t"), "0");
    ok_exec(a, "COMMIT");
    assert_string_equal(scalar(b, "SELECT count(*) FROM t"), "1");
    /* the login role is the session user, as PostgreSQL starts a session */
    ok_exec(a, "CREATE ROLE alice LOGIN; GRANT SELECT ON t TO alice");
    pglite_options ou;
    pglite_options_init(&ou);
    ou.username = "alice";
    const char *gucs[] = {"work_mem=7MB", NULL};
    ou.gucs = gucs; /* a later open's settings are its session's */
    assert_int_equal(pglite_open(dir, &ou, &c), PGLITE_OK);
    assert_string_equal(scalar(c, "SELECT session_user || ' ' || current_user"), "alice alice");
    assert_string_equal(scalar(c, "SHOW work_mem"), "7MB");
    assert_string_not_equal(scalar(a, "SHOW work_mem"), "7MB");
    assert_int_equal(pglite_exec(c, "SET SESSION AUTHORIZATION postgres", NULL, NULL),
                     PGLITE_ERROR);
    assert_string_equal(pglite_last_error(c)->sqlstate, "42501");
    assert_string_equal(scalar(c, "SELECT count(*) FROM t"), "1");
    assert_int_equal(pglite_close(c), PGLITE_OK);
    /* what PostgreSQL refuses at connection start */
    ou.username = "nobody";
    ou.gucs = NULL;
    c = (pglite *)1;
    assert_int_equal(pglite_open(dir, &ou, &c), PGLITE_CANTOPEN);
    assert_null(c);
    assert_string_equal(pglite_open_error()->sqlstate, "28000");
    ou.username = NULL;
    const char *restart[] = {"shared_buffers=1MB", NULL};
    ou.gucs = restart;
    assert_int_equal(pglite_open(dir, &ou, &c), PGLITE_CANTOPEN);
    assert_string_equal(pglite_open_error()->sqlstate, "55P02");
    /* the cluster's settings are the first open's */
    ou.gucs = NULL;
    ou.relaxed_durability = 1;
    assert_int_equal(pglite_open(dir, &ou, &c), PGLITE_MISUSE);
    /* another process: the directory is locked */
    pid_t pid = fork();
    if (pid == 0) {
        pglite *x = NULL;
        int rc = pglite_open(dir, NULL, &x);
        _exit(rc == PGLITE_BUSY && !x && strstr(pglite_errmsg(NULL), "in use") &&
                      !strcmp(pglite_open_error()->sqlstate, "55006")
                  ? 0
                  : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the first handle closes, the database stays open for the other */
    assert_int_equal(pglite_close(a), PGLITE_OK);
    assert_string_equal(scalar(b, "SELECT count(*) FROM t"), "1");
    assert_int_equal(pglite_close(b), PGLITE_OK);
    assert_int_equal(pglite_open(dir, NULL, &b), PGLITE_OK);
    assert_string_equal(scalar(b, "SELECT count(*) FROM t"), "1");
    assert_int_equal(pglite_close(b), PGLITE_OK);
    fx_rmtree(dir);
    free(dir);
}

struct heard {
    char channel[32], payload[32];
    int pid, n;
};

static void on_heard(void *ctx, const char *channel, const char *payload, int pid) {
    struct heard *h = ctx;
    snprintf(h->channel, sizeof h->channel, "%s", channel);
    snprintf(h->payload, sizeof h->payload, "%s", payload);
    h->pid = pid;
    h->n++;
}

/* Handles idle between calls still take their signals, as idle PostgreSQL
 * backends do: a DROP DATABASE does not wait for them, a terminate ends
 * them, a NOTIFY reaches them; COPY through /dev/blob works in every
 * session. */
static void test_idle_handles(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("idle");
    pglite *a, *b, *c;
    assert_int_equal(pglite_open(dir, NULL, &a), PGLITE_OK);
    ok_exec(a, "CREATE DATABASE d2");
    pglite_options o;
    pglite_options_init(&o);
    o.database = "d2";
    assert_int_equal(pglite_open(dir, &o, &b), PGLITE_OK);
    assert_string_equal(scalar(b, "SELECT current_database()"), "d2");
    /* b idle in d2: the barrier and the terminate are taken for it */
    ok_exec(a, "DROP DATABASE d2 WITH (FORCE)");
    assert_int_equal(pglite_exec(b, "SELECT 1", NULL, NULL), PGLITE_DEAD);
    assert_string_equal(pglite_last_error(b)->sqlstate, "57P01");
    assert_int_equal(pglite_transaction_status(b), -1);
    assert_int_equal(pglite_close(b), PGLITE_OK);
    /* NOTIFY to an idle listener, with the notifier's pid */
    assert_int_equal(pglite_open(dir, NULL, &c), PGLITE_OK);
    struct heard h = {0};
    assert_int_equal(pglite_listen(c, "news", on_heard, &h), PGLITE_OK);
    char apid[32];
    snprintf(apid, sizeof apid, "%s", scalar(a, "SELECT pg_backend_pid()"));
    ok_exec(a, "NOTIFY news, 'hello'");
    assert_string_equal(scalar(c, "SELECT 1"), "1");
    assert_int_equal(h.n, 1);
    assert_string_equal(h.payload, "hello");
    assert_int_equal(h.pid, atoi(apid));
    /* COPY through /dev/blob in a second session */
    ok_exec(c, "CREATE TABLE nums (n int)");
    assert_int_equal(pglite_copy_from(c, "COPY nums FROM '/dev/blob'", "1\n2\n3\n", 6, NULL),
                     PGLITE_OK);
    assert_string_equal(scalar(a, "SELECT sum(n) FROM nums"), "6");
    /* terminate an idle session */
    char cpid[32];
    snprintf(cpid, sizeof cpid, "%s", scalar(c, "SELECT pg_backend_pid()"));
    char q[96];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%s, 5000)", cpid);
    assert_string_equal(scalar(a, q), "t");
    assert_int_equal(pglite_exec(c, "SELECT 1", NULL, NULL), PGLITE_DEAD);
    assert_string_equal(pglite_last_error(c)->sqlstate, "57P01");
    assert_int_equal(pglite_close(c), PGLITE_OK);
    assert_string_equal(scalar(a, "SELECT count(*) FROM pg_stat_activity WHERE "
                                  "backend_type = 'client backend'"),
                        "1");
    assert_int_equal(pglite_close(a), PGLITE_OK);
    fx_rmtree(dir);
    free(dir);
}

/* Write a .tar.gz with one member (name, type) to path. */
static void write_archive(const char *path, const char *name, unsigned type, const char *link) {
    struct archive *a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "PG_VERSION");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_size(e, 3);
    archive_write_header(a, e);
    archive_write_data(a, "18\n", 3);
    archive_entry_clear(e);
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0600);
    if (link)
        archive_entry_set_symlink(e, link);
    archive_entry_set_size(e, type == AE_IFREG ? 5 : 0);
    archive_write_header(a, e);
    if (type == AE_IFREG)
        archive_write_data(a, "owned", 5);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
}

static void test_archives(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("arch");
    char tgz[4200], restored[4200];
    snprintf(tgz, sizeof tgz, "%s/db.tar.gz", dir);
    snprintf(restored, sizeof restored, "%s/restored", dir);
    /* dump an open database with uncommitted-to-disk work in it */
    pglite *db;
    assert_int_equal(pglite_open(NULL, NULL, &db), PGLITE_OK);
    ok_exec(db, "CREATE TABLE a AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 5000) g;"
                "CREATE INDEX ON a (h)");
    pglite_result *before = ok_query(db, "SELECT count(*), sum(id), max(h) FROM a");
    assert_int_equal(pglite_dump_archive(db, tgz), PGLITE_OK);
    assert_int_equal(pglite_begin(db), PGLITE_OK);
    assert_int_equal(pglite_dump_archive(db, tgz), PGLITE_MISUSE); /* not inside a transaction */
    assert_int_equal(pglite_rollback(db), PGLITE_OK);
    assert_int_equal(pglite_close(db), PGLITE_OK);

    /* open from it: into a new directory, and as a temporary database */
    pglite_options o;
    pglite_options_init(&o);
    o.load_archive = tgz;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pglite_open(i == 0 ? restored : NULL, &o, &db), PGLITE_OK);
        pglite_result *after = ok_query(db, "SELECT count(*), sum(id), max(h) FROM a");
        for (int c = 0; c < 3; c++)
            assert_string_equal(pglite_result_getvalue(after, 0, c),
                                pglite_result_getvalue(before, 0, c));
        pglite_result_free(after);
        assert_string_equal(scalar(db, "SELECT count(*) FROM a WHERE h = md5('77')"), "1");
        assert_int_equal(pglite_close(db), PGLITE_OK);
    }
    pglite_result_free(before);
    /* the restored directory is a database of its own now */
    assert_int_equal(pglite_open(restored, NULL, &db), PGLITE_OK);
    assert_string_equal(scalar(db, "SELECT count(*) FROM a"), "5000");
    assert_int_equal(pglite_close(db), PGLITE_OK);
    /* not over an existing database */
    assert_int_equal(pglite_open(restored, &o, &db), PGLITE_CANTOPEN);
    /* a closed database dumps too (and a locked one does not) */
    char tgz2[4200], again[4200];
    snprintf(tgz2, sizeof tgz2, "%s/closed.tar.gz", dir);
    snprintf(again, sizeof again, "%s/again", dir);
    assert_int_equal(pglite_dump_archive_path(restored, tgz2), PGLITE_OK);
    assert_int_equal(pglite_open(restored, NULL, &db), PGLITE_OK);
    assert_int_equal(pglite_dump_archive_path(restored, tgz2), PGLITE_BUSY);
    assert_int_equal(pglite_close(db), PGLITE_OK);
    assert_int_equal(pglite_dump_archive_path(again, tgz2), PGLITE_CANTOPEN); /* nothing there */
    assert_int_equal(access(again, F_OK), -1);
    o.load_archive = tgz2;
    assert_int_equal(pglite_open(again, &o, &db), PGLITE_OK);
    assert_string_equal(scalar(db, "SELECT count(*) FROM a"), "5000");
    assert_int_equal(pglite_close(db), PGLITE_OK);

    /* unsafe archives are refused whole, nothing written outside */
    struct { const char *name; unsigned type; const char *link; } bad[] = {
        {"/tmp/pglite-api-owned", AE_IFREG, NULL},
        {"../pglite-api-owned", AE_IFREG, NULL},
        {"base/../../pglite-api-owned", AE_IFREG, NULL},
        {"link", AE_IFLNK, "/etc/passwd"},
        {"fifo", AE_IFIFO, NULL},
    };
    char evil[4200], target[4200], outside[4200];
    snprintf(evil, sizeof evil, "%s/evil.tar.gz", dir);
    snprintf(outside, sizeof outside, "%s/pglite-api-owned", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_archive(evil, bad[i].name, bad[i].type, bad[i].link);
        snprintf(target, sizeof target, "%s/t%zu", dir, i);
        o.load_archive = evil;
        assert_int_equal(pglite_open(target, &o, &db), PGLITE_FORMAT);
        assert_non_null(strstr(pglite_errmsg(NULL), "refused"));
        assert_int_equal(access(target, F_OK), -1); /* nothing made */
        assert_int_equal(access(outside, F_OK), -1);
        assert_int_equal(access("/tmp/pglite-api-owned", F_OK), -1);
    }
    /* not an archive at all; a missing one */
    fx_write_file(evil, "not a tarball", 13);
    assert_int_equal(pglite_open(NULL, &o, &db), PGLITE_FORMAT);
    o.load_archive = "/nonexistent/x.tar.gz";
    assert_int_equal(pglite_open(NULL, &o, &db), PGLITE_CANTOPEN);
    fx_rmtree(dir);
    free(dir);
}

/* ---- queries ----------------------------------------------------------------- */

static void test_binary_parameter(void **state) {
    (void)state;
    /* SELECT $1::int8 + 1 with $1 = 41 in binary (big-endian int8) */
    uint8_t be[8] = {0, 0, 0, 0, 0, 0, 0, 41};
    const char *values[1] = {(const char *)be};
    int lengths[1] = {8}, formats[1] = {1};
    uint32_t types[1] = {20};
    pglite_result *r;
    assert_int_equal(pglite_query(g_db, "SELECT $1::int8 + 1 AS answer", 1, types, values, lengths,
                                  formats, 0, &r),
                     PGLITE_OK);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_TUPLES_OK);
    assert_int_equal(pglite_result_ntuples(r), 1);
    assert_int_equal(pglite_result_nfields(r), 1);
    assert_string_equal(pglite_result_fname(r, 0), "answer");
    assert_int_equal(pglite_result_fnumber(r, "answer"), 0);
    assert_int_equal(pglite_result_ftype(r, 0), 20);
    assert_string_equal(pglite_result_getvalue(r, 0, 0), "42");
    assert_int_equal(pglite_result_getlength(r, 0, 0), 2);
    assert_string_equal(pglite_result_cmd_tag(r), "SELECT 1");
    assert_int_equal(pglite_result_rows_affected(r), 1);
    pglite_result_free(r);

    /* the same with a binary result: 8 bytes, big-endian */
    assert_int_equal(pglite_query(g_db, "SELECT $1::int8 + 1", 1, types, values, lengths, formats,
                                  1, &r),
                     PGLITE_OK);
    assert_int_equal(pglite_result_fformat(r, 0), 1);
    assert_int_equal(pglite_result_getlength(r, 0, 0), 8);
    assert_memory_equal(pglite_result_getvalue(r, 0, 0), "\0\0\0\0\0\0\0\x2a", 8);
    int64_t v;
    assert_int_equal(pglite_result_get_int64(r, 0, 0, &v), PGLITE_OK);
    assert_int_equal(v, 42);
    pglite_result_free(r);

    /* text parameters, a NULL one, types inferred */
    const char *tv[2] = {"abc", NULL};
    assert_int_equal(pglite_query(g_db, "SELECT upper($1), $2::int IS NULL", 2, NULL, tv, NULL,
                                  NULL, 0, &r),
                     PGLITE_OK);
    assert_string_equal(pglite_result_getvalue(r, 0, 0), "ABC");
    assert_string_equal(pglite_result_getvalue(r, 0, 1), "t");
    pglite_result_free(r);
}

static void test_unique_violation(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE uv (id int PRIMARY KEY, name text)");
    ok_exec(g_db, "INSERT INTO uv VALUES (1, 'one')");
    pglite_result *r;
    assert_int_equal(pglite_query(g_db, "INSERT INTO uv VALUES (1, 'again')", 0, NULL, NULL, NULL,
                                  NULL, 0, &r),
                     PGLITE_ERROR);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_ERROR);
    const pglite_error *e = pglite_result_error(r);
    assert_non_null(e);
    assert_int_equal(e->code, PGLITE_ERROR);
    assert_string_equal(e->severity, "ERROR");
    assert_string_equal(e->sqlstate, "23505");
    assert_string_equal(e->message, "duplicate key value violates unique constraint \"uv_pkey\"");
    assert_string_equal(e->detail, "Key (id)=(1) already exists.");
    assert_string_equal(e->constraint, "uv_pkey");
    assert_string_equal(e->table, "uv");
    assert_string_equal(e->schema, "public");
    assert_null(e->hint);
    assert_string_equal(pglite_result_error_field(r, 'C'), "23505");
    assert_string_equal(pglite_result_error_field(r, 'V'), "ERROR");
    /* the handle has the same error */
    assert_int_equal(pglite_errcode(g_db), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "23505");
    assert_string_equal(pglite_errmsg(g_db), e->message);
    pglite_result_free(r);

    /* position and hint */
    assert_int_equal(pglite_query(g_db, "SELECT nosuchcol FROM uv", 0, NULL, NULL, NULL, NULL, 0,
                                  &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "42703");
    assert_int_equal(pglite_result_error(r)->position, 8);
    pglite_result_free(r);
    assert_int_equal(pglite_exec(g_db, "SELECT * FROM uv WHERE id = 'x'::text::int", NULL, NULL),
                     PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "22P02");
    /* a PL/pgSQL error has a context */
    assert_int_equal(pglite_exec(g_db, "DO $$BEGIN RAISE EXCEPTION 'boom' USING HINT = 'h', "
                                       "ERRCODE = 'P0001'; END$$",
                                 NULL, NULL),
                     PGLITE_ERROR);
    e = pglite_last_error(g_db);
    assert_string_equal(e->message, "boom");
    assert_string_equal(e->hint, "h");
    assert_non_null(e->context);
    assert_non_null(strstr(e->context, "PL/pgSQL"));
    /* and the session goes on */
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM uv"), "1");
    assert_int_equal(pglite_errcode(g_db), PGLITE_OK);
}

static void test_exec_script(void **state) {
    (void)state;
    pglite_result **res;
    int n;
    /* statements separated by ';' outside strings, comments and bodies */
    const char *script =
        "CREATE TABLE sc (id int, t text);\n"
        "-- a comment; with a semicolon\n"
        "INSERT INTO sc VALUES (1, 'a;b'), (2, E'c\\';d'), (3, $$e;f$$), (4, $x$g;$$;h$x$);\n"
        "/* block; /* nested; */ comment */ ;;\n"
        "CREATE FUNCTION add1(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT i + 1; END;\n"
        "SELECT id, t, add1(id) AS next FROM sc ORDER BY id;\n"
        "SELECT \"t;\" FROM (SELECT 1 AS \"t;\") s";
    assert_int_equal(pglite_exec(g_db, script, &res, &n), PGLITE_OK);
    assert_int_equal(n, 5);
    assert_int_equal(pglite_result_status(res[0]), PGLITE_RESULT_COMMAND_OK);
    assert_string_equal(pglite_result_cmd_tag(res[0]), "CREATE TABLE");
    assert_int_equal(pglite_result_rows_affected(res[0]), -1);
    assert_string_equal(pglite_result_cmd_tag(res[1]), "INSERT 0 4");
    assert_int_equal(pglite_result_rows_affected(res[1]), 4);
    assert_string_equal(pglite_result_cmd_tag(res[2]), "CREATE FUNCTION");
    pglite_result *sel = res[3];
    assert_int_equal(pglite_result_status(sel), PGLITE_RESULT_TUPLES_OK);
    assert_int_equal(pglite_result_ntuples(sel), 4);
    assert_string_equal(pglite_result_getvalue(sel, 0, 1), "a;b");
    assert_string_equal(pglite_result_getvalue(sel, 1, 1), "c';d");
    assert_string_equal(pglite_result_getvalue(sel, 2, 1), "e;f");
    assert_string_equal(pglite_result_getvalue(sel, 3, 1), "g;$$;h");
    assert_string_equal(pglite_result_getvalue(sel, 3, 2), "5");
    assert_string_equal(pglite_result_fname(res[4], 0), "t;");
    pglite_results_free(res, n);

    /* stops at the first error, like psql -v ON_ERROR_STOP=1: statements
     * before it are committed, those after it never run */
    assert_int_equal(pglite_exec(g_db, "INSERT INTO sc VALUES (10, 'x');"
                                       "INSERT INTO sc VALUES ('eleven', 'y');"
                                       "INSERT INTO sc VALUES (12, 'z')",
                                 &res, &n),
                     PGLITE_ERROR);
    assert_int_equal(n, 2);
    assert_int_equal(pglite_result_status(res[0]), PGLITE_RESULT_COMMAND_OK);
    assert_int_equal(pglite_result_status(res[1]), PGLITE_RESULT_ERROR);
    assert_string_equal(pglite_result_error(res[1])->sqlstate, "22P02");
    pglite_results_free(res, n);
    assert_string_equal(scalar(g_db, "SELECT string_agg(id::text, ',' ORDER BY id) FROM sc "
                                     "WHERE id >= 10"),
                        "10");

    /* a transaction the script opened and broke is rolled back */
    assert_int_equal(pglite_exec(g_db, "BEGIN; INSERT INTO sc VALUES (20, 'in tx'); SELECT 1/0; "
                                       "COMMIT",
                                 &res, &n),
                     PGLITE_ERROR);
    assert_int_equal(n, 3);
    assert_string_equal(pglite_result_error(res[2])->sqlstate, "22012");
    pglite_results_free(res, n);
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM sc WHERE id = 20"), "0");

    /* statements that refuse transaction blocks work in scripts */
    ok_exec(g_db, "VACUUM sc; CREATE INDEX CONCURRENTLY sc_id ON sc (id)");

    /* empty scripts: no results */
    assert_int_equal(pglite_exec(g_db, "  ; -- nothing\n", &res, &n), PGLITE_OK);
    assert_int_equal(n, 0);
    pglite_results_free(res, n);

    /* COPY FROM STDIN fails instead of hanging or killing the session */
    assert_int_equal(pglite_exec(g_db, "COPY sc FROM STDIN", NULL, NULL), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "57014");
    assert_string_equal(scalar(g_db, "SELECT 'alive'"), "alive");
}

/* The whole text as one Query message (PQexec, PGlite's exec()). */
static void test_exec_message(void **state) {
    (void)state;
    pglite_result **res;
    int n;
    assert_int_equal(pglite_exec_message(g_db, "CREATE TABLE em (id int); "
                                               "INSERT INTO em VALUES (1), (2); "
                                               "SELECT count(*) FROM em; SELECT 'two'",
                                         &res, &n),
                     PGLITE_OK);
    assert_int_equal(n, 4);
    assert_string_equal(pglite_result_cmd_tag(res[0]), "CREATE TABLE");
    assert_string_equal(pglite_result_cmd_tag(res[1]), "INSERT 0 2");
    assert_string_equal(pglite_result_getvalue(res[2], 0, 0), "2");
    assert_string_equal(pglite_result_getvalue(res[3], 0, 0), "two");
    pglite_results_free(res, n);

    /* one implicit transaction: an error undoes the statements before it
     * in the message (pglite_exec would have committed the INSERT) */
    assert_int_equal(pglite_exec_message(g_db, "INSERT INTO em VALUES (3); SELECT 1/0; "
                                               "INSERT INTO em VALUES (4)",
                                         &res, &n),
                     PGLITE_ERROR);
    assert_int_equal(n, 2);
    assert_string_equal(pglite_result_cmd_tag(res[0]), "INSERT 0 1");
    assert_string_equal(pglite_result_error(res[1])->sqlstate, "22012");
    pglite_results_free(res, n);
    assert_string_equal(scalar(g_db, "SELECT string_agg(id::text, ',' ORDER BY id) FROM em"),
                        "1,2");

    /* its own COMMIT ends the implicit transaction, as in PostgreSQL */
    assert_int_equal(pglite_exec_message(g_db, "INSERT INTO em VALUES (5); COMMIT; "
                                               "INSERT INTO em VALUES ('six')",
                                         NULL, NULL),
                     PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "22P02");
    assert_string_equal(scalar(g_db, "SELECT string_agg(id::text, ',' ORDER BY id) FROM em"),
                        "1,2,5");

    /* a transaction the text opened and broke is rolled back */
    assert_int_equal(pglite_exec_message(g_db, "BEGIN; INSERT INTO em VALUES (7); SELECT 1/0",
                                         NULL, NULL),
                     PGLITE_ERROR);
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM em WHERE id = 7"), "0");

    /* statements that refuse transaction blocks are refused in one message
     * with more than one statement, as by PostgreSQL */
    assert_int_equal(pglite_exec_message(g_db, "SELECT 1; VACUUM em", NULL, NULL), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "25001");
    assert_int_equal(pglite_exec_message(g_db, NULL, NULL, NULL), PGLITE_MISUSE);
    assert_string_equal(scalar(g_db, "SELECT 'alive'"), "alive");
}

static void test_empty_query(void **state) {
    (void)state;
    pglite_result *r;
    assert_int_equal(pglite_query(g_db, "", 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_OK);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_EMPTY_QUERY);
    assert_int_equal(pglite_result_ntuples(r), 0);
    pglite_result_free(r);
    /* one command, no rows */
    assert_int_equal(pglite_query(g_db, "SET work_mem = '5MB'", 0, NULL, NULL, NULL, NULL, 0, &r),
                     PGLITE_OK);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_COMMAND_OK);
    assert_string_equal(pglite_result_cmd_tag(r), "SET");
    pglite_result_free(r);
    /* several statements are not one statement */
    assert_int_equal(pglite_query(g_db, "SELECT 1; SELECT 2", 0, NULL, NULL, NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "42601");
    pglite_result_free(r);
}

/* ---- notices and notifications ------------------------------------------------ */

typedef struct {
    int n;
    char severity[16], sqlstate[8], message[256];
} notices;

static void on_notice(void *ctx, const pglite_error *e) {
    notices *ns = ctx;
    ns->n++;
    snprintf(ns->severity, sizeof ns->severity, "%s", e->severity);
    snprintf(ns->sqlstate, sizeof ns->sqlstate, "%s", e->sqlstate);
    snprintf(ns->message, sizeof ns->message, "%s", e->message);
}

static void test_notices(void **state) {
    (void)state;
    notices ns = {0};
    assert_int_equal(pglite_set_notice_handler(g_db, on_notice, &ns), PGLITE_OK);
    ok_exec(g_db, "DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$");
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.severity, "NOTICE");
    assert_string_equal(ns.sqlstate, "00000");
    assert_string_equal(ns.message, "hello 42");
    /* PostgreSQL's own warnings: ROLLBACK outside a transaction */
    pglite_result *r = ok_query(g_db, "ROLLBACK");
    pglite_result_free(r);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.severity, "WARNING");
    assert_string_equal(ns.sqlstate, "25P01");
    /* notices of a failing statement arrive too */
    assert_int_equal(pglite_exec(g_db, "DO $$BEGIN RAISE NOTICE 'before'; PERFORM 1/0; END$$",
                                 NULL, NULL),
                     PGLITE_ERROR);
    assert_int_equal(ns.n, 3);
    assert_string_equal(ns.message, "before");
    assert_int_equal(pglite_set_notice_handler(g_db, NULL, NULL), PGLITE_OK);
    ok_exec(g_db, "DO $$BEGIN RAISE NOTICE 'unheard'; END$$");
    assert_int_equal(ns.n, 3);
}

typedef struct {
    int n;
    char channel[64], payload[256];
    int pid;
    pglite *db; /* for the re-entrant callback */
    char inner[64];
} notes;

static void on_notify(void *ctx, const char *channel, const char *payload, int pid) {
    notes *ns = ctx;
    ns->n++;
    snprintf(ns->channel, sizeof ns->channel, "%s", channel);
    snprintf(ns->payload, sizeof ns->payload, "%s", payload);
    ns->pid = pid;
    if (ns->db) { /* callbacks may use the handle */
        pglite_result *r = NULL;
        if (pglite_query(ns->db, "SELECT 'inner'", 0, NULL, NULL, NULL, NULL, 0, &r) == PGLITE_OK)
            snprintf(ns->inner, sizeof ns->inner, "%s", pglite_result_getvalue(r, 0, 0));
        pglite_result_free(r);
        ns->db = NULL;
    }
}

static void test_listen_notify(void **state) {
    (void)state;
    notes chan = {0}, all = {0};
    assert_int_equal(pglite_listen(g_db, "Jobs Queue", on_notify, &chan), PGLITE_OK);
    assert_int_equal(pglite_set_notify_handler(g_db, on_notify, &all), PGLITE_OK);
    ok_exec(g_db, "NOTIFY \"Jobs Queue\", 'job 1'");
    assert_int_equal(chan.n, 1);
    assert_string_equal(chan.channel, "Jobs Queue");
    assert_string_equal(chan.payload, "job 1");
    assert_true(chan.pid != 0);
    assert_int_equal(all.n, 1);
    assert_string_equal(all.payload, "job 1");
    /* pg_notify from a query with parameters */
    const char *v[2] = {"Jobs Queue", "job 2"};
    pglite_result *r;
    assert_int_equal(pglite_query(g_db, "SELECT pg_notify($1, $2)", 2, NULL, v, NULL, NULL, 0, &r),
                     PGLITE_OK);
    pglite_result_free(r);
    assert_int_equal(chan.n, 2);
    assert_string_equal(chan.payload, "job 2");
    /* inside a transaction: delivered at commit, not before */
    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    ok_exec(g_db, "NOTIFY \"Jobs Queue\", 'job 3'");
    assert_int_equal(chan.n, 2);
    assert_int_equal(pglite_commit(g_db), PGLITE_OK);
    assert_int_equal(chan.n, 3);
    assert_string_equal(chan.payload, "job 3");
    /* a rolled back NOTIFY is never delivered */
    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    ok_exec(g_db, "NOTIFY \"Jobs Queue\", 'never'");
    assert_int_equal(pglite_rollback(g_db), PGLITE_OK);
    assert_int_equal(chan.n, 3);
    /* SQL LISTEN reaches the catch-all only */
    ok_exec(g_db, "LISTEN plain; NOTIFY plain, 'p'");
    assert_int_equal(chan.n, 3);
    assert_int_equal(all.n, 4);
    assert_string_equal(all.channel, "plain");
    /* a callback may query the same handle */
    chan.db = g_db;
    ok_exec(g_db, "NOTIFY \"Jobs Queue\", 'job 4'");
    assert_string_equal(chan.inner, "inner");
    /* after unlisten: nothing */
    assert_int_equal(pglite_unlisten(g_db, "Jobs Queue"), PGLITE_OK);
    ok_exec(g_db, "NOTIFY \"Jobs Queue\", 'late'");
    assert_int_equal(chan.n, 4);
    assert_int_equal(pglite_set_notify_handler(g_db, NULL, NULL), PGLITE_OK);
    ok_exec(g_db, "UNLISTEN *");
    assert_int_equal(pglite_listen(g_db, NULL, on_notify, &chan), PGLITE_MISUSE);
    assert_int_equal(pglite_listen(g_db, "", on_notify, &chan), PGLITE_ERROR); /* zero-length name */
}

/* ---- COPY ----------------------------------------------------------------------- */

static void test_copy_roundtrip(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE cp (id int PRIMARY KEY, name text, score float8)");
    /* 10,000 rows in COPY's text format */
    size_t cap = 1 << 20, len = 0;
    char *data = malloc(cap);
    for (int i = 1; i <= 10000; i++)
        len += (size_t)snprintf(data + len, cap - len, "%d\tname %d\t%d.5\n", i, i, i % 97);
    pglite_result *r;
    assert_int_equal(pglite_copy_from(g_db, "COPY cp FROM '/dev/blob'", data, len, &r), PGLITE_OK);
    assert_string_equal(pglite_result_cmd_tag(r), "COPY 10000");
    assert_int_equal(pglite_result_rows_affected(r), 10000);
    pglite_result_free(r);
    assert_string_equal(scalar(g_db, "SELECT count(*) || ' ' || sum(id) FROM cp"), "10000 50005000");
    assert_string_equal(scalar(g_db, "SELECT name FROM cp WHERE id = 777"), "name 777");

    /* and back out, byte for byte */
    void *out;
    size_t outlen;
    assert_int_equal(pglite_copy_to(g_db, "COPY (SELECT * FROM cp ORDER BY id) TO '/dev/blob'",
                                    &out, &outlen, &r),
                     PGLITE_OK);
    assert_int_equal(pglite_result_rows_affected(r), 10000);
    pglite_result_free(r);
    assert_int_equal(outlen, len);
    assert_memory_equal(out, data, len);
    assert_int_equal(((char *)out)[outlen], 0);
    pglite_free(out);

    /* CSV with a header */
    assert_int_equal(pglite_copy_to(g_db,
                                    "COPY (SELECT id, name FROM cp WHERE id <= 2 ORDER BY id) "
                                    "TO '/dev/blob' WITH (FORMAT csv, HEADER)",
                                    &out, &outlen, NULL),
                     PGLITE_OK);
    assert_string_equal(out, "id,name\n1,name 1\n2,name 2\n");
    pglite_free(out);

    /* bad data: PostgreSQL's error, nothing loaded */
    const char bad[] = "20001\tok\t1\nnot a number\tx\t2\n";
    assert_int_equal(pglite_copy_from(g_db, "COPY cp FROM '/dev/blob'", bad, sizeof bad - 1, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "22P02");
    assert_non_null(pglite_result_error(r)->context); /* "COPY cp, line 2, ..." */
    pglite_result_free(r);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM cp"), "10000");
    /* outside a copy call, /dev/blob reads empty */
    ok_exec(g_db, "COPY cp FROM '/dev/blob'");
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM cp"), "10000");
    free(data);
    assert_int_equal(pglite_copy_to(g_db, "COPY cp TO '/dev/blob'", NULL, &outlen, NULL),
                     PGLITE_MISUSE);
}

/* ---- transactions --------------------------------------------------------------- */

static void test_transactions(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE tx (id int PRIMARY KEY)");
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);
    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_INTRANS);
    assert_int_equal(pglite_begin(g_db), PGLITE_MISUSE); /* no nesting */
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "25001");
    ok_exec(g_db, "INSERT INTO tx VALUES (1)");
    assert_int_equal(pglite_commit(g_db), PGLITE_OK);
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);

    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    ok_exec(g_db, "INSERT INTO tx VALUES (2)");
    assert_int_equal(pglite_rollback(g_db), PGLITE_OK);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM tx"), "1");

    /* a failed statement: commit reports it and nothing stays open */
    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    ok_exec(g_db, "INSERT INTO tx VALUES (3)");
    assert_int_equal(pglite_exec(g_db, "INSERT INTO tx VALUES (1)", NULL, NULL), PGLITE_ERROR);
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_INERROR);
    assert_int_equal(pglite_commit(g_db), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "25P02");
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM tx"), "1");

    /* a commit that fails (deferred constraint) */
    ok_exec(g_db, "CREATE TABLE txd (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)");
    assert_int_equal(pglite_begin(g_db), PGLITE_OK);
    ok_exec(g_db, "INSERT INTO txd VALUES (1), (1)");
    assert_int_equal(pglite_commit(g_db), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "23505");
    assert_int_equal(pglite_transaction_status(g_db), PGLITE_TX_IDLE);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM txd"), "0");

    /* commit without a transaction; rollback without one is harmless */
    assert_int_equal(pglite_commit(g_db), PGLITE_MISUSE);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "25P01");
    assert_int_equal(pglite_rollback(g_db), PGLITE_OK);
}

/* ---- prepared statements and describe --------------------------------------------- */

static void test_prepared(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE ps (id int8, label text)");
    uint32_t types[2] = {20, 25};
    assert_int_equal(pglite_prepare(g_db, "ins", "INSERT INTO ps VALUES ($1, $2)", 2, types, NULL),
                     PGLITE_OK);
    for (int i = 0; i < 50; i++) {
        char id[16], label[32];
        snprintf(id, sizeof id, "%d", i);
        snprintf(label, sizeof label, "row %d", i);
        const char *v[2] = {id, label};
        pglite_result *r;
        assert_int_equal(pglite_query_prepared(g_db, "ins", 2, v, NULL, NULL, 0, &r), PGLITE_OK);
        assert_string_equal(pglite_result_cmd_tag(r), "INSERT 0 1");
        pglite_result_free(r);
    }
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM ps"), "50");
    /* binary parameter into a prepared statement */
    assert_int_equal(pglite_prepare(g_db, "get", "SELECT label FROM ps WHERE id = $1", 1, types,
                                    NULL),
                     PGLITE_OK);
    uint8_t be[8] = {0, 0, 0, 0, 0, 0, 0, 7};
    const char *bv[1] = {(const char *)be};
    int bl[1] = {8}, bf[1] = {1};
    pglite_result *r;
    assert_int_equal(pglite_query_prepared(g_db, "get", 1, bv, bl, bf, 0, &r), PGLITE_OK);
    assert_string_equal(pglite_result_getvalue(r, 0, 0), "row 7");
    pglite_result_free(r);
    /* the same name twice; an unknown name; deallocate */
    assert_int_equal(pglite_prepare(g_db, "ins", "SELECT 1", 0, NULL, &r), PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "42P05");
    pglite_result_free(r);
    assert_int_equal(pglite_deallocate(g_db, "ins"), PGLITE_OK);
    assert_int_equal(pglite_query_prepared(g_db, "ins", 0, NULL, NULL, NULL, 0, &r), PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "26000");
    pglite_result_free(r);
    /* a prepared statement with a syntax error */
    assert_int_equal(pglite_prepare(g_db, "bad", "SELEC 1", 0, NULL, NULL), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "42601");
}

static void test_describe(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE ds (id int4, name text, at timestamptz)");
    pglite_result *r;
    assert_int_equal(pglite_describe(g_db, "SELECT id, name AS label, at FROM ds WHERE id = $1 "
                                           "AND name = $2",
                                     &r),
                     PGLITE_OK);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_COMMAND_OK);
    assert_int_equal(pglite_result_ntuples(r), 0);
    assert_int_equal(pglite_result_nparams(r), 2);
    assert_int_equal(pglite_result_paramtype(r, 0), 23);
    assert_int_equal(pglite_result_paramtype(r, 1), 25);
    assert_int_equal(pglite_result_paramtype(r, 2), 0);
    assert_int_equal(pglite_result_nfields(r), 3);
    assert_string_equal(pglite_result_fname(r, 1), "label");
    assert_int_equal(pglite_result_ftype(r, 0), 23);
    assert_int_equal(pglite_result_ftype(r, 2), 1184);
    pglite_result_free(r);
    /* nothing was executed: a describe of an INSERT inserts nothing */
    assert_int_equal(pglite_describe(g_db, "INSERT INTO ds (id) VALUES ($1)", &r), PGLITE_OK);
    assert_int_equal(pglite_result_nparams(r), 1);
    assert_int_equal(pglite_result_nfields(r), 0);
    pglite_result_free(r);
    assert_string_equal(scalar(g_db, "SELECT count(*) FROM ds"), "0");
    /* a prepared statement */
    assert_int_equal(pglite_prepare(g_db, "d1", "SELECT $1::int8 * 2 AS twice", 0, NULL, NULL),
                     PGLITE_OK);
    assert_int_equal(pglite_describe_prepared(g_db, "d1", &r), PGLITE_OK);
    assert_int_equal(pglite_result_paramtype(r, 0), 20);
    assert_string_equal(pglite_result_fname(r, 0), "twice");
    pglite_result_free(r);
    assert_int_equal(pglite_describe(g_db, "SELECT * FROM nosuchtable", &r), PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "42P01");
    pglite_result_free(r);
}

/* ---- typed getters ---------------------------------------------------------------- */

static void check_typed(pglite_result *r) {
    int64_t i;
    double d;
    int b;
    const char *t;
    uint8_t *bytes;
    size_t n;
    assert_int_equal(pglite_result_get_int64(r, 0, 0, &i), PGLITE_OK);
    assert_int_equal(i, -12);
    assert_int_equal(pglite_result_get_int64(r, 0, 1, &i), PGLITE_OK);
    assert_int_equal(i, 2147483647);
    assert_int_equal(pglite_result_get_int64(r, 0, 2, &i), PGLITE_OK);
    assert_true(i == INT64_C(-9223372036854775807) - 1);
    assert_int_equal(pglite_result_get_double(r, 0, 3, &d), PGLITE_OK);
    assert_true(d == 2.5);
    assert_int_equal(pglite_result_get_double(r, 0, 4, &d), PGLITE_OK);
    assert_true(d == 0.25);
    assert_int_equal(pglite_result_get_double(r, 0, 1, &d), PGLITE_OK); /* int as double */
    assert_true(d == 2147483647.0);
    assert_int_equal(pglite_result_get_bool(r, 0, 5, &b), PGLITE_OK);
    assert_int_equal(b, 1);
    assert_int_equal(pglite_result_get_bool(r, 0, 6, &b), PGLITE_OK);
    assert_int_equal(b, 0);
    assert_int_equal(pglite_result_get_text(r, 0, 7, &t), PGLITE_OK);
    assert_string_equal(t, "héllo");
    assert_int_equal(pglite_result_get_bytea(r, 0, 8, &bytes, &n), PGLITE_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(bytes, "\0\1\xfe\xff", 4);
    pglite_free(bytes);
    /* NULL is reported, with zeroed outputs */
    i = 5;
    assert_int_equal(pglite_result_get_int64(r, 0, 9, &i), PGLITE_NULL);
    assert_int_equal(i, 0);
    t = "x";
    assert_int_equal(pglite_result_get_text(r, 0, 9, &t), PGLITE_NULL);
    assert_null(t);
    assert_int_equal(pglite_result_get_bytea(r, 0, 9, &bytes, &n), PGLITE_NULL);
    assert_null(bytes);
    assert_true(pglite_result_getisnull(r, 0, 9));
    assert_string_equal(pglite_result_getvalue(r, 0, 9), "");
    /* mismatches and ranges */
    assert_int_equal(pglite_result_get_int64(r, 0, 7, &i), PGLITE_MISMATCH);
    assert_int_equal(pglite_result_get_bool(r, 0, 0, &b), PGLITE_MISMATCH);
    assert_int_equal(pglite_result_get_int64(r, 1, 0, &i), PGLITE_RANGE);
    assert_int_equal(pglite_result_get_int64(r, 0, 10, &i), PGLITE_RANGE);
    assert_int_equal(pglite_result_get_int64(r, -1, 0, &i), PGLITE_RANGE);
    assert_int_equal(pglite_result_get_int64(NULL, 0, 0, &i), PGLITE_RANGE);
    assert_int_equal(pglite_result_get_int64(r, 0, 0, NULL), PGLITE_MISUSE);
    assert_null(pglite_result_getvalue(r, 5, 0));
    assert_null(pglite_result_fname(r, 10));
    assert_int_equal(pglite_result_ftype(r, -1), 0);
    assert_true(pglite_result_getisnull(r, 7, 7));
}

static void test_typed_getters(void **state) {
    (void)state;
    const char *sql = "SELECT -12::int2, 2147483647::int4, (-9223372036854775807 - 1)::int8, "
                      "2.5::float8, 0.25::float4, true, false, 'héllo'::text, "
                      "'\\x0001feff'::bytea, NULL::int";
    for (int fmt = 0; fmt <= 1; fmt++) {
        pglite_result *r;
        assert_int_equal(pglite_query(g_db, sql, 0, NULL, NULL, NULL, NULL, fmt, &r), PGLITE_OK);
        assert_int_equal(pglite_result_fformat(r, 0), fmt);
        check_typed(r);
        pglite_result_free(r);
    }
    /* escape-format bytea, numeric and JSON as text, arrays as text */
    ok_exec(g_db, "SET bytea_output = 'escape'");
    pglite_result *r = ok_query(g_db, "SELECT '\\x00415c'::bytea, 42::numeric, "
                                      "'{\"a\": [1, 2]}'::jsonb, ARRAY[1, 2, 3], 'NaN'::float8");
    uint8_t *bytes;
    size_t n;
    assert_int_equal(pglite_result_get_bytea(r, 0, 0, &bytes, &n), PGLITE_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(bytes, "\0A\\", 3);
    pglite_free(bytes);
    int64_t i;
    assert_int_equal(pglite_result_get_int64(r, 0, 1, &i), PGLITE_OK);
    assert_int_equal(i, 42);
    assert_string_equal(pglite_result_getvalue(r, 0, 2), "{\"a\": [1, 2]}");
    assert_string_equal(pglite_result_getvalue(r, 0, 3), "{1,2,3}");
    double d;
    assert_int_equal(pglite_result_get_double(r, 0, 4, &d), PGLITE_OK);
    assert_true(d != d);
    pglite_result_free(r);
    ok_exec(g_db, "RESET bytea_output");
}

/* ---- bad input ----------------------------------------------------------------- */

static void test_bad_input(void **state) {
    (void)state;
    /* settings that would hang an embedded backend are refused at open */
    const char *bad[][2] = {{"max_worker_processes=8", "background workers"},
                            {"IO_METHOD=worker", "I/O worker processes"}};
    for (int i = 0; i < 2; i++) {
        pglite_options o;
        pglite_options_init(&o);
        const char *g[] = {bad[i][0], NULL};
        o.gucs = g;
        pglite *db = NULL;
        assert_int_equal(pglite_open(NULL, &o, &db), PGLITE_CANTOPEN);
        assert_non_null(strstr(pglite_errmsg(db), "is not supported"));
        assert_non_null(strstr(pglite_errmsg(db), bad[i][1]));
        pglite_close(db);
    }
    pglite_result *r = (pglite_result *)1, **rs = (pglite_result **)1;
    int n = 7;
    /* NULL pointers */
    assert_int_equal(pglite_query(NULL, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_MISUSE);
    assert_null(r);
    assert_int_equal(pglite_exec(NULL, "SELECT 1", &rs, &n), PGLITE_MISUSE);
    assert_null(rs);
    assert_int_equal(n, 0);
    assert_int_equal(pglite_query(g_db, NULL, 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_MISUSE);
    assert_int_equal(pglite_result_status(r), PGLITE_RESULT_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "22023");
    assert_int_equal(pglite_result_error(r)->code, PGLITE_MISUSE);
    pglite_result_free(r);
    assert_int_equal(pglite_exec(g_db, NULL, NULL, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_query(g_db, "SELECT $1", 1, NULL, NULL, NULL, NULL, 0, &r),
                     PGLITE_MISUSE);
    pglite_result_free(r);
    const char *v[1] = {"x"};
    int fmt[1] = {1};
    assert_int_equal(pglite_query(g_db, "SELECT $1", 1, NULL, v, NULL, fmt, 0, NULL),
                     PGLITE_MISUSE); /* binary without a length */
    assert_int_equal(pglite_query(g_db, "SELECT 1", -1, NULL, NULL, NULL, NULL, 0, NULL),
                     PGLITE_MISUSE);
    assert_int_equal(pglite_query(g_db, "SELECT 1", 0, NULL, NULL, NULL, NULL, 2, NULL),
                     PGLITE_MISUSE);
    assert_int_equal(pglite_prepare(g_db, NULL, "SELECT 1", 0, NULL, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_describe(g_db, NULL, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_copy_from(g_db, NULL, "", 0, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_copy_from(g_db, "COPY x FROM '/dev/blob'", NULL, 5, NULL), PGLITE_MISUSE);
    assert_null(pglite_parameter_status(g_db, NULL));
    assert_int_equal(pglite_result_ntuples(NULL), 0);
    assert_null(pglite_result_error(NULL));
    assert_string_equal(pglite_result_cmd_tag(NULL), "");
    pglite_result_free(NULL);
    pglite_results_free(NULL, 3);
    assert_int_equal(pglite_close(NULL), PGLITE_OK);
    assert_null(pglite_error_field(NULL, 'C'));

    /* invalid UTF-8: PostgreSQL's own error, in both protocols */
    assert_int_equal(pglite_exec(g_db, "SELECT 'a\xff\xfe'", NULL, NULL), PGLITE_ERROR);
    assert_string_equal(pglite_last_error(g_db)->sqlstate, "22021");
    assert_int_equal(pglite_query(g_db, "SELECT 'a\xc3'", 0, NULL, NULL, NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "22021");
    pglite_result_free(r);
    const char *badv[1] = {"\xff"};
    assert_int_equal(pglite_query(g_db, "SELECT $1::text", 1, NULL, badv, NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "22021");
    pglite_result_free(r);

    /* a 10 MB statement: fine when valid, a syntax error when not */
    size_t big = 10u << 20;
    char *q = malloc(big + 64);
    strcpy(q, "SELECT length('");
    memset(q + 15, 'x', big);
    strcpy(q + 15 + big, "')");
    assert_int_equal(pglite_query(g_db, q, 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_OK);
    assert_string_equal(pglite_result_getvalue(r, 0, 0), "10485760");
    pglite_result_free(r);
    memset(q, '(', big);
    q[big] = 0;
    assert_int_equal(pglite_exec(g_db, q, NULL, NULL), PGLITE_ERROR);
    assert_true(strlen(pglite_last_error(g_db)->sqlstate) == 5);
    free(q);

    /* parameter count mismatch: PostgreSQL's protocol error */
    const char *one[1] = {"1"};
    assert_int_equal(pglite_query(g_db, "SELECT $1::int + $2::int", 1, NULL, one, NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    assert_string_equal(pglite_result_error(r)->sqlstate, "08P01");
    assert_non_null(strstr(pglite_result_error(r)->message, "supplies 1 parameters"));
    pglite_result_free(r);
    assert_string_equal(scalar(g_db, "SELECT 'still fine'"), "still fine");
}

static void test_closed_handle(void **state) {
    (void)state;
    pglite *db;
    assert_int_equal(pglite_open(NULL, NULL, &db), PGLITE_OK);
    assert_int_equal(pglite_close(db), PGLITE_OK);
    /* every call on the closed handle is refused without touching it */
    pglite_result *r = (pglite_result *)1;
    assert_int_equal(pglite_query(db, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0, &r), PGLITE_MISUSE);
    assert_null(r);
    assert_int_equal(pglite_exec(db, "SELECT 1", NULL, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_begin(db), PGLITE_MISUSE);
    assert_int_equal(pglite_listen(db, "c", on_notify, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_copy_from(db, "COPY t FROM '/dev/blob'", "", 0, NULL), PGLITE_MISUSE);
    assert_int_equal(pglite_transaction_status(db), -1);
    assert_int_equal(pglite_errcode(db), PGLITE_MISUSE);
    assert_non_null(strstr(pglite_errmsg(db), "not open"));
    assert_int_equal(pglite_close(db), PGLITE_MISUSE);
    pglite_interrupt(db);
    /* a pointer that never was a handle */
    pglite *fake = (pglite *)&r;
    assert_int_equal(pglite_exec(fake, "SELECT 1", NULL, NULL), PGLITE_MISUSE);
}

/* ---- threads ----------------------------------------------------------------------- */

typedef struct {
    pglite *db;
    int id, failures;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 100; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", w->id);
        snprintf(b, sizeof b, "%d", i);
        const char *v[2] = {a, b};
        pglite_result *r;
        if (pglite_query(w->db, "INSERT INTO th VALUES ($1, $2) RETURNING thread", 2, NULL, v, NULL,
                         NULL, 0, &r) != PGLITE_OK ||
            strcmp(pglite_result_getvalue(r, 0, 0), a) != 0)
            w->failures++;
        pglite_result_free(r);
    }
    return NULL;
}

static void test_threads_share_a_handle(void **state) {
    (void)state;
    ok_exec(g_db, "CREATE TABLE th (thread int, i int, PRIMARY KEY (thread, i))");
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){g_db, i, 0};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_string_equal(scalar(g_db, "SELECT count(*) || '/' || count(DISTINCT thread) FROM th"),
                        "400/4");
}

static void *interrupt_later(void *arg) {
    struct timespec d = {0, 300 * 1000 * 1000};
    nanosleep(&d, NULL);
    pglite_interrupt(arg);
    return NULL;
}

static void test_interrupt(void **state) {
    (void)state;
    pthread_t th;
    pthread_create(&th, NULL, interrupt_later, g_db);
    pglite_result *r;
    assert_int_equal(pglite_query(g_db, "SELECT pg_sleep(20)", 0, NULL, NULL, NULL, NULL, 0, &r),
                     PGLITE_ERROR);
    pthread_join(th, NULL);
    assert_string_equal(pglite_result_error(r)->sqlstate, "57014");
    pglite_result_free(r);
    assert_string_equal(scalar(g_db, "SELECT 'after'"), "after");
    pglite_interrupt(g_db); /* nothing running: no effect */
    assert_string_equal(scalar(g_db, "SELECT 'again'"), "again");
}

static void close_in_callback(void *ctx, const pglite_error *e) {
    (void)e;
    int *rc = ctx;
    *rc = pglite_close(g_db);
}

static void test_close_from_callback_refused(void **state) {
    (void)state;
    int rc = -1;
    pglite_set_notice_handler(g_db, close_in_callback, &rc);
    ok_exec(g_db, "DO $$BEGIN RAISE NOTICE 'x'; END$$");
    pglite_set_notice_handler(g_db, NULL, NULL);
    assert_int_equal(rc, PGLITE_MISUSE);
    assert_string_equal(scalar(g_db, "SELECT 'open'"), "open");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_temporary_and_options),
        cmocka_unit_test(test_open_persistent_and_errors),
        cmocka_unit_test(test_second_open_and_busy),
        cmocka_unit_test(test_idle_handles),
        cmocka_unit_test(test_archives),
        cmocka_unit_test(test_binary_parameter),
        cmocka_unit_test(test_unique_violation),
        cmocka_unit_test(test_exec_script),
        cmocka_unit_test(test_exec_message),
        cmocka_unit_test(test_empty_query),
        cmocka_unit_test(test_notices),
        cmocka_unit_test(test_listen_notify),
        cmocka_unit_test(test_copy_roundtrip),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_prepared),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_typed_getters),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_closed_handle),
        cmocka_unit_test(test_threads_share_a_handle),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_close_from_callback_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
