/* Sessions: each client a backend of its own, a clone of the cluster's
 * first backend started from the client's own startup packet (so
 * PostgreSQL applies its role, database and options itself), pumped by a
 * thread of its own and closed when the client goes; the first backend
 * (the server's own or a borrowed one) and its bootstrap; the watcher that
 * cancels the statements of clients that went away. */
#define _GNU_SOURCE
#include "server/server_internal.h"
#include "server/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <openssl/crypto.h>
#include <unistd.h>

/* Input held for one session beyond this is refused (a client streaming
 * messages without ever ending a batch). */
#define MAX_PENDING ((size_t)WIRE_LARGE_MESSAGE_LIMIT + (16u << 20))

typedef struct sess {
    server *s;
    conn *c;
    backend *be;     /* the backend that serves it */
    int32_t pid;     /* its BackendKeyData, for CancelRequest */
    uint8_t key[WIRE_MAX_CANCEL_KEY];
    size_t keylen;
    struct sess *next; /* s->live, under mu */
    uint8_t *buf; /* client bytes; [rpos, len) not yet handed to the backend */
    size_t len, cap, rpos;
    int gone;        /* the client is gone or has been sent its FATAL */
    int copyfail;    /* a CopyFail was made up for the backend */
    int in_exchange; /* inside backend_exchange (COPY input read from supply); under mu */
    int hung_up;     /* the watcher saw the client go during a statement */
    int stop_seen;
    wire_buf fail;   /* CopyFail + Sync, sent for a client that vanished mid-COPY */
    /* What an idle session waits on (wait_input), kept registered from one
     * statement to the next: the client, the server's stop pipe and the
     * backend's signal fd. -1 until first needed, or where epoll cannot be
     * had (poll then). */
    int ep;
    int ep_sfd;          /* the signal fd registered */
    uint32_t ep_client;  /* the client's registered events */
} sess;

/* ---- internal queries ------------------------------------------------------- */

typedef struct qres {
    char status;            /* the last ReadyForQuery's, 0 if none */
    int error;              /* an ErrorResponse came (the first is kept) */
    char code[6], msg[512], detail[512], hint[256];
    int rows;
    int isnull;
    char val[256];          /* first column of the first row */
    char tag[64];           /* the last CommandComplete */
} qres;

static void field(const wire_msg *m, char code, char *out, size_t n) {
    if (wire_error_field(m, code, out, n) < 0)
        out[0] = 0;
}

/* Read a reply into r. */
static void read_reply(const uint8_t *out, size_t n, qres *r) {
    memset(r, 0, sizeof *r);
    wire_reader rd;
    wire_msg m;
    wire_reader_init(&rd, out, n);
    while (wire_next(&rd, &m) == 1) {
        switch (m.type) {
        case PqMsg_ErrorResponse:
            if (!r->error) {
                r->error = 1;
                field(&m, PG_DIAG_SQLSTATE, r->code, sizeof r->code);
                field(&m, PG_DIAG_MESSAGE_PRIMARY, r->msg, sizeof r->msg);
                field(&m, PG_DIAG_MESSAGE_DETAIL, r->detail, sizeof r->detail);
                field(&m, PG_DIAG_MESSAGE_HINT, r->hint, sizeof r->hint);
            }
            break;
        case PqMsg_DataRow: {
            wire_value v;
            if (r->rows++ == 0 && wire_data_row(&m, &v, 1) >= 1) {
                if (v.len < 0)
                    r->isnull = 1;
                else {
                    size_t k = (size_t)v.len < sizeof r->val - 1 ? (size_t)v.len : sizeof r->val - 1;
                    memcpy(r->val, v.data, k);
                    r->val[k] = 0;
                }
            }
            break;
        }
        case PqMsg_CommandComplete: {
            const char *tag;
            if (wire_command_complete(&m, &tag) == 0)
                snprintf(r->tag, sizeof r->tag, "%s", tag);
            break;
        }
        case PqMsg_ReadyForQuery:
            wire_ready_for_query(&m, &r->status);
            break;
        }
    }
}

/* Exchange w with the backend and read the reply. 0, or -1 if the backend
 * died (message in err). */
static int exchange_read(server *s, wire_buf *w, qres *r, char *err, size_t errlen) {
    const uint8_t *out;
    size_t outlen;
    if (w->oom) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!s->be || backend_exchange(s->be, w->data, w->len, &out, &outlen, err, errlen) != 0)
        return -1;
    read_reply(out, outlen, r);
    return 0;
}

