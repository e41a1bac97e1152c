/* Data-directory archives: a .tar.gz (pax) of a data directory, written
 * from an open handle, and unpacked into a new directory before an open
 * (pglite_options.load_archive). Only regular files and directories with
 * relative paths without ".." are accepted (no links, devices, absolute
 * paths); an archive with any other member is refused as a whole, and
 * nothing of it reaches the target directory. */
#define _GNU_SOURCE
#include "client/client.h"

#include "cluster/cluster.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest archive member we unpack (a relation segment is 1 GB). */
#define MAX_MEMBER ((int64_t)2 << 30)

/* ---- writing ----------------------------------------------------------------- */

typedef struct dumper {
    struct archive *a;
    size_t rootlen;
    char err[512];
} dumper;

static _Thread_local dumper *t_dump; /* nftw has no context argument */

static int skipped_top(const char *rel) {
    return strcmp(rel, "postmaster.pid") == 0 || strcmp(rel, "pglite.lock") == 0;
}

static int dump_cb(const char *path, const struct stat *st, int flag, struct FTW *f) {
    (void)f;
    dumper *d = t_dump;
    if (strlen(path) <= d->rootlen)
        return 0; /* the root itself */
    const char *rel = path + d->rootlen + 1;
    if (skipped_top(rel) || flag == FTW_SL || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)))
        return 0; /* lock files, links, sockets: not part of the data */
    if (flag == FTW_DNR || flag == FTW_NS) {
        snprintf(d->err, sizeof d->err, "cannot read %s", path);
        return 1;
    }
    struct archive_entry *e = archive_entry_new();
    if (!e) {
        snprintf(d->err, sizeof d->err, "out of memory");
        return 1;
    }
    archive_entry_set_pathname(e, rel);
    archive_entry_set_mode(e, (st->st_mode & 07777) | (S_ISDIR(st->st_mode) ? AE_IFDIR : AE_IFREG));
    archive_entry_set_mtime(e, st->st_mtime, 0);
    archive_entry_set_size(e, S_ISREG(st->st_mode) ? st->st_size : 0);
    int rc = 0;
    int fd = -1;
    if (S_ISREG(st->st_mode) && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(d->err, sizeof d->err, "cannot open %s: %s", path, strerror(errno));
        rc = 1;
    } else if (archive_write_header(d->a, e) != ARCHIVE_OK) {
        snprintf(d->err, sizeof d->err, "cannot write %s: %s", rel, archive_error_string(d->a));
        rc = 1;
    } else if (fd >= 0) {
        char buf[65536];
        int64_t left = st->st_size;
        while (left > 0) {
            ssize_t n = read(fd, buf, sizeof buf < (uint64_t)left ? sizeof buf : (size_t)left);
            if (n <= 0) {
                snprintf(d->err, sizeof d->err, "cannot read %s: %s", path,
                         n < 0 ? strerror(errno) : "file shrank");
                rc = 1;
                break;
            }
            if (archive_write_data(d->a, buf, (size_t)n) != n) {
                snprintf(d->err, sizeof d->err, "cannot write %s: %s", rel,
                         archive_error_string(d->a));
                rc = 1;
                break;
            }
            left -= n;
        }
    }
    if (fd >= 0)
        close(fd);
    archive_entry_free(e);
    return rc;
}

/* Write dir as a .tar.gz at out (through a temporary file renamed into
 * place). PGLITE_OK or a status with a message in err. */
