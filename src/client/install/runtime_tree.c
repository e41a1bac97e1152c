/* The runtime tree of an installed libpglite: beside the shared library
 * (<libdir>/PGLITE_RUNTIME_FROM_LIBDIR), so an installed prefix can be
 * moved; else, as for the static library linked into a program, the
 * absolute PGLITE_RUNTIME_INSTALLED of the install. $PGLITE_RUNTIME_DIR
 * still overrides both (cluster_runtime_tree). */
#define _GNU_SOURCE
#include "runtime_tree.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char g_tree[PATH_MAX];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void find_tree(void) {
    snprintf(g_tree, sizeof g_tree, "%s", PGLITE_RUNTIME_INSTALLED);
    Dl_info info;
    if (!dladdr((void *)pglite_installed_runtime_tree, &info) || !info.dli_fname ||
        !strstr(info.dli_fname, ".so"))
        return;
    char lib[PATH_MAX];
    snprintf(lib, sizeof lib, "%s", info.dli_fname);
    char *slash = strrchr(lib, '/');
    if (!slash)
        return;
    *slash = 0;
    char cand[PATH_MAX], probe[PATH_MAX + 16];
    snprintf(cand, sizeof cand, "%s/%s", lib, PGLITE_RUNTIME_FROM_LIBDIR);
    snprintf(probe, sizeof probe, "%s/pglite", cand);
    struct stat st;
    if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(g_tree, sizeof g_tree, "%s", cand);
}

const char *pglite_installed_runtime_tree(void) {
    pthread_once(&g_once, find_tree);
    return g_tree;
}
