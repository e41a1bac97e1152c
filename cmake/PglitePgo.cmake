# PglitePgo.cmake: profile-guided optimisation of pglite.wasm's generated
# code (PGLITE_WASM_PGO, cmake/PgliteRuntime.cmake; docs/performance.md has
# what it gives).
#
#   1. pglite_wasm_build compiles the module instrumented (clang
#      -fprofile-instr-generate); its header is the one pglite_host uses.
#   2. pglite_pgo_train is bench/sqlsuite.c linked against pglite_host,
#      that instrumented module and clang's profile runtime.
#   3. tools/build/train-profile.py runs it on the SQL speed suite
#      (../shared/bench/sql, else bench/gen-suite.py's) and merges the
#      counts; the profile is cached by what it was trained from.
#   4. pglite_pgo_wasm_build compiles the module with that profile
#      (build-module.py --profile-use: the profile's content is part of the
#      cache key) into runtime/wasm-pgo/, and pglite_wasm, which every
#      program links, is pointed at it.
#
# Sets PGLITE_WASM_PGLITE_LINKED and PGLITE_WASM_PGLITE_BUILD: the archive
# of pglite.wasm that is linked, and the target that makes it.

set(PGLITE_WASM_PGLITE_LINKED "${PGLITE_WASM_DIR}/libpglite_wasm_linked.a")
set(PGLITE_WASM_PGLITE_BUILD pglite_wasm_build)
if(NOT PGLITE_WASM_PGO)
  return()
endif()

set(_pgo_dir "${PGLITE_RUNTIME_DIR}/pgo")
set(_pgo_profile "${_pgo_dir}/pglite.profdata")

# 2. The trainer: the host and the instrumented module (not pglite_core,
#    which brings the optimised module the trainer is the input of).
add_executable(pglite_pgo_train "${PROJECT_SOURCE_DIR}/bench/sqlsuite.c")
target_include_directories(pglite_pgo_train PRIVATE "${PROJECT_SOURCE_DIR}/include")
set(_pgo_archives
  "$<TARGET_FILE:pglite_host>"
  "${PGLITE_WASM_DIR}/libpglite_wasm_linked.a"
  "${PGLITE_WASM_DIR}/libinitdb_wasm_linked.a"
  "${PGLITE_WASM_DIR}/libpg_dump_wasm_linked.a"
  "${PGLITE_RUNTIME_DIR}/side/libsidemodules_wasm.a")
target_link_libraries(pglite_pgo_train PRIVATE
  ${_pgo_archives} ${_pgo_archives} "${PGLITE_PROFILE_RT}"
  m Threads::Threads ${CMAKE_DL_LIBS} ssl crypto archive)
target_link_options(pglite_pgo_train PRIVATE "LINKER:-u,__llvm_profile_runtime")
set_target_properties(pglite_pgo_train PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${_pgo_dir}")
add_dependencies(pglite_pgo_train pglite_host pglite_wasm_build initdb_wasm_build
  pg_dump_wasm_build sidemodules_wasm_build)

# 3. The profile.
set(_pgo_shared "${PROJECT_SOURCE_DIR}/../shared/bench/sql")
if(EXISTS "${_pgo_shared}/benchmark1.sql")
  get_filename_component(_pgo_suite "${_pgo_shared}" ABSOLUTE)
  file(GLOB _pgo_suite_files "${_pgo_suite}/benchmark*.sql")
  set(_pgo_suite_cmd "")
else()
  set(_pgo_suite "${_pgo_dir}/sql")
  set(_pgo_suite_files "${PROJECT_SOURCE_DIR}/bench/gen-suite.py")
  set(_pgo_suite_cmd COMMAND "${Python3_EXECUTABLE}" "${PROJECT_SOURCE_DIR}/bench/gen-suite.py"
                             "${_pgo_suite}")
endif()
add_custom_command(
  OUTPUT "${_pgo_profile}"
  ${_pgo_suite_cmd}
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/train-profile.py"
          --trainer "$<TARGET_FILE:pglite_pgo_train>"
          --instrumented "${PGLITE_WASM_DIR}/libpglite_wasm.a"
          --suite-dir "${_pgo_suite}" --profdata "${PGLITE_LLVM_PROFDATA}"
          --cache-dir "${PGLITE_CACHE_DIR}" --out "${_pgo_profile}"
  DEPENDS pglite_pgo_train "${_pglite_tools}/train-profile.py" ${_pgo_suite_files}
          "${PGLITE_WASM_DIR}/libpglite_wasm.a"
  COMMENT "Training the profile of pglite.wasm on the SQL suite (cached in ${PGLITE_CACHE_DIR})"
  VERBATIM)
add_custom_target(pglite_pgo_profile DEPENDS "${_pgo_profile}")
add_dependencies(pglite_pgo_profile pglite_runtime)

# 4. The optimised module, after every other (one at a time).
pglite_wasm_module(pglite "${PGLITE_WASM}" TARGET pglite_pgo OUT_DIR "${PGLITE_RUNTIME_DIR}/wasm-pgo"
                   BUILD_ARGS --host-crc32c --profile-use "${_pgo_profile}" ${PGLITE_WASM_LTO_ARGS}
                              ${PGLITE_WASM_TRANSLATION_ARGS})
add_custom_command(
  OUTPUT "${PGLITE_RUNTIME_DIR}/wasm-pgo/libpglite_wasm.a" APPEND
  DEPENDS "${_pgo_profile}")
add_dependencies(pglite_pgo_wasm_build pglite_pgo_profile sidemodules_wasm_build)

set(PGLITE_WASM_PGLITE_LINKED "${PGLITE_RUNTIME_DIR}/wasm-pgo/libpglite_wasm_linked.a")
set(PGLITE_WASM_PGLITE_BUILD pglite_pgo_wasm_build)
set_target_properties(pglite_wasm PROPERTIES IMPORTED_LOCATION "${PGLITE_WASM_PGLITE_LINKED}")
add_dependencies(pglite_wasm pglite_pgo_wasm_build)
