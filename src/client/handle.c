/* Handles: the registry of open handles, open and close, locking, errors. */
#define _GNU_SOURCE
#include "client/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- registry -------------------------------------------------------------
 * Every open handle is in g_handles. A call first looks its pointer up
 * here (under g_lock) and takes a reference, so a closed or made-up
 * pointer is refused without being dereferenced, and a handle closed while
 * other threads wait for it stays allocated until the last of them has
 * left. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pglite *g_handles;

static int acquire(pglite *db) {
    int ok = 0;
    pthread_mutex_lock(&g_lock);
    for (pglite *p = g_handles; p; p = p->next) {
        if (p == db) {
            db->refs++;
            ok = 1;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return ok;
}

static void destroy(pglite *db);

static void release(pglite *db) {
    pthread_mutex_lock(&g_lock);
    int last = --db->refs == 0 && db->closed;
    pthread_mutex_unlock(&g_lock);
    if (last)
        destroy(db);
}

static void unregister(pglite *db) {
    pthread_mutex_lock(&g_lock);
    for (pglite **pp = &g_handles; *pp; pp = &(*pp)->next) {
        if (*pp == db) {
            *pp = db->next;
            break;
        }
    }
    db->closed = 1;
    pthread_mutex_unlock(&g_lock);
}

int client_enter(pglite *db) {
    if (!db || !acquire(db))
        return PGLITE_MISUSE;
    pthread_mutex_lock(&db->mu);
    if (db->closed) { /* closed while we waited */
        pthread_mutex_unlock(&db->mu);
        release(db);
        return PGLITE_MISUSE;
    }
    if (db->depth++ == 0 && db->be) {
        /* The session takes its signals itself again (see client_leave). */
        const uint8_t *out;
        size_t n;
        backend_unpark(db->be, &out, &n);
        if (n)
            client_idle_output(db, out, n);
    }
    return PGLITE_OK;
}

int client_leave(pglite *db, int rc) {
    if (db->depth == 1) {
        events_deliver(db);
        /* Between calls no thread of ours waits on the session: the
         * cluster's takes its signals (a DROP DATABASE's barrier, a
         * terminate, a NOTIFY) as an idle PostgreSQL backend would. */
        if (db->be)
            backend_park(db->be);
    }
    db->depth--;
    pthread_mutex_unlock(&db->mu);
    release(db);
    return rc;
}

/* ---- errors --------------------------------------------------------------- */

static _Thread_local errobj *t_open_err;

void client_set_open_error(errobj *e) {
    errobj_free(t_open_err);
    t_open_err = e;
}

int client_set_error(pglite *db, errobj *err) {
    errobj_free(db->last_err);
    db->last_err = err;
    return err ? err->e.code : PGLITE_OK;
}

int client_fail(pglite *db, int code, const char *sqlstate, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errobj *e = errobj_libv(code, sqlstate, fmt, ap);
    va_end(ap);
    client_set_error(db, e);
    return code;
}

static const pglite_error g_ok = {.code = PGLITE_OK, .severity = "", .sqlstate = "00000",
                                  .message = "not an error"};
static const pglite_error g_bad_handle = {
    .code = PGLITE_MISUSE, .severity = "ERROR", .sqlstate = "22023",
    .message = "the handle is not open (NULL, closed, or not from pglite_open)"};

const pglite_error *pglite_open_error(void) { return t_open_err ? &t_open_err->e : NULL; }

const pglite_error *pglite_last_error(pglite *db) {
    if (!db)
        return t_open_err ? &t_open_err->e : &g_ok;
    if (client_enter(db) != PGLITE_OK)
        return &g_bad_handle;
    const pglite_error *e = db->last_err ? &db->last_err->e : &g_ok;
    client_leave(db, 0);
    return e;
}

const char *pglite_errmsg(pglite *db) { return pglite_last_error(db)->message; }
int pglite_errcode(pglite *db) { return pglite_last_error(db)->code; }

/* ---- parameter status --------------------------------------------------------- */

void client_set_param(pglite *db, const char *name, const char *value) {
    for (int i = 0; i < db->nparams_status; i++) {
        if (strcmp(db->params[i].name, name) == 0) {
            char *v = strdup(value);
            if (v) {
                free(db->params[i].value);
                db->params[i].value = v;
            }
            return;
        }
    }
    param *p = realloc(db->params, (size_t)(db->nparams_status + 1) * sizeof *p);
    if (!p)
        return;
    db->params = p;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    p[db->nparams_status++] = (param){n, v};
}

const char *pglite_parameter_status(pglite *db, const char *name) {
    if (!name || client_enter(db) != PGLITE_OK)
        return NULL;
    const char *v = NULL;
    for (int i = 0; i < db->nparams_status; i++)
        if (strcmp(db->params[i].name, name) == 0)
            v = db->params[i].value;
    return client_leave(db, 0), v;
}

int pglite_transaction_status(pglite *db) {
    if (client_enter(db) != PGLITE_OK)
        return -1;
    int s = !backend_alive(db->be) ? -1
            : db->tx == 'T'        ? PGLITE_TX_INTRANS
            : db->tx == 'E'        ? PGLITE_TX_INERROR
                                   : PGLITE_TX_IDLE;
    return client_leave(db, s);
}

void pglite_interrupt(pglite *db) {
    if (!db || !acquire(db))
        return;
    pthread_mutex_lock(&db->be_mu);
    if (db->be)
        backend_cancel(db->be);
    pthread_mutex_unlock(&db->be_mu);
    release(db);
}

/* ---- open and close --------------------------------------------------------------- */

void pglite_options_init(pglite_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
}

static void destroy(pglite *db) {
    events_free(db);
    errobj_free(db->fatal);
    for (listener *l = db->listeners, *n; l; l = n) {
        n = l->next;
        free(l->channel);
        free(l);
    }
    for (int i = 0; i < db->nparams_status; i++) {
        free(db->params[i].name);
        free(db->params[i].value);
    }
    free(db->params);
    errobj_free(db->last_err);
    wire_buf_free(&db->req);
    wire_buf_free(&db->blob_out);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->be_mu);
    free(db);
}

static int open_fail(pglite *db, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int open_fail(pglite *db, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    client_set_open_error(errobj_libv(code, NULL, fmt, ap));
    va_end(ap);
    if (db) {
        backend_close(db->be);
        shared_close(db->sh);
        destroy(db);
    }
    return code;
}

/* "name=value" settings as a startup packet's options: -c name=value
 * each, white space and backslashes escaped with a backslash (what
 * pg_split_opts undoes). NULL without memory. */
static char *gucs_as_options(const char *const *gucs) {
    wire_buf b;
    wire_buf_init(&b);
    for (size_t i = 0; gucs[i]; i++) {
        wire_put(&b, i ? " -c " : "-c ", i ? 4 : 3);
        for (const char *c = gucs[i]; *c; c++) {
            if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r' || *c == '\\')
                wire_put(&b, "\\", 1);
            wire_put(&b, c, 1);
        }
    }
    wire_put(&b, "", 1);
    if (b.oom) {
        wire_buf_free(&b);
        return NULL;
    }
    char *s = strdup((const char *)b.data);
    wire_buf_free(&b);
    return s;
}

int pglite_open(const char *path, const pglite_options *opts, pglite **out) {
    if (!out)
        return open_fail(NULL, PGLITE_MISUSE, "pglite_open: out is NULL");
    *out = NULL;
    pglite_options o;
    pglite_options_init(&o);
    if (opts) {
        if (opts->size < offsetof(pglite_options, username) || opts->size > 65536)
            return open_fail(NULL, PGLITE_MISUSE,
                             "pglite_open: options.size is %zu: call pglite_options_init first",
                             opts->size);
        memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
        o.size = sizeof o;
    }
    if (o.debug < 0 || o.debug > 5)
        return open_fail(NULL, PGLITE_MISUSE, "pglite_open: debug level %d is not 0..5", o.debug);
    if (path && !*path)
        return open_fail(NULL, PGLITE_MISUSE, "pglite_open: empty path (NULL for a temporary database)");
    pglite *db = calloc(1, sizeof *db);
    if (!db)
        return open_fail(NULL, PGLITE_NOMEM, "out of memory");
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&db->mu, &a);
    pthread_mutexattr_destroy(&a);
    pthread_mutex_init(&db->be_mu, NULL);
    wire_buf_init(&db->req);
    wire_buf_init(&db->blob_out);
    db->tx = 'I';

    char err[4096];
    int started;
    int rc = shared_open(path, &o, &db->sh, &started, err, sizeof err);
    if (rc != PGLITE_OK)
        return open_fail(db, rc, "%s", err);
    /* The handle's session: a backend of its own on the cluster, started
     * from a startup packet as a client of a server gets one, so the
     * session user is the role (PostgreSQL checks it may log in) and
     * later opens' settings are the session's (options, as -c). */
    const char *params[10];
    int k = 0;
    params[k++] = "user";
    params[k++] = o.username && *o.username ? o.username : "postgres";
    params[k++] = "database";
    params[k++] = o.database && *o.database ? o.database : "postgres";
    char *sess_opts = NULL;
    if (o.gucs && o.gucs[0] && !started) { /* the cluster's already: the session's */
        if (!(sess_opts = gucs_as_options(o.gucs)))
            return open_fail(db, PGLITE_NOMEM, "out of memory");
        params[k++] = "options";
        params[k++] = sess_opts;
    }
    params[k] = NULL;
    backend *first = shared_first(db->sh, err, sizeof err);
    rc = first ? backend_clone(first, params, 0, &db->be, err, sizeof err) : -1;
    free(sess_opts);
    if (rc < 0)
        return open_fail(db, client_status(rc), "%s", err);
    backend_set_blob(db->be, db, client_blob_read, client_blob_write);
    /* What the server said at startup: parameters, then ReadyForQuery
     * (or PostgreSQL's FATAL: no such role or database, too many
     * connections). */
    size_t n;
    const uint8_t *hello = backend_startup_reply(db->be, &n);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, hello, n);
    int got_ready = 0, w;
    while ((w = wire_next(&r, &m)) == 1) {
        const char *name, *value;
        if (m.type == PqMsg_ParameterStatus && wire_parameter_status(&m, &name, &value) == 0)
            client_set_param(db, name, value);
        else if (m.type == PqMsg_ReadyForQuery && wire_ready_for_query(&m, &db->tx) == 0)
            got_ready = 1;
        else if (m.type == PqMsg_ErrorResponse) {
            int bad = 0;
            errobj *e = errobj_from_wire(&m, &bad);
            if (!e)
                return open_fail(db, PGLITE_NOMEM, "out of memory");
            e->e.code = PGLITE_CANTOPEN;
            backend_close(db->be);
            db->be = NULL;
            shared_close(db->sh);
            db->sh = NULL;
            destroy(db);
            client_set_open_error(e);
            return PGLITE_CANTOPEN;
        }
    }
    if (w < 0 || !got_ready || rc != 0)
        return open_fail(db, PGLITE_PROTOCOL, "malformed startup reply from the backend");
    backend_park(db->be);
    pthread_mutex_lock(&g_lock);
    db->next = g_handles;
    g_handles = db;
    pthread_mutex_unlock(&g_lock);
    client_set_open_error(NULL);
    *out = db;
    return PGLITE_OK;
}

int pglite_close(pglite *db) {
    if (!db)
        return PGLITE_OK;
    if (client_enter(db) != PGLITE_OK)
        return PGLITE_MISUSE;
    if (db->depth > 1) { /* from a callback inside a call on this handle */
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_close called from a callback of its handle");
        return client_leave(db, PGLITE_MISUSE);
    }
    unregister(db); /* later calls fail; waiting ones see closed */
    pthread_mutex_lock(&db->be_mu);
    backend *be = db->be;
    db->be = NULL;
    pthread_mutex_unlock(&db->be_mu);
    backend_close(be); /* the end of its session */
    shared_close(db->sh); /* the last one closes the cluster */
    db->sh = NULL;
    db->depth--;
    release(db); /* frees db when no other thread holds it */
    return PGLITE_OK;
}
