/* Where an installed libpglite finds its runtime tree: force-included into
 * the installed library's objects, whose PGLITE_RUNTIME_TREE is
 * pglite_installed_runtime_tree() (see cmake/PgliteInstall.cmake). */
#ifndef PGLITE_INSTALL_RUNTIME_TREE_H
#define PGLITE_INSTALL_RUNTIME_TREE_H
const char *pglite_installed_runtime_tree(void);
#endif
