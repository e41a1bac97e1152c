/* Data directories: the cached template, copies, opening existing and new
 * clusters, validation that changes nothing, locks across processes, and
 * temporary databases. Everything lives under one private root: the cache
 * (PGLITE_CACHE_DIR) and TMPDIR point into it. Timings are printed, never
 * asserted. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "../support/fixture.h"

static char *g_root;
static char g_cache[4096], g_tmp[4096];

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void timing(const char *what, double ms) {
    printf("[timing] %-44s %9.2f ms\n", what, ms);
    fflush(stdout);
}

static char *rootpath(const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", g_root, name) < 0)
        return NULL;
    return p;
}

static int exists(const char *dir, const char *name) {
    char p[8300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* The pid written in dir/pglite.lock. */
static long lock_pid(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/pglite.lock", dir);
    char *s = fx_slurp(p);
    long pid = s ? atol(s) : -1;
    free(s);
    return pid;
}

/* ---- a digest of a whole tree: names, types, modes, sizes, contents ---- */

static char **g_list;
static size_t g_nlist, g_caplist;
static size_t g_rootlen;

static int list_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f;
    if (g_nlist == g_caplist) {
        g_caplist = g_caplist ? 2 * g_caplist : 256;
        g_list = realloc(g_list, g_caplist * sizeof *g_list);
    }
    g_list[g_nlist++] = strdup(p + g_rootlen);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hex SHA-256 of the tree at dir into out[65]; *count = entries. */
static void tree_digest(const char *dir, char out[65], size_t *count) {
    g_list = NULL;
    g_nlist = g_caplist = 0;
    g_rootlen = strlen(dir);
    assert_int_equal(nftw(dir, list_cb, 32, FTW_PHYS), 0);
    qsort(g_list, g_nlist, sizeof *g_list, cmp_str);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char p[4096], buf[65536];
    for (size_t i = 0; i < g_nlist; i++) {
        snprintf(p, sizeof p, "%s%s", dir, g_list[i]);
        struct stat st;
        assert_int_equal(lstat(p, &st), 0);
        char head[4200];
        int n = snprintf(head, sizeof head, "%s|%o|%lld|", g_list[i], (unsigned)st.st_mode,
                         (long long)st.st_size);
        EVP_DigestUpdate(ctx, head, (size_t)n);
        if (S_ISREG(st.st_mode)) {
            int fd = open(p, O_RDONLY);
            assert_true(fd >= 0);
            ssize_t r;
            while ((r = read(fd, buf, sizeof buf)) > 0)
                EVP_DigestUpdate(ctx, buf, (size_t)r);
            close(fd);
        }
        free(g_list[i]);
    }
    free(g_list);
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    if (count)
        *count = g_nlist;
}

/* ---- setup ---------------------------------------------------------------- */

static int setup(void **state) {
    (void)state;
    g_root = fx_mkdtemp("cluster");
    if (!g_root)
        return -1;
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_root);
    snprintf(g_tmp, sizeof g_tmp, "%s/tmp", g_root);
    if (mkdir(g_tmp, 0700) != 0)
        return -1;
    setenv("PGLITE_CACHE_DIR", g_cache, 1);
    setenv("TMPDIR", g_tmp, 1);
    setenv("PGLITE_TMPDIR", g_tmp, 1); /* temporaries here, not /dev/shm */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fx_rmtree(g_root);
    free(g_root);
    return 0;
}

