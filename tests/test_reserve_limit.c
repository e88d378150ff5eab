/* test_reserve_limit.c: TESSERA_RESERVE_LIMIT, an address space that runs
 * out on purpose (as a 32-bit process's does, or a fragmented one's).
 *
 * ctest starts it with TESSERA_RESERVE_LIMIT=200M, TESSERA_TRACK=stats (no
 * record tables), TESSERA_PURGE_DELAY_MS=0 and TESSERA_LARGE_CACHE_MB=0
 * (freed large blocks go straight back), tests/CMakeLists.txt.  Each test
 * reserves until the cap: new reservations then fail with NULL and ENOMEM,
 * while small blocks still come from the arenas tessera already has, and
 * what is freed can be had again.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

/* What the cap counts (alloc/os/os.h; hidden, but this program links the
 * static library). */
uint64_t tsri_os_reserved(void);

#define MiB ((size_t)1 << 20)
#define LIMIT (200 * MiB)
#define BIG (8 * MiB)

static void setting_in_force(void) {
  const char *v = getenv("TESSERA_RESERVE_LIMIT");
  cr_assert(v != NULL && strcmp(v, "200M") == 0, "run with TESSERA_RESERVE_LIMIT=200M (ctest sets it)");
}

/* Large blocks of 8 MiB until the cap: returns how many, in out[]. */
static size_t big_until_enomem(void **out, size_t max) {
  size_t n = 0;
  for (;;) {
    errno = 0;
    void *p = tsr_malloc(BIG);
    if (p == NULL) {
      cr_assert_eq(errno, ENOMEM, "errno %d after the cap", errno);
      return n;
    }
    cr_assert_lt(n, max, "more than %zu blocks of 8 MiB under a 200 MiB cap", max);
    out[n++] = p;
  }
}

Test(reserve_limit, large_blocks_stop_at_the_cap_small_ones_go_on) {
  setting_in_force();
  void *first = tsr_malloc(64);   /* an arena is there */
  cr_assert_not_null(first);
  void *big[32];
  size_t n = big_until_enomem(big, 32);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_leq(s.reserved, LIMIT, "tessera counts %zu bytes reserved", (size_t)s.reserved);
  /* stopped near the cap, not far below: one arena (64 MiB) and records
   * leave room for at least 12 blocks of 8 MiB */
  cr_assert_geq(n, 12, "only %zu blocks of 8 MiB", n);
  cr_assert_gt(s.reserved + BIG + MiB, LIMIT, "stopped at %zu bytes", (size_t)s.reserved);
  cr_assert_eq(s.errors, 0, "running out is not a bad call");

  /* small blocks still come from the arena */
  static void *small[5000];
  for (int i = 0; i < 5000; i++) {
    small[i] = tsr_malloc((size_t)(16 + (i % 64) * 16));
    cr_assert_not_null(small[i], "small block %d refused (errno %d)", i, errno);
  }
  cr_assert_eq(tsr_check(), 0);
  for (int i = 0; i < 5000; i++) tsr_free(small[i]);
  errno = 0;
  cr_assert_null(tsr_malloc(BIG));
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(tsr_calloc(1, BIG));
  cr_assert_eq(errno, ENOMEM);
  void *q = NULL;
  errno = 0;
  cr_assert_eq(tsr_posix_memalign(&q, 4096, BIG), ENOMEM);
  cr_assert_eq(errno, ENOMEM, "posix_memalign refused by the OS: errno %d", errno);
  cr_assert_null(q);

  /* what is freed is there again */
  for (size_t i = 0; i < n; i++) tsr_free(big[i]);
  size_t again = big_until_enomem(big, 32);
  cr_assert_eq(again, n, "%zu blocks before, %zu after freeing them all", n, again);
  for (size_t i = 0; i < again; i++) tsr_free(big[i]);
  tsr_free(first);
  cr_assert_eq(tsr_check(), 0);
}

