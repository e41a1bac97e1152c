/* Data directories for handles: a new temporary one, or a persistent one
 * created on first open. */
#define _GNU_SOURCE
#include "client/client.h"

#include "cluster/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rmtree(const char *p) {
    if (p)
        nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* 1 empty, 0 not empty, -1 cannot read. */
static int dir_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

static int create_db(const char *dir, char *err, size_t errlen) {
    char msg[8192];
    if (cluster_initdb(dir, NULL, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "initdb failed in %s: %s", dir, msg);
        return PGLITE_CANTOPEN;
    }
    return PGLITE_OK;
}

int store_open(store *s, const char *path, const pglite_options *o, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (o->load_archive) {
        snprintf(err, errlen, "load_archive is not supported yet");
        return PGLITE_CANTOPEN;
    }
    if (!path) {
        const char *base = getenv("TMPDIR");
        if (asprintf(&s->tmp_root, "%s/pglite-db-XXXXXX", base && *base ? base : "/tmp") < 0) {
            s->tmp_root = NULL;
            snprintf(err, errlen, "out of memory");
            return PGLITE_NOMEM;
        }
        if (!mkdtemp(s->tmp_root)) {
            snprintf(err, errlen, "cannot create a temporary directory %s: %s", s->tmp_root,
                     strerror(errno));
            free(s->tmp_root);
            s->tmp_root = NULL;
            return PGLITE_CANTOPEN;
        }
        s->temporary = 1;
        s->dir = strdup(s->tmp_root);
        if (!s->dir) {
            store_close(s);
            snprintf(err, errlen, "out of memory");
            return PGLITE_NOMEM;
        }
        int rc = create_db(s->dir, err, errlen);
        if (rc)
            store_close(s);
        return rc;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || mkdir(path, 0700) != 0) {
            snprintf(err, errlen, "cannot create the data directory %s: %s", path,
                     strerror(errno));
            return PGLITE_CANTOPEN;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        return PGLITE_CANTOPEN;
    }
    s->dir = strdup(path);
    if (!s->dir) {
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    char pv[4096];
    snprintf(pv, sizeof pv, "%s/PG_VERSION", path);
    if (access(pv, F_OK) == 0)
        return PGLITE_OK;
    int e = dir_empty(path);
    if (e != 1) {
        snprintf(err, errlen, "%s is %s", path,
                 e < 0 ? "not readable" : "not empty and holds no data directory (no PG_VERSION)");
        store_close(s);
        return PGLITE_CANTOPEN;
    }
    chmod(path, 0700);
    int rc = create_db(path, err, errlen);
    if (rc)
        store_close(s);
    return rc;
}

void store_close(store *s) {
    if (s->temporary)
        rmtree(s->tmp_root);
    free(s->tmp_root);
    free(s->dir);
    memset(s, 0, sizeof *s);
}
