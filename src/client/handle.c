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
    db->depth++;
    return PGLITE_OK;
}

int client_leave(pglite *db, int rc) {
    if (db->depth == 1)
        events_deliver(db);
    int wake = db->depth == 1 && db->served && db->tx == 'I';
    db->depth--;
    pthread_mutex_unlock(&db->mu);
    release(db);
    if (wake)
        client_served_changed();
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
        if (db->be)
            backend_close(db->be);
        store_close(&db->st);
        destroy(db);
    }
    return code;
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
    int rc = store_open(&db->st, path, &o, err, sizeof err);
    if (rc != PGLITE_OK)
        return open_fail(db, rc, "%s", err);
    backend_options bo = {.data_dir = db->st.dir,
                          .user = o.username,
                          .database = o.database,
                          .gucs = o.gucs,
                          .debug = o.debug,
                          .relaxed_durability = o.relaxed_durability,
                          .blob_ctx = db,
                          .blob_read = client_blob_read,
                          .blob_write = client_blob_write};
    if ((rc = backend_start(&bo, &db->be, err, sizeof err)) != 0)
        return open_fail(db, client_status(rc), "%s", err);
    /* What the server said at startup: parameters, then ReadyForQuery. */
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
            char msg[1024] = "";
            wire_error_field(&m, 'M', msg, sizeof msg);
            return open_fail(db, PGLITE_CANTOPEN, "the session was refused: %s", msg);
        }
    }
    if (w < 0 || !got_ready)
        return open_fail(db, PGLITE_PROTOCOL, "malformed startup reply from the backend");
    /* The embedded backend runs its session as the bootstrap superuser
     * whatever the startup packet names: become the requested user, which
     * must exist (SET SESSION AUTHORIZATION checks it). */
    if (o.username && *o.username && strcmp(o.username, "postgres") != 0) {
        wire_buf q;
        wire_buf_init(&q);
        wire_put(&q, "SET SESSION AUTHORIZATION \"", 27);
        for (const char *c = o.username; *c; c++) {
            if (*c == '"')
                wire_put(&q, c, 1); /* "" inside a quoted identifier */
            wire_put(&q, c, 1);
        }
        wire_put(&q, "\"", 2); /* and the NUL */
        int rc2 = q.oom ? PGLITE_NOMEM : client_simple(db, (const char *)q.data, NULL);
        wire_buf_free(&q);
        if (rc2 != PGLITE_OK)
            return open_fail(db, rc2 == PGLITE_ERROR ? PGLITE_CANTOPEN : rc2,
                             "cannot start the session as user \"%s\": %s", o.username,
                             db->last_err ? db->last_err->e.message : pglite_errstr(rc2));
    }
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
    backend_close(be);
    store_close(&db->st);
    int wake = db->served;
    db->depth--;
    pthread_mutex_unlock(&db->mu);
    release(db); /* frees db when no other thread holds it */
    if (wake)
        client_served_changed();
    return PGLITE_OK;
}
