/*
 * server.c: pglite_server_*, the wire server (src/server) on an open
 * handle's backend.
 *
 * The server borrows the handle's backend. Its acquire hook enters the
 * handle as a public call would (registry reference and recursive mutex)
 * and holds it for the whole client session; the release hook leaves it.
 * A session also waits for a transaction the API left open between its
 * calls, so that a client never joins (and its reset never rolls back) the
 * program's transaction.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "server/server.h"

struct pglite_server {
    pglite *db;
    server *srv;
    atomic_int stopping;
    int entered; /* the session thread holds db (between acquire and release) */
    char *uri;
    struct pglite_server *next;
};

/* Handles being served (one server per handle). */
static pthread_mutex_t g_served_lock = PTHREAD_MUTEX_INITIALIZER;
static pglite_server *g_served;

void pglite_server_options_init(pglite_server_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
}

/* Bumped (under g_idle_lock) whenever the program leaves a call on a
 * served handle with no transaction open, closes one, or a server stops:
 * what srv_acquire waits for. Global, not in the handle, since the handle
 * may be freed meanwhile. */
static pthread_mutex_t g_idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_idle_cv = PTHREAD_COND_INITIALIZER;
static unsigned long g_idle_gen;

void client_served_changed(void) {
    pthread_mutex_lock(&g_idle_lock);
    g_idle_gen++;
    pthread_cond_broadcast(&g_idle_cv);
    pthread_mutex_unlock(&g_idle_lock);
}

static void srv_acquire(void *ctx) {
    pglite_server *ps = ctx;
    for (;;) {
        pthread_mutex_lock(&g_idle_lock);
        unsigned long gen = g_idle_gen;
        pthread_mutex_unlock(&g_idle_lock);
        if (client_enter(ps->db) != PGLITE_OK) {
            ps->entered = 0; /* closed under us: misuse, documented */
            return;
        }
        if (ps->db->tx == 'I' || atomic_load(&ps->stopping)) {
            ps->entered = 1;
            return;
        }
        /* the program has a transaction open: wait until it leaves a call
         * with none (our own leave does not count: the transaction is
         * still open), then look again */
        client_leave(ps->db, 0);
        pthread_mutex_lock(&g_idle_lock);
        while (g_idle_gen == gen && !atomic_load(&ps->stopping))
            pthread_cond_wait(&g_idle_cv, &g_idle_lock);
        pthread_mutex_unlock(&g_idle_lock);
    }
}

static void srv_release(void *ctx) {
    pglite_server *ps = ctx;
    if (!ps->entered)
        return;
    ps->entered = 0;
    ps->db->tx = 'I'; /* the server rolled back and reset the session */
    client_leave(ps->db, 0);
}

static void srv_log(void *ctx, server_log_level level, const char *line) {
    (void)ctx;
    (void)level;
    fprintf(stderr, "pglite-server: %s\n", line);
}