static int dump_dir(const char *dir, const char *out, char *err, size_t errlen) {
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp-%ld", out, (long)getpid()) < 0) {
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    dumper d = {0};
    d.a = archive_write_new();
    if (!d.a) {
        free(tmp);
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    int rc = PGLITE_OK;
    if (archive_write_add_filter_gzip(d.a) != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(d.a) != ARCHIVE_OK ||
        archive_write_open_filename(d.a, tmp) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, archive_error_string(d.a));
        rc = PGLITE_IOERR;
    } else {
        d.rootlen = strlen(dir);
        while (d.rootlen > 1 && dir[d.rootlen - 1] == '/')
            d.rootlen--;
        t_dump = &d;
        if (nftw(dir, dump_cb, 32, FTW_PHYS) != 0) {
            snprintf(err, errlen, "%s", d.err[0] ? d.err : "cannot walk the data directory");
            rc = PGLITE_IOERR;
        }
        t_dump = NULL;
        if (archive_write_close(d.a) != ARCHIVE_OK && rc == PGLITE_OK) {
            snprintf(err, errlen, "cannot write %s: %s", tmp, archive_error_string(d.a));
            rc = PGLITE_IOERR;
        }
    }
    archive_write_free(d.a);
    if (rc == PGLITE_OK) {
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0 || rename(tmp, out) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", out, strerror(errno));
            rc = PGLITE_IOERR;
        }
        if (fd >= 0)
            close(fd);
    }
    if (rc != PGLITE_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

int pglite_dump_archive(pglite *db, const char *path) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!path || !*path)
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_dump_archive: path is NULL or empty"));
    if (db->tx != 'I')
        return client_leave(db, client_fail(db, PGLITE_MISUSE, "25001",
                                            "pglite_dump_archive: a transaction is open"));
    /* Everything written so far into the files; then every session of
     * the cluster held still while they are read, so that the archive is
     * what a crash at that instant would leave (what a later commit of
     * another session wrote meanwhile is in the WAL it holds, replayed
     * when the archive is opened). */
    rc = client_simple(db, "CHECKPOINT", NULL);
    if (rc != PGLITE_OK)
        return client_leave(db, rc);
    char err[1024];
    backend_hold_cluster(db->be);
    rc = dump_dir(db->sh->st.dir, path, err, sizeof err);
    backend_release_cluster(db->be);
    if (rc != PGLITE_OK)
        client_fail(db, rc, NULL, "%s", err);
    return client_leave(db, rc);
}

int pglite_dump_archive_path(const char *data_dir, const char *path) {
    char err[1024];
    int rc;
    if (!data_dir || !*data_dir || !path || !*path) {
        client_set_open_error(errobj_lib(PGLITE_MISUSE, NULL,
                                         "pglite_dump_archive_path: a path is NULL or empty"));
        return PGLITE_MISUSE;
    }
    /* Only an existing cluster: cluster_open would create a missing one. */
    char pv[4096];
    snprintf(pv, sizeof pv, "%s/PG_VERSION", data_dir);
    if (access(pv, F_OK) != 0) {
        client_set_open_error(errobj_lib(PGLITE_CANTOPEN, NULL,
                                         "%s holds no data directory (no PG_VERSION)", data_dir));
        return PGLITE_CANTOPEN;
    }
    cluster_options co = {.path = data_dir};
    cluster *c;
    int st = cluster_open(&co, &c, err, sizeof err); /* validated and locked */
    if (st != 0) {
        rc = client_status(st);
        client_set_open_error(errobj_lib(rc, NULL, "%s", err));
        return rc;
    }
    rc = dump_dir(cluster_data_dir(c), path, err, sizeof err);
    cluster_close(c);
    client_set_open_error(rc == PGLITE_OK ? NULL : errobj_lib(rc, NULL, "%s", err));
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

/* A member path we accept: relative, no "..", no empty names after
 * stripping "./". Returns the cleaned path (in buf) or NULL. */
static const char *safe_member(const char *name, char *buf, size_t n) {
    if (!name || !*name || name[0] == '/' || strlen(name) >= n)
        return NULL;
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    snprintf(buf, n, "%s", name);
    size_t l = strlen(buf);
    while (l > 0 && buf[l - 1] == '/')
        buf[--l] = 0; /* directories may end with '/' */
    if (!l)
        return NULL;
    for (const char *p = buf; *p;) {
        const char *slash = strchr(p, '/');
        size_t cl = slash ? (size_t)(slash - p) : strlen(p);
        if (cl == 0 || (cl == 2 && p[0] == '.' && p[1] == '.') || (cl == 1 && p[0] == '.'))
            return NULL;
        p += cl + (slash ? 1 : 0);
    }
    return buf;
}

/* mkdir -p of the parents of rel under root. */
static int make_parents(int rootfd, const char *rel) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", rel);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        if (mkdirat(rootfd, buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* Unpack archive into the new directory tmp. */
static int unpack(const char *archive, const char *tmp, char *err, size_t errlen) {
    struct archive *a = archive_read_new();
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = PGLITE_OK;
    int rootfd = -1;
    if (access(archive, R_OK) != 0) {
        snprintf(err, errlen, "cannot read the archive %s: %s", archive, strerror(errno));
        archive_read_free(a);
        return PGLITE_CANTOPEN;
    }
    if (archive_read_open_filename(a, archive, 65536) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot read the archive %s: %s", archive, archive_error_string(a));
        archive_read_free(a);
        return PGLITE_FORMAT;
    }
    rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
        archive_read_free(a);
        return PGLITE_IOERR;
    }
    struct archive_entry *e;
    int r, members = 0;
    char rel[4096];
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        mode_t type = archive_entry_filetype(e);
        if (!safe_member(name, rel, sizeof rel)) {
            snprintf(err, errlen, "unsafe member path \"%s\" in %s: refused", name ? name : "",
                     archive);
            rc = PGLITE_FORMAT;
            break;
        }
        if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR)) {
            snprintf(err, errlen, "member \"%s\" of %s is not a file or directory: refused", rel,
                     archive);
            rc = PGLITE_FORMAT;
            break;
        }
        mode_t mode = (archive_entry_perm(e) & 0700) | 0600;
        if (make_parents(rootfd, rel) != 0) {
            snprintf(err, errlen, "cannot create the parents of %s: %s", rel, strerror(errno));
            rc = PGLITE_IOERR;
            break;
        }
        if (type == AE_IFDIR) {
            if (mkdirat(rootfd, rel, mode | 0100) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create %s: %s", rel, strerror(errno));
                rc = PGLITE_IOERR;
                break;
            }
            members++;
            continue;
        }
        if (archive_entry_size(e) > MAX_MEMBER) {
            snprintf(err, errlen, "member \"%s\" of %s is too large", rel, archive);
            rc = PGLITE_FORMAT;
            break;
        }
        /* O_EXCL|O_NOFOLLOW: a duplicate member or a planted link fails */
        int fd = openat(rootfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0) {
            snprintf(err, errlen, "cannot create %s: %s", rel, strerror(errno));
            rc = errno == EEXIST ? PGLITE_FORMAT : PGLITE_IOERR;
            break;
        }
        const void *buf;
        size_t len;
        la_int64_t off, pos = 0;
        while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
            if (off != pos && lseek(fd, off, SEEK_SET) < 0) { /* sparse */
                r = ARCHIVE_FATAL;
                break;
            }
            const char *p = buf;
            size_t left = len;
            while (left) {
                ssize_t w = write(fd, p, left);
                if (w < 0) {
                    snprintf(err, errlen, "cannot write %s: %s", rel, strerror(errno));
                    rc = PGLITE_IOERR;
                    break;
                }
                p += w;
                left -= (size_t)w;
            }
            if (rc)
                break;
            pos = off + (la_int64_t)len;
        }
        if (!rc && r == ARCHIVE_EOF && ftruncate(fd, archive_entry_size(e)) != 0)
            rc = PGLITE_IOERR;
        if (!rc && r != ARCHIVE_EOF) {
            snprintf(err, errlen, "cannot read \"%s\" from %s: %s", rel, archive,
                     archive_error_string(a));
            rc = PGLITE_FORMAT;
        }
        if (!rc && fsync(fd) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", rel, strerror(errno));
            rc = PGLITE_IOERR;
        }
        close(fd);
        if (rc)
            break;
        members++;
    }
    if (!rc && r != ARCHIVE_EOF) {
        snprintf(err, errlen, "cannot read the archive %s: %s", archive, archive_error_string(a));
        rc = PGLITE_FORMAT;
    }
    if (!rc && faccessat(rootfd, "PG_VERSION", F_OK, 0) != 0) {
        snprintf(err, errlen, "%s holds no data directory (no PG_VERSION at its top)", archive);
        rc = PGLITE_FORMAT;
    }
    (void)members;
    close(rootfd);
    archive_read_free(a);
    return rc;
}

