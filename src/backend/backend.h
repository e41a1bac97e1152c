/*
 * backend: one embedded PostgreSQL backend speaking the v3 wire protocol.
 *
 * PGlite's embedded mode: postgres main runs in single-user mode with
 * PGlite active, returns (exit 99) with the backend initialised, and from
 * then on every batch of protocol messages is fed through the read/write
 * callbacks and pumped with PostgresMainLoopOnce, an ERROR's longjmp to the
 * main loop (exit 100) being finished by PostgresMainLongJmp. The client
 * API and the socket server both use backend_exchange: raw protocol bytes
 * in, the backend's raw reply bytes out.
 *
 * A backend is used by one thread at a time, except backend_cancel, which
 * any thread may call while another is inside backend_exchange.
 *
 * Many backends of one cluster (backend_options.sessions, backend_clone):
 * the first boots as above and stops at the module's fork point (main(),
 * just before InitProcess) long enough to share PostgreSQL's main
 * shared-memory segment (a memfd mapped at its guest address) and take an
 * image of itself. Each further session is a copy-on-write clone of that
 * image with a pid of its own, started the way BackendMain starts a
 * forked backend (on_exit_reset, the startup packet, InitProcess,
 * PostgresMain). One lock lets one backend of the cluster run guest code
 * at a time; a backend lets go of it where a
 * PostgreSQL process blocks (a latch or lock wait, a sleep, waiting for
 * its client), so row locks wait and wake, deadlocks are detected and
 * signals (cancel, terminate, NOTIFY) reach the other backends as between
 * processes; and, once it has run a 20 ms slice while others wait, at its
 * next CHECK_FOR_INTERRUPTS that holds no LWLock, so that a long statement
 * does not hold the others off until it ends.
 */
#ifndef PGLITE_BACKEND_H
#define PGLITE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/status.h"

typedef struct backend backend;

typedef struct backend_options {
    const char *data_dir;        /* host data directory, prepared and locked */
    const char *user;            /* default "postgres" */
    const char *database;        /* default "postgres" */
    const char *const *gucs;     /* NULL-terminated "name=value" list */
    int debug;                   /* postgres -d level, 0 for none */
    int relaxed_durability;      /* fsync and synchronous_commit off */
    /* The first backend of a cluster that takes more sessions
     * (backend_clone): it shares PostgreSQL's shared memory with them and
     * runs guest code only while no other backend of the cluster does. */
    int sessions;
    /* A session that runs guest code this long (ms; 0: 30 s) while others
     * wait for the cluster, without reaching an import (a loop that never
     * checks for interrupts, or holds an LWLock), is stopped there: a
     * crash, as backend_crashed says. It is logged after 10 s. */
    int stop_ms;
    /* /dev/blob, the COPY channel (COPY ... FROM/TO '/dev/blob'): called
     * from inside backend_exchange when the backend reads or writes it.
     * read returns up to len bytes (0 at the end), write the count taken;
     * either may be NULL (reads give EOF, writes are discarded). */
    void *blob_ctx;
    long (*blob_read)(void *ctx, void *buf, size_t len);
    long (*blob_write)(void *ctx, const void *buf, size_t len);
} backend_options;

/* Start a backend on an existing cluster. Returns 0, or a negative
 * pgl_status (cluster/status.h: PGL_ENOMEM, else PGL_EFAIL) with a message
 * (PostgreSQL's own FATAL when there is one) in err. */
int backend_start(const backend_options *o, backend **out, char *err, size_t errlen);

/* Another session on first's cluster (first started with sessions set), as
 * a client of a real server gets one: a backend of its own, with a pid of
 * its own, started the way BackendMain starts one, from the image first
 * took at its fork point (copy-on-write, not a boot), with params as the
 * client's startup packet (NULL-terminated name, value, ...: user,
 * database, options, application_name...; NULL: user and database
 * postgres) and protocol 3.minor, which PostgreSQL applies itself (minor 2:
 * a 32-byte cancel key). Any thread may use it while
 * others use the cluster's other backends. Returns 0; 1 if PostgreSQL
 * refused the session (its FATAL, e.g. 3D000, 28000, 53300, is the startup
 * reply of *out, a dead backend to close); -1 with a message otherwise. */
int backend_clone(backend *first, const char *const *params, int minor, backend **out,
                  char *err, size_t errlen);

/* The reply to the startup packet: AuthenticationOk, ParameterStatus...,
 * BackendKeyData, ReadyForQuery (what a server sends a new client). */
const uint8_t *backend_startup_reply(backend *b, size_t *len);

/* Feed complete frontend messages (typed, after the startup packet) and get
 * the backend's reply, ending with ReadyForQuery when the input ends a
 * cycle (Query, Sync). The reply is owned by the backend until the next
 * call. A Terminate message is not passed on (the backend stays up).
 * Returns 0, or -1 if the backend died (then every later call fails too;
 * the message is in err). */
