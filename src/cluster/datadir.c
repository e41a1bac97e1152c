/* Data directories: the cached template, fast copies, opened clusters with
 * their locks, and temporary databases.
 *
 * Layout on the host:
 *   <cache>/template-<key>/          the template, made once by initdb
 *   <cache>/template-<key>.lock      serialises building it across processes
 *   <tmp root>/pglite-tmp-<pid>-<rnd>/  this process's scratch for temporaries
 *   (tmp root: $PGLITE_TMPDIR, else /dev/shm, else $TMPDIR or /tmp):
 *       base/     a copy of the template (same filesystem as the db-N)
 *       template/ the template itself when the cache is unwritable
 *       db-N/     one temporary database each, removed on close
 *       spare-K/  the next db-N, copied from base in the background after
 *                 each temporary open (an open is then a rename)
 *   <datadir>/pglite.lock            the open-file-description lock
 *
 * A cluster made by cluster_open is built in <datadir>/.pglite-new with a
 * marker <datadir>/.pglite-incomplete, moved up with PG_VERSION last, and
 * the marker removed at the end: an interrupted creation is recognised (and
 * redone) by the next opener instead of looking like a broken cluster. */
#define _GNU_SOURCE
#include "cluster/cluster.h"
#include "runtime_version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Bump when the way a template is made changes (initdb options, layout). */
#define TEMPLATE_FORMAT "pglite-template-format-1"
#define TEMPLATE_MARKER ".pglite-template-ok"
#define LOCK_NAME "pglite.lock"
#define INCOMPLETE_NAME ".pglite-incomplete"
#define NEW_NAME ".pglite-new"
/* The runtime's major version as PG_VERSION spells it (runtime_version.h). */
#define PG_MAJOR_STR_(x) #x
#define PG_MAJOR_STR(x) PG_MAJOR_STR_(x)
#define PG_MAJOR PG_MAJOR_STR(PGLITE_PG_MAJOR)
#define PG_CONTROL_SIZE 8192
#define PATHLEN 4096

struct cluster {
    char *path;
    int temporary;
    int lock_fd;
    pid_t owner; /* a forked child never removes its parent's directory */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- small helpers ---------------------------------------------------- */

static int pjoin(char *out, size_t n, const char *a, const char *b, char *err,
                 size_t errlen) {
    int k = snprintf(out, n, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= n) {
        snprintf(err, errlen, "path too long: %s/%s", a, b);
        return -1;
    }
    return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f;
    remove(p);
    return 0; /* keep going: remove as much as possible */
}

int cluster_rmtree(const char *path) {
    if (!path)
        return 0;
    nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
    struct stat st;
    return lstat(path, &st) == 0 ? -1 : 0;
}

static void rmtree(const char *p) { cluster_rmtree(p); }

/* mkdir -p; the last component gets mode, missing parents 0700. */
static int mkdir_p(const char *path, mode_t mode) {
    char buf[PATHLEN];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = 0;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0) {
        if (errno != EEXIST)
            return -1;
        struct stat st;
        if (stat(buf, &st) != 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
    }
    return 0;
}

static void fsync_path(const char *p) {
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Read a small file into buf (NUL-terminated, trailing whitespace cut).
 * Returns its length or -1. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t n) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r < 0)
        return -1;
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r' || buf[r - 1] == ' '))
        r--;
    buf[r] = 0;
    return r;
}