Test(reserve_limit, new_arenas_stop_at_the_cap) {
  setting_in_force();
  /* 100 KiB blocks fill an arena, then the next (each as big as those
   * before together, up to 64 MiB), until a new arena would pass the cap
   * even at its smallest (1 MiB; alloc/core/arena.c: sizing) */
  static void *mid[4096];
  size_t n = 0;
  for (;;) {
    errno = 0;
    void *p = tsr_malloc(100 * 1024);
    if (p == NULL) {
      cr_assert_eq(errno, ENOMEM);
      break;
    }
    cr_assert_lt(n, 4096);
    mid[n++] = p;
  }
  tsr_stats_t s = tsr_test_stats();
  cr_assert_leq(s.reserved, LIMIT);
  cr_assert_geq(s.arenas, 2, "%zu arenas under a 200 MiB cap", (size_t)s.arenas);
  cr_assert_gt(s.reserved + MiB, LIMIT, "stopped at %zu bytes reserved", (size_t)s.reserved);
  cr_assert_geq(n * 100 * 1024, (size_t)s.reserved / 100 * 85, "%zu blocks in %zu arenas, %zu bytes reserved", n,
                (size_t)s.arenas, (size_t)s.reserved);
  /* a freed block's slots serve the next request */
  tsr_free(mid[n / 2]);
  mid[n / 2] = tsr_malloc(100 * 1024);
  cr_assert_not_null(mid[n / 2]);
  for (size_t i = 0; i < n; i++) tsr_free(mid[i]);
  cr_assert_eq(tsr_check(), 0);
  /* arenas are kept (their slots decommitted), so the same blocks fit
   * again without a reservation more */
  tsr_collect();
  for (size_t i = 0; i < n; i++) {
    mid[i] = tsr_malloc(100 * 1024);
    cr_assert_not_null(mid[i], "block %zu of %zu refused the second time", i, n);
  }
  cr_assert_eq(tsr_test_stats().arenas, s.arenas);
  for (size_t i = 0; i < n; i++) tsr_free(mid[i]);
}

/* realloc of a large block grows and shrinks it in place with mremap on
 * Linux: a growth past the cap fails with ENOMEM and keeps the block, a
 * shrink gives the tail back to the budget, and freeing everything brings
 * the count back to where it was. */
Test(reserve_limit, realloc_is_held_to_the_cap) {
  setting_in_force();
  void *first = tsr_malloc(64);
  cr_assert_not_null(first);
  tsr_collect();   /* what a collection sets up (meshing's records, with TESSERA_MESH=on) counts in base */
  uint64_t base = tsri_os_reserved();
  void *big[32];
  size_t n = big_until_enomem(big, 32);
  cr_assert_geq(n, 2);
  uint64_t full = tsri_os_reserved();
  cr_assert_leq(full, LIMIT, "%zu bytes held", (size_t)full);
  cr_assert_gt(full + BIG, LIMIT, "stopped at %zu bytes", (size_t)full);
  memset(big[0], 0x5a, BIG);

  errno = 0;
  void *grown = tsr_realloc(big[0], 3 * BIG);
  cr_assert_null(grown, "realloc past the cap succeeded");
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(((unsigned char *)big[0])[BIG - 1], 0x5a, "the block was lost");
  cr_assert_eq(tsri_os_reserved(), full, "a refused realloc changed the count");

  void *shrunk = tsr_realloc(big[0], MiB);   /* far below half: remapped */
  cr_assert_not_null(shrunk);
  big[0] = shrunk;
  cr_assert_eq(tsri_os_reserved(), full - (BIG - MiB), "%zu bytes held after the shrink",
               (size_t)tsri_os_reserved());
  cr_assert_eq(((unsigned char *)big[0])[MiB - 1], 0x5a);
  void *back = tsr_realloc(big[0], BIG);     /* the room the shrink gave back */
  cr_assert_not_null(back, "realloc within the budget refused (errno %d)", errno);
  big[0] = back;
  cr_assert_eq(((unsigned char *)big[0])[MiB - 1], 0x5a);
  cr_assert_leq(tsri_os_reserved(), LIMIT);

  for (size_t i = 0; i < n; i++) tsr_free(big[i]);
  tsr_collect();
  /* give or take the large-block table, made at the first large block */
  cr_assert(tsri_os_reserved() >= base && tsri_os_reserved() <= base + MiB,
            "%zu bytes held after freeing, %zu before", (size_t)tsri_os_reserved(), (size_t)base);
  tsr_free(first);
  cr_assert_eq(tsr_check(), 0);
}
