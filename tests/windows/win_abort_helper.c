/* win_abort_helper.c: a double free under the default TESSERA_ON_ERROR
 * (abort).  ctest passes it when tessera's message names the block and
 * fails it when the second free returns (tests/windows/CMakeLists.txt). */
#include <stdio.h>
#include <tessera.h>

int main(void) {
  void *p = tsr_malloc(40);
  printf("block %p\n", p);
  fflush(stdout);
  tsr_free(p);
  tsr_free(p);
  printf("the second free returned\n");
  return 0;
}
