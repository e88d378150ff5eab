/* test_mesh_idle.c: meshing while the program sleeps (TESSERA_MESH=on and
 * the reclaimer at its default period, set by tests/CMakeLists.txt).
 *
 * A program that leaves every other block of its peak live and then makes
 * no call at all gets the pairs' pages back from the reclaimer alone
 * (reclaim.c: a pass that finds pairs and runs out of time comes back
 * after 20 ms, not TESSERA_RECLAIM_MS).  The deadline is generous, for
 * sanitizers and loaded machines; the time it took is printed.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include "../bench/bench.h"

#define MiB ((size_t)1 << 20)

Test(mesh_idle, a_sleeping_program_gets_its_pairs_back) {
  /* the reclaimer starts at a slow path once the process is a second old */
  tsr_test_sleep_ms(1100);
  const size_t size = 512, total = 32 * MiB, n = total / size;
  unsigned char **v = tsr_malloc(n * sizeof *v);
  cr_assert(v != NULL);
  for (size_t i = 0; i < n; i++) {
    v[i] = tsr_malloc(size);
    cr_assert(v[i] != NULL);
    tsr_test_fill(v[i], size, i);
  }
  for (size_t i = 0; i < n; i += 2) tsr_free(v[i]);
  uint64_t rss_peak = bench_rss_bytes();
  /* from here on no call into tessera until the figures are read */
  double t0 = bench_now();
  tsr_pins_t t = { 0 };
  for (int i = 0; i < 100; i++) {
    tsr_test_sleep_ms(100);
    tsr_pins(&t, NULL, 0);
    if (t.mesh_saved >= total / 4) break;
  }
  double waited = bench_now() - t0;
  fprintf(stderr, "mesh_idle: %llu MiB of %zu MiB given back by meshing after %.1f s asleep\n",
          (unsigned long long)(t.mesh_saved / MiB), total / MiB, waited);
  cr_assert_geq(t.mesh_saved, total / 4, "meshing gave back %llu KiB of %zu KiB in %.1f s",
                (unsigned long long)(t.mesh_saved / 1024), total / 1024, waited);
#if !TSR_TEST_SHADOW
  uint64_t rss = bench_rss_bytes();
  cr_assert_lt(rss, rss_peak - t.mesh_saved / 2, "resident %llu MiB -> %llu MiB; meshing says %llu MiB saved",
               (unsigned long long)(rss_peak / MiB), (unsigned long long)(rss / MiB),
               (unsigned long long)(t.mesh_saved / MiB));
#else
  (void)rss_peak;
#endif
  for (size_t i = 1; i < n; i += 2)
    cr_assert_eq(tsr_test_verify(v[i], size, i), size, "block %zu damaged", i);
  cr_assert_eq(tsr_check(), 0);
  for (size_t i = 1; i < n; i += 2) tsr_free(v[i]);
  tsr_free(v);
}
