/* Statements: one exchange with the backend per protocol cycle; the reply
 * is read into results, events, parameter status and transaction status. */
#define _GNU_SOURCE
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

/* Sent after every statement that could run COPY ... FROM STDIN: the
 * embedded backend cannot wait for more input, so a COPY FROM STDIN fails
 * at once (57014) instead of ending the session. Outside COPY, PostgreSQL
 * ignores CopyFail. */
static const char k_no_stdin[] =
    "COPY FROM STDIN is not supported by pglite: use pglite_copy_from with '/dev/blob'";

/* Longest SQL text accepted (a message is at most 1 GB). */
#define MAX_SQL ((size_t)WIRE_MAX_MESSAGE - 1024)

void collect_free(collect *c) {
    for (int i = 0; i < c->n; i++)
        pglite_result_free(c->list[i]);
    free(c->list);
    pglite_result_free(c->cur);
    memset(c, 0, sizeof *c);
}

static int collect_push(collect *c, pglite_result *r) {
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 4;
        pglite_result **l = realloc(c->list, (size_t)nc * sizeof *l);
        if (!l)
            return -1;
        c->list = l;
        c->cap = nc;
    }
    c->list[c->n++] = r;
    return 0;
}

/* The result being built, made on first use. */
static pglite_result *cur(collect *c) {
    if (!c->cur)
        c->cur = result_new(PGLITE_RESULT_COMMAND_OK);
    return c->cur;
}

/* Move the current result to the list. */
static int finish(collect *c) {
    pglite_result *r = c->cur;
    c->cur = NULL;
    if (!r)
        return 0;
    if (collect_push(c, r) != 0) {
        pglite_result_free(r);
        return -1;
    }
    return 0;
}

/* Read one reply. 0, -1 out of memory, -2 malformed. */
static int read_reply(pglite *db, const uint8_t *out, size_t len, collect *c, int *ready) {
    wire_reader rd;
    wire_msg m;
    wire_reader_init(&rd, out, len);
    int w, bad = 0;
    while ((w = wire_next(&rd, &m)) == 1) {
        pglite_result *r;
        switch (m.type) {
        case PqMsg_RowDescription:
            if (!(r = cur(c)) || result_set_fields(r, &m, &bad) != 0)
                return bad ? -2 : -1;
            break;
        case PqMsg_ParameterDescription:
            if (!(r = cur(c)) || result_set_params(r, &m, &bad) != 0)
                return bad ? -2 : -1;
            break;
        case PqMsg_NoData:
            if (!cur(c))
                return -1;
            break;
        case PqMsg_DataRow:
            if (!c->cur)
                return -2;
            if (result_add_row(c->cur, &m, &bad) != 0)
                return bad ? -2 : -1;
            break;
        case PqMsg_CommandComplete: {
            const char *tag;
            if (wire_command_complete(&m, &tag) != 0)
                return -2;
            if (!(r = cur(c)) || result_set_tag(r, tag) != 0)
                return -1;
            r->status = r->has_rowdesc ? PGLITE_RESULT_TUPLES_OK : PGLITE_RESULT_COMMAND_OK;
            if (finish(c) != 0)
                return -1;
            break;
        }
        case PqMsg_PortalSuspended: /* not asked for (Execute 0), but harmless */
            if (!(r = cur(c)))
                return -1;
            r->status = r->has_rowdesc ? PGLITE_RESULT_TUPLES_OK : PGLITE_RESULT_COMMAND_OK;
            if (finish(c) != 0)
                return -1;
            break;
        case PqMsg_EmptyQueryResponse:
            if (!(r = cur(c)))
                return -1;
            r->status = PGLITE_RESULT_EMPTY_QUERY;
            if (finish(c) != 0)
                return -1;
            break;
        case PqMsg_ErrorResponse: {
            errobj *e = errobj_from_wire(&m, &bad);
            if (!e)
                return bad ? -2 : -1;
            /* an error replaces whatever the statement had produced */
            pglite_result_free(c->cur);
            c->cur = result_error(e);
            if (!c->cur || finish(c) != 0)
                return -1;
            break;
        }
        case PqMsg_NoticeResponse: {
            errobj *e = errobj_from_wire(&m, &bad);
            if (!e)
                return bad ? -2 : -1;
            events_push_notice(db, e);
            break;
        }
        case PqMsg_NotificationResponse: {
            int32_t pid;
            const char *ch, *pl;
            if (wire_notification(&m, &pid, &ch, &pl) != 0)
                return -2;
            events_push_notify(db, pid, ch, pl);
            break;
        }
        case PqMsg_ParameterStatus: {
            const char *name, *value;
            if (wire_parameter_status(&m, &name, &value) != 0)
                return -2;
            client_set_param(db, name, value);
            break;
        }
        case PqMsg_ReadyForQuery:
            if (wire_ready_for_query(&m, &db->tx) != 0)
                return -2;
            if (c->cur && finish(c) != 0) /* a Describe's result */
                return -1;
            *ready = 1;
            break;
        default:
            /* ParseComplete, BindComplete, CloseComplete, CopyIn/Out
             * responses and COPY TO STDOUT data: nothing to keep. */
            break;
        }
    }
    return w < 0 ? -2 : 0;
}

