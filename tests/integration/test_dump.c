/* pglite_dump: PostgreSQL 18's pg_dump on a session of the database, and
 * the plain dump restored into a fresh database with the same rows and
 * the same schema. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../support/fixture.h"
#include "pglite.h"

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static int collect(void *ctx, const void *data, size_t len) {
    buf *b = ctx;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->n + len + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return 0;
}

static void ok(pglite *db, const char *sql) {
    pglite_result **rs = NULL;
    int n = 0;
    int rc = pglite_exec(db, sql, &rs, &n);
    if (rc != PGLITE_OK)
        fprintf(stderr, "%.200s: %s\n", sql, pglite_errmsg(db));
    assert_int_equal(rc, PGLITE_OK);
    pglite_results_free(rs, n);
}

static char *value(pglite *db, const char *sql) {
    pglite_result *r = NULL;
    int rc = pglite_query(db, sql, 0, NULL, NULL, NULL, NULL, 0, &r);
    if (rc != PGLITE_OK)
        fprintf(stderr, "%.200s: %s\n", sql, pglite_errmsg(db));
    assert_int_equal(rc, PGLITE_OK);
    assert_int_equal(pglite_result_ntuples(r), 1);
    const char *v = pglite_result_getvalue(r, 0, 0);
    char *s = strdup(v ? v : "(null)");
    pglite_result_free(r);
    return s;
}

static char *dump(pglite *db, const char *const *args) {
    buf b = {0};
    int rc = pglite_dump(db, args, collect, &b);
    if (rc != PGLITE_OK)
        fprintf(stderr, "pglite_dump: %s\n", pglite_errmsg(db));
    assert_int_equal(rc, PGLITE_OK);
    assert_non_null(b.p);
    return b.p;
}

/* psql's meta-commands (\restrict, \unrestrict) are psql's: a script for
 * pglite_exec goes without them. */
static void drop_meta_lines(char *s) {
    char *w = s;
    for (char *r = s; *r;) {
        char *nl = strchr(r, '\n');
        size_t len = nl ? (size_t)(nl - r + 1) : strlen(r);
        if (r[0] != '\\') {
            memmove(w, r, len);
            w += len;
        }
        r += len;
    }
    *w = '\0';
}

static const char *const SCHEMA =
    "CREATE EXTENSION hstore;"
    "CREATE SEQUENCE ticket_seq START 100 INCREMENT 7;"
    "CREATE TABLE customer (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  name text NOT NULL UNIQUE, attrs hstore, created timestamptz DEFAULT now());"
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL REFERENCES customer(id),"
    "  amount numeric(12,2), note text, payload bytea, doc jsonb, tags text[],"
    "  scores int[], at timestamptz, ticket int DEFAULT nextval('ticket_seq'));"
    "CREATE INDEX orders_customer_at ON orders (customer, at DESC);"
    "CREATE INDEX orders_doc ON orders USING gin (doc);"
    "CREATE TABLE audit (n serial PRIMARY KEY, order_id bigint, what text);"
    "CREATE FUNCTION log_order() RETURNS trigger LANGUAGE plpgsql AS $$"
    "BEGIN INSERT INTO audit(order_id, what) VALUES (NEW.id, TG_OP); RETURN NEW; END $$;"
    "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_order();"
    "CREATE VIEW big_orders AS SELECT id, customer, amount FROM orders WHERE amount > 500;"
    "CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n, sum(amount) AS total"
    "  FROM orders GROUP BY customer;"
    "INSERT INTO customer (name, attrs, created) SELECT 'c' || g, hstore('k', g::text),"
    "  timestamptz '2024-01-01 00:00+00' + g * interval '1 hour' FROM generate_series(1, 50) g;"
    "INSERT INTO orders (id, customer, amount, note, payload, doc, tags, scores, at)"
    "  SELECT g, 1 + g % 50, (g * 37 % 100000) / 100.0, CASE WHEN g % 7 = 0 THEN NULL ELSE"
    "  'note ' || g || E' \\u00e9\\t\\\\' END, decode(md5(g::text), 'hex'),"
    "  jsonb_build_object('g', g, 'odd', g % 2 = 1, 'l', jsonb_build_array(g, 'x')),"
    "  ARRAY['t' || g % 3, 'u'], ARRAY[g, -g], timestamptz '2024-06-01 12:00+02' + g * interval '1 min'"
    "  FROM generate_series(1, 10000) g;"
    "REFRESH MATERIALIZED VIEW per_customer;";

