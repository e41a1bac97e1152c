/*
 * vfs: the guest file tree and its sandbox. See vfs.h for the contract and
 * docs/vfs.md for the reasoning.
 *
 * Resolution walks a guest-absolute path one component at a time, keeping
 * two strings:
 *
 *   done  the canonical guest path walked so far ("/" at the start); every
 *         component in it has been checked to exist and, except possibly the
 *         last, to be a directory that is not a symlink;
 *   work  the text still to walk. It is kept at the end of a buffer so that a
 *         symlink target can be spliced in front of it without moving it.
 *
 * Which node a guest path names is decided by table look-ups only (device,
 * then longest mount prefix, then synthetic ancestor); the host is asked
 * (fstatat, readlinkat) only for components inside a mount. ".." pops a
 * component of `done`, so it is handled in guest terms and never reaches the
 * host; symlink targets go back through the same walk, so they are guest
 * paths too. Nothing here allocates on the resolution path.
 */
#define _GNU_SOURCE
#include "vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define VFS_HAVE_OPENAT2_H 1
#endif
#endif

/* Longest single name (Linux's NAME_MAX). */
#define VFS_NAME_MAX 255
/* The text still to walk: a relative path joined to its cwd, and symlink
 * targets spliced in front of what remains. */
#define VFS_WORK_MAX (2 * VFS_PATH_MAX)

struct vfs_mount {
    char *guest;   /* normalised guest directory */
    size_t glen;
    char *host;    /* host directory as given */
    int fd;        /* O_PATH|O_DIRECTORY */
    int writable;
};

struct vfs_device {
    char *guest;
    size_t glen;
    vfs_dev dev;
};

struct vfs {
    struct vfs_mount *mounts;
    size_t nmounts, capmounts;
    struct vfs_device *devs;
    size_t ndevs, capdevs;
};

/* ------------------------------------------------------------------------ */
/* Guest path helpers */

/* Is guest path `p` (length plen) equal to or below directory `dir`
 * (length dlen)? Both are canonical: absolute, no trailing slash but "/". */
static int under(const char *p, size_t plen, const char *dir, size_t dlen)
{
    if (dlen == 1) /* "/" */
        return 1;
    if (plen < dlen || memcmp(p, dir, dlen) != 0)
        return 0;
    return plen == dlen || p[dlen] == '/';
}

/* A guest path accepted by vfs_mount/vfs_add_device: absolute, shorter than
 * VFS_PATH_MAX, no empty, "." or ".." component, no trailing slash (except
 * "/" itself), names no longer than VFS_NAME_MAX. */
static int canonical(const char *p)
{
    if (p == NULL || p[0] != '/')
        return 0;
    size_t n = strnlen(p, VFS_PATH_MAX);
    if (n >= VFS_PATH_MAX)
        return 0;
    if (n == 1)
        return 1;
    const char *s = p + 1;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || len > VFS_NAME_MAX)
            return 0;
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (!e)
            return 1;
        s = e + 1;
    }
}

/* What a canonical guest path names, by table look-up alone. */
enum { N_NONE, N_HOST, N_DEV, N_SYNTH };

typedef struct {
    int kind;
    const struct vfs_mount *m; /* N_HOST */
    vfs_dev dev;               /* N_DEV */
} node;

static const struct vfs_device *find_dev(const vfs *v, const char *g, size_t glen)
{
    for (size_t i = 0; i < v->ndevs; i++)
        if (v->devs[i].glen == glen && memcmp(v->devs[i].guest, g, glen) == 0)
            return &v->devs[i];
    return NULL;
}

static const struct vfs_mount *find_mount_exact(const vfs *v, const char *g,
                                                size_t glen)
{
    for (size_t i = 0; i < v->nmounts; i++)
        if (v->mounts[i].glen == glen && memcmp(v->mounts[i].guest, g, glen) == 0)
            return &v->mounts[i];
    return NULL;
}

