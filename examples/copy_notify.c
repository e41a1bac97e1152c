/* copy_notify: COPY rows in and out through /dev/blob, LISTEN/NOTIFY with
 * a callback, a transaction with the helpers, and a .tar.gz of the data.
 *
 *   cc copy_notify.c $(pkg-config --cflags --libs pglite) -o copy_notify
 *   ./copy_notify [archive.tar.gz]
 */
#include <stdio.h>
#include <string.h>

#include <pglite.h>

static void on_job(void *ctx, const char *channel, const char *payload, int pid) {
    (void)pid;
    int *seen = ctx;
    ++*seen;
    printf("notification on %s: %s\n", channel, payload);
}

static void on_notice(void *ctx, const pglite_error *n) {
    (void)ctx;
    printf("%s: %s\n", n->severity, n->message);
}

int main(int argc, char **argv) {
    pglite *db;
    if (pglite_open(NULL, NULL, &db) != PGLITE_OK) {
        fprintf(stderr, "open: %s\n", pglite_errmsg(NULL));
        return 1;
    }
    pglite_set_notice_handler(db, on_notice, NULL);
    pglite_exec(db, "CREATE TABLE points (x int, y int)", NULL, NULL);

    /* COPY FROM: the bytes given are what the server reads from /dev/blob */
    const char csv[] = "1,2\n3,4\n5,6\n";
    pglite_result *res;
    if (pglite_copy_from(db, "COPY points FROM '/dev/blob' WITH (FORMAT csv)", csv,
                         strlen(csv), &res) != PGLITE_OK) {
        fprintf(stderr, "copy from: %s\n", pglite_errmsg(db));
        return 1;
    }
    printf("%s\n", pglite_result_cmd_tag(res)); /* COPY 3 */
    pglite_result_free(res);

    /* COPY TO: what the server writes to /dev/blob comes back */
    void *out;
    size_t len;
    if (pglite_copy_to(db, "COPY (SELECT x + y FROM points ORDER BY 1) TO '/dev/blob'", &out, &len,
                       NULL) == PGLITE_OK) {
        printf("sums:\n%s", (const char *)out);
        pglite_free(out);
    }

    /* LISTEN/NOTIFY: delivered at commit */
    int seen = 0;
    pglite_listen(db, "jobs", on_job, &seen);
    pglite_begin(db);
    pglite_exec(db, "NOTIFY jobs, 'resize image 7'; DO $$BEGIN RAISE NOTICE 'queued'; END$$",
                NULL, NULL);
    if (pglite_commit(db) != PGLITE_OK)
        fprintf(stderr, "commit: %s\n", pglite_errmsg(db));

    if (argc > 1 && pglite_dump_archive(db, argv[1]) == PGLITE_OK)
        printf("archived to %s\n", argv[1]);
    pglite_close(db);
    return seen == 1 ? 0 : 1;
}
