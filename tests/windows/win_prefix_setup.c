/* win_prefix_setup.c: the first program ctest starts under wine, alone,
 * so that wine creates its prefix (tests/windows/CMakeLists.txt). */
#include <stdio.h>

int main(void) {
  printf("wine prefix ready\n");
  return 0;
}
