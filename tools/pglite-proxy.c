/* pglite-proxy: serve an embedded PostgreSQL to any PostgreSQL client
 * over a Unix socket and/or TCP.
 *
 *   pglite-proxy --root data/mydb                # persistent, /tmp/.s.PGSQL.5432
 *   pglite-proxy --temporary --tcp 127.0.0.1:0   # throw-away, any free port
 *
 * One client session at a time; others wait their turn. SIGINT/SIGTERM
 * stop it cleanly: no new clients, the current session rolled back, the
 * database shut down with a checkpoint, the socket file removed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "server/server.h"

#ifndef PGLITE_C_VERSION
#define PGLITE_C_VERSION "0.1.0"
#endif

static server_log_level g_level = SERVER_LOG_INFO;

static void logf_(server_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_line(void *ctx, server_log_level level, const char *line) {
    (void)ctx;
    static const char *names[] = {"", "ERROR", "WARNING", "LOG", "DEBUG"};
    char ts[32];
    struct timespec t;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &t);
    localtime_r(&t.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld pglite-proxy %s: %s\n", ts, t.tv_nsec / 1000000L,
            names[level >= 1 && level <= 4 ? level : 4], line);
}

static void logf_(server_log_level level, const char *fmt, ...) {
    if (level > g_level)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_line(NULL, level, line);
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: pglite-proxy [OPTION]...\n"
        "Serve an embedded PostgreSQL 18 to PostgreSQL clients (psql, libpq, drivers).\n"
        "\n"
        "Database:\n"
        "  -D, --root DIR                 persistent data directory (created when missing)\n"
        "  -t, --temporary                a temporary database, removed at exit\n"
        "                                 (the default without --root)\n"
        "  -c, --postgres-config NAME=VALUE\n"
        "                                 a PostgreSQL setting (repeatable)\n"
        "      --relaxed-durability       fsync and synchronous_commit off (faster, may\n"
        "                                 lose recent commits on a crash)\n"
        "Listening:\n"
        "      --tcp HOST:PORT            listen on TCP; PORT 0 picks a free port. Use\n"
        "                                 0.0.0.0 or :: to listen beyond this machine\n"
        "      --unix PATH                Unix socket file, or a directory for\n"
        "                                 DIR/.s.PGSQL.PORT (default /tmp)\n"
        "      --no-unix                  no Unix socket (needs --tcp)\n"
        "Clients:\n"
        "  -U, --username NAME            the role clients log in as (default postgres;\n"
        "                                 created when missing)\n"
        "  -d, --database NAME            the database (default postgres; created when\n"
        "                                 missing)\n"
        "      --password PASSWORD        require this password (default: trust)\n"
        "      --auth-method METHOD       with a password: scram-sha-256 (default), md5,\n"
        "                                 password\n"
        "      --max-waiting N            clients that may queue for the database (32)\n"
        "      --wait-timeout SECONDS     how long a queued client waits (30)\n"
        "      --startup-timeout SECONDS  time to send the startup packet and the\n"
        "                                 password (10)\n"
        "Other:\n"
        "      --log-level LEVEL          error, warning, info (default), debug\n"
        "  -h, --help                     this help\n"
        "  -V, --version                  the version\n");
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static int mkdir_p(const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return -1;
    for (char *p = copy + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
                free(copy);
                return -1;
            }
            *p = '/';
        }
    }
    int rc = mkdir(copy, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(copy);
    return rc;
}

/* 1 if path holds nothing but our lock file, 0 if it holds more, -1. */
static int dir_is_empty(const char *path) {
    int n = 0;
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "pglite.lock") &&
            strcmp(e->d_name, ".pglite-new"))
            n++;
    closedir(d);
    return n == 0;
}

/* Lock DIR/pglite.lock (an open-file-description lock, as the cluster
 * layer takes it) so that two servers never share a data directory. */
