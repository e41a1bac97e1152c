/* File system imports: the guest fd table and the __syscall_* / fd_* family
 * over the vfs sandbox. Every guest path goes through vfs_resolve(); host
 * calls only ever use a mount's directory fd plus a symlink-free relative
 * path, with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW on the last component. */
#define _GNU_SOURCE
#include "abi/abi_internal.h"
#include "abi/dylink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/random.h>
#include <unistd.h>

#define HOSTERR() NEG(abi_errno(errno))

/* ---- fd table ----------------------------------------------------------- */

abi_fd *abi_fd_get(abi_host *h, uint32_t fd) {
    if (fd >= ABI_MAX_FDS)
        return NULL;
    return h->fds[fd];
}

int abi_fd_install(abi_host *h, abi_fd *f, int min_fd) {
    for (int i = min_fd < 0 ? 0 : min_fd; i < ABI_MAX_FDS; i++) {
        if (!h->fds[i]) {
            h->fds[i] = f;
            return i;
        }
    }
    return -G_EMFILE;
}

static void free_listing(abi_fd *f) {
    for (size_t i = 0; i < f->nents; i++)
        free(f->ents[i].name);
    free(f->ents);
    f->ents = NULL;
    f->nents = f->pos = 0;
    f->listed = false;
}

/* ---- pg_control ----------------------------------------------------------
 * A checkpoint is durable only if every data file it covers is on disk
 * before pg_control, which names the checkpoint, is. With many backends
 * each one remembers only its own writes to sync (its pendingOps), so the
 * checkpointing one's fsyncs do not cover the others'. The host makes up
 * for it: a write of pg_control is held back, and at its fsync the whole
 * file system is synced first (syncfs), then pg_control written and
 * synced. Without an fsync (fsync=off) it is written at close, as it
 * would have been. */
#define CONTROL_GUEST_PATH "/pglite/data/global/pg_control"
#define CONTROL_HOLD_MAX 65536

/* Write what is held. 0 or -1 with errno. */
static int control_flush(abi_fd *f) {
    if (!f->held)
        return 0;
    ssize_t w;
    do
        w = pwrite(f->host_fd, f->held, f->held_len, 0);
    while (w < 0 && errno == EINTR);
    int ok = w == (ssize_t)f->held_len;
    int e = errno;
    free(f->held);
    f->held = NULL;
    f->held_len = 0;
    if (!ok) {
        errno = w < 0 ? e : EIO;
        return -1;
    }
    return 0;
}

/* Hold a write of n bytes at file offset off (0 if held). */
static bool control_hold(abi_fd *f, const struct iovec *iov, int c, uint64_t off) {
    size_t n = 0;
    for (int i = 0; i < c; i++)
        n += iov[i].iov_len;
    if (off != 0 || n == 0 || n > CONTROL_HOLD_MAX || f->held)
        return false;
    uint8_t *b = malloc(n);
    if (!b)
        return false;
    for (int i = 0, k = 0; i < c; k += (int)iov[i].iov_len, i++)
        memcpy(b + k, iov[i].iov_base, iov[i].iov_len);
    f->held = b;
    f->held_len = n;
    return true;
}

/* The fsync of pg_control: the file system first, then it. */
static int control_sync(abi_fd *f) {
    if (!f->held)
        return 0;
    if (syncfs(f->host_fd) != 0)
        return -1;
    return control_flush(f);
}

/* ---- relcache init files -------------------------------------------------
 * Every session's start reads pg_internal.init (the global one and its
 * database's) through stdio, whose 1 KiB buffer makes that some 160
 * read() calls a session: a tenth of a session's start. PostgreSQL never
 * changes such a file in place (it writes a temporary file and renames it
 * over, or unlinks it), so an open one's content is fixed: it is read whole
 * at open, with one pread, and the guest's reads and seeks are served from
 * that copy. The host fd's own offset stays at 0 until the copy is
 * dropped (a dup, a fork), when it is set to the guest's position. */
#define WHOLE_NAME "/pg_internal.init"
#define WHOLE_MAX (16u << 20)