void client_idle_output(pglite *db, const uint8_t *out, size_t len) {
    collect c = {0};
    int ready = 0;
    read_reply(db, out, len, &c, &ready);
    /* An error while idle is the FATAL that ended the session. */
    if (c.cur)
        finish(&c);
    for (int i = 0; i < c.n; i++)
        if (c.list[i]->status == PGLITE_RESULT_ERROR && c.list[i]->err) {
            errobj *e = errobj_copy(c.list[i]->err);
            if (e) {
                e->e.code = PGLITE_DEAD;
                errobj_free(db->fatal);
                db->fatal = e;
            }
        }
    collect_free(&c);
}

int client_roundtrip(pglite *db, collect *c) {
    if (db->req.oom) {
        wire_buf_reset(&db->req);
        return client_set_error(db, errobj_nomem());
    }
    const uint8_t *out;
    size_t len;
    char err[640];
    int rc = backend_exchange(db->be, db->req.data, db->req.len, &out, &len, err, sizeof err);
    wire_buf_reset(&db->req);
    /* The session ended in this call: its FATAL (a crash of another
     * session's 57P02, say) is in the reply, as a client would read it. */
    if (rc != 0 && !db->fatal && out && len)
        client_idle_output(db, out, len);
    if (rc != 0 && db->fatal) { /* PostgreSQL's own FATAL, now or while idle */
        errobj *e = errobj_copy(db->fatal);
        return client_set_error(db, e ? e : errobj_nomem());
    }
    if (rc != 0)
        return client_fail(db, PGLITE_DEAD, NULL, "%s", err);
    int ready = 0;
    rc = read_reply(db, out, len, c, &ready);
    if (rc == -1)
        return client_set_error(db, errobj_nomem());
    if (rc == -2 || !ready)
        return client_fail(db, PGLITE_PROTOCOL, NULL, "malformed reply from the backend");
    return PGLITE_OK;
}

/* The outcome of a statement's result r: OK, or its error recorded on db. */
static int result_rc(pglite *db, const pglite_result *r) {
    if (r && r->status == PGLITE_RESULT_ERROR) {
        errobj *e = errobj_copy(r->err);
        return client_set_error(db, e ? e : errobj_nomem());
    }
    return client_set_error(db, NULL);
}

/* Hand the last result of c to *res (freeing the others), or a result
 * for the handle's error when rc failed without one. */
