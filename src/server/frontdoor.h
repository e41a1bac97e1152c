/*
 * frontdoor: the first packets of a connection, as a pure state machine
 * over bytes (internal to server/).
 *
 * SSLRequest ('S' when TLS is configured and the connection is TCP, else
 * 'N') and GSSENCRequest ('N'), CancelRequest, the startup
 * packet (protocol 3.0 to 3.2, NegotiateProtocolVersion), then trust,
 * SCRAM-SHA-256, md5 or cleartext authentication. The caller (the
 * listener) appends what a client sent to c->buf and calls
 * frontdoor_process; replies are appended to out for the caller to send.
 * No sockets, clocks or threads: unit tests and the fuzzer call it as the
 * listener does.
 */
#ifndef PGLITE_SERVER_FRONTDOOR_H
#define PGLITE_SERVER_FRONTDOOR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "server/auth.h"
#include "server/server.h"
#include "wire/wire.h"

#define NAMEDATALEN 64
/* What a connection may have buffered in the front door. */
#define FRONT_BUF_MAX (WIRE_MAX_STARTUP_PACKET + WIRE_MAX_AUTH_TOKEN + 64)

enum auth_kind { AUTH_TRUST, AUTH_SCRAM, AUTH_MD5, AUTH_PASSWORD };

enum conn_state {
    CONN_STARTUP,    /* reading the first packet (or the one after 'N') */
    CONN_PASSWORD,   /* waiting for a PasswordMessage (md5 or cleartext) */
    CONN_SASL_INIT,  /* waiting for SASLInitialResponse */
    CONN_SASL_FINAL, /* waiting for SASLResponse */
    CONN_SECRET,     /* waiting for the role's secret (frontdoor_set_secret) */
};

/* One client connection. The front door uses the buffer, the state and
 * what the startup packet said; fd and the list links are the listener's.
 * Owned by the listener until authenticated, then by its session. */
typedef struct conn {
    int fd;
    int tcp;          /* a TCP connection (TLS is offered on TCP only) */
    void *tls;        /* OpenSSL's SSL once TLS began (tls.c), else NULL */
    int tls_handshaking, tls_direct;
    short tls_want;   /* what TLS waits for: POLLIN or POLLOUT */
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
    role_secret secret;  /* the role's, once set */
    int have_secret;
    /* a CancelRequest (FRONT_CANCEL) */
    int32_t cancel_pid;
    uint8_t cancel_key[WIRE_MAX_CANCEL_KEY];
    size_t cancel_keylen;
    uint64_t id;        /* unique per server */
    struct conn *fnext; /* front-door list (listener only) */
} conn;

/* How the front door authenticates, and where it logs. */
typedef struct frontdoor_cfg {
    enum auth_kind auth;        /* trust, or the password method: each role's own
                                   password (frontdoor_set_secret) */
    int tls;                    /* TLS configured: SSLRequest on TCP answered 'S' */
    void (*log)(void *ctx, server_log_level level, const char *fmt, va_list ap); /* or NULL */
    void *log_ctx;
} frontdoor_cfg;

typedef enum frontdoor_result {
    FRONT_CLOSE = -1, /* close the connection once out is sent (a FATAL, or nothing) */
    FRONT_MORE = 0,   /* keep it: more bytes are needed */
    FRONT_READY = 2,  /* authenticated: hand it to a session */
    FRONT_SECRET = 5, /* the startup packet is read and a password is needed:
                         look up c->user's secret, frontdoor_set_secret, and
                         process again */
    FRONT_CANCEL = 3, /* a CancelRequest (c->cancel_*): act on it, then close */
    FRONT_TLS = 4,    /* 'S' is in out: send it, then the TLS handshake; the
                         bytes after it are the front door's again */
} frontdoor_result;

/* Consume what c->buf holds, appending replies to out. */
frontdoor_result frontdoor_process(const frontdoor_cfg *cfg, conn *c, wire_buf *out);

/* The secret of c->user: pg_authid.rolpassword, or NULL (no such role, no
 * password, or expired: then every password fails, after an exchange that
 * does not tell which). 0, or -1 (out of randomness). */
int frontdoor_set_secret(conn *c, const char *rolpassword);

/* Append bytes a client sent to c->buf (at most FRONT_BUF_MAX buffered).
 * 0, or -1 (too much, or out of memory). */
int frontdoor_append(conn *c, const void *data, size_t n);

/* Free what the front door allocated in c (not c, not its fd). */
void frontdoor_conn_clear(conn *c);

#endif