static void whole_load(abi_fd *f) {
    size_t n = strlen(f->guest_path), k = strlen(WHOLE_NAME);
    struct stat st;
    if (n < k || strcmp(f->guest_path + n - k, WHOLE_NAME) != 0 ||
        fstat(f->host_fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > WHOLE_MAX || !(f->whole = malloc((size_t)st.st_size)))
        return;
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(f->host_fd, f->whole + got, (size_t)st.st_size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got != (size_t)st.st_size) { /* an error: the host fd's reads report it */
        free(f->whole);
        f->whole = NULL;
        return;
    }
    f->whole_len = got;
    f->whole_pos = 0;
}

/* Back to the host fd, at the guest's position. */
static void whole_drop(abi_fd *f) {
    if (!f->whole)
        return;
    lseek(f->host_fd, (off_t)f->whole_pos, SEEK_SET);
    free(f->whole);
    f->whole = NULL;
}

static long whole_read(abi_fd *f, const struct iovec *iov, int c) {
    long total = 0;
    for (int i = 0; i < c && f->whole_pos < f->whole_len; i++) {
        size_t n = f->whole_len - f->whole_pos;
        if (n > iov[i].iov_len)
            n = iov[i].iov_len;
        memcpy(iov[i].iov_base, f->whole + f->whole_pos, n);
        f->whole_pos += n;
        total += (long)n;
    }
    return total;
}

void abi_fd_release(abi_fd *f) {
    if (!f)
        return;
    free(f->whole);
    if (f->held)
        control_flush(f); /* as close would have left it */
    if (f->host_fd >= 0)
        close(f->host_fd);
    free_listing(f);
    free(f->guest_path);
    free(f);
}

void abi_fds_close_all(abi_host *h) {
    for (int i = 0; i < ABI_MAX_FDS; i++) {
        abi_fd_release(h->fds[i]);
        h->fds[i] = NULL;
    }
}

int abi_host_open_fds(abi_host *h) {
    int n = 0;
    for (int i = 0; i < ABI_MAX_FDS; i++)
        n += h->fds[i] != NULL;
    return n;
}

static abi_fd *fd_new(abi_fd_kind kind, int host_fd) {
    abi_fd *f = calloc(1, sizeof *f);
    if (f) {
        f->kind = kind;
        f->host_fd = host_fd;
    }
    return f;
}

int abi_host_set_stdio(abi_host *h, int guest_fd, int host_fd) {
    if (guest_fd < 0 || guest_fd > 2)
        return -G_EINVAL;
    abi_fd *f;
    if (host_fd < 0) {
        f = fd_new(FD_DEV, -1);
        if (!f)
            return -G_ENOMEM;
        f->dev = VFS_DEV_NULL;
        f->flags = G_O_RDWR;
        f->writable = true;
    } else {
        int d = fcntl(host_fd, F_DUPFD_CLOEXEC, 3);
        if (d < 0)
            return -abi_errno(errno);
        f = fd_new(FD_HOST, d);
        if (!f) {
            close(d);
            return -G_ENOMEM;
        }
        f->flags = guest_fd == 0 ? G_O_RDONLY : G_O_WRONLY;
        f->writable = guest_fd != 0;
    }
    f->guest_path = strdup(guest_fd == 0 ? "/dev/stdin" : guest_fd == 1 ? "/dev/stdout" : "/dev/stderr");
    abi_fd_release(h->fds[guest_fd]);
    h->fds[guest_fd] = f;
    return 0;
}

/* ---- path resolution ---------------------------------------------------- */

/* Resolve (dirfd, guest path pointer). allow_empty: AT_EMPTY_PATH. */
static int resolve_at(abi_host *h, u32 dirfd, u32 pathp, int vflags,
                      bool allow_empty, vfs_loc *loc) {
    char path[VFS_PATH_MAX];
    int n = abi_gstr(h, pathp, path, sizeof path);
    if (n < 0)
        return n;
    const char *base = h->cwd;
    if (path[0] != '/' && (int32_t)dirfd != G_AT_FDCWD) {
        abi_fd *d = abi_fd_get(h, dirfd);
        if (!d)
            return -G_EBADF;
        if (n == 0 && allow_empty) {
            if (!d->guest_path)
                return -G_EBADF;
            snprintf(path, sizeof path, "%s", d->guest_path);
            n = (int)strlen(path);
        } else if (d->kind != FD_DIR && d->kind != FD_SYNTH) {
            return -G_ENOTDIR;
        } else {
            base = d->guest_path;
        }
    } else if (n == 0 && allow_empty) {
        snprintf(path, sizeof path, "%s", h->cwd);
        n = (int)strlen(path);
    }
    int r = vfs_resolve_n(h->vfs, base, path, (size_t)n, vflags, loc);
    return r < 0 ? -abi_errno(-r) : 0;
}

static bool loc_exists(const vfs_loc *loc) {
    if (loc->kind != VFS_NODE_HOST)
        return true;
    struct stat st;
    return fstatat(loc->dirfd, loc->rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- stat --------------------------------------------------------------- */

static uint64_t path_ino(const char *s) {
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        x = (x ^ (uint8_t)*s) * 1099511628211ull;
    return x | 1;
}

static void put_stat(abi_host *h, u32 buf, const struct stat *st) {
    uint8_t *d = abi_gptr(h, buf, G_STAT_SIZE);
    memset(d, 0, G_STAT_SIZE);
    uint32_t u32v;
    uint64_t u64v;
#define P32(off, v) (u32v = (uint32_t)(v), memcpy(d + (off), &u32v, 4))
#define P64(off, v) (u64v = (uint64_t)(v), memcpy(d + (off), &u64v, 8))
    P32(G_ST_DEV, st->st_dev);
    P32(G_ST_MODE, st->st_mode);
    P32(G_ST_NLINK, st->st_nlink);
    P32(G_ST_UID, 0); /* the guest owns everything it can see */
    P32(G_ST_GID, 0);
    P32(G_ST_RDEV, st->st_rdev);
    P64(G_ST_SIZE, st->st_size);
    P32(G_ST_BLKSIZE, 4096);
    P32(G_ST_BLOCKS, st->st_blocks);
    P64(G_ST_ATIM, st->st_atim.tv_sec);
    P32(G_ST_ATIM + 8, st->st_atim.tv_nsec);
    P64(G_ST_MTIM, st->st_mtim.tv_sec);
    P32(G_ST_MTIM + 8, st->st_mtim.tv_nsec);
    P64(G_ST_CTIM, st->st_ctim.tv_sec);
    P32(G_ST_CTIM + 8, st->st_ctim.tv_nsec);
    P64(G_ST_INO, st->st_ino);
#undef P32
#undef P64
}

static void virtual_stat(const vfs_loc *loc, vfs_dev dev, bool synth,
                         const char *gpath, struct stat *st) {
    (void)loc;
    memset(st, 0, sizeof *st);
    st->st_dev = 1;
    st->st_nlink = synth ? 2 : 1;
    st->st_ino = path_ino(gpath);
    if (synth) {
        st->st_mode = G_S_IFDIR | 0555;
    } else {
        st->st_mode = G_S_IFCHR | 0666;
        st->st_rdev = (dev == VFS_DEV_NULL) ? 0x103 : (dev == VFS_DEV_URANDOM) ? 0x109 : 0x1ff;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    st->st_atim = st->st_mtim = st->st_ctim = now;
}

static u32 stat_loc(abi_host *h, const vfs_loc *loc, u32 buf) {
    struct stat st;
    if (loc->kind == VFS_NODE_HOST) {
        if (fstatat(loc->dirfd, loc->rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return HOSTERR();
    } else {
        virtual_stat(loc, loc->dev, loc->kind == VFS_NODE_SYNTH, loc->guest, &st);
    }
    put_stat(h, buf, &st);
    return 0;
}

u32 Z_envZ___syscall_stat64(struct Z_env_instance_t *h, u32 path, u32 buf) {
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_FOLLOW, false, &loc);
    return r < 0 ? (u32)r : stat_loc(h, &loc, buf);
}

u32 Z_envZ___syscall_lstat64(struct Z_env_instance_t *h, u32 path, u32 buf) {
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_NOFOLLOW, false, &loc);
    return r < 0 ? (u32)r : stat_loc(h, &loc, buf);
}

u32 Z_envZ___syscall_newfstatat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                                u32 buf, u32 flags) {
    vfs_loc loc;
    int vf = (flags & G_AT_SYMLINK_NOFOLLOW) ? VFS_NOFOLLOW : VFS_FOLLOW;
    int r = resolve_at(h, dirfd, path, vf, (flags & G_AT_EMPTY_PATH) != 0, &loc);
    return r < 0 ? (u32)r : stat_loc(h, &loc, buf);
}

u32 Z_envZ___syscall_fstat64(struct Z_env_instance_t *h, u32 fd, u32 buf) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    struct stat st;
    if (f->kind == FD_HOST || f->kind == FD_DIR) {
        if (fstat(f->host_fd, &st) != 0)
            return HOSTERR();
    } else {
        virtual_stat(NULL, f->dev, f->kind == FD_SYNTH,
                     f->guest_path ? f->guest_path : "?", &st);
    }
    put_stat(h, buf, &st);
    return 0;
}

u32 Z_envZ___syscall_statfs64(struct Z_env_instance_t *h, u32 path, u32 size,
                              u32 buf) {
    (void)size;
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_FOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    struct statfs sf;
    memset(&sf, 0, sizeof sf);
    if (loc.kind == VFS_NODE_HOST) {
        int fd = openat(loc.dirfd, loc.rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return HOSTERR();
        int rr = fstatfs(fd, &sf);
        close(fd);
        if (rr != 0)
            return HOSTERR();
    } else {
        sf.f_bsize = 4096;
        sf.f_namelen = 255;
    }
    uint8_t *d = abi_gptr(h, buf, G_STATFS_SIZE);
    memset(d, 0, G_STATFS_SIZE);
    uint32_t v32;
    uint64_t v64;
    v32 = (uint32_t)sf.f_bsize; memcpy(d + 4, &v32, 4); memcpy(d + 60, &v32, 4);
    v64 = sf.f_blocks; memcpy(d + 8, &v64, 8);
    v64 = sf.f_bfree; memcpy(d + 16, &v64, 8);
    v64 = sf.f_bavail; memcpy(d + 24, &v64, 8);
    v64 = sf.f_files; memcpy(d + 32, &v64, 8);
    v64 = sf.f_ffree; memcpy(d + 40, &v64, 8);
    v32 = 42; memcpy(d + 48, &v32, 4);
    v32 = (uint32_t)sf.f_namelen; memcpy(d + 56, &v32, 4);
    v32 = loc.kind == VFS_NODE_HOST && loc.writable ? 0 : 1; /* ST_RDONLY */
    memcpy(d + 64, &v32, 4);
    return 0;
}

/* ---- open / close ------------------------------------------------------- */

static int host_open_flags(int gflags) {
    int f = 0;
    switch (gflags & G_O_ACCMODE) {
    case G_O_RDONLY: f = O_RDONLY; break;
    case G_O_WRONLY: f = O_WRONLY; break;
    default: f = O_RDWR; break;
    }
    if (gflags & G_O_CREAT) f |= O_CREAT;
    if (gflags & G_O_EXCL) f |= O_EXCL;
    if (gflags & G_O_TRUNC) f |= O_TRUNC;
    if (gflags & G_O_APPEND) f |= O_APPEND;
    if (gflags & G_O_NONBLOCK) f |= O_NONBLOCK;
    if ((gflags & G_O_SYNC) == G_O_SYNC) f |= O_SYNC;
    else if (gflags & G_O_DSYNC) f |= O_DSYNC;
    if (gflags & G_O_DIRECTORY) f |= O_DIRECTORY;
    return f | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
}

static bool wants_write(int gflags) {
    return (gflags & G_O_ACCMODE) != G_O_RDONLY ||
           (gflags & (G_O_CREAT | G_O_TRUNC)) != 0;
}

static int open_loc(abi_host *h, vfs_loc *loc, int gflags, uint32_t mode) {
    abi_fd *f = NULL;
    if (loc->kind == VFS_NODE_DEV) {
        if (gflags & G_O_DIRECTORY)
            return -G_ENOTDIR;
        if ((gflags & G_O_CREAT) && (gflags & G_O_EXCL))
            return -G_EEXIST;
        f = fd_new(FD_DEV, -1);
        if (!f)
            return -G_ENOMEM;
        f->dev = loc->dev;
        f->writable = true;
    } else if (loc->kind == VFS_NODE_SYNTH) {
        if (wants_write(gflags) && !((gflags & G_O_CREAT) && !(gflags & G_O_EXCL) &&
                                     (gflags & G_O_ACCMODE) == G_O_RDONLY))
            return (gflags & G_O_ACCMODE) != G_O_RDONLY ? -G_EISDIR : -G_EEXIST;
        f = fd_new(FD_SYNTH, -1);
        if (!f)
            return -G_ENOMEM;
    } else {
        if (wants_write(gflags) && !loc->writable)
            return -G_EROFS;
        if ((gflags & G_O_CREAT) && !loc->writable)
            return -G_EROFS;
        if (loc->trailing_slash && (gflags & G_O_CREAT) && !loc_exists(loc))
            return -G_EISDIR;
        int hf = host_open_flags(gflags);
        int fd = vfs_openat(loc, hf, (int)(mode & 07777));
        if (fd < 0) {
            if (fd == -EMLINK) /* a symlink with O_NOFOLLOW */
                return -G_ELOOP;
            return -abi_errno(-fd);
        }
        struct stat st;
        if (fstat(fd, &st) != 0) {
            int e = errno;
            close(fd);
            return -abi_errno(e);
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
            close(fd); /* no host devices, fifos or sockets through the sandbox */
            return -G_EACCES;
        }
        f = fd_new(S_ISDIR(st.st_mode) ? FD_DIR : FD_HOST, fd);
        if (!f) {
            close(fd);
            return -G_ENOMEM;
        }
        f->writable = loc->writable && (gflags & G_O_ACCMODE) != G_O_RDONLY;
    }
    f->flags = gflags & ~(G_O_CREAT | G_O_EXCL | G_O_TRUNC | G_O_CLOEXEC | G_O_NOCTTY);
    f->fd_flags = (gflags & G_O_CLOEXEC) ? G_FD_CLOEXEC : 0;
    f->guest_path = strdup(loc->guest);
    if (!f->guest_path) {
        abi_fd_release(f);
        return -G_ENOMEM;
    }
    f->control = f->kind == FD_HOST && f->writable && !strcmp(loc->guest, CONTROL_GUEST_PATH);
    if (f->kind == FD_HOST && (gflags & G_O_ACCMODE) == G_O_RDONLY)
        whole_load(f);
    int gfd = abi_fd_install(h, f, 0);
    if (gfd < 0)
        abi_fd_release(f);
    return gfd;
}

u32 Z_envZ___syscall_openat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                            u32 flags, u32 varargs) {
    uint32_t mode = 0;
    if ((flags & G_O_CREAT) && varargs)
        mode = abi_r32(h, varargs) & ~h->umask;
    int vf = (flags & G_O_NOFOLLOW) ? VFS_NOFOLLOW : VFS_FOLLOW;
    if (flags & G_O_CREAT)
        vf |= VFS_CREATE;
    if ((flags & G_O_CREAT) && (flags & G_O_EXCL))
        vf |= VFS_NOFOLLOW; /* O_EXCL never follows a final symlink */
    if (flags & G_O_PATH) {
        flags = (flags & ~G_O_ACCMODE) | G_O_RDONLY;
    }
    /* First from the mount table alone (one host call for the common
     * open, not one per directory on the way); on failure, the full
     * resolution has the answer (VFS_LEXICAL). */
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path, vf | VFS_LEXICAL, false, &loc);
    if (r < 0)
        return (u32)r;
    r = open_loc(h, &loc, (int)flags, mode);
    if (r >= 0 || !loc.unchecked)
        return (u32)r;
    r = resolve_at(h, dirfd, path, vf, false, &loc);
    if (r < 0)
        return (u32)r;
    return (u32)open_loc(h, &loc, (int)flags, mode);
}

u32 Z_wasi_snapshot_preview1Z_fd_close(struct Z_wasi_snapshot_preview1_instance_t *w,
                                       u32 fd) {
    abi_host *h = w->host;
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return G_EBADF;
    h->fds[fd] = NULL;
    abi_fd_release(f);
    return 0;
}

static int dup_into(abi_host *h, abi_fd *old, int min_fd, int exact) {
    whole_drop(old); /* the two share the host fd's offset */
    abi_fd *f = fd_new(old->kind, -1);
    if (!f)
        return -G_ENOMEM;
    if (old->host_fd >= 0) {
        f->host_fd = fcntl(old->host_fd, F_DUPFD_CLOEXEC, 3);
        if (f->host_fd < 0) {
            int e = errno;
            free(f);
            return -abi_errno(e);
        }
    }
    f->flags = old->flags;
    f->writable = old->writable;
    f->dev = old->dev;
    f->pipe_id = old->pipe_id;
    f->guest_path = old->guest_path ? strdup(old->guest_path) : NULL;
    if (exact >= 0) {
        abi_fd_release(h->fds[exact]);
        h->fds[exact] = f;
        return exact;
    }
    int r = abi_fd_install(h, f, min_fd);
    if (r < 0)
        abi_fd_release(f);
    return r;
}

u32 Z_envZ___syscall_dup(struct Z_env_instance_t *h, u32 fd) {
    abi_fd *f = abi_fd_get(h, fd);
    return f ? (u32)dup_into(h, f, 0, -1) : NEG(G_EBADF);
}

u32 Z_envZ___syscall_dup3(struct Z_env_instance_t *h, u32 fd, u32 nfd, u32 flags) {
    if (fd == nfd || (flags & ~(u32)G_O_CLOEXEC))
        return NEG(G_EINVAL);
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (nfd >= ABI_MAX_FDS)
        return NEG(G_EBADF);
    int r = dup_into(h, f, 0, (int)nfd);
    if (r >= 0 && (flags & G_O_CLOEXEC))
        h->fds[r]->fd_flags = G_FD_CLOEXEC;
    return (u32)r;
}

u32 Z_envZ___syscall_fcntl64(struct Z_env_instance_t *h, u32 fd, u32 cmd, u32 varargs) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    switch (cmd) {
    case G_F_DUPFD:
    case G_F_DUPFD_CLOEXEC: {
        int32_t arg = (int32_t)abi_r32(h, varargs);
        if (arg < 0 || arg >= ABI_MAX_FDS)
            return NEG(G_EINVAL);
        int r = dup_into(h, f, arg, -1);
        if (r >= 0 && cmd == G_F_DUPFD_CLOEXEC)
            h->fds[r]->fd_flags = G_FD_CLOEXEC;
        return (u32)r;
    }
    case G_F_GETFD:
        return (u32)f->fd_flags;
    case G_F_SETFD:
        f->fd_flags = (int)(abi_r32(h, varargs) & G_FD_CLOEXEC);
        return 0;
    case G_F_GETFL:
        return (u32)f->flags;
    case G_F_SETFL: {
        uint32_t arg = abi_r32(h, varargs);
        uint32_t mask = G_O_APPEND | G_O_NONBLOCK;
        f->flags = (int)((f->flags & ~mask) | (arg & mask));
        if (f->host_fd >= 0) {
            int hf = fcntl(f->host_fd, F_GETFL);
            if (hf >= 0) {
                hf &= ~(O_APPEND | O_NONBLOCK);
                if (arg & G_O_APPEND) hf |= O_APPEND;
                if (arg & G_O_NONBLOCK) hf |= O_NONBLOCK;
                fcntl(f->host_fd, F_SETFL, hf);
            }
        }
        return 0;
    }
    case G_F_GETLK: {
        /* No other process shares the guest's files: always unlocked. */
        abi_w16(h, abi_r32(h, varargs), 2 /* F_UNLCK */);
        return 0;
    }
    case G_F_SETLK:
    case G_F_SETLKW:
        return 0;
    default:
        return NEG(G_EINVAL);
    }
}

