/* Data directories for handles, through the cluster layer (template
 * copies, initdb, validation, the data-directory lock, temporaries), plus
 * loading an archive before the open. */
#define _GNU_SOURCE
#include "client/client.h"

#include "cluster/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int store_open(store *s, const char *path, const pglite_options *o, char *err, size_t errlen) {
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

void store_close(store *s) {
    cluster_close(s->cluster); /* unlocks; removes a temporary cluster */
    cluster_rmtree(s->tmp_root);
    free(s->tmp_root);
    free(s->dir);
    memset(s, 0, sizeof *s);
}
