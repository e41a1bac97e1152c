/*
 * server internals shared by server.c (start, stop, URI, logging),
 * listener.c (sockets, accept, the queue), frontdoor.c (first packets and
 * authentication, pure) and session.c (the session thread driving the
 * backend).
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
#define MAX_PARAMS 64

typedef struct param {
    char *name, *value;
} param;

struct server {
    /* options, copied */
    char *data_dir, *user, *database, *password, **gucs;
    int relaxed_durability, debug;
    enum auth_kind auth;
    scram_secret scram;
    frontdoor_cfg front;             /* auth, password and scram above, our log */
    struct tls_ctx *tls;             /* with ssl_cert and ssl_key, else NULL */
    int max_waiting, wait_timeout_ms, startup_timeout_ms, max_startup;
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
    int wake_pipe[2]; /* the session thread took a client off the queue */

    /* threads */
    pthread_t listener, session, watcher, first;
    int listener_started, session_started, watcher_started, first_started;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    conn *qhead, *qtail;
    int nqueued;
    backend *be;                     /* swapped only under mu */
    int cancel_active;               /* a session holds this key */
    int32_t cancel_pid;
    uint8_t cancel_key[32];
    size_t cancel_keylen;

    /* a borrowed backend (server_options.backend) */
    int borrowed;
    void (*acquire)(void *ctx);
    void (*release)(void *ctx);
    void *lock_ctx;

    /* Many sessions (a backend of our own): each client is served by a
     * session of its own, a clone of be, on a thread of its own. Under mu:
     * the live ones (for CancelRequest and stop) and their count. */
    int multi;
    struct sess *live;
    int nworkers;
    pthread_cond_t workers_cv;

    /* session thread only */
    char *be_db;                     /* database the backend serves */
    int32_t be_pid;                  /* its pid (BackendKeyData) */
    param params[MAX_PARAMS];        /* ParameterStatus as the backend has it */
    int nparams;
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
void *session_main(void *arg);
/* Start (or restart) the backend on database db. 0, or -1 with err. */
int session_start_backend(server *s, const char *db, char *err, size_t errlen);
void session_stop_backend(server *s);
/* Make sure the configured role and database exist and start the backend
 * (server_start); with a borrowed one, take its startup reply. */
int session_bootstrap(server *s, char *err, size_t errlen);
/* A CancelRequest for the session with this pid and key: cancel its
 * statement. 1 if one matched. Under mu. */
int session_cancel_locked(server *s, int32_t pid, const uint8_t *key, size_t keylen);
/* Ask every session to end (server_stop), and wait until they have. */
void session_end_all(server *s);
/* The watcher thread (many sessions): cancels the statement of a session
 * whose client went away. */
void *session_watch_main(void *arg);
/* The first backend's thread (many sessions): it takes its signals. */
void *session_first_main(void *arg);

#endif
