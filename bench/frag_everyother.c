/* frag_everyother.c: free every other object.
 *
 * Fill BENCH_BUDGET_MB with 512-byte objects, free every other one; then
 * fill the budget again with 1 KiB objects and free every other one of
 * those.  The holes the 512-byte objects leave are too small for the
 * 1 KiB ones, and no page (of any allocator) empties, so what an
 * allocator can give back is at most the free 4 KiB OS pages inside its
 * partly used ones.  Phases: fill512, half512, fill1k, half1k, settle.
 */
#include "bench.h"

static uint64_t fill(void **v, size_t count, size_t size) {
  for (size_t i = 0; i < count; i++) {
    v[i] = bench_xmalloc(size);
    memset(v[i], (int)(i & 0xff), size);
  }
  return (uint64_t)count * size;
}

static uint64_t free_every_other(void **v, size_t count, size_t size) {
  uint64_t freed = 0;
  for (size_t i = 0; i < count; i += 2) {
    free(v[i]);
    v[i] = NULL;
    freed += size;
  }
  return freed;
}

static void check(void **v, size_t count, size_t size) {
  for (size_t i = 1; i < count; i += 2)
    if (((unsigned char *)v[i])[size - 1] != (unsigned char)(i & 0xff)) bench_fail("heap corruption");
}

int main(void) {
  bench_start("frag_everyother");
  size_t budget = (size_t)(bench_env_num("BENCH_BUDGET_MB", 64) * 1048576.0);
  size_t n512 = budget / 512, n1k = budget / 1024;
  void **a = bench_xmalloc(n512 * sizeof *a);
  void **b = bench_xmalloc(n1k * sizeof *b);
  uint64_t live = 0;
  live += fill(a, n512, 512);
  bench_phase("fill512", live);
  live -= free_every_other(a, n512, 512);
  bench_phase("half512", live);
  live += fill(b, n1k, 1024);
  bench_phase("fill1k", live);
  live -= free_every_other(b, n1k, 1024);
  bench_phase("half1k", live);
  bench_settle(live);
  check(a, n512, 512);
  check(b, n1k, 1024);
  for (size_t i = 0; i < n512; i++) free(a[i]);
  for (size_t i = 0; i < n1k; i++) free(b[i]);
  free(a);
  free(b);
  bench_end(n512 + n1k, live);
  return 0;
}
