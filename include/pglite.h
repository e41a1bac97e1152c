/*
 * pglite.h: embedded PostgreSQL 18 for C programs.
 *
 * This header is the whole public interface of libpglite. A pglite handle
 * is one PostgreSQL session on one data directory, running inside the
 * calling process (PGlite's PostgreSQL, compiled to native code and
 * sandboxed). There is no server, socket or password.
 *
 *     pglite *db;
 *     if (pglite_open("/var/lib/app/db", NULL, &db) != PGLITE_OK) {
 *         fprintf(stderr, "%s\n", pglite_errmsg(NULL));
 *         return 1;
 *     }
 *     pglite_result *res;
 *     const char *v[] = {"41"};
 *     if (pglite_query(db, "SELECT $1::int8 + 1", 1, NULL, v, NULL, NULL, 0,
 *                      &res) == PGLITE_OK)
 *         printf("%s\n", pglite_result_getvalue(res, 0, 0));   // 42
 *     else
 *         fprintf(stderr, "%s\n", pglite_result_error(res)->message);
 *     pglite_result_free(res);
 *     pglite_close(db);
 *
 * Conventions
 *
 * - Functions that can fail return a status code (PGLITE_OK on success).
 *   The handle keeps the last error (pglite_errmsg, pglite_errcode,
 *   pglite_last_error); a query that fails also returns an error result
 *   whose pglite_error stays valid until the result is freed.
 * - Errors of the database and of the library have the same shape,
 *   pglite_error: severity, SQLSTATE, message, detail, hint, position,
 *   context. Library errors have severity "ERROR" and the SQLSTATE of the
 *   nearest PostgreSQL condition (listed with the status codes below).
 * - Bad input never aborts the process: NULL pointers, a closed handle,
 *   out-of-range indexes give PGLITE_MISUSE or PGLITE_RANGE.
 * - Strings are UTF-8 (the database encoding is UTF8). Memory handed to
 *   the caller is released with pglite_result_free, pglite_results_free or
 *   pglite_free, as each function says.
 *
 * Threads and sessions
 *
 * A handle is one PostgreSQL session (a backend of its own, as one libpq
 * connection is). A handle may be shared by any number of threads. Every
 * call on a handle takes the handle's (recursive) mutex, so calls are
 * serialised: one runs at a time, the others wait. Transactions are per
 * handle, not per thread: threads that share a handle also share its open
 * transaction. Callbacks (notices, notifications) run on the thread that
 * made the call, with the mutex held; they may call back into the same
 * handle (except pglite_close). pglite_interrupt is the one call that does
 * not wait. A pglite_result belongs to its caller and may be read from any
 * thread; its accessors do not modify it. pglite_errmsg(db) of a shared
 * handle reports the last failure of any thread: prefer the error result
 * of the call.
 *
 * Opening a directory this process has open already gives another session
 * on the same database (SQLite's many connections to one file), and the
 * sessions of pglite_server_start's clients are more of them. Sessions are
 * PostgreSQL's: each has its own transactions (MVCC), locks, settings and
 * role; a lock one holds makes another wait, deadlocks end with 40P01,
 * NOTIFY reaches the listeners of the others. The sessions of one
 * database run SQL one at a time, switching wherever a PostgreSQL backend
 * would wait (a lock, a sleep, its client); a long statement keeps the
 * others waiting until it ends or waits. So: use handles of one database
 * from different threads, or set lock_timeout. A statement that waits for
 * a lock held by another handle used by the same thread waits for ever,
 * as with two libpq connections used by one thread. Handles of different
 * databases run in parallel.
 */
#ifndef PGLITE_PUBLIC_H
#define PGLITE_PUBLIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define PGLITE_API __attribute__((visibility("default")))
#else
#define PGLITE_API
#endif

#define PGLITE_VERSION "0.1.0"
#define PGLITE_VERSION_NUMBER 1000 /* major * 1000000 + minor * 1000 + patch */

/* The library's version string (PGLITE_VERSION when the header matches). */
PGLITE_API const char *pglite_version(void);

