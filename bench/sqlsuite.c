/* The SQL speed suite in-process, through the public API: one temporary
 * database, each file run with pglite_exec (statement by statement, as
 * psql -f sends it) or pglite_exec_message (the file as one Query message,
 * as PGlite's db.exec() sends it). Prints "file<TAB>ms" per file, then
 * "#open<TAB>ms" (pglite_open of the temporary database to the answer of
 * its first query) and "#rss<TAB>kB" (VmHWM). Stops at the first error
 * (exit 1).
 *
 *   sqlsuite [--durable] [--message] [--root DIR] FILE...
 *
 * Without --durable the database has relaxed durability (fsync and
 * synchronous_commit off), as the other systems in that column. With
 * --root the database is a persistent one made in DIR (a temporary one
 * lives in /dev/shm, where fsync costs nothing: the durable column puts
 * every system on the same disk). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pglite.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    int durable = 0, message = 0, first = 1;
    const char *root = NULL;
    for (; first < argc && !strncmp(argv[first], "--", 2); first++) {
        if (!strcmp(argv[first], "--durable"))
            durable = 1;
        else if (!strcmp(argv[first], "--message"))
            message = 1;
        else if (!strcmp(argv[first], "--root") && first + 1 < argc)
            root = argv[++first];
        else {
            fprintf(stderr, "usage: sqlsuite [--durable] [--message] [--root DIR] FILE...\n");
            return 2;
        }
    }
    pglite_options o;
    pglite_options_init(&o);
    o.relaxed_durability = !durable;
    double t0 = now_ms();
    pglite *db;
    if (pglite_open(root, &o, &db) != PGLITE_OK) {
        fprintf(stderr, "sqlsuite: %s\n", db ? pglite_errmsg(db) : "cannot open");
        return 1;
    }
    if (pglite_exec(db, "SELECT 1", NULL, NULL) != PGLITE_OK) {
        fprintf(stderr, "sqlsuite: %s\n", pglite_errmsg(db));
        return 1;
    }
    double open_ms = now_ms() - t0;
    for (int i = first; i < argc; i++) {
        char *sql = slurp(argv[i]);
        if (!sql) {
            fprintf(stderr, "sqlsuite: cannot read %s\n", argv[i]);
            return 1;
        }
        double s = now_ms();
        int rc = message ? pglite_exec_message(db, sql, NULL, NULL)
                         : pglite_exec(db, sql, NULL, NULL);
        double ms = now_ms() - s;
        free(sql);
        if (rc != PGLITE_OK) {
            const pglite_error *e = pglite_last_error(db);
            fprintf(stderr, "%s: %s %s\n", argv[i], e && e->sqlstate ? e->sqlstate : "",
                    pglite_errmsg(db));
            return 1;
        }
        const char *base = strrchr(argv[i], '/');
        printf("%s\t%.1f\n", base ? base + 1 : argv[i], ms);
        fflush(stdout);
    }
    printf("#open\t%.1f\n", open_ms);
    if (pglite_close(db) != PGLITE_OK)
        return 1;
    printf("#rss\t%ld\n", vm_hwm_kb());
    return 0;
}
