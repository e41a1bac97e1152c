/* Guest trees and bootstrap clusters. */
#define _GNU_SOURCE
#include "cluster/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PGLITE_RUNTIME_TREE
#define PGLITE_RUNTIME_TREE "/usr/share/pglite/runtime"
#endif

const char *cluster_runtime_tree(void) {
    const char *t = getenv("PGLITE_RUNTIME_DIR");
    return t && *t ? t : PGLITE_RUNTIME_TREE;
}

static const char *const guest_env[] = {
    "PGDATA=/pglite/data", "PGUSER=postgres", "PGDATABASE=template1",
    "HOME=/home/postgres", "USER=postgres", "LOGNAME=postgres",
    "PATH=/pglite/bin", "PWD=/", "LANG=C.UTF-8", "LC_COLLATE=C.UTF-8",
    "LC_CTYPE=C.UTF-8", "TZ=UTC", "PGTZ=UTC", "PGCLIENTENCODING=UTF8",
    "ICU_DATA=/pglite/icu", NULL};

const char *const *cluster_guest_env(void) { return guest_env; }

#define SCRATCH_PREFIX "pglite-"
#define OWNER ".owner"

/* Lock scratch's .owner for as long as this process keeps the tree: made
 * locked under another name and renamed, so that no sweep ever finds it
 * unlocked. 1 + its fd, or 0. */
static int own_scratch(const char *scratch) {
    char tmp[4096 + 16], name[4096 + 16];
    snprintf(tmp, sizeof tmp, "%s/" OWNER ".new", scratch);
    snprintf(name, sizeof name, "%s/" OWNER, scratch);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, name) != 0) {
        close(fd);
        unlink(tmp);
        return 0;
    }
    return fd + 1;
}

/* Remove base's scratch directories (ours, by their name and owner) whose
 * process is gone: their .owner's lock is free. One without an .owner is
 * left alone (being made, or made before there were owners). At a
 * process's first tree. */
static void sweep_scratch(const char *base, const char *mine) {
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *de;
    char path[4096], owner[4096 + 16];
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, SCRATCH_PREFIX, strlen(SCRATCH_PREFIX)) != 0 ||
            strlen(de->d_name) != strlen(SCRATCH_PREFIX) + 6)
            continue;
        snprintf(path, sizeof path, "%s/%s", base, de->d_name);
        struct stat st;
        if (!strcmp(path, mine) || lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != geteuid())
            continue;
        snprintf(owner, sizeof owner, "%s/" OWNER, path);
        int fd = open(owner, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            cluster_rmtree(path); /* its process ended without removing it */
        close(fd);
    }
    closedir(d);
}

int cluster_tree_open(cluster_tree *t, const char *data_dir, char *err,
                      size_t errlen) {
    memset(t, 0, sizeof *t);
    if (data_dir && !(t->data_dir = strdup(data_dir))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    if (asprintf(&t->scratch, "%s/" SCRATCH_PREFIX "XXXXXX", base) < 0) {
        t->scratch = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!mkdtemp(t->scratch)) {
        snprintf(err, errlen, "cannot create a scratch directory %s: %s",
                 t->scratch, strerror(errno));
        free(t->scratch);
        t->scratch = NULL;
        return -1;
    }
    t->owner = own_scratch(t->scratch);
    /* once a process (a directory with many entries costs a look at each) */
    static atomic_flag swept = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&swept))
        sweep_scratch(base, t->scratch);
    char runtime[4096], tmp[4096], home[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    snprintf(tmp, sizeof tmp, "%s/tmp", t->scratch);
    snprintf(home, sizeof home, "%s/home", t->scratch);
    if (mkdir(tmp, 0700) != 0 || mkdir(home, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        cluster_tree_close(t);
        return -1;
    }
    struct stat st;
    if (stat(runtime, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "the runtime tree %s is missing (set PGLITE_RUNTIME_DIR)",
                 runtime);
        cluster_tree_close(t);
        return -1;
    }
    return 0;
}

void cluster_tree_close(cluster_tree *t) {
    cluster_rmtree(t->scratch);
    if (t->owner)
        close(t->owner - 1);
    t->owner = 0;
    free(t->scratch);
    free(t->data_dir);
    t->scratch = t->data_dir = NULL;
}

/* Fill mounts for tree t (runtime, data, tmp, home). Returns the count. */
static size_t tree_mounts(cluster_tree *t, engine_mount m[4],
                          char runtime[4096], char tmp[4096], char home[4096]) {
    snprintf(runtime, 4096, "%s/pglite", cluster_runtime_tree());
    snprintf(tmp, 4096, "%s/tmp", t->scratch);
    snprintf(home, 4096, "%s/home", t->scratch);
    size_t n = 0;
    m[n++] = (engine_mount){"/pglite", runtime, 0};
    if (t->data_dir)
        m[n++] = (engine_mount){"/pglite/data", t->data_dir, 1};
    m[n++] = (engine_mount){"/tmp", tmp, 1};
    m[n++] = (engine_mount){"/home/postgres", home, 1};
    return n;
}

engine *cluster_engine_new(cluster_tree *t, const char *const *env, int in_fd,
                           int out_fd, int err_fd, char *err, size_t errlen) {
    engine_mount m[4];
    char runtime[4096], tmp[4096], home[4096];
    size_t nm = tree_mounts(t, m, runtime, tmp, home);
    engine_config cfg = {.mounts = m, .nmounts = nm, .devices = 1, .cwd = "/",
                         .env = env ? env : guest_env, .stdin_fd = in_fd,
                         .stdout_fd = out_fd, .stderr_fd = err_fd};
    return engine_new(ENGINE_PGLITE, &cfg, err, errlen);
}

engine *cluster_engine_clone(cluster_tree *t, const engine_image *img, int in_fd, int out_fd,
                             int err_fd, char *err, size_t errlen) {
    engine_mount m[4];
    char runtime[4096], tmp[4096], home[4096];
    size_t nm = tree_mounts(t, m, runtime, tmp, home);
    engine_config cfg = {.mounts = m, .nmounts = nm, .devices = 1, .cwd = "/",
                         .env = guest_env, .stdin_fd = in_fd, .stdout_fd = out_fd,
                         .stderr_fd = err_fd};
    return engine_clone(img, &cfg, err, errlen);
}

engine_status cluster_run_postgres(cluster_tree *t, int argc,
                                   const char *const *argv, const char *in_path,
                                   int out_fd, int err_fd, engine_result *res) {
    engine_mount m[4];
    char runtime[4096], tmp[4096], home[4096];
    size_t nm = tree_mounts(t, m, runtime, tmp, home);
    int in = in_path ? open(in_path, O_RDONLY | O_CLOEXEC) : -1;
    if (in_path && in < 0) {
        memset(res, 0, sizeof *res);
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message, "cannot open %s: %s", in_path,
                 strerror(errno));
        return res->status;
    }
    engine_config cfg = {.mounts = m, .nmounts = nm, .devices = 1, .cwd = "/",
                         .env = guest_env, .stdin_fd = in, .stdout_fd = out_fd,
                         .stderr_fd = err_fd};
    char msg[256];
    engine *e = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    if (in >= 0)
        close(in);
    if (!e) {
        memset(res, 0, sizeof *res);
        res->status = ENGINE_ERROR;
        snprintf(res->message, sizeof res->message, "%s", msg);
        return res->status;
    }
    engine_status s = engine_main(e, argc, argv, res);
    engine_free(e);
    return s;
}

