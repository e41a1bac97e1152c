# PgliteRuntime.cmake: the pinned PGlite runtime, fetched, unpacked and
# compiled to native code.
#
# Products (all under ${CMAKE_BINARY_DIR}/runtime):
#   npm/<pkg>/package/...      the npm packages of runtime/runtime.lock
#   tree/pglite/...            the read-only tree from pglite.data (guest /pglite)
#   wasm/lib{pglite,initdb}_wasm.a, wasm/{pglite,initdb}.h
#                              the wasm modules compiled by wasm2c + cc
#
# Targets:
#   pglite_runtime             fetch + unpack (in ALL)
#   pglite_wasm, initdb_wasm   IMPORTED static libraries (include dir: wasm/)
#   pglite_runtime_paths       INTERFACE: PGLITE_RUNTIME_TREE, PGLITE_RUNTIME_DIST
#
# The compiled modules are cached outside the build tree (PGLITE_CACHE_DIR),
# keyed by content; the commands rerun only when runtime.lock or a build
# script changes, and then normally hit the cache.

find_package(Python3 REQUIRED COMPONENTS Interpreter)
find_program(PGLITE_WASM2C wasm2c REQUIRED)
find_program(PGLITE_BASH bash REQUIRED)

cmake_host_system_information(RESULT _pglite_ncpu QUERY NUMBER_OF_LOGICAL_CORES)
if(NOT _pglite_ncpu OR _pglite_ncpu LESS 1)
  set(_pglite_ncpu 1)
endif()

if(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
  set(_pglite_cache_default "$ENV{XDG_CACHE_HOME}/pglite")
else()
  set(_pglite_cache_default "$ENV{HOME}/.cache/pglite")
endif()

set(PGLITE_CACHE_DIR "${_pglite_cache_default}" CACHE PATH
    "Cache of compiled wasm modules (content-keyed; safe to delete)")
# How the generated code reaches linear memory (tools/build/build-module.py
# MEMORY_ACCESS; part of the cache key). segue, the fastest (the base in
# the gs segment: docs/performance.md), needs x86-64 and clang for the main
# modules; elsewhere the base is read once per function (hoisted).
# clang 19 first (Debian 12's newest, clang-19): its code for pglite.wasm
# runs the SQL suite in 0.96-0.98 of clang 14's time, the range scans in
# 0.91-0.95 (script 4; docs/performance.md).
find_program(PGLITE_CLANG NAMES clang-19 clang clang-14)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND PGLITE_CLANG)
  set(_pglite_access_default segue)
else()
  set(_pglite_access_default hoisted)
endif()
set(PGLITE_WASM_MEMORY_ACCESS "${_pglite_access_default}" CACHE STRING
    "Linear-memory access of the generated code: wasm2c, no-barrier, hoisted or segue")
if(PGLITE_WASM_MEMORY_ACCESS STREQUAL "segue")
  if(NOT PGLITE_CLANG)
    message(FATAL_ERROR "PGLITE_WASM_MEMORY_ACCESS=segue needs clang (apt-get install clang-19)")
  endif()
  set(_pglite_wasm_cc_default "${PGLITE_CLANG}")
  # clang -O2 compiles pglite.wasm's units in less time than clang -O1,
  # and runs faster (docs/performance.md).
  set(_pglite_wasm_cflags_default "-O2")
else()
  set(_pglite_wasm_cc_default "${CMAKE_C_COMPILER}")
  # -O1 for gcc: on this project's 2-core machines -O2 costs 633 s of
  # compiler CPU for pglite.wasm against 388 s at -O1, for about 7 %.
  set(_pglite_wasm_cflags_default "-O1")
endif()
set(PGLITE_WASM_CC "${_pglite_wasm_cc_default}" CACHE STRING
    "Compiler of the wasm2c output of pglite/initdb/pg_dump (part of the cache key)")
set(PGLITE_WASM_CFLAGS "${_pglite_wasm_cflags_default}" CACHE STRING
    "Optimisation flags for the wasm2c output of pglite/initdb/pg_dump (part of the cache key)")
set(PGLITE_SIDE_CFLAGS "-O2" CACHE STRING
    "Optimisation flags for the wasm2c output of the side modules (part of the cache key)")
