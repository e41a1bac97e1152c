/* The host side of the imports, called directly as the guest would: the
 * ones with no meaning in the sandbox (sockets, ioctl, dlopen of nothing)
 * answer errno values and never abort, and path-taking calls cannot leave
 * the guest tree. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/stat.h>

#include "../support/fixture.h"
#include "wasm/pglite.h" /* the generated import prototypes */

#define E(x) ((u32) - (int32_t)(x)) /* a negated guest errno */

enum { G_EACCES = 2, G_EAFNOSUPPORT = 5, G_EBADF = 8, G_EEXIST = 20,
       G_EFAULT = 21, G_EINVAL = 28, G_ENOENT = 44, G_ENOTDIR = 54,
       G_ENOTSOCK = 57, G_ENOTTY = 59, G_EROFS = 69 };
#define AT_FDCWD_G ((u32)-100)

typedef struct {
    engine *e;
    cluster_tree *t;
} ctx;

static uint32_t gstr(engine *e, const char *s) {
    uint32_t p = engine_malloc(e, (uint32_t)strlen(s) + 1);
    assert_true(p != 0);
    assert_int_equal(engine_write(e, p, s, strlen(s) + 1), 0);
    return p;
}

static void body(engine *e, void *arg) {
    (void)arg;
    abi_host *h = engine_host(e);

    /* Sockets: no network in the sandbox. */
    assert_int_equal(Z_envZ___syscall_socket(h, 2, 1, 0, 0, 0, 0), E(G_EAFNOSUPPORT));
    assert_int_equal(Z_envZ___syscall_bind(h, 1, 0, 0, 0, 0, 0), E(G_ENOTSOCK));
    assert_int_equal(Z_envZ___syscall_connect(h, 1, 0, 0, 0, 0, 0), E(G_ENOTSOCK));
    assert_int_equal(Z_envZ___syscall_listen(h, 1, 0, 0, 0, 0, 0), E(G_ENOTSOCK));
    assert_int_equal(Z_envZ___syscall_accept4(h, 1, 0, 0, 0, 0, 0), E(G_ENOTSOCK));
    assert_int_equal(Z_envZ___syscall_sendto(h, 1, 0, 0, 0, 0, 0), E(G_ENOTSOCK));
    assert_int_equal(Z_envZ___syscall_recvfrom(h, 999, 0, 0, 0, 0, 0), E(G_EBADF));
    assert_int_equal(Z_envZ___syscall_ioctl(h, 1, 0x5401, 0), E(G_ENOTTY));
    assert_int_equal(Z_envZ___syscall_fcntl64(h, 1, 9999, 0), E(G_EINVAL));

    /* Name resolution: numeric only, no DNS. */
    uint32_t out = engine_malloc(e, 4);
    assert_int_equal(Z_envZ_getaddrinfo(h, gstr(e, "example.com"), 0, 0, out), (u32)-2);
    assert_int_equal(Z_envZ_getaddrinfo(h, gstr(e, "127.0.0.1"), gstr(e, "5432"), 0, out), 0);
    assert_int_equal(Z_envZ_getaddrinfo(h, gstr(e, "::1"), 0, 0, out), 0);

    /* Paths outside the guest tree do not exist. */
    uint32_t etc = gstr(e, "/etc/passwd");
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, etc, 0, 0), E(G_ENOENT));
    uint32_t up = gstr(e, "/pglite/../../../../etc/passwd");
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, up, 0, 0), E(G_ENOENT));
    uint32_t st = engine_malloc(e, 96);
    assert_int_equal(Z_envZ___syscall_stat64(h, etc, st), E(G_ENOENT));
    /* A bad pointer is EFAULT, not a crash. */
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, 0xfffffff0u, 0, 0), E(G_EFAULT));
    assert_int_equal(Z_envZ___syscall_stat64(h, 0, st), E(G_EFAULT));

    /* The runtime is read-only. */
    uint32_t ro = gstr(e, "/pglite/share/postgresql/postgres.bki");
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, ro, 2 /* O_RDWR */, 0), E(G_EROFS));
    assert_int_equal(Z_envZ___syscall_unlinkat(h, AT_FDCWD_G, ro, 0), E(G_EROFS));
    uint32_t fd = Z_envZ___syscall_openat(h, AT_FDCWD_G, ro, 0, 0);
    assert_true((int32_t)fd >= 3);
    assert_int_equal(Z_envZ___syscall_getdents64(h, fd, st, 96), E(G_ENOTDIR));
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(abi_host_wasi(h), fd), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(abi_host_wasi(h), fd), G_EBADF);

    /* A symlink the guest makes to /etc leads to guest /etc: nothing. */
    uint32_t target = gstr(e, "/etc");
    uint32_t link = gstr(e, "/tmp/escape");
    assert_int_equal(Z_envZ___syscall_symlinkat(h, target, AT_FDCWD_G, link), 0);
    uint32_t through = gstr(e, "/tmp/escape/passwd");
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, through, 0, 0), E(G_ENOENT));
    uint32_t dots = gstr(e, "../../../../../etc");
    uint32_t link2 = gstr(e, "/tmp/escape2");
    assert_int_equal(Z_envZ___syscall_symlinkat(h, dots, AT_FDCWD_G, link2), 0);
    uint32_t through2 = gstr(e, "/tmp/escape2/passwd");
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, through2, 0, 0), E(G_ENOENT));
    assert_int_equal(Z_envZ___syscall_symlinkat(h, target, AT_FDCWD_G, link), E(G_EEXIST));

    /* Writable scratch works, including O_EXCL. */
    uint32_t f = gstr(e, "/tmp/file");
    uint32_t mode = engine_malloc(e, 4);
    uint32_t m644 = 0644;
    engine_write(e, mode, &m644, 4);
    uint32_t w = Z_envZ___syscall_openat(h, AT_FDCWD_G, f, 01 | 0100 | 0200, mode);
    assert_true((int32_t)w >= 3);
    assert_int_equal(Z_envZ___syscall_openat(h, AT_FDCWD_G, f, 01 | 0100 | 0200, mode), E(G_EEXIST));
    assert_int_equal(Z_envZ___syscall_fdatasync(h, w), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_sync(abi_host_wasi(h), w), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(abi_host_wasi(h), w), 0);

    /* dlopen of a library that is not there fails without a crash. */
    uint32_t handle = engine_malloc(e, 64 + 4096);
    uint8_t zero[64] = {0};
    engine_write(e, handle, zero, sizeof zero);
    engine_write(e, handle + 36, "/pglite/lib/postgresql/nonexistent.so", 38);
    assert_int_equal(Z_envZ__dlopen_js(h, handle), 0);
}

