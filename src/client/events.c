/* Notices and notifications: queued while a call reads the backend's
 * reply, delivered to the callbacks when the outermost call ends (so a
 * callback sees complete state and may call back into the handle). */
#define _GNU_SOURCE
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

static void push(pglite *db, event *e) {
    e->next = NULL;
    if (db->ev_tail)
        db->ev_tail->next = e;
    else
        db->ev_head = e;
    db->ev_tail = e;
}

static void event_free(event *e) {
    errobj_free(e->notice);
    free(e->channel);
    free(e->payload);
    free(e);
}

void events_push_notice(pglite *db, errobj *notice) {
    if (!db->notice_fn) { /* nobody listens: drop it now */
        errobj_free(notice);
        return;
    }
    event *e = calloc(1, sizeof *e);
    if (!e) {
        errobj_free(notice);
        return;
    }
    e->kind = 'N';
    e->notice = notice;
    push(db, e);
}

void events_push_notify(pglite *db, int pid, const char *channel, const char *payload) {
    event *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->kind = 'A';
    e->pid = pid;
    e->channel = strdup(channel);
    e->payload = strdup(payload);
    if (!e->channel || !e->payload) {
        event_free(e);
        return;
    }
    push(db, e);
}

void events_deliver(pglite *db) {
    if (db->delivering || db->closed)
        return;
    db->delivering = 1;
    event *e;
    while ((e = db->ev_head) && !db->closed) {
        db->ev_head = e->next;
        if (!db->ev_head)
            db->ev_tail = NULL;
        if (e->kind == 'N') {
            if (db->notice_fn)
                db->notice_fn(db->notice_ctx, &e->notice->e);
        } else {
            /* A callback may unlisten (free) its own listener: the walk
             * stops right after the call. */
            for (listener *l = db->listeners; l; l = l->next) {
                if (strcmp(l->channel, e->channel) == 0) {
                    l->fn(l->ctx, e->channel, e->payload, e->pid);
                    break;
                }
            }
            if (db->notify_fn)
                db->notify_fn(db->notify_ctx, e->channel, e->payload, e->pid);
        }
        event_free(e);
    }
    db->delivering = 0;
}

void events_free(pglite *db) {
    for (event *e = db->ev_head, *n; e; e = n) {
        n = e->next;
        event_free(e);
    }
    db->ev_head = db->ev_tail = NULL;
}

int pglite_set_notice_handler(pglite *db, pglite_notice_fn fn, void *ctx) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    db->notice_fn = fn;
    db->notice_ctx = ctx;
    return client_leave(db, client_set_error(db, NULL));
}

int pglite_set_notify_handler(pglite *db, pglite_notify_fn fn, void *ctx) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    db->notify_fn = fn;
    db->notify_ctx = ctx;
    return client_leave(db, client_set_error(db, NULL));
}

/* "LISTEN " or "UNLISTEN " and channel as a quoted identifier. */
static char *channel_sql(const char *verb, const char *channel) {
    size_t n = strlen(verb) + 2 * strlen(channel) + 3;
    char *s = malloc(n + 1), *p = s;
    if (!s)
        return NULL;
    p = stpcpy(p, verb);
    *p++ = '"';
    for (const char *c = channel; *c; c++) {
        if (*c == '"')
            *p++ = '"';
        *p++ = *c;
    }
    *p++ = '"';
    *p = 0;
    return s;
}

int pglite_listen(pglite *db, const char *channel, pglite_notify_fn fn, void *ctx) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!channel || !fn)
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_listen: channel and callback are required"));
    char *sql = channel_sql("LISTEN ", channel);
    if (!sql)
        return client_leave(db, client_set_error(db, errobj_nomem()));
    rc = client_simple(db, sql, NULL);
    free(sql);
    if (rc != PGLITE_OK)
        return client_leave(db, rc);
    for (listener *l = db->listeners; l; l = l->next) {
        if (strcmp(l->channel, channel) == 0) {
            l->fn = fn;
            l->ctx = ctx;
            return client_leave(db, PGLITE_OK);
        }
    }
    listener *l = calloc(1, sizeof *l);
    if (!l || !(l->channel = strdup(channel))) {
        free(l);
        return client_leave(db, client_set_error(db, errobj_nomem()));
    }
    l->fn = fn;
    l->ctx = ctx;
    l->next = db->listeners;
    db->listeners = l;
    return client_leave(db, PGLITE_OK);
}

int pglite_unlisten(pglite *db, const char *channel) {
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!channel)
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_unlisten: channel is NULL"));
    char *sql = channel_sql("UNLISTEN ", channel);
    if (!sql)
        return client_leave(db, client_set_error(db, errobj_nomem()));
    rc = client_simple(db, sql, NULL);
    free(sql);
    for (listener **pp = &db->listeners; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->channel, channel) == 0) {
            listener *l = *pp;
            *pp = l->next;
            free(l->channel);
            free(l);
            break;
        }
    }
    return client_leave(db, rc);
}
