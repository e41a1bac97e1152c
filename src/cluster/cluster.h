/*
 * cluster: data directories and the guest tree a PostgreSQL instance sees.
 *
 * A cluster_tree is the guest file tree of DESIGN.md for one instance:
 * /pglite read-only on the unpacked runtime, /pglite/data read-write on the
 * data directory, private /tmp and /home/postgres, and the devices. The
 * cluster layer also makes data directories (cluster_bootstrap now; initdb,
 * templates and locks as they come).
 */
#ifndef PGLITE_CLUSTER_H
#define PGLITE_CLUSTER_H

#include <stddef.h>

#include "engine/engine.h"

/* Where the unpacked runtime tree is (the directory holding pglite/):
 * $PGLITE_RUNTIME_DIR if set, else the build's tree. */
const char *cluster_runtime_tree(void);

typedef struct cluster_tree {
    char *data_dir; /* host data directory for /pglite/data, or NULL */
    char *scratch;  /* host directory with this instance's tmp/ and home/ */
} cluster_tree;

/* Build the guest tree. data_dir may be NULL (no /pglite/data). Returns 0,
 * or -1 with a message in err. */
int cluster_tree_open(cluster_tree *t, const char *data_dir, char *err,
                      size_t errlen);
/* Remove the scratch directories and free the vfs. */
void cluster_tree_close(cluster_tree *t);

/* The environment PGlite's JS gives PostgreSQL (PGDATA, user, locale, TZ). */
const char *const *cluster_guest_env(void);

/* Run `postgres` main in a fresh instance over tree t: argv[0] included;
 * stdin from the host file in_path (or /dev/null); stdout and stderr to the
 * given host fds (or /dev/null when -1). */
engine_status cluster_run_postgres(cluster_tree *t, int argc,
                                   const char *const *argv, const char *in_path,
                                   int out_fd, int err_fd, engine_result *res);

/* A pglite.wasm instance over tree t, with env (NULL: cluster_guest_env)
 * and the given host fds as stdio (-1: /dev/null). NULL with err on
 * failure. */
engine *cluster_engine_new(cluster_tree *t, const char *const *env, int in_fd,
                           int out_fd, int err_fd, char *err, size_t errlen);

/* Make a bootstrap-only cluster in the existing empty directory data_dir
 * with `postgres --boot` and the runtime's postgres.bki: the catalogs and
 * built-in objects, none of initdb's later SQL steps. Returns 0, or -1 with
 * a message (including PostgreSQL's log) in err. */
int cluster_bootstrap(const char *data_dir, char *err, size_t errlen);

/* Run the real initdb (initdb.wasm driving postgres in-process) on the
 * existing empty directory data_dir, with PGlite's options (UTF8, C.UTF-8,
 * libc locale provider, trust) plus extra_args (NULL-terminated, may be
 * NULL). Returns 0, or -1 with initdb's and postgres' messages in err. */
int cluster_initdb(const char *data_dir, const char *const *extra_args,
                   char *err, size_t errlen);

#endif
