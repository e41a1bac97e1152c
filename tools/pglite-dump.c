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
 * the dump goes to stdout. A -d/--dbname connection string (a URI or
 * key=value pairs, as libpq takes them) names the server too: its host and
 * port are read here, where to connect being the host's (pglite's libc
 * leaves connect() to it), and the string goes to pg_dump as it is. */
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

/* %XX decoding in place (a URI's components). */
static void percent_decode(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && r[1] && r[2] && sscanf(r + 1, "%1x%1x", (unsigned *)&hi,
                                                      (unsigned *)&lo) == 2) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* host and port of a libpq connection string: postgresql://[user[:pw]@]
 * [host][:port][/db][?host=..&port=..] or "host=... port=..." (values may
 * be single-quoted). The first host of a list. Writes only what it finds. */
static void conninfo_target(const char *ci, char *host, size_t hn, char *port, size_t pn) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", ci);
    if (!strncmp(buf, "postgresql://", 13) || !strncmp(buf, "postgres://", 11)) {
        char *p = strstr(buf, "://") + 3;
        char *q = strchr(p, '?');
        if (q)
            *q++ = '\0';
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        char *at = strrchr(p, '@');
        if (at)
            p = at + 1;
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        char *colon = p[0] == '[' ? strstr(p, "]:") : strrchr(p, ':');
        if (colon) {
            if (p[0] == '[')
                colon++;
            *colon = '\0';
            snprintf(port, pn, "%s", colon + 1);
        }
        if (p[0] == '[') {
            p++;
            char *e = strchr(p, ']');
            if (e)
                *e = '\0';
        }
        if (*p) {
            percent_decode(p);
            snprintf(host, hn, "%s", p);
        }
        for (char *kv = q ? strtok(q, "&") : NULL; kv; kv = strtok(NULL, "&")) {
            char *eq = strchr(kv, '=');
            if (!eq)
                continue;
            *eq = '\0';
            percent_decode(eq + 1);
            if (!strcmp(kv, "host"))
                snprintf(host, hn, "%s", eq + 1);
            else if (!strcmp(kv, "port"))
                snprintf(port, pn, "%s", eq + 1);
        }
        return;
    }
    if (!strchr(buf, '='))
        return; /* a database name */
    for (char *p = buf; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t kl = (size_t)(p - k);
        while (*p == ' ')
            p++;
        if (*p != '=')
            return;
        p++;
        while (*p == ' ')
            p++;
        char val[1024];
        size_t vl = 0;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vl + 1 < sizeof val)
                    val[vl++] = *p;
            }
            if (*p)
                p++;
        } else {
            for (; *p && *p != ' '; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vl + 1 < sizeof val)
                    val[vl++] = *p;
            }
        }
        val[vl] = '\0';
        char *comma = strchr(val, ',');
        if (comma)
            *comma = '\0';
        if (kl == 4 && !strncmp(k, "host", 4))
            snprintf(host, hn, "%s", val);
        else if (kl == 4 && !strncmp(k, "port", 4))
            snprintf(port, pn, "%.60s", val);
    }
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
        /* libpq's order: the connection string, then -h/-p, then the
         * environment. */
        char chost[1024] = "", cport[64] = "";
        const char *ci = opt_value(argc, argv, 'd', "dbname");
        if (ci)
            conninfo_target(ci, chost, sizeof chost, cport, sizeof cport);
        const char *host = *chost ? chost : opt_value(argc, argv, 'h', "host");
        const char *port = *cport ? cport : opt_value(argc, argv, 'p', "port");
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
