/* The front door: SSL/GSS requests, CancelRequest, the startup packet and
 * authentication, over the bytes of one connection. Pure: replies go to
 * a wire_buf, a cancel is returned to the caller; no I/O. */
#define _GNU_SOURCE
#include "server/frontdoor.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void front_log(const frontdoor_cfg *cfg, server_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void front_log(const frontdoor_cfg *cfg, server_log_level level, const char *fmt, ...) {
    if (!cfg->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    cfg->log(cfg->log_ctx, level, fmt, ap);
    va_end(ap);
}

int frontdoor_append(conn *c, const void *data, size_t n) {
    if (n > FRONT_BUF_MAX - c->len)
        return -1;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + n)
            cap *= 2;
        if (cap > FRONT_BUF_MAX)
            cap = FRONT_BUF_MAX;
        uint8_t *b = realloc(c->buf, cap);
        if (!b)
            return -1;
        c->buf = b;
        c->cap = cap;
    }
    if (n)
        memcpy(c->buf + c->len, data, n);
    c->len += n;
    return 0;
}

void frontdoor_conn_clear(conn *c) {
    free(c->buf);
    free(c->user);
    free(c->database);
    free(c->options);
    for (size_t i = 0; i < 2 * c->ngucs; i++)
        free(c->gucs[i]);
    free(c->gucs);
    if (c->scram) {
        OPENSSL_cleanse(c->scram, sizeof *c->scram);
        free(c->scram);
    }
    c->buf = NULL;
    c->len = c->cap = 0;
    c->user = c->database = c->options = NULL;
    c->gucs = NULL;
    c->ngucs = 0;
    c->scram = NULL;
    OPENSSL_cleanse(&c->secret, sizeof c->secret);
    c->have_secret = 0;
}

