/*
 * Unit tests for src/vfs: the guest file tree and its sandbox.
 *
 * A temporary host tree holds a runtime dir (mounted read-only at /pglite),
 * a data dir (read-write at /pglite/data), scratch dirs (/tmp,
 * /home/postgres) and a sibling "secret" dir that no guest path may reach.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vfs/vfs.h"

typedef struct {
    char root[256];
    char runtime[300], data[300], secret[300], scratch[300], home[300];
    int datafd, rtfd;
    struct stat secret_st, secret_file_st;
    vfs *v;
    vfs_loc loc;
} fixture;

static void must(int ok, const char *what)
{
    if (!ok) {
        perror(what);
        fail_msg("setup failed: %s", what);
    }
}

static void put_file(int dirfd, const char *rel, const char *text)
{
    int fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    must(fd >= 0, rel);
    must(write(fd, text, strlen(text)) == (ssize_t)strlen(text), rel);
    close(fd);
}

static void link_at(int dirfd, const char *target, const char *name)
{
    must(symlinkat(target, dirfd, name) == 0, name);
}

static int rm_tree(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/test_vfs_XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    must(mkdtemp(f->root) != NULL, "mkdtemp");
    snprintf(f->runtime, sizeof f->runtime, "%s/runtime", f->root);
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->secret, sizeof f->secret, "%s/secret", f->root);
    snprintf(f->scratch, sizeof f->scratch, "%s/scratch", f->root);
    snprintf(f->home, sizeof f->home, "%s/home", f->root);
    must(mkdir(f->runtime, 0755) == 0, "runtime");
    must(mkdir(f->data, 0700) == 0, "data");
    must(mkdir(f->secret, 0700) == 0, "secret");
    must(mkdir(f->scratch, 0700) == 0, "scratch");
    must(mkdir(f->home, 0700) == 0, "home");

    int sfd = open(f->secret, O_DIRECTORY | O_CLOEXEC);
    must(sfd >= 0, "open secret");
    put_file(sfd, "passwd", "SECRET\n");
    must(fstat(sfd, &f->secret_st) == 0, "stat secret");
    must(fstatat(sfd, "passwd", &f->secret_file_st, 0) == 0, "stat passwd");
    close(sfd);

    f->rtfd = open(f->runtime, O_DIRECTORY | O_CLOEXEC);
    must(f->rtfd >= 0, "open runtime");
    must(mkdirat(f->rtfd, "bin", 0755) == 0, "bin");
    must(mkdirat(f->rtfd, "share", 0755) == 0, "share");
    put_file(f->rtfd, "share/file", "runtime file\n");
    put_file(f->rtfd, "datafile", "not the data dir\n");
    link_at(f->rtfd, "data/base", "l_data");   /* crosses into /pglite/data */

    f->datafd = open(f->data, O_DIRECTORY | O_CLOEXEC);
    must(f->datafd >= 0, "open data");
    put_file(f->datafd, "PG_VERSION", "18\n");
    must(mkdirat(f->datafd, "base", 0700) == 0, "base");
    must(mkdirat(f->datafd, "base/1", 0700) == 0, "base/1");
    put_file(f->datafd, "base/1/f", "rel file\n");

    /* Escape attempts. */
    link_at(f->datafd, "/etc", "l_etc");
    link_at(f->datafd, f->secret, "l_secret_abs");
    link_at(f->datafd, "../../../secret", "l_rel_escape");
    char deep[4000] = "";
    for (int i = 0; i < 60; i++)
        strcat(deep, "../");
    strcat(deep, f->secret);
    link_at(f->datafd, deep, "l_deep_escape");
    link_at(f->datafd, "/proc/self/root/etc", "l_proc");
    /* Legit links. */
    link_at(f->datafd, "../PG_VERSION", "base/l_ok");
    link_at(f->datafd, "base", "l_base");
    link_at(f->datafd, "/pglite/data/base", "l_abs_ok");
    link_at(f->datafd, "../bin", "l_rt");
    link_at(f->datafd, "newtarget", "dangling");
    /* Loops. */
    link_at(f->datafd, "loop_b", "loop_a");
    link_at(f->datafd, "loop_a", "loop_b");
    link_at(f->datafd, "self", "self");
    link_at(f->datafd, "self/x", "self_dir");
    /* A chain c0 -> c1 -> ... -> c40 -> PG_VERSION: 41 links from c0. */
    for (int i = 0; i <= VFS_MAXSYMLINKS; i++) {
        char name[16], target[16];
        snprintf(name, sizeof name, "c%d", i);
        if (i == VFS_MAXSYMLINKS)
            snprintf(target, sizeof target, "PG_VERSION");
        else
            snprintf(target, sizeof target, "c%d", i + 1);
        link_at(f->datafd, target, name);
    }

    f->v = vfs_new();
    must(f->v != NULL, "vfs_new");
    must(vfs_mount(f->v, "/pglite", f->runtime, VFS_RDONLY) == 0, "mount rt");
    must(vfs_mount(f->v, "/pglite/data", f->data, VFS_RDWR) == 0, "mount data");
    must(vfs_mount(f->v, "/tmp", f->scratch, VFS_RDWR) == 0, "mount tmp");
    must(vfs_mount(f->v, "/home/postgres", f->home, VFS_RDWR) == 0, "mount home");
    must(vfs_add_device(f->v, "/dev/null", VFS_DEV_NULL) == 0, "null");
    must(vfs_add_device(f->v, "/dev/urandom", VFS_DEV_URANDOM) == 0, "urandom");
    must(vfs_add_device(f->v, "/dev/blob", VFS_DEV_BLOB) == 0, "blob");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vfs_free(f->v);
    close(f->datafd);
    close(f->rtfd);
    rm_tree(f->root);
    free(f);
    return 0;
}

