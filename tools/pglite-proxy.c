/* pglite-proxy: serve an embedded PostgreSQL to any PostgreSQL client
 * over a Unix socket and/or TCP.
 *
 *   pglite-proxy --root data/mydb                # persistent, /tmp/.s.PGSQL.5432
 *   pglite-proxy --temporary --tcp 127.0.0.1:0   # throw-away, any free port
 *
 * Every client gets a PostgreSQL session of its own, up to
 * max_connections. SIGINT/SIGTERM stop it cleanly: no new clients, the
 * sessions rolled back and ended, the database shut down with a
 * checkpoint, the socket file removed. */
#define _GNU_SOURCE
#include <errno.h>
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
#include "pglite.h"
#include "runtime_version.h"
#include "server/server.h"

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
        "      --tcp HOST:PORT            listen on TCP; PORT 0 picks a free port, an\n"
        "                                 empty HOST is 127.0.0.1. Other than loopback\n"
        "                                 (0.0.0.0, ::) needs --password or --trust-remote\n"
        "      --unix PATH                Unix socket file, or a directory for\n"
        "                                 DIR/.s.PGSQL.PORT (default /tmp)\n"
        "      --no-unix                  no Unix socket (needs --tcp)\n"
        "      --ssl-cert FILE, --ssl-key FILE\n"
        "                                 TLS on TCP with this PEM certificate and key\n"
        "                                 (SSLRequest answered S; direct SSL with ALPN)\n"
        "      --ssl-self-signed          TLS with DIR/server.crt and DIR/server.key of the\n"
        "                                 --root data directory, made as a self-signed pair\n"
        "                                 for localhost when missing (clients verify with\n"
        "                                 sslrootcert=DIR/server.crt)\n"
        "Clients:\n"
        "  -U, --username NAME            the role of the URI (default postgres;\n"
        "                                 created when missing)\n"
        "  -d, --database NAME            the database (default postgres; created when\n"
        "                                 missing)\n"
        "      --password PASSWORD        require passwords (default: trust): each role's\n"
        "                                 own; this one becomes --username's\n"
        "      --auth-method METHOD       with a password: scram-sha-256 (default), md5,\n"
        "                                 password\n"
        "      --trust-remote             allow --tcp on a non-loopback address without a\n"
        "                                 password (anyone reaching it is a superuser)\n"
        "      --startup-timeout SECONDS  time to send the startup packet and the\n"
        "                                 password (10)\n"
        "Other:\n"
        "      --log-level LEVEL          error, warning, info (default), debug\n"
        "  -h, --help                     this help\n"
        "  -V, --version                  the version\n");
}

typedef struct args {
    const char *root, *unix_path, *user, *database, *password, *auth, *ssl_cert, *ssl_key;
    char tcp_buf[256];
    const char *tcp_host; /* tcp_buf with --tcp, else NULL */
    int trust_remote, ssl_self_signed;
    int tcp_port, temporary, relaxed, no_unix, startup_s;
    const char **gucs; /* NULL-terminated */
} args;