static int write_small(int dirfd, const char *name, const char *text, int sync) {
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int ok = w == (ssize_t)len && (!sync || fsync(fd) == 0);
    if (close(fd) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int pid_alive(long pid) {
    if (pid <= 0 || pid > INT32_MAX)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* ---- copying ----------------------------------------------------------- */

typedef struct copier {
    int no_clone, no_cfr;  /* this filesystem refused FICLONE / copy_file_range */
    const atomic_int *cancel; /* stop when this becomes non-zero (may be NULL) */
    mode_t umask;          /* the process umask (07777 when unknown: always chmod) */
    char *buf;             /* read/write fallback buffer */
    char path[PATHLEN];    /* the source path being copied, for messages */
    char *err;
    size_t errlen;
} copier;

static int copy_data(copier *c, int in, int out, off_t size) {
    if (size == 0)
        return 0;
    if (!c->no_clone) {
        if (ioctl(out, FICLONE, in) == 0)
            return 0;
        c->no_clone = 1; /* EOPNOTSUPP, EXDEV, EINVAL...: not here */
    }
    off_t done = 0;
    if (!c->no_cfr) {
        while (done < size) {
            ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)(size - done), 0);
            if (n > 0) {
                done += n;
                continue;
            }
            if (n == 0)
                break; /* the file shrank: copy what is there */
            if (errno == EINTR)
                continue;
            if (done == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                              errno == EOPNOTSUPP || errno == EPERM)) {
                c->no_cfr = 1;
                break;
            }
            return -1;
        }
        if (!c->no_cfr)
            return 0;
    }
    if (!c->buf && !(c->buf = malloc(1 << 20))) {
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        ssize_t r = read(in, c->buf, 1 << 20);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        for (ssize_t o = 0; o < r;) {
            ssize_t w = write(out, c->buf + o, (size_t)(r - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            o += w;
        }
    }
}

static int is_skipped_top(const char *name) {
    return !strcmp(name, "postmaster.pid") || !strcmp(name, TEMPLATE_MARKER) ||
           !strcmp(name, LOCK_NAME) || !strcmp(name, INCOMPLETE_NAME) ||
           !strcmp(name, NEW_NAME);
}

/* Copy the entries of directory sfd into directory dfd. c->path holds the
 * source directory's path (restored on return). */
static int copy_entries(copier *c, int sfd, int dfd, int top) {
    int dup_fd = dup(sfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        snprintf(c->err, c->errlen, "cannot read %s: %s", c->path, strerror(errno));
        return -1;
    }
    size_t plen = strlen(c->path);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (errno = 0, e = readdir(d))) {
        const char *name = e->d_name;
        if (c->cancel && atomic_load(c->cancel)) {
            snprintf(c->err, c->errlen, "copy of %s cancelled", c->path);
            rc = -1;
            break;
        }
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        if (top && is_skipped_top(name))
            continue;
        snprintf(c->path + plen, sizeof c->path - plen, "/%s", name);
        struct stat st;
        if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            snprintf(c->err, c->errlen, "cannot stat %s: %s", c->path, strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            int s2 = -1, d2 = -1;
            if (mkdirat(dfd, name, 0700) != 0 ||
                (s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                (d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                snprintf(c->err, c->errlen, "cannot copy the directory %s: %s", c->path,
                         strerror(errno));
                rc = -1;
            } else {
                rc = copy_entries(c, s2, d2, 0);
                /* the mode last, so a read-only source directory can be filled */
                if (rc == 0 && ((st.st_mode & 07777) != 0700 &&
                                fchmod(d2, st.st_mode & 07777) != 0)) {
                    snprintf(c->err, c->errlen, "cannot chmod the copy of %s: %s",
                             c->path, strerror(errno));
                    rc = -1;
                }
            }
            if (s2 >= 0)
                close(s2);
            if (d2 >= 0)
                close(d2);
        } else if (S_ISREG(st.st_mode)) {
            /* many relation files are empty: no need to open those */
            int in = st.st_size == 0 ? -2 : openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            int out = in == -1 ? -1
                             : openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                      st.st_mode & 0777);
            if (in == -1 || out < 0 || copy_data(c, in, out, st.st_size) != 0) {
                snprintf(c->err, c->errlen, "cannot copy %s: %s", c->path, strerror(errno));
                rc = -1;
            }
            /* only when the umask cut the mode, or for setuid-like bits */
            mode_t want = st.st_mode & 07777;
            if (rc == 0 && ((want & 07000) || (want & ~c->umask) != want) &&
                fchmod(out, want) != 0) {
                snprintf(c->err, c->errlen, "cannot chmod the copy of %s: %s", c->path,
                         strerror(errno));
                rc = -1;
            }
            if (in >= 0)
                close(in);
            if (out >= 0)
                close(out);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATHLEN];
            ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
            if (n < 0 || (size_t)n >= sizeof target - 1) {
                snprintf(c->err, c->errlen, "cannot read the link %s: %s", c->path,
                         n < 0 ? strerror(errno) : "target too long");
                rc = -1;
            } else {
                target[n] = 0;
                if (symlinkat(target, dfd, name) != 0) {
                    snprintf(c->err, c->errlen, "cannot copy the link %s: %s", c->path,
                             strerror(errno));
                    rc = -1;
                }
            }
        }
        /* sockets, fifos and devices have no place in a data directory: skipped */
        c->path[plen] = 0;
    }
    if (rc == 0 && errno != 0 && !e) {
        snprintf(c->err, c->errlen, "cannot read %s: %s", c->path, strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

/* The umask, read without changing it (umask(2) would race with other
 * threads); 07777 (chmod every file) when /proc is not there. */
static mode_t current_umask(void) {
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 07777;
    char line[256];
    mode_t m = 07777;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Umask:", 6)) {
            m = (mode_t)strtoul(line + 6, NULL, 8);
            break;
        }
    fclose(f);
    return m;
}

/* Is dir empty (ignoring the names for which ignore() is true)? 1 yes,
 * 0 no, -1 error. */
static int dir_is_empty(const char *dir, int ignore_lock) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (ignore_lock && !strcmp(e->d_name, LOCK_NAME))
            continue;
        empty = 0;
        break;
    }
    closedir(d);
    return empty;
}

static int copy_tree(const char *from, const char *to, const atomic_int *cancel, char *err,
                     size_t errlen) {
    struct stat sst, dst;
    if (stat(from, &sst) != 0) {
        snprintf(err, errlen, "cannot copy %s: %s", from, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sst.st_mode)) {
        snprintf(err, errlen, "cannot copy %s: not a directory", from);
        return -1;
    }
    int created = 0;
    if (lstat(to, &dst) == 0) {
        if (!S_ISDIR(dst.st_mode)) {
            snprintf(err, errlen, "cannot copy into %s: it exists and is not a directory", to);
            return -1;
        }
        if (dir_is_empty(to, 0) != 1) {
            snprintf(err, errlen, "cannot copy into %s: it is not empty", to);
            return -1;
        }
    } else if (errno == ENOENT) {
        if (mkdir_p(to, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", to, strerror(errno));
            return -1;
        }
        created = 1;
    } else {
        snprintf(err, errlen, "cannot copy into %s: %s", to, strerror(errno));
        return -1;
    }
    copier *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->cancel = cancel;
    c->umask = current_umask();
    c->err = err;
    c->errlen = errlen;
    snprintf(c->path, sizeof c->path, "%s", from);
    int sfd = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int dfd = open(to, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = -1;
    if (sfd < 0 || dfd < 0)
        snprintf(err, errlen, "cannot open %s: %s", sfd < 0 ? from : to, strerror(errno));
    else
        rc = copy_entries(c, sfd, dfd, 1);
    if (rc == 0 && (fstat(dfd, &dst) != 0 || (dst.st_mode & 07777) != (sst.st_mode & 07777)) &&
        fchmod(dfd, sst.st_mode & 07777) != 0) {
        snprintf(err, errlen, "cannot chmod %s: %s", to, strerror(errno));
        rc = -1;
    }
    if (sfd >= 0)
        close(sfd);
    if (dfd >= 0)
        close(dfd);
    free(c->buf);
    free(c);
    if (rc != 0) {
        /* leave the destination as it was: gone, or empty */
        if (created) {
            rmtree(to);
        } else {
            DIR *d = opendir(to);
            struct dirent *e;
            char p[PATHLEN];
            while (d && (e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                    snprintf(p, sizeof p, "%s/%s", to, e->d_name) < (int)sizeof p)
                    rmtree(p);
            if (d)
                closedir(d);
        }
    }
    return rc;
}

int cluster_copy_tree(const char *from, const char *to, char *err, size_t errlen) {
    if (!from || !to) {
        snprintf(err, errlen, "cluster_copy_tree: no path given");
        return -1;
    }
    return copy_tree(from, to, NULL, err, errlen);
}

/* Make a new tree durable as initdb does: start writeback of every file
 * first, then fsync each file and directory (a single pass of fsyncs waits
 * for the disk once per file: twice as slow here). */
static int g_sync_pass; /* only under g_sync_mu */
static pthread_mutex_t g_sync_mu = PTHREAD_MUTEX_INITIALIZER;

static int sync_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)f;
    if (!((flag == FTW_F && S_ISREG(st->st_mode)) || flag == FTW_DP))
        return 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    if (g_sync_pass == 0)
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    else
        fsync(fd);
    close(fd);
    return 0;
}

static void sync_tree(const char *path) {
    pthread_mutex_lock(&g_sync_mu);
    for (g_sync_pass = 0; g_sync_pass < 2; g_sync_pass++)
        nftw(path, sync_cb, 32, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_unlock(&g_sync_mu);
}

/* ---- validating a cluster --------------------------------------------- */

/* The checks of an existing data directory, which change nothing. */
static int validate_cluster(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "data directory %s: %s", path, strerror(errno));
        return -1;
    }
    if ((st.st_mode & S_IRWXU) != S_IRWXU || access(path, R_OK | W_OK | X_OK) != 0) {
        snprintf(err, errlen,
                 "data directory %s has mode %04o: the owner needs read, write and "
                 "search permission (chmod 0700)",
                 path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, errlen, "data directory %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char ver[64];
    ssize_t vl = read_small(dfd, "PG_VERSION", ver, sizeof ver);
    if (vl < 0) {
        snprintf(err, errlen, "data directory %s: cannot read PG_VERSION: %s", path,
                 strerror(errno));
        goto out;
    }
    if (strcmp(ver, PG_MAJOR) != 0) {
        for (char *p = ver; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
        snprintf(err, errlen,
                 "data directory %s is a cluster of PostgreSQL %s, this is " PG_MAJOR,
                 path, vl ? ver : "(empty PG_VERSION)");
        goto out;
    }
    if (fstatat(dfd, "global/pg_control", &st, 0) != 0) {
        snprintf(err, errlen, "data directory %s: global/pg_control is missing (%s)", path,
                 strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != PG_CONTROL_SIZE) {
        snprintf(err, errlen,
                 "data directory %s: global/pg_control is truncated or damaged "
                 "(%lld bytes, expected %d)",
                 path, (long long)st.st_size, PG_CONTROL_SIZE);
        goto out;
    }
    static const char *const subdirs[] = {"base", "global", "pg_wal", "pg_xact",
                                          "pg_multixact"};
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        if (fstatat(dfd, subdirs[i], &st, 0) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "data directory %s: the subdirectory %s is missing", path,
                     subdirs[i]);
            goto out;
        }
    }
    rc = 0;
out:
    close(dfd);
    return rc;
}

/* A postmaster.pid left in dfd: 0 if absent or stale (nothing runs there),
 * 1 if a native PostgreSQL server that is still alive wrote it for this very
 * directory. PGlite's own postgres writes its guest path (/pglite/data) and
 * the guest's pid, so its file is always stale once we hold the lock. */
static int live_native_postmaster(int dfd, long *pid_out) {
    char buf[1024];
    if (read_small(dfd, "postmaster.pid", buf, sizeof buf) < 0)
        return 0;
    char *nl = strchr(buf, '\n');
    if (!nl)
        return 0;
    *nl = 0;
    char *end;
    long pid = strtol(buf, &end, 10);
    char *dir = nl + 1;
    char *nl2 = strchr(dir, '\n');
    if (nl2)
        *nl2 = 0;
    struct stat a, b;
    if (*dir != '/' || stat(dir, &a) != 0 || fstat(dfd, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino)
        return 0; /* not this directory on the host: PGlite's, or moved */
    if (!pid_alive(pid < 0 ? -pid : pid))
        return 0;
    *pid_out = pid < 0 ? -pid : pid;
    return 1;
}

typedef enum { K_ERROR = -1, K_MISSING, K_EMPTY, K_INCOMPLETE, K_CLUSTER } dir_kind;

/* What is at path, touching nothing. */
static dir_kind classify(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return K_MISSING;
        snprintf(err, errlen, "data directory %s: %s", path, strerror(errno));
        return K_ERROR;
    }
    if (S_ISLNK(st.st_mode) && stat(path, &st) != 0) {
        snprintf(err, errlen, "data directory %s is a dangling symbolic link", path);
        return K_ERROR;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s exists and is not a directory", path);
        return K_ERROR;
    }
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "cannot read the data directory %s: %s", path, strerror(errno));
        return K_ERROR;
    }
    int version = 0, incomplete = 0, other = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, LOCK_NAME))
            continue;
        if (!strcmp(n, "PG_VERSION"))
            version = 1;
        else if (!strcmp(n, INCOMPLETE_NAME))
            incomplete = 1;
        else
            other = 1;
    }
    closedir(d);
    if (incomplete)
        return K_INCOMPLETE;
    if (version)
        return K_CLUSTER;
    if (other) {
        snprintf(err, errlen,
                 "%s is not a PostgreSQL data directory (it is not empty and has no "
                 "PG_VERSION)",
                 path);
        return K_ERROR;
    }
    return K_EMPTY;
}