int pglite_server_start(pglite *db, const pglite_server_options *o, pglite_server **out) {
    if (out)
        *out = NULL;
    if (client_enter(db) != PGLITE_OK)
        return PGLITE_MISUSE;
    pglite_server_options opt;
    pglite_server_options_init(&opt);
    if (o) {
        if (o->size < offsetof(pglite_server_options, unix_socket) || o->size > 65536) {
            client_fail(db, PGLITE_MISUSE, NULL,
                        "pglite_server_start: options not set up with pglite_server_options_init");
            return client_leave(db, PGLITE_MISUSE);
        }
        memcpy(&opt, o, o->size < sizeof opt ? o->size : sizeof opt);
        opt.size = sizeof opt;
    }
    if (!out) {
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_server_start: out is NULL");
        return client_leave(db, PGLITE_MISUSE);
    }
    if (db->depth > 1) {
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_server_start called from a callback");
        return client_leave(db, PGLITE_MISUSE);
    }
    if (db->tx != 'I') {
        client_fail(db, PGLITE_MISUSE, "25001",
                    "pglite_server_start: a transaction is open on the handle");
        return client_leave(db, PGLITE_MISUSE);
    }
    pthread_mutex_lock(&g_served_lock);
    for (pglite_server *p = g_served; p; p = p->next) {
        if (p->db == db) {
            pthread_mutex_unlock(&g_served_lock);
            client_fail(db, PGLITE_MISUSE, NULL, "a server already runs on this handle");
            return client_leave(db, PGLITE_MISUSE);
        }
    }
    pthread_mutex_unlock(&g_served_lock);

    char host[256] = "";
    int port = 0;
    const char *tcp = opt.tcp;
    if (!tcp && !opt.unix_socket)
        tcp = "127.0.0.1:0";
    char why[300];
    if (tcp && server_parse_hostport(tcp, host, sizeof host, &port, why, sizeof why) != 0) {
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_server_start: bad TCP address: %s", why);
        return client_leave(db, PGLITE_MISUSE);
    }

    char cert[4200], key[4200];
    const char *ssl_cert = opt.ssl_cert, *ssl_key = opt.ssl_key;
    if (!ssl_cert != !ssl_key || (opt.ssl_self_signed && ssl_cert)) {
        client_fail(db, PGLITE_MISUSE, NULL, "pglite_server_start: ssl_cert and ssl_key go "
                                             "together, and exclude ssl_self_signed");
        return client_leave(db, PGLITE_MISUSE);
    }
    if (opt.ssl_self_signed) {
        if (server_self_signed_pair(db->st.dir, cert, key, sizeof cert, why, sizeof why) != 0) {
            client_fail(db, PGLITE_CANTOPEN, NULL, "pglite_server_start: %s", why);
            return client_leave(db, PGLITE_CANTOPEN);
        }
        ssl_cert = cert;
        ssl_key = key;
    }

    /* The database and role the backend's session runs as. */
    pglite_result *r = NULL;
    int rc = client_simple(db, "SELECT current_database(), session_user", &r);
    if (rc != PGLITE_OK || pglite_result_ntuples(r) != 1) {
        pglite_result_free(r);
        return client_leave(db, rc != PGLITE_OK ? rc : client_fail(db, PGLITE_PROTOCOL, NULL,
                                                                    "unexpected reply"));
    }
    char dbname[256], user[256];
    snprintf(dbname, sizeof dbname, "%s", pglite_result_getvalue(r, 0, 0));
    snprintf(user, sizeof user, "%s",
             opt.username && *opt.username ? opt.username : pglite_result_getvalue(r, 0, 1));
    pglite_result_free(r);

    pglite_server *ps = calloc(1, sizeof *ps);
    if (!ps) {
        client_fail(db, PGLITE_NOMEM, NULL, "out of memory");
        return client_leave(db, PGLITE_NOMEM);
    }
    ps->db = db;
    db->served = 1; /* kept after a stop: a spare wake-up costs nothing */
    server_options so = {
        .backend = db->be,
        .acquire = srv_acquire,
        .release = srv_release,
        .lock_ctx = ps,
        .user = user,
        .database = dbname,
        .unix_path = opt.unix_socket,
        .tcp_host = tcp ? host : NULL,
        .tcp_port = port,
        .password = opt.password,
        .ssl_cert = ssl_cert,
        .ssl_key = ssl_key,
        .max_waiting = opt.max_waiting,
        .wait_timeout_ms = opt.max_wait_ms,
        .log_level = opt.verbose ? SERVER_LOG_INFO : SERVER_LOG_WARNING,
        .log = srv_log,
    };
    char err[1024];
    /* The server reads the backend's startup reply now and uses the backend
     * only from its session thread, under acquire: we hold db meanwhile. */
    int st = server_start(&so, &ps->srv, err, sizeof err);
    if (st != 0) {
        free(ps);
        int code = client_status(st);
        client_fail(db, code, "08001", "cannot start the server: %s", err);
        return client_leave(db, code);
    }
    const char *u = server_uri(ps->srv);
    size_t ul = strlen(u);
    ps->uri = malloc(ul + 20);
    if (!ps->uri) {
        server_stop(ps->srv);
        free(ps);
        client_fail(db, PGLITE_NOMEM, NULL, "out of memory");
        return client_leave(db, PGLITE_NOMEM);
    }
    if (strstr(u, "sslmode="))
        memcpy(ps->uri, u, ul + 1);
    else
        snprintf(ps->uri, ul + 20, "%s%csslmode=disable", u, strchr(u, '?') ? '&' : '?');
    pthread_mutex_lock(&g_served_lock);
    ps->next = g_served;
    g_served = ps;
    pthread_mutex_unlock(&g_served_lock);
    client_set_error(db, NULL);
    *out = ps;
    return client_leave(db, PGLITE_OK);
}

const char *pglite_server_uri(const pglite_server *srv) { return srv ? srv->uri : NULL; }

int pglite_server_port(const pglite_server *srv) {
    return srv ? server_tcp_port(srv->srv) : -1;
}

void pglite_server_stop(pglite_server *srv) {
    if (!srv)
        return;
    pthread_mutex_lock(&g_served_lock);
    for (pglite_server **pp = &g_served; *pp; pp = &(*pp)->next) {
        if (*pp == srv) {
            *pp = srv->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_served_lock);
    atomic_store(&srv->stopping, 1);
    client_served_changed(); /* a session waiting for the program's transaction */
    server_stop(srv->srv); /* joins the session thread: release has run */
    free(srv->uri);
    free(srv);
}
