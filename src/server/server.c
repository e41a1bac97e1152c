/* The socket server: listening sockets, the front door (startup, SSL/GSS
 * refusal, cancel, authentication) and the waiting queue. The session
 * thread (session.c) serves queued clients one at a time. */
#define _GNU_SOURCE
#include "server/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FRONT_BUF_MAX (MAX_STARTUP_PACKET_LENGTH + MAX_AUTH_TOKEN_LENGTH + 64)

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

void srv_log(server *s, server_log_level level, const char *fmt, ...) {
    if (level > s->log_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->log) {
        s->log(s->log_ctx, level, line);
        return;
    }
    fprintf(stderr, "pglite-server: %s: %s\n", level_name(level), line);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void srv_put_error(wire_buf *w, const char *severity, const char *code, const char *msg,
                   const char *detail, const char *hint) {
    size_t off = wire_begin(w, 'E');
    wire_put_u8(w, 'S');
    wire_put_str(w, severity);
    wire_put_u8(w, 'V');
    wire_put_str(w, severity);
    wire_put_u8(w, 'C');
    wire_put_str(w, code);
    wire_put_u8(w, 'M');
    wire_put_str(w, msg);
    if (detail && *detail) {
        wire_put_u8(w, 'D');
        wire_put_str(w, detail);
    }
    if (hint && *hint) {
        wire_put_u8(w, 'H');
        wire_put_str(w, hint);
    }
    wire_put_u8(w, 0);
    wire_end(w, off);
}

/* Write with a short deadline, for small front-door messages. */
static int send_small(int fd, const void *data, size_t n) {
    const uint8_t *p = data;
    int64_t deadline = srv_now_ms() + 1000;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int64_t left = deadline - srv_now_ms();
            if (left <= 0)
                return -1;
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            poll(&pf, 1, (int)left);
            continue;
        }
        return -1;
    }
    return 0;
}

void srv_send_fatal(int fd, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wire_buf w;
    wire_buf_init(&w);
    srv_put_error(&w, "FATAL", code, msg, NULL, NULL);
    if (!w.oom)
        send_small(fd, w.data, w.len);
    wire_buf_free(&w);
}

int srv_send_all(server *s, int fd, const void *data, size_t n) {
    const uint8_t *p = data;
    int64_t stuck_since = 0;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            stuck_since = 0;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* A client that does not read holds the backend, as with
             * PostgreSQL; only a shutdown gives up on it (after 5 s). */
            struct pollfd pf[2] = {{.fd = fd, .events = POLLOUT},
                                   {.fd = s->stop_pipe[0], .events = POLLIN}};
            int k = poll(pf, 2, 1000);
            if (k > 0 && (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL)) &&
                !(pf[0].revents & POLLOUT))
                return -1;
            if (pf[1].revents & POLLIN) {
                int64_t now = srv_now_ms();
                if (!stuck_since)
                    stuck_since = now;
                else if (now - stuck_since > 5000)
                    return -1;
            }
            continue;
        }
        return -1;
    }
    return 0;
}

void srv_conn_free(conn *c) {
    if (!c)
        return;
    if (c->fd >= 0) {
        /* at once, even if another thread still polls this fd */
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
    }
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
    free(c);
}

