/* space_limit.c: how much live memory an allocator reaches in a capped
 * address space (issue 18, item 3).
 *
 *   space_limit SIZE [BUDGET_MIB]
 *
 * Caps the process's address space (RLIMIT_AS) at what it has mapped
 * (VmSize) plus BUDGET_MIB (default 1024), then calls malloc(SIZE) until
 * it answers NULL, and prints the bytes it handed out, as
 * "SIZE LIVE_MIB BUDGET_MIB PERCENT".  It links no allocator: run it
 * plain for the system heap, with LD_PRELOAD=libtessera.so for tessera
 * (bench/space_limit.sh runs both over several sizes).  What an allocator
 * mapped before the cap (its first arena, the C library's heap top) is in
 * the baseline, not the budget.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static size_t mapped_now(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  unsigned long pages = 0;
  int n = fscanf(f, "%lu", &pages);
  fclose(f);
  return n == 1 ? (size_t)pages * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: space_limit SIZE [BUDGET_MIB]\n");
    return 2;
  }
  size_t size = strtoull(argv[1], NULL, 0);
  size_t budget = (argc > 2 ? strtoull(argv[2], NULL, 0) : 1024) << 20;
  size_t base = mapped_now();
  struct rlimit rl = { base + budget, base + budget };
  if (size == 0 || base == 0 || setrlimit(RLIMIT_AS, &rl) != 0) {
    fprintf(stderr, "space_limit: cannot cap the address space\n");
    return 1;
  }
  unsigned long long live = 0;
  while (malloc(size) != NULL) live += size;
  printf("%zu %.1f %zu %.1f\n", size, (double)live / 1048576.0, budget >> 20, 100.0 * (double)live / (double)budget);
  return 0;
}