# clang where there is one: it compiles the side modules' generated C in
# less time than gcc (103 against 121 s for the 69 of them on 2 cores).
if(PGLITE_CLANG)
  set(_pglite_side_cc_default "${PGLITE_CLANG}")
else()
  set(_pglite_side_cc_default "${CMAKE_C_COMPILER}")
endif()
set(PGLITE_SIDE_CC "${_pglite_side_cc_default}" CACHE STRING
    "Compiler of the wasm2c output of the side modules (part of the cache key)")
# LLVM tools of the compiler's own version (a profile written by clang
# 19's runtime is read by llvm-profdata 19; lld links its ThinLTO bitcode):
# the ones the driver runs, else those on the PATH.
function(_pglite_llvm_tool var tool)
  if(NOT DEFINED ${var} AND PGLITE_WASM_CC MATCHES "clang")
    execute_process(COMMAND "${PGLITE_WASM_CC}" -print-prog-name=${tool}
                    OUTPUT_VARIABLE path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(IS_ABSOLUTE "${path}" AND EXISTS "${path}")
      set(${var} "${path}" CACHE FILEPATH "${tool} of PGLITE_WASM_CC's LLVM")
    endif()
  endif()
  find_program(${var} NAMES ${tool})
endfunction()
# Profile-guided optimisation of pglite.wasm (clang only; cmake/PglitePgo.cmake):
# needs llvm-profdata and clang's profile runtime.
_pglite_llvm_tool(PGLITE_LLVM_PROFDATA llvm-profdata)
set(_pglite_pgo_default OFF)
if(PGLITE_WASM_CC MATCHES "clang" AND PGLITE_LLVM_PROFDATA)
  execute_process(COMMAND "${PGLITE_WASM_CC}" -print-file-name=libclang_rt.profile-x86_64.a
                  OUTPUT_VARIABLE PGLITE_PROFILE_RT OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  if(IS_ABSOLUTE "${PGLITE_PROFILE_RT}" AND EXISTS "${PGLITE_PROFILE_RT}")
    set(_pglite_pgo_default ON)
  endif()
endif()
option(PGLITE_WASM_PGO "Profile-guided optimisation of pglite.wasm, trained on the SQL suite"
       ${_pglite_pgo_default})
if(PGLITE_WASM_PGO AND NOT _pglite_pgo_default)
  message(FATAL_ERROR "PGLITE_WASM_PGO needs PGLITE_WASM_CC to be clang, llvm-profdata and "
                      "clang's profile runtime (apt-get install llvm-19 libclang-rt-19-dev)")
endif()
# Link-time optimisation of pglite.wasm's units together (ThinLTO: clang,
# and lld for the partial link; docs/performance.md).
_pglite_llvm_tool(PGLITE_LD_LLD ld.lld)
set(_pglite_lto_default OFF)
if(PGLITE_WASM_CC MATCHES "clang" AND PGLITE_LD_LLD)
  set(_pglite_lto_default ON)
endif()
option(PGLITE_WASM_LTO "Link-time optimisation of pglite.wasm (clang and lld)" ${_pglite_lto_default})
if(PGLITE_WASM_LTO AND NOT _pglite_lto_default)
  message(FATAL_ERROR "PGLITE_WASM_LTO needs PGLITE_WASM_CC to be clang and lld's ld.lld "
                      "(apt-get install clang-19 lld-19)")
endif()
set(PGLITE_WASM_LTO_ARGS "")
if(PGLITE_WASM_LTO)
  set(PGLITE_WASM_LTO_ARGS --lto)
endif()
# The side modules (compiled by PGLITE_SIDE_CC) share the main
# module's memory without depending on gs: hoisted when it is segue.
if(PGLITE_WASM_MEMORY_ACCESS STREQUAL "segue")
  set(_pglite_side_access hoisted)
else()
  set(_pglite_side_access "${PGLITE_WASM_MEMORY_ACCESS}")
endif()
set(PGLITE_WASM_UNITS 8 CACHE STRING
    "Translation units the function bodies of a module are split into")
set(PGLITE_WASM_JOBS ${_pglite_ncpu} CACHE STRING
    "Parallel compile jobs for one wasm module")

set(PGLITE_RUNTIME_DIR "${CMAKE_BINARY_DIR}/runtime")
set(PGLITE_NPM_DIR "${PGLITE_RUNTIME_DIR}/npm")
set(PGLITE_DIST_DIR "${PGLITE_NPM_DIR}/pglite/package/dist")
set(PGLITE_TOOLS_DIST_DIR "${PGLITE_NPM_DIR}/pglite-tools/package/dist")
set(PGLITE_WASM_DIR "${PGLITE_RUNTIME_DIR}/wasm")
set(PGLITE_RUNTIME_TREE "${PGLITE_RUNTIME_DIR}/tree" CACHE PATH
    "Host directory whose pglite/ subdirectory is the guest's /pglite (tests, tools)")
# wasm2c's reference runtime (wasm_rt_* functions), for whoever needs it.
set(PGLITE_WASM_RT_IMPL "/usr/share/wabt/wasm2c/wasm-rt-impl.c")

set(_pglite_lock "${PROJECT_SOURCE_DIR}/runtime/runtime.lock")
set(_pglite_tools "${PROJECT_SOURCE_DIR}/tools/build")
set(_pglite_npm_stamp "${PGLITE_RUNTIME_DIR}/npm.stamp")
set(_pglite_tree_stamp "${PGLITE_RUNTIME_DIR}/tree.stamp")

file(MAKE_DIRECTORY "${PGLITE_WASM_DIR}" "${PGLITE_RUNTIME_DIR}/npm")

# 1. npm packages (checked against runtime.lock's sha512).
add_custom_command(
  OUTPUT "${_pglite_npm_stamp}"
  COMMAND "${PGLITE_BASH}" "${_pglite_tools}/fetch-runtime.sh" "${_pglite_lock}" "${PGLITE_NPM_DIR}"
  COMMAND "${CMAKE_COMMAND}" -E touch "${_pglite_npm_stamp}"
  DEPENDS "${_pglite_lock}" "${_pglite_tools}/fetch-runtime.sh"
  COMMENT "Fetching the pinned PGlite runtime (runtime/runtime.lock)"
  VERBATIM)

# 2. The read-only file tree from pglite.data.
add_custom_command(
  OUTPUT "${_pglite_tree_stamp}"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/unpack-data.py"
          "${PGLITE_DIST_DIR}/pglite.js" "${PGLITE_DIST_DIR}/pglite.data" "${PGLITE_RUNTIME_TREE}"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/unpack-extensions.py"
          "${PGLITE_DIST_DIR}" "${PGLITE_RUNTIME_TREE}"
          "${PGLITE_NPM_DIR}/pglite-pgvector/package/dist/vector.tar.gz"
  COMMAND "${CMAKE_COMMAND}" -E touch "${_pglite_tree_stamp}"
  DEPENDS "${_pglite_npm_stamp}" "${_pglite_tools}/unpack-data.py"
          "${_pglite_tools}/unpack-extensions.py"
  COMMENT "Unpacking pglite.data into ${PGLITE_RUNTIME_TREE}"
  VERBATIM)
# With Makefile generators a custom command runs in every target that
# depends on its output, so each shared output gets one owning target and
# its users are ordered after that target (else e.g. the fetch runs twice
# at once under -j).
add_custom_target(pglite_npm DEPENDS "${_pglite_npm_stamp}")
add_custom_target(pglite_runtime ALL DEPENDS "${_pglite_tree_stamp}")
add_dependencies(pglite_runtime pglite_npm)

# 2b. The runtime's identity for C code (runtime_version.h in the runtime
#     directory): the pinned package version and integrity, and the
#     PostgreSQL version read from pglite.wasm. Anything that depends on the
#     runtime version (the template key, --version, tests of server_version)
#     uses these, so a runtime bump is the one edit of runtime.lock.
set(PGLITE_RUNTIME_VERSION_H "${PGLITE_RUNTIME_DIR}/runtime_version.h")
add_custom_command(
  OUTPUT "${PGLITE_RUNTIME_VERSION_H}"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/runtime-version.py"
          "${_pglite_lock}" "${PGLITE_NPM_DIR}" "${PGLITE_RUNTIME_VERSION_H}"
  DEPENDS "${_pglite_npm_stamp}" "${_pglite_lock}" "${_pglite_tools}/runtime-version.py"
  COMMENT "Reading the runtime's versions (runtime/runtime.lock, pglite.wasm)"
  VERBATIM)
add_custom_target(pglite_runtime_version DEPENDS "${PGLITE_RUNTIME_VERSION_H}")
add_dependencies(pglite_runtime_version pglite_npm)
add_dependencies(pglite_runtime pglite_runtime_version)

add_library(pglite_runtime_paths INTERFACE)
target_compile_definitions(pglite_runtime_paths INTERFACE
  "PGLITE_RUNTIME_TREE=\"${PGLITE_RUNTIME_TREE}\""
  "PGLITE_RUNTIME_DIST=\"${PGLITE_DIST_DIR}\"")

# 3. Compiled wasm modules.
#    pglite_wasm_module(<name> <wasm file> [TARGET t] [OUT_DIR d] [BUILD_ARGS ...]
#                       [RENAMES old=new ...]) -> IMPORTED target <t>_wasm
#    TARGET: the targets' prefix (default <name>: <name>_wasm_build,
#    <name>_wasm); OUT_DIR: default PGLITE_WASM_DIR; BUILD_ARGS: more
#    build-module.py arguments (the profile: cmake/PglitePgo.cmake);
#    RENAMES: an import the host defines under another name, where two
#    modules import one name with two signatures.
set(_pglite_prev_module_target "")
# Every module's generated code in one section, wasm_guest_text, whose
# bounds (__start_/__stop_wasm_guest_text) tell the engine's stop handler
# that a thread runs guest code and no host code (src/engine/wasm_rt.c).
set(_pglite_guest_text "")
foreach(sec .text .text.unlikely .text.hot .text.startup .text.exit
            .text.unlikely. .text.hot.) # (clang's names, with a profile)
  list(APPEND _pglite_guest_text --rename-section "${sec}=wasm_guest_text")
endforeach()
# (the same, to build-sidemodules.py for each side module's archive)

# build-module.py with the flags every main module shares.
set(PGLITE_BUILD_MODULE "${Python3_EXECUTABLE}" "${_pglite_tools}/build-module.py"
    --cache-dir "${PGLITE_CACHE_DIR}" --cc "${PGLITE_WASM_CC}"
    "--cflags=${PGLITE_WASM_CFLAGS}" --jobs "${PGLITE_WASM_JOBS}"
    --units "${PGLITE_WASM_UNITS}" --wasm2c "${PGLITE_WASM2C}"
    --memory-access "${PGLITE_WASM_MEMORY_ACCESS}"
    --ar "${CMAKE_AR}" --objcopy "${CMAKE_OBJCOPY}")
# What makes a module's archive the one linked (pglite_wasm_module).
set(PGLITE_LINKED_OBJCOPY "${CMAKE_OBJCOPY}" --redefine-sym memset=pgl_guest_memset)
function(pglite_wasm_module name wasm)
  cmake_parse_arguments(M "" "TARGET;OUT_DIR" "BUILD_ARGS;RENAMES" ${ARGN})
  if(NOT M_TARGET)
    set(M_TARGET ${name})
  endif()
  if(NOT M_OUT_DIR)
    set(M_OUT_DIR "${PGLITE_WASM_DIR}")
  endif()
  set(lib "${M_OUT_DIR}/lib${name}_wasm.a")
  set(hdr "${M_OUT_DIR}/${name}.h")
  # What is linked: the cached archive with the guest's memset routed to
  # the engine's pgl_guest_memset (large zero fills become madvise) and its
  # code in wasm_guest_text, made beside it so the cache entry itself is
  # never modified.
  set(linked "${M_OUT_DIR}/lib${name}_wasm_linked.a")
  set(renames "")
  foreach(r ${M_RENAMES})
    list(APPEND renames --redefine-sym "${r}")
  endforeach()
  add_custom_command(
    OUTPUT "${linked}"
    COMMAND ${PGLITE_LINKED_OBJCOPY} ${renames} ${_pglite_guest_text} "${lib}" "${linked}"
    DEPENDS "${lib}" "${CMAKE_CURRENT_LIST_FILE}"
    COMMENT "Routing ${name}'s memset to the engine"
    VERBATIM)
  add_custom_command(
    OUTPUT "${lib}" "${hdr}"
    COMMAND ${PGLITE_BUILD_MODULE} --wasm "${wasm}" --name "${name}" --out-dir "${M_OUT_DIR}"
            ${M_BUILD_ARGS}
    DEPENDS "${_pglite_npm_stamp}" "${wasm}" "${_pglite_tools}/build-module.py"
            "${_pglite_tools}/wasmfile.py"
    COMMENT "Compiling ${name}.wasm to native code (cached in ${PGLITE_CACHE_DIR})"
    VERBATIM)
  add_custom_target(${M_TARGET}_wasm_build DEPENDS "${lib}" "${hdr}" "${linked}")
  add_dependencies(${M_TARGET}_wasm_build pglite_npm)
  # One module at a time: each already uses PGLITE_WASM_JOBS compilers.
  if(_pglite_prev_module_target)
    add_dependencies(${M_TARGET}_wasm_build ${_pglite_prev_module_target})
  endif()
  set(_pglite_prev_module_target ${M_TARGET}_wasm_build PARENT_SCOPE)

  add_library(${M_TARGET}_wasm STATIC IMPORTED GLOBAL)
  set_target_properties(${M_TARGET}_wasm PROPERTIES
    IMPORTED_LOCATION "${linked}"
    INTERFACE_INCLUDE_DIRECTORIES "${PGLITE_RUNTIME_DIR}")
  add_dependencies(${M_TARGET}_wasm ${M_TARGET}_wasm_build)
endfunction()

# 3a. pglite.wasm as the host runs it: several instances, each a backend of
#     one cluster (tools/build/patch-sessions.py). getpid() becomes each
#     instance's own pid, kill() of another pid reaches the host, and the
#     latch wait blocks in the host's poll() instead of spinning. The points
#     are found by content; a runtime whose code has another shape stops the
#     build here, naming what it could not find. sessions.json records the
#     internal entry points (InitProcess, PostgresMain, ...) in the patched
#     module's numbering, which is wasm2c's (w2c_fN).
set(PGLITE_WASM "${PGLITE_RUNTIME_DIR}/pglite.wasm")
set(PGLITE_SESSIONS_JSON "${PGLITE_RUNTIME_DIR}/sessions.json")
add_custom_command(
  OUTPUT "${PGLITE_WASM}" "${PGLITE_SESSIONS_JSON}"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/patch-sessions.py"
          "${PGLITE_DIST_DIR}/pglite.wasm" "${PGLITE_WASM}" "${PGLITE_SESSIONS_JSON}"
  DEPENDS "${_pglite_npm_stamp}" "${_pglite_tools}/patch-sessions.py" "${_pglite_tools}/wasmfile.py"
  COMMENT "Patching pglite.wasm for many sessions"
  VERBATIM)
add_custom_target(pglite_patch DEPENDS "${PGLITE_WASM}" "${PGLITE_SESSIONS_JSON}")
add_dependencies(pglite_patch pglite_npm)
# Its CRC-32C is the host's (src/engine/crc32c.c). With PGLITE_WASM_PGO,
# pglite_wasm_build only translates it and writes its header (the same
# whatever the compiler's flags), and cmake/PglitePgo.cmake compiles it,
# instrumented unless the profile is cached, then optimised, and points
# pglite_wasm at the optimised archive. Its generated C is kept in
# runtime/c for those builds.
set(PGLITE_WASM_TRANSLATION_ARGS --translation-dir "${PGLITE_RUNTIME_DIR}/c")
if(PGLITE_WASM_PGO)
  add_custom_command(
    OUTPUT "${PGLITE_WASM_DIR}/pglite.h"
    COMMAND ${PGLITE_BUILD_MODULE} --wasm "${PGLITE_WASM}" --name pglite
            --out-dir "${PGLITE_WASM_DIR}" --host-crc32c ${PGLITE_WASM_TRANSLATION_ARGS}
            --translate-only
    DEPENDS "${_pglite_npm_stamp}" "${PGLITE_WASM}" "${_pglite_tools}/build-module.py"
            "${_pglite_tools}/wasmfile.py"
    COMMENT "Translating pglite.wasm to C"
    VERBATIM)
  add_custom_target(pglite_wasm_build DEPENDS "${PGLITE_WASM_DIR}/pglite.h")
  add_dependencies(pglite_wasm_build pglite_npm)
  set(_pglite_prev_module_target pglite_wasm_build)
  add_library(pglite_wasm STATIC IMPORTED GLOBAL)
  set_target_properties(pglite_wasm PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${PGLITE_RUNTIME_DIR}")
else()
  pglite_wasm_module(pglite "${PGLITE_WASM}"
                     BUILD_ARGS --host-crc32c ${PGLITE_WASM_LTO_ARGS} ${PGLITE_WASM_TRANSLATION_ARGS})
endif()
add_dependencies(pglite_wasm_build pglite_patch)
pglite_wasm_module(initdb "${PGLITE_DIST_DIR}/initdb.wasm")
# pg_dump of PostgreSQL 18 (@electric-sql/pglite-tools), a client program
# the engine runs beside the backends (src/client/dump.c).
# Its _localtime_js returns nothing (pglite.wasm's returns an i32): the host
# defines it apart (src/abi/host.c).
pglite_wasm_module(pg_dump "${PGLITE_TOOLS_DIST_DIR}/pg_dump.wasm"
                   RENAMES Z_envZ__localtime_js=Z_envZ__localtime_js_void)

# Side modules: every lib/postgresql/*.so of the tree (pglite.data's and the
# extension archives'), each compiled by build-module.py with the same cache.
set(PGLITE_SIDE_DIR "${PGLITE_RUNTIME_DIR}/side")
set(_pglite_side_lib "${PGLITE_SIDE_DIR}/libsidemodules_wasm.a")
set(_pglite_side_manifest "${PGLITE_SIDE_DIR}/MANIFEST")
add_custom_command(
  OUTPUT "${_pglite_side_lib}" "${_pglite_side_manifest}"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/build-sidemodules.py"
          --tree "${PGLITE_RUNTIME_TREE}" --out-dir "${PGLITE_SIDE_DIR}"
          --cache-dir "${PGLITE_CACHE_DIR}" --cc "${PGLITE_SIDE_CC}"
          "--cflags=${PGLITE_SIDE_CFLAGS}" --jobs "${PGLITE_WASM_JOBS}"
          --wasm2c "${PGLITE_WASM2C}" --ar "${CMAKE_AR}" --objcopy "${CMAKE_OBJCOPY}"
          --memory-access "${_pglite_side_access}" ${_pglite_guest_text}
  DEPENDS "${_pglite_tree_stamp}" "${_pglite_tools}/build-module.py"
          "${_pglite_tools}/build-sidemodules.py" "${CMAKE_CURRENT_LIST_FILE}"
  COMMENT "Compiling the side modules (plpgsql, snowball, encodings, extensions)"
  VERBATIM)
add_custom_target(sidemodules_wasm_build DEPENDS "${_pglite_side_lib}" "${_pglite_side_manifest}")
# Beside the main modules rather than after them: each alone leaves a core
# idle at times (wasm2c, the link, the largest unit's tail), and together
# they fill those (make -j; the profile's training waits for both).
add_dependencies(sidemodules_wasm_build pglite_runtime)
add_library(sidemodules_wasm STATIC IMPORTED GLOBAL)
set_target_properties(sidemodules_wasm PROPERTIES
  IMPORTED_LOCATION "${_pglite_side_lib}"
  INTERFACE_INCLUDE_DIRECTORIES "${PGLITE_RUNTIME_DIR}")
add_dependencies(sidemodules_wasm sidemodules_wasm_build)

# 4. C generated from the module headers (scripts owned by src/abi, src/engine):
#    gen/abi_invoke.c               invoke_* imports      (gen-invokes.py OUT HEADER...)
#    gen/engine_exports_<mod>.c     by-name export tables (gen-exports.py OUT MOD HEADER)
#    gen/engine_stack_pglite.c      stack-depth variables (gen-stack-limit.py OUT WASM)
set(PGLITE_GEN_DIR "${CMAKE_BINARY_DIR}/gen")
file(MAKE_DIRECTORY "${PGLITE_GEN_DIR}")
set(PGLITE_GEN_SOURCES "${PGLITE_GEN_DIR}/abi_invoke.c")
add_custom_command(
  OUTPUT "${PGLITE_GEN_DIR}/abi_invoke.c"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/gen-invokes.py"
          "${PGLITE_GEN_DIR}/abi_invoke.c"
          "${PGLITE_WASM_DIR}/pglite.h" "${PGLITE_WASM_DIR}/initdb.h"
          "${PGLITE_WASM_DIR}/pg_dump.h"
          --manifest "${_pglite_side_manifest}"
  DEPENDS "${_pglite_tools}/gen-invokes.py" "${PGLITE_WASM_DIR}/pglite.h"
          "${PGLITE_WASM_DIR}/initdb.h" "${PGLITE_WASM_DIR}/pg_dump.h" "${_pglite_side_manifest}"
  COMMENT "Generating invoke_* imports"
  VERBATIM)
if(EXISTS "${_pglite_tools}/gen-exports.py")
  foreach(mod pglite initdb pg_dump)
    add_custom_command(
      OUTPUT "${PGLITE_GEN_DIR}/engine_exports_${mod}.c"
      COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/gen-exports.py"
              "${PGLITE_GEN_DIR}/engine_exports_${mod}.c" ${mod} "${PGLITE_WASM_DIR}/${mod}.h"
      DEPENDS "${_pglite_tools}/gen-exports.py" "${PGLITE_WASM_DIR}/${mod}.h"
      COMMENT "Generating the export table of ${mod}"
      VERBATIM)
    list(APPEND PGLITE_GEN_SOURCES "${PGLITE_GEN_DIR}/engine_exports_${mod}.c")
  endforeach()
endif()

# Where pglite.wasm keeps PostgreSQL's stack-depth variables (src/engine/stack.c).
add_custom_command(
  OUTPUT "${PGLITE_GEN_DIR}/engine_stack_pglite.c"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/gen-stack-limit.py"
          "${PGLITE_GEN_DIR}/engine_stack_pglite.c" "${PGLITE_WASM}"
  DEPENDS "${_pglite_tools}/gen-stack-limit.py" "${_pglite_tools}/wasmfile.py" "${PGLITE_WASM_DIR}/pglite.h"
  COMMENT "Locating the stack-depth variables of pglite.wasm"
  VERBATIM)
list(APPEND PGLITE_GEN_SOURCES "${PGLITE_GEN_DIR}/engine_stack_pglite.c")

# Where pg_dump.wasm, a dynamically linked main module, expects its data,
# table and stack: the values its own Emscripten glue gives it.
add_custom_command(
  OUTPUT "${PGLITE_GEN_DIR}/engine_layout_pg_dump.c"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/gen-layout.py"
          "${PGLITE_GEN_DIR}/engine_layout_pg_dump.c" pg_dump
          "${PGLITE_TOOLS_DIST_DIR}/pg_dump.wasm" "${PGLITE_TOOLS_DIST_DIR}/pg_dump.cjs"
  DEPENDS "${_pglite_tools}/gen-layout.py" "${_pglite_tools}/wasmfile.py" "${_pglite_npm_stamp}"
  COMMENT "Reading the memory layout of pg_dump.wasm"
  VERBATIM)
list(APPEND PGLITE_GEN_SOURCES "${PGLITE_GEN_DIR}/engine_layout_pg_dump.c")

# The side-module registry and linker glue (src/abi/dylink.h).
add_custom_command(
  OUTPUT "${PGLITE_GEN_DIR}/abi_sidemodules.c"
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/gen-sidemodules.py"
          "${PGLITE_GEN_DIR}/abi_sidemodules.c" "${PGLITE_WASM}"
          "${PGLITE_WASM_DIR}/pglite.h" "${_pglite_side_manifest}"
          "${PGLITE_WASM_DIR}/pglite.h" "${PGLITE_WASM_DIR}/initdb.h"
          "${PROJECT_SOURCE_DIR}/src/abi/pgcompat.c"
  DEPENDS "${_pglite_tools}/gen-sidemodules.py" "${PGLITE_WASM_DIR}/pglite.h"
          "${PGLITE_WASM_DIR}/initdb.h" "${_pglite_side_manifest}"
          "${PROJECT_SOURCE_DIR}/src/abi/pgcompat.c"
  COMMENT "Generating the side-module registry"
  VERBATIM)
list(APPEND PGLITE_GEN_SOURCES "${PGLITE_GEN_DIR}/abi_sidemodules.c")
# One target owns the generated sources: pglite_host and pglite_install_objs
# both compile them, and without a common owner a parallel make runs each
# generator twice at once (two writers racing on the same temporary file).
# Its generators read what the runtime targets make (the tree, the module
# headers, the side-module manifest): after those targets, or its rules
# would run theirs a second time, at the same time.
add_custom_target(pglite_gen DEPENDS ${PGLITE_GEN_SOURCES})
add_dependencies(pglite_gen pglite_npm pglite_runtime pglite_wasm_build initdb_wasm_build
                 pg_dump_wasm_build sidemodules_wasm_build)