/* ---- status codes -------------------------------------------------------
 * Returned by the functions below; the SQLSTATE a library error carries is
 * given in brackets. */
#define PGLITE_OK 0       /* success */
#define PGLITE_ERROR 1    /* PostgreSQL reported an error: see the error object */
#define PGLITE_MISUSE 2   /* bad argument, NULL pointer, closed handle [22023] */
#define PGLITE_NOMEM 3    /* out of memory [53200] */
#define PGLITE_BUSY 4     /* the data directory is in use by another handle [55006] */
#define PGLITE_CANTOPEN 5 /* the database cannot be created, opened or started [08001] */
#define PGLITE_IOERR 6    /* a host file operation failed (archives) [58030] */
#define PGLITE_DEAD 7     /* the backend died (trap or FATAL); only pglite_close is left [08006] */
#define PGLITE_PROTOCOL 8 /* a reply the library did not expect [08P01] */
#define PGLITE_RANGE 9    /* row, column or parameter index out of range [2202E] */
#define PGLITE_NULL 10    /* typed getter: the value is SQL NULL [22004] */
#define PGLITE_MISMATCH 11 /* typed getter: the value does not convert [42804] */
#define PGLITE_FORMAT 12  /* an archive is malformed or unsafe [22000] */

/* English text for a status code ("not an error", "out of memory", ...). */
PGLITE_API const char *pglite_errstr(int code);

/* ---- errors ---------------------------------------------------------------
 * One error or notice, from PostgreSQL (its ErrorResponse/NoticeResponse
 * fields) or from the library. Strings are NUL-terminated UTF-8; those
 * marked "or NULL" are NULL when PostgreSQL did not send them. Fields may
 * be added at the end in later versions; never allocate this struct. */
typedef struct pglite_error {
    int code;              /* PGLITE_ERROR for database errors, else the library's status */
    const char *severity;  /* "ERROR", "FATAL", "WARNING", "NOTICE", ... (never NULL) */
    const char *sqlstate;  /* five characters, e.g. "23505" (never NULL) */
    const char *message;   /* primary message (never NULL) */
    const char *detail;    /* or NULL */
    const char *hint;      /* or NULL */
    int position;          /* 1-based character position in the statement, 0 if none */
    const char *context;   /* call stack (PL/pgSQL, SQL functions), or NULL */
    const char *schema;    /* for constraint and object errors, or NULL */
    const char *table;     /* or NULL */
    const char *column;    /* or NULL */
    const char *datatype;  /* or NULL */
    const char *constraint; /* e.g. "t_pkey" for a unique violation, or NULL */
} pglite_error;

/* Any field of e by its protocol code, as libpq's PQresultErrorField:
 * 'S' severity, 'V' non-localised severity, 'C' SQLSTATE, 'M' message,
 * 'D' detail, 'H' hint, 'P' position, 'p' internal position, 'q' internal
 * query, 'W' context, 's' schema, 't' table, 'c' column, 'd' data type,
 * 'n' constraint, 'F' file, 'L' line, 'R' routine. NULL if absent or e is
 * NULL. */
PGLITE_API const char *pglite_error_field(const pglite_error *e, char code);

/* ---- opening and closing ---------------------------------------------- */

typedef struct pglite pglite;

/* Options for pglite_open. Always start with pglite_options_init, which
 * sets every field to its default and `size` to this version's struct
 * size; fields added in later versions come after the existing ones, and
 * the library reads only the first `size` bytes, so programs built against
 * an older header keep working. */
