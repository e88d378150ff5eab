/* st_mixed.c: single-threaded churn of small blocks of mixed sizes.
 *
 * A table of 16384 slots; each step frees the block in a random slot and
 * puts a new one there, of 8..511 bytes most of the time, 512..4095 one
 * time in eight and 4096..32767 one time in 128.  Every block is written
 * (its first and last bytes) and checked when freed.  This is the plain
 * malloc/free fast path with a working set that spills out of the caches.
 */
#include "bench.h"

#define SLOTS 16384

typedef struct slot_s { unsigned char *p; size_t n; } slot_t;

static size_t pick_size(bench_rng_t *r) {
  uint64_t x = bench_rand(r) & 127;
  if (x == 0) return bench_range(r, 4096, 32767);
  if (x < 16) return bench_range(r, 512, 4095);
  return bench_log_size(r, 8, 512);
}

int main(void) {
  bench_start("st_mixed");
  uint64_t steps = (uint64_t)(8000000 * bench_env_num("BENCH_SCALE", 1));
  static slot_t slot[SLOTS];
  bench_rng_t r = { 42 };
  uint64_t sum = 0;
  for (uint64_t i = 0; i < steps; i++) {
    slot_t *s = &slot[bench_rand(&r) % SLOTS];
    if (s->p != NULL) {
      if (s->p[0] != (unsigned char)s->n || s->p[s->n - 1] != (unsigned char)(s->n >> 3))
        bench_fail("a block changed while it was live (heap corruption)");
      sum += s->n;
      free(s->p);
    }
    s->n = pick_size(&r);
    s->p = bench_xmalloc(s->n);
    s->p[0] = (unsigned char)s->n;
    s->p[s->n - 1] = (unsigned char)(s->n >> 3);
  }
  for (int i = 0; i < SLOTS; i++) free(slot[i].p);
  bench_end(steps, sum);
  return 0;
}