static int take_last(pglite *db, collect *c, int rc, pglite_result **res, int want_one) {
    pglite_result *last = c->n ? c->list[c->n - 1] : NULL;
    if (last)
        c->n--;
    collect_free(c);
    if (rc == PGLITE_OK) {
        if (!last && want_one) {
            last = result_new(PGLITE_RESULT_COMMAND_OK);
            if (!last)
                rc = client_set_error(db, errobj_nomem());
        }
        if (rc == PGLITE_OK)
            rc = result_rc(db, last);
    }
    if (rc != PGLITE_OK && (!last || last->status != PGLITE_RESULT_ERROR)) {
        pglite_result_free(last);
        last = db->last_err ? result_error(errobj_copy(db->last_err)) : NULL;
    }
    if (res)
        *res = last;
    else
        pglite_result_free(last);
    return rc;
}

int client_simple(pglite *db, const char *sql, pglite_result **res) {
    collect c = {0};
    wire_query(&db->req, sql);
    wire_copy_fail(&db->req, k_no_stdin);
    int rc = client_roundtrip(db, &c);
    return take_last(db, &c, rc, res, 1);
}

/* Common checks; PGLITE_OK or a recorded MISUSE. */
static int check_sql(pglite *db, const char *what, const char *sql) {
    if (!sql)
        return client_fail(db, PGLITE_MISUSE, NULL, "%s: sql is NULL", what);
    if (strlen(sql) > MAX_SQL)
        return client_fail(db, PGLITE_MISUSE, "54000", "%s: the statement is longer than 1 GB",
                           what);
    return PGLITE_OK;
}

static int check_params(pglite *db, const char *what, int nparams, const char *const *values,
                        const int *lengths, const int *formats) {
    if (nparams < 0 || nparams > 65535)
        return client_fail(db, PGLITE_MISUSE, NULL, "%s: nparams %d is not 0..65535", what,
                           nparams);
    if (nparams > 0 && !values)
        return client_fail(db, PGLITE_MISUSE, NULL, "%s: %d parameters but values is NULL", what,
                           nparams);
    for (int i = 0; i < nparams; i++) {
        if (formats && formats[i] != 0 && formats[i] != 1)
            return client_fail(db, PGLITE_MISUSE, NULL, "%s: format of parameter %d is not 0 or 1",
                               what, i + 1);
        if (formats && formats[i] && values[i] && (!lengths || lengths[i] < 0))
            return client_fail(db, PGLITE_MISUSE, NULL,
                               "%s: binary parameter %d needs a length", what, i + 1);
    }
    return PGLITE_OK;
}

static int set_res(pglite_result **res, pglite_result *r) {
    if (res)
        *res = r;
    else
        pglite_result_free(r);
    return 0;
}

/* A failed call's result: the handle's error as a result. */
static int fail_res(pglite *db, int rc, pglite_result **res) {
    set_res(res, db->last_err ? result_error(errobj_copy(db->last_err)) : NULL);
    return rc;
}

/* Roll back whatever is open, keeping the handle's current error. */
static void ensure_idle(pglite *db) {
    if (db->tx == 'I' || !backend_alive(db->be))
        return;
    errobj *keep = db->last_err;
    db->last_err = NULL;
    client_simple(db, "ROLLBACK", NULL);
    client_set_error(db, keep);
}

/* ---- exec --------------------------------------------------------------------- */

/* Send sql[0, len) as one Query message and append its results to all.
 * Returns OK, or the first failure (the error is recorded on db). */
static int exec_message(pglite *db, const char *sql, size_t len, collect *all) {
    collect c = {0};
    wire_query_len(&db->req, sql, len);
    wire_copy_fail(&db->req, k_no_stdin);
    int rc = client_roundtrip(db, &c);
    for (int i = 0; i < c.n; i++) {
        pglite_result *r = c.list[i];
        c.list[i] = NULL;
        if (rc == PGLITE_OK && r->status == PGLITE_RESULT_ERROR)
            rc = result_rc(db, r);
        if (collect_push(all, r) != 0) {
            pglite_result_free(r);
            rc = client_set_error(db, errobj_nomem());
        }
    }
    collect_free(&c);
    return rc;
}

