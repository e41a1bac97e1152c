/*
 * client: the public API (include/pglite.h) over one embedded backend.
 *
 * handle.c   registry of open handles, open/close, locking, last error
 * error.c    pglite_error objects (from ErrorResponse or made by the library)
 * result.c   results: building from backend replies, accessors, typed getters
 * query.c    exec (script split), query, prepare, describe, transactions
 * split.c    splitting a script into statements, as psql does
 * events.c   notices and notifications: queued during a call, delivered after
 * copy.c     /dev/blob for COPY FROM/TO
 * store.c    data directories: temporary or persistent
 * archive.c  data-directory archives (.tar.gz): dump, load
 * server.c   pglite_server_*: the wire server (src/server) on a handle
 *
 * Every public call on a handle runs between client_enter and client_leave:
 * a reference in the registry (so a closed or unknown pointer is refused
 * without being dereferenced), the handle's recursive mutex, and at the
 * outermost level the delivery of queued callbacks.
 */
#ifndef PGLITE_CLIENT_H
#define PGLITE_CLIENT_H

#include <pthread.h>
#include <sys/types.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "pglite.h"
#include "backend/backend.h"
#include "wire/wire.h"

/* ---- errors (error.c) ---------------------------------------------------- */

typedef struct errobj {
    pglite_error e; /* first: a pglite_error * is an errobj * */
    uint8_t *body;  /* ErrorResponse-style fields: code, string, NUL..., 0 */
    size_t len;
    int is_static;  /* the out-of-memory fallback: never freed */
} errobj;

/* From an ErrorResponse/NoticeResponse; NULL if malformed (*malformed set)
 * or out of memory. */
errobj *errobj_from_wire(const wire_msg *m, int *malformed);
/* A library error with code (PGLITE_*), its SQLSTATE (NULL: the code's),
 * and a printf message. Never NULL (falls back to a static out-of-memory
 * error). */
