/* quickstart: open a database, create a table, insert with parameters,
 * read the rows back with typed getters, and handle an error.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs pglite) -o quickstart
 *   ./quickstart [data-directory]      (none: a temporary database)
 */
#include <inttypes.h>
#include <stdio.h>

#include <pglite.h>

int main(int argc, char **argv) {
    pglite *db;
    if (pglite_open(argc > 1 ? argv[1] : NULL, NULL, &db) != PGLITE_OK) {
        fprintf(stderr, "open: %s\n", pglite_errmsg(NULL));
        return 1;
    }
    printf("PostgreSQL %s\n", pglite_parameter_status(db, "server_version"));

    if (pglite_exec(db,
                    "CREATE TABLE IF NOT EXISTS fruit (id int8 PRIMARY KEY, name text UNIQUE);"
                    "TRUNCATE fruit",
                    NULL, NULL) != PGLITE_OK) {
        fprintf(stderr, "exec: %s\n", pglite_errmsg(db));
        return 1;
    }

    const char *names[] = {"apple", "banana", "cherry"};
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i + 1);
        const char *values[2] = {id, names[i]};
        if (pglite_query(db, "INSERT INTO fruit VALUES ($1, $2)", 2, NULL, values, NULL, NULL, 0,
                         NULL) != PGLITE_OK) {
            fprintf(stderr, "insert: %s\n", pglite_errmsg(db));
            return 1;
        }
    }

    pglite_result *res;
    if (pglite_query(db, "SELECT id, name, length(name) > 5 FROM fruit ORDER BY id", 0, NULL, NULL,
                     NULL, NULL, 0, &res) == PGLITE_OK) {
        for (int r = 0; r < pglite_result_ntuples(res); r++) {
            int64_t id;
            const char *name;
            int long_name;
            pglite_result_get_int64(res, r, 0, &id);
            pglite_result_get_text(res, r, 1, &name);
            pglite_result_get_bool(res, r, 2, &long_name);
            printf("%" PRId64 " %s%s\n", id, name, long_name ? " (long)" : "");
        }
    }
    pglite_result_free(res);

    /* A unique violation: SQLSTATE, message and detail from PostgreSQL. */
    const char *dup[2] = {"4", "apple"};
    if (pglite_query(db, "INSERT INTO fruit VALUES ($1, $2)", 2, NULL, dup, NULL, NULL, 0, &res) ==
        PGLITE_ERROR) {
        const pglite_error *e = pglite_result_error(res);
        printf("error %s: %s (%s)\n", e->sqlstate, e->message, e->detail);
    }
    pglite_result_free(res);
    return pglite_close(db) == PGLITE_OK ? 0 : 1;
}
