/* st_strbuild.c: a realloc-heavy string builder.
 *
 * 64 builders are open at once (a server assembling 64 responses); each
 * step appends a piece of 1..80 bytes to a random builder, growing its
 * buffer with realloc to exactly the new length plus one, as a naive
 * builder does.  When a builder passes its target length (1 KiB..256 KiB,
 * log-uniform) it is checked, freed and a new one starts.  Interleaving
 * the builders keeps realloc from always growing in place.
 */
#include "bench.h"

#define BUILDERS 64

typedef struct sb_s { char *buf; size_t len, target; uint64_t hash; } sb_t;

static void sb_new(sb_t *b, bench_rng_t *r) {
  b->buf = NULL;
  b->len = 0;
  b->target = bench_log_size(r, 1024, 262144);
  b->hash = 0;
}

int main(void) {
  bench_start("st_strbuild");
  uint64_t steps = (uint64_t)(3000000 * bench_env_num("BENCH_SCALE", 1));
  sb_t sb[BUILDERS];
  bench_rng_t r = { 7 };
  for (int i = 0; i < BUILDERS; i++) sb_new(&sb[i], &r);
  uint64_t sum = 0, done = 0;
  for (uint64_t i = 0; i < steps; i++) {
    sb_t *b = &sb[bench_rand(&r) % BUILDERS];
    size_t piece = bench_range(&r, 1, 80);
    char *nb = realloc(b->buf, b->len + piece + 1);
    if (nb == NULL) bench_fail("out of memory");
    b->buf = nb;
    char c = (char)('a' + (b->len + piece) % 26);
    memset(b->buf + b->len, c, piece);
    b->len += piece;
    b->buf[b->len] = 0;
    b->hash = b->hash * 31 + (uint64_t)c;
    if (b->len >= b->target) {
      if (strlen(b->buf) != b->len) bench_fail("a string changed while it was built (heap corruption)");
      sum += b->hash ^ b->len;
      done++;
      free(b->buf);
      sb_new(b, &r);
    }
  }
  for (int i = 0; i < BUILDERS; i++) free(sb[i].buf);
  printf("strings: %" PRIu64 "\n", done);
  bench_end(steps, sum);
  return 0;
}
