/* Start-up latencies of the embedded database (issue targets):
 *   existing  open an existing cluster -> first answer, in a fresh process
 *   temp      a temporary database -> first answer, after the first one
 *   fresh     a new cluster made by the real initdb
 * Each is run N times (default 5); prints the runs and the median in ms.
 *
 *   startup existing DIR [N] | startup temp [N [GAP_MS]] | startup fresh DIR [N]
 *
 * temp with GAP_MS sleeps that long before each timed open (a program doing
 * other work between temporary databases); without it opens are back to
 * back.
 */
#define _GNU_SOURCE
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