/* A pglite instance with the two mounts m, fn(e, arg) run in it (and
 * succeeded): the instance, to free. */
static engine *run_in_engine(const engine_mount m[2], void (*fn)(engine *, void *), void *arg) {
    char msg[512];
    engine_config cfg = {.mounts = m, .nmounts = 2, .devices = 1,
                         .env = cluster_guest_env(), .stdin_fd = -1,
                         .stdout_fd = -1, .stderr_fd = -1};
    engine *e = engine_new(ENGINE_PGLITE, &cfg, msg, sizeof msg);
    assert_non_null(e);
    engine_result r;
    engine_status s = engine_run(e, fn, arg, &r);
    if (s != ENGINE_OK)
        print_error("%s\n", r.message);
    assert_int_equal(s, ENGINE_OK);
    return e;
}

/* guest iovec {p, n} at iov, one buffer */
static uint32_t one_iov(engine *e, const char *data, size_t n) {
    uint32_t buf = engine_malloc(e, (uint32_t)n), iov = engine_malloc(e, 8);
    uint32_t v[2] = {buf, (uint32_t)n};
    engine_write(e, buf, data, n);
    engine_write(e, iov, v, 8);
    return iov;
}

static void host_first_bytes(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(out, 1, n, f), n);
    fclose(f);
}

