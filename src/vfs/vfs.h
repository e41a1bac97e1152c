/*
 * vfs: the guest file tree and its sandbox.
 *
 * The guest (PostgreSQL inside the wasm module) sees one absolute file tree.
 * A few guest directories are "mounts" onto host directories (preopens); a
 * few guest paths are virtual devices; the directories above the mounts
 * ("/", "/dev", "/home", ...) are synthetic and read-only. Every other guest
 * path does not exist.
 *
 * vfs_resolve() turns a guest path into a location that the abi layer can
 * hand to the *at() family of host calls: a mount's directory fd plus a
 * relative path that is free of "..", "." and symlinks. Symlinks found on the
 * host are followed *inside the guest tree* (an absolute target is a guest
 * path, a relative one is relative to the link's guest directory), so no
 * path, symlink or loop can reach a host path outside the mounts.
 *
 * Errors are negative Linux (host) errno values; the abi layer translates
 * them to the guest's numbering.
 *
 * This layer is pure host code: it knows nothing of wasm or PostgreSQL.
 */
#ifndef PGLITE_VFS_H
#define PGLITE_VFS_H

#include <stddef.h>

/* Longest guest path accepted, including the terminating NUL (Linux's). */
#define VFS_PATH_MAX 4096
/* Symlinks followed during one resolution before ELOOP (Linux's). */
#define VFS_MAXSYMLINKS 40

typedef struct vfs vfs;

/* Mount flags. */
enum {
    VFS_RDONLY = 0,
    VFS_RDWR = 1,
};

/* Virtual devices. */
typedef enum {
    VFS_DEV_NONE = 0,
    VFS_DEV_NULL,    /* /dev/null: reads EOF, writes vanish */
    VFS_DEV_URANDOM, /* /dev/urandom (and /dev/random): host random bytes */
    VFS_DEV_BLOB,    /* /dev/blob: the COPY channel, served by the layer above */
} vfs_dev;

/* What a guest path resolved to. */
typedef enum {
    VFS_NODE_HOST = 1, /* a path under a mount: use dirfd + rel */
    VFS_NODE_DEV,      /* a virtual device: see dev */
    VFS_NODE_SYNTH,    /* a synthetic directory ("/", "/dev", "/home") */
} vfs_node_kind;

typedef struct vfs_loc {
    vfs_node_kind kind;
    int dirfd;        /* HOST: the mount's directory fd (owned by the vfs,
                       * O_PATH); -1 otherwise */
    int writable;     /* HOST: the mount is read-write; DEV: 1; SYNTH: 0 */
    vfs_dev dev;      /* DEV: which device; VFS_DEV_NONE otherwise */
    /* HOST: path relative to dirfd, "." for the mount root; no "..", no
     * empty components, no symlink in any component but possibly the last
     * (only when resolved with VFS_NOFOLLOW); "" for DEV and SYNTH. */
    char rel[VFS_PATH_MAX];
    /* The canonical guest path ("/pglite/data/base/1"). */
    char guest[VFS_PATH_MAX];
    /* The path's final component was followed by '/'. If that component
     * exists it has been checked to be a directory (else ENOTDIR); if it is
     * missing (VFS_CREATE) only a directory may be created there (Linux:
     * mkdir("d/") works, open("f/", O_CREAT) gives EISDIR). */
    int trailing_slash;
    /* Resolved with VFS_LEXICAL and no component was looked at on the host
     * (see VFS_LEXICAL): right only if opening it with vfs_openat works. */
    int unchecked;
} vfs_loc;

/* vfs_resolve flags. */
enum {
    VFS_FOLLOW = 0,   /* follow a symlink in the last component */
    VFS_NOFOLLOW = 1, /* do not (lstat, readlink, unlink, rename, O_NOFOLLOW,
                       * and open O_CREAT|O_EXCL, which must not follow);
                       * a trailing '/' still follows, as on Linux */
    /* The last component may be missing (open O_CREAT, mkdir, symlink,
     * rename target): a missing last component is not an error, but its
     * parent must exist. With VFS_FOLLOW a dangling symlink is followed and
     * the location is its (missing) target, as open(O_CREAT) does on Linux.
     * A missing name directly under a synthetic directory ("/newfile",
     * "/dev/x") gives -EROFS: the synthetic tree is read-only. An existing
     * last component is returned as usual. */
    VFS_CREATE = 2,
    /* For an open that vfs_openat makes next: a path with no ".." and no
     * trailing '/' is resolved from the mount table alone, without a
     * lookup of each component on the host (out->unchecked). vfs_openat
     * refuses to follow any symlink and stays beneath the mount, so when
     * it succeeds the file is the one the full resolution gives; when it
     * fails (a symlink to follow, a missing or non-directory component),
     * the caller resolves again without this flag and opens that, for the
     * exact answer. */
    VFS_LEXICAL = 4,
};