u32 Z_envZ___syscall_ioctl(struct Z_env_instance_t *h, u32 fd, u32 op, u32 varargs) {
    (void)varargs;
    (void)op;
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    /* No terminals in the sandbox. */
    return NEG(G_ENOTTY);
}

/* ---- read / write ------------------------------------------------------- */

static long dev_read(abi_host *h, abi_fd *f, uint8_t *buf, size_t len) {
    switch (f->dev) {
    case VFS_DEV_NULL:
        return 0;
    case VFS_DEV_URANDOM: {
        size_t done = 0;
        while (done < len) {
            ssize_t n = getrandom(buf + done, len - done, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -abi_errno(errno);
            }
            done += (size_t)n;
        }
        return (long)len;
    }
    case VFS_DEV_BLOB:
        if (!h->blob_read)
            return 0;
        return h->blob_read(h->blob_ctx, buf, len);
    default:
        return -G_EIO;
    }
}

static long dev_write(abi_host *h, abi_fd *f, const uint8_t *buf, size_t len) {
    switch (f->dev) {
    case VFS_DEV_NULL:
    case VFS_DEV_URANDOM:
        return (long)len;
    case VFS_DEV_BLOB:
        if (!h->blob_write)
            return (long)len;
        return h->blob_write(h->blob_ctx, buf, len);
    default:
        return -G_EIO;
    }
}