/* One statement with text parameters, extended protocol. */
static void put_statement(wire_buf *w, const char *sql, int np, const char *const *pv) {
    wire_parse(w, "", sql, 0, NULL);
    wire_bind(w, "", "", np, pv, NULL, NULL, 0);
    wire_execute(w, "", 0);
    wire_sync(w);
}

static int bq(server *s, const char *sql, int np, const char *const *pv, qres *r, char *err,
              size_t errlen) {
    wire_buf w;
    wire_buf_init(&w);
    put_statement(&w, sql, np, pv);
    int rc = exchange_read(s, &w, r, err, errlen);
    wire_buf_free(&w);
    return rc;
}

/* Simple-protocol statements, each its own Query message. */
static int sq(server *s, const char *const *sql, qres *r, char *err, size_t errlen) {
    wire_buf w;
    wire_buf_init(&w);
    for (int i = 0; sql[i]; i++)
        wire_query(&w, sql[i]);
    int rc = exchange_read(s, &w, r, err, errlen);
    wire_buf_free(&w);
    return rc;
}

/* The cluster's first backend, started again (crash recovery) if its
 * cluster crashed, as the postmaster reinitialises after a crash. Under
 * be_mu. 0, or -1 with err. */
static int live_first(server *s, char *err, size_t errlen) {
    if (s->borrowed && s->current)
        s->be = s->current(s->current_ctx); /* its owner restarts it */
    if (!backend_crashed(s->be))
        return 0;
    if (s->borrowed) {
        snprintf(err, errlen, "the database system is in recovery mode");
        return -1;
    }
    srv_log(s, SERVER_LOG_WARNING, "a backend crashed: every session ended; starting again "
                                   "with crash recovery");
    backend *nb = NULL;
    if (backend_restart(s->be, &nb, err, errlen) != 0 || backend_park(nb) != 0) {
        backend_close(nb);
        srv_log(s, SERVER_LOG_ERROR, "cannot start the database again: %s", err);
        return -1;
    }
    backend *old = s->be;
    pthread_mutex_lock(&s->mu);
    s->be = nb;
    pthread_mutex_unlock(&s->mu);
    backend_close(old);
    srv_log(s, SERVER_LOG_WARNING, "the database system is ready to accept connections again");
    return 0;
}

/* A statement with text parameters on the first backend, parked or not,
 * from any session thread (one at a time). */
static int first_exchange(server *s, wire_buf *w, qres *r, char *err, size_t errlen) {
    pthread_mutex_lock(&s->be_mu);
    const uint8_t *kept;
    size_t nkept;
    if (live_first(s, err, errlen) != 0) {
        pthread_mutex_unlock(&s->be_mu);
        return -1;
    }
    backend_unpark(s->be, &kept, &nkept); /* nothing in it is for a client */
    int rc = exchange_read(s, w, r, err, errlen);
    backend_park(s->be);
    pthread_mutex_unlock(&s->be_mu);
    return rc;
}

static int first_bq(server *s, const char *sql, int np, const char *const *pv, qres *r,
                    char *err, size_t errlen) {
    wire_buf w;
    wire_buf_init(&w);
    put_statement(&w, sql, np, pv);
    int rc = first_exchange(s, &w, r, err, errlen);
    wire_buf_free(&w);
    return rc;
}

/* in between quote characters q, those inside doubled: an SQL string
 * literal ('...', standard_conforming_strings) or a quoted identifier
 * ("..."). Cut to fit n bytes. */
static void quote(char q, const char *in, char *out, size_t n) {
    size_t k = 0;
    if (n < 3) {
        out[0] = 0;
        return;
    }
    out[k++] = q;
    for (; *in && k + 3 < n; in++) {
        if (*in == q)
            out[k++] = q;
        out[k++] = *in;
    }
    out[k++] = q;
    out[k] = 0;
}

static void quote_ident(const char *in, char *out, size_t n) { quote('"', in, out, n); }

/* ---- the first backend ------------------------------------------------------ */

void session_stop_backend(server *s) {
    pthread_mutex_lock(&s->mu);
    backend *b = s->be;
    s->be = NULL;
    pthread_mutex_unlock(&s->mu);
    if (b && !s->borrowed)
        backend_close(b);
}

/* The role and the database clients log in to by default: made when
 * missing, as a container image's POSTGRES_USER and POSTGRES_DB are. */