/* Resolve and return the status; the location lands in f->loc. */
static int res(fixture *f, const char *cwd, const char *path, int flags)
{
    memset(&f->loc, 0x5a, sizeof f->loc);
    return vfs_resolve(f->v, cwd, path, flags, &f->loc);
}

static void assert_host(fixture *f, const char *cwd, const char *path,
                        int flags, const char *guest, int writable,
                        const char *rel)
{
    int rc = res(f, cwd, path, flags);
    if (rc != 0)
        fail_msg("%s: got %d (%s)", path, rc, strerror(-rc));
    assert_int_equal(f->loc.kind, VFS_NODE_HOST);
    assert_string_equal(f->loc.guest, guest);
    assert_string_equal(f->loc.rel, rel);
    assert_int_equal(f->loc.writable, writable);
    assert_int_equal(f->loc.dev, VFS_DEV_NONE);
}

static void assert_err(fixture *f, const char *cwd, const char *path,
                       int flags, int err)
{
    int rc = res(f, cwd, path, flags);
    if (rc != -err)
        fail_msg("%s: want %s, got %d (%s) guest=%s", path, strerror(err), rc,
                 rc ? strerror(-rc) : "ok", rc ? "" : f->loc.guest);
}

/* Whatever a location names on the host, it is not the secret. */
static void assert_not_secret(fixture *f)
{
    if (f->loc.kind != VFS_NODE_HOST)
        return;
    struct stat st;
    if (fstatat(f->loc.dirfd, f->loc.rel, &st, 0) != 0)
        return;
    assert_false(st.st_dev == f->secret_st.st_dev &&
                 st.st_ino == f->secret_st.st_ino);
    assert_false(st.st_dev == f->secret_file_st.st_dev &&
                 st.st_ino == f->secret_file_st.st_ino);
}

/* ------------------------------------------------------------------------ */

static void test_normal(void **state)
{
    fixture *f = *state;
    assert_host(f, "/", "/pglite/data/base/1", 0, "/pglite/data/base/1", 1,
                "base/1");
    assert_host(f, "/", "/pglite/data/base/1/f", 0, "/pglite/data/base/1/f", 1,
                "base/1/f");
    assert_host(f, "/", "/pglite/share/file", 0, "/pglite/share/file", 0,
                "share/file");
    assert_host(f, NULL, "//pglite///data/./base//", 0, "/pglite/data/base",
                1, "base");
    assert_host(f, "/", "/tmp", 0, "/tmp", 1, ".");
    assert_host(f, "/", "/home/postgres", 0, "/home/postgres", 1, ".");
    /* Relative to a cwd. */
    assert_host(f, "/pglite/data", "base/1", 0, "/pglite/data/base/1", 1,
                "base/1");
    assert_host(f, "/pglite/data/base", "./1/../1/f", 0,
                "/pglite/data/base/1/f", 1, "base/1/f");
    assert_host(f, NULL, "pglite/data", 0, "/pglite/data", 1, ".");
    assert_err(f, "/", "", 0, ENOENT);
    assert_err(f, "/", "/pglite/nope", 0, ENOENT);
    assert_err(f, "/", "/pglite/data/nope/x", 0, ENOENT);
    assert_err(f, "/", "/pglite/data/PG_VERSION/x", 0, ENOTDIR);
    assert_err(f, "/", "/pglite/data/PG_VERSION/", 0, ENOTDIR);
    assert_err(f, "/", "/pglite/data/PG_VERSION/..", 0, ENOTDIR);
    assert_err(f, "relative", "x", 0, EINVAL);
    vfs_loc loc;
    assert_int_equal(vfs_resolve(f->v, "/", "/x", 0x100, &loc), -EINVAL);
}