typedef struct pglite_options {
    size_t size;              /* sizeof(pglite_options), set by pglite_options_init */
    const char *username;     /* the session user, a role that may log in; default
                                 "postgres" (the superuser initdb made). The session
                                 starts as that role, as a PostgreSQL connection does: a
                                 role that is not a superuser cannot become one */
    const char *database;     /* database to connect to; default "postgres" */
    const char *const *gucs;  /* NULL-terminated "name=value" settings, e.g.
                                 {"work_mem=64MB", NULL}; default none. On the first
                                 open of a directory, the server's (any setting); on
                                 another open of a directory this process has open, the
                                 session's (as a connection's options=-c: one that needs
                                 a restart is refused as PostgreSQL refuses it) */
    int relaxed_durability;   /* 1: fsync and synchronous_commit off (faster; a crash
                                 may lose recent commits, never corrupt). Default 0.
                                 The cluster's: another open of a directory this
                                 process has open must give the same */
    int debug;                /* PostgreSQL's -d level 0..5; >0 also lets the server
                                 log to stderr. Default 0 */
    int fresh;                /* 1: create a new database with initdb instead of
                                 copying the cached template. Default 0 */
    int no_template_cache;    /* 1: never read or write the cached template data
                                 directory (implies initdb for new databases) */
    const char *load_archive; /* a .tar.gz of a data directory (pglite_dump_archive)
                                 to create the database from; path must then be
                                 NULL, missing or an empty directory. Default NULL */
} pglite_options;

/* Fill o with the defaults. */
PGLITE_API void pglite_options_init(pglite_options *o);

/* Open a database.
 *
 * path is a host directory for the data directory. A missing or empty
 * directory is created as a new database; a directory holding a
 * PostgreSQL 18 data directory is opened as it is. path NULL opens a new
 * temporary database, removed by pglite_close. opts may be NULL (defaults).
 * A directory this process has open already is not opened again: the new
 * handle is another session on the same database (see "Threads and
 * sessions"); the database closes with its last handle (and server). One
 * process has a data directory at a time: another process's open fails
 * with PGLITE_BUSY.
 *
 * Returns PGLITE_OK and the new handle in *out, or an error status with
 * *out NULL; the message is then pglite_errmsg(NULL) and the error
 * pglite_open_error() on this thread. PostgreSQL's own FATAL (e.g.
 * "database \"x\" does not exist", 3D000; a role that does not exist or
 * may not log in, 28000; too many connections, 53300) is that error. */
PGLITE_API int pglite_open(const char *path, const pglite_options *opts, pglite **out);

/* Close db: end the session; with the database's last handle (and no
 * server left on it) checkpoint, release the data directory (and remove
 * it if temporary); free the handle. Waits for calls running on
 * other threads; calls that start afterwards fail with PGLITE_MISUSE.
 * NULL is a no-op. Returns PGLITE_OK, or PGLITE_MISUSE for a handle that
 * is not open or when called from a callback of the same handle. */
PGLITE_API int pglite_close(pglite *db);

/* The last error of db: message, status code and error object. After a
 * successful call the code is PGLITE_OK and the message "not an error".
 * With db NULL: the last pglite_open failure on the calling thread ("not
 * an error" if none). For a handle that is not open (closed): a
 * PGLITE_MISUSE error saying so. The strings stay valid until the next
 * call on db (or the next pglite_open on the thread). */
PGLITE_API const char *pglite_errmsg(pglite *db);
PGLITE_API int pglite_errcode(pglite *db);
PGLITE_API const pglite_error *pglite_last_error(pglite *db);
/* The error of the last failed pglite_open on the calling thread, or NULL. */
PGLITE_API const pglite_error *pglite_open_error(void);

/* A server parameter PostgreSQL reported (ParameterStatus), e.g.
 * "server_version", "TimeZone", "client_encoding"; NULL if unknown. Valid
 * until the next call on db. */
PGLITE_API const char *pglite_parameter_status(pglite *db, const char *name);

/* Transaction status of the session: PGLITE_TX_IDLE (no transaction),
 * PGLITE_TX_INTRANS (in a transaction), PGLITE_TX_INERROR (in a failed
 * transaction: only ROLLBACK helps), or -1 for a bad or dead handle. */
#define PGLITE_TX_IDLE 0
#define PGLITE_TX_INTRANS 1
#define PGLITE_TX_INERROR 2
PGLITE_API int pglite_transaction_status(pglite *db);

/* Ask the statement running on db (on another thread) to stop, as a
 * CancelRequest would: it fails with SQLSTATE 57014. Does not wait for the
 * handle's mutex; a no-op when nothing runs. */