/* ---- bootstrap ------------------------------------------------------------ */

static int write_file(const char *path, const char *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, data, len);
    int c = close(fd);
    return w == (ssize_t)len && c == 0 ? 0 : -1;
}

static char *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    char *b = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (b && n < (size_t)st.st_size) {
        ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (b) {
        b[n] = 0;
        if (len)
            *len = n;
    }
    return b;
}

/* Replace every occurrence of tok by val, as initdb does for BKI symbols. */
static int replace_all(char **buf, const char *tok, const char *val) {
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

int cluster_bootstrap(const char *data_dir, char *err, size_t errlen) {
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
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", p, strerror(errno));
            return -1;
        }
    }
    static const char conf[] = "listen_addresses = ''\nmax_connections = 10\n"
                               "shared_buffers = 16MB\ndynamic_shared_memory_type = mmap\n"
                               "max_worker_processes = 0\n"
                               "max_wal_senders = 0\n";
    static const struct { const char *name, *text; } files[] = {
        {"PG_VERSION", "18\n"}, {"base/1/PG_VERSION", "18\n"},
        {"postgresql.conf", conf}, {"pg_hba.conf", "local all all trust\n"},
        {"pg_ident.conf", ""}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", data_dir, files[i].name);
        if (write_file(p, files[i].text, strlen(files[i].text)) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno));
            return -1;
        }
    }
    snprintf(p, sizeof p, "%s/pglite/share/postgresql/postgres.bki",
             cluster_runtime_tree());
    char *bki = read_file(p, NULL);
    if (!bki) {
        snprintf(err, errlen, "cannot read %s: %s", p, strerror(errno));
        return -1;
    }
    /* The values of this build: wasm32, 64-byte names, UTF8, C locale. */
    static const char *const subst[][2] = {
        {"NAMEDATALEN", "64"}, {"SIZEOF_POINTER", "4"}, {"ALIGNOF_POINTER", "i"},
        {"FLOAT8PASSBYVAL", "false"}, {"POSTGRES", "'postgres'"},
        {"ENCODING", "6"}, {"LC_COLLATE", "'C'"}, {"LC_CTYPE", "'C'"},
        {"DATLOCALE", "_null_"}, {"ICU_RULES", "_null_"}, {"LOCALE_PROVIDER", "c"}};
    for (size_t i = 0; i < sizeof subst / sizeof subst[0]; i++) {
        if (replace_all(&bki, subst[i][0], subst[i][1]) != 0) {
            free(bki);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    cluster_tree t;
    if (cluster_tree_open(&t, data_dir, err, errlen) != 0) {
        free(bki);
        return -1;
    }
    char in[4096], log[4096];
    snprintf(in, sizeof in, "%s/bki", t.scratch);
    snprintf(log, sizeof log, "%s/log", t.scratch);
    int w = write_file(in, bki, strlen(bki));
    free(bki);
    int lfd = open(log, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w != 0 || lfd < 0) {
        snprintf(err, errlen, "cannot write in %s: %s", t.scratch, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        cluster_tree_close(&t);
        return -1;
    }
    const char *argv[] = {"/pglite/bin/postgres", "--boot", "-F", "-c",
                          "log_checkpoints=false", "-D", "/pglite/data"};
    engine_result r;
    cluster_run_postgres(&t, 7, argv, in, -1, lfd, &r);
    close(lfd);
    int ok = r.status == ENGINE_EXITED && r.exit_code == 0;
    if (!ok) {
        char *l = read_file(log, NULL);
        snprintf(err, errlen, "postgres --boot failed (%s):\n%s", r.message,
                 l ? l : "");
        free(l);
    }
    cluster_tree_close(&t);
    return ok ? 0 : -1;
}