static void consume(conn *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* ---- the front door --------------------------------------------------------- */

/* A front-door failure: FATAL to the client, a log line. Returns -1. */
static int front_fatal(server *s, conn *c, const char *code, const char *msg) {
    srv_log(s, SERVER_LOG_INFO, "connection from %s refused: %s (%s)", c->peer, msg, code);
    srv_send_fatal(c->fd, code, "%s", msg);
    return -1;
}

static void handle_cancel(server *s, conn *c, uint32_t plen) {
    /* pid, then the key: 4 bytes (3.0) or up to 256 (3.2) */
    if (plen < 16 || plen > 12 + 256) {
        srv_log(s, SERVER_LOG_DEBUG, "malformed cancel request from %s", c->peer);
        return;
    }
    int32_t pid = (int32_t)be32(c->buf + 8);
    const uint8_t *key = c->buf + 12;
    size_t keylen = plen - 12;
    int done = 0;
    pthread_mutex_lock(&s->mu);
    if (s->cancel_active && s->be && pid == s->cancel_pid && keylen == s->cancel_keylen &&
        CRYPTO_memcmp(key, s->cancel_key, keylen) == 0) {
        backend_cancel(s->be);
        done = 1;
    }
    pthread_mutex_unlock(&s->mu);
    srv_log(s, SERVER_LOG_DEBUG, "cancel request from %s: %s", c->peer,
            done ? "sent" : "no matching session");
}

static int put_auth(conn *c, uint32_t code, const void *extra, size_t n) {
    wire_buf w;
    wire_buf_init(&w);
    size_t off = wire_begin(&w, 'R');
    wire_put_u32(&w, code);
    if (n)
        wire_put(&w, extra, n);
    wire_end(&w, off);
    int rc = w.oom ? -1 : send_small(c->fd, w.data, w.len);
    wire_buf_free(&w);
    return rc;
}

/* Hand an authenticated client to the queue. 0, or -1 (refused: the
 * caller frees c). */
static int enqueue(server *s, conn *c) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return front_fatal(s, c, "57P01", "terminating connection due to administrator command");
    }
    if (s->nqueued >= s->max_waiting) {
        pthread_mutex_unlock(&s->mu);
        return front_fatal(s, c, "53300", "sorry, too many clients already");
    }
    c->state = CONN_QUEUED;
    c->deadline = srv_now_ms() + s->wait_timeout_ms;
    c->next = NULL;
    if (s->qtail)
        s->qtail->next = c;
    else
        s->qhead = c;
    s->qtail = c;
    s->nqueued++;
    int waiting = s->nqueued;
    char peer[sizeof c->peer];
    memcpy(peer, c->peer, sizeof peer);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* c may be the session thread's already */
    srv_log(s, SERVER_LOG_DEBUG, "client %s queued (%d waiting)", peer, waiting);
    return 0;
}

static char *dup_name(const char *v) {
    /* PostgreSQL truncates user and database names to NAMEDATALEN-1. */
    return strndup(v, NAMEDATALEN - 1);
}

/* The startup packet (c->buf[0..plen)). 0 to keep going (auth), 2
 * authenticated, -1 refused. */