/* ---- locking ----------------------------------------------------------- */

/* Take <dir>/pglite.lock. Returns the fd, or -1 with err set. */
static int take_lock(const char *dir, char *err, size_t errlen) {
    char p[PATHLEN];
    if (pjoin(p, sizeof p, dir, LOCK_NAME, err, errlen) != 0)
        return -1;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the lock file %s: %s", p, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int r = fcntl(fd, F_OFD_SETLK, &fl);
    if (r != 0 && (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP)) {
        /* no OFD locks here (old kernel, some network filesystems): flock
         * locks are per open file description as well */
        r = flock(fd, LOCK_EX | LOCK_NB);
        if (r != 0 && errno == EWOULDBLOCK)
            errno = EAGAIN;
    }
    if (r != 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            char buf[64];
            long pid = 0;
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = 0;
                pid = strtol(buf, NULL, 10);
            }
            if (pid > 0)
                snprintf(err, errlen, "data directory %s is in use by process %ld", dir, pid);
            else
                snprintf(err, errlen, "data directory %s is in use by another process", dir);
            close(fd);
            return PGL_EBUSY;
        }
        snprintf(err, errlen, "cannot lock %s: %s", p, strerror(e));
        close(fd);
        return -1;
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        snprintf(err, errlen, "cannot write the lock file %s: %s", p, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the template ------------------------------------------------------ */

static char g_key[65];
static char g_key_tree[PATHLEN];

static int hash_file(EVP_MD_CTX *ctx, const char *tag, const char *path, char *err,
                     size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s: %s (is the runtime tree there? set "
                 "PGLITE_RUNTIME_DIR)", path, strerror(errno));
        return -1;
    }
    EVP_DigestUpdate(ctx, tag, strlen(tag) + 1);
    char buf[65536];
    ssize_t r;
    uint64_t total = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        total += (uint64_t)r;
    }
    int e = errno;
    close(fd);
    if (r < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -1;
    }
    EVP_DigestUpdate(ctx, &total, sizeof total);
    return 0;
}

