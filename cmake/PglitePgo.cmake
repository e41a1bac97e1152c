# PglitePgo.cmake: profile-guided optimisation of pglite.wasm's generated
# code (PGLITE_WASM_PGO, cmake/PgliteRuntime.cmake; docs/performance.md has
# what it gives).
#
#   0. pglite_wasm_build translates the module and writes its header, the
#      one pglite_host uses (cmake/PgliteRuntime.cmake).
#   1. pglite_pgo_instrument compiles it instrumented (clang
#      -fprofile-instr-generate), unless the profile is cached; if it is,
#      the optimised module of step 4 at once, beside the side modules.
#   2. The trainer is bench/sqlsuite.c linked against pglite_host, that
#      instrumented module and clang's profile runtime.
#   3. tools/build/train-profile.py links and runs it on the SQL speed suite
#      (../shared/bench/sql, else bench/gen-suite.py's) and merges the
#      counts; the profile is cached by what it is trained from (known
#      before anything is compiled: with it cached, steps 1-3 do nothing).
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
set(_pgo_stamp "${_pgo_dir}/instrumented.stamp")
set(_pgo_instr_dir "${PGLITE_RUNTIME_DIR}/wasm-instr")

# The suite it is trained on.
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

# 2. The trainer's own code; train-profile.py links it with the host, the
#    instrumented module (not pglite_core, which brings the optimised
#    module the trainer is the input of) and clang's profile runtime.
add_library(pglite_pgo_trainer OBJECT "${PROJECT_SOURCE_DIR}/bench/sqlsuite.c")
target_include_directories(pglite_pgo_trainer PRIVATE "${PROJECT_SOURCE_DIR}/include")
list(TRANSFORM CMAKE_DL_LIBS PREPEND "-l" OUTPUT_VARIABLE _pgo_dl)
set(_pgo_instrument_args
  --suite-dir "${_pgo_suite}" --profdata "${PGLITE_LLVM_PROFDATA}"
  --cache-dir "${PGLITE_CACHE_DIR}" --instrumented "${_pgo_instr_dir}/libpglite_wasm.a"
  ::build-module:: ${PGLITE_BUILD_MODULE} --wasm "${PGLITE_WASM}" --name pglite
                   --out-dir "${_pgo_instr_dir}" --host-crc32c --profile-generate
                   ${PGLITE_WASM_TRANSLATION_ARGS})
set(_pgo_optimised_args --host-crc32c ${PGLITE_WASM_LTO_ARGS} ${PGLITE_WASM_TRANSLATION_ARGS})
# (into step 4's directory: step 4 then finds it in the cache and installs
# the same files again, and no second copy lies in the build tree)
set(_pgo_optimised_cmd ${PGLITE_BUILD_MODULE} --wasm "${PGLITE_WASM}" --name pglite
                       --out-dir "${PGLITE_RUNTIME_DIR}/wasm-pgo" ${_pgo_optimised_args})
set(_pgo_train_args ${_pgo_instrument_args}
  ::objcopy:: ${PGLITE_LINKED_OBJCOPY} ${_pglite_guest_text}
  ::link:: "${CMAKE_C_COMPILER}" "$<TARGET_OBJECTS:pglite_pgo_trainer>" -Wl,--start-group
           "$<TARGET_FILE:pglite_host>" @INSTRUMENTED@
           "${PGLITE_WASM_DIR}/libinitdb_wasm_linked.a" "${PGLITE_WASM_DIR}/libpg_dump_wasm_linked.a"
           "${PGLITE_RUNTIME_DIR}/side/libsidemodules_wasm.a" -Wl,--end-group
           "${PGLITE_PROFILE_RT}" -Wl,-u,__llvm_profile_runtime
           -lm -pthread ${_pgo_dl} -lssl -lcrypto -larchive -o @OUT@)
set(_pgo_train_depends "${_pglite_tools}/train-profile.py" "${_pglite_tools}/build-module.py"
    "${_pglite_tools}/wasmfile.py" "${PGLITE_WASM}" "${PGLITE_WASM_DIR}/pglite.h"
    ${_pgo_suite_files})

# 1. The instrumented module (clang -fprofile-instr-generate), unless the
#    profile is cached, beside the side modules, which the trainer links.
#    With the profile cached, the optimised module instead (into the
#    module cache, where step 4 finds it): it need not wait for the rest.
add_custom_command(
  OUTPUT "${_pgo_stamp}"
  ${_pgo_suite_cmd}
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/train-profile.py"
          --instrument-only "${_pgo_stamp}" ${_pgo_instrument_args}
          ::optimised:: ${_pgo_optimised_cmd}
  DEPENDS ${_pgo_train_depends}
  COMMENT "Compiling pglite.wasm instrumented, or optimised if its profile is cached"
  VERBATIM)
add_custom_target(pglite_pgo_instrument DEPENDS "${_pgo_stamp}")
add_dependencies(pglite_pgo_instrument pglite_wasm_build)

# 3. The profile: cached, or the trainer linked and run on the SQL suite
#    (../shared/bench/sql, else bench/gen-suite.py's).
add_custom_command(
  OUTPUT "${_pgo_profile}"
  ${_pgo_suite_cmd}
  COMMAND "${Python3_EXECUTABLE}" "${_pglite_tools}/train-profile.py"
          --out "${_pgo_profile}" ${_pgo_train_args}
  DEPENDS ${_pgo_train_depends} "${_pgo_stamp}" pglite_host pglite_pgo_trainer
          "$<TARGET_OBJECTS:pglite_pgo_trainer>"
  COMMENT "The profile of pglite.wasm: cached in ${PGLITE_CACHE_DIR}, or trained on the SQL suite"
  VERBATIM)
add_custom_target(pglite_pgo_profile DEPENDS "${_pgo_profile}")
add_dependencies(pglite_pgo_profile pglite_runtime pglite_pgo_instrument pglite_host
                 pglite_pgo_trainer initdb_wasm_build pg_dump_wasm_build sidemodules_wasm_build)

# 4. The optimised module.
pglite_wasm_module(pglite "${PGLITE_WASM}" TARGET pglite_pgo OUT_DIR "${PGLITE_RUNTIME_DIR}/wasm-pgo"
                   BUILD_ARGS --profile-use "${_pgo_profile}" ${_pgo_optimised_args})
add_custom_command(
  OUTPUT "${PGLITE_RUNTIME_DIR}/wasm-pgo/libpglite_wasm.a" APPEND
  DEPENDS "${_pgo_profile}")
add_dependencies(pglite_pgo_wasm_build pglite_pgo_profile)

set(PGLITE_WASM_PGLITE_LINKED "${PGLITE_RUNTIME_DIR}/wasm-pgo/libpglite_wasm_linked.a")
set(PGLITE_WASM_PGLITE_BUILD pglite_pgo_wasm_build)
set_target_properties(pglite_wasm PROPERTIES IMPORTED_LOCATION "${PGLITE_WASM_PGLITE_LINKED}")
add_dependencies(pglite_wasm pglite_pgo_wasm_build)