static void test_nested_mounts(void **state)
{
    fixture *f = *state;
    assert_host(f, "/", "/pglite", 0, "/pglite", 0, ".");
    assert_host(f, "/", "/pglite/data", 0, "/pglite/data", 1, ".");
    assert_host(f, "/", "/pglite/data/PG_VERSION", 0,
                "/pglite/data/PG_VERSION", 1, "PG_VERSION");
    /* A name sharing a prefix with a mount point is not in that mount. */
    assert_host(f, "/", "/pglite/datafile", 0, "/pglite/datafile", 0,
                "datafile");
    /* Each lookup uses its own mount's fd. */
    assert_int_equal(res(f, "/", "/pglite/data/base", 0), 0);
    int datadirfd = f->loc.dirfd;
    assert_int_equal(res(f, "/", "/pglite/bin", 0), 0);
    assert_int_not_equal(f->loc.dirfd, datadirfd);
    /* Leaving the nested mount by ".." lands in the outer one. */
    assert_host(f, "/pglite/data", "../share/file", 0, "/pglite/share/file",
                0, "share/file");
    /* A symlink in the runtime tree can lead into the data mount. */
    assert_host(f, "/", "/pglite/l_data/1", 0, "/pglite/data/base/1", 1,
                "base/1");
}

static void test_dotdot(void **state)
{
    fixture *f = *state;
    assert_err(f, "/", "/pglite/data/../../../../etc/passwd", 0, ENOENT);
    assert_err(f, "/", "/../../../etc/passwd", 0, ENOENT);
    assert_int_equal(res(f, "/", "/pglite/data/../../../..", 0), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_SYNTH);
    assert_string_equal(f->loc.guest, "/");
    assert_int_equal(res(f, "/pglite/data/base", "../../..", 0), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_SYNTH);
    assert_string_equal(f->loc.guest, "/");
    assert_int_equal(res(f, "/pglite/data/base", "../../../../../../..", 0), 0);
    assert_string_equal(f->loc.guest, "/");
    assert_err(f, "/pglite/data/base", "../../../../etc/passwd", 0, ENOENT);
    assert_err(f, "/pglite/data/base", "../../../secret/passwd", 0, ENOENT);
    assert_host(f, "/", "/pglite/data/base/../../data", 0, "/pglite/data", 1,
                ".");
    assert_host(f, "/", "/pglite/data/base/1/../../PG_VERSION", 0,
                "/pglite/data/PG_VERSION", 1, "PG_VERSION");
    assert_host(f, "/", "/pglite/data/base/..", 0, "/pglite/data", 1, ".");
    assert_int_equal(res(f, "/", "/dev/..", 0), 0);
    assert_string_equal(f->loc.guest, "/");
}

static void test_host_paths(void **state)
{
    fixture *f = *state;
    char p[600];
    assert_err(f, "/", "/etc/passwd", 0, ENOENT);
    assert_err(f, "/", "/etc", 0, ENOENT);
    assert_err(f, "/", "/proc/self/root/etc/passwd", 0, ENOENT);
    assert_err(f, "/", f->secret, 0, ENOENT);
    snprintf(p, sizeof p, "%s/passwd", f->secret);
    assert_err(f, "/", p, 0, ENOENT);
    assert_err(f, "/", f->data, 0, ENOENT);
    snprintf(p, sizeof p, "%s/PG_VERSION", f->data);
    assert_err(f, "/", p, 0, ENOENT);
    snprintf(p, sizeof p, "/pglite/data/../../../..%s/passwd", f->secret);
    assert_err(f, "/", p, 0, ENOENT);
    /* Relative from the cwd too. */
    snprintf(p, sizeof p, "../../../../../..%s/passwd", f->secret);
    assert_err(f, "/pglite/data/base/1", p, 0, ENOENT);
}

static void test_symlink_escapes(void **state)
{
    fixture *f = *state;
    static const char *const escapes[] = {
        "/pglite/data/l_etc",         "/pglite/data/l_etc/passwd",
        "/pglite/data/l_secret_abs",  "/pglite/data/l_secret_abs/passwd",
        "/pglite/data/l_rel_escape",  "/pglite/data/l_rel_escape/passwd",
        "/pglite/data/l_deep_escape", "/pglite/data/l_deep_escape/passwd",
        "/pglite/data/l_proc/passwd",
    };
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        for (int flags = 0; flags <= VFS_CREATE; flags += VFS_CREATE) {
            int rc = res(f, "/", escapes[i], flags);
            assert_not_secret(f);
            if (rc == 0) {
                /* Only a guest path inside the tree: a create under a
                 * mount, never the secret. */
                assert_true(flags & VFS_CREATE);
                assert_int_equal(f->loc.kind, VFS_NODE_HOST);
                assert_true(strncmp(f->loc.guest, "/tmp/", 5) == 0);
            } else {
                assert_true(rc == -ENOENT || rc == -EROFS);
            }
        }
    }
    /* The guest meaning of each target, exactly. */
    assert_err(f, "/", "/pglite/data/l_etc/passwd", 0, ENOENT);
    assert_err(f, "/", "/pglite/data/l_rel_escape/passwd", 0, ENOENT);
    /* "/etc" as a guest path at a synthetic root: cannot be created. */
    assert_err(f, "/", "/pglite/data/l_etc", VFS_CREATE, EROFS);
    assert_err(f, "/", "/pglite/data/l_rel_escape", VFS_CREATE, EROFS);
    /* The secret's absolute host path is under guest /tmp, which is the
     * scratch mount: at most it names a path in scratch, not the secret. */
    assert_err(f, "/", "/pglite/data/l_secret_abs", 0, ENOENT);
    /* Not followed with NOFOLLOW: the link itself, in the data dir. */
    assert_host(f, "/", "/pglite/data/l_etc", VFS_NOFOLLOW,
                "/pglite/data/l_etc", 1, "l_etc");
    /* vfs_openat refuses the link itself. */
    int fd = vfs_openat(&f->loc, O_RDONLY, 0);
    assert_int_equal(fd, -ELOOP);
    /* But O_PATH|O_NOFOLLOW opens the link, not its target. */
    fd = vfs_openat(&f->loc, O_PATH | O_NOFOLLOW, 0);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    close(fd);
}