static int handle_startup(server *s, conn *c, uint32_t plen, uint32_t code) {
    uint32_t major = code >> 16, minor = code & 0xffff;
    if (major != 3) {
        char m[160];
        snprintf(m, sizeof m, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.%d",
                 major, minor, PROTOCOL_LATEST_MINOR);
        return front_fatal(s, c, "0A000", m);
    }
    static const char layout[] = "invalid startup packet layout: expected terminator as last byte";
    const char *p = (const char *)c->buf + 8, *end = (const char *)c->buf + plen;
    if (plen <= 8 || end[-1] != 0)
        return front_fatal(s, c, "08P01", layout);
    const char *unrecognized[32];
    int nunrec = 0;
    for (;;) {
        /* name NUL value NUL ... NUL; end[-1] is NUL so strlen stays inside */
        if (*p == 0) {
            if (p != end - 1)
                return front_fatal(s, c, "08P01", layout);
            break;
        }
        const char *name = p;
        p += strlen(p) + 1;
        if (p >= end)
            return front_fatal(s, c, "08P01", layout);
        const char *val = p;
        p += strlen(p) + 1;
        if (p >= end)
            return front_fatal(s, c, "08P01", layout);
        if (strcmp(name, "user") == 0) {
            free(c->user);
            if (!(c->user = dup_name(val)))
                return front_fatal(s, c, "53200", "out of memory");
        } else if (strcmp(name, "database") == 0) {
            free(c->database);
            if (!(c->database = dup_name(val)))
                return front_fatal(s, c, "53200", "out of memory");
        } else if (strcmp(name, "options") == 0) {
            free(c->options);
            if (!(c->options = strdup(val)))
                return front_fatal(s, c, "53200", "out of memory");
        } else if (strcmp(name, "replication") == 0) {
            if (strcmp(val, "false") && strcmp(val, "0") && strcmp(val, "off") &&
                strcmp(val, "no") && *val)
                return front_fatal(s, c, "0A000", "replication connections are not supported");
        } else if (strncmp(name, "_pq_.", 5) == 0) {
            if (nunrec < 32)
                unrecognized[nunrec++] = name;
        } else {
            char **g = realloc(c->gucs, (c->ngucs + 1) * 2 * sizeof *g);
            if (!g)
                return front_fatal(s, c, "53200", "out of memory");
            c->gucs = g;
            g[2 * c->ngucs] = strdup(name);
            g[2 * c->ngucs + 1] = strdup(val);
            c->ngucs++; /* counted even when NULL: srv_conn_free frees both */
            if (!g[2 * c->ngucs - 2] || !g[2 * c->ngucs - 1])
                return front_fatal(s, c, "53200", "out of memory");
        }
    }
    if (!c->user || !*c->user)
        return front_fatal(s, c, "28000", "no PostgreSQL user name specified in startup packet");
    if (!c->database || !*c->database) {
        free(c->database);
        c->database = strdup(c->user);
    }
    if (!c->user || !c->database)
        return front_fatal(s, c, "53200", "out of memory");
    c->minor = minor > PROTOCOL_LATEST_MINOR ? PROTOCOL_LATEST_MINOR : (int)minor;
    if (minor > PROTOCOL_LATEST_MINOR || nunrec) {
        /* NegotiateProtocolVersion: the newest minor we speak, and the
         * protocol options we do not know. */
        wire_buf w;
        wire_buf_init(&w);
        size_t off = wire_begin(&w, 'v');
        wire_put_u32(&w, 3u << 16 | (uint32_t)c->minor);
        wire_put_u32(&w, (uint32_t)nunrec);
        for (int i = 0; i < nunrec; i++)
            wire_put_str(&w, unrecognized[i]);
        wire_end(&w, off);
        int rc = w.oom ? -1 : send_small(c->fd, w.data, w.len);
        wire_buf_free(&w);
        if (rc != 0)
            return -1;
    }
    consume(c, plen);
    switch (s->auth) {
    case AUTH_TRUST:
        return 2;
    case AUTH_SCRAM: {
        static const char mech[] = SCRAM_MECHANISM "\0"; /* list, empty-terminated */
        c->state = CONN_SASL_INIT;
        return put_auth(c, 10, mech, sizeof mech) == 0 ? 0 : -1;
    }
    case AUTH_MD5:
        if (auth_random(c->md5_salt, 4) != 0)
            return front_fatal(s, c, "XX000", "could not generate a random salt");
        c->state = CONN_PASSWORD;
        return put_auth(c, 5, c->md5_salt, 4) == 0 ? 0 : -1;
    case AUTH_PASSWORD:
        c->state = CONN_PASSWORD;
        return put_auth(c, 3, NULL, 0) == 0 ? 0 : -1;
    }
    return -1;
}

static int auth_failed(server *s, conn *c) {
    char m[200];
    snprintf(m, sizeof m, "password authentication failed for user \"%s\"", c->user);
    return front_fatal(s, c, "28P01", m);
}

/* A PasswordMessage / SASL message body. 0 keep going, 2 authenticated,
 * -1 refused. */
static int handle_password(server *s, conn *c, const uint8_t *body, size_t n) {
    if (c->state == CONN_PASSWORD) {
        if (n == 0 || body[n - 1] != 0 || memchr(body, 0, n) != body + n - 1)
            return front_fatal(s, c, "08P01", "invalid password packet size");
        const char *pw = (const char *)body;
        int ok = s->auth == AUTH_MD5 ? auth_md5_ok(c->user, s->password, c->md5_salt, pw)
                                     : auth_str_equal(pw, s->password);
        return ok ? 2 : auth_failed(s, c);
    }
    char why[200], out[1200];
    if (c->state == CONN_SASL_INIT) {
        const uint8_t *nul = memchr(body, 0, n);
        if (!nul)
            return front_fatal(s, c, "08P01", "malformed SASL message");
        if (strcmp((const char *)body, SCRAM_MECHANISM) != 0)
            return front_fatal(s, c, "08P01",
                               "client selected an invalid SASL authentication mechanism");
        size_t at = (size_t)(nul - body) + 1;
        if (n - at < 4)
            return front_fatal(s, c, "08P01", "malformed SASL message");
        int32_t dl = (int32_t)be32(body + at);
        at += 4;
        if (dl < 0 || (size_t)dl != n - at)
            return front_fatal(s, c, "08P01", "malformed SASL message");
        c->scram = calloc(1, sizeof *c->scram);
        if (!c->scram)
            return front_fatal(s, c, "53200", "out of memory");
        if (scram_server_first(c->scram, &s->scram, body + at, (size_t)dl, out, sizeof out, why,
                               sizeof why) != 0)
            return front_fatal(s, c, "08P01", why);
        c->state = CONN_SASL_FINAL;
        return put_auth(c, 11, out, strlen(out)) == 0 ? 0 : -1;
    }
    if (c->state == CONN_SASL_FINAL) {
        int r = scram_server_final(c->scram, &s->scram, body, n, out, sizeof out, why, sizeof why);
        if (r < 0)
            return front_fatal(s, c, "08P01", why);
        if (r == 0)
            return auth_failed(s, c);
        return put_auth(c, 12, out, strlen(out)) == 0 ? 2 : -1;
    }
    return -1;
}

