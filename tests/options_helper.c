/* options_helper.c: checks of the TESSERA_* settings, one per run, for
 * test_options.c, which starts it with the setting in its environment
 * (tessera reads options once, when it comes up).
 *
 *   TESSERA_PURGE_DELAY_MS=0 options_helper purge_now
 *
 * Prints "ok" and exits 0, or prints "FAIL: ..." and exits 1.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_helper.h"

#define MiB ((uint64_t)1 << 20)


/* Allocate and touch about `total` bytes of small blocks, then free them;
 * returns committed bytes at the peak. */
static uint64_t small_round(size_t total) {
  size_t n = total / 1000;
  void **b = calloc(n, sizeof *b);
  for (size_t i = 0; i < n; i++) {
    b[i] = tsr_malloc(1000);
    memset(b[i], 1, 1000);
  }
  uint64_t peak = tsr_test_stats().committed;
  for (size_t i = 0; i < n; i++) tsr_free(b[i]);
  free(b);
  return peak;
}

/* Drive allocation slow paths (where purges are checked) without
 * tsr_collect. */
static void nudge(void) {
  for (int round = 0; round < 4; round++) {
    void *b[64];
    for (int i = 0; i < 64; i++) b[i] = tsr_malloc(65536);
    for (int i = 0; i < 64; i++) tsr_free(b[i]);
  }
}

/* Nudge the slow paths until committed fell by expect from peak, for a
 * few seconds at most: the reclaimer, running once 32 MiB are committed,
 * may be half way through decommitting what a slow path would purge (a
 * purge passes over slots another thread is decommitting), as in
 * test_purge.c. */
static uint64_t nudge_until_fell(uint64_t peak, uint64_t expect) {
  uint64_t now = peak;
  for (int i = 0; i < 50; i++) {
    nudge();
    now = tsr_test_stats().committed;
    if (now <= peak && peak - now >= expect) break;
    tsr_test_sleep_ms(50);
  }
  return now;
}