static void test_symlink_legit(void **state)
{
    fixture *f = *state;
    assert_host(f, "/", "/pglite/data/base/l_ok", 0, "/pglite/data/PG_VERSION",
                1, "PG_VERSION");
    assert_host(f, "/", "/pglite/data/l_base/1/f", 0, "/pglite/data/base/1/f",
                1, "base/1/f");
    assert_host(f, "/", "/pglite/data/l_abs_ok/1", 0, "/pglite/data/base/1",
                1, "base/1");
    assert_host(f, "/", "/pglite/data/l_rt", 0, "/pglite/bin", 0, "bin");
    assert_host(f, "/pglite/data", "l_base/../PG_VERSION", 0,
                "/pglite/data/PG_VERSION", 1, "PG_VERSION");
    /* A chain of exactly VFS_MAXSYMLINKS links is fine. */
    assert_host(f, "/", "/pglite/data/c1", 0, "/pglite/data/PG_VERSION", 1,
                "PG_VERSION");
    /* Open through the location and read. */
    assert_int_equal(res(f, "/", "/pglite/data/base/l_ok", 0), 0);
    int fd = vfs_openat(&f->loc, O_RDONLY, 0);
    assert_true(fd >= 0);
    char buf[8] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), 3);
    assert_string_equal(buf, "18\n");
    close(fd);
}

static void test_symlink_loops(void **state)
{
    fixture *f = *state;
    assert_err(f, "/", "/pglite/data/loop_a", 0, ELOOP);
    assert_err(f, "/", "/pglite/data/loop_b/x", 0, ELOOP);
    assert_err(f, "/", "/pglite/data/self", 0, ELOOP);
    assert_err(f, "/", "/pglite/data/self", VFS_CREATE, ELOOP);
    assert_err(f, "/", "/pglite/data/self_dir", 0, ELOOP);
    assert_err(f, "/", "/pglite/data/c0", 0, ELOOP);
    /* Not followed, a loop is just a link. */
    assert_host(f, "/", "/pglite/data/self", VFS_NOFOLLOW, "/pglite/data/self",
                1, "self");
}

