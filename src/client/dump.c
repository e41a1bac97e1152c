/*
 * dump.c: pglite_dump, PostgreSQL 18's own pg_dump (pg_dump.wasm of
 * @electric-sql/pglite-tools, compiled like the backend) run in this
 * process against a session of the database.
 *
 * pg_dump's libpq talks through pglite's libc, whose connect() does
 * nothing and whose send()/recv() call two host callbacks: the host
 * connects the guest's socket() (abi_config.socket_open) to a server
 * session and moves the bytes. For a handle that session is one of its
 * own database's, served by a server on a Unix socket in a private
 * directory for the length of the dump; pglite_dump_server connects to
 * a running server (pglite-proxy) instead. pg_dump sees a PostgreSQL 18
 * server, as it does on a real one: the dump is one transaction of its
 * own, a consistent snapshot beside the other sessions.
 *
 * Output: -f/--file names a host file (or, with -Fd, a directory), whose
 * directory is the guest's /out; without it pg_dump writes to stdout,
 * which goes to the write callback. pg_dump's messages (stderr) are the
 * error message when it fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "cluster/cluster.h"
#include "engine/engine.h"

#define MAX_ARGS 256
#define ERR_MAX 4096

typedef struct dump_run {
    const char *unix_path;   /* the server's socket file, or */
    const char *tcp_host;    /* its TCP host and port */
    int tcp_port;
    int sock;                /* the connected socket (-1: none) */
    engine *e;
    int (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
    int out_rd;              /* read end of the guest's stdout */
    int stopped;             /* write asked to stop */
    int external;            /* a server of the caller's (pglite_dump_server) */
    int connect_errno;       /* why the last connection failed (0: it did not) */
    int plain;               /* the plain format: its output filtered (line_filter) */
    char err[ERR_MAX];
} dump_run;

/* ---- the guest's socket ------------------------------------------------ */

