/*
 * server internals shared by server.c (sockets, front door, queue) and
 * session.c (the session thread driving the backend).
 */
#ifndef PGLITE_SERVER_INTERNAL_H
#define PGLITE_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "backend/backend.h"
#include "server/auth.h"
#include "server/server.h"
#include "wire/wire.h"

/* PostgreSQL's limits (pqcomm.h): whole message length, length word
 * included. */
#define PQ_SMALL_MESSAGE_LIMIT 10000u
#define PQ_LARGE_MESSAGE_LIMIT (0x3fffffffu - 1)
#define MAX_STARTUP_PACKET_LENGTH 10000u
#define MAX_AUTH_TOKEN_LENGTH 65535u
#define NAMEDATALEN 64
#define PROTOCOL_LATEST_MINOR 2 /* 3.2 */
#define MAX_LISTEN 8
#define MAX_PARAMS 64

enum auth_kind { AUTH_TRUST, AUTH_SCRAM, AUTH_MD5, AUTH_PASSWORD };

enum conn_state {
    CONN_STARTUP,    /* reading the first packet (or the one after 'N') */
    CONN_PASSWORD,   /* waiting for a PasswordMessage (md5 or cleartext) */
    CONN_SASL_INIT,  /* waiting for SASLInitialResponse */
    CONN_SASL_FINAL, /* waiting for SASLResponse */
    CONN_QUEUED,     /* authenticated, waiting for the backend */
};

/* One client connection. Owned by the listener until queued, then by the
 * queue, then by the session thread. */
typedef struct conn {
    int fd;
    char peer[128];
    enum conn_state state;
    int ssl_done, gss_done;
    uint8_t *buf; /* bytes read and not yet consumed */
    size_t len, cap;
    int64_t deadline; /* ms, monotonic */
    int64_t since;    /* ms when accepted */
    /* from the startup packet */
    int minor;        /* protocol 3.minor, 0..2 */
    char *user, *database, *options;
    char **gucs;      /* name, value, name, value ... */
    size_t ngucs;     /* pairs */
    /* authentication */
    uint8_t md5_salt[4];
    scram_state *scram;
    uint64_t id;        /* unique per server */
    struct conn *fnext; /* front-door list (listener only) */
    struct conn *next;  /* the queue (under mu) */
} conn;

typedef struct param {
    char *name, *value;
} param;

struct server {
    /* options, copied */
    char *data_dir, *user, *database, *password, **gucs;
    int relaxed_durability, debug;
    enum auth_kind auth;
    scram_secret scram;
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
    pthread_t listener, session;
    int listener_started, session_started;

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
int64_t srv_now_ms(void);
/* Append an ErrorResponse (severity "FATAL", "ERROR") to w. */
void srv_put_error(wire_buf *w, const char *severity, const char *code, const char *msg,
                   const char *detail, const char *hint);
/* Best-effort FATAL to a client (non-blocking socket, short wait). */
void srv_send_fatal(int fd, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write all of data: 0, or -1 if the client is gone (or stuck for
 * timeout_ms while stopping). */
int srv_send_all(server *s, int fd, const void *data, size_t n);
void srv_conn_free(conn *c);

/* session.c */
void *session_main(void *arg);
/* Start (or restart) the backend on database db. 0, or -1 with err. */
int session_start_backend(server *s, const char *db, char *err, size_t errlen);
void session_stop_backend(server *s);
/* Make sure the configured role and database exist and start the backend
 * (server_start); with a borrowed one, take its startup reply. */
int session_bootstrap(server *s, char *err, size_t errlen);
/* The length of the client message at p (type byte included) when all
 * avail bytes of it are there, 0 when more are needed, -1 for a type or
 * length PostgreSQL refuses (the FATAL 08P01 message in m). copy: inside
 * COPY FROM STDIN. Pure: for the session pump and for fuzzing. */
long session_frame_length(const uint8_t *p, size_t avail, int copy, char *m, size_t mn);

/* server.c, for fuzzing: run data (fed chunk bytes at a time; 0: at once)
 * through the front door of a bare server (no backend, no sockets; auth
 * 0 trust, 1 SCRAM, 2 md5, 3 cleartext, password "secret") as one
 * connection whose replies go to fd (a socket, left open; drain it).
 * Returns 1 when the client authenticated (the listener would queue it), 0
 * when it waits for more, -1 when refused. */
int server_fuzz_front_door(const uint8_t *data, size_t n, int auth, size_t chunk, int fd);

#endif
