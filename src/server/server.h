/*
 * server: a PostgreSQL wire-protocol server on an embedded cluster.
 *
 * Listens on a Unix socket and/or TCP (loopback unless told otherwise) and
 * gives every PostgreSQL client that connects a session of its own, as a
 * real server does:
 *
 * - Front door (its own thread, non-blocking, so slow or hostile clients
 *   never hold anything): the first packet is read with a size bound and
 *   a timeout; SSLRequest and GSSENCRequest are answered 'N' (or 'S' with
 *   TLS); CancelRequest cancels the running statement of the session its
 *   pid and key name; protocol 3.0 to 3.2 (newer minor versions and _pq_
 *   options get NegotiateProtocolVersion); garbage gets FATAL 08P01.
 *   Authentication: trust, or with a password SCRAM-SHA-256 (default),
 *   md5 or cleartext.
 * - Session (a thread per client): a backend of its own, cloned from the
 *   cluster's first backend with the client's startup packet, so that
 *   PostgreSQL itself checks the role and database, applies the startup
 *   parameters and counts max_connections (its FATAL goes to the client
 *   as it is); then messages are pumped between the socket and the
 *   backend, batched up to Sync, Flush, Query or FunctionCall; COPY FROM
 *   STDIN streams; NOTIFY and terminate reach an idle session. Unknown
 *   message types and bad lengths are FATAL 08P01. The client's exit ends
 *   the backend (PostgreSQL's own exit: locks released, temp tables
 *   dropped); a client that goes away mid-statement has the statement
 *   cancelled first.
 *
 * All socket writes use MSG_NOSIGNAL: a vanished client never raises
 * SIGPIPE.
 */
#ifndef PGLITE_SERVER_H
#define PGLITE_SERVER_H

#include <stddef.h>

struct sockaddr;

struct backend;
typedef struct server server;

typedef enum server_log_level {
    SERVER_LOG_ERROR = 1,
    SERVER_LOG_WARNING = 2,
    SERVER_LOG_INFO = 3, /* connects and disconnects */
    SERVER_LOG_DEBUG = 4,
} server_log_level;

typedef struct server_options {
    /* The cluster: a data directory the server starts its first backend
     * on, or the first backend of a running one. */
    const char *data_dir;          /* a prepared cluster, not in use elsewhere */
    struct backend *backend;       /* instead of data_dir: the first backend of a cluster
                                      started with backend_options.sessions, parked by
                                      its owner; the server clones sessions from it and
                                      never closes it */
    struct backend *(*current)(void *ctx); /* with backend, or NULL: the cluster's live
                                      first backend now (its owner's, started again
                                      after a crash), asked before each session */
    void *current_ctx;
    const char *user;              /* the role of the URI; default "postgres"; created
                                      (superuser) when missing (not with backend) */
    const char *database;          /* the database of the URI; default "postgres";
                                      created when missing (not with backend) */
    const char *const *gucs;       /* NULL-terminated "name=value" backend settings */
    int relaxed_durability;        /* fsync and synchronous_commit off */
    int debug;                     /* postgres -d level */

    /* Where to listen (at least one). */
    const char *unix_path;         /* socket file, or a directory for <dir>/.s.PGSQL.<port>
                                      (port: tcp_port if set, else 5432); NULL: none */
    const char *tcp_host;          /* host name or address ("": loopback); NULL: no TCP */
    int tcp_port;                  /* 0: a free port (see server_tcp_port) */

    /* Authentication. */
    const char *password;          /* NULL or "": trust (then TCP is refused on any
                                      address that is not loopback, unless
                                      trust_remote) */
    const char *auth_method;       /* with a password: "scram-sha-256" (default), "md5",
                                      or "password" (cleartext) */
    int trust_remote;              /* allow trust on a non-loopback TCP address: every
                                      client that reaches it is a superuser */

    /* TLS on TCP (both or neither): PEM files of the certificate (chain)
     * and its key. SSLRequest is then answered 'S', and a direct TLS
     * handshake (ALPN "postgresql", PostgreSQL 17's sslnegotiation=direct)
     * accepted; without them SSLRequest gets 'N'. Never on Unix sockets. */
    const char *ssl_cert;
    const char *ssl_key;

    /* Limits (0: the default). Sessions at once are PostgreSQL's
     * max_connections. */
    int startup_timeout_ms;        /* startup packet and authentication (default 10000) */
    int max_startup;               /* connections in the front door at once (default 64) */

    /* Log lines (without newline); NULL: stderr as "pglite-server: ...". */
    server_log_level log_level;    /* default SERVER_LOG_INFO */
    void (*log)(void *ctx, server_log_level level, const char *line);
    void *log_ctx;
} server_options;

/* Start the first backend on o->data_dir (or take o->backend), bind the
 * sockets and start serving.
 * Returns 0, or a negative pgl_status (cluster/status.h; -1 is PGL_EFAIL)
 * with a message in err (nothing left behind). */
int server_start(const server_options *o, server **out, char *err, size_t errlen);

/* The host an empty HOST means: loopback only. */
#define SERVER_LOOPBACK_HOST "127.0.0.1"

/* Parse "HOST:PORT", ":PORT", "PORT" or "[IPV6]:PORT" into host (hostlen
 * bytes; an empty HOST becomes SERVER_LOOPBACK_HOST) and port (0 to 65535).
 * Returns 0, or -1 with the reason in err. For the command line and the
 * API alike. */
int server_parse_hostport(const char *spec, char *host, size_t hostlen, int *port, char *err,
                          size_t errlen);

/* The certificate and key for --ssl-self-signed: dir/server.crt and
 * dir/server.key (PostgreSQL's names in its data directory), made as a
 * self-signed pair (EC P-256, CN=localhost, SAN localhost, 127.0.0.1 and
 * ::1, ten years) when neither exists, else used as they are. Writes both
 * paths (n bytes each). Returns 0, or -1 with the reason in err (one file
 * without the other is an error, not overwritten). Clients verify with
 * sslrootcert=dir/server.crt. */
int server_self_signed_pair(const char *dir, char *cert, char *key, size_t n, char *err,
                            size_t errlen);

/* 1 if sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z) or a
 * Unix socket, else 0. */
int server_address_is_loopback(const struct sockaddr *sa);

/* The bound TCP port, or -1 without TCP. */
int server_tcp_port(const server *s);

/* The Unix socket file, or NULL without one. */
const char *server_unix_path(const server *s);

/* A libpq connection URI: postgresql://user@host:port/db?sslmode=disable
 * for TCP, else postgresql://user@/db?host=DIR&port=N. */
const char *server_uri(const server *s);

/* Stop: stop accepting (the socket file is removed), turn away clients
 * still connecting (FATAL 57P01), cancel every session's running
 * statement, end the sessions (FATAL 57P01, rolled back), then close the
 * cluster cleanly (a borrowed backend is left open). Frees s. NULL is a
 * no-op. Not from a signal handler. */
void server_stop(server *s);

#endif
