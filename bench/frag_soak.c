/* frag_soak.c: a long soak of a cache with eviction and shifting value
 * sizes.
 *
 * A cache of BENCH_BUDGET_MB of values runs for BENCH_SECONDS (default 6):
 * each step inserts a value and, when the cache is over its budget,
 * evicts random entries until it fits.  The value sizes drift: the mean
 * moves around a cycle (64 B, 512 B, 4 KiB, 32 KiB and back) every
 * BENCH_SOAK_PERIOD seconds (default 2), so the size classes in use keep
 * changing while the live bytes stay at the budget.  A heap that fragments
 * grows from cycle to cycle.  The output has a phase line every half
 * second and the RSS slope: the least-squares slope of each cycle's peak
 * RSS against time, leaving out the first cycle (the cache filling up),
 * in bytes per second; 0 when the run has fewer than two later cycles.
 */
#include "bench.h"

#include <math.h>

typedef struct ent_s { unsigned char *p; uint32_t n; } ent_t;

int main(void) {
  bench_start("frag_soak");
  uint64_t budget = (uint64_t)(bench_env_num("BENCH_BUDGET_MB", 64) * 1048576.0);
  double seconds = bench_env_num("BENCH_SECONDS", 6);
  double period = bench_env_num("BENCH_SOAK_PERIOD", 2);
  if (period <= 0) period = 2;
  size_t cap = (size_t)(budget / 32) + 16, n = 0;
  ent_t *ent = bench_xmalloc(cap * sizeof *ent);
  bench_rng_t r = { 31337 };
  uint64_t live = 0, ops = 0;
  double start = bench_now(), next_phase = start + 0.5, next_sample = start + 0.1;
  enum { MAX_CYCLES = 4096 };
  static double cyc_peak[MAX_CYCLES];   /* peak RSS seen in each cycle */
  int cycles = 0;
  char name[32];
  while (1) {
    double now = bench_now();
    double el = now - start;
    if (el >= seconds) break;
    /* mean size: 2^(6 + 9 * (1 - cos)/2): 64 B .. 32 KiB and back */
    double phase = (1.0 - cos(2.0 * M_PI * el / period)) / 2.0;
    size_t mean = (size_t)exp2(6.0 + 9.0 * phase);
    for (int k = 0; k < 256; k++) {
      uint32_t len = (uint32_t)bench_range(&r, mean / 2 + 8, mean + mean / 2);
      if (n == cap) {
        size_t v = (size_t)(bench_rand(&r) % n);
        live -= ent[v].n;
        free(ent[v].p);
        ent[v] = ent[--n];
      }
      ent[n].p = bench_xmalloc(len);
      ent[n].n = len;
      memset(ent[n].p, (int)(len & 0xff), len);   /* every page resident, as live data is */
      live += len;
      n++;
      ops++;
      while (live > budget) {
        size_t v = (size_t)(bench_rand(&r) % n);
        if (ent[v].p[0] != (unsigned char)(ent[v].n & 0xff)) bench_fail("heap corruption");
        live -= ent[v].n;
        free(ent[v].p);
        ent[v] = ent[--n];
      }
    }
    if (now >= next_sample) {
      next_sample += 0.1;
      int c = (int)(el / period);
      if (c < MAX_CYCLES) {
        double rss = (double)bench_rss_bytes();
        if (rss > cyc_peak[c]) cyc_peak[c] = rss;
        if (c + 1 > cycles) cycles = c + 1;
      }
    }
    if (now >= next_phase) {
      next_phase += 0.5;
      snprintf(name, sizeof name, "t%.1f", el);
      bench_phase(name, live);
    }
  }
  /* complete cycles after the first: 1 .. full-1 */
  int full = (int)(seconds / period + 1e-9);
  if (full > cycles) full = cycles;
  double slope = 0;
  int m = full - 1;
  if (m >= 2) {
    double st = 0, sr = 0, stt = 0, str = 0;
    for (int i = 1; i < full; i++) {
      double t = (i + 1) * period;
      st += t; sr += cyc_peak[i]; stt += t * t; str += t * cyc_peak[i];
    }
    double den = m * stt - st * st;
    if (den > 0) slope = (m * str - st * sr) / den;
  }
  printf("soak_cycles: %d\n", full);
  printf("rss_slope_bytes_per_s: %.0f\n", slope);
  bench_settle(live);
  uint64_t sum = live;
  for (size_t i = 0; i < n; i++) free(ent[i].p);
  free(ent);
  bench_end(ops, sum);
  return 0;
}