/* pglite_exec (one_message 0: a Query per statement) and
 * pglite_exec_message (1: the whole text in one Query). */
static int exec_script(pglite *db, const char *what, const char *sql, int one_message,
                       pglite_result ***results, int *nresults) {
    if (results)
        *results = NULL;
    if (nresults)
        *nresults = 0;
    int rc = client_enter(db);
    if (rc)
        return rc;
    if ((rc = check_sql(db, what, sql)) != PGLITE_OK)
        return client_leave(db, rc);
    if ((results && !nresults) || (!results && nresults))
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "%s: results and nresults go together", what));
    char tx_before = db->tx;
    collect all = {0};
    size_t n = strlen(sql), pos = 0, start, len;
    rc = client_set_error(db, NULL);
    if (one_message)
        rc = exec_message(db, sql, n, &all);
    else
        while (sql_next_statement(sql, n, &pos, &start, &len))
            if ((rc = exec_message(db, sql + start, len, &all)) != PGLITE_OK)
                break;
    /* A transaction this script opened and broke is rolled back. */
    if (rc == PGLITE_ERROR && tx_before == 'I' && db->tx == 'E')
        ensure_idle(db);
    if (rc != PGLITE_OK && rc != PGLITE_ERROR && db->last_err) {
        /* a library failure: report it as the last result too */
        pglite_result *r = result_error(errobj_copy(db->last_err));
        if (r && collect_push(&all, r) != 0)
            pglite_result_free(r);
    }
    if (results) {
        *results = all.list;
        *nresults = all.n;
        all.list = NULL;
        all.n = 0;
    }
    collect_free(&all);
    return client_leave(db, rc);
}

int pglite_exec(pglite *db, const char *sql, pglite_result ***results, int *nresults) {
    return exec_script(db, "pglite_exec", sql, 0, results, nresults);
}

int pglite_exec_message(pglite *db, const char *sql, pglite_result ***results, int *nresults) {
    return exec_script(db, "pglite_exec_message", sql, 1, results, nresults);
}

/* ---- extended protocol ----------------------------------------------------------- */

int pglite_query(pglite *db, const char *sql, int nparams, const uint32_t *types,
                 const char *const *values, const int *lengths, const int *formats,
                 int result_format, pglite_result **res) {
    set_res(res, NULL);
    int rc = client_enter(db);
    if (rc)
        return rc;
    if ((rc = check_sql(db, "pglite_query", sql)) != PGLITE_OK ||
        (rc = check_params(db, "pglite_query", nparams, values, lengths, formats)) != PGLITE_OK)
        return client_leave(db, fail_res(db, rc, res));
    if (result_format != 0 && result_format != 1)
        return client_leave(db, fail_res(db, client_fail(db, PGLITE_MISUSE, NULL,
                                                         "pglite_query: result_format is not 0 or 1"),
                                         res));
    collect c = {0};
    wire_parse(&db->req, "", sql, nparams, types);
    wire_bind(&db->req, "", "", nparams, values, lengths, formats, result_format);
    wire_describe(&db->req, 'P', "");
    wire_execute(&db->req, "", 0);
    wire_copy_fail(&db->req, k_no_stdin);
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, res, 1));
}

int pglite_prepare(pglite *db, const char *name, const char *sql, int nparams,
                   const uint32_t *types, pglite_result **res) {
    set_res(res, NULL);
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!name)
        rc = client_fail(db, PGLITE_MISUSE, NULL, "pglite_prepare: name is NULL");
    else if ((rc = check_sql(db, "pglite_prepare", sql)) == PGLITE_OK &&
             (nparams < 0 || nparams > 65535))
        rc = client_fail(db, PGLITE_MISUSE, NULL, "pglite_prepare: nparams %d is not 0..65535",
                         nparams);
    if (rc)
        return client_leave(db, fail_res(db, rc, res));
    collect c = {0};
    wire_parse(&db->req, name, sql, nparams, types);
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, res, 1));
}