/* Every table's rows, in key order, as one md5 each. */
static char *rows_fingerprint(pglite *db) {
    return value(db,
                 "SELECT string_agg(x, ' ' ORDER BY x) FROM ("
                 " SELECT 'customer:' || md5(string_agg(t::text, ',' ORDER BY id)) x FROM customer t"
                 " UNION ALL SELECT 'orders:' || md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t"
                 " UNION ALL SELECT 'audit:' || md5(string_agg(t::text, ',' ORDER BY n)) FROM audit t"
                 " UNION ALL SELECT 'per_customer:' || md5(string_agg(t::text, ',' ORDER BY customer))"
                 "   FROM per_customer t"
                 " UNION ALL SELECT 'seq:' || last_value || is_called FROM ticket_seq"
                 " UNION ALL SELECT 'ext:' || string_agg(extname, ',' ORDER BY extname) FROM pg_extension"
                 ") s");
}

/* The schema as the catalogs describe it (what psql's \d shows). */
static char *schema_fingerprint(pglite *db) {
    return value(db,
                 "SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM ("
                 " SELECT format('col %s.%s %s %s %s %s', c.relname, a.attname,"
                 "   format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,"
                 "   pg_get_expr(d.adbin, d.adrelid)) x"
                 " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                 " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
                 " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                 " WHERE a.attnum > 0 AND NOT a.attisdropped"
                 " UNION ALL SELECT format('rel %s %s', relname, relkind) FROM pg_class c"
                 "   JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
                 " UNION ALL SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'"
                 " UNION ALL SELECT format('con %s %s', conname, pg_get_constraintdef(oid))"
                 "   FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                 " UNION ALL SELECT 'view ' || viewname || ' ' || definition FROM pg_views"
                 "   WHERE schemaname = 'public'"
                 " UNION ALL SELECT 'mat ' || matviewname || ' ' || definition FROM pg_matviews"
                 " UNION ALL SELECT 'fn ' || pg_get_functiondef(p.oid) FROM pg_proc p"
                 "   WHERE pronamespace = 'public'::regnamespace AND prokind = 'f'"
                 "   AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE objid = p.oid AND deptype = 'e')"
                 " UNION ALL SELECT 'trg ' || pg_get_triggerdef(oid) FROM pg_trigger"
                 "   WHERE NOT tgisinternal"
                 " UNION ALL SELECT format('seq %s %s %s', seqrelid::regclass, seqstart, seqincrement)"
                 "   FROM pg_sequence"
                 ") s");
}

static void test_plain_round_trip(void **state) {
    (void)state;
    pglite *src = NULL, *dst = NULL;
    assert_int_equal(pglite_open(NULL, NULL, &src), PGLITE_OK);
    ok(src, SCHEMA);
    char *rows = rows_fingerprint(src), *schema = schema_fingerprint(src);

    const char *args[] = {"--inserts", "--rows-per-insert=500", NULL};
    char *sql = dump(src, args);
    assert_non_null(strstr(sql, "-- Dumped from database version 18"));
    assert_non_null(strstr(sql, "CREATE EXTENSION IF NOT EXISTS hstore"));
    assert_non_null(strstr(sql, "CREATE TRIGGER orders_audit"));
    assert_non_null(strstr(sql, "CREATE MATERIALIZED VIEW public.per_customer"));
    assert_null(strstr(sql, "COPY public.orders"));
    assert_null(strstr(sql, "pg_attver")); /* PGlite's own column option: not for other servers */
    drop_meta_lines(sql);

    assert_int_equal(pglite_open(NULL, NULL, &dst), PGLITE_OK);
    ok(dst, sql);
    ok(dst, "RESET search_path"); /* the dump set it to '' for its session */
    char *rows2 = rows_fingerprint(dst), *schema2 = schema_fingerprint(dst);
    assert_string_equal(rows, rows2);
    assert_string_equal(schema, schema2);
    /* ... which the restored columns have again, as every new column here. */
    char *av = value(dst, "SELECT bool_and(attoptions::text LIKE '%pg_attver=%') FROM pg_attribute"
                          " WHERE attrelid = 'orders'::regclass AND attnum > 0");
    assert_string_equal(av, "t");
    free(av);
    /* The trigger came back working, after the data (no double audit). */
    char *n = value(dst, "SELECT count(*) FROM audit");
    assert_string_equal(n, "10000");
    ok(dst, "INSERT INTO orders (id, customer) VALUES (10001, 1)");
    char *n2 = value(dst, "SELECT count(*) FROM audit");
    assert_string_equal(n2, "10001");

    free(n);
    free(n2);
    free(rows);
    free(rows2);
    free(schema);
    free(schema2);
    free(sql);
    pglite_close(dst);
    pglite_close(src);
}