/* The template key: 32 hex digits of SHA-256 over the format version, the
 * pinned runtime (package, version and integrity from runtime.lock, so a
 * template made by one runtime is never used by another, even a minor
 * release with the same catalogs) and the tree's postgres.bki (a tree that
 * does not match the compiled runtime gets a template of its own).
 * Caller holds g_mu. */
static const char *template_key(char *err, size_t errlen) {
    const char *tree = cluster_runtime_tree();
    if (g_key[0] && !strcmp(g_key_tree, tree))
        return g_key;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        snprintf(err, errlen, "cannot initialise SHA-256");
        return NULL;
    }
    static const char runtime[] = TEMPLATE_FORMAT " " PGLITE_RUNTIME_PACKAGE "@"
        PGLITE_RUNTIME_VERSION " " PGLITE_RUNTIME_INTEGRITY;
    EVP_DigestUpdate(ctx, runtime, sizeof runtime);
    char p[PATHLEN];
    snprintf(p, sizeof p, "%s/pglite/share/postgresql/postgres.bki", tree);
    if (hash_file(ctx, "postgres.bki", p, err, errlen) != 0) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 16) {
        snprintf(err, errlen, "SHA-256 failed");
        return NULL;
    }
    for (unsigned i = 0; i < 16; i++)
        snprintf(g_key + 2 * i, 3, "%02x", md[i]);
    snprintf(g_key_tree, sizeof g_key_tree, "%s", tree);
    return g_key;
}

/* A template is trusted only when complete: a valid cluster and the marker
 * (written last) naming this key. Returns 0 if good, else -1 with why. */
static int verify_template(const char *path, const char *key, char *why, size_t whylen) {
    if (validate_cluster(path, why, whylen) != 0)
        return -1;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char mark[128];
    ssize_t n = dfd >= 0 ? read_small(dfd, TEMPLATE_MARKER, mark, sizeof mark) : -1;
    if (dfd >= 0)
        close(dfd);
    if (n < 0 || strcmp(mark, key) != 0) {
        snprintf(why, whylen, "the marker " TEMPLATE_MARKER " is missing or wrong");
        return -1;
    }
    return 0;
}

/* initdb into the new directory dir and mark it as a template. */
static int build_template(const char *dir, const char *key, char *err, size_t errlen) {
    if (cluster_initdb(dir, NULL, err, errlen) != 0)
        return -1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || write_small(dfd, TEMPLATE_MARKER, key, 1) != 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "cannot write the template marker in %s: %s", dir,
                 strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
}