int archive_load(const char *archive, const char *dir, char *err, size_t errlen) {
    /* dir must be missing or an empty directory: the archive is unpacked
     * beside it and renamed into place (rename replaces an empty
     * directory), so a refused or broken archive leaves dir as it was. */
    struct stat st;
    if (stat(dir, &st) == 0) {
        DIR *d = S_ISDIR(st.st_mode) ? opendir(dir) : NULL;
        int empty = d != NULL;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                empty = 0;
        if (d)
            closedir(d);
        if (!empty) {
            snprintf(err, errlen,
                     "cannot load an archive into %s: it is not missing or an empty directory", dir);
            return PGLITE_CANTOPEN;
        }
    }
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.pglite-load-XXXXXX", dir) < 0) {
        snprintf(err, errlen, "out of memory");
        return PGLITE_NOMEM;
    }
    if (!mkdtemp(tmp)) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return PGLITE_CANTOPEN;
    }
    int rc = unpack(archive, tmp, err, errlen);
    if (rc == PGLITE_OK && rename(tmp, dir) != 0) {
        snprintf(err, errlen, "cannot move %s to %s: %s", tmp, dir, strerror(errno));
        rc = PGLITE_IOERR;
    }
    if (rc != PGLITE_OK)
        cluster_rmtree(tmp);
    free(tmp);
    return rc;
}