vfs *vfs_new(void);
void vfs_free(vfs *v);

/* Map guest directory `guest_dir` (absolute, normalised, e.g. "/pglite/data")
 * onto existing host directory `host_dir` (opened once, O_PATH; the host
 * path is trusted configuration and may itself contain symlinks). Flags:
 * VFS_RDONLY or VFS_RDWR. Mounts may nest; the longest matching guest prefix
 * wins, so the mount point itself need not exist in the outer mount's host
 * tree, but directories between two mount points ("/a/b" for mounts "/a" and
 * "/a/b/c") must. Returns 0 or -errno (ENOENT/ENOTDIR for a bad host dir,
 * EINVAL for a bad guest path or flags, EEXIST for a duplicate mount or a
 * device at that path, ENOMEM). */
int vfs_mount(vfs *v, const char *guest_dir, const char *host_dir, int flags);

/* Add a virtual device at guest path `guest_path` (e.g. "/dev/null";
 * "/dev/random" is just another path for VFS_DEV_URANDOM). A device wins
 * over a mount covering the same path. Returns 0 or -errno (EINVAL, EEXIST,
 * ENOMEM). */
int vfs_add_device(vfs *v, const char *guest_path, vfs_dev dev);

/* Resolve guest `path` (absolute, or relative to the absolute guest `cwd`;
 * a NULL cwd means "/") with VFS_* flags. Returns 0 and fills *out (out is
 * left unspecified on error), or -errno: ENOENT (no such guest path, or
 * outside every mount, or empty path), ENOTDIR, ELOOP (more than
 * VFS_MAXSYMLINKS symlinks), ENAMETOOLONG (path or cwd of VFS_PATH_MAX bytes
 * or more, a name over 255 bytes, a canonical guest path that would reach
 * VFS_PATH_MAX, or symlink expansion that does not fit), EROFS (VFS_CREATE
 * in a synthetic directory), EINVAL (a relative cwd, unknown flags; an
 * embedded NUL is impossible in a C string; a path whose length argument
 * covers a NUL is rejected by vfs_resolve_n), other host errors of fstatat
 * and readlinkat (EACCES...).
 *
 * A writable mount is reported in out->writable; the caller enforces it
 * (vfs_openat does for opens).
 *
 * Assumption: while the guest runs, only the guest mutates the mounted host
 * trees. The guest is single-threaded and resolution plus the caller's *at()
 * call happen within one guest syscall, so no component checked here can be
 * swapped for a symlink in between. As defence in depth, open through
 * vfs_openat(), which refuses symlinks in every component anyway. */
int vfs_resolve(vfs *v, const char *cwd, const char *path, int flags,
                vfs_loc *out);
/* Same, for a path given as bytes and a length (as read from guest memory):
 * a NUL inside the first n bytes gives -EINVAL; n >= VFS_PATH_MAX gives
 * -ENAMETOOLONG. */
int vfs_resolve_n(vfs *v, const char *cwd, const char *path, size_t n,
                  int flags, vfs_loc *out);

/* The names directly below a synthetic directory (mount points, devices and
 * intermediate synthetic directories), for getdents. `guest_dir` is a
 * canonical guest path (as in vfs_loc.guest). Calls fn (may be NULL) once
 * per distinct name, is_dir 0 only for a device, without "." and "..";
 * returns the count or -errno: ENOENT (no such path), ENOTDIR (a device),
 * EINVAL (not canonical, or a host directory: list that on the host). */
int vfs_list_synthetic(vfs *v, const char *guest_dir,
                       void (*fn)(void *ctx, const char *name, int is_dir),
                       void *ctx);

/* Host directory backing a mount (for tools and tests), or NULL. */
const char *vfs_mount_host_path(vfs *v, const char *guest_dir);

/* Open a VFS_NODE_HOST location: openat(loc->dirfd, loc->rel, flags, mode)
 * with O_CLOEXEC added, confined to the mount as defence in depth: with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
 * where the kernel has it (Linux >= 5.6), else by opening each directory of
 * loc->rel with O_PATH|O_NOFOLLOW and the last component with O_NOFOLLOW
 * (build with -DVFS_NO_OPENAT2 to force this path). Either way a
 * symlink in the last component gives -ELOOP (unless O_PATH|O_NOFOLLOW,
 * which opens the link itself). On a read-only mount, write access, O_TRUNC,
 * O_TMPFILE or creating a missing file give -EROFS. Returns the fd or
 * -errno; -EINVAL for a location that is not on the host. */
int vfs_openat(const vfs_loc *loc, int flags, int mode);

#endif
