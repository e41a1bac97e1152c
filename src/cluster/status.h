/*
 * status: the one internal status type of cluster, backend and server.
 *
 * A function that can fail returns 0 or a negative pgl_status (the kind)
 * and writes the message into the caller's buffer. -1 is PGL_EFAIL, so a
 * plain `return -1` stays a valid "it failed". The kinds, their numbers
 * and the public status each becomes are one table, PGL_STATUS_MAP
 * (libuv's UV_ERRNO_MAP is the model): the client expands it against
 * include/pglite.h; nothing ever recovers a kind from message text.
 */
#ifndef PGLITE_CLUSTER_STATUS_H
#define PGLITE_CLUSTER_STATUS_H

/* X(kind, number, public status, what it means) */
#define PGL_STATUS_MAP(X)                                                              \
    X(FAIL, 1, PGLITE_CANTOPEN, "the database cannot be created, opened or started")   \
    X(BUSY, 2, PGLITE_BUSY, "the data directory is in use")                            \
    X(NOMEM, 3, PGLITE_NOMEM, "out of memory")                                         \
    X(IO, 4, PGLITE_IOERR, "a host file operation failed")

typedef enum pgl_status {
    PGL_OK = 0,
#define PGL_STATUS_ENUM(kind, n, pub, text) PGL_E##kind = -(n),
    PGL_STATUS_MAP(PGL_STATUS_ENUM)
#undef PGL_STATUS_ENUM
} pgl_status;

#endif