static void test_lengths(void **state)
{
    fixture *f = *state;
    char *p = malloc(5001);
    assert_non_null(p);
    p[0] = '/';
    memset(p + 1, 'a', 4999);
    p[5000] = '\0';
    assert_err(f, "/", p, 0, ENAMETOOLONG);
    vfs_loc *loc = malloc(sizeof *loc);
    assert_non_null(loc);
    assert_int_equal(vfs_resolve_n(f->v, "/", p, 5000, 0, loc), -ENAMETOOLONG);
    assert_int_equal(vfs_resolve_n(f->v, "/", p, VFS_PATH_MAX, 0, loc),
                     -ENAMETOOLONG);
    /* 4095 bytes of "/./././" is a legal path. */
    for (int i = 0; i < VFS_PATH_MAX - 1; i++)
        p[i] = i % 2 ? '.' : '/';
    p[VFS_PATH_MAX - 1] = '\0';
    assert_int_equal(res(f, "/", p, 0), 0);
    assert_string_equal(f->loc.guest, "/");
    /* A relative path beside a long cwd is fine as long as it fits. */
    assert_int_equal(vfs_resolve(f->v, "/pglite/data", p + 1, 0, loc), 0);
    assert_string_equal(loc->guest, "/pglite/data");
    /* A name over 255 bytes. */
    char name[300] = "/pglite/data/";
    memset(name + 13, 'n', 260);
    name[273] = '\0';
    assert_err(f, "/", name, 0, ENAMETOOLONG);
    /* A relative cwd that is too long. */
    memset(p, 'c', 5000);
    p[0] = '/';
    p[5000] = '\0';
    assert_int_equal(vfs_resolve(f->v, p, "x", 0, loc), -ENAMETOOLONG);

    /* Symlink expansion: one long target is fine... */
    char *t = malloc(VFS_PATH_MAX);
    assert_non_null(t);
    t[0] = '\0';
    for (int i = 0; i < 2000; i++)
        strcat(t, "./");
    strcat(t, "PG_VERSION");
    assert_int_equal(symlinkat(t, f->datafd, "l_long"), 0);
    assert_host(f, "/", "/pglite/data/l_long", 0, "/pglite/data/PG_VERSION",
                1, "PG_VERSION");
    /* ...but nested long targets that do not fit give ENAMETOOLONG. */
    for (int i = 0; i < 3; i++) {
        char name2[16], next[16];
        snprintf(name2, sizeof name2, "l_nest%d", i);
        snprintf(next, sizeof next, "l_nest%d", i + 1);
        strcpy(t, next);
        for (int j = 0; j < 2000; j++)
            strcat(t, "/.");
        assert_int_equal(symlinkat(t, f->datafd, name2), 0);
    }
    assert_int_equal(mkdirat(f->datafd, "l_nest3", 0700), 0);
    assert_host(f, "/", "/pglite/data/l_nest2", 0, "/pglite/data/l_nest3", 1,
                "l_nest3");
    assert_err(f, "/", "/pglite/data/l_nest0", 0, ENAMETOOLONG);
    free(t);

    /* Embedded NUL. */
    assert_int_equal(vfs_resolve_n(f->v, "/", "/pglite\0/data", 13, 0, loc),
                     -EINVAL);
    assert_int_equal(vfs_resolve_n(f->v, "/", "/pglite/data\0", 13, 0, loc),
                     -EINVAL);
    /* A length that stops short of the rest is just a shorter path. */
    assert_int_equal(vfs_resolve_n(f->v, "/", "/pglite/dataXYZ", 12, 0, loc),
                     0);
    assert_string_equal(loc->guest, "/pglite/data");
    assert_int_equal(vfs_resolve_n(f->v, "/", "", 0, 0, loc), -ENOENT);
    assert_int_equal(vfs_resolve_n(f->v, "/", NULL, 0, 0, loc), -ENOENT);
    free(loc);
    free(p);
}

static void test_create(void **state)
{
    fixture *f = *state;
    assert_err(f, "/", "/pglite/data/newfile", 0, ENOENT);
    assert_host(f, "/", "/pglite/data/newfile", VFS_CREATE,
                "/pglite/data/newfile", 1, "newfile");
    assert_int_equal(f->loc.trailing_slash, 0);
    assert_host(f, "/", "/pglite/data/base/1/f", VFS_CREATE,
                "/pglite/data/base/1/f", 1, "base/1/f");
    assert_host(f, "/", "/pglite/data/newdir/", VFS_CREATE,
                "/pglite/data/newdir", 1, "newdir");
    assert_int_equal(f->loc.trailing_slash, 1);
    assert_err(f, "/", "/pglite/data/nodir/newfile", VFS_CREATE, ENOENT);
    assert_err(f, "/", "/pglite/data/newfile/..", VFS_CREATE, ENOENT);
    assert_err(f, "/", "/pglite/data/PG_VERSION/x", VFS_CREATE, ENOTDIR);
    assert_err(f, "/", "/newfile", VFS_CREATE, EROFS);
    assert_err(f, "/", "/dev/newdev", VFS_CREATE, EROFS);
    assert_err(f, "/", "/home/x", VFS_CREATE, EROFS);
    assert_err(f, "/", "/nodir/x", VFS_CREATE, ENOENT);
    /* Existing things resolve as usual. */
    assert_int_equal(res(f, "/", "/home", VFS_CREATE), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_SYNTH);
    assert_int_equal(res(f, "/", "/dev/null", VFS_CREATE), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_DEV);
    /* A dangling link: created at its target (as open O_CREAT does), or
     * the link itself with NOFOLLOW (as O_CREAT|O_EXCL must). */
    assert_host(f, "/", "/pglite/data/dangling", VFS_CREATE,
                "/pglite/data/newtarget", 1, "newtarget");
    assert_host(f, "/", "/pglite/data/dangling", VFS_CREATE | VFS_NOFOLLOW,
                "/pglite/data/dangling", 1, "dangling");
    assert_err(f, "/", "/pglite/data/dangling", 0, ENOENT);
    /* Create for real through vfs_openat in the RW mount. */
    assert_int_equal(res(f, "/pglite/data", "base/created", VFS_CREATE), 0);
    int fd = vfs_openat(&f->loc, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(faccessat(f->datafd, "base/created", F_OK, 0), 0);
    /* The RO mount refuses. */
    assert_host(f, "/", "/pglite/share/newfile", VFS_CREATE,
                "/pglite/share/newfile", 0, "share/newfile");
    assert_int_equal(vfs_openat(&f->loc, O_WRONLY | O_CREAT, 0600), -EROFS);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY | O_CREAT, 0600), -EROFS);
    assert_int_equal(faccessat(f->rtfd, "share/newfile", F_OK, 0), -1);
}

