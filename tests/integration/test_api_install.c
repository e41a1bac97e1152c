/*
 * The installed library as a user gets it: `cmake --install` of this build
 * into a temporary prefix, then the examples/ programs compiled with
 * `cc $(pkg-config --cflags --libs pglite)` (shared), against libpglite.a
 * (static), and with find_package(pglite) in a CMake project, and run.
 * The shared library finds its runtime tree beside itself, so the prefix
 * still works after being moved.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <limits.h>

#include "../support/fixture.h"

static char g_build[PATH_MAX], g_src[PATH_MAX];
static char *g_tmp;
static char g_prefix[PATH_MAX + 64];

/* Run a shell command; its output (stdout and stderr) into a buffer. */
static int run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **out, const char *fmt, ...) {
    char *cmd, *full;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&cmd, fmt, ap) < 0)
        return -1;
    va_end(ap);
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/cmd.log", g_tmp);
    if (asprintf(&full, "( %s ) > '%s' 2>&1", cmd, log) < 0)
        return -1;
    int rc = system(full);
    char *o = fx_slurp(log);
    if (rc != 0)
        fprintf(stderr, "$ %s\n%s\n", cmd, o ? o : "");
    if (out)
        *out = o;
    else
        free(o);
    free(cmd);
    free(full);
    return rc;
}

static int setup(void **state) {
    (void)state;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    snprintf(g_build, sizeof g_build, "%s", dirname(dirname(exe))); /* build/tests/x */
    snprintf(g_src, sizeof g_src, "%s", __FILE__);
    char *p = strstr(g_src, "/tests/integration/");
    if (!p)
        return -1;
    *p = 0;
    g_tmp = fx_mkdtemp("install");
    if (!g_tmp)
        return -1;
    snprintf(g_prefix, sizeof g_prefix, "%s/prefix", g_tmp);
    return run(NULL, "cmake --install '%s' --prefix '%s'", g_build, g_prefix) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fx_rmtree(g_tmp);
    free(g_tmp);
    return 0;
}

static void test_installed_files(void **state) {
    (void)state;
    const char *files[] = {"include/pglite.h", "lib/libpglite.so", "lib/libpglite.a",
                           "lib/pkgconfig/pglite.pc", "lib/cmake/pglite/pgliteConfig.cmake",
                           "share/pglite/runtime/pglite/share/postgresql/postgres.bki",
                           "share/pglite/examples/quickstart.c", NULL};
    for (int i = 0; files[i]; i++) {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", g_prefix, files[i]);
        if (access(p, R_OK) != 0)
            fail_msg("%s is not installed", p);
    }
    /* the shared library exports the public API and nothing else */
    char *out = NULL;
    assert_int_equal(run(&out, "nm -D --defined-only '%s/lib/libpglite.so' | awk '{print $3}' | "
                               "grep -v '^pglite_' | wc -l",
                         g_prefix),
                     0);
    assert_int_equal(atoi(out), 0);
    free(out);
}

static void test_examples_with_pkg_config(void **state) {
    (void)state;
    char *out = NULL;
    const char *env = "export PKG_CONFIG_PATH='%s/lib/pkgconfig'";
    char pc[PATH_MAX * 2];
    snprintf(pc, sizeof pc, env, g_prefix);
    for (int i = 0; i < 2; i++) {
        const char *ex = i ? "copy_notify" : "quickstart";
        assert_int_equal(run(NULL, "cd '%s' && %s && cc -std=c11 -Wall -Wextra -Werror "
                                   "'%s/examples/%s.c' $(pkg-config --cflags --libs pglite) -o %s",
                             g_tmp, pc, g_src, ex, ex),
                         0);
    }
    assert_int_equal(run(&out, "cd '%s' && LD_LIBRARY_PATH='%s/lib' ./quickstart", g_tmp, g_prefix),
                     0);
    assert_non_null(strstr(out, "PostgreSQL 18"));
    assert_non_null(strstr(out, "3 cherry (long)"));
    assert_non_null(strstr(out, "error 23505: duplicate key value"));
    assert_non_null(strstr(out, "Key (name)=(apple) already exists."));
    free(out);
    assert_int_equal(run(&out, "cd '%s' && LD_LIBRARY_PATH='%s/lib' ./copy_notify '%s/a.tar.gz'",
                         g_tmp, g_prefix, g_tmp),
                     0);
    assert_non_null(strstr(out, "COPY 3"));
    assert_non_null(strstr(out, "notification on jobs: resize image 7"));
    free(out);

    /* a moved prefix still works: the runtime is found beside the library */
    assert_int_equal(run(NULL, "mv '%s' '%s/moved'", g_prefix, g_tmp), 0);
    assert_int_equal(run(&out, "cd '%s' && LD_LIBRARY_PATH='%s/moved/lib' ./quickstart", g_tmp,
                         g_tmp),
                     0);
    assert_non_null(strstr(out, "1 apple"));
    free(out);
    assert_int_equal(run(NULL, "mv '%s/moved' '%s'", g_tmp, g_prefix), 0);
}

