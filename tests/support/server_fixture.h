/* Shared by the tests that run the socket server in-process with libpq as
 * the client: a temporary database served on 127.0.0.1 (a free port), the
 * conninfo to reach it, and a count of log lines that say the backend
 * stopped (a test that must not kill the backend checks it stays 0).
 * Include after <cmocka.h>; use fxs_setup/fxs_teardown as the group's. */
#ifndef PGLITE_TEST_SERVER_FIXTURE_H
#define PGLITE_TEST_SERVER_FIXTURE_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "server/server.h"

static cluster *g_cluster;
static server *g_server;
static char g_conninfo[256];
static atomic_int g_backend_stops; /* log lines about a backend that stopped */

static void fxs_log(void *ctx, server_log_level level, const char *line) {
    (void)ctx;
    if (strstr(line, "backend stopped") || strstr(line, "restarting the backend") ||
        strstr(line, "could not reset"))
        atomic_fetch_add(&g_backend_stops, 1);
    if (level <= SERVER_LOG_WARNING)
        fprintf(stderr, "server: %s\n", line);
}

/* Start the server; extra is appended to the conninfo (e.g.
 * "client_encoding=UTF8"). */
static inline int fxs_start(const char *extra) {
    char err[2048];
    if (cluster_open(NULL, &g_cluster, err, sizeof err) != 0) {
        fprintf(stderr, "cluster_open: %s\n", err);
        return -1;
    }
    server_options o = {
        .data_dir = cluster_data_dir(g_cluster),
        .tcp_host = "127.0.0.1",
        .tcp_port = 0,
        .log_level = SERVER_LOG_DEBUG,
        .log = fxs_log,
    };
    if (server_start(&o, &g_server, err, sizeof err) != 0) {
        fprintf(stderr, "server_start: %s\n", err);
        return -1;
    }
    snprintf(g_conninfo, sizeof g_conninfo,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable "
             "connect_timeout=60 %s",
             server_tcp_port(g_server), extra ? extra : "");
    return 0;
}

static int fxs_teardown(void **state) {
    (void)state;
    server_stop(g_server);
    cluster_close(g_cluster);
    return 0;
}

#endif