PGLITE_API void pglite_interrupt(pglite *db);

/* Free memory the library handed out (copy buffers, bytea values). */
PGLITE_API void pglite_free(void *p);

/* ---- results ------------------------------------------------------------ */

typedef struct pglite_result pglite_result;

/* Result status (libpq's ExecStatusType for the cases that occur). */
#define PGLITE_RESULT_EMPTY_QUERY 0 /* the statement was empty */
#define PGLITE_RESULT_COMMAND_OK 1  /* a command without rows (also describe/prepare) */
#define PGLITE_RESULT_TUPLES_OK 2   /* a query returning rows (maybe zero) */
#define PGLITE_RESULT_ERROR 3       /* failed: see pglite_result_error */

/* Queries with parameters (pglite_query, pglite_query_prepared) take them
 * as libpq's PQexecParams does:
 *   nparams  number of parameters ($1..$n), 0..65535
 *   types    parameter type OIDs, or NULL / 0 entries to let PostgreSQL
 *            infer them (e.g. 20 int8, 25 text, 17 bytea, 16 bool)
 *   values   values[i] the i-th value, NULL for SQL NULL
 *   lengths  byte lengths of binary values (ignored for text ones); may be
 *            NULL when every value is text
 *   formats  formats[i] 0 text (NUL-terminated), 1 binary (network byte
 *            order, PostgreSQL's binary send format); NULL: all text
 *   result_format  0: every column as text, 1: every column in binary
 * A parameter count that does not match the statement is PostgreSQL's
 * error 08P01. */

/* Run a script of SQL statements separated by semicolons (the simple query
 * protocol, one statement at a time, as psql does), and return one result
 * per statement that ran. The script is split outside quotes, dollar
 * quotes, comments, parentheses and CREATE FUNCTION ... BEGIN ATOMIC
 * bodies; empty statements are skipped. Each statement outside an explicit
 * transaction commits on its own.
 *
 * The script stops at the first failing statement, as psql with
 * ON_ERROR_STOP: its error result is the last one. If the script itself
 * opened a transaction that the error left aborted, it is rolled back, so
 * the session is usable again; a transaction the caller had open before
 * the call is left to the caller (pglite_rollback).
 *
 * results (may be NULL to discard them) receives an array of *nresults
 * results, to free with pglite_results_free, also on failure. Returns
 * PGLITE_OK, PGLITE_ERROR for a failed statement, or another status.
 * COPY ... FROM STDIN fails (57014): use pglite_copy_from. */
PGLITE_API int pglite_exec(pglite *db, const char *sql, pglite_result ***results,
                           int *nresults);
/* Run sql as ONE simple-protocol Query message, as libpq's PQexec and
 * PGlite's exec() do (faster than pglite_exec for long scripts: one round
 * trip). PostgreSQL runs the statements in turn as one implicit
 * transaction, unless the text has its own BEGIN/COMMIT, and stops at the
 * first error, which rolls back that implicit transaction: statements
 * before it that had not been committed are undone too (as with PQexec).
 * Results, the rollback of a transaction the text opened and broke, the
 * return value and COPY FROM STDIN are as for pglite_exec. */
PGLITE_API int pglite_exec_message(pglite *db, const char *sql, pglite_result ***results,
                                   int *nresults);
/* Free n results and the array. NULL is a no-op. */
PGLITE_API void pglite_results_free(pglite_result **results, int n);

/* Run one statement with parameters (extended protocol, unnamed statement).
 * *res (res may be NULL) receives the result, or on failure an error
 * result (or NULL when there was no memory); free it with
 * pglite_result_free. Returns PGLITE_OK, PGLITE_ERROR for a database
 * error, or another status. */
PGLITE_API int pglite_query(pglite *db, const char *sql, int nparams, const uint32_t *types,
                            const char *const *values, const int *lengths,
                            const int *formats, int result_format, pglite_result **res);

/* Prepare a named statement for pglite_query_prepared (name "" is the
 * unnamed statement, replaced by the next pglite_query or describe). A
 * name in use is PostgreSQL's error 42P05. res may be NULL. */
