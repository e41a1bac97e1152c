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

#include "engine/engine.h"
#include "vfs/vfs.h"

#ifndef PGLITE_RUNTIME_TREE
#error "PGLITE_RUNTIME_TREE must name the unpacked runtime tree"
#endif

static inline const char *fx_runtime_tree(void) {
    const char *t = getenv("PGLITE_RUNTIME_TREE");
    return t && *t ? t : PGLITE_RUNTIME_TREE;
}

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

static inline int fx_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static inline void fx_rmtree(const char *p) {
    if (p)
        nftw(p, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

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

/* A guest tree: /pglite read-only on the runtime, /pglite/data on data_dir
 * (if given), /tmp and /home/postgres on scratch dirs, the devices. */
typedef struct fx_guest {
    vfs *v;
    char *scratch; /* host dir holding tmp/ and home/ */
} fx_guest;

static inline int fx_guest_init(fx_guest *g, const char *data_dir) {
    memset(g, 0, sizeof *g);
    g->v = vfs_new();
    g->scratch = fx_mkdtemp("scratch");
    if (!g->v || !g->scratch)
        return -1;
    char tree[4096], tmp[4096], home[4096];
    snprintf(tree, sizeof tree, "%s/pglite", fx_runtime_tree());
    snprintf(tmp, sizeof tmp, "%s/tmp", g->scratch);
    snprintf(home, sizeof home, "%s/home", g->scratch);
    if (mkdir(tmp, 0700) != 0 || mkdir(home, 0700) != 0)
        return -1;
    if (vfs_mount(g->v, "/pglite", tree, VFS_RDONLY) != 0)
        return -1;
    if (data_dir && vfs_mount(g->v, "/pglite/data", data_dir, VFS_RDWR) != 0)
        return -1;
    if (vfs_mount(g->v, "/tmp", tmp, VFS_RDWR) != 0 ||
        vfs_mount(g->v, "/home/postgres", home, VFS_RDWR) != 0)
        return -1;
    if (vfs_add_device(g->v, "/dev/null", VFS_DEV_NULL) != 0 ||
        vfs_add_device(g->v, "/dev/urandom", VFS_DEV_URANDOM) != 0 ||
        vfs_add_device(g->v, "/dev/blob", VFS_DEV_BLOB) != 0)
        return -1;
    return 0;
}

static inline void fx_guest_fini(fx_guest *g) {
    vfs_free(g->v);
    fx_rmtree(g->scratch);
    free(g->scratch);
}

static const char *const fx_env[] = {
    "PGDATA=/pglite/data", "PGUSER=postgres", "PGDATABASE=template1",
    "HOME=/home/postgres", "USER=postgres", "LOGNAME=postgres",
    "PATH=/pglite/bin", "LANG=C.UTF-8", "TZ=UTC", "PGTZ=UTC",
    "PGCLIENTENCODING=UTF8", "ICU_DATA=/pglite/icu", NULL};

/* Run postgres main with argv (argv[0] included); stdin from in_path (or
 * /dev/null), stdout and stderr captured into *out and *err (malloc'd). */
static inline engine_status fx_run_postgres(fx_guest *g, int argc, const char *const *argv,
                                            const char *in_path, char **out, char **err,
                                            engine_result *res) {
    char op[4096], ep[4096];
    snprintf(op, sizeof op, "%s/stdout", g->scratch);
    snprintf(ep, sizeof ep, "%s/stderr", g->scratch);
    int in = in_path ? open(in_path, O_RDONLY | O_CLOEXEC) : -1;
    int o = open(op, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    abi_config cfg = {.vfs = g->v, .cwd = "/", .env = fx_env,
                      .stdin_fd = in, .stdout_fd = o, .stderr_fd = e};
    char msg[256];
    engine *en = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    if (in >= 0) close(in);
    close(o);
    close(e);
    if (!en) {
        memset(res, 0, sizeof *res);
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message, "%s", msg);
        return ENGINE_ERROR;
    }
    engine_status s = engine_main(en, argc, argv, res);
    engine_free(en);
    if (out) *out = fx_slurp(op);
    if (err) *err = fx_slurp(ep);
    return s;
}

/* Replace every occurrence of tok in *buf by val (as initdb does for the
 * BKI file's symbols). */
static inline int fx_replace(char **buf, const char *tok, const char *val) {
    size_t tl = strlen(tok), vl = strlen(val), n = 0;
    for (char *p = *buf; (p = strstr(p, tok)); p += tl)
        n++;
    if (!n)
        return 0;
    char *out = malloc(strlen(*buf) + n * vl + 1), *o = out;
    if (!out)
        return -1;
    const char *p = *buf, *q;
    while ((q = strstr(p, tok))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, val, vl);
        o += vl;
        p = q + tl;
    }
    strcpy(o, p);
    free(*buf);
    *buf = out;
    return 0;
}

/* A bootstrap-only cluster in data_dir, made with `postgres --boot` from
 * the runtime's postgres.bki. It has the catalogs and built-in objects but
 * none of initdb's later SQL steps: enough for single-user SQL tests of the
 * runtime before the cluster layer exists. */
static inline int fx_bootstrap(fx_guest *g, const char *data_dir, char **errout) {
    static const char *const dirs[] = {
        "global", "pg_wal", "pg_wal/archive_status", "pg_wal/summaries",
        "pg_commit_ts", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
        "pg_subtrans", "pg_twophase", "pg_multixact", "pg_multixact/members",
        "pg_multixact/offsets", "base", "base/1", "pg_replslot", "pg_tblspc",
        "pg_stat", "pg_stat_tmp", "pg_xact", "pg_logical",
        "pg_logical/snapshots", "pg_logical/mappings", NULL};
    char p[4096];
    for (int i = 0; dirs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", data_dir, dirs[i]);
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
    }
    static const char *const files[] = {"PG_VERSION", "base/1/PG_VERSION"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", data_dir, files[i]);
        if (fx_write_file(p, "18\n", 3) != 0)
            return -1;
    }
    static const char conf[] = "listen_addresses = ''\nmax_connections = 10\n"
                               "shared_buffers = 16MB\ndynamic_shared_memory_type = mmap\n"
                               "max_worker_processes = 0\nmax_wal_senders = 0\n";
    snprintf(p, sizeof p, "%s/postgresql.conf", data_dir);
    if (fx_write_file(p, conf, sizeof conf - 1) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/pg_hba.conf", data_dir);
    if (fx_write_file(p, "local all all trust\n", 20) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/pg_ident.conf", data_dir);
    if (fx_write_file(p, "", 0) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/pglite/share/postgresql/postgres.bki", fx_runtime_tree());
    char *bki = fx_slurp(p);
    if (!bki)
        return -1;
    static const char *const subst[][2] = {
        {"NAMEDATALEN", "64"}, {"SIZEOF_POINTER", "4"}, {"ALIGNOF_POINTER", "i"},
        {"FLOAT8PASSBYVAL", "false"}, {"POSTGRES", "'postgres'"},
        {"ENCODING", "6"}, {"LC_COLLATE", "'C'"}, {"LC_CTYPE", "'C'"},
        {"DATLOCALE", "_null_"}, {"ICU_RULES", "_null_"}, {"LOCALE_PROVIDER", "c"}};
    for (size_t i = 0; i < sizeof subst / sizeof subst[0]; i++)
        if (fx_replace(&bki, subst[i][0], subst[i][1]) != 0)
            return -1;
    snprintf(p, sizeof p, "%s/bki.in", g->scratch);
    int w = fx_write_file(p, bki, strlen(bki));
    free(bki);
    if (w != 0)
        return -1;
    const char *argv[] = {"/pglite/bin/postgres", "--boot", "-F", "-c",
                          "log_checkpoints=false", "-D", "/pglite/data"};
    engine_result r;
    char *out = NULL, *err = NULL;
    fx_run_postgres(g, 7, argv, p, &out, &err, &r);
    free(out);
    int ok = r.status == ENGINE_EXITED && r.exit_code == 0;
    if (errout)
        *errout = err;
    else
        free(err);
    return ok ? 0 : -1;
}

#endif