static int cache_root(char *out, size_t n) {
    const char *c = getenv("PGLITE_CACHE_DIR");
    if (c && *c)
        return snprintf(out, n, "%s", c) < (int)n ? 0 : -1;
    c = getenv("XDG_CACHE_HOME");
    if (c && *c)
        return snprintf(out, n, "%s/pglite", c) < (int)n ? 0 : -1;
    c = getenv("HOME");
    if (c && *c)
        return snprintf(out, n, "%s/.cache/pglite", c) < (int)n ? 0 : -1;
    return -1;
}

/* Remove template-<key>.tmp-<pid> and .bad-<pid> left by dead processes. */
static void sweep_template_tmps(const char *root, const char *key) {
    DIR *d = opendir(root);
    if (!d)
        return;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "template-%s.", key);
    size_t pl = strlen(prefix);
    struct dirent *e;
    char p[PATHLEN];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl) != 0 ||
            (strncmp(e->d_name + pl, "tmp-", 4) != 0 && strncmp(e->d_name + pl, "bad-", 4) != 0))
            continue;
        char *end;
        long pid = strtol(e->d_name + pl + 4, &end, 10);
        if (*end == 0 && pid > 0 && pid != (long)getpid() && !pid_alive(pid) &&
            snprintf(p, sizeof p, "%s/%s", root, e->d_name) < (int)sizeof p)
            rmtree(p);
    }
    closedir(d);
}

/* 1: made or found the cached template at out; 0: the cache cannot be
 * written (caller falls back); -1: a real failure (err). Caller holds g_mu. */
static int cached_template(const char *key, char *out, size_t n, char *err, size_t errlen) {
    char root[PATHLEN], final[PATHLEN], why[1024];
    if (cache_root(root, sizeof root) != 0)
        return 0;
    char name[128];
    snprintf(name, sizeof name, "template-%s", key);
    if (pjoin(final, sizeof final, root, name, err, errlen) != 0)
        return -1;
    if (strlen(final) + 1 > n) {
        snprintf(err, errlen, "the buffer for the template path is too small");
        return -1;
    }
    if (verify_template(final, key, why, sizeof why) == 0) {
        snprintf(out, n, "%s", final);
        return 1;
    }
    if (mkdir_p(root, 0700) != 0)
        return 0;
    char lockp[PATHLEN + 16], tmp[PATHLEN + 32];
    snprintf(lockp, sizeof lockp, "%s.lock", final);
    int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return 0;
    while (flock(lfd, LOCK_EX) != 0 && errno == EINTR)
        ;
    int rc = -1;
    /* another process may have built it while we waited */
    if (verify_template(final, key, why, sizeof why) == 0) {
        snprintf(out, n, "%s", final);
        rc = 1;
        goto out;
    }
    struct stat st;
    if (lstat(final, &st) == 0) {
        fprintf(stderr, "pglite: the cached template %s is damaged (%s); rebuilding it\n",
                final, why);
        char bad[PATHLEN + 32];
        snprintf(bad, sizeof bad, "%s.bad-%ld", final, (long)getpid());
        if (rename(final, bad) == 0)
            rmtree(bad);
        else
            rmtree(final);
    }
    sweep_template_tmps(root, key);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", final, (long)getpid());
    rmtree(tmp);
    if (mkdir(tmp, 0700) != 0) {
        rc = 0; /* unwritable */
        goto out;
    }
    if (build_template(tmp, key, err, errlen) != 0) {
        rmtree(tmp);
        goto out;
    }
    if (rename(tmp, final) != 0) {
        /* someone won the race (without our lock file, e.g. deleted
         * meanwhile): use theirs if good */
        rmtree(tmp);
        if (verify_template(final, key, why, sizeof why) != 0) {
            snprintf(err, errlen, "cannot install the template %s: %s", final, why);
            goto out;
        }
    }
    fsync_path(root);
    snprintf(out, n, "%s", final);
    rc = 1;
out:
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}

/* ---- process-local state (temporaries, fallback template) -------------- */

enum { SPARE_NONE, SPARE_BUILDING, SPARE_READY };

static struct {
    pid_t pid;            /* the process this state belongs to */
    char dir[PATHLEN];    /* $TMPDIR/pglite-tmp-<pid>-<rnd> */
    char base[PATHLEN];   /* what temporaries copy: dir/base or dir/template */
    int have_template;    /* dir/template is ready (cache unwritable) */
    int warned;
    unsigned long next_db;
    /* The spare: the next temporary database, copied from base by a
     * background thread after each open, so that an open is a rename. */
    int spare_state;
    char spare[PATHLEN];
    unsigned long spare_seq;
    pthread_t worker;
    int worker_joinable;
} g_proc;

static pthread_cond_t g_spare_cv = PTHREAD_COND_INITIALIZER;
static atomic_int g_spare_cancel; /* set at exit: the spare is not needed */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Where temporary databases live: $PGLITE_TMPDIR if set, else shared
 * memory (/dev/shm) when it is a writable directory, else $TMPDIR or /tmp.
 * A temporary database dies with its process, so nothing is lost by
 * keeping it in memory, and copying the template there costs a fraction of
 * a disk copy (no journal, no block allocation). */
