/* pglite-run: boot the embedded runtime on a data directory and answer one
 * query (single-user mode). A stand-in for `make run` until pglite-proxy
 * serves clients.
 *
 *   pglite-run [-D DATADIR] [SQL]
 *
 * A missing or empty DATADIR becomes a new cluster (a copy of the cached
 * template made by initdb). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"

static void usage(FILE *f) {
    fprintf(f, "usage: pglite-run [-D DATADIR] [SQL]\n"
               "Runs SQL (default: SELECT version()) in an embedded PostgreSQL.\n");
}

int main(int argc, char **argv) {
    const char *data = "data/pglite-run";
    int opt;
    while ((opt = getopt(argc, argv, "D:h")) != -1) {
        switch (opt) {
        case 'D': data = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *sql = optind < argc ? argv[optind] : "SELECT version();";
    char path[4096], msg[16384];
    cluster_options co = {.path = data};
    cluster *c = NULL;
    if (cluster_open(&co, &c, msg, sizeof msg) != 0) {
        fprintf(stderr, "pglite-run: %s\n", msg);
        return 1;
    }
    char *abs = realpath(cluster_data_dir(c), NULL);
    cluster_tree t;
    if (!abs || cluster_tree_open(&t, abs, msg, sizeof msg) != 0) {
        fprintf(stderr, "pglite-run: %s\n", abs ? msg : strerror(errno));
        free(abs);
        cluster_close(c);
        return 1;
    }
    snprintf(path, sizeof path, "%s/query.sql", t.scratch);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n\n", sql) < 0 || fclose(f) != 0) {
        fprintf(stderr, "pglite-run: cannot write %s\n", path);
        cluster_tree_close(&t);
        cluster_close(c);
        free(abs);
        return 1;
    }
    /* No -O: system catalogs stay protected, as in PostgreSQL. No
     * checkpoint LOG lines on stderr around the answer. */
    const char *args[] = {"/pglite/bin/postgres", "--single", "-j", "-D",
                          "/pglite/data", "-c", "log_checkpoints=false", "template1"};
    engine_result r;
    cluster_run_postgres(&t, (int)(sizeof args / sizeof args[0]), args, path,
                         STDOUT_FILENO, STDERR_FILENO, &r);
    cluster_tree_close(&t);
    cluster_close(c);
    free(abs);
    if (r.status != ENGINE_EXITED || r.exit_code != 0) {
        fprintf(stderr, "pglite-run: %s\n", r.message);
        return 1;
    }
    return 0;
}