/* pg_control's write is held until its fsync, which syncs the file system
 * first (every session's data files before the checkpoint record's
 * pointer), or until its close; a read in between sees it. */
static void control_body(engine *e, void *arg) {
    const char *host = arg;
    abi_host *h = engine_host(e);
    struct Z_wasi_snapshot_preview1_instance_t *wi = abi_host_wasi(h);
    uint32_t path = gstr(e, "/pglite/data/global/pg_control");
    uint32_t fd = Z_envZ___syscall_openat(h, AT_FDCWD_G, path, 02 /* O_RDWR */, 0);
    assert_true((int32_t)fd >= 3);
    uint32_t nw = engine_malloc(e, 4), got = 0;
    char b[4];
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(wi, fd, one_iov(e, "NEW1", 4), 1, nw), 0);
    engine_read(e, nw, &got, 4);
    assert_int_equal(got, 4);
    host_first_bytes(host, b, 4);
    assert_memory_equal(b, "OLD0", 4); /* held */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_sync(wi, fd), 0);
    host_first_bytes(host, b, 4);
    assert_memory_equal(b, "NEW1", 4);
    /* a write, then a read of it through the same fd */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pwrite(wi, fd, one_iov(e, "NEW2", 4), 1, 0, nw), 0);
    uint32_t rbuf = engine_malloc(e, 4), riov = one_iov(e, "....", 4);
    engine_read(e, riov, &rbuf, 4);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(wi, fd, riov, 1, 0, nw), 0);
    engine_read(e, rbuf, b, 4);
    assert_memory_equal(b, "NEW2", 4);
    /* held again, written at close (fsync=off never syncs it) */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pwrite(wi, fd, one_iov(e, "NEW3", 4), 1, 0, nw), 0);
    host_first_bytes(host, b, 4);
    assert_memory_equal(b, "NEW2", 4);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(wi, fd), 0);
    host_first_bytes(host, b, 4);
    assert_memory_equal(b, "NEW3", 4);
}

/* fn(e, arg) in an instance whose /pglite/data is dir (then removed and
 * freed). */
static void run_over_data(char *dir, void (*fn)(engine *, void *), void *arg) {
    char runtime[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    engine_mount m[] = {{"/pglite/data", dir, 1}, {"/pglite", runtime, 0}};
    engine_free(run_in_engine(m, fn, arg));
    fx_rmtree(dir);
    free(dir);
}

static void test_control_file(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("control");
    char global[4200], file[4300];
    snprintf(global, sizeof global, "%s/global", dir);
    assert_int_equal(mkdir(global, 0700), 0);
    snprintf(file, sizeof file, "%s/pg_control", global);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    char page[8192] = "OLD0";
    fwrite(page, 1, sizeof page, f);
    fclose(f);
    run_over_data(dir, control_body, file);
}

/* A relcache init file is read whole at its open and served from there:
 * reads in pieces, across iovecs and past the end, seeks from each
 * origin, a dup sharing the position, and positioned reads all give what
 * the file holds, as reads of the file itself would. */
static uint32_t read_n(engine *e, uint32_t fd, size_t n, char *out) {
    struct Z_wasi_snapshot_preview1_instance_t *wi = abi_host_wasi(engine_host(e));
    uint32_t buf = engine_malloc(e, (uint32_t)n + 1), iov = engine_malloc(e, 16),
             nr = engine_malloc(e, 4), got = 0;
    /* two iovecs, as stdio gives: the caller's buffer, then its own */
    uint32_t v[4] = {buf, (uint32_t)(n / 2), buf + (uint32_t)(n / 2), (uint32_t)(n - n / 2)};
    engine_write(e, iov, v, 16);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(wi, fd, iov, 2, nr), 0);
    engine_read(e, nr, &got, 4);
    engine_read(e, buf, out, got);
    return got;
}

