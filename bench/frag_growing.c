/* frag_growing.c: growing sizes.
 *
 * Allocate BENCH_BUDGET_MB in n-byte blocks, keep one in four, free the
 * rest; double n and repeat, from 16 bytes to 64 KiB (13 steps).  The
 * survivors of each step pin the pages (or the heap top) of a size that
 * is never asked for again, while the live bytes grow by a quarter of the
 * budget per step.  Phases: n16, n32, ... n65536, settle.
 */
#include "bench.h"

int main(void) {
  bench_start("frag_growing");
  size_t budget = (size_t)(bench_env_num("BENCH_BUDGET_MB", 64) * 1048576.0);
  size_t kept_cap = 0;
  for (size_t n = 16; n <= 65536; n *= 2) kept_cap += budget / n / 4 + 1;
  void **kept = bench_xmalloc(kept_cap * sizeof *kept);
  size_t nkept = 0;
  void **step = bench_xmalloc((budget / 16 + 1) * sizeof *step);
  uint64_t live = 0, ops = 0;
  char name[32];
  for (size_t n = 16; n <= 65536; n *= 2) {
    size_t count = budget / n;
    for (size_t i = 0; i < count; i++) {
      step[i] = bench_xmalloc(n);
      memset(step[i], (int)(n & 0xff) ^ 0x5a, n);
    }
    for (size_t i = 0; i < count; i++) {
      if (i % 4 == 3) {
        kept[nkept++] = step[i];
        live += n;
      } else {
        free(step[i]);
      }
    }
    ops += count;
    snprintf(name, sizeof name, "n%zu", n);
    bench_phase(name, live);
  }
  bench_settle(live);
  for (size_t i = 0; i < nkept; i++) free(kept[i]);
  free(kept);
  free(step);
  bench_end(ops, live);
  return 0;
}