/* Is g a proper ancestor of a mount point or a device? */
static int is_synth_ancestor(const vfs *v, const char *g, size_t glen)
{
    if (glen == 1) /* "/" is always a directory */
        return 1;
    for (size_t i = 0; i < v->nmounts; i++)
        if (v->mounts[i].glen > glen &&
            under(v->mounts[i].guest, v->mounts[i].glen, g, glen))
            return 1;
    for (size_t i = 0; i < v->ndevs; i++)
        if (v->devs[i].glen > glen &&
            under(v->devs[i].guest, v->devs[i].glen, g, glen))
            return 1;
    return 0;
}

static node classify(const vfs *v, const char *g, size_t glen)
{
    node n = {N_NONE, NULL, VFS_DEV_NONE};
    const struct vfs_device *d = find_dev(v, g, glen);
    if (d) {
        n.kind = N_DEV;
        n.dev = d->dev;
        return n;
    }
    const struct vfs_mount *best = NULL;
    for (size_t i = 0; i < v->nmounts; i++) {
        const struct vfs_mount *m = &v->mounts[i];
        if ((!best || m->glen > best->glen) && under(g, glen, m->guest, m->glen))
            best = m;
    }
    if (best) {
        n.kind = N_HOST;
        n.m = best;
        return n;
    }
    if (is_synth_ancestor(v, g, glen))
        n.kind = N_SYNTH;
    return n;
}

/* The path of g relative to its mount m's directory: "." for the root. */
static const char *rel_of(const struct vfs_mount *m, const char *g, size_t glen)
{
    if (glen == m->glen)
        return ".";
    return g + (m->glen == 1 ? 1 : m->glen + 1);
}

/* ------------------------------------------------------------------------ */
/* Setup */

vfs *vfs_new(void)
{
    return calloc(1, sizeof(vfs));
}

void vfs_free(vfs *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nmounts; i++) {
        close(v->mounts[i].fd);
        free(v->mounts[i].guest);
        free(v->mounts[i].host);
    }
    for (size_t i = 0; i < v->ndevs; i++)
        free(v->devs[i].guest);
    free(v->mounts);
    free(v->devs);
    free(v);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    if (nc > SIZE_MAX / elem)
        return -ENOMEM;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

int vfs_mount(vfs *v, const char *guest_dir, const char *host_dir, int flags)
{
    if (!v || !canonical(guest_dir) || !host_dir || !host_dir[0] ||
        (flags != VFS_RDONLY && flags != VFS_RDWR))
        return -EINVAL;
    size_t glen = strlen(guest_dir);
    if (find_mount_exact(v, guest_dir, glen) || find_dev(v, guest_dir, glen))
        return -EEXIST;
    int r = grow((void **)&v->mounts, &v->capmounts, v->nmounts,
                 sizeof(*v->mounts));
    if (r < 0)
        return r;
    char *g = strdup(guest_dir);
    char *h = strdup(host_dir);
    if (!g || !h) {
        free(g);
        free(h);
        return -ENOMEM;
    }
    int fd = open(host_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(g);
        free(h);
        return -e;
    }
    v->mounts[v->nmounts++] = (struct vfs_mount){
        .guest = g, .glen = glen, .host = h, .fd = fd,
        .writable = flags == VFS_RDWR,
    };
    return 0;
}

int vfs_add_device(vfs *v, const char *guest_path, vfs_dev dev)
{
    if (!v || !canonical(guest_path) || strcmp(guest_path, "/") == 0 ||
        (dev != VFS_DEV_NULL && dev != VFS_DEV_URANDOM && dev != VFS_DEV_BLOB))
        return -EINVAL;
    size_t glen = strlen(guest_path);
    if (find_dev(v, guest_path, glen) || find_mount_exact(v, guest_path, glen))
        return -EEXIST;
    int r = grow((void **)&v->devs, &v->capdevs, v->ndevs, sizeof(*v->devs));
    if (r < 0)
        return r;
    char *g = strdup(guest_path);
    if (!g)
        return -ENOMEM;
    v->devs[v->ndevs++] = (struct vfs_device){.guest = g, .glen = glen, .dev = dev};
    return 0;
}

const char *vfs_mount_host_path(vfs *v, const char *guest_dir)
{
    if (!v || !guest_dir)
        return NULL;
    const struct vfs_mount *m = find_mount_exact(v, guest_dir, strlen(guest_dir));
    return m ? m->host : NULL;
}

