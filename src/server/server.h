/*
 * server: a PostgreSQL wire-protocol server over one embedded backend.
 *
 * Listens on a Unix socket and/or TCP (loopback unless told otherwise) and
 * lets any PostgreSQL client talk to the backend, one session at a time:
 *
 * - Front door (its own thread, non-blocking, so slow or hostile clients
 *   never hold the backend): the first packet is read with a size bound
 *   and a timeout; SSLRequest and GSSENCRequest are answered 'N';
 *   CancelRequest cancels the running statement when its key is the
 *   current session's; protocol 3.0 to 3.2 (newer minor versions and
 *   _pq_ options get NegotiateProtocolVersion); garbage gets FATAL 08P01.
 *   Authentication: trust, or with a password SCRAM-SHA-256 (default),
 *   md5 or cleartext.
 * - Waiting: authenticated clients queue for the backend (bounded queue,
 *   bounded wait); past either bound they get FATAL 53300 "sorry, too
 *   many clients already".
 * - Session (the session thread): the database and role are checked (a
 *   database other than the current one is switched to, as PostgreSQL
 *   gives each connection its database), startup parameters are applied
 *   as PostgreSQL applies them (an invalid one is PostgreSQL's own FATAL),
 *   then messages are pumped between the socket and the backend, batched
 *   up to Sync, Flush, Query or FunctionCall; COPY FROM STDIN streams.
 *   Unknown message types and bad lengths are FATAL 08P01.
 * - Between sessions whatever the client left is rolled back and the
 *   session state reset (ROLLBACK; DISCARD ALL); a backend that died or
 *   cannot be reset is restarted.
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
    /* The database: a data directory the server starts its own backend on,
     * or a running backend it borrows. */
    const char *data_dir;          /* a prepared cluster, not in use elsewhere */
    struct backend *backend;       /* instead of data_dir: a started backend serving
                                      `database` as `user`; the server never closes or
                                      restarts it, and clients of other databases are
                                      refused (0A000) */
    void (*acquire)(void *ctx);    /* with backend: called before a client session uses
                                      it, release after (e.g. a mutex shared with the
                                      backend's other user); may be NULL */
    void (*release)(void *ctx);
    void *lock_ctx;
    const char *user;              /* the role clients log in as; default "postgres";
                                      created (superuser) when missing (not with backend) */
    const char *database;          /* the database served first; default "postgres";
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

    /* Limits (0: the default). */
    int max_waiting;               /* clients queued for the backend (default 32) */
    int wait_timeout_ms;           /* how long one may wait (default 30000) */
    int startup_timeout_ms;        /* startup packet and authentication (default 10000) */
    int max_startup;               /* connections in the front door at once (default 64) */

    /* Log lines (without newline); NULL: stderr as "pglite-server: ...". */
    server_log_level log_level;    /* default SERVER_LOG_INFO */
    void (*log)(void *ctx, server_log_level level, const char *line);
    void *log_ctx;
} server_options;

/* Start the backend on o->data_dir (or take o->backend), bind the sockets
 * and start serving.
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

/* Stop: stop accepting (the socket file is removed), turn away waiting
 * clients (FATAL 57P01), cancel the running statement of the current
 * session, roll it back and end it (FATAL 57P01), then close the database
 * cleanly (a borrowed backend is left open). Frees s. NULL is a no-op. Not
 * from a signal handler. */
void server_stop(server *s);

#endif
