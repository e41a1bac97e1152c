/* The session thread: takes queued clients off the queue. With a backend
 * of the server's own, each gets a session of its own, a clone of that
 * backend on the cluster, started from the client's own startup packet (so
 * PostgreSQL applies its role, database and options itself), pumped by a
 * thread of its own and closed when the client goes. With a borrowed
 * backend (the program's handle), clients take turns on it: each session
 * is set up on it (database, role, startup parameters), pumped, and the
 * backend reset after it. */
#define _GNU_SOURCE
#include "server/server_internal.h"
#include "server/tls.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
} sess;

/* ---- ParameterStatus as the backend has it ---------------------------------- */

static void param_set(server *s, const char *name, const char *value) {
    for (int i = 0; i < s->nparams; i++) {
        if (strcmp(s->params[i].name, name) == 0) {
            char *v = strdup(value);
            if (v) {
                free(s->params[i].value);
                s->params[i].value = v;
            }
            return;
        }
    }
    if (s->nparams >= MAX_PARAMS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    s->params[s->nparams++] = (param){n, v};
}

static const char *param_get(server *s, const char *name) {
    for (int i = 0; i < s->nparams; i++)
        if (strcmp(s->params[i].name, name) == 0)
            return s->params[i].value;
    return NULL;
}

static void params_clear(server *s) {
    for (int i = 0; i < s->nparams; i++) {
        free(s->params[i].name);
        free(s->params[i].value);
    }
    s->nparams = 0;
}

/* ---- internal queries ------------------------------------------------------- */

typedef struct qres {
    char status;            /* the last ReadyForQuery's, 0 if none */
    int error;              /* an ErrorResponse came (the first is kept) */
    char code[6], msg[512], detail[512], hint[256];
    int rows;
    int isnull;
    char val[256];          /* first column of the first row */
    char tag[64];           /* the last CommandComplete */
    int32_t key_pid;        /* BackendKeyData */
} qres;

static void field(const wire_msg *m, char code, char *out, size_t n) {
    if (wire_error_field(m, code, out, n) < 0)
        out[0] = 0;
}

/* Read a reply: ParameterStatus into s->params, the rest into r. */
static void read_reply(server *s, const uint8_t *out, size_t n, qres *r) {
    memset(r, 0, sizeof *r);
    wire_reader rd;
    wire_msg m;
    wire_reader_init(&rd, out, n);
    while (wire_next(&rd, &m) == 1) {
        switch (m.type) {
        case PqMsg_ParameterStatus: {
            const char *name, *value;
            if (wire_parameter_status(&m, &name, &value) == 0)
                param_set(s, name, value);
            break;
        }
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
        case PqMsg_BackendKeyData:
            wire_backend_key(&m, &r->key_pid, NULL);
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
    read_reply(s, out, outlen, r);
    return 0;
}

/* One statement with text parameters, extended protocol. */
static int bq(server *s, const char *sql, int np, const char *const *pv, qres *r, char *err,
              size_t errlen) {
    wire_buf w;
    wire_buf_init(&w);
    wire_parse(&w, "", sql, 0, NULL);
    wire_bind(&w, "", "", np, pv, NULL, NULL, 0);
    wire_execute(&w, "", 0);
    wire_sync(&w);
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

/* "name" with embedded quotes doubled. */
static void quote_ident(const char *in, char *out, size_t n) {
    size_t k = 0;
    if (n < 3) {
        out[0] = 0;
        return;
    }
    out[k++] = '"';
    for (; *in && k + 3 < n; in++) {
        if (*in == '"')
            out[k++] = '"';
        out[k++] = *in;
    }
    out[k++] = '"';
    out[k] = 0;
}

/* ---- the backend ------------------------------------------------------------ */

void session_stop_backend(server *s) {
    pthread_mutex_lock(&s->mu);
    backend *b = s->be;
    s->be = NULL;
    s->cancel_active = 0;
    pthread_mutex_unlock(&s->mu);
    if (b && !s->borrowed)
        backend_close(b);
}

/* Take the ParameterStatus values and the pid of a fresh backend. */
static void take_startup(server *s, backend *b, const char *user);

static int start_as(server *s, const char *user, const char *db, char *err, size_t errlen) {
    session_stop_backend(s);
    backend_options bo = {
        .data_dir = s->data_dir,
        .user = user,
        .database = db,
        .gucs = (const char *const *)s->gucs,
        .debug = s->debug,
        .relaxed_durability = s->relaxed_durability,
        .sessions = s->multi,
    };
    backend *b = NULL;
    if (backend_start(&bo, &b, err, errlen) != 0)
        return -1;
    char *name = strdup(db);
    if (!name) {
        backend_close(b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(s->be_db);
    s->be_db = name;
    take_startup(s, b, user);
    pthread_mutex_lock(&s->mu);
    s->be = b;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void take_startup(server *s, backend *b, const char *user) {
    params_clear(s);
    size_t n;
    const uint8_t *hello = backend_startup_reply(b, &n);
    qres r;
    read_reply(s, hello, n, &r);
    s->be_pid = r.key_pid;
    const char *sa = param_get(s, "session_authorization");
    if (!sa || !*sa)
        param_set(s, "session_authorization", user); /* single-user mode leaves it empty */
}

int session_start_backend(server *s, const char *db, char *err, size_t errlen) {
    if (s->borrowed) {
        snprintf(err, errlen, "the server's backend is borrowed: it cannot be restarted");
        return -1;
    }
    return start_as(s, s->user, db, err, errlen);
}

int session_bootstrap(server *s, char *err, size_t errlen) {
    if (s->borrowed) {
        s->be_db = strdup(s->database);
        if (!s->be_db) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        take_startup(s, s->be, s->user);
        return 0;
    }
    if (start_as(s, s->user, s->database, err, errlen) == 0)
        return 0;
    /* The role or the database may be missing: make them as the bootstrap
     * superuser, as a container image's POSTGRES_USER/POSTGRES_DB would. */
    char e2[1024];
    if (!strcmp(s->user, "postgres") && !strcmp(s->database, "postgres"))
        return -1;
    if (start_as(s, "postgres", "postgres", e2, sizeof e2) != 0)
        return -1;
    qres r;
    char q[400], id[160];
    int made = 0;
    const char *pv[1] = {s->user};
    quote_ident(s->user, id, sizeof id);
    if (bq(s, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", 1, pv, &r, e2, sizeof e2) == 0 &&
        !r.error && r.rows == 0) {
        snprintf(q, sizeof q, "CREATE ROLE %s SUPERUSER LOGIN", id);
        const char *sql[] = {q, NULL};
        if (sq(s, sql, &r, e2, sizeof e2) == 0 && !r.error) {
            srv_log(s, SERVER_LOG_INFO, "created role %s", s->user);
            made = 1;
        }
    }
    pv[0] = s->database;
    if (bq(s, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, pv, &r, e2,
           sizeof e2) == 0 &&
        !r.error && r.rows == 0) {
        char dbid[160];
        quote_ident(s->database, dbid, sizeof dbid);
        snprintf(q, sizeof q, "CREATE DATABASE %s OWNER %s", dbid, id);
        const char *sql[] = {q, NULL};
        if (sq(s, sql, &r, e2, sizeof e2) == 0 && !r.error) {
            srv_log(s, SERVER_LOG_INFO, "created database %s", s->database);
            made = 1;
        } else if (r.error) {
            snprintf(err, errlen, "cannot create database \"%s\": %s", s->database, r.msg);
        }
    }
    session_stop_backend(s);
    if (!made)
        return -1;
    return start_as(s, s->user, s->database, err, errlen);
}

/* Make sure there is a live backend (after a crash). */
static int ensure_backend(server *s, char *err, size_t errlen) {
    if (s->be && backend_alive(s->be))
        return 0;
    const char *db = s->be_db ? s->be_db : s->database;
    char *keep = strdup(db);
    if (!keep) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    srv_log(s, SERVER_LOG_WARNING, "restarting the backend on database %s", keep);
    int rc = session_start_backend(s, keep, err, errlen);
    if (rc != 0 && strcmp(keep, s->database) != 0)
        rc = session_start_backend(s, s->database, err, errlen);
    free(keep);
    return rc;
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

static void client_fatal_r(sess *ss, const qres *r) {
    client_fatal(ss, r->code[0] ? r->code : "XX000", r->msg, r->detail, r->hint);
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

/* Wait until the client socket is readable (1), or the server stops (0);
 * meanwhile take what the session's backend is signalled for (-1: that
 * ended the session). */
static int wait_input(sess *ss) {
    /* (Not mid-exchange: COPY FROM STDIN reads on inside backend_exchange.) */
    int sfd = ss->s->multi && !ss->in_exchange ? backend_signal_fd(ss->be) : -1;
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
    for (;;) {
        ssize_t r = conn_recv(ss->c, ss->buf + ss->len, ss->cap - ss->len);
        if (r > 0) {
            ss->len += (size_t)r;
            return 1;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_input(ss);
            if (w == 0) {
                client_fatal(ss, "57P01", "terminating connection due to administrator command",
                             NULL, NULL);
                return -1;
            }
            if (w < 0)
                return 0; /* its backend ended the session (FATAL sent) */
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

/* ---- session setup ------------------------------------------------------------ */

/* set_config(name, value) as a startup parameter. 0, or -1 (FATAL sent). */
static int apply_setting(sess *ss, const char *name, const char *value) {
    qres r;
    char err[640];
    const char *pv[2] = {name, value};
    if (bq(ss->s, "SELECT pg_catalog.set_config($1, $2, false)", 2, pv, &r, err, sizeof err) != 0) {
        client_fatal(ss, "57P01", "terminating connection because the database backend stopped",
                     err, NULL);
        return -1;
    }
    if (r.error) {
        client_fatal_r(ss, &r);
        return -1;
    }
    return 0;
}

/* The "options" startup parameter: command-line switches, split at white
 * space with backslash escapes (pg_split_opts); -c name=value and
 * --name=value are settings. */
static int apply_options(sess *ss, const char *opts) {
    size_t n = strlen(opts);
    char *arg = malloc(n + 1), *next = NULL;
    if (!arg) {
        client_fatal(ss, "53200", "out of memory", NULL, NULL);
        return -1;
    }
    const char *p = opts;
    int want_value = 0, rc = 0;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t k = 0;
        while (*p && !isspace((unsigned char)*p)) {
            if (*p == '\\' && p[1])
                p++;
            arg[k++] = *p++;
        }
        arg[k] = 0;
        const char *opt = NULL;
        char flag = 'c';
        if (want_value) {
            opt = arg;
            want_value = 0;
        } else if (!strcmp(arg, "-c")) {
            want_value = 1;
            continue;
        } else if (!strncmp(arg, "-c", 2)) {
            opt = arg + 2;
        } else if (!strncmp(arg, "--", 2) && arg[2]) {
            opt = arg + 2;
            flag = '-';
        } else {
            char m[300];
            snprintf(m, sizeof m, "invalid command-line argument for server process: %s", arg);
            client_fatal(ss, "42601", m, NULL, "Try \"postgres --help\" for more information.");
            rc = -1;
            break;
        }
        /* ParseLongOption: name=value, dashes in the name are underscores */
        next = strdup(opt);
        if (!next) {
            client_fatal(ss, "53200", "out of memory", NULL, NULL);
            rc = -1;
            break;
        }
        char *eq = strchr(next, '=');
        if (!eq) {
            char m[300];
            snprintf(m, sizeof m, flag == '-' ? "--%s requires a value" : "-c %s requires a value",
                     next);
            client_fatal(ss, "42601", m, NULL, NULL);
            rc = -1;
            break;
        }
        *eq = 0;
        for (char *q = next; *q; q++)
            if (*q == '-')
                *q = '_';
        if (apply_setting(ss, next, eq + 1) != 0) {
            rc = -1;
            break;
        }
        free(next);
        next = NULL;
    }
    if (rc == 0 && want_value) {
        client_fatal(ss, "42601", "invalid command-line arguments for server process", NULL,
                     "Try \"postgres --help\" for more information.");
        rc = -1;
    }
    free(next);
    free(arg);
    return rc;
}

/* Database, role, settings. 0, or -1 (FATAL sent). */
static int setup(sess *ss) {
    server *s = ss->s;
    conn *c = ss->c;
    char err[640], m[300];
    qres r;
    if (ensure_backend(s, err, sizeof err) != 0) {
        srv_log(s, SERVER_LOG_ERROR, "no backend: %s", err);
        client_fatal(ss, "57P03", "the database system is not available", err, NULL);
        return -1;
    }
    if (strcmp(c->user, s->user) != 0) {
        const char *pv[1] = {c->user};
        if (bq(s, "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1", 1, pv, &r, err,
               sizeof err) != 0 || r.error) {
            client_fatal(ss, "XX000", "cannot look up the role", r.error ? r.msg : err, NULL);
            return -1;
        }
        if (r.rows == 0) {
            snprintf(m, sizeof m, "role \"%s\" does not exist", c->user);
            client_fatal(ss, "28000", m, NULL, NULL);
            return -1;
        }
        if (strcmp(r.val, "t") != 0) {
            snprintf(m, sizeof m, "role \"%s\" is not permitted to log in", c->user);
            client_fatal(ss, "28000", m, NULL, NULL);
            return -1;
        }
    }
    if (strcmp(c->database, s->be_db) != 0) {
        const char *pv[1] = {c->database};
        if (bq(s, "SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = $1", 1, pv, &r,
               err, sizeof err) != 0 || r.error) {
            client_fatal(ss, "XX000", "cannot look up the database", r.error ? r.msg : err, NULL);
            return -1;
        }
        if (r.rows == 0) {
            snprintf(m, sizeof m, "database \"%s\" does not exist", c->database);
            client_fatal(ss, "3D000", m, NULL, NULL);
            return -1;
        }
        if (strcmp(r.val, "t") != 0) {
            snprintf(m, sizeof m, "database \"%s\" is not currently accepting connections",
                     c->database);
            client_fatal(ss, "55000", m, NULL, NULL);
            return -1;
        }
        if (s->borrowed) {
            snprintf(m, sizeof m, "this server serves only database \"%s\"", s->be_db);
            client_fatal(ss, "0A000", m, NULL, NULL);
            return -1;
        }
        /* One backend serves one database: switch, as PostgreSQL would
         * start this connection's backend in it. */
        srv_log(s, SERVER_LOG_INFO, "switching the backend to database %s", c->database);
        if (session_start_backend(s, c->database, err, sizeof err) != 0) {
            srv_log(s, SERVER_LOG_ERROR, "cannot open database %s: %s", c->database, err);
            client_fatal(ss, "XX000", err, NULL, NULL);
            char e2[640];
            session_start_backend(s, s->database, e2, sizeof e2);
            return -1;
        }
    }
    if (strcmp(c->user, s->user) != 0) {
        char q[200], id[160];
        quote_ident(c->user, id, sizeof id);
        snprintf(q, sizeof q, "SET SESSION AUTHORIZATION %s", id);
        const char *sql[] = {q, NULL};
        if (sq(s, sql, &r, err, sizeof err) != 0 || r.error) {
            client_fatal(ss, r.error ? r.code : "XX000", r.error ? r.msg : err, NULL, NULL);
            return -1;
        }
    }
    /* As PostgreSQL: the switches in options first, then the packet's
     * other parameters in order. */
    if (c->options && apply_options(ss, c->options) != 0)
        return -1;
    for (size_t i = 0; i < c->ngucs; i++)
        if (apply_setting(ss, c->gucs[2 * i], c->gucs[2 * i + 1]) != 0)
            return -1;
    return 0;
}

/* AuthenticationOk, ParameterStatus..., BackendKeyData, ReadyForQuery. */
static int hello(sess *ss) {
    server *s = ss->s;
    uint8_t key[32];
    size_t keylen = ss->c->minor >= 2 ? 32 : 4;
    if (auth_random(key, keylen) != 0) {
        client_fatal(ss, "XX000", "could not generate a cancel key", NULL, NULL);
        return -1;
    }
    wire_buf w;
    wire_buf_init(&w);
    wire_auth_request(&w, AUTH_REQ_OK, NULL, 0);
    for (int i = 0; i < s->nparams; i++)
        wire_parameter_status_msg(&w, s->params[i].name, s->params[i].value);
    wire_backend_key_msg(&w, s->be_pid, key, keylen);
    wire_ready_for_query_msg(&w, 'I');
    pthread_mutex_lock(&s->mu);
    s->cancel_active = 1;
    s->cancel_pid = s->be_pid;
    memcpy(s->cancel_key, key, keylen);
    s->cancel_keylen = keylen;
    pthread_mutex_unlock(&s->mu);
    int rc = w.oom ? -1 : srv_send_all(s, ss->c, w.data, w.len);
    wire_buf_free(&w);
    if (rc != 0)
        ss->gone = 1;
    return rc;
}

/* Undo whatever the session left: an open (or failed, or extended-protocol
 * implicit) transaction, then every session state DISCARD ALL resets. A
 * backend that cannot be reset is restarted. */
static void reset(server *s) {
    if (!s->be || !backend_alive(s->be)) {
        char err[640];
        if (ensure_backend(s, err, sizeof err) != 0)
            srv_log(s, SERVER_LOG_ERROR, "cannot restart the backend: %s", err);
        return;
    }
    /* ROLLBACK aborts an open transaction (also an extended-protocol one
     * awaiting Sync); Sync ends a skip-till-Sync after an extended-protocol
     * error, which ignores the first ROLLBACK, hence the second. */
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, "ROLLBACK");
    wire_sync(&w);
    wire_query(&w, "ROLLBACK");
    wire_query(&w, "SET statement_timeout = 0");
    wire_query(&w, "DISCARD ALL");
    qres r;
    char err[640];
    int rc = exchange_read(s, &w, &r, err, sizeof err);
    wire_buf_free(&w);
    if (rc == 0 && r.status == 'I' && !strcmp(r.tag, "DISCARD ALL")) {
        /* A setting made in postgresql.auto.conf... stays; DISCARD ALL
         * resets what the session changed, and the reply reported it. */
        return;
    }
    if (s->borrowed) { /* not ours to restart */
        srv_log(s, SERVER_LOG_ERROR, "could not reset the session: %s",
                rc != 0 ? err : r.error ? r.msg : "unexpected reply");
        return;
    }
    srv_log(s, SERVER_LOG_WARNING, "could not reset the session (%s): restarting the backend",
            rc != 0 ? err : r.error ? r.msg : "unexpected reply");
    char *db = strdup(s->be_db ? s->be_db : s->database);
    session_stop_backend(s);
    if (!db || session_start_backend(s, db, err, sizeof err) != 0) {
        srv_log(s, SERVER_LOG_ERROR, "cannot restart the backend: %s", err);
        session_start_backend(s, s->database, err, sizeof err);
    }
    free(db);
}

/* A session for client c: the bytes it sent after its startup packet are
 * its first input. */
static void sess_init(sess *ss, server *s, conn *c) {
    *ss = (sess){.s = s, .c = c, .buf = c->buf, .len = c->len, .cap = c->cap};
    c->buf = NULL;
    c->len = c->cap = 0;
}

static const char *app_name(const conn *c) {
    for (size_t i = 0; i < c->ngucs; i++)
        if (!strcmp(c->gucs[2 * i], "application_name"))
            return c->gucs[2 * i + 1];
    return NULL;
}

static void run_session(server *s, conn *c) {
    sess ss;
    sess_init(&ss, s, c);
    int64_t t0 = srv_now_ms();
    uint64_t id = ++s->sessions;
    const char *app = app_name(c);
    srv_log(s, SERVER_LOG_INFO, "session %llu: %s connected as user %s to database %s%s%s",
            (unsigned long long)id, c->peer, c->user, c->database,
            app ? ", application " : "", app ? app : "");
    if (s->acquire)
        s->acquire(s->lock_ctx);
    if (setup(&ss) == 0 && hello(&ss) == 0) {
        ss.be = s->be; /* setup may have started another */
        pump(&ss);
    }
    pthread_mutex_lock(&s->mu);
    s->cancel_active = 0;
    pthread_mutex_unlock(&s->mu);
    srv_log(s, SERVER_LOG_INFO, "session %llu: %s disconnected after %.3f s", (unsigned long long)id,
            c->peer, (double)(srv_now_ms() - t0) / 1000.0);
    free(ss.buf);
    wire_buf_free(&ss.fail);
    srv_conn_free(c); /* closes the socket */
    reset(s);
    if (s->release)
        s->release(s->lock_ctx);
}

/* ---- many sessions ----------------------------------------------------------- */

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

/* One client's session on a backend of its own. */
static void run_clone_session(server *s, conn *c) {
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
    int rc = backend_clone(s->be, params, c->minor, &ss.be, err, sizeof err);
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
    srv_conn_free(c);
}

/* The client_connection_check_interval of every session: while a session's
 * statement runs, its client's socket is watched, and a client that has
 * gone (hung up, reset) gets its statement cancelled, so that its session
 * ends at once and lets go of its locks, as PostgreSQL's check does. */
void *session_watch_main(void *arg) {
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

/* The cluster's first backend serves no client, but the others signal it
 * as they signal every backend (a ProcSignalBarrier of DROP DATABASE waits
 * until each has absorbed it): it takes its signals here. */
void *session_first_main(void *arg) {
    server *s = arg;
    for (;;) {
        int fd = backend_signal_fd(s->be);
        struct pollfd pf[2] = {{.fd = s->stop_pipe[0], .events = POLLIN},
                               {.fd = fd, .events = POLLIN}};
        int k = poll(pf, fd >= 0 ? 2 : 1, fd >= 0 ? -1 : 1000);
        if (k < 0 && errno != EINTR)
            return NULL;
        if (pf[0].revents)
            return NULL;
        if (fd >= 0 && pf[1].revents) {
            const uint8_t *out;
            size_t n;
            char err[640];
            if (backend_idle(s->be, &out, &n, err, sizeof err) != 0) {
                srv_log(s, SERVER_LOG_ERROR, "the cluster's first backend stopped: %s", err);
                return NULL;
            }
        }
    }
}

typedef struct worker_arg {
    server *s;
    conn *c;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *w = arg;
    server *s = w->s;
    srv_block_sigpipe();
    run_clone_session(s, w->c);
    free(w);
    pthread_mutex_lock(&s->mu);
    s->nworkers--;
    pthread_cond_broadcast(&s->workers_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A thread of its own for the client's session. */
static void start_worker(server *s, conn *c) {
    worker_arg *w = malloc(sizeof *w);
    pthread_attr_t at;
    pthread_t t;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&s->mu);
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

void *session_main(void *arg) {
    server *s = arg;
    srv_block_sigpipe();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->qhead)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        conn *c = s->qhead;
        s->qhead = c->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->nqueued--;
        c->next = NULL;
        pthread_mutex_unlock(&s->mu);
        /* the listener stops polling it (and holding its file open) */
        ssize_t w = write(s->wake_pipe[1], "w", 1);
        (void)w;
        if (s->multi)
            start_worker(s, c);
        else
            run_session(s, c);
    }
    return NULL;
}