static void test_nofollow(void **state)
{
    fixture *f = *state;
    assert_host(f, "/", "/pglite/data/l_base", VFS_NOFOLLOW,
                "/pglite/data/l_base", 1, "l_base");
    assert_host(f, "/", "/pglite/data/l_base", 0, "/pglite/data/base", 1,
                "base");
    /* Intermediate links are followed regardless. */
    assert_host(f, "/", "/pglite/data/l_base/1", VFS_NOFOLLOW,
                "/pglite/data/base/1", 1, "base/1");
    /* A trailing slash follows, as on Linux. */
    assert_host(f, "/", "/pglite/data/l_base/", VFS_NOFOLLOW,
                "/pglite/data/base", 1, "base");
    assert_err(f, "/", "/pglite/data/l_etc/", VFS_NOFOLLOW, ENOENT);
    assert_host(f, "/", "/pglite/data/l_base/.", VFS_NOFOLLOW,
                "/pglite/data/base", 1, "base");
    /* NOFOLLOW on a plain file is a plain lookup. */
    assert_host(f, "/", "/pglite/data/PG_VERSION", VFS_NOFOLLOW,
                "/pglite/data/PG_VERSION", 1, "PG_VERSION");
}

static void test_devices(void **state)
{
    fixture *f = *state;
    assert_int_equal(res(f, "/", "/dev/null", 0), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_DEV);
    assert_int_equal(f->loc.dev, VFS_DEV_NULL);
    assert_int_equal(f->loc.dirfd, -1);
    assert_string_equal(f->loc.guest, "/dev/null");
    assert_string_equal(f->loc.rel, "");
    assert_int_equal(res(f, "/dev", "urandom", 0), 0);
    assert_int_equal(f->loc.dev, VFS_DEV_URANDOM);
    assert_int_equal(res(f, "/pglite", "../dev/../dev/blob", VFS_NOFOLLOW), 0);
    assert_int_equal(f->loc.dev, VFS_DEV_BLOB);
    assert_string_equal(f->loc.guest, "/dev/blob");
    assert_err(f, "/", "/dev/null/x", 0, ENOTDIR);
    assert_err(f, "/", "/dev/null/", 0, ENOTDIR);
    assert_err(f, "/", "/dev/random", 0, ENOENT);
    assert_err(f, "/", "/dev/zero", 0, ENOENT);
    /* Devices are served above the vfs, never opened on the host. */
    assert_int_equal(res(f, "/", "/dev/null", 0), 0);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY, 0), -EINVAL);
    assert_int_equal(res(f, "/", "/dev", 0), 0);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY, 0), -EINVAL);
    /* Setup errors. */
    assert_int_equal(vfs_add_device(f->v, "/dev/null", VFS_DEV_NULL), -EEXIST);
    assert_int_equal(vfs_add_device(f->v, "/pglite", VFS_DEV_NULL), -EEXIST);
    assert_int_equal(vfs_add_device(f->v, "dev/x", VFS_DEV_NULL), -EINVAL);
    assert_int_equal(vfs_add_device(f->v, "/", VFS_DEV_NULL), -EINVAL);
    assert_int_equal(vfs_add_device(f->v, "/dev/x", VFS_DEV_NONE), -EINVAL);
    assert_int_equal(vfs_add_device(f->v, "/dev/x", (vfs_dev)99), -EINVAL);
}

typedef struct {
    char names[16][64];
    int is_dir[16];
    int n;
} listing;

static void collect(void *ctx, const char *name, int is_dir)
{
    listing *l = ctx;
    if (l->n < 16) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        l->is_dir[l->n] = is_dir;
    }
    l->n++;
}

static int find(const listing *l, const char *name)
{
    for (int i = 0; i < l->n && i < 16; i++)
        if (strcmp(l->names[i], name) == 0)
            return i;
    return -1;
}

