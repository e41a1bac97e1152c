/* pglite_error objects: PostgreSQL's ErrorResponse fields, kept as sent,
 * or the same fields made up by the library. */
#define _GNU_SOURCE
#include "client/client.h"
#include "cluster/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pglite_version(void) { return PGLITE_VERSION; }

const char *pglite_errstr(int code) {
    switch (code) {
    case PGLITE_OK: return "not an error";
    case PGLITE_ERROR: return "database error";
    case PGLITE_MISUSE: return "library routine called incorrectly";
    case PGLITE_NOMEM: return "out of memory";
    case PGLITE_BUSY: return "data directory in use";
    case PGLITE_CANTOPEN: return "unable to open the database";
    case PGLITE_IOERR: return "file input/output error";
    case PGLITE_DEAD: return "the database backend has died";
    case PGLITE_PROTOCOL: return "unexpected reply from the backend";
    case PGLITE_RANGE: return "index out of range";
    case PGLITE_NULL: return "value is NULL";
    case PGLITE_MISMATCH: return "value does not convert to the requested type";
    case PGLITE_FORMAT: return "malformed or unsafe archive";
    default: return "unknown status code";
    }
}

static const char *code_sqlstate(int code) {
    switch (code) {
    case PGLITE_MISUSE: return "22023";
    case PGLITE_NOMEM: return "53200";
    case PGLITE_BUSY: return "55006";
    case PGLITE_CANTOPEN: return "08001";
    case PGLITE_IOERR: return "58030";
    case PGLITE_DEAD: return "08006";
    case PGLITE_PROTOCOL: return "08P01";
    case PGLITE_RANGE: return "2202E";
    case PGLITE_NULL: return "22004";
    case PGLITE_MISMATCH: return "42804";
    case PGLITE_FORMAT: return "22000";
    default: return "XX000";
    }
}

const char *pglite_error_field(const pglite_error *e, char code) {
    if (!e || !code)
        return NULL;
    const errobj *o = (const errobj *)e;
    const uint8_t *p = o->body, *end = o->body + o->len;
    while (p && p < end && *p) {
        char c = (char)*p++;
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        if (!nul)
            return NULL;
        if (c == code)
            return (const char *)p;
        p = nul + 1;
    }
    return NULL;
}

/* Point the public fields into body. */
static void fill(errobj *o, int code) {
    pglite_error *e = &o->e;
    e->code = code;
    e->severity = pglite_error_field(e, 'S');
    if (!e->severity)
        e->severity = pglite_error_field(e, 'V');
    if (!e->severity)
        e->severity = "ERROR";
    e->sqlstate = pglite_error_field(e, 'C');
    if (!e->sqlstate)
        e->sqlstate = "XX000";
    e->message = pglite_error_field(e, 'M');
    if (!e->message)
        e->message = "";
    e->detail = pglite_error_field(e, 'D');
    e->hint = pglite_error_field(e, 'H');
    const char *pos = pglite_error_field(e, 'P');
    e->position = pos ? atoi(pos) : 0;
    e->context = pglite_error_field(e, 'W');
    e->schema = pglite_error_field(e, 's');
    e->table = pglite_error_field(e, 't');
    e->column = pglite_error_field(e, 'c');
    e->datatype = pglite_error_field(e, 'd');
    e->constraint = pglite_error_field(e, 'n');
}

static errobj g_nomem = {
    .e = {.code = PGLITE_NOMEM, .severity = "ERROR", .sqlstate = "53200",
          .message = "out of memory"},
    .body = (uint8_t *)"SERROR\0VERROR\0C53200\0Mout of memory\0",
    .len = 37,
    .is_static = 1,
};

errobj *errobj_nomem(void) { return &g_nomem; }

errobj *errobj_from_wire(const wire_msg *m, int *malformed) {
    /* check the shape first: fields, each NUL-terminated, then a 0 */
    wire_cur c;
    wire_cur_init(&c, m);
    char code;
    const char *v;
    int r;
    while ((r = wire_error_next(&c, &code, &v)) == 1)
        ;
    if (r < 0) {
        if (malformed)
            *malformed = 1;
        return NULL;
    }
    errobj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->len = c.pos; /* up to and including the terminator */
    o->body = malloc(o->len ? o->len : 1);
    if (!o->body) {
        free(o);
        return NULL;
    }
    if (o->len)
        memcpy(o->body, m->body, o->len);
    else
        o->body[0] = 0;
    fill(o, PGLITE_ERROR);
    return o;
}

errobj *errobj_libv(int code, const char *sqlstate, const char *fmt, va_list ap) {
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        return &g_nomem;
    if (!sqlstate)
        sqlstate = code_sqlstate(code);
    size_t ml = strlen(msg), sl = strlen(sqlstate);
    size_t len = (1 + 6) * 2 + (1 + sl + 1) + (1 + ml + 1) + 1;
    errobj *o = calloc(1, sizeof *o);
    uint8_t *b = malloc(len);
    if (!o || !b) {
        free(o);
        free(b);
        free(msg);
        return &g_nomem;
    }
    uint8_t *p = b;
    memcpy(p, "SERROR\0VERROR\0C", 15);
    p += 15;
    memcpy(p, sqlstate, sl + 1);
    p += sl + 1;
    *p++ = 'M';
    memcpy(p, msg, ml + 1);
    p += ml + 1;
    *p++ = 0;
    free(msg);
    o->body = b;
    o->len = (size_t)(p - b);
    fill(o, code);
    return o;
}

errobj *errobj_lib(int code, const char *sqlstate, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errobj *o = errobj_libv(code, sqlstate, fmt, ap);
    va_end(ap);
    return o;
}

errobj *errobj_copy(const errobj *src) {
    if (!src)
        return NULL;
    if (src->is_static)
        return (errobj *)src;
    errobj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->body = malloc(src->len ? src->len : 1);
    if (!o->body) {
        free(o);
        return NULL;
    }
    memcpy(o->body, src->body, src->len);
    o->len = src->len;
    fill(o, src->e.code);
    return o;
}

void errobj_free(errobj *o) {
    if (!o || o->is_static)
        return;
    free(o->body);
    free(o);
}

int client_status(int internal) {
    switch (internal) {
    case PGL_OK:
        return PGLITE_OK;
#define PGL_STATUS_CASE(kind, n, pub, text) \
    case PGL_E##kind:                        \
        return pub;
        PGL_STATUS_MAP(PGL_STATUS_CASE)
#undef PGL_STATUS_CASE
    }
    return PGLITE_CANTOPEN; /* a kind this table does not know: a failure all the same */
}