static int run_case(const char *name) {
  if (strcmp(name, "purge_now") == 0) {
    /* TESSERA_PURGE_DELAY_MS=0: pages go back at once, no wait, no collect */
    uint64_t peak = small_round(64 * MiB);
    uint64_t after = tsr_test_stats().committed;
    CHECK(peak - after >= 56 * MiB, "committed fell %llu MiB of 64 with a 0 ms delay\n",
          (unsigned long long)((peak - after) / MiB));
    void *l = tsr_malloc(8 * MiB);
    memset(l, 1, 8 * MiB);
    uint64_t with_large = tsr_test_stats().committed;
    tsr_free(l);
    uint64_t without = tsr_test_stats().committed;
    CHECK(with_large - without >= 8 * MiB, "a freed large block stayed committed with a 0 ms delay\n");
  } else if (strcmp(name, "purge_never") == 0) {
    /* TESSERA_PURGE_DELAY_MS=-1: nothing is decommitted until tsr_collect */
    uint64_t peak = small_round(64 * MiB);
    tsr_test_sleep_ms(50);
    nudge();
    uint64_t kept = tsr_test_stats().committed;
    CHECK(kept + 8 * MiB >= peak, "committed fell from %llu to %llu MiB with purging off\n",
          (unsigned long long)(peak / MiB), (unsigned long long)(kept / MiB));
    tsr_collect();
    uint64_t after = tsr_test_stats().committed;
    CHECK(kept - after >= 56 * MiB, "tsr_collect returned only %llu MiB with purging off\n",
          (unsigned long long)((kept - after) / MiB));
  } else if (strcmp(name, "purge_slow") == 0) {
    /* a long delay: nothing goes back before it, everything after a collect */
    uint64_t peak = small_round(64 * MiB);
    tsr_test_sleep_ms(50);
    nudge();
    uint64_t kept = tsr_test_stats().committed;
    CHECK(kept + 8 * MiB >= peak, "pages were purged before the delay was over\n");
    tsr_collect();
    CHECK(kept - tsr_test_stats().committed >= 56 * MiB, "tsr_collect did not purge\n");
  } else if (strcmp(name, "large_cache_off") == 0) {
    /* TESSERA_LARGE_CACHE_MB=0: a freed large block is released at once */
    void *l = tsr_malloc(16 * MiB);
    memset(l, 1, 16 * MiB);
    tsr_stats_t before = tsr_test_stats();
    tsr_free(l);
    tsr_stats_t after = tsr_test_stats();
    CHECK(before.committed - after.committed >= 16 * MiB, "the large block stayed committed\n");
    CHECK(after.os_releases > before.os_releases, "no release call for the large block\n");
  } else if (strcmp(name, "large_cache_on") == 0) {
    /* the default: a freed large block is kept for reuse within the delay */
    void *l = tsr_malloc(16 * MiB);
    memset(l, 1, 16 * MiB);
    tsr_free(l);
    tsr_stats_t before = tsr_test_stats();
    void *again = tsr_malloc(16 * MiB);
    tsr_stats_t after = tsr_test_stats();
    CHECK(after.os_reserves == before.os_reserves, "a cached large mapping was not reused\n");
    tsr_free(again);
  } else if (strcmp(name, "trim_on") == 0 || strcmp(name, "trim_off") == 0) {
    /* 2000-byte blocks (two to an OS page), nine in ten freed: four OS
     * pages in five hold no live block, but every page still does */
    enum { N = 40000 };
    static void *b[N];
    for (size_t i = 0; i < N; i++) {
      b[i] = tsr_malloc(2000);
      memset(b[i], 7, 2000);
    }
    for (size_t i = 0; i < N; i++)
      if (i % 10 != 0) tsr_free(b[i]);
    size_t before = tsr_test_rss();
    uint64_t resets = tsr_test_stats().os_resets;
    tsr_test_sleep_ms(30);
    nudge();
    size_t after = tsr_test_rss();
    if (strcmp(name, "trim_on") == 0) {
      /* TESSERA_TRIM_MS=10 (the default): the allocation slow paths gave
       * them back */
      CHECK(tsr_test_stats().os_resets > resets, "no reset call was made\n");
      CHECK(before - after >= 40 * MiB, "the free OS pages inside used pages stayed resident\n");
    } else {
      /* off: they stay until tsr_collect */
      CHECK(after + 8 * MiB >= before, "pages were trimmed with TESSERA_TRIM_MS=0\n");
      tsr_collect();
      CHECK(before - tsr_test_rss() >= 40 * MiB, "tsr_collect did not trim\n");
    }
    for (size_t i = 0; i < N; i += 10) {   /* the survivors are intact */
      const unsigned char *p = b[i];
      CHECK(p[0] == 7 && p[1999] == 7, "a live block lost its contents\n");
      tsr_free(b[i]);
    }
  } else if (strcmp(name, "defaults_kept") == 0) {
    /* an invalid value: a warning (checked by the caller), and the default */
    uint64_t peak = small_round(32 * MiB);
    tsr_test_sleep_ms(100);
    uint64_t after = nudge_until_fell(peak, 24 * MiB);
    CHECK(after <= peak && peak - after >= 24 * MiB, "the default delay did not purge (%llu MiB of %llu left)\n",
          (unsigned long long)(after / MiB), (unsigned long long)(peak / MiB));
  } else if (strcmp(name, "bad_free") == 0) {
    /* TESSERA_ON_ERROR as set by the caller; continues only if it says so */
    int local = 0;
    tsr_free(&local);
    CHECK(tsr_test_stats().errors == 1, "the bad free was not counted\n");
  } else {
    printf("FAIL: unknown case %s\n", name);
    return 2;
  }
  CHECK(tsr_check() == 0, "tsr_check failed\n");
  return 0;
}

int main(int argc, char **argv) {
  return tsr_helper_main(argc, argv, run_case, "TESSERA_...=...");
}
