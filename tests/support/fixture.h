/* Test helpers: a guest tree over the unpacked runtime, temp directories,
 * files captured as the guest's stdio. Header-only so each test program
 * stays one file. */
#ifndef PGLITE_TEST_FIXTURE_H
#define PGLITE_TEST_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "engine/engine.h"

static inline char *fx_mkdtemp(const char *tag) {
    char *p = NULL;
    const char *base = getenv("TMPDIR");
    if (asprintf(&p, "%s/pglite-test-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
        return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

/* The library's own (cluster/cluster.h), so tests clean up as it does. */
static inline void fx_rmtree(const char *p) { cluster_rmtree(p); }

/* Read a whole host file into a NUL-terminated string. */
static inline char *fx_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    if (b)
        b[n] = 0;
    return b;
}

static inline int fx_write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

/* Run postgres main over tree t with argv (argv[0] included); stdin from
 * in_path (or /dev/null); stdout and stderr captured into *out and *err. */
static inline engine_status fx_run_postgres(cluster_tree *t, int argc,
                                            const char *const *argv,
                                            const char *in_path, char **out,
                                            char **err, engine_result *res) {
    char op[4096], ep[4096];
    snprintf(op, sizeof op, "%s/stdout", t->scratch);
    snprintf(ep, sizeof ep, "%s/stderr", t->scratch);
    int o = open(op, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    engine_status s = cluster_run_postgres(t, argc, argv, in_path, o, e, res);
    close(o);
    close(e);
    if (out)
        *out = fx_slurp(op);
    if (err)
        *err = fx_slurp(ep);
    return s;
}

/* A new cluster in a fresh temporary directory: a copy of the cached
 * template (made by the real initdb once). NULL on failure, with the
 * reason on stderr. Free with fx_rmtree + free. */
static inline char *fx_new_cluster(const char *tag) {
    char tmpl[4096], err[16384];
    if (cluster_template_path(tmpl, sizeof tmpl, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    char *d = fx_mkdtemp(tag);
    if (!d)
        return NULL;
    if (chmod(d, 0700) != 0 || cluster_copy_tree(tmpl, d, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        fx_rmtree(d);
        free(d);
        return NULL;
    }
    return d;
}

#endif