static int ensure_role_and_database(server *s, char *err, size_t errlen) {
    qres r;
    char q[400], id[160];
    const char *pv[1] = {s->user};
    quote_ident(s->user, id, sizeof id);
    if (bq(s, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", 1, pv, &r, err, errlen) != 0)
        return -1;
    if (!r.error && r.rows == 0) {
        snprintf(q, sizeof q, "CREATE ROLE %s SUPERUSER LOGIN", id);
        const char *sql[] = {q, NULL};
        if (sq(s, sql, &r, err, errlen) != 0)
            return -1;
        if (r.error) {
            snprintf(err, errlen, "cannot create role \"%s\": %s", s->user, r.msg);
            return -1;
        }
        srv_log(s, SERVER_LOG_INFO, "created role %s", s->user);
    }
    pv[0] = s->database;
    if (bq(s, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, pv, &r, err,
           errlen) != 0)
        return -1;
    if (!r.error && r.rows == 0) {
        char dbid[160];
        quote_ident(s->database, dbid, sizeof dbid);
        snprintf(q, sizeof q, "CREATE DATABASE %s OWNER %s", dbid, id);
        const char *sql[] = {q, NULL};
        if (sq(s, sql, &r, err, errlen) != 0)
            return -1;
        if (r.error) {
            snprintf(err, errlen, "cannot create database \"%s\": %s", s->database, r.msg);
            return -1;
        }
        srv_log(s, SERVER_LOG_INFO, "created database %s", s->database);
    }
    return 0;
}

/* With passwords, the configured role's is the configured password (as a
 * container image's POSTGRES_PASSWORD): PostgreSQL makes its SCRAM secret
 * (with its SASLprep) and keeps it in pg_authid beside every other
 * role's. */
static int set_role_password(server *s, char *err, size_t errlen) {
    if (s->auth == AUTH_TRUST)
        return 0;
    size_t n = 2 * strlen(s->password) + 3;
    char *lit = malloc(n), *q = malloc(n + 200), id[160];
    if (!lit || !q) {
        free(lit);
        free(q);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    quote('\'', s->password, lit, n);
    quote_ident(s->user, id, sizeof id);
    snprintf(q, n + 200, "SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD %s; "
                         "RESET password_encryption", id, lit);
    OPENSSL_cleanse(lit, strlen(lit));
    free(lit);
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, q);
    OPENSSL_cleanse(q, strlen(q));
    free(q);
    qres r;
    int rc = first_exchange(s, &w, &r, err, errlen);
    OPENSSL_cleanse(w.data, w.len);
    wire_buf_free(&w);
    if (rc == 0 && r.error) {
        snprintf(err, errlen, "cannot set the password of role \"%s\": %s", s->user, r.msg);
        rc = -1;
    }
    return rc;
}

int session_bootstrap(server *s, char *err, size_t errlen) {
    if (s->borrowed) /* the program's, parked by it */
        return set_role_password(s, err, errlen);
    /* The cluster's first backend runs as the bootstrap superuser, which
     * every cluster has; clients get sessions of their own. */
    backend_options bo = {
        .data_dir = s->data_dir,
        .gucs = (const char *const *)s->gucs,
        .debug = s->debug,
        .relaxed_durability = s->relaxed_durability,
        .sessions = 1,
    };
    backend *b = NULL;
    if (backend_start(&bo, &b, err, errlen) != 0)
        return -1;
    s->be = b;
    if (ensure_role_and_database(s, err, errlen) != 0 || backend_park(b) != 0 ||
        set_role_password(s, err, errlen) != 0) {
        if (!*err)
            snprintf(err, errlen, "cannot start the thread that takes the backends' signals");
        session_stop_backend(s);
        return -1;
    }
    return 0;
}

/* ---- talking to the client -------------------------------------------------- */

static void client_fatal(sess *ss, const char *code, const char *msg, const char *detail,
                         const char *hint) {
    if (ss->gone)
        return;
    wire_buf w;
    wire_buf_init(&w);
    wire_error_response(&w, PqMsg_ErrorResponse, "FATAL", code, msg, detail, hint);
    if (!w.oom)
        srv_send_all(ss->s, ss->c, w.data, w.len);
    wire_buf_free(&w);
    ss->gone = 1;
    srv_log(ss->s, SERVER_LOG_INFO, "session of %s ended: %s (%s)", ss->c->peer, msg, code);
}

/* What an idle session's backend was signalled for (a NOTIFY to it, a
 * terminate): run it and send the client what it says. 0, or -1 when the
 * session is over. */
static int idle_signal(sess *ss) {
    const uint8_t *out;
    size_t n;
    char err[640];
    int rc = backend_idle(ss->be, &out, &n, err, sizeof err);
    if (n && srv_send_all(ss->s, ss->c, out, n) != 0)
        rc = -1;
    if (rc != 0)
        ss->gone = 1;
    return rc;
}

enum { EP_CLIENT, EP_STOP, EP_SIGNAL };

/* The session's epoll set for an idle wait on the signal fd sfd: 0, or -1
 * where there is none (poll is used). */
static int idle_set(sess *ss, int sfd) {
    uint32_t want = (uint32_t)conn_events(ss->c, POLLIN); /* EPOLLIN/OUT are POLLIN/OUT */
    if (ss->ep >= 0 && ss->ep_sfd != sfd)
        return -1; /* (a backend's signal fd does not change) */
    if (ss->ep < 0) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
            return -1;
        struct epoll_event c = {.events = want, .data.u32 = EP_CLIENT},
                           st = {.events = EPOLLIN, .data.u32 = EP_STOP},
                           sg = {.events = EPOLLIN, .data.u32 = EP_SIGNAL};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ss->c->fd, &c) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, ss->s->stop_pipe[0], &st) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sg) != 0) {
            close(ep);
            return -1;
        }
        ss->ep = ep;
        ss->ep_sfd = sfd;
        ss->ep_client = want;
    } else if (want != ss->ep_client) { /* TLS: the handshake's direction */
        struct epoll_event c = {.events = want, .data.u32 = EP_CLIENT};
        if (epoll_ctl(ss->ep, EPOLL_CTL_MOD, ss->c->fd, &c) != 0)
            return -1;
        ss->ep_client = want;
    }
    return 0;
}