static void test_synthetic(void **state)
{
    fixture *f = *state;
    static const char *const synth[] = {"/", "/dev", "/home", "//dev/.",
                                        "/home/postgres/.."};
    for (size_t i = 0; i < sizeof synth / sizeof *synth; i++) {
        assert_int_equal(res(f, "/", synth[i], 0), 0);
        assert_int_equal(f->loc.kind, VFS_NODE_SYNTH);
        assert_int_equal(f->loc.dirfd, -1);
        assert_int_equal(f->loc.writable, 0);
    }
    assert_string_equal(f->loc.guest, "/home");
    assert_err(f, "/", "/home/other", 0, ENOENT);
    assert_err(f, "/", "/proc", 0, ENOENT);

    listing l = {0};
    assert_int_equal(vfs_list_synthetic(f->v, "/", collect, &l), 4);
    assert_int_equal(l.n, 4);
    static const char *const top[] = {"pglite", "tmp", "home", "dev"};
    for (int i = 0; i < 4; i++) {
        int at = find(&l, top[i]);
        assert_true(at >= 0);
        assert_int_equal(l.is_dir[at], 1);
    }
    memset(&l, 0, sizeof l);
    assert_int_equal(vfs_list_synthetic(f->v, "/dev", collect, &l), 3);
    static const char *const devs[] = {"null", "urandom", "blob"};
    for (int i = 0; i < 3; i++) {
        int at = find(&l, devs[i]);
        assert_true(at >= 0);
        assert_int_equal(l.is_dir[at], 0);
    }
    memset(&l, 0, sizeof l);
    assert_int_equal(vfs_list_synthetic(f->v, "/home", collect, &l), 1);
    assert_string_equal(l.names[0], "postgres");
    assert_int_equal(vfs_list_synthetic(f->v, "/home", NULL, NULL), 1);
    assert_int_equal(vfs_list_synthetic(f->v, "/pglite", collect, &l), -EINVAL);
    assert_int_equal(vfs_list_synthetic(f->v, "/nope", collect, &l), -ENOENT);
    assert_int_equal(vfs_list_synthetic(f->v, "/dev/null", collect, &l),
                     -ENOTDIR);
    assert_int_equal(vfs_list_synthetic(f->v, "/dev/", collect, &l), -EINVAL);
}

static void test_readonly(void **state)
{
    fixture *f = *state;
    assert_int_equal(res(f, "/", "/pglite/share/file", 0), 0);
    assert_int_equal(f->loc.writable, 0);
    int fd = vfs_openat(&f->loc, O_RDONLY, 0);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    assert_int_equal(vfs_openat(&f->loc, O_WRONLY, 0), -EROFS);
    assert_int_equal(vfs_openat(&f->loc, O_RDWR, 0), -EROFS);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY | O_TRUNC, 0), -EROFS);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY | O_CREAT | O_EXCL, 0600),
                     -EEXIST);
    fd = vfs_openat(&f->loc, O_RDONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(res(f, "/", "/pglite", 0), 0);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY | O_TMPFILE, 0600), -EROFS);
    assert_int_equal(res(f, "/", "/pglite/data/PG_VERSION", 0), 0);
    assert_int_equal(f->loc.writable, 1);
    fd = vfs_openat(&f->loc, O_RDWR, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_string_equal(vfs_mount_host_path(f->v, "/pglite"), f->runtime);
    assert_string_equal(vfs_mount_host_path(f->v, "/pglite/data"), f->data);
    assert_null(vfs_mount_host_path(f->v, "/pglite/data/base"));
}

