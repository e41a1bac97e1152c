/* initdb in-process: initdb.wasm drives a pglite.wasm instance through
 * PGlite's system/popen/pclose hooks, as PGlite's JS does. The postgres
 * instance's memory is put back to a pristine copy before each of its runs
 * (--check, -V, --boot, --single); its stdin and stdout are two files in a
 * scratch directory both instances see, read and written like pipes. */
#define _GNU_SOURCE
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ARGS 64

typedef struct bridge {
    engine *pg;              /* the postgres instance */
    engine *idb;             /* the initdb instance */
    engine_snapshot *pristine;
    uint32_t r_file, w_file; /* initdb's FILE*s on pgstdout / pgstdin */
    char *pending;           /* a popen "w" command, run at pclose */
    int last_status;
    char log[8192];          /* what went wrong, for the caller */
    size_t loglen;
} bridge;

static void note(bridge *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(bridge *b, const char *fmt, ...) {
    if (b->loglen + 1 >= sizeof b->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->log + b->loglen, sizeof b->log - b->loglen, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->loglen += (size_t)n < sizeof b->log - b->loglen ? (size_t)n : sizeof b->log - b->loglen - 1;
}

/* Split a shell command into words up to its first operator (redirections
 * are dropped, as PGlite does: stdio already goes to the pipe files).
 * Quotes and backslashes are honoured; $VAR expands to nothing. Returns the
 * word count; words point into buf. */
static int split_command(const char *cmd, char *buf, size_t bufsize, char **argv) {
    int argc = 0;
    size_t o = 0;
    const char *p = cmd;
    while (*p && argc < MAX_ARGS - 1) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p || strchr("<>|;&()", *p))
            break;
        char *word = buf + o;
        bool any = false;
        while (*p && !strchr(" \t\n<>|;&()", *p) && o + 1 < bufsize) {
            if (*p == '\'') {
                p++;
                while (*p && *p != '\'' && o + 1 < bufsize)
                    buf[o++] = *p++;
                if (*p)
                    p++;
                any = true;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"' && o + 1 < bufsize) {
                    if (*p == '\\' && p[1])
                        p++;
                    buf[o++] = *p++;
                }
                if (*p)
                    p++;
                any = true;
            } else if (*p == '\\' && p[1]) {
                buf[o++] = p[1];
                p += 2;
                any = true;
            } else if (*p == '$') {
                p++;
                while (*p && (*p == '_' || (*p >= 'A' && *p <= 'Z') ||
                              (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
                    p++;
            } else {
                buf[o++] = *p++;
                any = true;
            }
        }
        if (o + 1 >= bufsize)
            break;
        buf[o++] = 0;
        if (any)
            argv[argc++] = word;
        /* a word glued to an operator ("2>&1"): the operator ends it all */
        if (*p && strchr("<>|;&()", *p))
            break;
    }
    argv[argc] = NULL;
    return argc;
}

/* Run postgres main in the pglite instance for command cmd. */
static int run_postgres(bridge *b, const char *cmd) {
    char buf[8192];
    char *argv[MAX_ARGS];
    int argc = split_command(cmd, buf, sizeof buf, argv);
    if (argc < 1 || strcmp(argv[0], "/pglite/bin/postgres") != 0) {
        note(b, "initdb tried to run something other than postgres: %s\n", cmd);
        return 127;
    }
    if (engine_snapshot_restore(b->pg, b->pristine) != 0) {
        note(b, "cannot restore the postgres instance\n");
        return 1;
    }
    engine_result r;
    engine_main(b->pg, argc, (const char *const *)argv, &r);
    if (r.status == ENGINE_EXITED) {
        if (r.exit_code != 0)
            note(b, "postgres %s exited with %d\n", argc > 1 ? argv[1] : "", r.exit_code);
        return r.exit_code;
    }
    note(b, "postgres %s: %s\n", argc > 1 ? argv[1] : "", r.message);
    return 1;
}

static int guest_string(engine *e, uint32_t p, char *out, size_t n) {
    /* read up to n-1 bytes, stopping at NUL */
    wasm_rt_memory_t *m = engine_memory(e);
    if (p >= m->size)
        return -1;
    size_t avail = m->size - p;
    size_t len = strnlen((const char *)m->data + p, avail < n - 1 ? avail : n - 1);
    memcpy(out, m->data + p, len);
    out[len] = 0;
    return 0;
}

/* initdb's hooks (called inside initdb.wasm, on its stack). */
static uint32_t cb_system(void *ctx, const uint32_t *a) {
    bridge *b = ctx;
    char cmd[8192];
    if (guest_string(b->idb, a[0], cmd, sizeof cmd) != 0)
        return 1;
    return (uint32_t)run_postgres(b, cmd);
}

static uint32_t cb_popen(void *ctx, const uint32_t *a) {
    bridge *b = ctx;
    char cmd[8192], mode[8];
    if (guest_string(b->idb, a[0], cmd, sizeof cmd) != 0 ||
        guest_string(b->idb, a[1], mode, sizeof mode) != 0)
        return 0;
    if (mode[0] == 'r') {
        b->last_status = run_postgres(b, cmd);
        return b->r_file;
    }
    if (mode[0] == 'w') {
        free(b->pending);
        b->pending = strdup(cmd);
        return b->pending ? b->w_file : 0;
    }
    return 0;
}

static uint32_t cb_pclose(void *ctx, const uint32_t *a) {
    bridge *b = ctx;
    if (a[0] == b->r_file || a[0] == b->w_file) {
        if (b->pending) {
            char *cmd = b->pending;
            b->pending = NULL;
            b->last_status = run_postgres(b, cmd);
            free(cmd);
        }
        return (uint32_t)b->last_status;
    }
    return (uint32_t)-1;
}

/* postgres' own hooks: popen("locale -a") answered from /pglite/locale-a. */
static uint32_t pg_system(void *ctx, const uint32_t *a) {
    (void)ctx; (void)a;
    return 1;
}

static uint32_t pg_popen(void *ctx, const uint32_t *a) {
    engine *pg = ctx;
    char cmd[256];
    if (guest_string(pg, a[0], cmd, sizeof cmd) != 0 || strncmp(cmd, "locale -a", 9) != 0)
        return 0;
    uint32_t args[2] = {engine_strdup(pg, "/pglite/locale-a"), engine_strdup(pg, "r")};
    if (!args[0] || !args[1])
        return 0;
    /* Already inside the guest: call fopen directly through the engine. */
    engine_result r;
    if (engine_call(pg, "fopen", args, 2, &r) != ENGINE_OK)
        return 0;
    return r.value;
}

static uint32_t pg_pclose(void *ctx, const uint32_t *a) {
    engine *pg = ctx;
    engine_call(pg, "fclose", a, 1, NULL);
    return 0;
}

static int set_hook(engine *e, const char *setter, int nparams, engine_cb fn, void *ctx) {
    uint32_t idx = engine_add_callback(e, nparams, 1, fn, ctx);
    if (!idx)
        return -1;
    engine_result r;
    return engine_call(e, setter, &idx, 1, &r) == ENGINE_OK ? 0 : -1;
}

static int call2(engine *e, const char *fn, const char *s1, const char *s2,
                 int has3, uint32_t a3, uint32_t *out) {
    uint32_t a[3] = {engine_strdup(e, s1), engine_strdup(e, s2), a3};
    if (!a[0] || !a[1])
        return -1;
    engine_result r;
    if (engine_call(e, fn, a, has3 ? 3 : 2, &r) != ENGINE_OK)
        return -1;
    if (out)
        *out = r.value;
    return 0;
}

int cluster_initdb(const char *data_dir, const char *const *extra_args,
                   char *err, size_t errlen) {
    struct stat st;
    if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", data_dir);
        return -1;
    }
    cluster_tree t;
    if (cluster_tree_open(&t, data_dir, err, errlen) != 0)
        return -1;
    char tmp[4096], out_path[4096], err_path[4096];
    snprintf(tmp, sizeof tmp, "%s/tmp", t.scratch);
    snprintf(out_path, sizeof out_path, "%s/initdb.out", t.scratch);
    snprintf(err_path, sizeof err_path, "%s/initdb.err", t.scratch);
    /* The two pipe files, which postgres' freopen needs to exist. */
    char pipe_path[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(pipe_path, sizeof pipe_path, "%s/%s", tmp, i ? "pgstdout" : "pgstdin");
        int fd = open(pipe_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
    int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int efd = open(err_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    engine_mount m[4];
    char runtime[4096];
    snprintf(runtime, sizeof runtime, "%s/pglite", cluster_runtime_tree());
    m[0] = (engine_mount){"/pglite", runtime, 0};
    m[1] = (engine_mount){"/pglite/data", t.data_dir, 1};
    m[2] = (engine_mount){"/tmp", tmp, 1};
    char home[4096];
    snprintf(home, sizeof home, "%s/home", t.scratch);
    m[3] = (engine_mount){"/home/postgres", home, 1};
    static const char *const idb_env[] = {
        "PGDATA=/pglite/data", "HOME=/home/postgres", "USER=postgres",
        "LOGNAME=postgres", "ICU_DATA=/pglite/icu", "TZ=UTC", "PATH=/pglite/bin",
        "PWD=/", "LANG=C.UTF-8", NULL};
    engine_config pcfg = {.mounts = m, .nmounts = 4, .devices = 1, .cwd = "/",
                          .env = cluster_guest_env(), .stdin_fd = -1,
                          .stdout_fd = -1, .stderr_fd = efd};
    engine_config icfg = pcfg;
    icfg.env = idb_env;
    icfg.stdout_fd = ofd;
    bridge b;
    memset(&b, 0, sizeof b);
    int rc = -1;
    char msg[256];
    b.pg = engine_new(ENGINE_PGLITE, &pcfg, msg, sizeof msg);
    if (!b.pg) {
        snprintf(err, errlen, "initdb: %s", msg);
        goto out;
    }
    if (set_hook(b.pg, "pgl_set_system_fn", 1, pg_system, b.pg) != 0 ||
        set_hook(b.pg, "pgl_set_popen_fn", 2, pg_popen, b.pg) != 0 ||
        set_hook(b.pg, "pgl_set_pclose_fn", 1, pg_pclose, b.pg) != 0) {
        snprintf(err, errlen, "initdb: cannot install postgres' hooks");
        goto out;
    }
    /* The pristine copy predates the stdio redirection, so pgl_exit never
     * closes the redirected streams (PGlite does the same). */
    b.pristine = engine_snapshot_take(b.pg);
    if (!b.pristine) {
        snprintf(err, errlen, "initdb: out of memory for the snapshot");
        goto out;
    }
    uint32_t fin = 0, fout = 0;
    if (call2(b.pg, "pgl_freopen", "/tmp/pgstdin", "r", 1, 0, &fin) != 0 || !fin ||
        call2(b.pg, "pgl_freopen", "/tmp/pgstdout", "w", 1, 1, &fout) != 0 || !fout) {
        snprintf(err, errlen, "initdb: cannot redirect postgres' stdio");
        goto out;
    }
    b.idb = engine_new(ENGINE_INITDB, &icfg, msg, sizeof msg);
    if (!b.idb) {
        snprintf(err, errlen, "initdb: %s", msg);
        goto out;
    }
    if (call2(b.idb, "fopen", "/tmp/pgstdin", "w", 0, 0, &b.w_file) != 0 || !b.w_file ||
        call2(b.idb, "fopen", "/tmp/pgstdout", "r", 0, 0, &b.r_file) != 0 || !b.r_file) {
        snprintf(err, errlen, "initdb: cannot open the pipe files");
        goto out;
    }
    if (set_hook(b.idb, "pgl_set_system_fn", 1, cb_system, &b) != 0 ||
        set_hook(b.idb, "pgl_set_popen_fn", 2, cb_popen, &b) != 0 ||
        set_hook(b.idb, "pgl_set_pclose_fn", 1, cb_pclose, &b) != 0) {
        snprintf(err, errlen, "initdb: cannot install initdb's hooks");
        goto out;
    }
    const char *argv[MAX_ARGS] = {"/pglite/bin/initdb", "--allow-group-access",
                                  "--encoding", "UTF8", "--locale=C.UTF-8",
                                  "--locale-provider=libc", "--auth=trust",
                                  "--username=postgres"};
    int argc = 8;
    for (int i = 0; extra_args && extra_args[i] && argc < MAX_ARGS - 1; i++)
        argv[argc++] = extra_args[i];
    engine_result r;
    engine_main(b.idb, argc, argv, &r);
    char control[4096];
    snprintf(control, sizeof control, "%s/global/pg_control", data_dir);
    if (r.status == ENGINE_EXITED && r.exit_code == 0 && access(control, F_OK) == 0) {
        rc = 0;
    } else {
        char tail[2048] = "";
        if (efd >= 0) {
            off_t end = lseek(efd, 0, SEEK_END);
            off_t from = end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0;
            ssize_t n = pread(efd, tail, sizeof tail - 1, from);
            tail[n > 0 ? n : 0] = 0;
        }
        snprintf(err, errlen, "initdb failed (%s)\n%s%s", r.message, b.log, tail);
    }
out:
    free(b.pending);
    engine_snapshot_free(b.pristine);
    engine_free(b.idb);
    engine_free(b.pg);
    if (ofd >= 0)
        close(ofd);
    if (efd >= 0)
        close(efd);
    cluster_tree_close(&t);
    return rc;
}
