/* The listener: binds the sockets, accepts connections, runs each through
 * the front door (frontdoor.c) without blocking, and hands authenticated
 * clients to a session of their own (session.c). It only accepts and
 * reads first packets: no client holds it. */
#define _GNU_SOURCE
#include "server/server_internal.h"
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- writing to clients ----------------------------------------------------- */
/* Write with a short deadline, for small front-door messages. */
static int send_small(conn *c, const void *data, size_t n) {
    const uint8_t *p = data;
    int64_t deadline = srv_now_ms() + 1000;
    while (n) {
        ssize_t r = conn_send(c, p, n);
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
            struct pollfd pf = {.fd = c->fd, .events = conn_events(c, POLLOUT)};
            poll(&pf, 1, (int)left);
            continue;
        }
        return -1;
    }
    return 0;
}

void srv_send_fatal(conn *c, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wire_buf w;
    wire_buf_init(&w);
    wire_error_response(&w, PqMsg_ErrorResponse, "FATAL", code, msg, NULL, NULL);
    if (!w.oom)
        send_small(c, w.data, w.len);
    wire_buf_free(&w);
}

int srv_send_all(server *s, conn *c, const void *data, size_t n) {
    const uint8_t *p = data;
    int64_t stuck_since = 0;
    while (n) {
        ssize_t r = conn_send(c, p, n);
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
            struct pollfd pf[2] = {{.fd = c->fd, .events = conn_events(c, POLLOUT)},
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
    tls_end(c);
    if (c->fd >= 0) {
        /* at once, even if another thread still polls this fd */
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
    }
    frontdoor_conn_clear(c);
    free(c);
}

/* ---- handing clients on ----------------------------------------------------- */

/* Turn a client away from the listener: FATAL, a log line. Returns -1. */
static int refuse(server *s, conn *c, const char *code, const char *msg) {
    srv_log(s, SERVER_LOG_INFO, "connection from %s refused: %s (%s)", c->peer, msg, code);
    srv_send_fatal(c, code, "%s", msg);
    return -1;
}

/* A CancelRequest the front door decoded: cancel the running statement of
 * the session with that pid and key. */
static void handle_cancel(server *s, conn *c) {
    pthread_mutex_lock(&s->mu);
    int done = session_cancel_locked(s, c->cancel_pid, c->cancel_key, c->cancel_keylen);
    pthread_mutex_unlock(&s->mu);
    srv_log(s, SERVER_LOG_DEBUG, "cancel request from %s: %s", c->peer,
            done ? "sent" : "no matching session");
}

/* ---- accepting and the front door ---------------------------------------- */

/* A TCP client whose first byte is a TLS handshake record: PostgreSQL
 * 17's direct SSL (sslnegotiation=direct). Peeked, so that OpenSSL reads
 * the ClientHello itself. */
static int direct_tls(server *s, conn *c) {
    if (!s->tls || !c->tcp || c->tls || c->ssl_done || c->len || c->state != CONN_STARTUP)
        return 0;
    uint8_t b;
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1 && b == 0x16;
}

/* Advance a TLS handshake: 0 to keep going (done or in progress), -1 to
 * close. */
static int handshake(server *s, conn *c) {
    char why[300];
    int h = tls_handshake(c, why, sizeof why);
    if (h < 0) {
        srv_log(s, SERVER_LOG_INFO, "connection from %s closed: %s", c->peer, why);
        return -1;
    }
    return 0;
}

/* Data (or EOF) on a front-door connection: through the front door, its
 * replies sent. 0 keep the connection, 2 for a session (authenticated, or
 * with the role's password to check there), -1 close it. */
static int front_read(server *s, conn *c) {
    if (direct_tls(s, c)) {
        if (tls_begin(s->tls, c) != 0)
            return -1;
        c->tls_direct = 1;
    }
    if (c->tls && c->tls_handshaking) {
        if (handshake(s, c) != 0)
            return -1;
        if (c->tls_handshaking)
            return 0;
    }
    uint8_t chunk[4096];
    for (;;) {
        ssize_t r = conn_recv(c, chunk, sizeof chunk);
        if (r > 0) {
            if (frontdoor_append(c, chunk, (size_t)r) != 0)
                return refuse(s, c, "08P01", "invalid startup packet");
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
    wire_buf out;
    wire_buf_init(&out);
    frontdoor_result fr = frontdoor_process(&s->front, c, &out);
    int sent = out.len && !out.oom ? send_small(c, out.data, out.len) : 0;
    wire_buf_free(&out);
    if (fr == FRONT_CANCEL) {
        handle_cancel(s, c);
        return -1;
    }
    if (fr == FRONT_CLOSE || sent != 0)
        return -1;
    if (fr == FRONT_TLS) {
        if (tls_begin(s->tls, c) != 0 || handshake(s, c) != 0)
            return -1;
        return 0;
    }
    return fr == FRONT_READY || fr == FRONT_SECRET ? 2 : 0;
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

/* The listener thread's state: the front door's connections and the poll
 * set, rebuilt every turn. */
typedef struct listener {
    server *s;
    conn *front; /* the front door's connections (fnext links) */
    int nfront;
    uint64_t serial;
    struct pollfd *pf;
    conn **pc;     /* the connection of each pf entry (NULL: pipe or socket) */
    size_t cap, k, fstart;
} listener;

/* Poll entries: the stop pipe, the listening sockets, the front door's
 * connections. Returns the poll timeout (ms), or -1 if out of memory. */
static int poll_set(listener *l, int64_t now) {
    server *s = l->s;
    size_t need = 1 + (size_t)s->nlisten + (size_t)l->nfront;
    if (need > l->cap) {
        size_t cap = need * 2;
        struct pollfd *npf = realloc(l->pf, cap * sizeof *l->pf);
        if (npf)
            l->pf = npf;
        conn **npc = realloc(l->pc, cap * sizeof *l->pc);
        if (npc)
            l->pc = npc;
        if (npf && npc)
            l->cap = cap;
    }
    if (l->cap < need)
        return -1;
    int64_t next = now + 60000;
    size_t k = 0;
    l->pf[k] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
    l->pc[k++] = NULL;
    for (int i = 0; i < s->nlisten; i++) {
        l->pf[k] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
        l->pc[k++] = NULL;
    }
    l->fstart = k;
    for (conn *c = l->front; c; c = c->fnext) {
        l->pf[k] = (struct pollfd){.fd = c->fd, .events = conn_events(c, POLLIN)};
        l->pc[k++] = c;
        if (c->deadline < next)
            next = c->deadline;
    }
    l->k = k;
    return next > now ? (int)(next - now) : 0;
}

/* Accept what listening socket lfd has waiting into the front door. */
static void accept_new(listener *l, int lfd, int64_t now) {
    server *s = l->s;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: the backlog waits, we do not spin */
                srv_log(s, SERVER_LOG_WARNING, "accept: %s", strerror(errno));
                struct timespec d = {0, 100 * 1000 * 1000};
                nanosleep(&d, NULL);
            }
            return; /* EAGAIN: the next poll */
        }
        char peer[128];
        describe_peer(&ss, sl, peer, sizeof peer);
        if (ss.ss_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        }
        conn *c = l->nfront < s->max_startup ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            srv_log(s, SERVER_LOG_WARNING, "connection from %s refused: %d connecting already",
                    peer, l->nfront);
            conn plain = {.fd = fd};
            srv_send_fatal(&plain, "53300", "sorry, too many clients already");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->tcp = ss.ss_family != AF_UNIX;
        c->id = ++l->serial;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        c->since = now;
        c->deadline = now + s->startup_timeout_ms;
        c->fnext = l->front;
        l->front = c;
        l->nfront++;
        srv_log(s, SERVER_LOG_DEBUG, "connection from %s", peer);
    }
}

/* The front door's connections that have input or timed out (ours
 * alone: no lock needed). */
static void serve_front_door(listener *l, int64_t now) {
    server *s = l->s;
    for (size_t j = l->fstart; j < l->k; j++) {
        conn *c = l->pc[j];
        int r = 0;
        if (l->pf[j].revents)
            r = front_read(s, c);
        else if (c->deadline <= now) {
            srv_log(s, SERVER_LOG_INFO, "connection from %s: timeout during startup", c->peer);
            srv_send_fatal(c, "08P01", "canceling authentication due to timeout");
            r = -1;
        }
        if (r == 0)
            continue;
        front_unlink(&l->front, c);
        l->nfront--;
        if (r == 2) {
            session_start(s, c); /* the session's now */
            continue;
        }
        srv_conn_free(c);
    }
}

/* Stopping: no new clients; turn away those connecting. */
static void turn_away_all(listener *l) {
    server *s = l->s;
    for (int i = 0; i < s->nlisten; i++) {
        close(s->lfd[i]);
        s->lfd[i] = -1;
    }
    if (s->unix_bound) {
        unlink(s->unix_path);
        s->unix_bound = 0;
    }
    while (l->front) {
        conn *c = l->front;
        l->front = c->fnext;
        srv_send_fatal(c, "57P01", "terminating connection due to administrator command");
        srv_conn_free(c);
    }
}

void *listener_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-listen");
    listener l = {.s = arg};
    server *s = l.s;
    srv_block_sigpipe();
    for (;;) {
        int timeout = poll_set(&l, srv_now_ms());
        if (timeout < 0) { /* out of memory for the poll set: try again soon */
            struct timespec d = {0, 50 * 1000 * 1000};
            nanosleep(&d, NULL);
            continue;
        }
        int nready = poll(l.pf, l.k, timeout);
        if (nready < 0 && errno != EINTR)
            break;
        if (l.pf[0].revents)
            break; /* stopping */
        int64_t now = srv_now_ms();
        for (int i = 0; i < s->nlisten; i++)
            if (l.pf[1 + i].revents & POLLIN)
                accept_new(&l, s->lfd[i], now);
        serve_front_door(&l, now);
    }
    turn_away_all(&l);
    free(l.pf);
    free(l.pc);
    return NULL;
}

/* ---- sockets ---------------------------------------------------------------- */


int listener_bind_unix(server *s, const char *path, int port, char *err, size_t errlen) {
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

int listener_bind_tcp(server *s, const char *host, int port, int trust_remote, char *err,
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
