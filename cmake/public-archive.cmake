# cmake -DAR=ar -DLD=ld -DOBJCOPY=objcopy -DOUT=libx.a -DLIBS="a.a;b.a"
#       -P public-archive.cmake
# libpglite.a with the public API only, as the shared library has it
# (pglite.map): every member of LIBS linked into one relocatable object
# (ld -r), then every global symbol but pglite_* made local (objcopy), and
# that object archived alone. A program may then define its own vfs_new,
# server_start or wire_put and still link statically; the core <-> module
# cycles are already resolved inside the object.
set(obj "${OUT}.o")
file(REMOVE "${obj}" "${OUT}.tmp")
execute_process(COMMAND "${LD}" -r -o "${obj}" --whole-archive ${LIBS} --no-whole-archive
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ld -r of ${LIBS} failed")
endif()
execute_process(COMMAND "${OBJCOPY}" --wildcard "--keep-global-symbol=pglite_*" "${obj}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "objcopy: hiding the internal symbols of ${obj} failed")
endif()
execute_process(COMMAND "${AR}" rcs "${OUT}.tmp" "${obj}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ar: writing ${OUT} failed")
endif()
file(RENAME "${OUT}.tmp" "${OUT}")
file(REMOVE "${obj}")