int pglite_query_prepared(pglite *db, const char *name, int nparams, const char *const *values,
                          const int *lengths, const int *formats, int result_format,
                          pglite_result **res) {
    set_res(res, NULL);
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!name)
        rc = client_fail(db, PGLITE_MISUSE, NULL, "pglite_query_prepared: name is NULL");
    else if (result_format != 0 && result_format != 1)
        rc = client_fail(db, PGLITE_MISUSE, NULL,
                         "pglite_query_prepared: result_format is not 0 or 1");
    else
        rc = check_params(db, "pglite_query_prepared", nparams, values, lengths, formats);
    if (rc)
        return client_leave(db, fail_res(db, rc, res));
    collect c = {0};
    wire_bind(&db->req, "", name, nparams, values, lengths, formats, result_format);
    wire_describe(&db->req, 'P', "");
    wire_execute(&db->req, "", 0);
    wire_copy_fail(&db->req, k_no_stdin);
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, res, 1));
}

int pglite_deallocate(pglite *db, const char *name) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!name)
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_deallocate: name is NULL"));
    collect c = {0};
    wire_close(&db->req, 'S', name);
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, NULL, 0));
}

int pglite_describe(pglite *db, const char *sql, pglite_result **res) {
    set_res(res, NULL);
    int rc = client_enter(db);
    if (rc)
        return rc;
    if ((rc = check_sql(db, "pglite_describe", sql)) != PGLITE_OK)
        return client_leave(db, fail_res(db, rc, res));
    collect c = {0};
    wire_parse(&db->req, "", sql, 0, NULL);
    wire_describe(&db->req, 'S', "");
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, res, 1));
}

int pglite_describe_prepared(pglite *db, const char *name, pglite_result **res) {
    set_res(res, NULL);
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!name)
        return client_leave(db, fail_res(db, client_fail(db, PGLITE_MISUSE, NULL,
                                                         "pglite_describe_prepared: name is NULL"),
                                         res));
    collect c = {0};
    wire_describe(&db->req, 'S', name);
    wire_sync(&db->req);
    rc = client_roundtrip(db, &c);
    return client_leave(db, take_last(db, &c, rc, res, 1));
}

/* ---- transactions --------------------------------------------------------------- */

int pglite_begin(pglite *db) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (db->tx != 'I')
        return client_leave(db, client_fail(db, PGLITE_MISUSE, "25001",
                                            "a transaction is already in progress"));
    rc = client_simple(db, "BEGIN", NULL);
    if (rc != PGLITE_OK)
        ensure_idle(db);
    return client_leave(db, rc);
}

int pglite_commit(pglite *db) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (db->tx == 'I')
        return client_leave(db, client_fail(db, PGLITE_MISUSE, "25P01",
                                            "there is no transaction in progress"));
    if (db->tx == 'E') {
        client_simple(db, "ROLLBACK", NULL);
        rc = client_fail(db, PGLITE_ERROR, "25P02",
                         "the transaction was rolled back: a statement in it had failed");
        ensure_idle(db);
        return client_leave(db, rc);
    }
    pglite_result *r = NULL;
    rc = client_simple(db, "COMMIT", &r);
    if (rc == PGLITE_OK && strcmp(pglite_result_cmd_tag(r), "COMMIT") != 0)
        rc = client_fail(db, PGLITE_ERROR, "40000", "the transaction was rolled back (%s)",
                         pglite_result_cmd_tag(r));
    pglite_result_free(r);
    ensure_idle(db);
    return client_leave(db, rc);
}

int pglite_rollback(pglite *db) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (db->tx == 'I')
        return client_leave(db, client_set_error(db, NULL));
    rc = client_simple(db, "ROLLBACK", NULL);
    ensure_idle(db);
    return client_leave(db, rc);
}