/* Handle what is buffered. 0 keep the connection, 2 authenticated (to be
 * queued), -1 close it. */
static int front_process(server *s, conn *c) {
    for (;;) {
        if (c->state == CONN_STARTUP) {
            if (c->len < 4)
                return 0;
            uint32_t plen = be32(c->buf);
            if (plen < 8 || plen > MAX_STARTUP_PACKET_LENGTH) {
                /* PostgreSQL's COMMERROR: logged, the connection closed with
                 * no reply. Clients rely on it: one that gives up before
                 * the startup packet sends Terminate (X\0\0\0\4, read as
                 * a length of 0x58000000) and expects a quiet close. */
                srv_log(s, SERVER_LOG_INFO, "connection from %s closed: invalid length of startup packet",
                        c->peer);
                return -1;
            }
            if (c->len < 8)
                return 0;
            uint32_t code = be32(c->buf + 4);
            if (code == WIRE_CANCEL_REQUEST) {
                if (c->len < plen)
                    return 0;
                handle_cancel(s, c, plen);
                return -1;
            }
            if ((code == WIRE_SSL_REQUEST && !c->ssl_done) ||
                (code == WIRE_GSSENC_REQUEST && !c->gss_done)) {
                if (c->len < plen)
                    return 0;
                consume(c, plen); /* PostgreSQL ignores what a longer request carries */
                if (c->len)
                    return front_fatal(s, c, "08P01",
                                       code == WIRE_SSL_REQUEST
                                           ? "received unencrypted data after SSL request"
                                           : "received unencrypted data after GSSAPI encryption request");
                if (code == WIRE_SSL_REQUEST)
                    c->ssl_done = 1;
                else
                    c->gss_done = 1;
                if (send_small(c->fd, "N", 1) != 0)
                    return -1;
                continue;
            }
            if (c->len < plen)
                return 0;
            int r = handle_startup(s, c, plen, code);
            if (r != 0)
                return r;
            continue;
        }
        /* PasswordMessage / SASLInitialResponse / SASLResponse */
        if (c->len < 5)
            return 0;
        if (c->buf[0] != 'p') {
            char m[100];
            snprintf(m, sizeof m, "expected password response, got message type %d", c->buf[0]);
            return front_fatal(s, c, "08P01", m);
        }
        uint32_t len = be32(c->buf + 1);
        if (len < 4 || len > MAX_AUTH_TOKEN_LENGTH + 4)
            return front_fatal(s, c, "08P01", "invalid message length");
        if (c->len < (size_t)len + 1)
            return 0;
        /* copy: handle_password may queue c, after which its buffer keeps
         * only what follows */
        size_t n = len - 4;
        uint8_t *body = malloc(n ? n : 1);
        if (!body)
            return front_fatal(s, c, "53200", "out of memory");
        memcpy(body, c->buf + 5, n);
        consume(c, (size_t)len + 1);
        int r = handle_password(s, c, body, n);
        OPENSSL_cleanse(body, n);
        free(body);
        if (r != 0)
            return r;
    }
}