/* ------------------------------------------------------------------------ */
/* Resolution */

static void pop(char *done, size_t *dlen)
{
    char *s = memrchr(done, '/', *dlen);
    *dlen = (s == NULL || s == done) ? 1 : (size_t)(s - done);
    done[*dlen] = '\0';
}

/* s holds a ".." component. */
static int has_dotdot(const char *s)
{
    for (const char *d = strstr(s, ".."); d; d = strstr(d + 1, ".."))
        if ((d == s || d[-1] == '/') && (d[2] == '/' || d[2] == '\0'))
            return 1;
    return 0;
}

static int walk(vfs *v, const char *cwd, const char *path, size_t n, int flags,
                vfs_loc *out)
{
    char work[VFS_WORK_MAX];
    char done[VFS_PATH_MAX];
    char target[VFS_PATH_MAX];
    size_t p; /* start of the text still to walk; it ends at work's NUL */

    if (n == 0)
        return -ENOENT;
    if (path[0] == '/') {
        p = VFS_WORK_MAX - 1 - n;
        memcpy(work + p, path, n);
    } else {
        if (cwd == NULL)
            cwd = "/";
        size_t cl = strnlen(cwd, VFS_PATH_MAX);
        if (cl >= VFS_PATH_MAX)
            return -ENAMETOOLONG;
        if (cwd[0] != '/')
            return -EINVAL;
        /* cl + 1 + n <= 4095 + 1 + 4095 = VFS_WORK_MAX - 1: always fits. */
        p = VFS_WORK_MAX - 1 - n - cl - 1;
        memcpy(work + p, cwd, cl);
        work[p + cl] = '/';
        memcpy(work + p + cl + 1, path, n);
    }
    work[VFS_WORK_MAX - 1] = '\0';

    done[0] = '/';
    done[1] = '\0';
    size_t dlen = 1;
    int links = 0;
    int trailing_slash = 0; /* the final component was followed by '/' */
    /* VFS_LEXICAL: no ".." (which must see the symlinks before it) and no
     * trailing '/' (which must see a directory). */
    int lexical = (flags & VFS_LEXICAL) && work[VFS_WORK_MAX - 2] != '/' &&
                  !has_dotdot(work + p);
    int unchecked = 0;

    for (;;) {
        while (work[p] == '/')
            p++;
        if (work[p] == '\0')
            break;
        const char *c = work + p;
        size_t clen = strcspn(c, "/");
        p += clen;
        size_t q = p;
        while (work[q] == '/')
            q++;
        int is_last = work[q] == '\0';
        int slash_after = work[p] == '/';

        if (clen == 1 && c[0] == '.')
            continue;
        if (clen == 2 && c[0] == '.' && c[1] == '.') {
            pop(done, &dlen);
            continue;
        }
        if (clen > VFS_NAME_MAX)
            return -ENAMETOOLONG;
        size_t need = dlen + (dlen > 1) + clen;
        if (need >= VFS_PATH_MAX)
            return -ENAMETOOLONG;

        size_t parent_len = dlen;
        if (dlen > 1)
            done[dlen++] = '/';
        memcpy(done + dlen, c, clen);
        dlen += clen;
        done[dlen] = '\0';

        node nd = classify(v, done, dlen);
        switch (nd.kind) {
        case N_DEV:
            if (!is_last || slash_after)
                return -ENOTDIR;
            break;
        case N_SYNTH:
            break;
        case N_NONE:
            if (is_last && (flags & VFS_CREATE)) {
                /* The parent is synthetic (a mount or device parent would
                 * have put us elsewhere): it is read-only. */
                return -EROFS;
            }
            return -ENOENT;
        case N_HOST: {
            const char *rel = rel_of(nd.m, done, dlen);
            if (rel[0] == '.' && rel[1] == '\0')
                break; /* a mount root: a directory */
            if (lexical) {
                unchecked = 1;
                break;
            }
            struct stat st;
            if (fstatat(nd.m->fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                int e = errno;
                if (e == ENOENT && is_last && (flags & VFS_CREATE))
                    break; /* to be created */
                return -e;
            }
            if (S_ISLNK(st.st_mode) &&
                (!is_last || slash_after || !(flags & VFS_NOFOLLOW))) {
                if (++links > VFS_MAXSYMLINKS)
                    return -ELOOP;
                ssize_t r = readlinkat(nd.m->fd, rel, target, sizeof(target));
                if (r < 0)
                    return -errno;
                if ((size_t)r >= sizeof(target))
                    return -ENAMETOOLONG;
                if (r == 0)
                    return -ENOENT;
                if ((size_t)r > p)
                    return -ENAMETOOLONG;
                /* Splice the target in front of what remains, in place of
                 * the link's name, and walk it from the link's guest parent
                 * (relative) or from guest "/" (absolute). */
                p -= (size_t)r;
                memcpy(work + p, target, (size_t)r);
                if (target[0] == '/')
                    dlen = 1;
                else
                    dlen = parent_len;
                done[dlen] = '\0';
                continue;
            }
            if (!S_ISLNK(st.st_mode) && !S_ISDIR(st.st_mode) &&
                (!is_last || slash_after))
                return -ENOTDIR;
            break;
        }
        }
        if (is_last)
            trailing_slash = slash_after;
    }

    node nd = classify(v, done, dlen);
    out->dev = VFS_DEV_NONE;
    out->dirfd = -1;
    out->writable = 0;
    out->trailing_slash = trailing_slash;
    out->unchecked = unchecked && nd.kind == N_HOST;
    switch (nd.kind) {
    case N_HOST: {
        const char *rel = rel_of(nd.m, done, dlen);
        out->kind = VFS_NODE_HOST;
        out->dirfd = nd.m->fd;
        out->writable = nd.m->writable;
        memcpy(out->rel, rel, strlen(rel) + 1);
        break;
    }
    case N_DEV:
        out->kind = VFS_NODE_DEV;
        out->dev = nd.dev;
        out->writable = 1;
        out->rel[0] = '\0';
        break;
    case N_SYNTH:
        out->kind = VFS_NODE_SYNTH;
        out->rel[0] = '\0';
        break;
    default:
        /* Cannot happen: every node in `done` was classified on the way. */
        return -ENOENT;
    }
    memcpy(out->guest, done, dlen + 1);
    return 0;
}

int vfs_resolve_n(vfs *v, const char *cwd, const char *path, size_t n,
                  int flags, vfs_loc *out)
{
    if (!v || !out || (!path && n > 0))
        return -EFAULT;
    if (flags & ~(VFS_NOFOLLOW | VFS_CREATE | VFS_LEXICAL))
        return -EINVAL;
    if (n >= VFS_PATH_MAX)
        return -ENAMETOOLONG;
    if (n > 0 && memchr(path, '\0', n) != NULL)
        return -EINVAL;
    return walk(v, cwd, path, n, flags, out);
}

int vfs_resolve(vfs *v, const char *cwd, const char *path, int flags,
                vfs_loc *out)
{
    if (!v || !out || !path)
        return -EFAULT;
    size_t n = strnlen(path, VFS_PATH_MAX);
    if (n >= VFS_PATH_MAX)
        return -ENAMETOOLONG;
    return vfs_resolve_n(v, cwd, path, n, flags, out);
}

/* ------------------------------------------------------------------------ */
/* Synthetic directory listing */

/* The name (not NUL-terminated) and length of the child of dir (length
 * dlen) on the way to g; g must be strictly below dir. */
static size_t child_name(const char *g, size_t dlen, const char **name)
{
    const char *s = g + (dlen == 1 ? 1 : dlen + 1);
    *name = s;
    return strcspn(s, "/");
}

int vfs_list_synthetic(vfs *v, const char *guest_dir,
                       void (*fn)(void *ctx, const char *name, int is_dir),
                       void *ctx)
{
    if (!v || !guest_dir)
        return -EFAULT;
    if (!canonical(guest_dir))
        return -EINVAL;
    size_t dlen = strlen(guest_dir);
    node nd = classify(v, guest_dir, dlen);
    if (nd.kind == N_NONE)
        return -ENOENT;
    if (nd.kind == N_DEV)
        return -ENOTDIR;
    if (nd.kind != N_SYNTH)
        return -EINVAL; /* a host directory: list it on the host */

    /* Candidates are the mount points and devices strictly below guest_dir;
     * each gives the child on its way. Entry i is reported only if no
     * earlier entry gives the same child, so there is no allocation. */
    size_t total = v->nmounts + v->ndevs;
    int count = 0;
    for (size_t i = 0; i < total; i++) {
        const char *g = i < v->nmounts ? v->mounts[i].guest
                                       : v->devs[i - v->nmounts].guest;
        size_t glen = i < v->nmounts ? v->mounts[i].glen
                                     : v->devs[i - v->nmounts].glen;
        if (glen <= dlen || !under(g, glen, guest_dir, dlen))
            continue;
        const char *name;
        size_t nlen = child_name(g, dlen, &name);
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++) {
            const char *h = j < v->nmounts ? v->mounts[j].guest
                                           : v->devs[j - v->nmounts].guest;
            size_t hlen = j < v->nmounts ? v->mounts[j].glen
                                         : v->devs[j - v->nmounts].glen;
            if (hlen <= dlen || !under(h, hlen, guest_dir, dlen))
                continue;
            const char *hn;
            size_t hnl = child_name(h, dlen, &hn);
            dup = hnl == nlen && memcmp(hn, name, nlen) == 0;
        }
        if (dup)
            continue;
        /* The child is a directory unless it is exactly a device. */
        size_t clen = (size_t)(name - g) + nlen;
        int is_dir = find_dev(v, g, clen) == NULL;
        if (fn) {
            char buf[VFS_NAME_MAX + 1];
            memcpy(buf, name, nlen);
            buf[nlen] = '\0';
            fn(ctx, buf, is_dir);
        }
        count++;
    }
    return count;
}