/* The custom format, restored by PostgreSQL 18's pg_restore (pglite-tools
 * ships none; the build of Debian's postgresql-18 that the fixture
 * setup/native_pg18 caches) through a server on the fresh database. */
static void test_custom_round_trip(void **state) {
    (void)state;
    const char *script = getenv("PGLITE_NATIVE_PG18");
    assert_non_null(script);
    char cmd[8192], bin[4096] = "";
    snprintf(cmd, sizeof cmd, "bash '%s' 2>/dev/null", script);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(bin, sizeof bin, p))
        bin[0] = '\0';
    pclose(p);
    bin[strcspn(bin, "\n")] = '\0';
    assert_true(bin[0] == '/');

    pglite *src = NULL, *dst = NULL;
    assert_int_equal(pglite_open(NULL, NULL, &src), PGLITE_OK);
    ok(src, SCHEMA);
    char *rows = rows_fingerprint(src), *schema = schema_fingerprint(src);
    char *dir = fx_mkdtemp("dumpfc");
    char file[4096];
    snprintf(file, sizeof file, "%s/all.dump", dir);
    /* -Z 0: that pg_restore is built without zlib. */
    const char *args[] = {"-Fc", "-Z", "0", "-f", file, NULL};
    assert_int_equal(pglite_dump(src, args, NULL, NULL), PGLITE_OK);

    assert_int_equal(pglite_open(NULL, NULL, &dst), PGLITE_OK);
    pglite_server *srv = NULL;
    assert_int_equal(pglite_server_start(dst, NULL, &srv), PGLITE_OK);
    snprintf(cmd, sizeof cmd, "'%s/pg_restore' --exit-on-error -d '%s' '%s'", bin,
             pglite_server_uri(srv), file);
    assert_int_equal(system(cmd), 0);
    pglite_server_stop(srv);
    char *rows2 = rows_fingerprint(dst), *schema2 = schema_fingerprint(dst);
    assert_string_equal(rows, rows2);
    assert_string_equal(schema, schema2);
    free(rows);
    free(rows2);
    free(schema);
    free(schema2);
    fx_rmtree(dir);
    free(dir);
    pglite_close(dst);
    pglite_close(src);
}

