/* pglite-dump: PostgreSQL 18's pg_dump for pglite-c databases.
 *
 *   pglite-dump --root DIR [pg_dump options]   dump the database directory
 *                                              DIR, opened in this process
 *   pglite-dump [pg_dump options]              dump through a running server
 *                                              (pglite-proxy): -h/--host,
 *                                              -p/--port, PGHOST, PGPORT
 *
 * Every other option is pg_dump's own and goes to it unchanged (-Fp, -Fc,
 * -Fd, -Ft, --schema-only, --data-only, -t, -n, -f, -Z, --inserts, ...),
 * and so do its --help, its usage errors and its exit status. Without -f
 * the dump goes to stdout. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pglite.h>

static int to_stdout(void *ctx, const void *data, size_t len) {
    (void)ctx;
    return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

/* The value of a short/long option (-h X, -hX, --host X, --host=X). */
static const char *opt_value(int argc, char **argv, char s, const char *l) {
    const char *v = NULL;
    size_t ll = strlen(l);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            break;
        if (a[0] == '-' && a[1] == s && a[2])
            v = a + 2;
        else if (a[0] == '-' && a[1] == s && !a[2] && i + 1 < argc)
            v = argv[++i];
        else if (!strncmp(a, "--", 2) && !strncmp(a + 2, l, ll) && a[2 + ll] == '=')
            v = a + 3 + ll;
        else if (!strncmp(a, "--", 2) && !strcmp(a + 2, l) && i + 1 < argc)
            v = argv[++i];
    }
    return v;
}

int main(int argc, char **argv) {
    const char *root = NULL;
    const char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        fprintf(stderr, "pglite-dump: out of memory\n");
        return 1;
    }
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--root") && i + 1 < argc)
            root = argv[++i];
        else if (!strncmp(argv[i], "--root=", 7))
            root = argv[i] + 7;
        else if (!strcmp(argv[i], "--root")) {
            fprintf(stderr, "pglite-dump: option '--root' requires an argument\n"
                            "Try \"pglite-dump --help\" for more information.\n");
            return 1;
        } else
            args[n++] = argv[i];
    }
    args[n] = NULL;
    int rc;
    if (root) {
        char pv[4096];
        struct stat st;
        snprintf(pv, sizeof pv, "%s/PG_VERSION", root);
        if (stat(pv, &st) != 0) {
            fprintf(stderr, "pglite-dump: \"%s\" is not a database directory: %s\n", root,
                    strerror(errno));
            return 1;
        }
        pglite *db = NULL;
        if (pglite_open(root, NULL, &db) != PGLITE_OK) {
            fprintf(stderr, "pglite-dump: cannot open \"%s\": %s\n", root, pglite_errmsg(NULL));
            return 1;
        }
        rc = pglite_dump(db, args, to_stdout, NULL);
        if (rc != PGLITE_OK)
            fprintf(stderr, "%s\n", pglite_errmsg(db));
        pglite_close(db);
    } else {
        const char *host = opt_value(argc, argv, 'h', "host");
        const char *port = opt_value(argc, argv, 'p', "port");
        if (!host)
            host = getenv("PGHOST");
        if (!port)
            port = getenv("PGPORT");
        int p = port ? atoi(port) : 5432;
        rc = pglite_dump_server(host, p, args, to_stdout, NULL);
        if (rc != PGLITE_OK)
            fprintf(stderr, "%s\n", pglite_errmsg(NULL));
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "pglite-dump: could not write the output: %s\n", strerror(errno));
        rc = PGLITE_IOERR;
    }
    free(args);
    return rc == PGLITE_OK ? 0 : 1;
}
