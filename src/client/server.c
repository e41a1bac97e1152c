/*
 * server.c: pglite_server_*, the wire server (src/server) on an open
 * handle's database.
 *
 * The server borrows the cluster's first backend and gives every client a
 * session of its own cloned from it, next to the program's handles, as a
 * PostgreSQL server gives each connection its backend. It holds a
 * reference to the database, so the handle may close before it stops.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "server/server.h"

struct pglite_server {
    pglite *db;
    server *srv;
    shared_db *sh; /* a reference to the database */
    char *uri;
};


void pglite_server_options_init(pglite_server_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
}

int client_identity(pglite *db, char dbname[256], char user[256]) {
    pglite_result *r = NULL;
    int rc = client_simple(db, "SELECT current_database(), session_user", &r);
    if (rc != PGLITE_OK || pglite_result_ntuples(r) != 1) {
        pglite_result_free(r);
        return rc != PGLITE_OK ? rc : client_fail(db, PGLITE_PROTOCOL, NULL, "unexpected reply");
    }
    snprintf(dbname, 256, "%s", pglite_result_getvalue(r, 0, 0));
    snprintf(user, 256, "%s", pglite_result_getvalue(r, 0, 1));
    pglite_result_free(r);
    return PGLITE_OK;
}

static struct backend *srv_current(void *ctx) { return shared_first(ctx, NULL, 0); }

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
        if (server_self_signed_pair(db->sh->st.dir, cert, key, sizeof cert, why, sizeof why) != 0) {
            client_fail(db, PGLITE_CANTOPEN, NULL, "pglite_server_start: %s", why);
            return client_leave(db, PGLITE_CANTOPEN);
        }
        ssl_cert = cert;
        ssl_key = key;
    }

    /* The database and role the backend's session runs as. */
    char dbname[256], user[256];
    int rc = client_identity(db, dbname, user);
    if (rc != PGLITE_OK)
        return client_leave(db, rc);
    if (opt.username && *opt.username)
        snprintf(user, sizeof user, "%s", opt.username);

    pglite_server *ps = calloc(1, sizeof *ps);
    if (!ps) {
        client_fail(db, PGLITE_NOMEM, NULL, "out of memory");
        return client_leave(db, PGLITE_NOMEM);
    }
    ps->db = db;
    server_options so = {
        .backend = shared_first(db->sh, NULL, 0),
        .current = srv_current,
        .current_ctx = db->sh,
        .user = user,
        .database = dbname,
        .unix_path = opt.unix_socket,
        .tcp_host = tcp ? host : NULL,
        .tcp_port = port,
        .password = opt.password,
        .ssl_cert = ssl_cert,
        .ssl_key = ssl_key,
        .log_level = opt.verbose ? SERVER_LOG_INFO : SERVER_LOG_WARNING,
        .log = srv_log,
    };
    char err[1024];
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
    shared_ref(db->sh);
    ps->sh = db->sh;
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
    server_stop(srv->srv); /* ends its sessions */
    shared_close(srv->sh);  /* closes the database if no handle has it open */
    free(srv->uri);
    free(srv);
}