static void test_mount_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(vfs_mount(f->v, "/pglite", f->data, VFS_RDWR), -EEXIST);
    assert_int_equal(vfs_mount(f->v, "/dev/null", f->data, VFS_RDWR), -EEXIST);
    assert_int_equal(vfs_mount(f->v, "pglite2", f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x/", f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x//y", f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x/../y", f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x/./y", f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x", f->data, 7), -EINVAL);
    assert_int_equal(vfs_mount(f->v, NULL, f->data, VFS_RDWR), -EINVAL);
    assert_int_equal(vfs_mount(f->v, "/x", NULL, VFS_RDWR), -EINVAL);
    char p[600];
    snprintf(p, sizeof p, "%s/nope", f->root);
    assert_int_equal(vfs_mount(f->v, "/x", p, VFS_RDWR), -ENOENT);
    snprintf(p, sizeof p, "%s/PG_VERSION", f->data);
    assert_int_equal(vfs_mount(f->v, "/x", p, VFS_RDWR), -ENOTDIR);
    /* Nothing was added. */
    assert_err(f, "/", "/x", 0, ENOENT);
    /* NULL and empty vfs. */
    vfs_free(NULL);
    vfs *e = vfs_new();
    assert_non_null(e);
    vfs_loc *loc = malloc(sizeof *loc);
    assert_non_null(loc);
    assert_int_equal(vfs_resolve(e, "/", "/", 0, loc), 0);
    assert_int_equal(loc->kind, VFS_NODE_SYNTH);
    assert_int_equal(vfs_resolve(e, "/", "/a", 0, loc), -ENOENT);
    assert_int_equal(vfs_resolve(NULL, "/", "/a", 0, loc), -EFAULT);
    assert_int_equal(vfs_resolve(e, "/", NULL, 0, loc), -EFAULT);
    assert_int_equal(vfs_resolve(e, "/", "/", 0, NULL), -EFAULT);
    assert_int_equal(vfs_list_synthetic(e, "/", collect, NULL), 0);
    /* A mount at "/" covers everything below it. */
    assert_int_equal(vfs_mount(e, "/", f->data, VFS_RDONLY), 0);
    assert_int_equal(vfs_resolve(e, "/", "/../base/1", 0, loc), 0);
    assert_int_equal(loc->kind, VFS_NODE_HOST);
    assert_string_equal(loc->rel, "base/1");
    assert_string_equal(loc->guest, "/base/1");
    assert_int_equal(vfs_resolve(e, "/", "/", 0, loc), 0);
    assert_string_equal(loc->rel, ".");
    assert_int_equal(vfs_resolve(e, "/", "/l_rel_escape", 0, loc), -ENOENT);
    free(loc);
    vfs_free(e);
}

/* The guest swaps a checked directory for a symlink to the host secret
 * after resolution: vfs_openat still refuses to leave (openat2, or the
 * step-by-step O_NOFOLLOW fallback). */
static void test_openat_race(void **state)
{
    fixture *f = *state;
    assert_int_equal(mkdirat(f->datafd, "race", 0700), 0);
    put_file(f->datafd, "race/passwd", "not secret\n");
    assert_int_equal(res(f, "/", "/pglite/data/race/passwd", 0), 0);
    assert_int_equal(renameat(f->datafd, "race", f->datafd, "race_old"), 0);
    assert_int_equal(symlinkat(f->secret, f->datafd, "race"), 0);
    int fd = vfs_openat(&f->loc, O_RDONLY, 0);
    assert_true(fd < 0);
    assert_true(fd == -ELOOP || fd == -EXDEV || fd == -ENOTDIR);
}

/* VFS_LEXICAL: from the mount table alone, and an open that fails, rather
 * than follows, wherever a full resolution would have looked at a symlink. */
static void test_lexical(void **state)
{
    fixture *f = *state;
    /* A plain path: the same location as a full resolution, unchecked. */
    assert_int_equal(res(f, "/", "/pglite/data/base/1/f", VFS_LEXICAL), 0);
    assert_int_equal(f->loc.kind, VFS_NODE_HOST);
    assert_true(f->loc.unchecked);
    assert_string_equal(f->loc.rel, "base/1/f");
    assert_string_equal(f->loc.guest, "/pglite/data/base/1/f");
    int fd = vfs_openat(&f->loc, O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    /* A mount root, a "..", a trailing '/': looked at as before. */
    assert_int_equal(res(f, "/", "/pglite/data", VFS_LEXICAL), 0);
    assert_false(f->loc.unchecked);
    assert_int_equal(res(f, "/pglite/data", "l_base/../PG_VERSION", VFS_LEXICAL), 0);
    assert_false(f->loc.unchecked);
    assert_string_equal(f->loc.rel, "PG_VERSION");
    assert_int_equal(res(f, "/", "/pglite/data/base/", VFS_LEXICAL), 0);
    assert_false(f->loc.unchecked);
    /* "..." and "..x" are names, not "..". */
    assert_int_equal(res(f, "/", "/pglite/data/base/...", VFS_LEXICAL | VFS_CREATE), 0);
    assert_true(f->loc.unchecked);
    /* Symlinks on the way, legitimate or escaping: the open fails, so the
     * caller resolves again in full. */
    static const char *const links[] = {
        "/pglite/data/l_base/1/f", "/pglite/data/base/l_ok",
        "/pglite/data/l_secret_abs/passwd", "/pglite/data/l_etc/passwd",
        "/pglite/data/l_proc/passwd", "/pglite/data/dangling",
    };
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        assert_int_equal(res(f, "/", links[i], VFS_LEXICAL | VFS_CREATE), 0);
        assert_true(f->loc.unchecked);
        fd = vfs_openat(&f->loc, O_RDWR | O_CREAT, 0600);
        assert_int_equal(fd, -ELOOP);
    }
    /* A missing directory on the way: the open says ENOENT, as the full
     * resolution does; nothing is created. */
    assert_int_equal(res(f, "/", "/pglite/data/nodir/x", VFS_LEXICAL | VFS_CREATE), 0);
    assert_int_equal(vfs_openat(&f->loc, O_RDWR | O_CREAT, 0600), -ENOENT);
    assert_err(f, "/", "/pglite/data/nodir/x", VFS_CREATE, ENOENT);
    /* A file on the way: ENOTDIR, as the full resolution says. */
    assert_int_equal(res(f, "/", "/pglite/data/PG_VERSION/x", VFS_LEXICAL), 0);
    assert_int_equal(vfs_openat(&f->loc, O_RDONLY, 0), -ENOTDIR);
    assert_err(f, "/", "/pglite/data/PG_VERSION/x", 0, ENOTDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_normal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_mounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotdot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_legit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_loops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nofollow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_synthetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mount_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openat_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lexical, setup, teardown),
    };
    return cmocka_run_group_tests_name("vfs", tests, NULL, NULL);
}