/* Wait until the client socket is readable (1), or the server stops (0);
 * meanwhile take what the session's backend is signalled for (-1: that
 * ended the session). Between statements with epoll (a set kept from one
 * wait to the next costs the kernel less than poll's three fds registered
 * and unregistered each time), else with poll. */
static int wait_input(sess *ss) {
    /* (Not mid-exchange: COPY FROM STDIN reads on inside backend_exchange.) */
    int sfd = !ss->in_exchange ? backend_signal_fd(ss->be) : -1;
    if (sfd >= 0 && idle_set(ss, sfd) == 0) {
        for (;;) {
            struct epoll_event ev[3];
            int k = epoll_wait(ss->ep, ev, 3, -1);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return 1; /* let recv report it */
            int client = 0, stop = 0, signal = 0;
            for (int i = 0; i < k; i++) {
                client |= ev[i].data.u32 == EP_CLIENT;
                stop |= ev[i].data.u32 == EP_STOP;
                signal |= ev[i].data.u32 == EP_SIGNAL;
            }
            if (stop) {
                ss->stop_seen = 1;
                return 0;
            }
            if (client)
                return 1;
            if (signal && idle_signal(ss) != 0)
                return -1;
        }
    }
    struct pollfd pf[3] = {{.fd = ss->c->fd, .events = conn_events(ss->c, POLLIN)},
                           {.fd = ss->s->stop_pipe[0], .events = POLLIN},
                           {.fd = sfd, .events = POLLIN}};
    for (;;) {
        int k = poll(pf, sfd >= 0 ? 3 : 2, -1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return 1; /* let recv report it */
        if (pf[1].revents) {
            ss->stop_seen = 1;
            return 0;
        }
        if (pf[0].revents)
            return 1;
        if (sfd >= 0 && pf[2].revents && idle_signal(ss) != 0)
            return -1;
    }
}

/* wait_input for read_more: 1 to read on, else what read_more returns. */
static int wait_to_read(sess *ss) {
    int w = wait_input(ss);
    if (w == 0) {
        client_fatal(ss, "57P01", "terminating connection due to administrator command", NULL,
                     NULL);
        return -1;
    }
    return w < 0 ? 0 : 1; /* (-1: its backend ended the session, FATAL sent) */
}

/* Read what the client sent. 1 bytes came, 0 EOF or error (gone), -1
 * over the limit (FATAL sent). */
static int read_more(sess *ss) {
    if (ss->rpos && ss->rpos == ss->len)
        ss->rpos = ss->len = 0;
    if (ss->len == ss->cap) {
        if (ss->rpos) { /* make room at the front first */
            memmove(ss->buf, ss->buf + ss->rpos, ss->len - ss->rpos);
            ss->len -= ss->rpos;
            ss->rpos = 0;
        }
    }
    if (ss->len == ss->cap) {
        if (ss->cap >= MAX_PENDING) {
            client_fatal(ss, "08P01", "too much input without a Sync", NULL, NULL);
            return -1;
        }
        size_t cap = ss->cap ? ss->cap * 2 : 65536;
        if (cap > MAX_PENDING)
            cap = MAX_PENDING;
        uint8_t *b = realloc(ss->buf, cap);
        if (!b) {
            client_fatal(ss, "53200", "out of memory", NULL, NULL);
            return -1;
        }
        ss->buf = b;
        ss->cap = cap;
    }
    /* Between statements a client has nothing to send before it has read
     * the reply: wait first, rather than make a recv that says EAGAIN.
     * (Not with TLS, which may hold decrypted bytes, nor mid-COPY.) */
    int w;
    if (ss->rpos == ss->len && !ss->c->tls && !ss->in_exchange && (w = wait_to_read(ss)) != 1)
        return w;
    for (;;) {
        ssize_t r = conn_recv(ss->c, ss->buf + ss->len, ss->cap - ss->len);
        if (r > 0) {
            ss->len += (size_t)r;
            return 1;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((w = wait_to_read(ss)) != 1)
                return w;
            continue;
        }
        ss->gone = 1;
        return 0;
    }
}

/* The same, with FATAL 08P01 sent to the client when invalid. */
static long check_frame(sess *ss, const uint8_t *p, size_t avail, int copy) {
    char m[128];
    long r = wire_frame(p, avail, copy ? WIRE_FROM_COPY : WIRE_FROM_CLIENT, m, sizeof m);
    if (r < 0)
        client_fatal(ss, "08P01", m, NULL, NULL);
    return r;
}

/* The backend asks for more input mid-exchange: COPY FROM STDIN. Deliver
 * what it said so far, then hand it the client's next COPY messages, up to
 * and including CopyDone or CopyFail. If the client is gone, misbehaves
 * or the server stops, the COPY is failed instead. */
static int supply(void *ctx, const uint8_t *out, size_t outlen, const uint8_t **in,
                  size_t *inlen) {
    sess *ss = ctx;
    if (!ss->gone && outlen && srv_send_all(ss->s, ss->c, out, outlen) != 0)
        ss->gone = 1;
    while (!ss->gone) {
        size_t p = ss->rpos;
        int end = 0;
        long n;
        while (!end && (n = check_frame(ss, ss->buf + p, ss->len - p, 1)) > 0) {
            uint8_t t = ss->buf[p];
            p += (size_t)n;
            end = t == PqMsg_CopyDone || t == PqMsg_CopyFail;
        }
        if (n < 0)
            break;
        if (p > ss->rpos) {
            *in = ss->buf + ss->rpos;
            *inlen = p - ss->rpos;
            ss->rpos = p;
            return 0;
        }
        if (read_more(ss) <= 0)
            break;
    }
    if (ss->copyfail)
        return -1; /* asked again after the CopyFail: should not happen */
    ss->copyfail = 1;
    wire_buf_reset(&ss->fail);
    wire_copy_fail(&ss->fail, "client is gone.");
    wire_sync(&ss->fail);
    if (ss->fail.oom)
        return -1;
    *in = ss->fail.data;
    *inlen = ss->fail.len;
    return 0;
}

/* Run one batch through the backend and send the reply. 0, or -1 when the
 * session is over (client gone, backend died). */
static int run_batch(sess *ss, const uint8_t *in, size_t n) {
    server *s = ss->s;
    const uint8_t *out;
    size_t outlen;
    char err[640];
    backend_set_input(ss->be, supply, ss);
    pthread_mutex_lock(&s->mu);
    ss->in_exchange = 1;
    pthread_mutex_unlock(&s->mu);
    int rc = backend_exchange(ss->be, in, n, &out, &outlen, err, sizeof err);
    pthread_mutex_lock(&s->mu);
    ss->in_exchange = 0;
    int hung_up = ss->hung_up;
    pthread_mutex_unlock(&s->mu);
    backend_set_input(ss->be, NULL, NULL);
    if (hung_up) {
        ss->gone = 1;
        return -1;
    }
    if (rc != 0) {
        srv_log(s, SERVER_LOG_ERROR, "the backend stopped during the session of %s: %s",
                ss->c->peer, err);
        if (outlen && !ss->gone) { /* PostgreSQL's own FATAL (a crash elsewhere) */
            srv_send_all(s, ss->c, out, outlen);
            ss->gone = 1;
        }
        client_fatal(ss, "57P01", "terminating connection because the database backend stopped",
                     err, NULL);
        return -1;
    }
    if (ss->gone)
        return -1;
    if (outlen && srv_send_all(s, ss->c, out, outlen) != 0) {
        ss->gone = 1;
        return -1;
    }
    return 0;
}

/* The message pump. Returns when the session is over. */
static void pump(sess *ss) {
    for (;;) {
        /* Complete frames from rpos; a batch ends with a message the
         * backend answers with ReadyForQuery or a flush. */
        size_t start = ss->rpos, p = start;
        long n;
        while ((n = check_frame(ss, ss->buf + p, ss->len - p, 0)) > 0) {
            uint8_t t = ss->buf[p];
            if (t == PqMsg_Terminate) { /* what came before it, then the end */
                if (p > start)
                    run_batch(ss, ss->buf + start, p - start);
                ss->gone = 1;
                return;
            }
            p += (size_t)n;
            if (t == PqMsg_Query || t == PqMsg_Sync || t == PqMsg_Flush ||
                t == PqMsg_FunctionCall) {
                ss->rpos = p; /* supply() reads on from here */
                if (run_batch(ss, ss->buf + start, p - start) != 0)
                    return;
                start = p = ss->rpos;
                {
                    pthread_mutex_lock(&ss->s->mu);
                    int stopping = ss->s->stopping;
                    pthread_mutex_unlock(&ss->s->mu);
                    if (stopping) {
                        client_fatal(ss, "57P01",
                                     "terminating connection due to administrator command",
                                     NULL, NULL);
                        return;
                    }
                }
            }
        }
        if (n < 0)
            return;
        ss->rpos = start; /* the unfinished batch stays buffered */
        if (read_more(ss) <= 0)
            return;
    }
}

/* ---- sessions ---------------------------------------------------------------- */

/* A session for client c: the bytes it sent after its startup packet are
 * its first input. */
static void sess_init(sess *ss, server *s, conn *c) {
    *ss = (sess){.s = s, .c = c, .buf = c->buf, .len = c->len, .cap = c->cap, .ep = -1,
                 .ep_sfd = -1};
    c->buf = NULL;
    c->len = c->cap = 0;
}

static const char *app_name(const conn *c) {
    for (size_t i = 0; i < c->ngucs; i++)
        if (!strcmp(c->gucs[2 * i], "application_name"))
            return c->gucs[2 * i + 1];
    return NULL;
}

int session_cancel_locked(server *s, int32_t pid, const uint8_t *key, size_t keylen) {
    for (sess *ss = s->live; ss; ss = ss->next)
        if (ss->pid == pid && ss->keylen == keylen && CRYPTO_memcmp(ss->key, key, keylen) == 0) {
            backend_cancel(ss->be);
            return 1;
        }
    return 0;
}

void session_end_all(server *s) {
    pthread_mutex_lock(&s->mu);
    for (sess *ss = s->live; ss; ss = ss->next)
        backend_cancel(ss->be); /* roll back rather than wait for a long statement */
    pthread_cond_broadcast(&s->idle_cv); /* the waiting threads end */
    while (s->nworkers > 0)
        pthread_cond_wait(&s->workers_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void take_key(sess *ss) {
    size_t n;
    const uint8_t *hello = backend_startup_reply(ss->be, &n);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, hello, n);
    while (wire_next(&r, &m) == 1)
        if (m.type == PqMsg_BackendKeyData && m.len >= 8 && m.len - 4 <= sizeof ss->key) {
            ss->pid = (int32_t)((uint32_t)m.body[0] << 24 | (uint32_t)m.body[1] << 16 |
                                (uint32_t)m.body[2] << 8 | m.body[3]);
            ss->keylen = m.len - 4;
            memcpy(ss->key, m.body + 4, ss->keylen);
        }
}

/* The password exchange of a client the front door handed over with
 * FRONT_SECRET: its role's own secret from pg_authid (a role that does not
 * exist, has none or has expired gets an exchange that fails, as
 * PostgreSQL's does), then the front door on, blocking, within the startup
 * timeout. 0 authenticated, -1 not (its FATAL sent). */
static int authenticate(server *s, conn *c) {
    qres r;
    char err[640];
    const char *pv[1] = {c->user};
    if (first_bq(s, "SELECT CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil > pg_catalog.now() "
                    "THEN rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1",
                 1, pv, &r, err, sizeof err) != 0 || r.error) {
        srv_log(s, SERVER_LOG_ERROR, "cannot look up the password of %s: %s", c->user,
                r.error ? r.msg : err);
        srv_send_fatal(c, "57P03", "the database system is not available");
        return -1;
    }
    int rc = frontdoor_set_secret(c, r.rows && !r.isnull ? r.val : NULL);
    OPENSSL_cleanse(r.val, sizeof r.val);
    if (rc != 0) {
        srv_send_fatal(c, "XX000", "could not generate random numbers");
        return -1;
    }
    int64_t deadline = c->since + s->startup_timeout_ms;
    for (;;) {
        wire_buf out;
        wire_buf_init(&out);
        frontdoor_result fr = frontdoor_process(&s->front, c, &out);
        int sent = out.len && !out.oom ? srv_send_all(s, c, out.data, out.len) : 0;
        wire_buf_free(&out);
        if (fr == FRONT_READY && sent == 0)
            return 0;
        if (fr != FRONT_MORE || sent != 0)
            return -1;
        uint8_t chunk[4096];
        ssize_t n;
        for (;;) {
            n = conn_recv(c, chunk, sizeof chunk);
            if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                break;
            int64_t left = deadline - srv_now_ms();
            if (left <= 0) {
                srv_send_fatal(c, "08P01", "canceling authentication due to timeout");
                return -1;
            }
            struct pollfd pf[2] = {{.fd = c->fd, .events = conn_events(c, POLLIN)},
                                   {.fd = s->stop_pipe[0], .events = POLLIN}};
            if (poll(pf, 2, (int)left) > 0 && pf[1].revents) {
                srv_send_fatal(c, "57P01", "terminating connection due to administrator command");
                return -1;
            }
        }
        if (n <= 0 || frontdoor_append(c, chunk, (size_t)n) != 0)
            return -1; /* gone, or garbage */
    }
}

/* One client's session on a backend of its own. */
static void run_clone_session(server *s, conn *c) {
    if (c->state == CONN_SECRET && authenticate(s, c) != 0) {
        srv_log(s, SERVER_LOG_INFO, "%s (user %s) did not authenticate", c->peer, c->user);
        srv_conn_free(c);
        return;
    }
    sess ss;
    sess_init(&ss, s, c);
    int64_t t0 = srv_now_ms();
    pthread_mutex_lock(&s->mu);
    uint64_t id = ++s->sessions;
    pthread_mutex_unlock(&s->mu);
    /* The client's startup packet, as PostgreSQL would read it. */
    const char **params = calloc(2 * c->ngucs + 7, sizeof *params);
    char err[640];
    if (!params) {
        client_fatal(&ss, "53200", "out of memory", NULL, NULL);
        goto done;
    }
    size_t k = 0;
    params[k++] = "user";
    params[k++] = c->user;
    params[k++] = "database";
    params[k++] = c->database;
    if (c->options) {
        params[k++] = "options";
        params[k++] = c->options;
    }
    for (size_t i = 0; i < c->ngucs; i++) {
        params[k++] = c->gucs[2 * i];
        params[k++] = c->gucs[2 * i + 1];
    }
    pthread_mutex_lock(&s->be_mu);
    int rc = live_first(s, err, sizeof err);
    if (rc == 0)
        rc = backend_clone(s->be, params, c->minor, &ss.be, err, sizeof err);
    pthread_mutex_unlock(&s->be_mu);
    free(params);
    if (rc == 1) {
        /* PostgreSQL's own FATAL (no such database, too many clients...) */
        size_t n;
        const uint8_t *reply = backend_startup_reply(ss.be, &n);
        srv_send_all(s, c, reply, n);
        srv_log(s, SERVER_LOG_INFO, "session %llu: %s refused by PostgreSQL",
                (unsigned long long)id, c->peer);
        goto done;
    }
    if (rc != 0) {
        srv_log(s, SERVER_LOG_ERROR, "session %llu: cannot start a backend: %s",
                (unsigned long long)id, err);
        client_fatal(&ss, "57P03", "the database system is not available", err, NULL);
        goto done;
    }
    take_key(&ss);
    const char *app = app_name(c);
    srv_log(s, SERVER_LOG_INFO, "session %llu: %s connected as user %s to database %s%s%s (pid %d)",
            (unsigned long long)id, c->peer, c->user, c->database, app ? ", application " : "",
            app ? app : "", (int)ss.pid);
    pthread_mutex_lock(&s->mu);
    ss.next = s->live;
    s->live = &ss;
    pthread_mutex_unlock(&s->mu);
    size_t n;
    const uint8_t *hello = backend_startup_reply(ss.be, &n);
    if (srv_send_all(s, c, hello, n) == 0)
        pump(&ss);
    pthread_mutex_lock(&s->mu);
    for (sess **pp = &s->live; *pp; pp = &(*pp)->next)
        if (*pp == &ss) {
            *pp = ss.next;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    srv_log(s, SERVER_LOG_INFO, "session %llu: %s disconnected after %.3f s", (unsigned long long)id,
            c->peer, (double)(srv_now_ms() - t0) / 1000.0);
done:
    backend_close(ss.be); /* the end of its session: PostgreSQL's exit */
    free(ss.buf);
    wire_buf_free(&ss.fail);
    if (ss.ep >= 0)
        close(ss.ep);
    srv_conn_free(c);
}

/* The client_connection_check_interval of every session: while a session's
 * statement runs, its client's socket is watched, and a client that has
 * gone (hung up, reset) gets its statement cancelled, so that its session
 * ends at once and lets go of its locks, as PostgreSQL's check does. */
void *session_watch_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-hangups");
    server *s = arg;
    struct pollfd pf[257];
    sess *who[256];
    for (;;) {
        int n = 0;
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        for (sess *ss = s->live; ss && n < 256; ss = ss->next)
            if (ss->in_exchange && !ss->hung_up) {
                pf[n] = (struct pollfd){.fd = ss->c->fd, .events = POLLRDHUP};
                who[n++] = ss;
            }
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            return NULL;
        pf[n] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
        /* Sessions start and finish statements meanwhile: look again
         * every 100 ms. */
        int k = poll(pf, (nfds_t)n + 1, 100);
        if (k <= 0)
            continue;
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                continue;
            for (sess *ss = s->live; ss; ss = ss->next)
                if (ss == who[i] && ss->in_exchange && !ss->hung_up) {
                    ss->hung_up = 1;
                    backend_cancel(ss->be);
                    srv_log(s, SERVER_LOG_INFO, "%s went away during a statement: cancelled",
                            ss->c->peer);
                }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

typedef struct worker_arg {
    server *s;
    conn *c;
} worker_arg;

/* How long a session thread whose client has gone waits for another. */
#define IDLE_WAIT_S 30

/* A session thread: its client's session, then, while fewer than
 * SERVER_IDLE_WORKERS wait, the next clients' (a thread made per client
 * cost a reconnecting client's next session a thread's start and a cold
 * stack, the same work each time). */
static void *worker_main(void *arg) {
    pthread_setname_np(pthread_self(), "pglite-session");
    worker_arg *w = arg;
    server *s = w->s;
    conn *c = w->c;
    free(w);
    srv_block_sigpipe();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        pthread_mutex_unlock(&s->mu);
        run_clone_session(s, c);
        c = NULL;
        pthread_mutex_lock(&s->mu);
        if (s->stopping || s->nidle >= SERVER_IDLE_WORKERS)
            break;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += IDLE_WAIT_S;
        s->nidle++;
        int rc = 0;
        while (!s->nhandoff && !s->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->idle_cv, &s->mu, &until);
        s->nidle--;
        if (!s->nhandoff)
            break;
        c = s->handoff[--s->nhandoff];
    }
    s->nworkers--;
    pthread_cond_broadcast(&s->workers_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A thread of its own for the client's session. */
void session_start(server *s, conn *c) {
    worker_arg *w = malloc(sizeof *w);
    pthread_attr_t at;
    pthread_t t;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        free(w);
        srv_send_fatal(c, "57P01", "terminating connection due to administrator command");
        srv_conn_free(c);
        pthread_attr_destroy(&at);
        return;
    }
    if (s->nidle > s->nhandoff) { /* a thread waits: it takes c */
        s->handoff[s->nhandoff++] = c;
        pthread_cond_signal(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
        free(w);
        pthread_attr_destroy(&at);
        return;
    }
    s->nworkers++;
    pthread_mutex_unlock(&s->mu);
    if (!w || (w->s = s, w->c = c, pthread_create(&t, &at, worker_main, w) != 0)) {
        free(w);
        srv_send_fatal(c, "53000", "cannot start a session: out of threads");
        srv_conn_free(c);
        pthread_mutex_lock(&s->mu);
        s->nworkers--;
        pthread_cond_broadcast(&s->workers_cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_attr_destroy(&at);
}