PGLITE_API int pglite_prepare(pglite *db, const char *name, const char *sql, int nparams,
                              const uint32_t *types, pglite_result **res);
/* Execute a prepared statement (parameters as for pglite_query). */
PGLITE_API int pglite_query_prepared(pglite *db, const char *name, int nparams,
                                     const char *const *values, const int *lengths,
                                     const int *formats, int result_format,
                                     pglite_result **res);
/* Drop a prepared statement (no error if it does not exist). */
PGLITE_API int pglite_deallocate(pglite *db, const char *name);

/* Parameter and column types of sql without executing it (the unnamed
 * statement), or of prepared statement name: the result has status
 * PGLITE_RESULT_COMMAND_OK, no rows, pglite_result_nparams and
 * pglite_result_paramtype for the parameters, and nfields, fname and
 * ftype for the columns the statement would return (0 for none). */
PGLITE_API int pglite_describe(pglite *db, const char *sql, pglite_result **res);
PGLITE_API int pglite_describe_prepared(pglite *db, const char *name, pglite_result **res);

/* Free a result. NULL is a no-op. */
PGLITE_API void pglite_result_free(pglite_result *res);

/* Accessors, libpq's meaning. res may be NULL; indexes are 0-based; an
 * index out of range gives the value noted (never a crash). */
PGLITE_API int pglite_result_status(const pglite_result *res);   /* ERROR for NULL */
/* The error of a failed result, NULL otherwise. */
PGLITE_API const pglite_error *pglite_result_error(const pglite_result *res);
/* pglite_error_field(pglite_result_error(res), code) */
PGLITE_API const char *pglite_result_error_field(const pglite_result *res, char code);
PGLITE_API int pglite_result_ntuples(const pglite_result *res); /* 0 */
PGLITE_API int pglite_result_nfields(const pglite_result *res); /* 0 */
PGLITE_API const char *pglite_result_fname(const pglite_result *res, int col); /* NULL */
/* Column number of name (case-sensitive, as sent), -1 if none. */
PGLITE_API int pglite_result_fnumber(const pglite_result *res, const char *name);
PGLITE_API uint32_t pglite_result_ftype(const pglite_result *res, int col);  /* type OID; 0 */
PGLITE_API int pglite_result_fmod(const pglite_result *res, int col);        /* typmod; -1 */
PGLITE_API int pglite_result_fformat(const pglite_result *res, int col);     /* 0 text, 1 binary; 0 */
/* Cell value, NUL-terminated (also binary ones, after their length):
 * "" for NULL, NULL out of range. Valid until pglite_result_free. */
PGLITE_API const char *pglite_result_getvalue(const pglite_result *res, int row, int col);
PGLITE_API int pglite_result_getisnull(const pglite_result *res, int row, int col); /* 1 */
PGLITE_API int pglite_result_getlength(const pglite_result *res, int row, int col); /* 0 */
PGLITE_API int pglite_result_nparams(const pglite_result *res);               /* 0 */
PGLITE_API uint32_t pglite_result_paramtype(const pglite_result *res, int i); /* 0 */
/* The command tag, e.g. "INSERT 0 3" or "SELECT 2"; "" if none. */
PGLITE_API const char *pglite_result_cmd_tag(const pglite_result *res);
/* Rows inserted, updated, deleted, merged, selected, moved, fetched or
 * copied, from the command tag; -1 for commands without a count. */
PGLITE_API int64_t pglite_result_rows_affected(const pglite_result *res);

/* Typed getters. Each converts the cell at (row, col) and returns
 * PGLITE_OK; PGLITE_NULL for SQL NULL (the output is then 0, NULL or
 * empty); PGLITE_RANGE for a bad index or NULL res; PGLITE_MISMATCH if the
 * value does not convert (the output is then 0/NULL). Text cells are
 * parsed (the whole text must be a number or t/f/true/false); binary cells
 * are decoded by type: int2/int4/int8/oid, float4/float8, bool, text-like
 * types, bytea.
 *   int64:  integers (and integral text such as a numeric "42")
 *   double: floats and integers ("NaN", "Infinity" included)
 *   bool:   boolean; *out 1 or 0
 *   text:   the value as text (binary cells only for text-like types);
 *           points into res
 *   bytea:  bytes: bytea in hex or escape text format decoded, binary
 *           cells as they are, other text cells as their text; *out is a
 *           new buffer (one byte longer than *len, NUL-terminated) to free
 *           with pglite_free. */
