/* report_libc_helper.c: a program linked to the override (libtessera.so),
 * so that the C library's own blocks come from tessera too, for
 * test_report.c's check that the report at exit tells them from leaks.
 *
 *   TESSERA_TRACK=full TESSERA_REPORT=stderr report_libc_helper > file
 *
 * It leaves live one block from strdup called in leak_string and one of
 * 100 bytes from malloc in leak_block, and prints "ok" to stdout, a file
 * or a pipe: fully buffered, so the C library allocates a buffer for it,
 * which it keeps until the process ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_sites.h"

enum { LEAK_BLOCK_SIZE = 100 };

static void *leaked[2];

static TSR_ALLOC_FN void leak_string(void) {
  leaked[0] = strdup("tessera");
  TSR_KEEP(leaked[0]);
}

static TSR_ALLOC_FN void leak_block(void) {
  leaked[1] = malloc(LEAK_BLOCK_SIZE);
  TSR_KEEP(leaked[1]);
}

int main(void) {
  leak_string();
  leak_block();
  if (leaked[0] == NULL || leaked[1] == NULL) return 1;
  printf("ok\n");
  return 0;
}
