/* test_win_names.c: include/tessera-malloc.h routes the program's own
 * malloc, free, ... to tessera by name, and leaves the C runtime's blocks
 * to tsr_crt_free. */
#include <direct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win_test.h"
#include <tessera-malloc.h>

static void standard_names_are_tessera(void) {
  char *p = malloc(100);
  CHECK(p != NULL && tsr_owns(p));
  p = realloc(p, 5000);
  CHECK(p != NULL && tsr_owns(p));
  CHECK(_msize(p) >= 5000);
  free(p);
  CHECK(!tsr_owns(p));   /* free() was tsr_free: the block is free now */
  int *z = calloc(10, sizeof(int));
  CHECK(z != NULL && tsr_owns(z) && z[9] == 0);
  free(z);
  void *a = _aligned_malloc(100, 4096);
  CHECK(a != NULL && tsr_owns(a) && ((uintptr_t)a & 4095) == 0);
  _aligned_free(a);
  char *s = strdup("tessera");
  CHECK(s != NULL && tsr_owns(s) && strcmp(s, "tessera") == 0);
  free(s);
  char *t = _strdup("x");
  CHECK(t != NULL && tsr_owns(t));
  free(t);
  char *u = strndup("abcdef", 3);
  CHECK(u != NULL && tsr_owns(u) && strcmp(u, "abc") == 0);
  free(u);
}

static void crt_blocks_go_back_to_the_crt(void) {
  char *cwd = _getcwd(NULL, 0);   /* allocated inside the C runtime */
  CHECK(cwd != NULL);
  CHECK(!tsr_owns(cwd));
  tsr_crt_free(cwd);
}

WT_MAIN(WT_CASE(standard_names_are_tessera), WT_CASE(crt_blocks_go_back_to_the_crt))