PGLITE_API int pglite_result_get_int64(const pglite_result *res, int row, int col, int64_t *out);
PGLITE_API int pglite_result_get_double(const pglite_result *res, int row, int col, double *out);
PGLITE_API int pglite_result_get_bool(const pglite_result *res, int row, int col, int *out);
PGLITE_API int pglite_result_get_text(const pglite_result *res, int row, int col,
                                      const char **out);
PGLITE_API int pglite_result_get_bytea(const pglite_result *res, int row, int col,
                                       uint8_t **out, size_t *len);

/* ---- transactions ---------------------------------------------------------
 * Helpers that never leave a transaction open when they fail. */

/* BEGIN. PGLITE_MISUSE (25001) if a transaction is already open. */
PGLITE_API int pglite_begin(pglite *db);
/* COMMIT. If the commit fails (e.g. a deferred constraint), or the
 * transaction had already failed (then PostgreSQL rolls it back, SQLSTATE
 * 25P02), returns PGLITE_ERROR with the error and the transaction is gone.
 * PGLITE_MISUSE (25P01) if no transaction is open. */
PGLITE_API int pglite_commit(pglite *db);
/* ROLLBACK; PGLITE_OK also when no transaction is open. */
PGLITE_API int pglite_rollback(pglite *db);

/* ---- notices and notifications ----------------------------------------- */

/* Called for each NoticeResponse (RAISE NOTICE, warnings, ...) after the
 * call that produced it. notice is valid during the callback only. */
typedef void (*pglite_notice_fn)(void *ctx, const pglite_error *notice);
/* Set (fn NULL: clear) the notice callback of db. Without one, notices
 * are dropped. */
PGLITE_API int pglite_set_notice_handler(pglite *db, pglite_notice_fn fn, void *ctx);

/* Called for each NOTIFY delivered to this session (after the call during
 * which it arrived: notifications are delivered when a transaction
 * commits). The strings are valid during the callback only. */
typedef void (*pglite_notify_fn)(void *ctx, const char *channel, const char *payload,
                                 int pid);
/* LISTEN on channel (taken literally: case-sensitive, any characters) and
 * call fn for its notifications; listening again replaces fn. */
PGLITE_API int pglite_listen(pglite *db, const char *channel, pglite_notify_fn fn, void *ctx);
/* UNLISTEN channel and forget its callback. */
PGLITE_API int pglite_unlisten(pglite *db, const char *channel);
/* The catch-all: fn (NULL: none) is called for every notification, on
 * channels with their own callback too (after it) and on channels
 * listened to with SQL LISTEN. */
PGLITE_API int pglite_set_notify_handler(pglite *db, pglite_notify_fn fn, void *ctx);

/* ---- COPY through /dev/blob ---------------------------------------------
 * The guest device /dev/blob is the COPY channel: during pglite_copy_from,
 * reading it gives data; during pglite_copy_to, what is written to it is
 * returned. Any COPY options work (FORMAT csv, binary, HEADER, ...). */

/* Run sql (e.g. "COPY t FROM '/dev/blob' WITH (FORMAT csv)") with the len
 * bytes at data as the content of /dev/blob. res (may be NULL) receives
 * the result (command tag "COPY n"). */
PGLITE_API int pglite_copy_from(pglite *db, const char *sql, const void *data, size_t len,
                                pglite_result **res);
/* Run sql (e.g. "COPY t TO '/dev/blob'" or "COPY (SELECT ...) TO
 * '/dev/blob'") and return what it wrote in *data (a new buffer of *len
 * bytes plus a NUL, to free with pglite_free; NULL on failure). */