static void test_options(void **state) {
    (void)state;
    pglite *db = NULL;
    assert_int_equal(pglite_open(NULL, NULL, &db), PGLITE_OK);
    ok(db, "CREATE TABLE a (x int PRIMARY KEY); CREATE TABLE b (y text);"
           "INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES ('bee')");

    const char *schema_only[] = {"--schema-only", NULL};
    char *s = dump(db, schema_only);
    assert_non_null(strstr(s, "CREATE TABLE public.a"));
    assert_null(strstr(s, "COPY public."));
    assert_null(strstr(s, "bee"));
    free(s);

    const char *data_only[] = {"--data-only", "--inserts", NULL};
    s = dump(db, data_only);
    assert_null(strstr(s, "CREATE TABLE"));
    assert_non_null(strstr(s, "INSERT INTO public.b VALUES ('bee');"));
    free(s);

    const char *one[] = {"-t", "a", NULL};
    s = dump(db, one);
    assert_non_null(strstr(s, "CREATE TABLE public.a"));
    assert_null(strstr(s, "public.b"));
    free(s);

    /* Custom format: pg_dump's archive, starting with its magic. */
    const char *custom[] = {"-Fc", "-Z", "0", NULL};
    buf b = {0};
    assert_int_equal(pglite_dump(db, custom, collect, &b), PGLITE_OK);
    assert_true(b.n > 5 && !memcmp(b.p, "PGDMP", 5));
    assert_non_null(memmem(b.p, b.n, "bee", 3));
    free(b.p);
    b = (buf){0};

    /* -f and -Fd: host files through the guest's /out. */
    char *dir = fx_mkdtemp("dump");
    char file[4096], d[4096], toc[4200];
    snprintf(file, sizeof file, "%s/all.sql", dir);
    const char *to_file[] = {"-f", file, NULL};
    assert_int_equal(pglite_dump(db, to_file, NULL, NULL), PGLITE_OK);
    char *text = fx_slurp(file);
    assert_non_null(text);
    assert_non_null(strstr(text, "CREATE TABLE public.b"));
    free(text);
    snprintf(d, sizeof d, "%s/dirformat", dir);
    const char *to_dir[] = {"-Fd", "--file", d, NULL};
    assert_int_equal(pglite_dump(db, to_dir, NULL, NULL), PGLITE_OK);
    snprintf(toc, sizeof toc, "%s/toc.dat", d);
    struct stat st;
    assert_int_equal(stat(toc, &st), 0);

    /* pg_dump's own usage error, and a table that is not there. */
    const char *bad[] = {"--no-such-option", NULL};
    assert_int_equal(pglite_dump(db, bad, collect, &b), PGLITE_ERROR);
    assert_non_null(strstr(pglite_errmsg(db), "unrecognized option"));
    const char *missing[] = {"-t", "nope", NULL};
    assert_int_equal(pglite_dump(db, missing, collect, &b), PGLITE_ERROR);
    assert_non_null(strstr(pglite_errmsg(db), "no matching tables were found"));
    const char *nodir[] = {"-f", "/nonexistent-dir/x.sql", NULL};
    assert_int_equal(pglite_dump(db, nodir, NULL, NULL), PGLITE_ERROR);
    assert_non_null(strstr(pglite_errmsg(db), "No such file or directory"));
    /* -f - is pg_dump's stdout: the callback's. */
    const char *dash[] = {"-t", "a", "-f", "-", NULL};
    assert_int_equal(pglite_dump(db, dash, collect, &b), PGLITE_OK);
    assert_non_null(b.p);
    assert_non_null(strstr(b.p, "CREATE TABLE public.a"));
    /* And the handle goes on. */
    char *v = value(db, "SELECT count(*) FROM a");
    assert_string_equal(v, "2");
    free(v);
    free(b.p);
    fx_rmtree(dir);
    free(dir);
    pglite_close(db);
}

/* A writer commits (row, counter) pairs on another session while the dump
 * runs: the dump is one snapshot, so its rows match its counter. */
typedef struct writer {
    char *path;
    atomic_int stop;
    int commits;
} writer;

static void *write_loop(void *arg) {
    writer *w = arg;
    pglite *db = NULL;
    if (pglite_open(w->path, NULL, &db) != PGLITE_OK)
        return NULL;
    while (!atomic_load(&w->stop)) {
        if (pglite_exec(db, "BEGIN; INSERT INTO log SELECT n + 1 FROM counter;"
                            "UPDATE counter SET n = n + 1; COMMIT", NULL, NULL) != PGLITE_OK)
            break;
        w->commits++;
    }
    pglite_close(db);
    return NULL;
}

static void test_snapshot_beside_a_writer(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("dumpsnap");
    char path[4096];
    snprintf(path, sizeof path, "%s/db", dir);
    pglite *db = NULL;
    assert_int_equal(pglite_open(path, NULL, &db), PGLITE_OK);
    ok(db, "CREATE TABLE log (n int PRIMARY KEY); CREATE TABLE counter (n int);"
           "INSERT INTO counter VALUES (0); CREATE TABLE filler AS"
           " SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g");
    writer w = {.path = path};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
    while (1) { /* the writer is under way */
        char *v = value(db, "SELECT n FROM counter");
        int n = atoi(v);
        free(v);
        if (n >= 5)
            break;
    }
    const char *args[] = {"--data-only", "--inserts", "-t", "log", "-t", "counter", NULL};
    char *s = dump(db, args);
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    int rows = 0;
    for (const char *p = s; (p = strstr(p, "INSERT INTO public.log ")); p++)
        rows++;
    const char *c = strstr(s, "INSERT INTO public.counter VALUES (");
    assert_non_null(c);
    int counter = atoi(c + strlen("INSERT INTO public.counter VALUES ("));
    assert_true(rows >= 5);
    assert_int_equal(rows, counter);
    char *total = value(db, "SELECT n FROM counter");
    assert_true(atoi(total) >= counter); /* the writer went on meanwhile */
    printf("dump saw %d of %s commits\n", counter, total);
    free(total);
    free(s);
    pglite_close(db);
    fx_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_round_trip),
        cmocka_unit_test(test_custom_round_trip),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_snapshot_beside_a_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
