/*
 * server internals shared by server.c (start, stop, URI, logging),
 * listener.c (sockets, accept), frontdoor.c (first packets and
 * authentication, pure) and session.c (a thread per client session, each
 * on a backend of its own).
 */
#ifndef PGLITE_SERVER_INTERNAL_H
#define PGLITE_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "backend/backend.h"
#include "cluster/status.h"
#include "server/auth.h"
#include "server/frontdoor.h"
#include "server/server.h"
#include "wire/wire.h"

#define MAX_LISTEN 8
/* Session threads kept waiting for a next client (session.c). */
#define SERVER_IDLE_WORKERS 4

struct server {
    /* options, copied */
    char *data_dir, *user, *database, *password, **gucs;
    int relaxed_durability, debug;
    enum auth_kind auth;
    frontdoor_cfg front;             /* auth above, our log */
    struct tls_ctx *tls;             /* with ssl_cert and ssl_key, else NULL */
    int startup_timeout_ms, max_startup;
    server_log_level log_level;
    void (*log)(void *ctx, server_log_level level, const char *line);
    void *log_ctx;

    /* sockets */
    int lfd[MAX_LISTEN];
    int nlisten;
    int tcp_port;
    char unix_path[108];
    int unix_bound;
    char uri[2048];
    int stop_pipe[2]; /* readable once stopping */

    /* threads */
    pthread_t listener, watcher;
    int listener_started, watcher_started;

    /* The cluster's first backend, which every session is cloned from:
     * the server's own, or borrowed (server_options.backend). */
    backend *be;
    int borrowed;
    struct backend *(*current)(void *ctx); /* borrowed: the live one (server_options) */
    void *current_ctx;
    pthread_mutex_t be_mu;           /* one session thread at a time asks be for a secret */

    /* shared, under mu: each client is served by a session of its own, a
     * clone of be, on a thread of its own; the live ones (for
     * CancelRequest and stop), the count of session threads */
    pthread_mutex_t mu;
    int stopping;
    struct sess *live;
    int nworkers;
    pthread_cond_t workers_cv;
    /* Session threads whose client has gone, waiting a while for the next
     * one (session_start hands it over instead of making a thread). */
    int nidle;
    conn *handoff[SERVER_IDLE_WORKERS];
    int nhandoff;
    pthread_cond_t idle_cv;
    uint64_t sessions;
};

/* server.c */
void srv_log(server *s, server_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void srv_vlog(server *s, server_log_level level, const char *fmt, va_list ap);
int64_t srv_now_ms(void);
/* Block SIGPIPE in the calling thread: OpenSSL writes with write(), not
 * send(MSG_NOSIGNAL), and a vanished client must not kill the program. */
void srv_block_sigpipe(void);

/* listener.c */
void *listener_main(void *arg);
/* Bind and listen: TCP on host:port (every address it resolves to; a
 * non-loopback one refused with trust unless trust_remote), a Unix socket
 * at path (a directory: path/.s.PGSQL.port). 0, or -1 with err. */
int listener_bind_tcp(server *s, const char *host, int port, int trust_remote, char *err,
                      size_t errlen);
int listener_bind_unix(server *s, const char *path, int port, char *err, size_t errlen);
/* Best-effort FATAL to a client (non-blocking socket, short wait). */
void srv_send_fatal(conn *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write all of data: 0, or -1 if the client is gone (or stuck for
 * timeout_ms while stopping). */
int srv_send_all(server *s, conn *c, const void *data, size_t n);
void srv_conn_free(conn *c);

/* session.c */
/* An authenticated client: a session of its own, on a thread of its own
 * (takes c over; a stopping server turns it away). */
void session_start(server *s, conn *c);
/* Start the first backend, make sure the configured role and database
 * exist, and park it (a borrowed one: nothing to do). 0, or -1 with err. */
int session_bootstrap(server *s, char *err, size_t errlen);
/* Close the first backend (not a borrowed one). */
void session_stop_backend(server *s);
/* A CancelRequest for the session with this pid and key: cancel its
 * statement. 1 if one matched. Under mu. */
int session_cancel_locked(server *s, int32_t pid, const uint8_t *key, size_t keylen);
/* Ask every session to end (server_stop), and wait until they have. */
void session_end_all(server *s);
/* The watcher thread: cancels the statement of a session whose client
 * went away. */
void *session_watch_main(void *arg);

#endif