static int lock_dir(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/pglite.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "pglite-proxy: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
        pid[r > 0 ? r : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fprintf(stderr, "pglite-proxy: data directory %s is in use by process %s\n", dir,
                *pid ? pid : "?");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        fprintf(stderr, "pglite-proxy: warning: cannot write %s\n", path);
    return fd;
}

/* Make (if needed) and lock the data directory. Returns its absolute path
 * or NULL. */
static char *prepare_root(const char *root, int *lock_fd) {
    struct stat st;
    if (stat(root, &st) != 0) {
        if (errno != ENOENT || mkdir_p(root) != 0) {
            fprintf(stderr, "pglite-proxy: cannot create %s: %s\n", root, strerror(errno));
            return NULL;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "pglite-proxy: %s is not a directory\n", root);
        return NULL;
    }
    char *abs = realpath(root, NULL);
    if (!abs) {
        fprintf(stderr, "pglite-proxy: %s: %s\n", root, strerror(errno));
        return NULL;
    }
    if (chmod(abs, 0700) != 0) { /* PostgreSQL wants it private */
        fprintf(stderr, "pglite-proxy: cannot chmod %s: %s\n", abs, strerror(errno));
        free(abs);
        return NULL;
    }
    *lock_fd = lock_dir(abs);
    if (*lock_fd < 0) {
        free(abs);
        return NULL;
    }
    char pv[PATH_MAX];
    snprintf(pv, sizeof pv, "%s/PG_VERSION", abs);
    if (access(pv, F_OK) == 0)
        return abs;
    if (dir_is_empty(abs) != 1) {
        fprintf(stderr, "pglite-proxy: %s is neither empty nor a PostgreSQL data directory\n", abs);
        free(abs);
        return NULL;
    }
    /* initdb wants an empty directory (ours holds the lock): make the
     * cluster beside it, then move it in, PG_VERSION last, so that an
     * interrupted creation is redone next time. */
    logf_(SERVER_LOG_INFO, "creating a database cluster in %s", abs);
    static char msg[16384];
    msg[0] = 0;
    errno = 0;
    char fresh[PATH_MAX];
    snprintf(fresh, sizeof fresh, "%s/.pglite-new", abs);
    nftw(fresh, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(fresh, 0700) != 0 || cluster_initdb(fresh, NULL, msg, sizeof msg) != 0) {
        fprintf(stderr, "pglite-proxy: initdb failed: %s\n", errno && !*msg ? strerror(errno) : msg);
        nftw(fresh, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        free(abs);
        return NULL;
    }
    DIR *d = opendir(fresh);
    struct dirent *e;
    int bad = !d;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "PG_VERSION"))
            continue;
        char from[2 * PATH_MAX], to[2 * PATH_MAX];
        snprintf(from, sizeof from, "%s/%s", fresh, e->d_name);
        snprintf(to, sizeof to, "%s/%s", abs, e->d_name);
        bad |= rename(from, to) != 0;
    }
    if (d)
        closedir(d);
    char from[2 * PATH_MAX];
    snprintf(from, sizeof from, "%s/PG_VERSION", fresh);
    if (bad || rename(from, pv) != 0 || rmdir(fresh) != 0) {
        fprintf(stderr, "pglite-proxy: cannot move the new cluster into %s: %s\n", abs, strerror(errno));
        free(abs);
        return NULL;
    }
    return abs;
}

static int parse_hostport(const char *arg, char **host, int *port) {
    const char *colon = strrchr(arg, ':');
    if (!colon || !colon[1])
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    const char *h = arg;
    size_t hl = (size_t)(colon - arg);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [::1]:5432 */
        h++;
        hl -= 2;
    }
    *host = strndup(h, hl);
    *port = (int)p;
    return *host ? 0 : -1;
}

