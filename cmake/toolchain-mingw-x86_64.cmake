# Cross compiling tessera for 64-bit Windows with mingw-w64 (Debian:
# gcc-mingw-w64-x86-64), the tests run under wine (docs/windows.md):
#
#   cmake -S . -B build/win64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-x86_64.cmake
#   cmake --build build/win64 -j2 && ctest --test-dir build/win64 --output-on-failure
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(TSR_MINGW_TRIPLE x86_64-w64-mingw32)

# The win32 thread model of the compiler (Debian's default alternative):
# tessera uses Windows threads directly and needs no winpthreads DLL.
find_program(CMAKE_C_COMPILER NAMES ${TSR_MINGW_TRIPLE}-gcc-win32 ${TSR_MINGW_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${TSR_MINGW_TRIPLE}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${TSR_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the test programs through wine.  Debian 12's `wine` package
# gives /usr/bin/wine; with only wine64 installed the loader is
# /usr/lib/wine/wine64 (not on PATH).  Without wine the build still works
# and ctest says the emulator is missing.
find_program(TSR_WINE NAMES wine wine64 HINTS /usr/lib/wine /opt/wine-stable/bin /opt/wine-devel/bin)
if(TSR_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TSR_WINE})
endif()
