/* frag_sizeshift.c: the size shift.
 *
 * Fill BENCH_BUDGET_MB with blocks of random sizes, 16..1024 bytes
 * (uniform), free 90 % of them at random, then allocate blocks of
 * 2..8 KiB until the live bytes are back at the budget.  A heap that
 * merges neighbouring free blocks (glibc) reuses the holes for the larger
 * blocks; a size-class heap keeps the small-class pages that still hold a
 * survivor and takes fresh pages for the large ones.  Phases: fill,
 * free90, larger, settle.
 */
#include "bench.h"

typedef struct blk_s { unsigned char *p; uint32_t n; } blk_t;

int main(void) {
  bench_start("frag_sizeshift");
  uint64_t budget = (uint64_t)(bench_env_num("BENCH_BUDGET_MB", 64) * 1048576.0);
  size_t cap = (size_t)(budget / 16) + 16;
  blk_t *small = bench_xmalloc(cap * sizeof *small);
  bench_rng_t r = { 2024 };
  uint64_t live = 0;
  size_t ns = 0;
  while (live < budget) {
    uint32_t n = (uint32_t)bench_range(&r, 16, 1024);
    small[ns].p = bench_xmalloc(n);
    small[ns].n = n;
    memset(small[ns].p, (int)(n & 0xff), n);
    live += n;
    ns++;
  }
  bench_phase("fill", live);
  for (size_t i = 0; i < ns; i++) {
    if (bench_rand(&r) % 10 != 0) {
      free(small[i].p);
      small[i].p = NULL;
      live -= small[i].n;
    }
  }
  bench_phase("free90", live);
  size_t lcap = (size_t)(budget / 2048) + 16, nl = 0;
  blk_t *large = bench_xmalloc(lcap * sizeof *large);
  while (live < budget && nl < lcap) {
    uint32_t n = (uint32_t)bench_range(&r, 2048, 8192);
    large[nl].p = bench_xmalloc(n);
    large[nl].n = n;
    memset(large[nl].p, (int)(n & 0xff), n);
    live += n;
    nl++;
  }
  bench_phase("larger", live);
  bench_settle(live);
  uint64_t sum = 0;
  for (size_t i = 0; i < ns; i++)
    if (small[i].p != NULL) {
      if (small[i].p[small[i].n - 1] != (unsigned char)(small[i].n & 0xff)) bench_fail("heap corruption");
      sum += small[i].n;
      free(small[i].p);
    }
  for (size_t i = 0; i < nl; i++) {
    if (large[i].p[0] != (unsigned char)(large[i].n & 0xff)) bench_fail("heap corruption");
    sum += large[i].n;
    free(large[i].p);
  }
  free(small);
  free(large);
  bench_end(ns + nl, sum);
  return 0;
}