/* ------------------------------------------------------------------------ */
/* Opening */

static int open_beneath(int dirfd, const char *rel, int flags, int mode)
{
#if defined(VFS_HAVE_OPENAT2_H) && defined(SYS_openat2) && !defined(VFS_NO_OPENAT2)
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(unsigned)flags;
    /* openat2 rejects a mode without O_CREAT/O_TMPFILE. */
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        how.mode = (uint64_t)(unsigned)mode & 07777;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long r = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (r >= 0)
        return (int)r;
    if (errno != ENOSYS)
        return -errno;
#endif
    /* Without openat2, walk the directories one O_NOFOLLOW step at a time,
     * so that a component swapped for a symlink since resolution is
     * refused here too. rel holds no "..", so every step stays beneath. */
    char name[VFS_PATH_MAX];
    size_t len = strnlen(rel, VFS_PATH_MAX);
    if (len >= VFS_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(name, rel, len + 1);
    int cur = dirfd;
    char *s = name;
    for (;;) {
        char *slash = strchr(s, '/');
        if (!slash)
            break;
        *slash = '\0';
        int next = openat(cur, s, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != dirfd)
            close(cur);
        if (next < 0)
            return -e;
        cur = next;
        s = slash + 1;
    }
    int fd = openat(cur, s, flags | O_NOFOLLOW, (mode_t)mode);
    int e = errno;
    if (cur != dirfd)
        close(cur);
    return fd < 0 ? -e : fd;
}

int vfs_openat(const vfs_loc *loc, int flags, int mode)
{
    if (!loc)
        return -EFAULT;
    if (loc->kind != VFS_NODE_HOST || loc->dirfd < 0)
        return -EINVAL;
    flags |= O_CLOEXEC;
    if (!loc->writable) {
        int acc = flags & O_ACCMODE;
        if (acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC) ||
            (flags & O_TMPFILE) == O_TMPFILE)
            return -EROFS;
        if (flags & O_CREAT) {
            /* As Linux on a read-only mount: an existing file opens (unless
             * O_EXCL), a missing one cannot be created. */
            int fd = open_beneath(loc->dirfd, loc->rel,
                                  flags & ~(O_CREAT | O_EXCL), 0);
            if (fd >= 0 && (flags & O_EXCL)) {
                close(fd);
                return -EEXIST;
            }
            if (fd == -ENOENT)
                return -EROFS;
            return fd;
        }
    }
    return open_beneath(loc->dirfd, loc->rel, flags, mode);
}
