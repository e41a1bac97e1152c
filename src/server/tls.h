/*
 * tls: a connection's byte stream, plain or TLS (OpenSSL's libssl),
 * internal to server/.
 *
 * The listener and the session read and write a client through conn_recv
 * and conn_send, which behave as non-blocking recv/send (-1 with errno
 * EAGAIN when they would block; then poll for conn_events). With TLS a
 * read may need the socket writable and the other way round, and bytes
 * may be decrypted and waiting (conn_pending) while the socket is quiet.
 */
#ifndef PGLITE_SERVER_TLS_H
#define PGLITE_SERVER_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "server/frontdoor.h"

typedef struct tls_ctx tls_ctx;

/* A server context from a PEM certificate (chain) and key. 0, or -1 with
 * err. */
int tls_ctx_new(const char *cert_file, const char *key_file, tls_ctx **out, char *err,
                size_t errlen);
void tls_ctx_free(tls_ctx *t);

/* Begin TLS on c's socket (after 'S', or at once for a direct connection:
 * the ClientHello is still unread). 0, or -1. */
int tls_begin(tls_ctx *t, conn *c);
/* Advance the handshake: 1 done, 0 in progress (poll conn_events), -1
 * failed (why in err). A direct connection must have chosen ALPN
 * "postgresql". */
int tls_handshake(conn *c, char *err, size_t errlen);
/* Close TLS on c (a best-effort close_notify) and free it. */
void tls_end(conn *c);

ssize_t conn_recv(conn *c, void *buf, size_t n);
ssize_t conn_send(conn *c, const void *buf, size_t n);
/* What to poll c's socket for after an EAGAIN (dflt without TLS). */
short conn_events(const conn *c, short dflt);
/* Decrypted bytes already buffered (read them before polling). */
int conn_pending(const conn *c);

#endif