PGLITE_API int pglite_copy_to(pglite *db, const char *sql, void **data, size_t *len,
                              pglite_result **res);

/* ---- data-directory archives ---------------------------------------------
 * A data directory as a .tar.gz (pax): every file of the cluster with paths
 * relative to its top, without the lock files. Loading one is an open
 * option (pglite_options.load_archive): the archive is unpacked beside the
 * target and moved into place only when complete; archives with absolute
 * or ".." member paths, links or devices are refused whole with
 * PGLITE_FORMAT and leave nothing behind. */

/* Write the data directory of db to path as a .tar.gz (replacing path
 * atomically). Runs CHECKPOINT first and holds the handle's mutex while
 * the files are read, so the copy is consistent; a database opened from
 * it replays the WAL since that checkpoint like after a crash.
 * PGLITE_MISUSE inside a transaction; PGLITE_IOERR if writing fails. */
PGLITE_API int pglite_dump_archive(pglite *db, const char *path);
/* The same for the closed database in data_dir, without starting it: the
 * directory is validated and locked (PGLITE_BUSY while a handle has it)
 * for the copy. Errors as for pglite_open: pglite_errmsg(NULL). */
PGLITE_API int pglite_dump_archive_path(const char *data_dir, const char *path);

/* ---- serving the database to PostgreSQL clients ---------------------------
 * A wire-protocol server on an open handle, so that any PostgreSQL client
 * (psql, libpq, psycopg2, node-postgres, JDBC, ...) can use the database
 * while the program keeps using the API:
 *
 *     pglite_server_options so;
 *     pglite_server_options_init(&so);
 *     so.unix_socket = "/run/app";          // or so.tcp = "127.0.0.1:5432"
 *     pglite_server *srv;
 *     if (pglite_server_start(db, &so, &srv) == PGLITE_OK) {
 *         printf("psql '%s'\n", pglite_server_uri(srv));
 *         ...
 *         pglite_server_stop(srv);
 *     }
 *
 * Every client gets a PostgreSQL session of its own on the handle's
 * database, next to the program's handles, as a server gives each
 * connection its backend: in any database of the cluster, as the role it
 * logs in as, up to max_connections (then PostgreSQL's FATAL 53300). A
 * client's transactions, locks and settings are its own; the program's
 * open transaction is invisible to it until committed.
 *
 * The server holds the database open: pglite_close(db) before
 * pglite_server_stop is allowed, and the database closes when both are
 * done. */

typedef struct pglite_server pglite_server;

typedef struct pglite_server_options {
    size_t size;             /* sizeof(pglite_server_options), set by the init */
    const char *unix_socket; /* Unix socket file, or an existing directory for
                                DIR/.s.PGSQL.PORT (PORT: the TCP port if set,
                                else 5432); NULL: no Unix socket */
    const char *tcp;         /* "HOST:PORT", ":PORT" or "PORT" (host 127.0.0.1);
                                port 0 picks a free one; NULL: no TCP. With
                                neither unix_socket nor tcp: "127.0.0.1:0".
                                A HOST that is not loopback needs a password
                                (else PGLITE_CANTOPEN, saying why) */
    const char *password;    /* NULL or "": trust (anyone who can connect).
                                Otherwise clients need their role's own
                                password (pg_authid, CREATE ROLE ...
                                PASSWORD), with SCRAM-SHA-256; this one is
                                made the password of role `username` (stored
                                in the database) */
    const char *username;    /* the role of the URI; default the handle's
                                session user. Each client logs in as the role
                                its startup packet names */
    int max_wait_ms;         /* unused (kept for the layout): clients no
                                longer wait for a turn */
    int max_waiting;         /* unused, likewise */
    int verbose;             /* 1: log connects and disconnects to stderr;
                                0: only warnings and errors */
    const char *ssl_cert;    /* TLS on TCP: PEM certificate (chain) file and */
    const char *ssl_key;     /* its key (both or neither); SSLRequest is then
                                answered 'S' and PostgreSQL 17's direct SSL
                                accepted; never on the Unix socket */
    int ssl_self_signed;     /* 1 (without ssl_cert): TLS with server.crt and
                                server.key of the database's data directory,
                                made as a self-signed pair for localhost,
                                127.0.0.1 and ::1 when missing; clients verify
                                with sslrootcert=DATADIR/server.crt */
} pglite_server_options;

