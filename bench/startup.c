/* Start-up latencies of the embedded database (issue targets):
 *   existing  open an existing cluster -> first answer, in a fresh process
 *   temp      a temporary database -> first answer, after the first one
 *   fresh     a new cluster made by the real initdb
 *   sessions  a session's whole life on a running cluster, N times
 *             (default 300): clone and start, first answer, close, each
 *             on a new thread as pglite-proxy gives each client one
 * Each is run N times (default 5); prints the runs and the median in ms.
 *
 *   startup existing DIR [N] | startup temp [N [GAP_MS]] | startup fresh DIR [N]
 *   startup sessions [N]
 *
 * temp with GAP_MS sleeps that long before each timed open (a program doing
 * other work between temporary databases); without it opens are back to
 * back.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cluster/cluster.h"
#include "wire/wire.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* open (or create) + start + SELECT 1; returns ms or -1 */
static double one(const cluster_options *co) {
    double t0 = now_ms();
    cluster *c;
    char err[4096];
    if (cluster_open(co, &c, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    backend_options bo = {.data_dir = cluster_data_dir(c)};
    backend *b;
    if (backend_start(&bo, &b, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        cluster_close(c);
        return -1;
    }
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, "SELECT 1");
    const uint8_t *out;
    size_t n;
    int rc = backend_exchange(b, w.data, w.len, &out, &n, err, sizeof err);
    double t1 = now_ms();
    wire_buf_free(&w);
    backend_close(b);
    cluster_close(c);
    return rc == 0 ? t1 - t0 : -1;
}

/* ---- sessions ---- */
typedef struct life {
    backend *first;
    double clone, query, close; /* ms, this cycle */
    int rc;
} life;

static void *one_life(void *arg) {
    life *l = arg;
    char err[1024];
    backend *b;
    double t0 = now_ms();
    l->rc = backend_clone(l->first, NULL, 0, &b, err, sizeof err);
    if (l->rc != 0) {
        fprintf(stderr, "backend_clone: %s\n", err);
        return NULL;
    }
    double t1 = now_ms();
    wire_buf w;
    wire_buf_init(&w);
    wire_query(&w, "SELECT 1");
    const uint8_t *out;
    size_t n;
    l->rc = backend_exchange(b, w.data, w.len, &out, &n, err, sizeof err);
    wire_buf_free(&w);
    double t2 = now_ms();
    backend_close(b);
    double t3 = now_ms();
    l->clone = t1 - t0;
    l->query = t2 - t1;
    l->close = t3 - t2;
    return NULL;
}

static int sessions(int n) {
    cluster *c;
    char err[4096];
    if (cluster_open(NULL, &c, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    backend_options bo = {.data_dir = cluster_data_dir(c), .sessions = 1,
                          .relaxed_durability = 1};
    life l = {0};
    if (backend_start(&bo, &l.first, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    backend_park(l.first);
    double sum[3] = {0}, t0 = now_ms();
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, one_life, &l) != 0)
            return 1;
        pthread_join(t, NULL);
        if (l.rc != 0)
            return 1;
        sum[0] += l.clone;
        sum[1] += l.query;
        sum[2] += l.close;
    }
    double all = now_ms() - t0;
    printf("sessions: %d lives, each on a new thread: clone and start %.3f ms, first answer "
           "%.3f ms, close %.3f ms (means); %.0f sessions/s\n",
           n, sum[0] / n, sum[1] / n, sum[2] / n, n / (all / 1e3));
    backend_close(l.first);
    cluster_close(c);
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: startup existing DIR [N] | temp [N] | fresh DIR [N]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "sessions") == 0)
        return sessions(argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 300);
    int has_dir = strcmp(mode, "temp") != 0;
    int n = argc > 2 + has_dir ? atoi(argv[2 + has_dir]) : 5;
    if (n < 1 || n > 100)
        n = 5;
    double t[100];
    for (int i = 0; i < n; i++) {
        if (strcmp(mode, "existing") == 0) {
            /* a process that has not opened a cluster before */
            int p[2];
            if (pipe(p) != 0)
                return 1;
            pid_t pid = fork();
            if (pid == 0) {
                cluster_options co = {.path = argv[2]};
                double ms = one(&co);
                if (write(p[1], &ms, sizeof ms) != (ssize_t)sizeof ms)
                    _exit(1);
                _exit(0);
            }
            close(p[1]);
            if (read(p[0], &t[i], sizeof t[i]) != (ssize_t)sizeof t[i])
                t[i] = -1;
            close(p[0]);
            waitpid(pid, NULL, 0);
        } else if (strcmp(mode, "temp") == 0) {
            if (i == 0)
                one(NULL); /* the first in the process prepares the template copy */
            int gap = argc > 3 ? atoi(argv[3]) : 0;
            if (gap > 0)
                usleep((useconds_t)gap * 1000);
            t[i] = one(NULL);
        } else {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/fresh-%d-%d", argv[2], (int)getpid(), i);
            cluster_options co = {.path = dir, .fresh = 1};
            t[i] = one(&co);
            char cmd[4200];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
            if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
        }
        printf("%s run %d: %.1f ms\n", mode, i + 1, t[i]);
    }
    qsort(t, (size_t)n, sizeof t[0], cmp);
    printf("%s median of %d: %.1f ms\n", mode, n, t[n / 2]);
    return 0;
}