static const char *tmp_root(void) {
    const char *t = getenv("PGLITE_TMPDIR");
    if (t && *t)
        return t;
    if (access("/dev/shm", W_OK | X_OK) == 0)
        return "/dev/shm";
    t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* Remove $TMPDIR/pglite-tmp-<pid>-* of processes that are gone. */
static void sweep_leftovers(void) {
    const char *root = tmp_root();
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *e;
    char p[PATHLEN];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "pglite-tmp-", 11) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + 11, &end, 10);
        if (end == e->d_name + 11 || *end != '-' || pid <= 0 || pid == (long)getpid())
            continue;
        if (pid > INT32_MAX || (kill((pid_t)pid, 0) == -1 && errno == ESRCH)) {
            if (snprintf(p, sizeof p, "%s/%s", root, e->d_name) < (int)sizeof p)
                rmtree(p);
        }
    }
    closedir(d);
}

/* At exit: wait for the spare's thread, remove this process's directory
 * (never a parent's: the state is keyed by pid). */
static void proc_cleanup(void) {
    pthread_mutex_lock(&g_mu);
    if (g_proc.pid == getpid()) {
        atomic_store(&g_spare_cancel, 1); /* stops within one file's copy */
        while (g_proc.spare_state == SPARE_BUILDING)
            pthread_cond_wait(&g_spare_cv, &g_mu);
        if (g_proc.worker_joinable) {
            pthread_join(g_proc.worker, NULL);
            g_proc.worker_joinable = 0;
        }
        if (g_proc.dir[0])
            rmtree(g_proc.dir);
        g_proc.dir[0] = 0;
        g_proc.base[0] = 0;
        g_proc.spare_state = SPARE_NONE;
    }
    pthread_mutex_unlock(&g_mu);
}

/* fork() while another thread holds g_mu (making a template, say) would
 * leave the child's copy locked forever: hold it across the fork. */
static void fork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&g_mu); }
static void fork_child(void) { pthread_mutex_unlock(&g_mu); }

static void once_init(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    atexit(proc_cleanup);
}

static void *spare_worker(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-tmpdir");
    char **paths = arg, err[512];
    /* Background work: yield the CPU to the caller, who is usually starting
     * the database it just opened. (Linux: nice applies per thread.) */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0) {
        /* best effort */
    }
    int ok = copy_tree(paths[0], paths[1], &g_spare_cancel, err, sizeof err) == 0;
    pthread_mutex_lock(&g_mu);
    g_proc.spare_state = ok ? SPARE_READY : SPARE_NONE;
    pthread_cond_broadcast(&g_spare_cv);
    pthread_mutex_unlock(&g_mu);
    free(paths[0]);
    free(paths[1]);
    free(paths);
    return NULL;
}