/* Read the guest iovec array into host iovecs. Returns count or -errno. */
static int get_iovs(abi_host *h, u32 iovs, u32 n, struct iovec *out, int max) {
    if ((int)n > max)
        return -G_EINVAL;
    uint8_t *v = abi_mem_ptr(h->mem, iovs, n * 8);
    if (!v)
        return -G_EFAULT;
    for (u32 i = 0; i < n; i++) {
        uint32_t p, l;
        memcpy(&p, v + 8 * i, 4);
        memcpy(&l, v + 8 * i + 4, 4);
        uint8_t *b = abi_mem_ptr(h->mem, p, l);
        if (!b)
            return -G_EFAULT;
        out[i].iov_base = b;
        out[i].iov_len = l;
    }
    return (int)n;
}

static u32 do_rw(abi_host *h, u32 fd, u32 iovs, u32 n, u32 pnum, bool write,
                 bool positioned, uint64_t off) {
    abi_timers_check(h);
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return G_EBADF;
    if (write && (f->flags & G_O_ACCMODE) == G_O_RDONLY && f->kind != FD_DEV)
        return G_EBADF;
    if (!write && (f->flags & G_O_ACCMODE) == G_O_WRONLY)
        return G_EBADF;
    if (f->kind == FD_DIR || f->kind == FD_SYNTH)
        return G_EISDIR;
    struct iovec iov_small[16];
    struct iovec *iov = iov_small;
    if (n > 1024)
        return G_EINVAL;
    if (n > 16 && !(iov = malloc(n * sizeof *iov)))
        return G_ENOMEM;
    int c = get_iovs(h, iovs, n, iov, 1024);
    if (c < 0) {
        if (iov != iov_small)
            free(iov);
        return (u32)-c;
    }
    long total = 0;
    if (f->whole && !write && !positioned) {
        total = whole_read(f, iov, c);
    } else if (f->kind == FD_DEV) {
        for (int i = 0; i < c; i++) {
            long r = write ? dev_write(h, f, iov[i].iov_base, iov[i].iov_len)
                           : dev_read(h, f, iov[i].iov_base, iov[i].iov_len);
            if (r < 0) {
                if (total)
                    break;
                if (iov != iov_small)
                    free(iov);
                return (u32)-r;
            }
            total += r;
            if ((size_t)r < iov[i].iov_len)
                break;
        }
    } else if (f->control && write &&
               control_hold(f, iov, c, positioned ? off : (uint64_t)lseek(f->host_fd, 0, SEEK_CUR))) {
        total = (long)f->held_len; /* written at its fsync or close */
        if (!positioned)
            lseek(f->host_fd, (off_t)total, SEEK_CUR);
    } else {
        if (f->control && control_flush(f) != 0) {
            int e = errno;
            if (iov != iov_small)
                free(iov);
            return (u32)abi_errno(e);
        }
        ssize_t r;
        do {
            if (positioned)
                r = write ? pwritev(f->host_fd, iov, c, (off_t)off)
                          : preadv(f->host_fd, iov, c, (off_t)off);
            else
                r = write ? writev(f->host_fd, iov, c) : readv(f->host_fd, iov, c);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            int e = errno;
            if (iov != iov_small)
                free(iov);
            return (u32)abi_errno(e);
        }
        total = r;
    }
    if (iov != iov_small)
        free(iov);
    abi_w32(h, pnum, (uint32_t)total);
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_fd_read(struct Z_wasi_snapshot_preview1_instance_t *w,
                                      u32 fd, u32 iovs, u32 n, u32 pnum) {
    return do_rw(w->host, fd, iovs, n, pnum, false, false, 0);
}

u32 Z_wasi_snapshot_preview1Z_fd_write(struct Z_wasi_snapshot_preview1_instance_t *w,
                                       u32 fd, u32 iovs, u32 n, u32 pnum) {
    return do_rw(w->host, fd, iovs, n, pnum, true, false, 0);
}

u32 Z_wasi_snapshot_preview1Z_fd_pread(struct Z_wasi_snapshot_preview1_instance_t *w,
                                       u32 fd, u32 iovs, u32 n, u64 off, u32 pnum) {
    return do_rw(w->host, fd, iovs, n, pnum, false, true, off);
}

u32 Z_wasi_snapshot_preview1Z_fd_pwrite(struct Z_wasi_snapshot_preview1_instance_t *w,
                                        u32 fd, u32 iovs, u32 n, u64 off, u32 pnum) {
    return do_rw(w->host, fd, iovs, n, pnum, true, true, off);
}

u32 Z_wasi_snapshot_preview1Z_fd_seek(struct Z_wasi_snapshot_preview1_instance_t *w,
                                      u32 fd, u64 off, u32 whence, u32 pnew) {
    abi_host *h = w->host;
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return G_EBADF;
    if (whence > 2)
        return G_EINVAL;
    uint64_t pos;
    if (f->kind == FD_DIR || f->kind == FD_SYNTH) {
        /* Directory positions are entry indices (getdents d_off). */
        int64_t base = whence == 0 ? 0 : whence == 1 ? (int64_t)f->pos : (int64_t)f->nents;
        int64_t np = base + (int64_t)off;
        if (np < 0)
            return G_EINVAL;
        if (np == 0 && whence == 0)
            free_listing(f); /* rewinddir: see new entries */
        f->pos = (size_t)np;
        pos = (uint64_t)np;
    } else if (f->kind == FD_DEV) {
        pos = 0;
    } else if (f->whole) {
        int64_t base = whence == 0 ? 0 : whence == 1 ? (int64_t)f->whole_pos : (int64_t)f->whole_len;
        int64_t np = base + (int64_t)off;
        if (np < 0)
            return G_EINVAL;
        f->whole_pos = (size_t)np; /* past the end reads nothing, as lseek's would */
        pos = (uint64_t)np;
    } else {
        off_t r = lseek(f->host_fd, (off_t)(int64_t)off, whence == 0 ? SEEK_SET : whence == 1 ? SEEK_CUR : SEEK_END);
        if (r < 0)
            return (u32)abi_errno(errno);
        pos = (uint64_t)r;
    }
    abi_w64(h, pnew, pos);
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_fd_sync(struct Z_wasi_snapshot_preview1_instance_t *w,
                                      u32 fd) {
    abi_fd *f = abi_fd_get(w->host, fd);
    if (!f)
        return G_EBADF;
    if (control_sync(f) != 0)
        return (u32)abi_errno(errno);
    if (f->host_fd >= 0 && fsync(f->host_fd) != 0 && errno != EINVAL)
        return (u32)abi_errno(errno);
    return 0;
}

u32 Z_envZ___syscall_fdatasync(struct Z_env_instance_t *h, u32 fd) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (control_sync(f) != 0)
        return HOSTERR();
    if (f->host_fd >= 0 && fdatasync(f->host_fd) != 0 && errno != EINVAL)
        return HOSTERR();
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_fd_fdstat_get(
    struct Z_wasi_snapshot_preview1_instance_t *w, u32 fd, u32 pbuf) {
    abi_host *h = w->host;
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return G_EBADF;
    uint8_t type = G_WASI_FT_REG;
    if (f->kind == FD_DIR || f->kind == FD_SYNTH)
        type = G_WASI_FT_DIR;
    else if (f->kind == FD_DEV)
        type = G_WASI_FT_CHAR;
    else if (f->host_fd >= 0) {
        struct stat st;
        if (fstat(f->host_fd, &st) == 0 && !S_ISREG(st.st_mode))
            type = S_ISCHR(st.st_mode) ? G_WASI_FT_CHAR : G_WASI_FT_UNKNOWN;
    }
    uint8_t *d = abi_gptr(h, pbuf, 24);
    memset(d, 0, 24);
    d[0] = type;
    uint16_t fl = (f->flags & G_O_APPEND) ? 1 : 0;
    if (f->flags & G_O_NONBLOCK) fl |= 4;
    memcpy(d + 2, &fl, 2);
    return 0;
}

u32 Z_envZ___syscall_ftruncate64(struct Z_env_instance_t *h, u32 fd, u64 len) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if ((int64_t)len < 0)
        return NEG(G_EINVAL);
    if (f->kind != FD_HOST)
        return NEG(G_EINVAL);
    if (!f->writable)
        return NEG(G_EINVAL);
    if (ftruncate(f->host_fd, (off_t)len) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_truncate64(struct Z_env_instance_t *h, u32 path, u64 len) {
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_FOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    if ((int64_t)len < 0)
        return NEG(G_EINVAL);
    if (loc.kind != VFS_NODE_HOST)
        return NEG(loc.kind == VFS_NODE_SYNTH ? G_EISDIR : G_EINVAL);
    if (!loc.writable)
        return NEG(G_EROFS);
    int fd = openat(loc.dirfd, loc.rel, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return HOSTERR();
    int rr = ftruncate(fd, (off_t)len);
    int e = errno;
    close(fd);
    return rr == 0 ? 0 : NEG(abi_errno(e));
}

u32 Z_envZ___syscall_fallocate(struct Z_env_instance_t *h, u32 fd, u32 mode,
                               u64 off, u64 len) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (mode != 0)
        return NEG(G_EOPNOTSUPP);
    if ((int64_t)off < 0 || (int64_t)len <= 0)
        return NEG(G_EINVAL);
    if (f->kind != FD_HOST)
        return NEG(G_ESPIPE);
    if (!f->writable)
        return NEG(G_EBADF);
    int r = posix_fallocate(f->host_fd, (off_t)off, (off_t)len);
    return r == 0 ? 0 : NEG(abi_errno(r));
}

u32 Z_envZ___syscall_fadvise64(struct Z_env_instance_t *h, u32 fd, u64 off,
                               u64 len, u32 advice) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (f->kind == FD_HOST)
        posix_fadvise(f->host_fd, (off_t)off, (off_t)len, (int)advice);
    return 0;
}

/* ---- directories -------------------------------------------------------- */

typedef struct {
    abi_fd *f;
    size_t cap;
    int err;
} list_ctx;

static void list_add(list_ctx *c, const char *name, uint8_t type, uint64_t ino) {
    if (c->err)
        return;
    abi_fd *f = c->f;
    if (f->nents == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 32;
        abi_dirent *n = realloc(f->ents, nc * sizeof *n);
        if (!n) {
            c->err = G_ENOMEM;
            return;
        }
        f->ents = n;
        c->cap = nc;
    }
    char *s = strdup(name);
    if (!s) {
        c->err = G_ENOMEM;
        return;
    }
    f->ents[f->nents].name = s;
    f->ents[f->nents].type = type;
    f->ents[f->nents].ino = ino;
    f->nents++;
}

static void synth_cb(void *ctx, const char *name, int is_dir) {
    list_ctx *c = ctx;
    char p[VFS_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", c->f->guest_path, name);
    list_add(c, name, is_dir ? G_DT_DIR : G_DT_CHR, path_ino(p));
}

static int make_listing(abi_host *h, abi_fd *f) {
    list_ctx c = {f, 0, 0};
    if (f->kind == FD_SYNTH) {
        list_add(&c, ".", G_DT_DIR, path_ino(f->guest_path));
        list_add(&c, "..", G_DT_DIR, 2);
        int r = vfs_list_synthetic(h->vfs, f->guest_path, synth_cb, &c);
        if (r < 0 && !c.err)
            c.err = abi_errno(-r);
    } else {
        int d = openat(f->host_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
            return abi_errno(errno);
        DIR *dir = fdopendir(d);
        if (!dir) {
            int e = errno;
            close(d);
            return abi_errno(e);
        }
        struct dirent *de;
        errno = 0;
        while ((de = readdir(dir)) != NULL) {
            uint8_t t;
            switch (de->d_type) {
            case DT_DIR: t = G_DT_DIR; break;
            case DT_REG: t = G_DT_REG; break;
            case DT_LNK: t = G_DT_LNK; break;
            case DT_CHR: t = G_DT_CHR; break;
            case DT_FIFO: t = G_DT_FIFO; break;
            case DT_SOCK: t = G_DT_SOCK; break;
            default: t = G_DT_UNKNOWN; break;
            }
            list_add(&c, de->d_name, t, de->d_ino);
        }
        closedir(dir);
    }
    f->listed = true;
    return c.err;
}

u32 Z_envZ___syscall_getdents64(struct Z_env_instance_t *h, u32 fd, u32 dirp,
                                u32 count) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (f->kind != FD_DIR && f->kind != FD_SYNTH)
        return NEG(G_ENOTDIR);
    if (!f->listed) {
        size_t keep = f->pos;
        int e = make_listing(h, f);
        if (e)
            return NEG(e);
        f->pos = keep;
    }
    uint8_t *out = abi_mem_ptr(h->mem, dirp, count);
    if (!out)
        return NEG(G_EFAULT);
    uint32_t used = 0;
    while (f->pos < f->nents) {
        abi_dirent *e = &f->ents[f->pos];
        size_t nl = strlen(e->name);
        uint32_t reclen = (uint32_t)((G_DIRENT_NAME + nl + 1 + 7) & ~(size_t)7);
        if (used + reclen > count) {
            if (used == 0)
                return NEG(G_EINVAL);
            break;
        }
        uint8_t *d = out + used;
        uint64_t off = f->pos + 1;
        uint16_t rl = (uint16_t)reclen;
        memcpy(d, &e->ino, 8);
        memcpy(d + 8, &off, 8);
        memcpy(d + 16, &rl, 2);
        d[18] = e->type;
        memcpy(d + G_DIRENT_NAME, e->name, nl + 1);
        memset(d + G_DIRENT_NAME + nl + 1, 0, reclen - (G_DIRENT_NAME + nl + 1));
        used += reclen;
        f->pos++;
    }
    return used;
}

u32 Z_envZ___syscall_mkdirat(struct Z_env_instance_t *h, u32 dirfd, u32 path, u32 mode) {
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path, VFS_NOFOLLOW | VFS_CREATE, false, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind != VFS_NODE_HOST || loc_exists(&loc))
        return NEG(G_EEXIST);
    if (!loc.writable)
        return NEG(G_EROFS);
    if (mkdirat(loc.dirfd, loc.rel, (mode_t)(mode & ~h->umask & 07777)) != 0)
        return HOSTERR();
    return 0;
}

static u32 do_unlink(abi_host *h, u32 dirfd, u32 path, bool dir) {
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path, VFS_NOFOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind != VFS_NODE_HOST || strcmp(loc.rel, ".") == 0)
        return NEG(G_EBUSY); /* mount points, devices, synthetic dirs */
    if (!loc.writable)
        return NEG(G_EROFS);
    if (unlinkat(loc.dirfd, loc.rel, dir ? AT_REMOVEDIR : 0) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_unlinkat(struct Z_env_instance_t *h, u32 dirfd, u32 path, u32 flags) {
    if (flags != 0 && flags != G_AT_REMOVEDIR)
        return NEG(G_EINVAL);
    return do_unlink(h, dirfd, path, flags == G_AT_REMOVEDIR);
}

u32 Z_envZ___syscall_rmdir(struct Z_env_instance_t *h, u32 path) {
    return do_unlink(h, (u32)G_AT_FDCWD, path, true);
}

u32 Z_envZ___syscall_renameat(struct Z_env_instance_t *h, u32 ofd, u32 opath,
                              u32 nfd, u32 npath) {
    vfs_loc a, b;
    int r = resolve_at(h, ofd, opath, VFS_NOFOLLOW, false, &a);
    if (r < 0)
        return (u32)r;
    r = resolve_at(h, nfd, npath, VFS_NOFOLLOW | VFS_CREATE, false, &b);
    if (r < 0)
        return (u32)r;
    if (a.kind != VFS_NODE_HOST || b.kind != VFS_NODE_HOST ||
        strcmp(a.rel, ".") == 0 || strcmp(b.rel, ".") == 0)
        return NEG(G_EBUSY);
    if (!a.writable || !b.writable)
        return NEG(G_EROFS);
    if (renameat(a.dirfd, a.rel, b.dirfd, b.rel) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_linkat(struct Z_env_instance_t *h, u32 ofd, u32 opath,
                            u32 nfd, u32 npath, u32 flags) {
    vfs_loc a, b;
    int r = resolve_at(h, ofd, opath,
                       (flags & G_AT_SYMLINK_FOLLOW) ? VFS_FOLLOW : VFS_NOFOLLOW,
                       false, &a);
    if (r < 0)
        return (u32)r;
    r = resolve_at(h, nfd, npath, VFS_NOFOLLOW | VFS_CREATE, false, &b);
    if (r < 0)
        return (u32)r;
    if (a.kind != VFS_NODE_HOST || b.kind != VFS_NODE_HOST)
        return NEG(G_EPERM);
    if (!b.writable)
        return NEG(G_EROFS);
    if (linkat(a.dirfd, a.rel, b.dirfd, b.rel, 0) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_symlinkat(struct Z_env_instance_t *h, u32 target, u32 nfd,
                               u32 npath) {
    char t[VFS_PATH_MAX];
    int n = abi_gstr(h, target, t, sizeof t);
    if (n < 0)
        return (u32)n;
    if (n == 0)
        return NEG(G_ENOENT);
    vfs_loc b;
    int r = resolve_at(h, nfd, npath, VFS_NOFOLLOW | VFS_CREATE, false, &b);
    if (r < 0)
        return (u32)r;
    if (b.kind != VFS_NODE_HOST || loc_exists(&b))
        return NEG(G_EEXIST);
    if (!b.writable)
        return NEG(G_EROFS);
    /* The target is stored verbatim: it is a guest path, and the vfs
     * interprets it inside the guest tree whenever it is followed. */
    if (symlinkat(t, b.dirfd, b.rel) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_readlinkat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                                u32 buf, u32 size) {
    if ((int32_t)size <= 0)
        return NEG(G_EINVAL);
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path, VFS_NOFOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind != VFS_NODE_HOST)
        return NEG(G_EINVAL);
    uint8_t *d = abi_mem_ptr(h->mem, buf, size);
    if (!d)
        return NEG(G_EFAULT);
    ssize_t n = readlinkat(loc.dirfd, loc.rel, (char *)d, size);
    if (n < 0)
        return HOSTERR();
    return (u32)n;
}

u32 Z_envZ___syscall_faccessat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                               u32 amode, u32 flags) {
    (void)flags;
    if (amode & ~7u)
        return NEG(G_EINVAL);
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path, VFS_FOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind == VFS_NODE_SYNTH)
        return (amode & 2) ? NEG(G_EROFS) : 0;
    if (loc.kind == VFS_NODE_DEV)
        return 0;
    struct stat st;
    if (fstatat(loc.dirfd, loc.rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return HOSTERR();
    if ((amode & 2) && !loc.writable)
        return NEG(G_EROFS);
    /* Permission bits as for the owner (the guest owns what it sees). */
    if ((amode & 4) && !(st.st_mode & S_IRUSR)) return NEG(G_EACCES);
    if ((amode & 2) && !(st.st_mode & S_IWUSR)) return NEG(G_EACCES);
    if ((amode & 1) && !(st.st_mode & S_IXUSR)) return NEG(G_EACCES);
    return 0;
}

static u32 chmod_loc(const vfs_loc *loc, u32 mode) {
    if (loc->kind != VFS_NODE_HOST)
        return NEG(G_EPERM);
    if (!loc->writable)
        return NEG(G_EROFS);
    if (fchmodat(loc->dirfd, loc->rel, (mode_t)(mode & 07777), 0) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_chmod(struct Z_env_instance_t *h, u32 path, u32 mode) {
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_FOLLOW, false, &loc);
    return r < 0 ? (u32)r : chmod_loc(&loc, mode);
}

u32 Z_envZ___syscall_fchmodat2(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                               u32 mode, u32 flags) {
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path,
                       (flags & G_AT_SYMLINK_NOFOLLOW) ? VFS_NOFOLLOW : VFS_FOLLOW,
                       (flags & G_AT_EMPTY_PATH) != 0, &loc);
    return r < 0 ? (u32)r : chmod_loc(&loc, mode);
}

u32 Z_envZ___syscall_fchmod(struct Z_env_instance_t *h, u32 fd, u32 mode) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (f->kind != FD_HOST && f->kind != FD_DIR)
        return NEG(G_EPERM);
    vfs_loc loc;
    int r = vfs_resolve(h->vfs, "/", f->guest_path, VFS_FOLLOW, &loc);
    if (r < 0 || loc.kind != VFS_NODE_HOST || !loc.writable)
        return NEG(G_EROFS);
    if (fchmod(f->host_fd, (mode_t)(mode & 07777)) != 0)
        return HOSTERR();
    return 0;
}

/* Ownership is not ours to change: the guest owns everything it sees. */
u32 Z_envZ___syscall_fchown32(struct Z_env_instance_t *h, u32 fd, u32 uid, u32 gid) {
    (void)uid; (void)gid;
    return abi_fd_get(h, fd) ? 0 : NEG(G_EBADF);
}

u32 Z_envZ___syscall_fchownat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                              u32 uid, u32 gid, u32 flags) {
    (void)uid; (void)gid;
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path,
                       (flags & G_AT_SYMLINK_NOFOLLOW) ? VFS_NOFOLLOW : VFS_FOLLOW,
                       (flags & G_AT_EMPTY_PATH) != 0, &loc);
    if (r < 0)
        return (u32)r;
    return (loc.kind == VFS_NODE_HOST && !loc.writable) ? NEG(G_EROFS) : 0;
}

u32 Z_envZ___syscall_utimensat(struct Z_env_instance_t *h, u32 dirfd, u32 path,
                               u32 times, u32 flags) {
    vfs_loc loc;
    int r = resolve_at(h, dirfd, path,
                       (flags & G_AT_SYMLINK_NOFOLLOW) ? VFS_NOFOLLOW : VFS_FOLLOW,
                       true, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind != VFS_NODE_HOST)
        return 0;
    if (!loc.writable)
        return NEG(G_EROFS);
    struct timespec ts[2];
    struct timespec *tp = NULL;
    if (times) {
        uint8_t *d = abi_mem_ptr(h->mem, times, 32);
        if (!d)
            return NEG(G_EFAULT);
        for (int i = 0; i < 2; i++) {
            int64_t s;
            int32_t ns;
            memcpy(&s, d + 16 * i, 8);
            memcpy(&ns, d + 16 * i + 8, 4);
            ts[i].tv_sec = (time_t)s;
            /* UTIME_NOW / UTIME_OMIT have the same values on Linux. */
            ts[i].tv_nsec = ns;
        }
        tp = ts;
    }
    if (utimensat(loc.dirfd, loc.rel, tp, AT_SYMLINK_NOFOLLOW) != 0)
        return HOSTERR();
    return 0;
}

u32 Z_envZ___syscall_chdir(struct Z_env_instance_t *h, u32 path) {
    vfs_loc loc;
    int r = resolve_at(h, (u32)G_AT_FDCWD, path, VFS_FOLLOW, false, &loc);
    if (r < 0)
        return (u32)r;
    if (loc.kind == VFS_NODE_DEV)
        return NEG(G_ENOTDIR);
    if (loc.kind == VFS_NODE_HOST) {
        struct stat st;
        if (fstatat(loc.dirfd, loc.rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return HOSTERR();
        if (!S_ISDIR(st.st_mode))
            return NEG(G_ENOTDIR);
    }
    snprintf(h->cwd, sizeof h->cwd, "%s", loc.guest);
    return 0;
}

u32 Z_envZ___syscall_getcwd(struct Z_env_instance_t *h, u32 buf, u32 size) {
    if (size == 0)
        return NEG(G_EINVAL);
    size_t n = strlen(h->cwd) + 1;
    if (size < n)
        return NEG(G_ERANGE);
    memcpy(abi_gptr(h, buf, (uint32_t)n), h->cwd, n);
    return (u32)n;
}

u32 Z_envZ___syscall_umask(struct Z_env_instance_t *h, u32 mask) {
    u32 old = h->umask;
    h->umask = mask & 0777;
    return old;
}

/* ---- pipes and poll ----------------------------------------------------- */

/* A host socket the host connected for the guest (abi_config.socket_open):
 * the guest's fd for it, or -errno. */
int abi_fd_socket(abi_host *h, int host_fd) {
    abi_fd *f = fd_new(FD_HOST, host_fd);
    if (!f) {
        close(host_fd);
        return NEG(G_ENOMEM);
    }
    f->flags = G_O_RDWR;
    f->writable = true;
    f->guest_path = strdup("socket:");
    int fd = abi_fd_install(h, f, 0);
    if (fd < 0) {
        abi_fd_release(f);
        return NEG(G_EMFILE);
    }
    return fd;
}

u32 Z_envZ___syscall_pipe2(struct Z_env_instance_t *h, u32 pfds, u32 flags);
u32 Z_envZ___syscall_pipe(struct Z_env_instance_t *h, u32 pfds) {
    return Z_envZ___syscall_pipe2(h, pfds, 0);
}

/* select() is only pg_dump's wait for its parallel workers, which need
 * fork(): not in the sandbox. */
u32 Z_envZ___syscall__newselect(struct Z_env_instance_t *h, u32 nfds, u32 r, u32 w, u32 e,
                                u32 timeout) {
    (void)h; (void)nfds; (void)r; (void)w; (void)e; (void)timeout;
    return NEG(G_ENOSYS);
}

u32 Z_envZ___syscall_pipe2(struct Z_env_instance_t *h, u32 pfds, u32 flags) {
    if (!pfds)
        return NEG(G_EFAULT);
    if (flags & ~(u32)(G_O_CLOEXEC | G_O_NONBLOCK))
        return NEG(G_EINVAL);
    int p[2];
    if (pipe2(p, O_CLOEXEC | ((flags & G_O_NONBLOCK) ? O_NONBLOCK : 0)) != 0)
        return HOSTERR();
    abi_fd *r = fd_new(FD_HOST, p[0]), *w = fd_new(FD_HOST, p[1]);
    if (!r || !w) {
        close(p[0]);
        close(p[1]);
        free(r);
        free(w);
        return NEG(G_ENOMEM);
    }
    r->flags = G_O_RDONLY | (int)(flags & G_O_NONBLOCK);
    w->flags = G_O_WRONLY | (int)(flags & G_O_NONBLOCK);
    w->writable = true;
    r->guest_path = strdup("pipe:");
    w->guest_path = strdup("pipe:");
    static _Atomic uint64_t pipes;
    r->pipe_id = w->pipe_id = atomic_fetch_add(&pipes, 1) + 1;
    int a = abi_fd_install(h, r, 0);
    if (a < 0) {
        abi_fd_release(r);
        abi_fd_release(w);
        return NEG(G_EMFILE);
    }
    int b = abi_fd_install(h, w, 0);
    if (b < 0) {
        h->fds[a] = NULL;
        abi_fd_release(r);
        abi_fd_release(w);
        return NEG(G_EMFILE);
    }
    abi_w32(h, pfds, (uint32_t)a);
    abi_w32(h, pfds + 4, (uint32_t)b);
    return 0;
}

/* poll(): host fds are polled for real, with the timeout honoured; files,
 * devices and directories are always ready. Armed itimers shorten the wait
 * and are delivered when due, so a sleeping backend still sees
 * statement_timeout; a delivered one, or a signal, ends the wait with EINTR
 * as it would on Linux. */
u32 Z_envZ___syscall_poll(struct Z_env_instance_t *h, u32 fds, u32 nfds, u32 timeout) {
    if (nfds > ABI_MAX_FDS)
        return NEG(G_EINVAL);
    uint8_t *g = nfds ? abi_mem_ptr(h->mem, fds, nfds * 8) : NULL;
    if (nfds && !g)
        return NEG(G_EFAULT);
    struct pollfd hp[65];
    int map[64];
    if (nfds > 64)
        return NEG(G_EINVAL);
    int32_t to = (int32_t)timeout;
    double deadline = to >= 0 ? abi_now_ms() + to : 0;
    for (;;) {
        int nhost = 0, ready = 0;
        for (u32 i = 0; i < nfds; i++) {
            int32_t fd;
            int16_t ev, rev = 0;
            memcpy(&fd, g + 8 * i, 4);
            memcpy(&ev, g + 8 * i + 4, 2);
            map[i] = -1;
            if (fd < 0) {
                memcpy(g + 8 * i + 6, &rev, 2);
                continue;
            }
            abi_fd *f = abi_fd_get(h, (u32)fd);
            if (!f) {
                rev = G_POLLNVAL;
            } else if (f->kind == FD_HOST) {
                struct stat st;
                if (fstat(f->host_fd, &st) == 0 && S_ISREG(st.st_mode)) {
                    rev = ev & (G_POLLIN | G_POLLOUT);
                } else {
                    hp[nhost].fd = f->host_fd;
                    hp[nhost].events = ev & (POLLIN | POLLPRI | POLLOUT);
                    hp[nhost].revents = 0;
                    map[i] = nhost++;
                }
            } else {
                rev = ev & (G_POLLIN | G_POLLOUT);
            }
            memcpy(g + 8 * i + 6, &rev, 2);
            if (rev)
                ready++;
        }
        int wait_ms = 0;
        if (!ready) {
            double now = abi_now_ms();
            double until = to < 0 ? -1 : deadline;
            double tn = abi_timer_next(h);
            if (tn != 0 && (until < 0 || tn < until))
                until = tn;
            wait_ms = until < 0 ? -1 : (until > now ? (int)(until - now + 0.999) : 0);
        }
        int nwait = nhost;
        if (wait_ms != 0 && h->wake_fd >= 0) {
            hp[nwait].fd = h->wake_fd;
            hp[nwait].events = POLLIN;
            hp[nwait].revents = 0;
            nwait++;
        }
        bool sched = wait_ms != 0 && h->sched_leave;
        if (sched)
            h->sched_leave(h->sched_ctx);
        int r = poll(hp, (nfds_t)nwait, wait_ms);
        int perr = errno;
        if (sched)
            h->sched_enter(h->sched_ctx);
        errno = perr;
        if (r < 0 && errno != EINTR)
            return HOSTERR();
        bool woken = false;
        if (nwait > nhost && hp[nhost].revents) {
            uint64_t v;
            ssize_t rr = read(h->wake_fd, &v, sizeof v);
            (void)rr;
            woken = true; /* let the guest re-check its latch and flags */
        }
        for (u32 i = 0; i < nfds && r > 0; i++) {
            if (map[i] < 0)
                continue;
            int16_t rev = hp[map[i]].revents & (POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLNVAL);
            memcpy(g + 8 * i + 6, &rev, 2);
            if (rev)
                ready++;
        }
        /* A handler that ran (an itimer, a signal from another instance)
         * interrupts the wait, as a signal interrupts poll(): the guest
         * re-checks what the handler may have changed (its latch). */
        bool interrupted = abi_timers_check(h);
        if (ready)
            return (u32)ready;
        if (interrupted)
            return NEG(G_EINTR);
        if (to == 0 || woken)
            return 0;
        if (to > 0 && abi_now_ms() >= deadline)
            return 0;
        /* A delivered timer may have made an fd readable (latch pipe). */
    }
}

/* ---- fork ---------------------------------------------------------------- */

/* What a forked child inherits (abi.h): every fd but stdio, each a dup as
 * fork makes it (sharing the file offset), and pipes as new pipes: the
 * pipes an instance has at its fork point are its own (PostgreSQL's latch
 * self-pipe), which a forked PostgreSQL child would make again. */
struct abi_fork_state {
    abi_fd *fds[ABI_MAX_FDS];
    char cwd[VFS_PATH_MAX];
    uint32_t umask;
    abi_map *maps;
    size_t nmaps;
    abi_dylink_fork *libs; /* libraries loaded before the fork point */
};

static abi_fd *fd_copy(const abi_fd *old) {
    abi_fd *f = fd_new(old->kind, -1);
    if (!f)
        return NULL;
    if (old->host_fd >= 0 && !old->pipe_id) {
        f->host_fd = fcntl(old->host_fd, F_DUPFD_CLOEXEC, 3);
        if (f->host_fd < 0) {
            free(f);
            return NULL;
        }
    }
    f->flags = old->flags;
    f->fd_flags = old->fd_flags;
    f->writable = old->writable;
    f->dev = old->dev;
    f->pipe_id = old->pipe_id;
    f->guest_path = old->guest_path ? strdup(old->guest_path) : NULL;
    if (old->whole && (f->whole = malloc(old->whole_len))) {
        memcpy(f->whole, old->whole, old->whole_len); /* its own position in the fixed content */
        f->whole_len = old->whole_len;
        f->whole_pos = old->whole_pos;
    } else if (old->whole) {
        abi_fd_release(f);
        return NULL;
    }
    return f;
}

bool abi_host_map_since(const abi_host *h, const abi_fork_state *s, size_t i, uint32_t *addr,
                        uint32_t *len) {
    for (size_t k = 0; k < h->nmaps; k++) {
        bool inherited = false;
        for (size_t j = 0; j < s->nmaps && !inherited; j++)
            inherited = s->maps[j].addr == h->maps[k].addr && s->maps[j].len == h->maps[k].len;
        if (!inherited && i-- == 0) {
            *addr = h->maps[k].addr;
            *len = h->maps[k].len;
            return true;
        }
    }
    return false;
}

void abi_fork_state_free(abi_fork_state *s) {
    if (!s)
        return;
    for (int i = 0; i < ABI_MAX_FDS; i++)
        abi_fd_release(s->fds[i]);
    for (size_t i = 0; i < s->nmaps; i++)
        close(s->maps[i].host_fd);
    free(s->maps);
    abi_dylink_fork_free(s->libs);
    free(s);
}

abi_fork_state *abi_host_fork_save(abi_host *h) {
    abi_fork_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (int i = 3; i < ABI_MAX_FDS; i++)
        if (h->fds[i] && !(s->fds[i] = fd_copy(h->fds[i])))
            goto fail;
    memcpy(s->cwd, h->cwd, sizeof s->cwd);
    s->umask = h->umask;
    if (h->nmaps && !(s->maps = calloc(h->nmaps, sizeof *s->maps)))
        goto fail;
    for (; s->nmaps < h->nmaps; s->nmaps++) {
        s->maps[s->nmaps] = h->maps[s->nmaps];
        s->maps[s->nmaps].host_fd = fcntl(h->maps[s->nmaps].host_fd, F_DUPFD_CLOEXEC, 3);
        if (s->maps[s->nmaps].host_fd < 0)
            goto fail;
    }
    if (h->dylink && !(s->libs = abi_dylink_fork_save(h->dylink)))
        goto fail;
    return s;
fail:
    abi_fork_state_free(s);
    return NULL;
}

int abi_host_fork_restore(abi_host *h, const abi_fork_state *s) {
    for (int i = 3; i < ABI_MAX_FDS; i++) {
        abi_fd_release(h->fds[i]);
        h->fds[i] = NULL;
    }
    for (int i = 3; i < ABI_MAX_FDS; i++) {
        if (!s->fds[i] || h->fds[i])
            continue; /* (the other end of a pipe made below) */
        abi_fd *f = fd_copy(s->fds[i]);
        if (!f)
            return -G_ENOMEM;
        h->fds[i] = f;
        if (!f->pipe_id)
            continue;
        /* A new pipe for every pipe of the fork point: its ends (and dups)
         * found by pipe_id, a fresh id so that they pair only with each
         * other. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            return -abi_errno(errno);
        static _Atomic uint64_t clones;
        uint64_t id = f->pipe_id, nid = ((uint64_t)1 << 63) | (atomic_fetch_add(&clones, 1) + 1);
        for (int j = i; j < ABI_MAX_FDS; j++) {
            abi_fd *g = j == i ? f : NULL;
            if (j != i) {
                if (!s->fds[j] || s->fds[j]->pipe_id != id)
                    continue;
                if (!(g = fd_copy(s->fds[j]))) {
                    close(p[0]);
                    close(p[1]);
                    return -G_ENOMEM;
                }
                h->fds[j] = g;
            }
            bool reader = (g->flags & G_O_ACCMODE) == G_O_RDONLY;
            g->host_fd = fcntl(reader ? p[0] : p[1], F_DUPFD_CLOEXEC, 3);
            g->pipe_id = nid;
            if (g->host_fd < 0 ||
                fcntl(g->host_fd, F_SETFL, (g->flags & G_O_NONBLOCK) ? O_NONBLOCK : 0) != 0) {
                int e = errno;
                close(p[0]);
                close(p[1]);
                return -abi_errno(e);
            }
        }
        close(p[0]);
        close(p[1]);
    }
    memcpy(h->cwd, s->cwd, sizeof h->cwd);
    h->umask = s->umask;
    for (size_t i = 0; i < s->nmaps; i++) {
        const abi_map *m = &s->maps[i];
        int r = abi_host_map_shared(h, m->addr, m->len, m->host_fd, m->off);
        if (r < 0)
            return r;
    }
    return 0;
}

int abi_host_fork_restore_libraries(abi_host *h, const abi_fork_state *s) {
    return abi_dylink_fork_restore(h, s->libs);
}

size_t abi_fork_state_libraries(const abi_fork_state *s) { return abi_dylink_fork_count(s->libs); }

int abi_host_library_of(abi_host *h, const void *instance) {
    return h->dylink ? abi_dylink_lib_of(h->dylink, instance) : -1;
}

void *abi_host_library_instance(abi_host *h, int k) {
    return h->dylink ? abi_dylink_lib_instance(h->dylink, k) : NULL;
}