/* A valid cluster at a new path under the root, copied from the template. */
static char *make_cluster(const char *name) {
    char tpl[4096], msg[4096];
    assert_int_equal(cluster_template_path(tpl, sizeof tpl, msg, sizeof msg), 0);
    char *p = rootpath(name);
    if (cluster_copy_tree(tpl, p, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    return p;
}

/* ---- the template ----------------------------------------------------------- */

static void test_template_once(void **state) {
    (void)state;
    char a[4096], b[4096], msg[16384];
    double t0 = now_ms();
    if (cluster_template_path(a, sizeof a, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    double t1 = now_ms();
    assert_int_equal(cluster_template_path(b, sizeof b, msg, sizeof msg), 0);
    double t2 = now_ms();
    timing("template: first call (initdb)", t1 - t0);
    timing("template: second call (verify only)", t2 - t1);
    assert_string_equal(a, b);
    assert_int_equal(strncmp(a, g_cache, strlen(g_cache)), 0);
    assert_non_null(strstr(a, "/template-"));
    assert_true(exists(a, ".pglite-template-ok"));
    assert_true(exists(a, "global/pg_control"));
    /* made once: a file put there survives the next call */
    char p[4200];
    snprintf(p, sizeof p, "%s/sentinel", a);
    assert_int_equal(fx_write_file(p, "x", 1), 0);
    assert_int_equal(cluster_template_path(b, sizeof b, msg, sizeof msg), 0);
    assert_true(exists(a, "sentinel"));
    unlink(p);
    /* no temporary build directories are left in the cache */
    DIR *d = opendir(g_cache);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp-"));
    closedir(d);
}

static void rebuild_after(const char *damage) {
    char a[4096], b[4096], msg[16384], p[4200];
    assert_int_equal(cluster_template_path(a, sizeof a, msg, sizeof msg), 0);
    snprintf(p, sizeof p, "%s/sentinel", a);
    assert_int_equal(fx_write_file(p, "x", 1), 0);
    snprintf(p, sizeof p, "%s/%s", a, damage);
    assert_int_equal(unlink(p), 0);
    double t0 = now_ms();
    if (cluster_template_path(b, sizeof b, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    timing(damage[0] == '.' ? "template: rebuild (marker gone)"
                            : "template: rebuild (pg_control gone)",
           now_ms() - t0);
    assert_string_equal(a, b);
    assert_false(exists(b, "sentinel")); /* a new directory */
    assert_true(exists(b, "global/pg_control"));
    assert_true(exists(b, ".pglite-template-ok"));
}

static void test_template_corrupt_pg_control(void **state) {
    (void)state;
    rebuild_after("global/pg_control");
}

static void test_template_corrupt_marker(void **state) {
    (void)state;
    rebuild_after(".pglite-template-ok");
}

static void test_template_truncated_pg_control(void **state) {
    (void)state;
    char a[4096], msg[16384], p[4200];
    assert_int_equal(cluster_template_path(a, sizeof a, msg, sizeof msg), 0);
    snprintf(p, sizeof p, "%s/global/pg_control", a);
    assert_int_equal(truncate(p, 100), 0);
    assert_int_equal(cluster_template_path(a, sizeof a, msg, sizeof msg), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 8192);
}

static void test_template_unwritable_cache(void **state) {
    (void)state;
    char *file = rootpath("a-file");
    assert_int_equal(fx_write_file(file, "x", 1), 0);
    char cache[4200], a[4096], msg[16384];
    snprintf(cache, sizeof cache, "%s/cache", file); /* under a file: unwritable */
    setenv("PGLITE_CACHE_DIR", cache, 1);
    int rc = cluster_template_path(a, sizeof a, msg, sizeof msg);
    setenv("PGLITE_CACHE_DIR", g_cache, 1);
    if (rc != 0)
        fail_msg("%s", msg);
    assert_int_equal(strncmp(a, g_tmp, strlen(g_tmp)), 0);
    assert_true(exists(a, "global/pg_control"));
    free(file);
}

/* ---- copying ------------------------------------------------------------------ */

static void test_copy_tree(void **state) {
    (void)state;
    char *src = make_cluster("copy-src");
    char p[4200], msg[4096];
    snprintf(p, sizeof p, "%s/postmaster.pid", src);
    assert_int_equal(fx_write_file(p, "42\n", 3), 0);
    snprintf(p, sizeof p, "%s/a-link", src);
    assert_int_equal(symlink("/nonexistent/target", p), 0);
    char *dst = rootpath("copy-dst");
    double t0 = now_ms();
    if (cluster_copy_tree(src, dst, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    timing("cluster_copy_tree (cluster to a new path)", now_ms() - t0);
    assert_false(exists(dst, "postmaster.pid"));
    char target[256];
    snprintf(p, sizeof p, "%s/a-link", dst);
    ssize_t n = readlink(p, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = 0;
    assert_string_equal(target, "/nonexistent/target");
    /* same tree but for the two skipped/added names */
    snprintf(p, sizeof p, "%s/postmaster.pid", src);
    unlink(p);
    char d1[65], d2[65];
    tree_digest(src, d1, NULL);
    tree_digest(dst, d2, NULL);
    assert_string_equal(d1, d2);
    /* a non-empty destination is refused and left alone */
    assert_int_not_equal(cluster_copy_tree(src, dst, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "not empty"));
    tree_digest(dst, d2, NULL);
    assert_string_equal(d1, d2);
    /* a missing source */
    assert_int_not_equal(cluster_copy_tree("/nonexistent/x", dst, msg, sizeof msg), 0);
    fx_rmtree(src);
    fx_rmtree(dst);
    free(src);
    free(dst);
}

/* ---- persistent clusters ---------------------------------------------------------- */

static void test_open_missing_creates(void **state) {
    (void)state;
    char *p = rootpath("new/deeper/db");
    char msg[16384];
    cluster *c = NULL;
    cluster_options o = {.path = p};
    double t0 = now_ms();
    if (cluster_open(&o, &c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    timing("open a missing path (copy of the template)", now_ms() - t0);
    assert_non_null(c);
    assert_string_equal(cluster_data_dir(c), p);
    assert_int_equal(cluster_is_temporary(c), 0);
    assert_true(exists(p, "PG_VERSION"));
    assert_true(exists(p, "global/pg_control"));
    assert_true(exists(p, "pglite.lock"));
    assert_false(exists(p, ".pglite-incomplete"));
    assert_false(exists(p, ".pglite-new"));
    assert_false(exists(p, ".pglite-template-ok"));
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(lock_pid(p), (long)getpid());
    cluster_close(c);
    assert_true(exists(p, "PG_VERSION")); /* persistent: kept */
    free(p);
}

static void test_open_empty_dir_fresh(void **state) {
    (void)state;
    char *p = rootpath("fresh");
    assert_int_equal(mkdir(p, 0755), 0);
    char msg[16384];
    cluster *c = NULL;
    cluster_options o = {.path = p, .fresh = 1};
    double t0 = now_ms();
    if (cluster_open(&o, &c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    timing("open an empty directory, fresh (initdb)", now_ms() - t0);
    assert_true(exists(p, "PG_VERSION"));
    assert_true(exists(p, "global/pg_control"));
    assert_true(exists(p, "base/1"));
    cluster_close(c);
    fx_rmtree(p);
    free(p);
}

static void test_interrupted_creation_redone(void **state) {
    (void)state;
    char *p = rootpath("interrupted");
    assert_int_equal(mkdir(p, 0700), 0);
    char f[4200], msg[4096];
    snprintf(f, sizeof f, "%s/.pglite-incomplete", p);
    assert_int_equal(fx_write_file(f, "", 0), 0);
    snprintf(f, sizeof f, "%s/global", p);
    assert_int_equal(mkdir(f, 0700), 0);
    snprintf(f, sizeof f, "%s/PG_VERSION", p);
    assert_int_equal(fx_write_file(f, "18\n", 3), 0);
    cluster *c = NULL;
    cluster_options o = {.path = p};
    if (cluster_open(&o, &c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    assert_true(exists(p, "global/pg_control"));
    assert_false(exists(p, ".pglite-incomplete"));
    cluster_close(c);
    fx_rmtree(p);
    free(p);
}

static void test_reopen_unchanged(void **state) {
    (void)state;
    char *p = rootpath("reopen");
    char msg[4096];
    cluster *c = NULL;
    cluster_options o = {.path = p};
    assert_int_equal(cluster_open(&o, &c, msg, sizeof msg), 0);
    cluster_close(c);
    char d1[65], d2[65];
    size_t n1, n2;
    tree_digest(p, d1, &n1);
    double t0 = now_ms();
    if (cluster_open(&o, &c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    timing("open an existing cluster", now_ms() - t0);
    cluster_close(c);
    tree_digest(p, d2, &n2);
    assert_string_equal(d1, d2);
    assert_int_equal(n1, n2);
    assert_true(n1 > 100);
    fx_rmtree(p);
    free(p);
}

/* open must fail with a message containing want, and change nothing. */
static void expect_refused(const char *p, const char *want, const char *want2) {
    char d1[65], d2[65], msg[4096];
    size_t n1, n2;
    int had_lock = exists(p, "pglite.lock");
    tree_digest(p, d1, &n1);
    cluster *c = (cluster *)1;
    cluster_options o = {.path = p};
    assert_int_not_equal(cluster_open(&o, &c, msg, sizeof msg), 0);
    assert_null(c);
    if (!strstr(msg, want) || (want2 && !strstr(msg, want2)) || !strstr(msg, p))
        fail_msg("unexpected message: %s", msg);
    printf("[message] %s\n", msg);
    tree_digest(p, d2, &n2);
    assert_string_equal(d1, d2);
    assert_int_equal(n1, n2);
    assert_int_equal(exists(p, "pglite.lock"), had_lock);
}

static void test_not_a_cluster(void **state) {
    (void)state;
    char *p = rootpath("not-a-cluster");
    char f[4200];
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(f, sizeof f, "%s/notes.txt", p);
    assert_int_equal(fx_write_file(f, "hello", 5), 0);
    snprintf(f, sizeof f, "%s/sub", p);
    assert_int_equal(mkdir(f, 0755), 0);
    snprintf(f, sizeof f, "%s/sub/more", p);
    assert_int_equal(fx_write_file(f, "x", 1), 0);
    expect_refused(p, "is not a PostgreSQL data directory", NULL);
    /* a file */
    char msg[4096];
    cluster *c = NULL;
    cluster_options o = {.path = f};
    assert_int_not_equal(cluster_open(&o, &c, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "not a directory"));
    char *s = fx_slurp(f);
    assert_string_equal(s, "x");
    free(s);
    fx_rmtree(p);
    free(p);
}

static void test_damaged_clusters(void **state) {
    (void)state;
    char f[4200];
    char *p = make_cluster("truncated");
    snprintf(f, sizeof f, "%s/global/pg_control", p);
    assert_int_equal(truncate(f, 4096), 0);
    expect_refused(p, "pg_control", "truncated");
    assert_int_equal(unlink(f), 0);
    expect_refused(p, "pg_control", "missing");
    fx_rmtree(p);
    free(p);

    p = make_cluster("v17");
    snprintf(f, sizeof f, "%s/PG_VERSION", p);
    assert_int_equal(fx_write_file(f, "17\n", 3), 0);
    expect_refused(p, "cluster of PostgreSQL 17, this is 18", NULL);
    fx_rmtree(p);
    free(p);

    p = make_cluster("no-xact");
    snprintf(f, sizeof f, "%s/pg_xact", p);
    fx_rmtree(f);
    expect_refused(p, "pg_xact", "missing");
    fx_rmtree(p);
    free(p);

    p = make_cluster("mode");
    assert_int_equal(chmod(p, 0500), 0);
    expect_refused(p, "mode", "0500");
    chmod(p, 0700);
    fx_rmtree(p);
    free(p);
}

static void test_second_open_same_process(void **state) {
    (void)state;
    char *p = rootpath("twice");
    char msg[4096], want[64];
    cluster *a = NULL, *b = NULL;
    cluster_options o = {.path = p};
    assert_int_equal(cluster_open(&o, &a, msg, sizeof msg), 0);
    assert_int_not_equal(cluster_open(&o, &b, msg, sizeof msg), 0);
    assert_null(b);
    snprintf(want, sizeof want, "is in use by process %ld", (long)getpid());
    if (!strstr(msg, want) || !strstr(msg, p))
        fail_msg("unexpected message: %s", msg);
    printf("[message] %s\n", msg);
    cluster_close(a);
    assert_int_equal(cluster_open(&o, &b, msg, sizeof msg), 0);
    cluster_close(b);
    fx_rmtree(p);
    free(p);
}

static void test_killed_child_lock(void **state) {
    (void)state;
    char *p = make_cluster("killed");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(pfd[0]);
        char m[4096], f[4200];
        cluster *c = NULL;
        cluster_options o = {.path = p};
        if (cluster_open(&o, &c, m, sizeof m) != 0)
            _exit(2);
        /* what PGlite's postgres leaves when it dies: its guest path and pid */
        snprintf(f, sizeof f, "%s/postmaster.pid", p);
        const char *pidfile = "42\n/pglite/data\n1700000000\n5432\n\n\n        0         0\nready\n";
        if (fx_write_file(f, pidfile, strlen(pidfile)) != 0)
            _exit(3);
        if (write(pfd[1], "k", 1) != 1)
            _exit(4);
        for (;;)
            pause();
    }
    close(pfd[1]);
    char ch;
    assert_int_equal(read(pfd[0], &ch, 1), 1);
    close(pfd[0]);
    char msg[4096], want[64];
    cluster *c = NULL;
    cluster_options o = {.path = p};
    assert_int_not_equal(cluster_open(&o, &c, msg, sizeof msg), 0);
    snprintf(want, sizeof want, "in use by process %ld", (long)child);
    if (!strstr(msg, want))
        fail_msg("unexpected message: %s", msg);
    assert_int_equal(kill(child, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFSIGNALED(st));
    assert_true(exists(p, "postmaster.pid"));
    if (cluster_open(&o, &c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    assert_false(exists(p, "postmaster.pid"));
    assert_int_equal(lock_pid(p), (long)getpid());
    cluster_close(c);

    /* a live native server's postmaster.pid for this very directory */
    char f[4200], text[4400];
    snprintf(f, sizeof f, "%s/postmaster.pid", p);
    snprintf(text, sizeof text, "%ld\n%s\n1700000000\n5432\n", (long)getpid(), p);
    assert_int_equal(fx_write_file(f, text, strlen(text)), 0);
    assert_int_not_equal(cluster_open(&o, &c, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "PostgreSQL server"));
    assert_true(exists(p, "postmaster.pid"));
    fx_rmtree(p);
    free(p);
}

/* ---- temporary databases -------------------------------------------------------- */

static void test_temporary(void **state) {
    (void)state;
    char msg[16384];
    cluster *a = NULL, *b = NULL;
    double t0 = now_ms();
    if (cluster_open(NULL, &a, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    double t1 = now_ms();
    if (cluster_open(&(cluster_options){0}, &b, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    double t2 = now_ms();
    timing("temporary: first open (process-local base)", t1 - t0);
    timing("temporary: second open", t2 - t1);
    char *da = strdup(cluster_data_dir(a)), *db = strdup(cluster_data_dir(b));
    assert_string_not_equal(da, db);
    assert_int_equal(cluster_is_temporary(a), 1);
    assert_int_equal(strncmp(da, g_tmp, strlen(g_tmp)), 0);
    assert_non_null(strstr(da, "/pglite-tmp-"));
    assert_true(exists(da, "PG_VERSION"));
    assert_true(exists(db, "global/pg_control"));
    /* more opens, for the timing: with the spare ready (the usual case:
     * the previous database was in use for a while), and back to back */
    double best = 1e9, sum = 0;
    for (int i = 0; i < 10; i++) {
        usleep(400000);
        cluster *c = NULL;
        double s = now_ms();
        assert_int_equal(cluster_open(NULL, &c, msg, sizeof msg), 0);
        double e = now_ms() - s;
        sum += e;
        best = e < best ? e : best;
        assert_true(exists(cluster_data_dir(c), "global/pg_control"));
        s = now_ms();
        cluster_close(c);
        if (i == 9)
            timing("temporary: close (remove)", now_ms() - s);
    }
    timing("temporary: open, spare ready, best of 10", best);
    timing("temporary: open, spare ready, mean of 10", sum / 10);
    best = 1e9, sum = 0;
    for (int i = 0; i < 10; i++) {
        cluster *c = NULL;
        double s = now_ms();
        assert_int_equal(cluster_open(NULL, &c, msg, sizeof msg), 0);
        double e = now_ms() - s;
        sum += e;
        best = e < best ? e : best;
        cluster_close(c);
    }
    timing("temporary: open, back to back, best of 10", best);
    timing("temporary: open, back to back, mean of 10", sum / 10);
    /* the copy alone */
    char base[4200], dst[4300];
    snprintf(base, sizeof base, "%s", da);
    *strrchr(base, '/') = 0;
    snprintf(dst, sizeof dst, "%s/copy-timing", base);
    strcat(base, "/base");
    best = 1e9, sum = 0;
    for (int i = 0; i < 5; i++) {
        double s = now_ms();
        assert_int_equal(cluster_copy_tree(base, dst, msg, sizeof msg), 0);
        double e = now_ms() - s;
        sum += e;
        best = e < best ? e : best;
        fx_rmtree(dst);
    }
    timing("copy of the base alone, best of 5", best);
    timing("copy of the base alone, mean of 5", sum / 5);
    cluster_close(a);
    cluster_close(b);
    struct stat st;
    assert_int_not_equal(stat(da, &st), 0);
    assert_int_not_equal(stat(db, &st), 0);
    free(da);
    free(db);
}

#define NTHREADS 4
#define PER_THREAD 3

static void *temp_opener(void *arg) {
    char **dirs = arg, msg[4096];
    for (int i = 0; i < PER_THREAD; i++) {
        cluster *c = NULL;
        if (cluster_open(NULL, &c, msg, sizeof msg) != 0) {
            fprintf(stderr, "%s\n", msg);
            return (void *)1;
        }
        dirs[i] = strdup(cluster_data_dir(c));
        if (!exists(dirs[i], "global/pg_control"))
            return (void *)1;
        cluster_close(c);
    }
    return NULL;
}

static void test_temporary_threads(void **state) {
    (void)state;
    pthread_t t[NTHREADS];
    char *dirs[NTHREADS][PER_THREAD] = {{0}};
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, temp_opener, dirs[i]), 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    for (int i = 0; i < NTHREADS * PER_THREAD; i++) {
        char *a = dirs[i / PER_THREAD][i % PER_THREAD];
        assert_non_null(a);
        struct stat st;
        assert_int_not_equal(stat(a, &st), 0);
        for (int j = i + 1; j < NTHREADS * PER_THREAD; j++)
            assert_string_not_equal(a, dirs[j / PER_THREAD][j % PER_THREAD]);
    }
    for (int i = 0; i < NTHREADS * PER_THREAD; i++)
        free(dirs[i / PER_THREAD][i % PER_THREAD]);
}

static void test_leftovers_cleaned(void **state) {
    (void)state;
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char gone[4200], kept[4200], f[4300];
    snprintf(gone, sizeof gone, "%s/pglite-tmp-%ld-x", g_tmp, (long)dead);
    snprintf(kept, sizeof kept, "%s/pglite-tmp-%ld-y", g_tmp, (long)getpid());
    assert_int_equal(mkdir(gone, 0700), 0);
    assert_int_equal(mkdir(kept, 0700), 0);
    snprintf(f, sizeof f, "%s/db-0", gone);
    assert_int_equal(mkdir(f, 0700), 0);
    /* a new process: its first temporary open sweeps */
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char m[4096];
        cluster *c = NULL;
        if (cluster_open(NULL, &c, m, sizeof m) != 0)
            _exit(2);
        cluster_close(c);
        exit(0); /* atexit removes this child's own directory */
    }
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    struct stat sb;
    assert_int_not_equal(stat(gone, &sb), 0);
    assert_int_equal(stat(kept, &sb), 0); /* a live pid's: kept */
    fx_rmtree(kept);
    /* and the child's own directory went at its exit */
    DIR *d = opendir(g_tmp);
    struct dirent *e;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "pglite-tmp-%ld-", (long)child);
    while ((e = readdir(d)))
        assert_int_not_equal(strncmp(e->d_name, prefix, strlen(prefix)), 0);
    closedir(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_once),
        cmocka_unit_test(test_template_corrupt_pg_control),
        cmocka_unit_test(test_template_corrupt_marker),
        cmocka_unit_test(test_template_truncated_pg_control),
        cmocka_unit_test(test_template_unwritable_cache),
        cmocka_unit_test(test_copy_tree),
        cmocka_unit_test(test_open_missing_creates),
        cmocka_unit_test(test_open_empty_dir_fresh),
        cmocka_unit_test(test_interrupted_creation_redone),
        cmocka_unit_test(test_reopen_unchanged),
        cmocka_unit_test(test_not_a_cluster),
        cmocka_unit_test(test_damaged_clusters),
        cmocka_unit_test(test_second_open_same_process),
        cmocka_unit_test(test_killed_child_lock),
        cmocka_unit_test(test_temporary),
        cmocka_unit_test(test_temporary_threads),
        cmocka_unit_test(test_leftovers_cleaned),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
