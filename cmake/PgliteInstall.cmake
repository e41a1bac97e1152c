# The installable libpglite: `cmake --install build --prefix P` (or
# `make install PREFIX=P`) puts
#   P/include/pglite.h
#   P/lib/libpglite.so*      the public API only (pglite.map)
#   P/lib/libpglite.a        core + compiled modules as one object, pglite_* only
#   P/lib/pkgconfig/pglite.pc
#   P/lib/cmake/pglite/      pgliteConfig.cmake: pglite::pglite, pglite::pglite_static
#   P/share/pglite/runtime/  the read-only runtime tree (/pglite in the guest)
# Both libraries are the project's sources compiled once more so that they
# look for the runtime tree in the install, not in the build tree: beside
# the shared library (relocatable prefix), else at the configured prefix.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(PGLITE_INSTALL_RUNTIME "${CMAKE_INSTALL_DATADIR}/pglite/runtime")
file(RELATIVE_PATH _pglite_rt_from_lib "${CMAKE_INSTALL_FULL_LIBDIR}"
     "${CMAKE_INSTALL_FULL_DATADIR}/pglite/runtime")

add_library(pglite_install_objs OBJECT ${PGLITE_CORE_SOURCES} ${PGLITE_GEN_SOURCES}
            "${PROJECT_SOURCE_DIR}/src/client/install/runtime_tree.c")
add_dependencies(pglite_install_objs pglite_gen)
target_include_directories(pglite_install_objs PRIVATE
  "${PROJECT_SOURCE_DIR}/include" "${PROJECT_SOURCE_DIR}/src" "${PGLITE_RUNTIME_DIR}")
target_compile_definitions(pglite_install_objs PRIVATE
  "PGLITE_RUNTIME_TREE=pglite_installed_runtime_tree()"
  "PGLITE_RUNTIME_INSTALLED=\"${CMAKE_INSTALL_FULL_DATADIR}/pglite/runtime\""
  "PGLITE_RUNTIME_FROM_LIBDIR=\"${_pglite_rt_from_lib}\"")
target_compile_options(pglite_install_objs PRIVATE
  -include "${PROJECT_SOURCE_DIR}/src/client/install/runtime_tree.h")
add_dependencies(pglite_install_objs pglite_runtime ${PGLITE_WASM_PGLITE_BUILD} initdb_wasm_build pg_dump_wasm_build
  sidemodules_wasm_build)

set(_pglite_module_archives
  "${PGLITE_WASM_PGLITE_LINKED}"
  "${PGLITE_WASM_DIR}/libinitdb_wasm_linked.a"
  "${PGLITE_WASM_DIR}/libpg_dump_wasm_linked.a"
  "${PGLITE_RUNTIME_DIR}/side/libsidemodules_wasm.a")

# Shared: the objects plus the module archives, exporting pglite_* only.
add_library(pglite SHARED $<TARGET_OBJECTS:pglite_install_objs>)
target_link_libraries(pglite PRIVATE
  -Wl,--start-group ${_pglite_module_archives} -Wl,--end-group
  archive ssl crypto m Threads::Threads ${CMAKE_DL_LIBS}
  "-Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/pglite.map" -Wl,--no-undefined)
set_target_properties(pglite PROPERTIES
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  LINK_DEPENDS "${PROJECT_SOURCE_DIR}/cmake/pglite.map"
  LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/install-lib")
add_dependencies(pglite ${PGLITE_WASM_PGLITE_BUILD} initdb_wasm_build pg_dump_wasm_build sidemodules_wasm_build)

# Static: the objects and every module archive linked into one object that
# exports pglite_* only (public-archive.cmake), archived alone.
add_library(pglite_install_static STATIC $<TARGET_OBJECTS:pglite_install_objs>)
set_target_properties(pglite_install_static PROPERTIES
  ARCHIVE_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/install-lib/parts")
set(_pglite_static "${CMAKE_BINARY_DIR}/install-lib/libpglite.a")
add_custom_command(
  OUTPUT "${_pglite_static}"
  COMMAND "${CMAKE_COMMAND}" "-DAR=${CMAKE_AR}" "-DLD=${CMAKE_LINKER}"
          "-DOBJCOPY=${CMAKE_OBJCOPY}" "-DOUT=${_pglite_static}"
          "-DLIBS=$<TARGET_FILE:pglite_install_static>;${_pglite_module_archives}"
          -P "${PROJECT_SOURCE_DIR}/cmake/public-archive.cmake"
  DEPENDS pglite_install_static ${_pglite_module_archives}
          "${PROJECT_SOURCE_DIR}/cmake/public-archive.cmake"
  COMMENT "Linking libpglite.a (public symbols only)"
  VERBATIM)
add_custom_target(pglite_static_lib ALL DEPENDS "${_pglite_static}")
add_dependencies(pglite_static_lib ${PGLITE_WASM_PGLITE_BUILD} initdb_wasm_build pg_dump_wasm_build sidemodules_wasm_build)

# pkg-config and CMake package files, relative to where they are installed.
file(RELATIVE_PATH PGLITE_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
     "${CMAKE_INSTALL_PREFIX}")
file(RELATIVE_PATH PGLITE_CMAKE_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/cmake/pglite"
     "${CMAKE_INSTALL_PREFIX}")
configure_file(cmake/pglite.pc.in "${CMAKE_BINARY_DIR}/install-lib/pglite.pc" @ONLY)
configure_file(cmake/pgliteConfig.cmake.in "${CMAKE_BINARY_DIR}/install-lib/pgliteConfig.cmake"
               @ONLY)
write_basic_package_version_file("${CMAKE_BINARY_DIR}/install-lib/pgliteConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)

install(TARGETS pglite LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
install(FILES "${_pglite_static}" DESTINATION "${CMAKE_INSTALL_LIBDIR}")
install(FILES include/pglite.h DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${CMAKE_BINARY_DIR}/install-lib/pglite.pc"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
install(FILES "${CMAKE_BINARY_DIR}/install-lib/pgliteConfig.cmake"
              "${CMAKE_BINARY_DIR}/install-lib/pgliteConfigVersion.cmake"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/cmake/pglite")
install(DIRECTORY "${PGLITE_RUNTIME_TREE}/" DESTINATION "${PGLITE_INSTALL_RUNTIME}"
        USE_SOURCE_PERMISSIONS)
install(DIRECTORY examples/ DESTINATION "${CMAKE_INSTALL_DATADIR}/pglite/examples"
        FILES_MATCHING PATTERN "*.c")
