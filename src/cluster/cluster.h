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

#include "cluster/status.h"

#include <stddef.h>

#include "engine/engine.h"

/* Where the unpacked runtime tree is (the directory holding pglite/):
 * $PGLITE_RUNTIME_DIR if set, else the build's tree. */
const char *cluster_runtime_tree(void);

typedef struct cluster_tree {
    char *data_dir; /* host data directory for /pglite/data, or NULL */
    char *scratch;  /* host directory with this instance's tmp/ and home/ */
    int owner;      /* 1 + the fd of its .owner file, locked while it lives; 0 none */
} cluster_tree;

/* Build the guest tree. data_dir may be NULL (no /pglite/data). Returns 0,
 * or -1 with a message in err. The scratch directory's .owner file is
 * locked (flock) while the tree lives; at a process's first tree, the
 * scratch directories of processes that ended without removing theirs
 * (killed, crashed), whose lock is free, are removed. */
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

/* A clone of img (engine_clone) over tree t, stdio as above. */
engine *cluster_engine_clone(cluster_tree *t, const engine_image *img, int in_fd, int out_fd,
                             int err_fd, char *err, size_t errlen);

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

/* ---- data directories (datadir.c) ---------------------------------------
 *
 * Errors: every function returning int returns 0, or -1 with a message in
 * err (errlen bytes); nothing aborts on bad input. */

/* The prepared template data directory: made once by cluster_initdb and
 * kept in the cache ($PGLITE_CACHE_DIR, else $XDG_CACHE_HOME/pglite, else
 * $HOME/.cache/pglite) as template-<key>, key = SHA-256 of the template
 * format, the pinned runtime (package, version and integrity of
 * runtime.lock: a template made by one runtime release is never used by
 * another) and the tree's postgres.bki. Made atomically (initdb in
 * template-<key>.tmp-<pid>, then rename) and trusted only if complete
 * (PG_VERSION 18, an 8192-byte global/pg_control, the marker written
 * last); a damaged one is removed with a warning on stderr and rebuilt.
 * With an unwritable cache, a process-local template under $TMPDIR is used.
 * Writes the path into out (n bytes). Thread-safe. */
int cluster_template_path(char *out, size_t n, char *err, size_t errlen);

/* Copy the data directory from into to, which must not exist (it is made,
 * with missing parents) or be an empty directory. Files by reflink or
 * copy_file_range when the filesystem can, else read/write; directories and
 * files keep their modes; symbolic links are copied as links, never
 * followed; sockets, fifos and devices are skipped, as are the top-level
 * postmaster.pid, pglite.lock and the template marker. On failure to is
 * left as it was (gone or empty). */
int cluster_copy_tree(const char *from, const char *to, char *err, size_t errlen);

/* Remove path and everything below it, without following links, as much
 * of it as can be removed. 0 if path is gone (or was never there), -1 if
 * something is left. NULL is a no-op. */
int cluster_rmtree(const char *path);

/* An opened data directory, locked for this handle until cluster_close. */
typedef struct cluster cluster;

typedef struct cluster_options {
    const char *path;      /* data directory; NULL = temporary database */
    int fresh;             /* create by running initdb instead of copying the template */
    int no_template_cache; /* don't use/make the cached template (always initdb) */
} cluster_options;

/* Open (or create) a data directory; o may be NULL (a temporary database).
 * - path missing or an empty directory: created (mkdir -p, 0700) as a copy
 *   of the template, or by initdb when fresh or no_template_cache. The
 *   cluster is built in path/.pglite-new and moved into place with
 *   PG_VERSION last; an interrupted creation (path/.pglite-incomplete) is
 *   redone by the next open.
 * - path holds a cluster (PG_VERSION): opened as it is, never rewritten.
 *   It must be PostgreSQL 18, with an 8192-byte global/pg_control, the
 *   subdirectories base, global, pg_wal, pg_xact and pg_multixact, and a
 *   mode giving the owner rwx; otherwise the error names the path and the
 *   problem, and nothing in the directory is changed.
 * - path non-empty without PG_VERSION, or not a directory: an error,
 *   nothing touched.
 * The directory is locked with an open-file-description lock on
 * path/pglite.lock (holding the pid): a second open, from this process or
 * another, fails at once with "data directory X is in use by process PID".
 * A lock of a dead process is gone with it; its stale postmaster.pid is
 * then removed (one naming this directory for a live native PostgreSQL
 * server is an error instead).
 * Temporary (path NULL): a private copy under
 * $TMPDIR/pglite-tmp-<pid>-<random>/db-N of this process's copy of the
 * template, removed by cluster_close; leftovers of dead processes are
 * removed at the first temporary open. Thread-safe.
 * Returns 0, or a negative pgl_status with the message in err: PGL_EBUSY
 * when the directory is in use (this or another process, or a native
 * PostgreSQL server), PGL_ENOMEM, else PGL_EFAIL. */
int cluster_open(const cluster_options *o, cluster **out, char *err, size_t errlen);

/* The host data directory of c (valid until cluster_close). */
const char *cluster_data_dir(const cluster *c);

/* 1 if c is a temporary database (removed on close), else 0. */
int cluster_is_temporary(const cluster *c);

/* Release the lock and, for a temporary database, remove its directory.
 * NULL is a no-op. */
void cluster_close(cluster *c);

#endif
