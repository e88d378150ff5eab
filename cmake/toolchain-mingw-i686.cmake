# Cross compiling tessera for 32-bit Windows with mingw-w64 (Debian:
# gcc-mingw-w64-i686), the tests run under wine's 32-bit loader
# (docs/windows.md):
#
#   cmake -S . -B build/win32 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-i686.cmake
#   cmake --build build/win32 -j2 && ctest --test-dir build/win32 --output-on-failure
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86)
set(TSR_MINGW_TRIPLE i686-w64-mingw32)

include(${CMAKE_CURRENT_LIST_DIR}/mingw-common.cmake)

# Debian's wine64 runs 64-bit programs only; the 32-bit loader is the
# wine32:i386 package (i386 multiarch; scripts/deps.sh windows installs
# it), at /usr/lib/wine/wine.  Elsewhere `wine` on the PATH, which must
# then run 32-bit programs.  Without wine the build still works and ctest
# says the emulator is missing.
find_program(TSR_WINE NAMES wine HINTS /usr/lib/wine /opt/wine-stable/bin /opt/wine-devel/bin)
if(TSR_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TSR_WINE})
endif()