static uint64_t seek(engine *e, uint32_t fd, int64_t off, uint32_t whence) {
    uint32_t pos = engine_malloc(e, 8);
    uint64_t p = 0;
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(abi_host_wasi(engine_host(e)), fd,
                                                       (uint64_t)off, whence, pos),
                     0);
    engine_read(e, pos, &p, 8);
    return p;
}

static void init_file_body(engine *e, void *arg) {
    const char *data = arg;
    abi_host *h = engine_host(e);
    uint32_t fd = Z_envZ___syscall_openat(h, AT_FDCWD_G, gstr(e, "/pglite/data/base/5/pg_internal.init"),
                                          0 /* O_RDONLY */, 0);
    assert_true((int32_t)fd >= 3);
    char b[5000];
    assert_int_equal(read_n(e, fd, 3, b), 3);
    assert_memory_equal(b, data, 3);
    assert_int_equal(read_n(e, fd, 10, b), 10);
    assert_memory_equal(b, data + 3, 10);
    assert_int_equal(seek(e, fd, 0, 1 /* SEEK_CUR */), 13);
    assert_int_equal(seek(e, fd, 4000, 0 /* SEEK_SET */), 4000);
    assert_int_equal(read_n(e, fd, 2000, b), 1000); /* to the end */
    assert_memory_equal(b, data + 4000, 1000);
    assert_int_equal(read_n(e, fd, 10, b), 0);
    assert_int_equal(seek(e, fd, -10, 2 /* SEEK_END */), 4990);
    assert_int_equal(read_n(e, fd, 10, b), 10);
    assert_memory_equal(b, data + 4990, 10);
    assert_int_equal(seek(e, fd, 0, 2), 5000);
    uint32_t pos = engine_malloc(e, 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(abi_host_wasi(h), fd, (uint64_t)-6000, 1, pos),
                     G_EINVAL);
    /* positioned reads do not move the position */
    uint32_t riov = one_iov(e, "..........", 10), rbuf = 0, nr = engine_malloc(e, 4);
    engine_read(e, riov, &rbuf, 4);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(abi_host_wasi(h), fd, riov, 1, 50, nr), 0);
    engine_read(e, rbuf, b, 10);
    assert_memory_equal(b, data + 50, 10);
    /* a dup shares the position, as dup(2)'s does */
    assert_int_equal(seek(e, fd, 100, 0), 100);
    uint32_t d = Z_envZ___syscall_dup(h, fd);
    assert_true((int32_t)d >= 3);
    assert_int_equal(read_n(e, d, 20, b), 20);
    assert_memory_equal(b, data + 100, 20);
    assert_int_equal(read_n(e, fd, 20, b), 20);
    assert_memory_equal(b, data + 120, 20);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(abi_host_wasi(h), d), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(abi_host_wasi(h), fd), 0);
}

static void test_init_file_read_whole(void **state) {
    (void)state;
    char *dir = fx_mkdtemp("initfile");
    char path[4300];
    snprintf(path, sizeof path, "%s/base", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/base/5", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/base/5/pg_internal.init", dir);
    static char data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + (i * 7 + i / 26) % 26);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, sizeof data, f), sizeof data);
    fclose(f);
    run_over_data(dir, init_file_body, data);
}

static void test_imports(void **state) {
    (void)state;
    cluster_tree t;
    char msg[512];
    assert_int_equal(cluster_tree_open(&t, NULL, msg, sizeof msg), 0);
    char runtime[4096], tmp[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    snprintf(tmp, sizeof tmp, "%s/tmp", t.scratch);
    engine_mount m[] = {{"/pglite", runtime, 0}, {"/tmp", tmp, 1}};
    engine *e = run_in_engine(m, body, NULL);
    assert_int_equal(abi_host_open_fds(engine_host(e)), 3); /* only stdio left */
    engine_free(e);
    cluster_tree_close(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_imports),
                                       cmocka_unit_test(test_control_file),
                                       cmocka_unit_test(test_init_file_read_whole)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
