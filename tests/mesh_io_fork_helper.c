/* mesh_io_fork_helper.c: a fork handler of the program's that runs
 * before tessera's, in the forking thread, reads into blocks on pages
 * meshing made read-only for the fork (mesh_io_early.c).  Linked to the
 * override, TESSERA_MESH=on.  The read family must neither wait for a
 * fence only this thread can lower (a hang: an alarm ends the process)
 * nor fail.  Prints "ran=R reads=N of M efault=E"; exit status 0 when the
 * handler ran once and every read came back. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tessera.h"

#define COUNT 60000
#define KEEP 12

void early_targets(unsigned char **blocks, int count, int fd);
extern int early_ran, early_reads, early_efaults;

int main(void) {
  static unsigned char *all[COUNT], *kept[COUNT];
  int n = 0;
  alarm(20);
  for (int i = 0; i < COUNT; i++)
    if ((all[i] = malloc(64)) == NULL) return 1;
  for (int i = 0; i < COUNT; i++) {
    if (i % KEEP == 0) kept[n++] = all[i];
    else free(all[i]);
  }
  tsr_collect();   /* their pages meshed: fork makes each read-only until the child has its own */
  tsr_pins_t fig;
  tsr_pins(&fig, NULL, 0);
  int fds[2];
  static char bytes[COUNT / KEEP + 1];
  if (pipe(fds) != 0 || write(fds[1], bytes, sizeof bytes) != (ssize_t)sizeof bytes) return 1;
  early_targets(kept, n, fds[0]);
  pid_t child = fork();
  if (child == 0) _exit(0);
  if (child < 0 || waitpid(child, NULL, 0) != child) return 1;
  printf("ran=%d reads=%d of %d efault=%d meshed=%llu\n", early_ran, early_reads, n, early_efaults,
         (unsigned long long)fig.meshed_pages);
  return early_ran == 1 && early_reads == n && fig.meshed_pages > 0 ? 0 : 1;
}