/* Start copying base into a new spare. Caller holds g_mu; best effort. */
static void start_spare(void) {
    if (g_proc.spare_state != SPARE_NONE || !g_proc.base[0] || !g_proc.dir[0])
        return;
    if (g_proc.worker_joinable) { /* finished: it set the state first */
        pthread_join(g_proc.worker, NULL);
        g_proc.worker_joinable = 0;
    }
    int k = snprintf(g_proc.spare, sizeof g_proc.spare, "%s/spare-%lu", g_proc.dir,
                     g_proc.spare_seq++);
    char **paths = malloc(2 * sizeof *paths);
    if (k < 0 || (size_t)k >= sizeof g_proc.spare || !paths) {
        free(paths);
        return;
    }
    paths[0] = strdup(g_proc.base);
    paths[1] = strdup(g_proc.spare);
    if (!paths[0] || !paths[1]) {
        free(paths[0]);
        free(paths[1]);
        free(paths);
        return;
    }
    /* the thread takes no signals meant for the application */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g_proc.spare_state = SPARE_BUILDING;
    atomic_store(&g_spare_cancel, 0);
    if (pthread_create(&g_proc.worker, NULL, spare_worker, paths) == 0) {
        g_proc.worker_joinable = 1;
    } else {
        g_proc.spare_state = SPARE_NONE;
        free(paths[0]);
        free(paths[1]);
        free(paths);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Take the spare as dst (1), or 0 if there is none. Caller holds g_mu. */
static int take_spare(const char *dst) {
    while (g_proc.spare_state == SPARE_BUILDING)
        pthread_cond_wait(&g_spare_cv, &g_mu);
    if (g_proc.spare_state != SPARE_READY)
        return 0;
    g_proc.spare_state = SPARE_NONE;
    if (rename(g_proc.spare, dst) == 0)
        return 1;
    rmtree(g_proc.spare);
    return 0;
}

/* This process's scratch directory, made (and leftovers swept) on first
 * use. Caller holds g_mu. */
static const char *proc_dir(char *err, size_t errlen) {
    pthread_once(&g_once, once_init);
    if (g_proc.pid != getpid()) {
        /* first use, or a forked child: never touch the parent's */
        g_proc.pid = getpid();
        g_proc.dir[0] = 0;
        g_proc.base[0] = 0;
        g_proc.have_template = 0;
        g_proc.next_db = 0;
        g_proc.spare_state = SPARE_NONE; /* the parent's thread is not here */
        g_proc.worker_joinable = 0;
    }
    if (g_proc.dir[0])
        return g_proc.dir;
    sweep_leftovers();
    int k = snprintf(g_proc.dir, sizeof g_proc.dir, "%s/pglite-tmp-%ld-XXXXXX", tmp_root(),
                     (long)getpid());
    if (k < 0 || (size_t)k >= sizeof g_proc.dir - 64 || !mkdtemp(g_proc.dir)) {
        snprintf(err, errlen, "cannot create a temporary directory under %s: %s", tmp_root(),
                 k < 0 || (size_t)k >= sizeof g_proc.dir - 64 ? "path too long"
                                                             : strerror(errno));
        g_proc.dir[0] = 0;
        return NULL;
    }
    return g_proc.dir;
}

/* The template path, cached or process-local. Caller holds g_mu. */
static int template_path_locked(char *out, size_t n, int *local, char *err, size_t errlen) {
    const char *key = template_key(err, errlen);
    if (!key)
        return -1;
    *local = 0;
    int r = cached_template(key, out, n, err, errlen);
    if (r != 0)
        return r > 0 ? 0 : -1;
    /* the cache cannot be written: a template for this process only */
    const char *pd = proc_dir(err, errlen);
    if (!pd)
        return -1;
    char t[PATHLEN];
    if (pjoin(t, sizeof t, pd, "template", err, errlen) != 0)
        return -1;
    if (!g_proc.warned) {
        char root[PATHLEN] = "(no HOME)";
        cache_root(root, sizeof root);
        fprintf(stderr, "pglite: the cache %s is not writable; using a template in %s\n",
                root, pd);
        g_proc.warned = 1;
    }
    if (g_proc.have_template) {
        char why[512];
        if (verify_template(t, key, why, sizeof why) != 0) {
            rmtree(t);
            g_proc.have_template = 0;
        }
    }
    if (!g_proc.have_template) {
        if (mkdir(t, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", t, strerror(errno));
            return -1;
        }
        if (build_template(t, key, err, errlen) != 0) {
            rmtree(t);
            return -1;
        }
        g_proc.have_template = 1;
    }
    if (strlen(t) + 1 > n) {
        snprintf(err, errlen, "the buffer for the template path is too small");
        return -1;
    }
    snprintf(out, n, "%s", t);
    *local = 1;
    return 0;
}

int cluster_template_path(char *out, size_t n, char *err, size_t errlen) {
    if (!out || n == 0) {
        snprintf(err, errlen, "cluster_template_path: no output buffer");
        return -1;
    }
    int local;
    pthread_mutex_lock(&g_mu);
    int rc = template_path_locked(out, n, &local, err, errlen);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* ---- opening ----------------------------------------------------------- */

/* Make the cluster in the locked directory path (empty but for the lock,
 * or an interrupted creation): build it in path/.pglite-new by copying the
 * template (or initdb), then move it up, PG_VERSION last. */
static int create_cluster(const char *path, int dfd, const cluster_options *o, char *err,
                          size_t errlen) {
    if (write_small(dfd, INCOMPLETE_NAME, "cluster_open: creation in progress\n", 1) != 0 ||
        fsync(dfd) != 0) {
        snprintf(err, errlen, "cannot write in %s: %s", path, strerror(errno));
        return -1;
    }
    /* clear an interrupted attempt */
    DIR *d = opendir(path);
    struct dirent *e;
    char p[PATHLEN], nw[PATHLEN];
    while (d && (e = readdir(d))) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..") && strcmp(nm, LOCK_NAME) &&
            strcmp(nm, INCOMPLETE_NAME) && snprintf(p, sizeof p, "%s/%s", path, nm) < (int)sizeof p)
            rmtree(p);
    }
    if (d)
        closedir(d);
    if (pjoin(nw, sizeof nw, path, NEW_NAME, err, errlen) != 0)
        return -1;
    if (o->fresh || o->no_template_cache) {
        if (mkdir(nw, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", nw, strerror(errno));
            return -1;
        }
        if (cluster_initdb(nw, NULL, err, errlen) != 0) {
            rmtree(nw);
            return -1;
        }
    } else {
        char tpl[PATHLEN];
        if (cluster_template_path(tpl, sizeof tpl, err, errlen) != 0)
            return -1;
        if (copy_tree(tpl, nw, NULL, err, errlen) != 0)
            return -1;
    }
    sync_tree(nw); /* durable before it can look complete */
    int nfd = open(nw, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    d = nfd >= 0 ? fdopendir(nfd) : NULL;
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", nw, strerror(errno));
        if (nfd >= 0)
            close(nfd);
        return -1;
    }
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const char *nm = e->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "PG_VERSION"))
            continue;
        if (renameat(nfd, nm, dfd, nm) != 0) {
            snprintf(err, errlen, "cannot move %s/%s into place: %s", nw, nm, strerror(errno));
            rc = -1;
        }
    }
    if (rc == 0 && renameat(nfd, "PG_VERSION", dfd, "PG_VERSION") != 0) {
        snprintf(err, errlen, "cannot move %s/PG_VERSION into place: %s", nw, strerror(errno));
        rc = -1;
    }
    closedir(d);
    if (rc != 0)
        return -1;
    /* PostgreSQL wants 0700 or 0750 on the data directory */
    if (rmdir(nw) != 0 || fchmod(dfd, 0700) != 0 || fsync(dfd) != 0 ||
        unlinkat(dfd, INCOMPLETE_NAME, 0) != 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "cannot finish %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static cluster *new_cluster(const char *path, int temporary, int lock_fd) {
    cluster *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return NULL;
    }
    c->temporary = temporary;
    c->lock_fd = lock_fd;
    c->owner = getpid();
    return c;
}