errobj *errobj_lib(int code, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
errobj *errobj_libv(int code, const char *sqlstate, const char *fmt, va_list ap);
errobj *errobj_copy(const errobj *o); /* NULL on OOM */
void errobj_free(errobj *o);
/* The static out-of-memory error. */
errobj *errobj_nomem(void);

/* ---- results (result.c) -------------------------------------------------- */

typedef struct rfield {
    char *name;
    uint32_t type, table;
    int16_t column, typlen, format;
    int32_t typmod;
} rfield;

typedef struct rcell {
    size_t off; /* into data */
    int32_t len; /* -1 NULL */
} rcell;

struct pglite_result {
    int status;
    int has_rowdesc;
    char *tag;
    int nfields;
    rfield *fields;
    int nparams;
    uint32_t *ptypes;
    int ntuples;
    size_t rows_cap; /* rows allocated in cells */
    rcell *cells;
    wire_buf data;
    errobj *err;
};

pglite_result *result_new(int status);
/* An error result holding err (taken over); NULL only without memory (err
 * is then freed). */
pglite_result *result_error(errobj *err);
/* Fill from messages; 0, or -1 (no memory, or malformed: *malformed). */
int result_set_fields(pglite_result *r, const wire_msg *m, int *malformed);
int result_set_params(pglite_result *r, const wire_msg *m, int *malformed);
int result_add_row(pglite_result *r, const wire_msg *m, int *malformed);
int result_set_tag(pglite_result *r, const char *tag);

/* ---- handles (handle.c) -------------------------------------------------- */

typedef struct event {
    struct event *next;
    int kind; /* 'N' notice, 'A' notification */
    errobj *notice;
    char *channel, *payload;
    int pid;
} event;

typedef struct listener {
    struct listener *next;
    char *channel;
    pglite_notify_fn fn;
    void *ctx;
} listener;

typedef struct param {
    char *name, *value;
} param;

typedef struct store {
    char *dir;       /* host data directory */
    int temporary;
    char *tmp_root;  /* a temporary database's own directory (removed on close) */
    void *cluster;   /* the locked cluster, when the cluster layer provides one */
} store;

/* A data directory this process has open (store.c): its cluster's first
 * backend, parked, which every handle's session and every server session
 * on it is cloned from. Shared by the handles (and servers) on it; the
 * last to let go closes the cluster (the shutdown checkpoint). */
typedef struct shared_db {
    struct shared_db *next; /* the registry */
    int refs;               /* under the registry lock */
    store st;
    dev_t dev;              /* the data directory, to know it again */
    ino_t ino;
    pid_t owner;            /* the process that opened it (a fork's child does not have it) */
    backend *first;         /* under mu: replaced after a crash (shared_first) */
    backend **old_firsts;   /* those replaced, closed with the database */
    int nold;
    pthread_mutex_t mu;
    int relaxed_durability; /* the cluster's */
} shared_db;

struct pglite {
    struct pglite *next; /* registry */
    int refs;            /* registry references (under the registry lock) */
    int closed;
    pthread_mutex_t mu;  /* recursive: serialises calls */
    pthread_mutex_t be_mu; /* guards be against pglite_interrupt during close */
    int depth;           /* nesting of calls on the owning thread */
    int delivering;

    shared_db *sh;       /* the database */
    backend *be;         /* this handle's session on it */
    char tx;             /* 'I', 'T', 'E' from the last ReadyForQuery */
    errobj *fatal;       /* the FATAL that ended the session while it was idle */
    wire_buf req;

    errobj *last_err;    /* NULL after a success */
    param *params;
    int nparams_status;

    pglite_notice_fn notice_fn;
    void *notice_ctx;
    pglite_notify_fn notify_fn;
    void *notify_ctx;
    listener *listeners;
    event *ev_head, *ev_tail;

    /* /dev/blob during a copy */
    const uint8_t *blob_in;
    size_t blob_in_len, blob_in_pos;
    int blob_capture;
    wire_buf blob_out;
};

/* The public status (PGLITE_*) of an internal one: 0 or a negative
 * pgl_status of cluster, backend or server (cluster/status.h). */
int client_status(int internal);

/* Enter a public call on db: PGLITE_OK with the mutex held, or
 * PGLITE_MISUSE (db NULL, not open, closed). */
int client_enter(pglite *db);
/* The database and the session user of db's session (server.c); inside
 * client_enter. */
int client_identity(pglite *db, char dbname[256], char user[256]);
/* Leave: deliver callbacks (outermost call only), unlock, release; rc
 * passes through. */
int client_leave(pglite *db, int rc);
/* Record the outcome of a call: err NULL clears the last error (success);
 * otherwise takes err over and returns its code. */
int client_set_error(pglite *db, errobj *err);
int client_fail(pglite *db, int code, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void client_set_param(pglite *db, const char *name, const char *value);
/* Replace the calling thread's open error (pglite_open_error); NULL clears. */
void client_set_open_error(errobj *e);

/* ---- exchanges (query.c) -------------------------------------------------- */

/* Results of one exchange. */
typedef struct collect {
    pglite_result **list;
    int n, cap;
    pglite_result *cur;
} collect;

void collect_free(collect *c);
/* Send db->req (reset afterwards) and gather the reply into c: results,
 * queued events, parameter status, transaction status. PGLITE_OK, or
 * PGLITE_DEAD / PGLITE_NOMEM / PGLITE_PROTOCOL with the handle's error
 * set. */
int client_roundtrip(pglite *db, collect *c);
/* What the session's backend produced while it was parked (notifications,
 * notices, the FATAL of a terminate): into the handle's events, the FATAL
 * kept for the next call. */
void client_idle_output(pglite *db, const uint8_t *out, size_t len);
/* One simple-protocol Query of sql (not split): the last result into *res
 * (may be NULL). Returns PGLITE_OK, PGLITE_ERROR (database error; the
 * handle's error set), or another status. */
int client_simple(pglite *db, const char *sql, pglite_result **res);

/* ---- events (events.c) ----------------------------------------------------- */

void events_push_notice(pglite *db, errobj *notice);
void events_push_notify(pglite *db, int pid, const char *channel, const char *payload);
void events_deliver(pglite *db);
void events_free(pglite *db);

/* ---- statements (split.c) ---------------------------------------------------- */

/* The next statement of the script s (n bytes) from *pos: 1 with its
 * [*start, *start + *len) (without the ';'), *pos after it; 0 when only
 * whitespace and comments are left. */
int sql_next_statement(const char *s, size_t n, size_t *pos, size_t *start, size_t *len);

/* ---- blob (copy.c) and stores (store.c) ----------------------------------------- */

long client_blob_read(void *ctx, void *buf, size_t len);
long client_blob_write(void *ctx, const void *buf, size_t len);

/* The database at path (NULL: a new temporary one) under options o: the
 * one this process has open already (another reference), or the data
 * directory created or opened and its cluster started (*started 1: o's
 * settings are the cluster's). PGLITE_OK, or a status with a message in
 * err. */
int shared_open(const char *path, const pglite_options *o, shared_db **out, int *started,
                char *err, size_t errlen);
/* Another reference to sh. */
void shared_ref(shared_db *sh);
/* The cluster's first backend, to clone sessions from: started again
 * (crash recovery) if a backend of the cluster crashed. NULL if it cannot
 * be (message in err, if given). */
backend *shared_first(shared_db *sh, char *err, size_t errlen);
/* Let go of a reference; the last closes the cluster and the directory. */
void shared_close(shared_db *sh);
/* Unpack the data-directory archive into dir (missing or empty). */
int archive_load(const char *archive, const char *dir, char *err, size_t errlen);

#endif
