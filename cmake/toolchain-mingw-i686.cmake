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

include(${CMAKE_CURRENT_LIST_DIR}/mingw-common.cmake)
