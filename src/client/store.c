/* Databases for handles: the data directory through the cluster layer
 * (template copies, initdb, validation, the data-directory lock,
 * temporaries, loading an archive before the open), and the registry of
 * the ones this process has open, each with its cluster's first backend,
 * so that a second open of a directory is another session on the same
 * cluster, as a second connection to a server would be. */
#define _GNU_SOURCE
#include "client/client.h"

#include "cluster/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void store_close(store *s);

static int store_open(store *s, const char *path, const pglite_options *o, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    cluster_options co = {.path = path, .fresh = o->fresh,
                          .no_template_cache = o->no_template_cache};
    char *target = NULL;
    if (o->load_archive) {
        /* A temporary database from an archive is a directory of ours,
         * opened as a persistent one and removed on close. */
        if (!path) {
            const char *base = getenv("TMPDIR");
            if (asprintf(&s->tmp_root, "%s/pglite-load-XXXXXX", base && *base ? base : "/tmp") < 0) {
                s->tmp_root = NULL;
                snprintf(err, errlen, "out of memory");
                return PGLITE_NOMEM;
            }
            if (!mkdtemp(s->tmp_root)) {
                snprintf(err, errlen, "cannot create a temporary directory %s: %s", s->tmp_root,
                         strerror(errno));
                store_close(s);
                return PGLITE_CANTOPEN;
            }
            if (asprintf(&target, "%s/db", s->tmp_root) < 0) {
                store_close(s);
                snprintf(err, errlen, "out of memory");
                return PGLITE_NOMEM;
            }
            co.path = target;
        }
        int rc = archive_load(o->load_archive, co.path, err, errlen);
        if (rc != PGLITE_OK) {
            free(target);
            store_close(s);
            return rc;
        }
    }
    cluster *c = NULL;
    char msg[2048];
    int r = cluster_open(&co, &c, msg, sizeof msg);
    free(target);
    if (r != 0) {
        snprintf(err, errlen, "%s", msg);
        store_close(s);
        return client_status(r);
    }
    s->cluster = c;
    s->temporary = cluster_is_temporary(c) || s->tmp_root;
    s->dir = strdup(cluster_data_dir(c));
    if (!s->dir) {
        store_close(s);
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    return PGLITE_OK;
}

static void store_close(store *s) {
    cluster_close(s->cluster); /* unlocks; removes a temporary cluster */
    cluster_rmtree(s->tmp_root);
    free(s->tmp_root);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

/* ---- the registry ------------------------------------------------------------
 * g_open serialises opening and closing clusters (two threads opening the
 * same new directory must not both start it); g_reg guards the list and
 * the reference counts. */
static pthread_mutex_t g_open = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_reg = PTHREAD_MUTEX_INITIALIZER;
static shared_db *g_shared;

/* The open database in directory path, with a reference taken, or NULL. */
static shared_db *find_open(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    shared_db *hit = NULL;
    pthread_mutex_lock(&g_reg);
    for (shared_db *d = g_shared; d && !hit; d = d->next)
        if (d->dev == st.st_dev && d->ino == st.st_ino && d->owner == getpid()) {
            d->refs++;
            hit = d;
        }
    pthread_mutex_unlock(&g_reg);
    return hit;
}

void shared_ref(shared_db *sh) {
    pthread_mutex_lock(&g_reg);
    sh->refs++;
    pthread_mutex_unlock(&g_reg);
}

int shared_open(const char *path, const pglite_options *o, shared_db **out, int *started,
                char *err, size_t errlen) {
    *out = NULL;
    *started = 0;
    pthread_mutex_lock(&g_open);
    shared_db *d = find_open(path);
    if (d) {
        pthread_mutex_unlock(&g_open);
        const char *why = NULL;
        if (o->load_archive)
            why = "load_archive: the database is open already in this process";
        else if (!o->relaxed_durability != !d->relaxed_durability)
            why = d->relaxed_durability
                      ? "the database is open already in this process with relaxed_durability, "
                        "which is the cluster's (fsync): open it with relaxed_durability too"
                      : "the database is open already in this process without "
                        "relaxed_durability, which is the cluster's (fsync): open it without";
        if (why) {
            shared_close(d);
            snprintf(err, errlen, "%s", why);
            return PGLITE_MISUSE;
        }
        *out = d;
        return PGLITE_OK;
    }
    d = calloc(1, sizeof *d);
    if (!d) {
        pthread_mutex_unlock(&g_open);
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    int rc = store_open(&d->st, path, o, err, errlen);
    struct stat st;
    if (rc == PGLITE_OK && stat(d->st.dir, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", d->st.dir, strerror(errno));
        rc = PGLITE_CANTOPEN;
    }
    if (rc != PGLITE_OK) {
        store_close(&d->st);
        free(d);
        pthread_mutex_unlock(&g_open);
        return rc;
    }
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    d->owner = getpid();
    d->relaxed_durability = o->relaxed_durability;
    /* The cluster's first backend, as the bootstrap superuser: the
     * handles' sessions are clones of it (the settings are the cluster's:
     * the clones inherit them). */
    backend_options bo = {.data_dir = d->st.dir,
                          .gucs = o->gucs,
                          .debug = o->debug,
                          .relaxed_durability = o->relaxed_durability,
                          .sessions = 1};
    rc = backend_start(&bo, &d->first, err, errlen);
    if (rc == 0 && backend_park(d->first) != 0) {
        snprintf(err, errlen, "cannot start the thread that takes the backends' signals");
        rc = PGL_EFAIL;
    }
    if (rc != 0) {
        backend_close(d->first);
        store_close(&d->st);
        free(d);
        pthread_mutex_unlock(&g_open);
        return client_status(rc);
    }
    d->refs = 1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_lock(&g_reg);
    d->next = g_shared;
    g_shared = d;
    pthread_mutex_unlock(&g_reg);
    pthread_mutex_unlock(&g_open);
    *out = d;
    *started = 1;
    return PGLITE_OK;
}

void shared_close(shared_db *sh) {
    if (!sh)
        return;
    pthread_mutex_lock(&g_open);
    pthread_mutex_lock(&g_reg);
    int last = --sh->refs == 0;
    if (last)
        for (shared_db **pp = &g_shared; *pp; pp = &(*pp)->next)
            if (*pp == sh) {
                *pp = sh->next;
                break;
            }
    pthread_mutex_unlock(&g_reg);
    if (last) {
        backend_close(sh->first); /* the shutdown checkpoint */
        for (int i = 0; i < sh->nold; i++)
            backend_close(sh->old_firsts[i]);
        free(sh->old_firsts);
        pthread_mutex_destroy(&sh->mu);
        store_close(&sh->st);     /* unlocks; removes a temporary one */
        free(sh);
    }
    pthread_mutex_unlock(&g_open);
}

backend *shared_first(shared_db *sh, char *err, size_t errlen) {
    char buf[512];
    if (!err) {
        err = buf;
        errlen = sizeof buf;
    }
    pthread_mutex_lock(&sh->mu);
    backend *f = sh->first;
    if (backend_crashed(f)) {
        /* As the postmaster after a crash: start again with recovery. The
         * old one stays allocated until the database closes (a server
         * may be using it at this moment). */
        backend **n = realloc(sh->old_firsts, (size_t)(sh->nold + 1) * sizeof *n);
        backend *nb = NULL;
        if (!n) {
            snprintf(err, errlen, "out of memory");
            f = NULL;
        } else if (sh->old_firsts = n, backend_restart(f, &nb, err, errlen) != 0 ||
                   backend_park(nb) != 0) {
            backend_close(nb);
            f = NULL;
        } else {
            fprintf(stderr, "pglite: %s: a backend crashed; started again with crash recovery\n",
                    sh->st.dir);
            sh->old_firsts[sh->nold++] = f;
            sh->first = f = nb;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return f;
}