int main(int argc, char **argv) {
    enum { O_TCP = 256, O_UNIX, O_NO_UNIX, O_PASSWORD, O_AUTH, O_RELAXED, O_LOG, O_MAXWAIT, O_WAIT,
           O_STARTUP };
    static const struct option longopts[] = {
        {"root", required_argument, NULL, 'D'},
        {"temporary", no_argument, NULL, 't'},
        {"postgres-config", required_argument, NULL, 'c'},
        {"relaxed-durability", no_argument, NULL, O_RELAXED},
        {"tcp", required_argument, NULL, O_TCP},
        {"unix", required_argument, NULL, O_UNIX},
        {"no-unix", no_argument, NULL, O_NO_UNIX},
        {"username", required_argument, NULL, 'U'},
        {"database", required_argument, NULL, 'd'},
        {"password", required_argument, NULL, O_PASSWORD},
        {"auth-method", required_argument, NULL, O_AUTH},
        {"max-waiting", required_argument, NULL, O_MAXWAIT},
        {"wait-timeout", required_argument, NULL, O_WAIT},
        {"startup-timeout", required_argument, NULL, O_STARTUP},
        {"log-level", required_argument, NULL, O_LOG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *root = NULL, *unix_path = "/tmp", *user = "postgres", *database = "postgres";
    const char *password = NULL, *auth = NULL;
    char *tcp_host = NULL;
    int tcp_port = 0, temporary = 0, relaxed = 0, no_unix = 0, max_waiting = 0, wait_s = 0;
    int startup_s = 0;
    const char **gucs = calloc((size_t)argc + 1, sizeof *gucs);
    size_t ng = 0;
    int c;
    while ((c = getopt_long(argc, argv, "D:tc:U:d:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'D': root = optarg; break;
        case 't': temporary = 1; break;
        case 'c':
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                fprintf(stderr, "pglite-proxy: --postgres-config wants NAME=VALUE, not \"%s\"\n", optarg);
                return 2;
            }
            gucs[ng++] = optarg;
            break;
        case O_RELAXED: relaxed = 1; break;
        case O_TCP:
            free(tcp_host);
            if (parse_hostport(optarg, &tcp_host, &tcp_port) != 0) {
                fprintf(stderr, "pglite-proxy: --tcp wants HOST:PORT, not \"%s\"\n", optarg);
                return 2;
            }
            break;
        case O_UNIX: unix_path = optarg; no_unix = 0; break;
        case O_NO_UNIX: no_unix = 1; break;
        case 'U': user = optarg; break;
        case 'd': database = optarg; break;
        case O_PASSWORD: password = optarg; break;
        case O_AUTH: auth = optarg; break;
        case O_MAXWAIT: max_waiting = atoi(optarg); break;
        case O_WAIT: wait_s = atoi(optarg); break;
        case O_STARTUP: startup_s = atoi(optarg); break;
        case O_LOG:
            if (!strcmp(optarg, "error")) g_level = SERVER_LOG_ERROR;
            else if (!strcmp(optarg, "warning")) g_level = SERVER_LOG_WARNING;
            else if (!strcmp(optarg, "info")) g_level = SERVER_LOG_INFO;
            else if (!strcmp(optarg, "debug")) g_level = SERVER_LOG_DEBUG;
            else {
                fprintf(stderr, "pglite-proxy: --log-level is error, warning, info or debug\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("pglite-proxy (pglite-c) %s, PostgreSQL 18.6\n", PGLITE_C_VERSION);
            return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pglite-proxy: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (root && temporary) {
        fprintf(stderr, "pglite-proxy: --root and --temporary exclude each other\n");
        return 2;
    }
    if (no_unix && !tcp_host) {
        fprintf(stderr, "pglite-proxy: --no-unix needs --tcp\n");
        return 2;
    }
    if (password && !*password)
        password = NULL;

    /* Signals: handled by sigwait in this thread only (the server's
     * threads inherit the mask); a vanished client must not kill us. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lock_fd = -1;
    char *data = NULL, *tmp = NULL;
    if (root) {
        data = prepare_root(root, &lock_fd);
        if (!data)
            return 1;
    } else {
        const char *base = getenv("TMPDIR");
        if (asprintf(&tmp, "%s/pglite-proxy-XXXXXX", base && *base ? base : "/tmp") < 0 ||
            !mkdtemp(tmp)) {
            fprintf(stderr, "pglite-proxy: cannot make a temporary directory: %s\n", strerror(errno));
            return 1;
        }
        data = prepare_root(tmp, &lock_fd);
        if (!data) {
            nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
            return 1;
        }
    }
    server_options o = {
        .data_dir = data,
        .user = user,
        .database = database,
        .gucs = gucs,
        .relaxed_durability = relaxed,
        .unix_path = no_unix ? NULL : unix_path,
        .tcp_host = tcp_host,
        .tcp_port = tcp_port,
        .password = password,
        .auth_method = auth,
        .max_waiting = max_waiting,
        .wait_timeout_ms = wait_s > 0 ? wait_s * 1000 : 0,
        .startup_timeout_ms = startup_s > 0 ? startup_s * 1000 : 0,
        .log_level = g_level,
        .log = log_line,
    };
    server *s = NULL;
    char err[2048];
    int rc = 0;
    if (server_start(&o, &s, err, sizeof err) != 0) {
        fprintf(stderr, "pglite-proxy: %s\n", err);
        rc = 1;
    } else {
        const char *uri = server_uri(s);
        printf("pglite-proxy: serving database \"%s\" (%s%s)\n", database,
               tmp ? "temporary, " : "", tmp ? "removed at exit" : data);
        if (server_tcp_port(s) > 0)
            printf("  tcp:  %s:%d\n", tcp_host && *tcp_host ? tcp_host : "*", server_tcp_port(s));
        if (server_unix_path(s))
            printf("  unix: %s\n", server_unix_path(s));
        printf("  uri:  %s\n", uri);
        printf("  psql: psql '%s'\n", uri);
        fflush(stdout);
        int sig = 0;
        while (sigwait(&set, &sig) != 0 || sig == SIGHUP)
            ; /* SIGHUP: nothing to reload */
        logf_(SERVER_LOG_INFO, "received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        server_stop(s);
        logf_(SERVER_LOG_INFO, "database closed");
    }
    if (lock_fd >= 0)
        close(lock_fd);
    if (tmp)
        nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(tmp);
    free(data);
    free(tcp_host);
    free(gucs);
    return rc;
}