static int open_persistent(const cluster_options *o, cluster **out, char *err, size_t errlen) {
    const char *path = o->path;
    if (!*path) {
        snprintf(err, errlen, "cluster_open: empty data directory path");
        return -1;
    }
    dir_kind k = classify(path, err, errlen);
    if (k == K_ERROR)
        return -1;
    if (k == K_CLUSTER) {
        if (validate_cluster(path, err, errlen) != 0)
            return -1;
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        long pid = 0;
        if (dfd >= 0 && live_native_postmaster(dfd, &pid)) {
            snprintf(err, errlen,
                     "data directory %s is in use by a PostgreSQL server (postmaster.pid: "
                     "process %ld)", path, pid);
            close(dfd);
            return PGL_EBUSY;
        }
        if (dfd >= 0)
            close(dfd);
    }
    if (k == K_MISSING && mkdir_p(path, 0700) != 0) {
        snprintf(err, errlen, "cannot create the data directory %s: %s", path, strerror(errno));
        return -1;
    }
    int lfd = take_lock(path, err, errlen);
    if (lfd < 0)
        return lfd; /* PGL_EBUSY when another holds it */
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        close(lfd);
        return -1;
    }
    /* look again: another process may have made or changed it meanwhile */
    k = classify(path, err, errlen);
    int rc = -1;
    if (k == K_EMPTY || k == K_INCOMPLETE) {
        rc = create_cluster(path, dfd, o, err, errlen);
    } else if (k == K_CLUSTER && validate_cluster(path, err, errlen) == 0) {
        long pid = 0;
        if (live_native_postmaster(dfd, &pid)) {
            snprintf(err, errlen,
                     "data directory %s is in use by a PostgreSQL server (postmaster.pid: "
                     "process %ld)", path, pid);
            rc = PGL_EBUSY;
        } else if (unlinkat(dfd, "postmaster.pid", 0) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove the stale %s/postmaster.pid: %s", path,
                     strerror(errno));
        } else {
            rc = 0;
        }
    } else if (k == K_MISSING) {
        snprintf(err, errlen, "data directory %s disappeared while opening it", path);
    }
    close(dfd);
    if (rc == 0 && !(*out = new_cluster(path, 0, lfd))) {
        snprintf(err, errlen, "out of memory");
        rc = PGL_ENOMEM;
    }
    if (rc != 0)
        close(lfd);
    return rc;
}

static int open_temporary(const cluster_options *o, cluster **out, char *err, size_t errlen) {
    char base[PATHLEN], db[PATHLEN];
    int use_template = !o->fresh && !o->no_template_cache;
    pthread_mutex_lock(&g_mu);
    const char *pd = proc_dir(err, errlen);
    if (!pd)
        goto fail_locked;
    if (use_template && !g_proc.base[0]) {
        char tpl[PATHLEN];
        int local;
        if (template_path_locked(tpl, sizeof tpl, &local, err, errlen) != 0)
            goto fail_locked;
        if (local) {
            snprintf(base, sizeof base, "%s", tpl);
        } else {
            /* a private copy: same filesystem as the db-N, and safe from
             * whatever happens to the cache */
            if (pjoin(base, sizeof base, pd, "base", err, errlen) != 0)
                goto fail_locked;
            rmtree(base);
            if (copy_tree(tpl, base, NULL, err, errlen) != 0)
                goto fail_locked;
        }
        snprintf(g_proc.base, sizeof g_proc.base, "%s", base);
    }
    if (use_template)
        snprintf(base, sizeof base, "%s", g_proc.base);
    unsigned long nth = g_proc.next_db++;
    int k = snprintf(db, sizeof db, "%s/db-%lu", pd, nth);
    if (k < 0 || (size_t)k >= sizeof db) {
        snprintf(err, errlen, "temporary path too long");
        goto fail_locked;
    }
    int got_spare = use_template && take_spare(db);
    if (got_spare)
        start_spare(); /* the next one, while this one is used */
    pthread_mutex_unlock(&g_mu);
    if (got_spare) {
        /* nothing to do */
    } else if (use_template) {
        int rc = copy_tree(base, db, NULL, err, errlen);
        pthread_mutex_lock(&g_mu);
        if (g_proc.pid == getpid())
            start_spare();
        pthread_mutex_unlock(&g_mu);
        if (rc != 0)
            return -1;
    } else {
        if (mkdir(db, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", db, strerror(errno));
            return -1;
        }
        if (cluster_initdb(db, NULL, err, errlen) != 0) {
            rmtree(db);
            return -1;
        }
    }
    if (chmod(db, 0700) != 0) {
        snprintf(err, errlen, "cannot chmod %s: %s", db, strerror(errno));
        rmtree(db);
        return -1;
    }
    int lfd = take_lock(db, err, errlen);
    if (lfd < 0) {
        rmtree(db);
        return -1;
    }
    if (!(*out = new_cluster(db, 1, lfd))) {
        snprintf(err, errlen, "out of memory");
        close(lfd);
        rmtree(db);
        return -1;
    }
    return 0;
fail_locked:
    pthread_mutex_unlock(&g_mu);
    return -1;
}

int cluster_open(const cluster_options *o, cluster **out, char *err, size_t errlen) {
    if (!out) {
        snprintf(err, errlen, "cluster_open: no result pointer");
        return -1;
    }
    *out = NULL;
    static const cluster_options defaults = {0};
    if (!o)
        o = &defaults;
    return o->path ? open_persistent(o, out, err, errlen) : open_temporary(o, out, err, errlen);
}

const char *cluster_data_dir(const cluster *c) { return c ? c->path : NULL; }

int cluster_is_temporary(const cluster *c) { return c ? c->temporary : 0; }

void cluster_close(cluster *c) {
    if (!c)
        return;
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* releases the OFD lock */
    if (c->temporary && c->owner == getpid())
        rmtree(c->path);
    free(c->path);
    free(c);
}
