/* The server: start and stop, options, the URI and logging. The listener
 * (listener.c) accepts clients and runs them through the front door
 * (frontdoor.c); the session thread (session.c) serves them one at a
 * time. */
#define _GNU_SOURCE
#include "server/server_internal.h"
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------------- */

int64_t srv_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static const char *level_name(server_log_level l) {
    switch (l) {
    case SERVER_LOG_ERROR: return "ERROR";
    case SERVER_LOG_WARNING: return "WARNING";
    case SERVER_LOG_INFO: return "LOG";
    default: return "DEBUG";
    }
}

void srv_vlog(server *s, server_log_level level, const char *fmt, va_list ap) {
    if (level > s->log_level)
        return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    if (s->log) {
        s->log(s->log_ctx, level, line);
        return;
    }
    fprintf(stderr, "pglite-server: %s: %s\n", level_name(level), line);
}

void srv_log(server *s, server_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    srv_vlog(s, level, fmt, ap);
    va_end(ap);
}


void srv_block_sigpipe(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* The front door's log lines go where the server's go. */
static void front_log(void *ctx, server_log_level level, const char *fmt, va_list ap) {
    srv_vlog(ctx, level, fmt, ap);
}

static void uri_escape(const char *in, char *out, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *in && k + 4 < n; in++) {
        unsigned char ch = (unsigned char)*in;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/", ch)) {
            out[k++] = (char)ch;
        } else {
            out[k++] = '%';
            out[k++] = hex[ch >> 4];
            out[k++] = hex[ch & 15];
        }
    }
    out[k] = 0;
}

static void make_uri(server *s, const char *tcp_host) {
    char user[256], db[256];
    uri_escape(s->user, user, sizeof user);
    uri_escape(s->database, db, sizeof db);
    if (s->tcp_port > 0) {
        const char *h = tcp_host && *tcp_host ? tcp_host : SERVER_LOOPBACK_HOST;
        if (!strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "127.0.0.1") || !strcmp(h, "::1"))
            h = strcmp(h, "::1") ? (strcmp(h, "127.0.0.1") ? "localhost" : "127.0.0.1") : "[::1]";
        char hb[300];
        if (strchr(h, ':') && h[0] != '[')
            snprintf(hb, sizeof hb, "[%s]", h);
        else
            snprintf(hb, sizeof hb, "%s", h);
        snprintf(s->uri, sizeof s->uri, "postgresql://%s@%s:%d/%s?sslmode=%s", user, hb,
                 s->tcp_port, db, s->tls ? "require" : "disable");
        return;
    }
    /* libpq finds <dir>/.s.PGSQL.<port> */
    char dir[sizeof s->unix_path], hdir[400];
    snprintf(dir, sizeof dir, "%s", s->unix_path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    int port = 5432;
    if (strncmp(base, ".s.PGSQL.", 9) == 0)
        port = atoi(base + 9);
    if (slash)
        *slash = 0;
    uri_escape(slash ? (*dir ? dir : "/") : ".", hdir, sizeof hdir);
    if (port == 5432)
        snprintf(s->uri, sizeof s->uri, "postgresql://%s@/%s?host=%s", user, db, hdir);
    else
        snprintf(s->uri, sizeof s->uri, "postgresql://%s@/%s?host=%s&port=%d", user, db, hdir,
                 port);
}

/* ---- lifecycle -------------------------------------------------------------- */

static void server_free(server *s) {
    if (!s)
        return;
    for (int i = 0; i < s->nlisten; i++)
        if (s->lfd[i] >= 0)
            close(s->lfd[i]);
    if (s->unix_bound)
        unlink(s->unix_path);
    if (s->stop_pipe[0] >= 0)
        close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0)
        close(s->stop_pipe[1]);
    free(s->data_dir);
    free(s->user);
    free(s->database);
    if (s->password) {
        OPENSSL_cleanse(s->password, strlen(s->password));
        free(s->password);
    }
    for (size_t i = 0; s->gucs && s->gucs[i]; i++)
        free(s->gucs[i]);
    free(s->gucs);
    tls_ctx_free(s->tls);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->be_mu);
    pthread_cond_destroy(&s->workers_cv);
    pthread_cond_destroy(&s->idle_cv);
    free(s);
}

/* The options into s (copied), with their defaults, and the password
 * verifier. 0, or a negative pgl_status with err (the caller frees s). */
