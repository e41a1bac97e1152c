# The client API and the codec under AddressSanitizer and UBSan:
# integration/test_api_asan and unit/test_wire_asan are test_api.c and
# test_wire.c built with src/client/*.c and src/wire/wire.c instrumented,
# linked against the rest of the (uninstrumented) library, whose client
# and wire members are then never pulled in. Off with -DPGLITE_ASAN_TESTS=OFF.
option(PGLITE_ASAN_TESTS "Also run the API tests under AddressSanitizer" ON)
if(PGLITE_ASAN_TESTS AND BUILD_TESTING AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=address,undefined")
  check_c_source_compiles("int main(void) { return 0; }" PGLITE_HAVE_ASAN)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
endif()
if(PGLITE_ASAN_TESTS AND BUILD_TESTING AND PGLITE_HAVE_ASAN)
  file(GLOB _pglite_client_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/src/client/*.c")
  set(_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  foreach(t IN ITEMS integration/test_api unit/test_wire)
    get_filename_component(kind "${t}" DIRECTORY)
    get_filename_component(name "${t}" NAME)
    set(exe ${kind}_${name}_asan)
    add_executable(${exe} "${PROJECT_SOURCE_DIR}/tests/${t}.c" ${_pglite_client_sources}
                   "${PROJECT_SOURCE_DIR}/src/wire/wire.c")
    target_include_directories(${exe} PRIVATE "${CMOCKA_INCLUDE_DIR}")
    target_compile_options(${exe} PRIVATE ${PGLITE_WARNINGS} ${_san})
    target_link_options(${exe} PRIVATE ${_san})
    target_link_libraries(${exe} PRIVATE pglite_core "${CMOCKA_LIBRARY}")
    set_target_properties(${exe} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests")
    add_test(NAME ${t}_asan COMMAND ${exe})
    # The engine switches stacks for guest calls, which ASan warns about
    # once; leaks are checked at exit.
    set_tests_properties(${t}_asan PROPERTIES LABELS "${kind};asan"
      TIMEOUT ${PGLITE_INTEGRATION_TIMEOUT}
      ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0;UBSAN_OPTIONS=print_stacktrace=1")
  endforeach()
endif()
