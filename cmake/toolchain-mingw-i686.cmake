# Cross compiling tessera for 32-bit Windows with mingw-w64 (Debian:
# gcc-mingw-w64-i686).  scripts/test.sh builds it (compile and link) but
# does not run it: Debian's wine64 runs 64-bit programs only (the 32-bit
# loader is the wine32 package, i386 multiarch).  With a wine that runs
# 32-bit programs, set CMAKE_CROSSCOMPILING_EMULATOR to it and ctest runs
# the same tests as in the 64-bit build.
#
#   cmake -S . -B build/win32 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-i686.cmake
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86)
set(TSR_MINGW_TRIPLE i686-w64-mingw32)

find_program(CMAKE_C_COMPILER NAMES ${TSR_MINGW_TRIPLE}-gcc-win32 ${TSR_MINGW_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${TSR_MINGW_TRIPLE}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${TSR_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