/* Parse the command line into a: -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, args *a) {
    enum { O_TCP = 256, O_UNIX, O_NO_UNIX, O_PASSWORD, O_AUTH, O_RELAXED, O_LOG,
           O_STARTUP, O_TRUST_REMOTE, O_SSL_CERT, O_SSL_KEY, O_SSL_SELF };
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
        {"trust-remote", no_argument, NULL, O_TRUST_REMOTE},
        {"ssl-cert", required_argument, NULL, O_SSL_CERT},
        {"ssl-key", required_argument, NULL, O_SSL_KEY},
        {"ssl-self-signed", no_argument, NULL, O_SSL_SELF},
        {"startup-timeout", required_argument, NULL, O_STARTUP},
        {"log-level", required_argument, NULL, O_LOG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *a = (args){.unix_path = "/tmp", .user = "postgres", .database = "postgres"};
    a->gucs = calloc((size_t)argc + 1, sizeof *a->gucs);
    if (!a->gucs)
        return 1;
    size_t ng = 0;
    int c;
    while ((c = getopt_long(argc, argv, "D:tc:U:d:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'D': a->root = optarg; break;
        case 't': a->temporary = 1; break;
        case 'c':
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                fprintf(stderr, "pglite-proxy: --postgres-config wants NAME=VALUE, not \"%s\"\n", optarg);
                return 2;
            }
            a->gucs[ng++] = optarg;
            break;
        case O_RELAXED: a->relaxed = 1; break;
        case O_TCP: {
            char why[300];
            if (server_parse_hostport(optarg, a->tcp_buf, sizeof a->tcp_buf, &a->tcp_port, why,
                                      sizeof why) != 0) {
                fprintf(stderr, "pglite-proxy: --tcp: %s\n", why);
                return 2;
            }
            a->tcp_host = a->tcp_buf;
            break;
        }
        case O_TRUST_REMOTE: a->trust_remote = 1; break;
        case O_SSL_CERT: a->ssl_cert = optarg; break;
        case O_SSL_KEY: a->ssl_key = optarg; break;
        case O_SSL_SELF: a->ssl_self_signed = 1; break;
        case O_UNIX: a->unix_path = optarg; a->no_unix = 0; break;
        case O_NO_UNIX: a->no_unix = 1; break;
        case 'U': a->user = optarg; break;
        case 'd': a->database = optarg; break;
        case O_PASSWORD: a->password = optarg; break;
        case O_AUTH: a->auth = optarg; break;
        case O_STARTUP: a->startup_s = atoi(optarg); break;
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
            printf("pglite-proxy (pglite-c) %s, PostgreSQL %s (PGlite %s)\n", pglite_version(),
                   PGLITE_PG_VERSION, PGLITE_RUNTIME_VERSION);
            return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pglite-proxy: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (a->root && a->temporary) {
        fprintf(stderr, "pglite-proxy: --root and --temporary exclude each other\n");
        return 2;
    }
    if (a->no_unix && !a->tcp_host) {
        fprintf(stderr, "pglite-proxy: --no-unix needs --tcp\n");
        return 2;
    }
    if (!a->ssl_cert != !a->ssl_key) {
        fprintf(stderr, "pglite-proxy: --ssl-cert and --ssl-key go together\n");
        return 2;
    }
    if (a->ssl_self_signed && (a->ssl_cert || !a->root)) {
        fprintf(stderr, "pglite-proxy: --ssl-self-signed keeps its pair in the --root data "
                        "directory, instead of --ssl-cert/--ssl-key\n");
        return 2;
    }
    if (a->password && !*a->password)
        a->password = NULL;
    return -1;
}

int main(int argc, char **argv) {
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        free(a.gucs);
        return rc;
    }

    /* Signals: handled by sigwait in this thread only (the server's
     * threads inherit the mask); a vanished client must not kill us. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The data directory: made from the template when missing, locked
     * against a second server, or a temporary copy removed at exit. */
    cluster_options co = {.path = a.root};
    cluster *cl = NULL;
    char err[2048];
    char *data = NULL;
    server *s = NULL;
    rc = 1;
    if (cluster_open(&co, &cl, err, sizeof err) != 0) {
        fprintf(stderr, "pglite-proxy: %s\n", err);
        goto done;
    }
    data = realpath(cluster_data_dir(cl), NULL);
    if (!data) {
        fprintf(stderr, "pglite-proxy: %s: %s\n", cluster_data_dir(cl), strerror(errno));
        goto done;
    }
    char cert[4200], key[4200];
    if (a.ssl_self_signed) {
        if (server_self_signed_pair(data, cert, key, sizeof cert, err, sizeof err) != 0) {
            fprintf(stderr, "pglite-proxy: %s\n", err);
            goto done;
        }
        a.ssl_cert = cert;
        a.ssl_key = key;
    }
    server_options o = {
        .data_dir = data,
        .user = a.user,
        .database = a.database,
        .gucs = a.gucs,
        .relaxed_durability = a.relaxed,
        .unix_path = a.no_unix ? NULL : a.unix_path,
        .tcp_host = a.tcp_host,
        .tcp_port = a.tcp_port,
        .password = a.password,
        .auth_method = a.auth,
        .trust_remote = a.trust_remote,
        .ssl_cert = a.ssl_cert,
        .ssl_key = a.ssl_key,
        .startup_timeout_ms = a.startup_s > 0 ? a.startup_s * 1000 : 0,
        .log_level = g_level,
        .log = log_line,
    };
    if (server_start(&o, &s, err, sizeof err) != 0) {
        fprintf(stderr, "pglite-proxy: %s\n", err);
        goto done;
    }
    const char *uri = server_uri(s);
    printf("pglite-proxy: serving database \"%s\" (%s%s)\n", a.database,
           a.root ? "" : "temporary, removed at exit: ", data);
    if (server_tcp_port(s) > 0)
        printf("  tcp:  %s:%d\n", a.tcp_host && *a.tcp_host ? a.tcp_host : "*", server_tcp_port(s));
    if (server_unix_path(s))
        printf("  unix: %s\n", server_unix_path(s));
    if (a.ssl_cert)
        printf("  tls:  %s (clients: sslmode=verify-full sslrootcert=%s)\n", a.ssl_cert,
               a.ssl_self_signed ? a.ssl_cert : "YOUR_CA");
    printf("  uri:  %s\n", uri);
    printf("  psql: psql '%s'\n", uri);
    fflush(stdout);
    int sig = 0;
    while (sigwait(&set, &sig) != 0 || sig == SIGHUP)
        ; /* SIGHUP: nothing to reload */
    logf_(SERVER_LOG_INFO, "received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(s);
    logf_(SERVER_LOG_INFO, "database closed");
    rc = 0;
done:
    cluster_close(cl); /* unlocks; removes a temporary database */
    free(data);
    free(a.gucs);
    return rc;
}