/* Data (or EOF) on a front-door connection. */
static int front_read(server *s, conn *c) {
    for (;;) {
        if (c->len == c->cap) {
            if (c->cap >= FRONT_BUF_MAX)
                return front_fatal(s, c, "08P01", "invalid startup packet");
            size_t cap = c->cap ? c->cap * 2 : 1024;
            if (cap > FRONT_BUF_MAX)
                cap = FRONT_BUF_MAX;
            uint8_t *b = realloc(c->buf, cap);
            if (!b)
                return -1;
            c->buf = b;
            c->cap = cap;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (r > 0) {
            c->len += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or error: libpq closes after 'N' when sslmode=require, and
         * probes close at once; nothing to answer. */
        srv_log(s, SERVER_LOG_DEBUG, "connection from %s closed during startup", c->peer);
        return -1;
    }
    return front_process(s, c);
}

static void describe_peer(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t n) {
    if (ss->ss_family == AF_UNIX) {
        snprintf(out, n, "[local]");
        return;
    }
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, n, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    else
        snprintf(out, n, "?");
}

/* Remove c from the front-door list. */
static void front_unlink(conn **front, conn *c) {
    conn **pp = front;
    while (*pp && *pp != c)
        pp = &(*pp)->fnext;
    if (*pp)
        *pp = c->fnext;
}

static void *listener_main(void *arg) {
    server *s = arg;
    conn *front = NULL; /* the front door's connections (fnext links) */
    int nfront = 0;
    uint64_t serial = 0;
    struct pollfd *pf = NULL;
    conn **pc = NULL;
    uint64_t *pid = NULL;
    size_t pcap = 0;
    for (;;) {
        /* Poll: the stop pipe, the listeners, front-door connections for
         * input, queued ones for the client going away. */
        pthread_mutex_lock(&s->mu);
        size_t need = 2 + (size_t)s->nlisten + (size_t)nfront + (size_t)s->nqueued;
        if (need > pcap) {
            size_t cap = need * 2;
            struct pollfd *npf = realloc(pf, cap * sizeof *pf);
            if (npf)
                pf = npf;
            conn **npc = realloc(pc, cap * sizeof *pc);
            if (npc)
                pc = npc;
            uint64_t *npid = realloc(pid, cap * sizeof *pid);
            if (npid)
                pid = npid;
            if (npf && npc && npid)
                pcap = cap;
        }
        size_t k = 0, fstart = 2 + (size_t)s->nlisten, qstart = fstart;
        int64_t now = srv_now_ms(), next = now + 60000;
        if (pcap >= need) {
            pf[k] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
            pc[k++] = NULL;
            pf[k] = (struct pollfd){.fd = s->wake_pipe[0], .events = POLLIN};
            pc[k++] = NULL;
            for (int i = 0; i < s->nlisten; i++) {
                pf[k] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
                pc[k++] = NULL;
            }
            for (conn *c = front; c; c = c->fnext) {
                pf[k] = (struct pollfd){.fd = c->fd, .events = POLLIN};
                pid[k] = c->id;
                pc[k++] = c;
                if (c->deadline < next)
                    next = c->deadline;
            }
            qstart = k;
            for (conn *c = s->qhead; c; c = c->next) {
                pf[k] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
                pid[k] = c->id;
                pc[k++] = c;
                if (c->deadline < next)
                    next = c->deadline;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (k == 0) { /* out of memory for the poll set: try again soon */
            struct timespec d = {0, 50 * 1000 * 1000};
            nanosleep(&d, NULL);
            continue;
        }
        int timeout = next > now ? (int)(next - now) : 0;
        int nready = poll(pf, k, timeout);
        if (nready < 0 && errno != EINTR)
            break;
        if (pf[0].revents)
            break; /* stopping */
        if (pf[1].revents) { /* the session thread took a client: poll afresh */
            char drain[64];
            while (read(s->wake_pipe[0], drain, sizeof drain) > 0)
                ;
        }
        now = srv_now_ms();
        /* new connections */
        for (int i = 0; i < s->nlisten; i++) {
            if (!(pf[2 + i].revents & POLLIN))
                continue;
            for (;;) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                int fd = accept4(s->lfd[i], (struct sockaddr *)&ss, &sl,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* out of descriptors: the backlog waits, we do not spin */
                        srv_log(s, SERVER_LOG_WARNING, "accept: %s", strerror(errno));
                        struct timespec d = {0, 100 * 1000 * 1000};
                        nanosleep(&d, NULL);
                    }
                    break; /* EAGAIN: the next poll */
                }
                char peer[128];
                describe_peer(&ss, sl, peer, sizeof peer);
                if (ss.ss_family != AF_UNIX) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
                }
                conn *c = nfront < s->max_startup ? calloc(1, sizeof *c) : NULL;
                if (!c) {
                    srv_log(s, SERVER_LOG_WARNING, "connection from %s refused: %d connecting already",
                            peer, nfront);
                    srv_send_fatal(fd, "53300", "sorry, too many clients already");
                    close(fd);
                    continue;
                }
                c->fd = fd;
                c->id = ++serial;
                snprintf(c->peer, sizeof c->peer, "%s", peer);
                c->since = now;
                c->deadline = now + s->startup_timeout_ms;
                c->fnext = front;
                front = c;
                nfront++;
                srv_log(s, SERVER_LOG_DEBUG, "connection from %s", peer);
            }
        }
        /* front door: input and timeouts (these conns are ours alone) */
        for (size_t j = fstart; j < qstart; j++) {
            conn *c = pc[j];
            int r = 0;
            if (pf[j].revents)
                r = front_read(s, c);
            else if (c->deadline <= now) {
                srv_log(s, SERVER_LOG_INFO, "connection from %s: timeout during startup", c->peer);
                srv_send_fatal(c->fd, "08P01", "canceling authentication due to timeout");
                r = -1;
            }
            if (r == 0)
                continue;
            front_unlink(&front, c);
            nfront--;
            if (r == 2 && enqueue(s, c) == 0)
                continue; /* the queue's now */
            srv_conn_free(c);
        }
        /* queue: clients that left or waited too long, if still queued (the
         * session thread may have taken and even freed them meanwhile) */
        pthread_mutex_lock(&s->mu);
        for (size_t j = qstart; j < k; j++) {
            conn **pp = &s->qhead, *prev = NULL;
            while (*pp && (*pp != pc[j] || (*pp)->id != pid[j])) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            conn *c = *pp;
            if (!c)
                continue;
            int gone = (pf[j].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
            int late = c->deadline <= now;
            if (!gone && !late)
                continue;
            *pp = c->next;
            if (s->qtail == c)
                s->qtail = prev;
            s->nqueued--;
            if (!gone) {
                srv_log(s, SERVER_LOG_INFO,
                        "client %s (user %s) waited %d ms for the database: turned away",
                        c->peer, c->user, s->wait_timeout_ms);
                srv_send_fatal(c->fd, "53300", "sorry, too many clients already");
            } else {
                srv_log(s, SERVER_LOG_INFO, "client %s left while waiting", c->peer);
            }
            srv_conn_free(c);
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* Stopping: no new clients; turn away those connecting and waiting. */
    for (int i = 0; i < s->nlisten; i++) {
        close(s->lfd[i]);
        s->lfd[i] = -1;
    }
    if (s->unix_bound) {
        unlink(s->unix_path);
        s->unix_bound = 0;
    }
    while (front) {
        conn *c = front;
        front = c->fnext;
        srv_send_fatal(c->fd, "57P01", "terminating connection due to administrator command");
        srv_conn_free(c);
    }
    pthread_mutex_lock(&s->mu);
    while (s->qhead) {
        conn *c = s->qhead;
        s->qhead = c->next;
        srv_send_fatal(c->fd, "57P01", "terminating connection due to administrator command");
        srv_conn_free(c);
    }
    s->qtail = NULL;
    s->nqueued = 0;
    pthread_mutex_unlock(&s->mu);
    free(pf);
    free(pc);
    free(pid);
    return NULL;
}

/* ---- sockets ---------------------------------------------------------------- */

static int listen_unix(server *s, const char *path, int port, char *err, size_t errlen) {
    struct stat st;
    char file[sizeof s->unix_path + 32];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/.s.PGSQL.%d", path, port);
    else
        snprintf(file, sizeof file, "%s", path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(file) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "Unix socket path \"%s\" is too long (maximum %zu bytes)", file,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, file, strlen(file) + 1); /* fits: checked above */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EADDRINUSE) {
            snprintf(err, errlen, "could not bind Unix socket \"%s\": %s", file, strerror(errno));
            close(fd);
            return -1;
        }
        /* A file is there: in use if someone answers, else a stale socket. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            snprintf(err, errlen, "could not bind Unix socket \"%s\": another server is listening there",
                     file);
            close(fd);
            return -1;
        }
        if (lstat(file, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(file);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            snprintf(err, errlen, "could not bind Unix socket \"%s\": %s", file, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (listen(fd, 64) != 0) {
        snprintf(err, errlen, "listen on \"%s\": %s", file, strerror(errno));
        close(fd);
        unlink(file);
        return -1;
    }
    memcpy(s->unix_path, file, strlen(file) + 1); /* as long as sun_path at most */
    s->unix_bound = 1;
    s->lfd[s->nlisten++] = fd;
    return 0;
}

static int listen_tcp(server *s, const char *host, int port, int trust_remote, char *err,
                      size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (!*host)
        host = SERVER_LOOPBACK_HOST;
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "could not resolve \"%s\": %s", host, gai_strerror(g));
        return -1;
    }
    /* Trust on an address others can reach makes every client on the
     * network a superuser: only when asked for by name. */
    if (s->auth == AUTH_TRUST && !trust_remote) {
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            if (server_address_is_loopback(a->ai_addr))
                continue;
            snprintf(err, errlen,
                     "refusing to listen on %s:%d with trust authentication: it is not a "
                     "loopback address, so any client that reaches it would log in as a "
                     "superuser without a password. Set a password (pglite-proxy --password), "
                     "or allow it explicitly (pglite-proxy --trust-remote, "
                     "server_options.trust_remote)",
                     host, port);
            freeaddrinfo(res);
            return -1;
        }
    }
    int bound = 0;
    char last[256] = "no addresses";
    for (struct addrinfo *a = res; a && s->nlisten < MAX_LISTEN; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bound && s->tcp_port > 0) { /* the others on the port the first got */
            if (a->ai_family == AF_INET)
                ((struct sockaddr_in *)a->ai_addr)->sin_port = htons((uint16_t)s->tcp_port);
            else if (a->ai_family == AF_INET6)
                ((struct sockaddr_in6 *)a->ai_addr)->sin6_port = htons((uint16_t)s->tcp_port);
        }
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            snprintf(last, sizeof last, "%s", strerror(errno));
            close(fd);
            continue;
        }
        if (!bound) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            s->tcp_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
        }
        s->lfd[s->nlisten++] = fd;
        bound++;
    }
    freeaddrinfo(res);
    if (!bound) {
        snprintf(err, errlen, "could not listen on %s:%d: %s", host, port, last);
        return -1;
    }
    return 0;
}