/* Link src statically against the installed libpglite.a as exe (in
 * g_tmp) and run it; its output. A static program has no library path to
 * start from: it uses the configured prefix, or PGLITE_RUNTIME_DIR. */
static char *static_run(const char *src, const char *exe) {
    assert_int_equal(run(NULL, "cd '%s' && PKG_CONFIG_PATH='%s/lib/pkgconfig' && "
                               "export PKG_CONFIG_PATH && "
                               "cc -std=c11 -Wall -Wextra '%s' $(pkg-config --cflags pglite) "
                               "'%s/lib/libpglite.a' $(pkg-config --static --libs-only-other "
                               "--libs-only-l pglite | sed 's/-lpglite//') -o %s",
                         g_tmp, g_prefix, src, g_prefix, exe),
                     0);
    char *out = NULL;
    assert_int_equal(run(&out, "cd '%s' && PGLITE_RUNTIME_DIR='%s/share/pglite/runtime' ./%s",
                         g_tmp, g_prefix, exe),
                     0);
    return out;
}

static void test_static_library(void **state) {
    (void)state;
    char quickstart[PATH_MAX + 64];
    snprintf(quickstart, sizeof quickstart, "%s/examples/quickstart.c", g_src);
    char *out = static_run(quickstart, "quickstart_static");
    assert_non_null(strstr(out, "2 banana (long)"));
    free(out);

    /* it defines pglite_* and nothing else ... */
    assert_int_equal(run(&out, "nm -g --defined-only '%s/lib/libpglite.a' | "
                               "awk 'NF == 3 {print $3}' | grep -v '^pglite_' | wc -l",
                         g_prefix),
                     0);
    assert_int_equal(atoi(out), 0);
    free(out);
    /* ... so a program may use the library's internal names for its own */
    static const char prog[] =
        "#include <pglite.h>\n"
        "#include <stdio.h>\n"
        "int vfs_new(int x) { return x + 1; }\n"
        "const char *server_start = \"mine\";\n"
        "int wire_put(void) { return 7; }\n"
        "double result_new;\n"
        "int main(void) {\n"
        "    pglite *db;\n"
        "    if (pglite_open(NULL, NULL, &db) != PGLITE_OK) return 1;\n"
        "    pglite_result *r;\n"
        "    if (pglite_query(db, \"SELECT 6 * 7\", 0, NULL, NULL, NULL, NULL, 0, &r) != PGLITE_OK)\n"
        "        return 2;\n"
        "    printf(\"%s %d %s %d\\n\", pglite_result_getvalue(r, 0, 0), vfs_new(1),\n"
        "           server_start, wire_put());\n"
        "    pglite_result_free(r);\n"
        "    pglite_close(db);\n"
        "    return result_new != 0;\n"
        "}\n";
    char src[PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/own_names.c", g_tmp);
    assert_int_equal(fx_write_file(src, prog, strlen(prog)), 0);
    out = static_run(src, "own_names");
    assert_non_null(strstr(out, "42 2 mine 7"));
    free(out);
}

static void test_cmake_package(void **state) {
    (void)state;
    char dir[PATH_MAX * 2], cml[PATH_MAX * 2 + 32];
    snprintf(dir, sizeof dir, "%s/cmakeproj", g_tmp);
    mkdir(dir, 0700);
    snprintf(cml, sizeof cml, "%s/CMakeLists.txt", dir);
    char text[PATH_MAX * 2];
    snprintf(text, sizeof text,
             "cmake_minimum_required(VERSION 3.20)\n"
             "project(use_pglite C)\n"
             "find_package(pglite 0.1 REQUIRED)\n"
             "add_executable(quickstart \"%s/examples/quickstart.c\")\n"
             "target_link_libraries(quickstart PRIVATE pglite::pglite)\n",
             g_src);
    assert_int_equal(fx_write_file(cml, text, strlen(text)), 0);
    char *out = NULL;
    assert_int_equal(run(NULL, "cmake -S '%s' -B '%s/b' -DCMAKE_PREFIX_PATH='%s' && "
                               "cmake --build '%s/b'",
                         dir, dir, g_prefix, dir),
                     0);
    assert_int_equal(run(&out, "LD_LIBRARY_PATH='%s/lib' '%s/b/quickstart'", g_prefix, dir), 0);
    assert_non_null(strstr(out, "1 apple"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed_files),
        cmocka_unit_test(test_examples_with_pkg_config),
        cmocka_unit_test(test_static_library),
        cmocka_unit_test(test_cmake_package),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