/* Fill o with the defaults. */
PGLITE_API void pglite_server_options_init(pglite_server_options *o);

/* Start serving db's database (o NULL: the defaults). Returns PGLITE_OK
 * and the server in *out, or PGLITE_MISUSE (bad options) / PGLITE_CANTOPEN (a socket cannot be bound) with the message in
 * pglite_errmsg(db) and *out NULL. */
PGLITE_API int pglite_server_start(pglite *db, const pglite_server_options *o,
                                   pglite_server **out);

/* A libpq connection URI for the server, with sslmode=disable:
 * postgresql://USER@HOST:PORT/DB?sslmode=disable for TCP, else
 * postgresql://USER@/DB?host=DIR&port=N&sslmode=disable. Valid until
 * pglite_server_stop. NULL for NULL. */
PGLITE_API const char *pglite_server_uri(const pglite_server *srv);

/* The bound TCP port, or -1 without TCP. */
PGLITE_API int pglite_server_port(const pglite_server *srv);

/* Stop: stop accepting (the socket file is removed), turn clients still
 * connecting away (FATAL 57P01), cancel every client's running statement,
 * roll its session back and end it (FATAL 57P01); the program's handles
 * stay open and usable (the database closes here if none is left). Frees
 * srv; NULL is a no-op. */
PGLITE_API void pglite_server_stop(pglite_server *srv);

/* ---- Logical backups: pg_dump -------------------------------------------
 *
 * PostgreSQL 18's own pg_dump (from @electric-sql/pglite-tools, compiled
 * with the runtime) runs in this process against a session of its own on
 * db's database, as its role, beside the program's other sessions: the
 * dump is one consistent snapshot, and rows committed after it started
 * are not in it. `args` are pg_dump's own arguments (NULL-terminated,
 * without argv[0]), e.g. {"-Fc", "--schema-only", "-t", "orders", NULL};
 * -d/--dbname picks another database of the cluster; host, port and
 * password options have no use here.
 *
 * Output: -f/--file FILE writes that host file (or, with -Fd, directory).
 * Without -f the output (plain SQL, or -Fc/-Ft archives) goes to
 * write(ctx, data, len), which returns 0 to go on (non-zero: stop; the
 * call then fails); write may be NULL to discard it.
 *
 * Plain-format output leaves out PGlite's own column option pg_attver (no
 * other server accepts it; docs/dump.md).
 *
 * Returns PGLITE_OK when pg_dump exits with status 0; else PGLITE_ERROR
 * with pg_dump's own messages (its usage error, "pg_dump: error: ...") as
 * pglite_errmsg(db). Blocks until the dump is complete. Not from a
 * callback of db.
 *
 * Restoring: a plain dump is SQL for pglite_exec (or psql through
 * pglite_server_start); pglite-tools ships no pg_restore, so archive
 * formats are restored with a PostgreSQL 18 server's pg_restore (through
 * pglite-proxy for pglite-c). docs/dump.md has the ways in and out. */
PGLITE_API int pglite_dump(pglite *db, const char *const *args,
                           int (*write)(void *ctx, const void *data, size_t len), void *ctx);

/* The same against a running server (pglite-proxy, or any PostgreSQL
 * server pg_dump 18 supports): host is a Unix socket directory (or socket
 * file) when it starts with '/', else a TCP host name or address; NULL
 * means "/tmp"; port 0 means 5432. The role and database are pg_dump's own
 * (-U, -d, or PGUSER and PGDATABASE; a password from PGPASSWORD). The
 * error, on failure, is pglite_errmsg(NULL) on this thread. */
PGLITE_API int pglite_dump_server(const char *host, int port, const char *const *args,
                                  int (*write)(void *ctx, const void *data, size_t len),
                                  void *ctx);

#ifdef __cplusplus
}
#endif

#endif
