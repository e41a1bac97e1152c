# cmake -DAR=ar -DOUT=libx.a -DLIBS="a.a;b.a" -P merge-archives.cmake
# One static archive holding every member of LIBS (ar's MRI script), so a
# program links libpglite.a alone; the linker rescans a single archive
# until no symbol is left, which the core <-> module cycles need.
set(script "CREATE ${OUT}.tmp\n")
foreach(lib IN LISTS LIBS)
  string(APPEND script "ADDLIB ${lib}\n")
endforeach()
string(APPEND script "SAVE\nEND\n")
file(WRITE "${OUT}.mri" "${script}")
file(REMOVE "${OUT}.tmp")
execute_process(COMMAND "${AR}" -M INPUT_FILE "${OUT}.mri" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "merging archives into ${OUT} failed")
endif()
file(RENAME "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.mri")