static int copy_options(server *s, const server_options *o, char *err, size_t errlen) {
    s->data_dir = strdup(o->data_dir ? o->data_dir : "(borrowed backend)");
    if (o->backend) {
        s->borrowed = 1;
        s->be = o->backend;
        s->current = o->current;
        s->current_ctx = o->current_ctx;
    }
    s->user = strdup(o->user && *o->user ? o->user : "postgres");
    s->database = strdup(o->database && *o->database ? o->database : "postgres");
    size_t ng = 0;
    while (o->gucs && o->gucs[ng])
        ng++;
    s->gucs = calloc(ng + 1, sizeof *s->gucs);
    int gucs_ok = s->gucs != NULL;
    for (size_t i = 0; s->gucs && i < ng; i++)
        if (!(s->gucs[i] = strdup(o->gucs[i])))
            gucs_ok = 0; /* the list ends early: refused below */
    s->relaxed_durability = o->relaxed_durability;
    s->debug = o->debug;
    s->startup_timeout_ms = o->startup_timeout_ms > 0 ? o->startup_timeout_ms : 10000;
    s->max_startup = o->max_startup > 0 ? o->max_startup : 64;
    s->log_level = o->log_level ? o->log_level : SERVER_LOG_INFO;
    s->log = o->log;
    s->log_ctx = o->log_ctx;
    if (!s->data_dir || !s->user || !s->database || !gucs_ok) {
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    if (strlen(s->user) >= NAMEDATALEN || strlen(s->database) >= NAMEDATALEN) {
        snprintf(err, errlen, "user and database names are at most %d bytes", NAMEDATALEN - 1);
        return -1;
    }
    s->auth = AUTH_TRUST;
    if (o->password && *o->password) {
        const char *m = o->auth_method && *o->auth_method ? o->auth_method : "scram-sha-256";
        if (!strcmp(m, "scram-sha-256"))
            s->auth = AUTH_SCRAM;
        else if (!strcmp(m, "md5"))
            s->auth = AUTH_MD5;
        else if (!strcmp(m, "password"))
            s->auth = AUTH_PASSWORD;
        else {
            snprintf(err, errlen, "unknown authentication method \"%s\" (scram-sha-256, md5, password)", m);
            return -1;
        }
        s->password = strdup(o->password);
        if (!s->password) {
            snprintf(err, errlen, "out of memory");
            return PGL_ENOMEM;
        }
    }
    return 0;
}

int server_start(const server_options *o, server **out, char *err, size_t errlen) {
    *out = NULL;
    if (!o || (!o->data_dir && !o->backend)) {
        snprintf(err, errlen, "no data directory and no backend");
        return -1;
    }
    if (!o->unix_path && !o->tcp_host) {
        snprintf(err, errlen, "nowhere to listen: give a Unix socket path or a TCP host");
        return -1;
    }
    if (o->tcp_host && (o->tcp_port < 0 || o->tcp_port > 65535)) {
        snprintf(err, errlen, "invalid TCP port %d", o->tcp_port);
        return -1;
    }
    server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return PGL_ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->be_mu, NULL);
    pthread_cond_init(&s->workers_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    s->tcp_port = -1;
    int st = copy_options(s, o, err, errlen);
    if (st != 0) {
        server_free(s);
        return st;
    }
    if ((o->ssl_cert && *o->ssl_cert) || (o->ssl_key && *o->ssl_key)) {
        if (!o->ssl_cert || !*o->ssl_cert || !o->ssl_key || !*o->ssl_key) {
            snprintf(err, errlen, "TLS needs both a certificate and its key");
            server_free(s);
            return -1;
        }
        if (tls_ctx_new(o->ssl_cert, o->ssl_key, &s->tls, err, errlen) != 0) {
            server_free(s);
            return -1;
        }
    }
    s->front = (frontdoor_cfg){.auth = s->auth, .tls = s->tls != NULL,
                               .log = front_log, .log_ctx = s};
    for (int i = 0; i < MAX_LISTEN; i++)
        s->lfd[i] = -1;
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        server_free(s);
        return -1;
    }
    /* Sockets first: a taken port fails fast, before the database starts. */
    if (o->tcp_host && listener_bind_tcp(s, o->tcp_host, o->tcp_port, o->trust_remote, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    if (o->unix_path &&
        listener_bind_unix(s, o->unix_path, s->tcp_port > 0 ? s->tcp_port : 5432, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    if (session_bootstrap(s, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    make_uri(s, o->tcp_host);
    if (pthread_create(&s->watcher, NULL, session_watch_main, s) == 0)
        s->watcher_started = 1;
    if (pthread_create(&s->listener, NULL, listener_main, s) != 0) {
        snprintf(err, errlen, "cannot start the listener thread");
        server_stop(s);
        return -1;
    }
    s->listener_started = 1;
    srv_log(s, SERVER_LOG_DEBUG, "serving %s from %s", s->database, s->data_dir);
    *out = s;
    return 0;
}

int server_tcp_port(const server *s) { return s && s->tcp_port > 0 ? s->tcp_port : -1; }

const char *server_unix_path(const server *s) {
    return s && s->unix_path[0] ? s->unix_path : NULL;
}

const char *server_uri(const server *s) { return s ? s->uri : NULL; }

void server_stop(server *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    ssize_t w;
    do
        w = write(s->stop_pipe[1], "x", 1);
    while (w < 0 && errno == EINTR);
    if (s->listener_started)
        pthread_join(s->listener, NULL);
    if (s->watcher_started)
        pthread_join(s->watcher, NULL);
    session_end_all(s);
    session_stop_backend(s);
    srv_log(s, SERVER_LOG_DEBUG, "stopped");
    server_free(s);
}
