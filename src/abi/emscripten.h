/* Constants and layouts of the guest's libc (Emscripten's musl, wasm32).
 * Facts from Emscripten's system headers and its JS glue; where the value
 * equals x86-64 Linux it is still spelled out so nothing depends on the host.
 */
#ifndef PGLITE_ABI_EMSCRIPTEN_H
#define PGLITE_ABI_EMSCRIPTEN_H

/* errno (WASI numbering) */
enum {
    G_E2BIG = 1, G_EACCES = 2, G_EADDRINUSE = 3, G_EADDRNOTAVAIL = 4,
    G_EAFNOSUPPORT = 5, G_EAGAIN = 6, G_EALREADY = 7, G_EBADF = 8,
    G_EBADMSG = 9, G_EBUSY = 10, G_ECANCELED = 11, G_ECHILD = 12,
    G_ECONNABORTED = 13, G_ECONNREFUSED = 14, G_ECONNRESET = 15,
    G_EDEADLK = 16, G_EDESTADDRREQ = 17, G_EDOM = 18, G_EDQUOT = 19,
    G_EEXIST = 20, G_EFAULT = 21, G_EFBIG = 22, G_EHOSTUNREACH = 23,
    G_EIDRM = 24, G_EILSEQ = 25, G_EINPROGRESS = 26, G_EINTR = 27,
    G_EINVAL = 28, G_EIO = 29, G_EISCONN = 30, G_EISDIR = 31, G_ELOOP = 32,
    G_EMFILE = 33, G_EMLINK = 34, G_EMSGSIZE = 35, G_EMULTIHOP = 36,
    G_ENAMETOOLONG = 37, G_ENETDOWN = 38, G_ENETRESET = 39,
    G_ENETUNREACH = 40, G_ENFILE = 41, G_ENOBUFS = 42, G_ENODEV = 43,
    G_ENOENT = 44, G_ENOEXEC = 45, G_ENOLCK = 46, G_ENOLINK = 47,
    G_ENOMEM = 48, G_ENOMSG = 49, G_ENOPROTOOPT = 50, G_ENOSPC = 51,
    G_ENOSYS = 52, G_ENOTCONN = 53, G_ENOTDIR = 54, G_ENOTEMPTY = 55,
    G_ENOTRECOVERABLE = 56, G_ENOTSOCK = 57, G_ENOTSUP = 58, G_ENOTTY = 59,
    G_ENXIO = 60, G_EOVERFLOW = 61, G_EOWNERDEAD = 62, G_EPERM = 63,
    G_EPIPE = 64, G_EPROTO = 65, G_EPROTONOSUPPORT = 66, G_EPROTOTYPE = 67,
    G_ERANGE = 68, G_EROFS = 69, G_ESPIPE = 70, G_ESRCH = 71, G_ESTALE = 72,
    G_ETIMEDOUT = 73, G_ETXTBSY = 74, G_EXDEV = 75,
    G_EOPNOTSUPP = 138,
};

/* open flags (octal, musl generic) */
#define G_O_ACCMODE   03
#define G_O_RDONLY    00
#define G_O_WRONLY    01
#define G_O_RDWR      02
#define G_O_CREAT     0100
#define G_O_EXCL      0200
#define G_O_NOCTTY    0400
#define G_O_TRUNC     01000
#define G_O_APPEND    02000
#define G_O_NONBLOCK  04000
#define G_O_DSYNC     010000
#define G_O_SYNC      04010000
#define G_O_LARGEFILE 0100000
#define G_O_DIRECTORY 0200000
#define G_O_NOFOLLOW  0400000
#define G_O_CLOEXEC   02000000
#define G_O_PATH      010000000

#define G_AT_FDCWD            (-100)
#define G_AT_SYMLINK_NOFOLLOW 0x100
#define G_AT_REMOVEDIR        0x200
#define G_AT_SYMLINK_FOLLOW   0x400
#define G_AT_EMPTY_PATH       0x1000

/* fcntl */
#define G_F_DUPFD   0
#define G_F_GETFD   1
#define G_F_SETFD   2
#define G_F_GETFL   3
#define G_F_SETFL   4
#define G_F_GETLK   12
#define G_F_SETLK   13
#define G_F_SETLKW  14
#define G_F_DUPFD_CLOEXEC 1030
#define G_FD_CLOEXEC 1

/* file types in st_mode */
#define G_S_IFMT   0170000
#define G_S_IFDIR  0040000
#define G_S_IFCHR  0020000
#define G_S_IFREG  0100000
#define G_S_IFLNK  0120000
#define G_S_IFIFO  0010000
#define G_S_IFSOCK 0140000

/* dirent d_type */
#define G_DT_UNKNOWN 0
#define G_DT_FIFO 1
#define G_DT_CHR 2
#define G_DT_DIR 4
#define G_DT_REG 8
#define G_DT_LNK 10
#define G_DT_SOCK 12

/* struct stat (96 bytes) */
#define G_STAT_SIZE 96
#define G_ST_DEV 0
#define G_ST_MODE 4
#define G_ST_NLINK 8
#define G_ST_UID 12
#define G_ST_GID 16
#define G_ST_RDEV 20
#define G_ST_SIZE 24
#define G_ST_BLKSIZE 32
#define G_ST_BLOCKS 36
#define G_ST_ATIM 40
#define G_ST_MTIM 56
#define G_ST_CTIM 72
#define G_ST_INO 88

/* struct statfs */
#define G_STATFS_SIZE 88

/* struct dirent64 header: ino u64, off i64, reclen u16, type u8, name */
#define G_DIRENT_NAME 19

/* struct tm */
#define G_TM_SEC 0
#define G_TM_MIN 4
#define G_TM_HOUR 8
#define G_TM_MDAY 12
#define G_TM_MON 16
#define G_TM_YEAR 20
#define G_TM_WDAY 24
#define G_TM_YDAY 28
#define G_TM_ISDST 32
#define G_TM_GMTOFF 36

/* poll */
#define G_POLLIN 1
#define G_POLLPRI 2
#define G_POLLOUT 4
#define G_POLLERR 8
#define G_POLLHUP 16
#define G_POLLNVAL 32

/* WASI filetype */
#define G_WASI_FT_UNKNOWN 0
#define G_WASI_FT_CHAR 2
#define G_WASI_FT_DIR 3
#define G_WASI_FT_REG 4
#define G_WASI_FT_LNK 7

/* getaddrinfo */
#define G_AF_UNSPEC 0
#define G_AF_INET 2
#define G_AF_INET6 10
#define G_AI_PASSIVE 1
#define G_AI_CANONNAME 2
#define G_AI_NUMERICHOST 4
#define G_AI_V4MAPPED 8
#define G_AI_NUMERICSERV 1024
#define G_EAI_BADFLAGS (-1)
#define G_EAI_NONAME (-2)
#define G_EAI_FAMILY (-6)
#define G_EAI_SOCKTYPE (-7)
#define G_EAI_SERVICE (-8)
#define G_EAI_MEMORY (-10)
#define G_EAI_OVERFLOW (-12)
#define G_NI_NUMERICHOST 1
#define G_NI_NAMEREQD 8

/* mmap */
#define G_PROT_WRITE 2
#define G_MAP_SHARED 1
#define G_MAP_PRIVATE 2

#endif
