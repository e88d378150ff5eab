# mingw-common.cmake: what both mingw-w64 toolchain files set once they
# have named TSR_MINGW_TRIPLE: the compilers (the win32 thread model,
# Debian's default alternative: tessera uses Windows threads directly and
# needs no winpthreads DLL) and where the target's headers and libraries are.
find_program(CMAKE_C_COMPILER NAMES ${TSR_MINGW_TRIPLE}-gcc-win32 ${TSR_MINGW_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${TSR_MINGW_TRIPLE}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${TSR_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