static int connect_unix(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(const char *host, int port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* abi_config.socket_open: the guest's socket() is a connection to the
 * server (the abi owns the fd: the guest's close() closes it). */
static int open_socket(void *ctx) {
    dump_run *d = ctx;
    errno = 0;
    int fd = d->unix_path ? connect_unix(d->unix_path) : connect_tcp(d->tcp_host, d->tcp_port);
    if (fd >= 0)
        d->sock = fd;
    else
        d->connect_errno = errno ? errno : ECONNREFUSED;
    return fd;
}

/* pgl_recv's callback (buf, len) -> bytes read, 0 at end of stream. */
static uint32_t sock_read(void *ctx, const uint32_t *a) {
    dump_run *d = ctx;
    wasm_rt_memory_t *m = engine_memory(d->e);
    uint8_t *p = abi_mem_ptr(m, a[0], a[1]);
    if (!p || d->sock < 0)
        return 0;
    for (;;) {
        ssize_t n = recv(d->sock, p, a[1], 0);
        if (n >= 0)
            return (uint32_t)n;
        if (errno != EINTR)
            return 0; /* libpq: the server closed the connection */
    }
}

/* pgl_send's callback (buf, len) -> bytes written, or -1. */
static uint32_t sock_write(void *ctx, const uint32_t *a) {
    dump_run *d = ctx;
    wasm_rt_memory_t *m = engine_memory(d->e);
    const uint8_t *p = abi_mem_ptr(m, a[0], a[1]);
    if (!p || d->sock < 0)
        return (uint32_t)-1;
    size_t done = 0;
    while (done < a[1]) {
        ssize_t n = send(d->sock, p + done, a[1] - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (uint32_t)-1;
        done += (size_t)n;
    }
    return a[1];
}

/* ---- output ---------------------------------------------------------------- */

/* PGlite's PostgreSQL keeps a column option of its own, pg_attver, on every
 * column it creates (set again when the column is made anew), and pg_dump
 * writes it out as "ALTER TABLE ONLY t ALTER COLUMN c SET (pg_attver=N);".
 * No other PostgreSQL accepts it (ERROR: unrecognized parameter), so a plain
 * dump meant as the way out would stop a psql -v ON_ERROR_STOP=1 restore on
 * a real server. The plain format's lines go through this filter: such a
 * line loses the option, and the whole line goes when it was the only one.
 * Nothing else is touched; archive formats are written as pg_dump writes
 * them (docs/dump.md). */
typedef struct line_filter {
    char line[4096];
    size_t n;
    int passing; /* the rest of this line goes through as it is */
    int (*out)(void *ctx, const void *data, size_t len);
    void *ctx;
} line_filter;

#define ATTVER_HEAD "ALTER TABLE ONLY "

/* A whole candidate line (with its newline): write it, or what is left. */
static int filter_line(line_filter *f, const char *l, size_t n) {
    const char *set = memmem(l, n, " SET (", 6);
    const char *opt = memmem(l, n, "pg_attver=", 10);
    if (!set || !opt || opt < set || n < 3 || memcmp(l + n - 3, ");\n", 3) != 0)
        return f->out(f->ctx, l, n);
    const char *v = opt + 10, *e = v;
    while (e < l + n && *e >= '0' && *e <= '9')
        e++;
    if (e == v)
        return f->out(f->ctx, l, n);
    const char *list = set + 6, *end = l + n - 3;
    if (opt == list && e == end)
        return 0; /* the only option: no line at all */
    char buf[sizeof f->line];
    size_t k = 0;
    if (opt == list && e + 2 <= end && e[0] == ',' && e[1] == ' ') { /* first of several */
        memcpy(buf, l, (size_t)(opt - l));
        k = (size_t)(opt - l);
        memcpy(buf + k, e + 2, (size_t)(l + n - (e + 2)));
        k += (size_t)(l + n - (e + 2));
    } else if (opt - 2 >= list && opt[-2] == ',' && opt[-1] == ' ') { /* a later one */
        memcpy(buf, l, (size_t)(opt - 2 - l));
        k = (size_t)(opt - 2 - l);
        memcpy(buf + k, e, (size_t)(l + n - e));
        k += (size_t)(l + n - e);
    } else {
        return f->out(f->ctx, l, n);
    }
    return f->out(f->ctx, buf, k);
}

static int filter_write(line_filter *f, const char *p, size_t n) {
    while (n) {
        if (f->passing) {
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p + 1) : n;
            if (f->out(f->ctx, p, k) != 0)
                return -1;
            if (nl)
                f->passing = 0;
            p += k;
            n -= k;
            continue;
        }
        /* At or inside the start of a line: keep it while it may be one. */
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p + 1) : n;
        size_t room = sizeof f->line - f->n;
        size_t take = k < room ? k : room;
        memcpy(f->line + f->n, p, take);
        f->n += take;
        size_t cmp = f->n < strlen(ATTVER_HEAD) ? f->n : strlen(ATTVER_HEAD);
        int candidate = memcmp(f->line, ATTVER_HEAD, cmp) == 0;
        p += take;
        n -= take;
        if (!candidate || (take == room && !(nl && take == k))) {
            /* not one (or longer than any): through as it is */
            if (f->out(f->ctx, f->line, f->n) != 0)
                return -1;
            f->passing = !(nl && take == k);
            f->n = 0;
        } else if (nl && take == k) {
            int r = filter_line(f, f->line, f->n);
            f->n = 0;
            if (r != 0)
                return -1;
        }
    }
    return 0;
}

static int filter_flush(line_filter *f) {
    int r = f->n ? f->out(f->ctx, f->line, f->n) : 0;
    f->n = 0;
    return r;
}

static int to_callback(void *ctx, const void *data, size_t len) {
    dump_run *d = ctx;
    if (d->stopped || !d->write)
        return 0;
    if (d->write(d->ctx, data, len) != 0)
        d->stopped = 1; /* drain the rest, so pg_dump never blocks */
    return 0;
}

static void *pump_stdout(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-dump");
    dump_run *d = arg;
    line_filter f = {.out = to_callback, .ctx = d};
    char buf[65536];
    for (;;) {
        ssize_t n = read(d->out_rd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (d->plain)
            filter_write(&f, buf, (size_t)n);
        else
            to_callback(d, buf, (size_t)n);
    }
    filter_flush(&f);
    return NULL;
}

static int to_fd(void *ctx, const void *data, size_t len) {
    int fd = *(int *)ctx;
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The same filter over a plain dump pg_dump wrote to a file: rewritten
 * beside it, then renamed over it. 0 or -1 with errno. */
static int filter_file(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.pglite-XXXXXX", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0) {
        close(in);
        return -1;
    }
    struct stat st;
    if (fstat(in, &st) == 0)
        fchmod(out, st.st_mode & 07777);
    line_filter f = {.out = to_fd, .ctx = &out};
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -1;
        if (n <= 0)
            break;
        if (filter_write(&f, buf, (size_t)n) != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && (filter_flush(&f) != 0 || fsync(out) != 0))
        rc = -1;
    int e = errno;
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = -1, e = errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1, e = errno;
    if (rc != 0)
        unlink(tmp);
    errno = e;
    return rc;
}

/* The last lines of what pg_dump wrote to stderr, without the trailing
 * newline. */
static void read_messages(int fd, char *out, size_t n) {
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)n - 1 ? size - ((off_t)n - 1) : 0;
    ssize_t r = pread(fd, out, n - 1, from);
    out[r > 0 ? r : 0] = '\0';
    size_t l = strlen(out);
    while (l && (out[l - 1] == '\n' || out[l - 1] == '\r'))
        out[--l] = '\0';
}

/* ---- arguments ----------------------------------------------------------------- */

/* -f FILE, -fFILE, --file FILE, --file=FILE: the value's index and where
 * it starts in that argument, or -1. */
static int file_arg(const char *const *args, int n, size_t *off) {
    for (int i = 0; i < n; i++) {
        const char *a = args[i];
        if (!strcmp(a, "--"))
            return -1;
        if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < n) {
            *off = 0;
            return i + 1;
        }
        if (!strncmp(a, "--file=", 7)) {
            *off = 7;
            return i;
        }
        if (!strncmp(a, "-f", 2) && a[2] && a[1] != '-') {
            *off = 2;
            return i;
        }
    }
    return -1;
}

/* Whether args ask for the plain format (pg_dump's default). */
static int plain_format(const char *const *args, int n) {
    const char *fmt = "p";
    for (int i = 0; i < n; i++) {
        const char *a = args[i];
        if (!strcmp(a, "--"))
            break;
        if ((!strcmp(a, "-F") || !strcmp(a, "--format")) && i + 1 < n)
            fmt = args[++i];
        else if (!strncmp(a, "--format=", 9))
            fmt = a + 9;
        else if (!strncmp(a, "-F", 2) && a[2])
            fmt = a + 2;
    }
    return !strcmp(fmt, "p") || !strcmp(fmt, "plain");
}

/* Run pg_dump with args against the server d names. 0 on exit status 0;
 * else -1 with d->err set (pg_dump's own messages when it ran). */
static int run_pg_dump(dump_run *d, const char *const *args, const char *user,
                       const char *dbname) {
    int n = 0;
    while (args && args[n]) {
        if (n >= MAX_ARGS - 8) {
            snprintf(d->err, sizeof d->err, "pg_dump: too many arguments");
            return -1;
        }
        n++;
    }
    const char *argv[MAX_ARGS];
    char *owned = NULL;
    int argc = 0;
    /* pg_dump looks for itself (find_my_exec) on PATH: the runtime tree. */
    argv[argc++] = "pg_dump";
    for (int i = 0; i < n; i++)
        argv[argc++] = args[i];

    /* -f: its directory is the guest's /out. */
    char host_dir[PATH_MAX] = "";
    char tree[PATH_MAX];
    snprintf(tree, sizeof tree, "%s/pglite", cluster_runtime_tree());
    abi_mount mounts[2] = {{"/pglite", tree, 0}};
    size_t nmounts = 1;
    size_t off = 0;
    int fi = file_arg(args, n, &off);
    if (fi >= 0 && !strcmp(args[fi] + off, "-"))
        fi = -1; /* pg_dump's own name for stdout */
    if (fi >= 0) {
        const char *file = args[fi] + off;
        char *c1 = strdup(file), *c2 = strdup(file);
        if (!c1 || !c2) {
            free(c1);
            free(c2);
            snprintf(d->err, sizeof d->err, "out of memory");
            return -1;
        }
        const char *dir = dirname(c1), *base = basename(c2);
        int found = realpath(dir, host_dir) != NULL;
        int e = errno;
        if (!found || !*base || !strcmp(base, "/") || !strcmp(base, ".") ||
            !strcmp(base, "..")) {
            snprintf(d->err, sizeof d->err, "pg_dump: could not open output file \"%s\": %s",
                     file, !found ? strerror(e) : "not a file name");
            free(c1);
            free(c2);
            return -1;
        }
        size_t ol = off + strlen("/out/") + strlen(base) + 1;
        owned = malloc(ol);
        if (!owned) {
            free(c1);
            free(c2);
            snprintf(d->err, sizeof d->err, "out of memory");
            return -1;
        }
        snprintf(owned, ol, "%.*s/out/%s", (int)off, args[fi], base);
        argv[1 + fi] = owned;
        mounts[1] = (abi_mount){"/out", host_dir, 1};
        nmounts = 2;
        free(c1);
        free(c2);
    }
    argv[argc] = NULL;
    d->plain = plain_format(args, n);

    int outp[2] = {-1, -1};
    int errfd = memfd_create("pg_dump-stderr", MFD_CLOEXEC);
    if (errfd < 0 || pipe2(outp, O_CLOEXEC) != 0) {
        snprintf(d->err, sizeof d->err, "pg_dump: %s", strerror(errno));
        if (errfd >= 0)
            close(errfd);
        free(owned);
        return -1;
    }
    char env_user[300], env_db[600];
    snprintf(env_user, sizeof env_user, "PGUSER=%s", user ? user : "postgres");
    snprintf(env_db, sizeof env_db, "PGDATABASE=%s", dbname ? dbname : "postgres");
    /* A server's password comes from the caller's PGPASSWORD. */
    const char *pw = d->tcp_host || d->external ? getenv("PGPASSWORD") : NULL;
    char *env_pw = NULL;
    if (pw && asprintf(&env_pw, "PGPASSWORD=%s", pw) < 0)
        env_pw = NULL;
    const char *env[] = {"HOME=/home/postgres", "USER=postgres", "LOGNAME=postgres",
                         "PATH=/pglite/bin", "PGHOST=localhost", "PGSSLMODE=disable", env_user, env_db,
                         env_pw, NULL};
    engine_config cfg = {
        .mounts = mounts,
        .nmounts = nmounts,
        .devices = 1,
        .cwd = "/",
        .env = env,
        .stdin_fd = -1,
        .stdout_fd = outp[1],
        .stderr_fd = errfd,
        .socket_open = open_socket,
        .socket_ctx = d,
    };
    char why[512];
    d->sock = -1;
    d->e = engine_new(ENGINE_PGDUMP, &cfg, why, sizeof why);
    free(env_pw);
    close(outp[1]); /* the guest has its own dup */
    if (!d->e) {
        snprintf(d->err, sizeof d->err, "pg_dump: %s", why);
        close(outp[0]);
        close(errfd);
        free(owned);
        return -1;
    }
    d->out_rd = outp[0];
    pthread_t pump;
    int have_pump = pthread_create(&pump, NULL, pump_stdout, d) == 0;
    engine_result r;
    uint32_t cbs[2] = {engine_add_callback(d->e, 2, 1, sock_read, d),
                       engine_add_callback(d->e, 2, 1, sock_write, d)};
    int rc = -1;
    if (!have_pump || !cbs[0] || !cbs[1] ||
        engine_call(d->e, "pgl_set_rw_cbs", cbs, 2, &r) != ENGINE_OK) {
        snprintf(d->err, sizeof d->err, "pg_dump: cannot set up its connection");
    } else {
        engine_main(d->e, argc, argv, &r);
        if (r.status == ENGINE_EXITED && r.exit_code == 0) {
            rc = 0;
            if (fi >= 0 && d->plain) {
                char hp[PATH_MAX * 2];
                snprintf(hp, sizeof hp, "%s/%s", host_dir, strrchr(argv[1 + fi], '/') + 1);
                if (filter_file(hp) != 0) {
                    snprintf(d->err, sizeof d->err, "pg_dump: could not rewrite \"%.2000s\": %s", hp,
                             strerror(errno));
                    rc = -1;
                }
            }
        } else {
            read_messages(errfd, d->err, sizeof d->err);
            if (!*d->err)
                snprintf(d->err, sizeof d->err, "pg_dump: %s", r.message);
            /* libpq never saw the connection fail (its connect() is the
             * host's): say where it could not go. */
            size_t l = strlen(d->err);
            if (d->connect_errno && l + 200 < sizeof d->err) {
                char where[300];
                if (d->unix_path)
                    snprintf(where, sizeof where, "socket \"%.250s\"", d->unix_path);
                else
                    snprintf(where, sizeof where, "\"%.200s\", port %d", d->tcp_host,
                             d->tcp_port);
                snprintf(d->err + l, sizeof d->err - l, "%scould not connect to the server at %s: %s",
                         l && d->err[l - 1] != ' ' ? "\n" : "", where,
                         strerror(d->connect_errno));
            }
        }
    }
    engine_free(d->e); /* closes the guest's stdout: the pump ends */
    d->e = NULL;
    if (have_pump)
        pthread_join(pump, NULL);
    close(outp[0]);
    close(errfd);
    free(owned);
    if (rc == 0 && d->stopped) {
        snprintf(d->err, sizeof d->err, "pg_dump: output stopped by the write callback");
        rc = -1;
    }
    return rc;
}

/* ---- public ----------------------------------------------------------------------- */

int pglite_dump(pglite *db, const char *const *args,
                int (*write)(void *ctx, const void *data, size_t len), void *ctx) {
    if (client_enter(db) != PGLITE_OK)
        return PGLITE_MISUSE;
    if (db->depth > 1) {
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_dump called from a callback");
        return client_leave(db, PGLITE_MISUSE);
    }
    char dbname[256], user[256];
    int rc = client_identity(db, dbname, user);
    if (rc != PGLITE_OK)
        return client_leave(db, rc);
    client_leave(db, PGLITE_OK);

    /* A server on a private socket for this dump's session: the directory
     * is the caller's alone (0700), so trust is as safe as the handle. */
    char dir[] = "/tmp/pglite-dump-XXXXXX";
    if (!mkdtemp(dir)) {
        client_enter(db);
        client_fail(db, PGLITE_IOERR, NULL, "pglite_dump: cannot make a socket directory: %s",
                    strerror(errno));
        return client_leave(db, PGLITE_IOERR);
    }
    pglite_server_options so;
    pglite_server_options_init(&so);
    so.unix_socket = dir;
    pglite_server *srv = NULL;
    rc = pglite_server_start(db, &so, &srv);
    if (rc != PGLITE_OK) {
        rmdir(dir);
        return rc; /* its error is on db */
    }
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/.s.PGSQL.5432", dir);
    dump_run *d = calloc(1, sizeof *d);
    if (!d) {
        pglite_server_stop(srv);
        rmdir(dir);
        client_enter(db);
        client_fail(db, PGLITE_NOMEM, NULL, "out of memory");
        return client_leave(db, PGLITE_NOMEM);
    }
    d->unix_path = path;
    d->write = write;
    d->ctx = ctx;
    int ok = run_pg_dump(d, args, user, dbname);
    pglite_server_stop(srv);
    rmdir(dir);
    client_enter(db);
    if (ok != 0)
        rc = client_fail(db, PGLITE_ERROR, NULL, "%s", d->err);
    else
        rc = client_set_error(db, NULL);
    free(d);
    return client_leave(db, rc);
}

int pglite_dump_server(const char *host, int port, const char *const *args,
                       int (*write)(void *ctx, const void *data, size_t len), void *ctx) {
    if (port <= 0)
        port = 5432;
    if (port > 65535) {
        client_set_open_error(errobj_lib(PGLITE_MISUSE, NULL, "pglite_dump_server: bad port %d",
                                         port));
        return PGLITE_MISUSE;
    }
    if (!host || !*host)
        host = "/tmp";
    dump_run *d = calloc(1, sizeof *d);
    char path[PATH_MAX];
    if (!d) {
        client_set_open_error(errobj_lib(PGLITE_NOMEM, NULL, "out of memory"));
        return PGLITE_NOMEM;
    }
    if (host[0] == '/') { /* a socket directory, as libpq takes it, or the file */
        struct stat st;
        if (stat(host, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(path, sizeof path, "%s/.s.PGSQL.%d", host, port);
        else
            snprintf(path, sizeof path, "%s", host);
        d->unix_path = path;
    } else {
        d->tcp_host = host;
        d->tcp_port = port;
    }
    d->external = 1;
    d->write = write;
    d->ctx = ctx;
    /* The role and database are pg_dump's: -U/-d, PGUSER/PGDATABASE. */
    const char *user = getenv("PGUSER"), *dbname = getenv("PGDATABASE");
    int rc = run_pg_dump(d, args, user, dbname) == 0 ? PGLITE_OK : PGLITE_ERROR;
    client_set_open_error(rc == PGLITE_OK ? NULL : errobj_lib(rc, NULL, "%s", d->err));
    free(d);
    return rc;
}