int backend_exchange(backend *b, const uint8_t *in, size_t len,
                     const uint8_t **out, size_t *outlen, char *err, size_t errlen);

/* More input for an exchange in progress, when the backend needs bytes
 * beyond those given to backend_exchange (COPY FROM STDIN waiting for
 * CopyData). out/outlen is the reply so far, which the caller must deliver
 * first (it ends with CopyInResponse; it is dropped from the final reply).
 * Set *in and *inlen to further complete frontend messages (kept valid until
 * the next call or the end of the exchange) and return 0; returning -1 or
 * no bytes means end of input, which ends the backend's session (FATAL). */
typedef int (*backend_input_fn)(void *ctx, const uint8_t *out, size_t outlen,
                                const uint8_t **in, size_t *inlen);

/* An idle backend of a cluster can be signalled by the others (NOTIFY to a
 * listener, pg_terminate_backend): this fd becomes readable then (-1 if the
 * backend is dead). Its owner waits on it beside the client, as a
 * PostgreSQL backend waits in its client read, and calls backend_idle,
 * which runs what the signals ask for and gives the bytes for the client
 * (NotificationResponse...). Returns 0, or -1 if the session is over (out
 * then holds its FATAL, if any). Not during backend_exchange. */
int backend_signal_fd(backend *b);
int backend_idle(backend *b, const uint8_t **out, size_t *outlen, char *err, size_t errlen);

/* Park a backend that no one uses for now (a session between its
 * client's calls): until backend_unpark, a thread of the cluster takes
 * its signals as a PostgreSQL backend does while it waits for its client
 * (backend_idle: barriers, terminate, catch-up, NOTIFY), so the other
 * backends never wait for it. No system call. 0, or -1 (no thread; the
 * backend stays unparked). A backend of its own (no sessions) has no one
 * to signal it: a no-op. */
int backend_park(backend *b);

/* The cluster of first: how many clones its spare thread has ready now,
 * and how many sessions' clones came from a spare or were made at their
 * start (all zero for a backend of its own). */
void backend_spares(backend *first, int *ready, unsigned long *made_ahead,
                    unsigned long *made_inline);
/* Take a parked backend back (waits while its signals are being handled;
 * a no-op if it is not parked). *out is what that handling produced for
 * the client (NotificationResponse..., a FATAL), kept until the next
 * unpark. Returns 0, or -1 if the session ended meanwhile (terminated:
 * its FATAL is in *out). backend_close takes it back itself. */
int backend_unpark(backend *b, const uint8_t **out, size_t *outlen);

/* Crashes. When a backend of a cluster traps or exits abnormally (a
 * PANIC), shared memory may be inconsistent: as PostgreSQL's postmaster
 * does, every backend of the cluster then ends at its next step (one
 * waiting inside a statement where it resumes, an idle one at its signal
 * fd, any other at its next call), its client getting PostgreSQL's FATAL
 * 57P02 "terminating connection because of crash of another server
 * process" as the reply (backend_exchange and backend_idle return -1 with
 * *out holding it); no new session starts. backend_crashed tells whether
 * b's cluster crashed; backend_restart starts the cluster of a first
 * backend whose cluster crashed again (crash recovery), as a new first
 * backend in *out: the caller closes the old one. 0, or -1 with err. */
int backend_crashed(const backend *b);
/* Fault injection, for tests of the above: b's next statement crashes in
 * PostgreSQL's executor (an indirect call through ExecutorStart_hook to no
 * function: a wasm trap, with whatever the statement holds held). */
int backend_inject_crash(backend *b);
/* ... and b's statements from now on holding interrupts off
 * (InterruptHoldoffCount, as while it holds an LWLock): nothing cancels
 * them and they never let the others run, so a long one is stopped as a
 * runaway (backend_options.stop_ms). */
int backend_inject_stall(backend *b);
int backend_restart(backend *first, backend **out, char *err, size_t errlen);

/* /dev/blob of b (see backend_options; a clone has none until set). */
void backend_set_blob(backend *b, void *ctx, long (*read)(void *ctx, void *buf, size_t len),
                      long (*write)(void *ctx, const void *buf, size_t len));

/* Hold (release) every backend of b's cluster still: while held, none of
 * them runs guest code, so the data directory's files are what a crash at
 * that instant would leave. Not inside a call on a backend of the cluster.
 * A backend of its own: a no-op. */
void backend_hold_cluster(backend *b);
void backend_release_cluster(backend *b);

/* Set (fn NULL: clear) the input function used by backend_exchange. */
void backend_set_input(backend *b, backend_input_fn fn, void *ctx);

/* Ask the running statement to stop, as a CancelRequest or SIGINT would
 * (ERROR 57014). Safe from any thread; a no-op when nothing runs. */
void backend_cancel(backend *b);

/* Is the backend alive (no trap, no FATAL)? */
int backend_alive(const backend *b);

/* Shut down cleanly: end the session and run PostgreSQL's exit handlers
 * (the shutdown checkpoint). Frees b. */
void backend_close(backend *b);

#endif
