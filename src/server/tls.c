/* TLS for the server's connections, over OpenSSL's libssl: PostgreSQL's
 * SSLRequest ('S', then the handshake) and PostgreSQL 17's direct SSL
 * (the handshake first, ALPN "postgresql"). */
#define _GNU_SOURCE
#include "server/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct tls_ctx {
    SSL_CTX *ctx;
};

/* ALPN: "postgresql" if the client offers it; a client offering only
 * others is refused, as PostgreSQL does. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x0apostgresql";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void ssl_error(char *err, size_t errlen, const char *what) {
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
    ERR_clear_error();
}

int tls_ctx_new(const char *cert_file, const char *key_file, tls_ctx **out, char *err,
                size_t errlen) {
    *out = NULL;
    tls_ctx *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        ssl_error(err, errlen, "cannot create a TLS context");
        free(t);
        return -1;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION); /* PostgreSQL's default */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, NULL);
    char what[600];
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
        snprintf(what, sizeof what, "could not load server certificate file \"%s\"", cert_file);
        ssl_error(err, errlen, what);
    } else if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "could not load private key file \"%s\"", key_file);
        ssl_error(err, errlen, what);
    } else if (SSL_CTX_check_private_key(t->ctx) != 1) {
        ssl_error(err, errlen, "the private key does not match the certificate");
    } else {
        *out = t;
        return 0;
    }
    tls_ctx_free(t);
    return -1;
}

void tls_ctx_free(tls_ctx *t) {
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int tls_begin(tls_ctx *t, conn *c) {
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return -1;
    if (SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    c->tls = ssl;
    c->tls_handshaking = 1;
    c->tls_want = POLLIN;
    c->ssl_done = 1; /* another SSLRequest is then a bad protocol version */
    return 0;
}

/* After an SSL call returned r <= 0: 0 would block (tls_want set), -1
 * failed. */
static int would_block(conn *c, int r) {
    switch (SSL_get_error(c->tls, r)) {
    case SSL_ERROR_WANT_READ:
        c->tls_want = POLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->tls_want = POLLOUT;
        return 0;
    default:
        return -1;
    }
}

int tls_handshake(conn *c, char *err, size_t errlen) {
    ERR_clear_error();
    int r = SSL_accept(c->tls);
    if (r == 1) {
        c->tls_handshaking = 0;
        c->tls_want = POLLIN;
        const unsigned char *proto = NULL;
        unsigned int plen = 0;
        SSL_get0_alpn_selected(c->tls, &proto, &plen);
        if (c->tls_direct && plen == 0) {
            snprintf(err, errlen, "received direct SSL connection request without ALPN protocol "
                                  "negotiation extension");
            return -1;
        }
        return 1;
    }
    if (would_block(c, r) == 0)
        return 0;
    ssl_error(err, errlen, "could not accept SSL connection");
    return -1;
}

void tls_end(conn *c) {
    if (!c->tls)
        return;
    if (!c->tls_handshaking)
        SSL_shutdown(c->tls); /* best effort: the socket is non-blocking */
    ERR_clear_error();
    SSL_free(c->tls);
    c->tls = NULL;
}

ssize_t conn_recv(conn *c, void *buf, size_t n) {
    if (!c->tls)
        return recv(c->fd, buf, n, MSG_DONTWAIT);
    if (n > 0x7fffffff)
        n = 0x7fffffff;
    ERR_clear_error();
    int r = SSL_read(c->tls, buf, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->tls, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0; /* close_notify: EOF */
    if (would_block(c, r) == 0) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    errno = ECONNRESET;
    return -1;
}

ssize_t conn_send(conn *c, const void *buf, size_t n) {
    if (!c->tls)
        return send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == 0)
        return 0;
    if (n > 0x7fffffff)
        n = 0x7fffffff;
    ERR_clear_error();
    int r = SSL_write(c->tls, buf, (int)n);
    if (r > 0)
        return r;
    if (would_block(c, r) == 0) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    errno = EPIPE;
    return -1;
}

short conn_events(const conn *c, short dflt) { return c->tls ? c->tls_want : dflt; }

int conn_pending(const conn *c) { return c->tls ? SSL_pending(c->tls) : 0; }