static void consume(conn *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* A refusal PostgreSQL answers with FATAL: the ErrorResponse into out, a
 * log line. */
static frontdoor_result front_fatal(const frontdoor_cfg *cfg, conn *c, wire_buf *out,
                                    const char *code, const char *msg) {
    front_log(cfg, SERVER_LOG_INFO, "connection from %s refused: %s (%s)", c->peer, msg, code);
    wire_error_response(out, PqMsg_ErrorResponse, "FATAL", code, msg, NULL, NULL);
    return FRONT_CLOSE;
}

/* A refusal PostgreSQL only logs (COMMERROR): closed with no reply. */
static frontdoor_result front_commerror(const frontdoor_cfg *cfg, conn *c, const char *msg) {
    front_log(cfg, SERVER_LOG_INFO, "connection from %s closed: %s", c->peer, msg);
    return FRONT_CLOSE;
}

static char *dup_name(const char *v) {
    /* PostgreSQL truncates user and database names to NAMEDATALEN-1. */
    return strndup(v, NAMEDATALEN - 1);
}

/* Keep a startup parameter. 0, or -1 (out of memory). */
static int keep_param(conn *c, const char *name, const char *val) {
    if (strcmp(name, "user") == 0) {
        free(c->user);
        return (c->user = dup_name(val)) ? 0 : -1;
    }
    if (strcmp(name, "database") == 0) {
        free(c->database);
        return (c->database = dup_name(val)) ? 0 : -1;
    }
    if (strcmp(name, "options") == 0) {
        free(c->options);
        return (c->options = strdup(val)) ? 0 : -1;
    }
    char **g = realloc(c->gucs, (c->ngucs + 1) * 2 * sizeof *g);
    if (!g)
        return -1;
    c->gucs = g;
    g[2 * c->ngucs] = strdup(name);
    g[2 * c->ngucs + 1] = strdup(val);
    c->ngucs++; /* counted even when NULL: frontdoor_conn_clear frees both */
    return g[2 * c->ngucs - 2] && g[2 * c->ngucs - 1] ? 0 : -1;
}

/* Ask for the password the method wants, as PostgreSQL's
 * CheckPWChallengeAuth does: SCRAM for scram-sha-256; for md5, SCRAM when
 * the role's secret is a SCRAM one, else the md5 challenge. */
static frontdoor_result ask_password(const frontdoor_cfg *cfg, conn *c, wire_buf *out) {
    enum auth_kind a = cfg->auth;
    if (a == AUTH_MD5 && c->secret.kind == ROLE_SCRAM)
        a = AUTH_SCRAM;
    switch (a) {
    case AUTH_TRUST:
        return FRONT_READY;
    case AUTH_SCRAM: {
        static const char mech[] = SCRAM_MECHANISM "\0"; /* list, empty-terminated */
        c->state = CONN_SASL_INIT;
        wire_auth_request(out, AUTH_REQ_SASL, mech, sizeof mech);
        return FRONT_MORE;
    }
    case AUTH_MD5:
        if (auth_random(c->md5_salt, 4) != 0)
            return front_fatal(cfg, c, out, "XX000", "could not generate a random salt");
        c->state = CONN_PASSWORD;
        wire_auth_request(out, AUTH_REQ_MD5, c->md5_salt, 4);
        return FRONT_MORE;
    case AUTH_PASSWORD:
        c->state = CONN_PASSWORD;
        wire_auth_request(out, AUTH_REQ_PASSWORD, NULL, 0);
        return FRONT_MORE;
    }
    return FRONT_CLOSE;
}

int frontdoor_set_secret(conn *c, const char *rolpassword) {
    if (role_secret_parse(rolpassword, &c->secret) != 0)
        return -1;
    c->have_secret = 1;
    return 0;
}

/* The startup packet (c->buf[0..plen)), in ProcessStartupPacket's order. */
static frontdoor_result handle_startup(const frontdoor_cfg *cfg, conn *c, wire_buf *out,
                                       uint32_t plen, uint32_t code) {
    uint32_t major = code >> 16, minor = code & 0xffff;
    if (major != 3) {
        char m[160];
        snprintf(m, sizeof m, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.%d",
                 major, minor, WIRE_PROTOCOL_LATEST_MINOR);
        return front_fatal(cfg, c, out, "0A000", m);
    }
    const char *unrecognized[32];
    size_t nunrec = 0, pos = 0;
    const char *name, *val;
    int r;
    while ((r = wire_startup_param(c->buf, plen, &pos, &name, &val)) == 1) {
        if (strcmp(name, "replication") == 0) {
            if (strcmp(val, "false") && strcmp(val, "0") && strcmp(val, "off") &&
                strcmp(val, "no") && *val)
                return front_fatal(cfg, c, out, "0A000",
                                   "replication connections are not supported");
        } else if (strncmp(name, "_pq_.", 5) == 0) {
            if (nunrec < 32)
                unrecognized[nunrec++] = name;
        } else if (keep_param(c, name, val) != 0) {
            return front_fatal(cfg, c, out, "53200", "out of memory");
        }
    }
    if (r < 0)
        return front_fatal(cfg, c, out, "08P01",
                           "invalid startup packet layout: expected terminator as last byte");
    if (!c->user || !*c->user)
        return front_fatal(cfg, c, out, "28000",
                           "no PostgreSQL user name specified in startup packet");
    if (!c->database || !*c->database) {
        free(c->database);
        if (!(c->database = strdup(c->user)))
            return front_fatal(cfg, c, out, "53200", "out of memory");
    }
    c->minor = minor > WIRE_PROTOCOL_LATEST_MINOR ? WIRE_PROTOCOL_LATEST_MINOR : (int)minor;
    if (minor > WIRE_PROTOCOL_LATEST_MINOR || nunrec)
        wire_negotiate_protocol(out, (uint32_t)c->minor, unrecognized, nunrec);
    consume(c, plen);
    if (cfg->auth == AUTH_TRUST)
        return FRONT_READY;
    c->state = CONN_SECRET; /* the role's own password */
    return FRONT_SECRET;
}

static frontdoor_result auth_failed(const frontdoor_cfg *cfg, conn *c, wire_buf *out) {
    char m[200];
    snprintf(m, sizeof m, "password authentication failed for user \"%s\"", c->user);
    return front_fatal(cfg, c, out, "28P01", m);
}

/* A PasswordMessage, SASLInitialResponse or SASLResponse. */
static frontdoor_result handle_password(const frontdoor_cfg *cfg, conn *c, wire_buf *out,
                                        const wire_msg *m) {
    if (c->state == CONN_PASSWORD) {
        const char *pw;
        if (wire_password_message(m, &pw) != 0)
            return front_fatal(cfg, c, out, "08P01", "invalid password packet size");
        int ok = cfg->auth == AUTH_MD5 ? role_secret_check_md5(&c->secret, c->md5_salt, pw)
                                       : role_secret_check_plain(&c->secret, c->user, pw);
        return ok ? FRONT_READY : auth_failed(cfg, c, out);
    }
    char why[200], reply[1200];
    if (c->state == CONN_SASL_INIT) {
        const char *mech;
        const uint8_t *data;
        size_t n;
        if (!memchr(m->body, 0, m->len))
            return front_fatal(cfg, c, out, "08P01", "malformed SASL message");
        if (strcmp((const char *)m->body, SCRAM_MECHANISM) != 0)
            return front_fatal(cfg, c, out, "08P01",
                               "client selected an invalid SASL authentication mechanism");
        if (wire_sasl_initial_response(m, &mech, &data, &n) != 0)
            return front_fatal(cfg, c, out, "08P01", "malformed SASL message");
        c->scram = calloc(1, sizeof *c->scram);
        if (!c->scram)
            return front_fatal(cfg, c, out, "53200", "out of memory");
        if (scram_server_first(c->scram, &c->secret.scram, data, n, reply, sizeof reply, why,
                               sizeof why) != 0)
            return front_fatal(cfg, c, out, "08P01", why);
        c->state = CONN_SASL_FINAL;
        wire_auth_request(out, AUTH_REQ_SASL_CONT, reply, strlen(reply));
        return FRONT_MORE;
    }
    if (c->state == CONN_SASL_FINAL) {
        int r = scram_server_final(c->scram, &c->secret.scram, m->body, m->len, reply,
                                   sizeof reply, why, sizeof why);
        if (r < 0)
            return front_fatal(cfg, c, out, "08P01", why);
        if (r == 0 || c->secret.kind != ROLE_SCRAM)
            return auth_failed(cfg, c, out);
        wire_auth_request(out, AUTH_REQ_SASL_FIN, reply, strlen(reply));
        return FRONT_READY;
    }
    return FRONT_CLOSE;
}

/* The first packet, or the one after an 'N'. */
static frontdoor_result first_packet(const frontdoor_cfg *cfg, conn *c, wire_buf *out,
                                     int *again) {
    *again = 0;
    if (c->len < 4)
        return FRONT_MORE;
    uint32_t plen = wire_be32(c->buf);
    if (plen < 8 || plen > WIRE_MAX_STARTUP_PACKET)
        /* PostgreSQL's COMMERROR: clients rely on the quiet close. One that
         * gives up before its startup packet sends Terminate (X\0\0\0\4,
         * read as a length of 0x58000000). */
        return front_commerror(cfg, c, "invalid length of startup packet");
    if (c->len < plen)
        return FRONT_MORE;
    uint32_t code = wire_packet_code(c->buf);
    if (code == WIRE_CANCEL_REQUEST) {
        const uint8_t *key;
        if (wire_cancel_request(c->buf, plen, &c->cancel_pid, &key, &c->cancel_keylen) != 0)
            return front_commerror(cfg, c, "invalid length of cancel request packet");
        memcpy(c->cancel_key, key, c->cancel_keylen);
        return FRONT_CANCEL;
    }
    if ((code == WIRE_SSL_REQUEST && !c->ssl_done) ||
        (code == WIRE_GSSENC_REQUEST && !c->gss_done)) {
        consume(c, plen); /* PostgreSQL ignores what a longer request carries */
        if (c->len)
            return front_fatal(cfg, c, out, "08P01",
                               code == WIRE_SSL_REQUEST
                                   ? "received unencrypted data after SSL request"
                                   : "received unencrypted data after GSSAPI encryption request");
        if (code == WIRE_SSL_REQUEST && cfg->tls && c->tcp) {
            wire_put_u8(out, 'S'); /* the caller begins TLS */
            return FRONT_TLS;
        }
        if (code == WIRE_SSL_REQUEST)
            c->ssl_done = 1;
        else
            c->gss_done = 1;
        wire_put_u8(out, 'N'); /* no encryption: not a message, one byte */
        *again = 1;
        return FRONT_MORE;
    }
    frontdoor_result r = handle_startup(cfg, c, out, plen, code);
    *again = r == FRONT_MORE;
    return r;
}

frontdoor_result frontdoor_process(const frontdoor_cfg *cfg, conn *c, wire_buf *out) {
    for (;;) {
        if (out->oom)
            return FRONT_CLOSE;
        if (c->state == CONN_STARTUP) {
            int again;
            frontdoor_result r = first_packet(cfg, c, out, &again);
            if (!again)
                return r;
            continue;
        }
        if (c->state == CONN_SECRET) {
            if (!c->have_secret)
                return FRONT_SECRET;
            frontdoor_result r = ask_password(cfg, c, out);
            if (r != FRONT_MORE)
                return r;
            continue;
        }
        char why[128];
        long n = wire_frame(c->buf, c->len, WIRE_FROM_AUTH, why, sizeof why);
        if (n < 0)
            return front_fatal(cfg, c, out, "08P01", why);
        if (n == 0)
            return FRONT_MORE;
        /* a copy: handle_password may make c ready, after which its buffer
         * keeps only what follows */
        wire_msg m = {.type = (char)c->buf[0], .len = (uint32_t)n - 5};
        uint8_t *body = malloc(m.len ? m.len : 1);
        if (!body)
            return front_fatal(cfg, c, out, "53200", "out of memory");
        memcpy(body, c->buf + 5, m.len);
        m.body = body;
        consume(c, (size_t)n);
        frontdoor_result r = handle_password(cfg, c, out, &m);
        OPENSSL_cleanse(body, m.len);
        free(body);
        if (r != FRONT_MORE)
            return r;
    }
}