/* Percent-encode for a URI component. */
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
        snprintf(s->uri, sizeof s->uri, "postgresql://%s@%s:%d/%s?sslmode=disable", user, hb,
                 s->tcp_port, db);
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
    if (s->wake_pipe[0] >= 0)
        close(s->wake_pipe[0]);
    if (s->wake_pipe[1] >= 0)
        close(s->wake_pipe[1]);
    for (int i = 0; i < s->nparams; i++) {
        free(s->params[i].name);
        free(s->params[i].value);
    }
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
    free(s->be_db);
    OPENSSL_cleanse(&s->scram, sizeof s->scram);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
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
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->stop_pipe[0] = s->stop_pipe[1] = s->wake_pipe[0] = s->wake_pipe[1] = -1;
    s->tcp_port = -1;
    s->data_dir = strdup(o->data_dir ? o->data_dir : "(borrowed backend)");
    if (o->backend) {
        s->borrowed = 1;
        s->be = o->backend;
        s->acquire = o->acquire;
        s->release = o->release;
        s->lock_ctx = o->lock_ctx;
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
    s->max_waiting = o->max_waiting > 0 ? o->max_waiting : 32;
    s->wait_timeout_ms = o->wait_timeout_ms > 0 ? o->wait_timeout_ms : 30000;
    s->startup_timeout_ms = o->startup_timeout_ms > 0 ? o->startup_timeout_ms : 10000;
    s->max_startup = o->max_startup > 0 ? o->max_startup : 64;
    s->log_level = o->log_level ? o->log_level : SERVER_LOG_INFO;
    s->log = o->log;
    s->log_ctx = o->log_ctx;
    if (!s->data_dir || !s->user || !s->database || !gucs_ok) {
        snprintf(err, errlen, "out of memory");
        server_free(s);
        return -1;
    }
    if (strlen(s->user) >= NAMEDATALEN || strlen(s->database) >= NAMEDATALEN) {
        snprintf(err, errlen, "user and database names are at most %d bytes", NAMEDATALEN - 1);
        server_free(s);
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
            server_free(s);
            return -1;
        }
        s->password = strdup(o->password);
        if (!s->password || scram_make_secret(s->password, &s->scram) != 0) {
            snprintf(err, errlen, "cannot prepare the password verifier");
            server_free(s);
            return -1;
        }
    }
    for (int i = 0; i < MAX_LISTEN; i++)
        s->lfd[i] = -1;
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0 ||
        pipe2(s->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        server_free(s);
        return -1;
    }
    /* Sockets first: a taken port fails fast, before the database starts. */
    if (o->tcp_host && listen_tcp(s, o->tcp_host, o->tcp_port, o->trust_remote, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    if (o->unix_path &&
        listen_unix(s, o->unix_path, s->tcp_port > 0 ? s->tcp_port : 5432, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    if (session_bootstrap(s, err, errlen) != 0) {
        server_free(s);
        return -1;
    }
    make_uri(s, o->tcp_host);
    if (pthread_create(&s->session, NULL, session_main, s) != 0) {
        snprintf(err, errlen, "cannot start the session thread");
        session_stop_backend(s);
        server_free(s);
        return -1;
    }
    s->session_started = 1;
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
    if (s->cancel_active && s->be)
        backend_cancel(s->be); /* roll back rather than wait for a long statement */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    ssize_t w;
    do
        w = write(s->stop_pipe[1], "x", 1);
    while (w < 0 && errno == EINTR);
    if (s->listener_started)
        pthread_join(s->listener, NULL);
    if (s->session_started)
        pthread_join(s->session, NULL);
    session_stop_backend(s);
    srv_log(s, SERVER_LOG_DEBUG, "stopped");
    server_free(s);
}

/* ---- fuzzing ----------------------------------------------------------------- */

static void fuzz_log(void *ctx, server_log_level level, const char *line) {
    (void)ctx;
    (void)level;
    (void)line;
}

int server_fuzz_front_door(const uint8_t *data, size_t n, int auth, size_t chunk, int fd) {
    static server *s[4];
    if (auth < 0 || auth > 3)
        auth = 0;
    if (!s[auth]) {
        server *t = calloc(1, sizeof *t);
        if (!t)
            return -1;
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
        t->stop_pipe[0] = t->stop_pipe[1] = t->wake_pipe[0] = t->wake_pipe[1] = -1;
        t->tcp_port = -1;
        t->user = strdup("postgres");
        t->database = strdup("postgres");
        t->max_waiting = 1;
        t->wait_timeout_ms = 1000;
        t->log_level = SERVER_LOG_DEBUG; /* format every line, print none */
        t->log = fuzz_log;
        t->auth = (enum auth_kind)auth;
        if (auth != AUTH_TRUST) {
            t->password = strdup("secret");
            if (!t->password || scram_make_secret(t->password, &t->scram) != 0)
                return -1;
        }
        s[auth] = t;
    }
    server *sv = s[auth];
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->fd = fd;
    c->state = CONN_STARTUP;
    snprintf(c->peer, sizeof c->peer, "[fuzz]");
    if (!chunk)
        chunk = n ? n : 1;
    int r = 0;
    size_t off = 0;
    do {
        size_t k = n - off < chunk ? n - off : chunk;
        if (c->len + k > c->cap) {
            size_t cap = c->len + k;
            uint8_t *b = realloc(c->buf, cap ? cap : 1);
            if (!b) {
                r = -1;
                break;
            }
            c->buf = b;
            c->cap = cap;
        }
        if (k)
            memcpy(c->buf + c->len, data + off, k);
        c->len += k;
        off += k;
        if (c->len > FRONT_BUF_MAX) {
            r = -1;
            break;
        }
        r = front_process(sv, c);
    } while (r == 0 && off < n);
    c->fd = -1; /* the caller's: srv_conn_free would shut it down */
    srv_conn_free(c);
    return r < 0 ? -1 : r == 2 ? 1 : 0;
}
