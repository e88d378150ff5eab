# Cross compiling tessera for 64-bit Windows with mingw-w64 (Debian:
# gcc-mingw-w64-x86-64), the tests run under wine (docs/windows.md):
#
#   cmake -S . -B build/win64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-x86_64.cmake
#   cmake --build build/win64 -j2 && ctest --test-dir build/win64 --output-on-failure
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(TSR_MINGW_TRIPLE x86_64-w64-mingw32)

include(${CMAKE_CURRENT_LIST_DIR}/mingw-common.cmake)

# ctest runs the test programs through wine's 64-bit loader: Debian 12's
# wine64 package puts it at /usr/lib/wine/wine64 (not on PATH), next to
# the 32-bit one (wine32:i386), /usr/lib/wine/wine, which would hand a
# 64-bit program on to it; elsewhere it is `wine64` or `wine` on the PATH.
# Without wine the build still works and ctest says the emulator is
# missing.
find_program(TSR_WINE NAMES wine64 wine HINTS /usr/lib/wine /opt/wine-stable/bin /opt/wine-devel/bin)
if(TSR_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TSR_WINE})
endif()
