/* test_win_limit.c: an address space that runs out.  ctest runs it with
 * TESSERA_RESERVE_LIMIT=200M (and TESSERA_TRACK=stats, so that no record
 * tables take their share): reservations go on until the cap, then large
 * blocks and new arenas get NULL with ENOMEM, while small blocks still
 * come from the arenas tessera already has; freeing gives room back. */
#include "win_test.h"

#include <errno.h>
#include <stdint.h>
#include <tessera.h>
#include <windows.h>

#include "os/os.h"   /* tsri_os_reserved: what the cap counts */

#define LIMIT ((uint64_t)200 << 20)

static void *large[64];
static size_t n_large;

static void setting_is_in_force(void) {
  const char *v = getenv("TESSERA_RESERVE_LIMIT");
  CHECK_MSG(v != NULL && strcmp(v, "200M") == 0, "run with TESSERA_RESERVE_LIMIT=200M");
}

static void large_blocks_until_enomem(void) {
  void *first = tsr_malloc(64);   /* brings tessera up, reserves an arena */
  CHECK(first != NULL);
  for (;;) {
    errno = 0;
    void *p = tsr_malloc(8u << 20);
    if (p == NULL) {
      CHECK_MSG(errno == ENOMEM, "errno %d", errno);
      break;
    }
    CHECK(n_large < 64);
    large[n_large++] = p;
  }
  uint64_t held = tsri_os_reserved();
  CHECK_MSG(held <= LIMIT, "%llu bytes reserved, over the cap", (unsigned long long)held);
  CHECK_MSG(held + (8u << 20) + 65536 > LIMIT, "stopped at %llu bytes, far below the cap",
            (unsigned long long)held);
  CHECK_MSG(n_large >= 10, "only %zu blocks of 8 MiB under a 200 MiB cap", n_large);
  tsr_free(first);
}

static void small_blocks_still_served(void) {
  static void *small[4000];
  for (int i = 0; i < 4000; i++) {
    small[i] = tsr_malloc((size_t)(16 + (i % 64) * 16));
    CHECK_MSG(small[i] != NULL, "small block %d refused (errno %d)", i, errno);
  }
  CHECK(tsr_check() == 0);
  for (int i = 0; i < 4000; i++) tsr_free(small[i]);
  /* a request that needs more address space still gets ENOMEM */
  errno = 0;
  CHECK(tsr_malloc(8u << 20) == NULL && errno == ENOMEM);
}

static void arenas_fill_up_then_enomem(void) {
  static void *mid[2048];
  size_t n = 0;
  for (;;) {
    errno = 0;
    void *p = tsr_malloc(100 * 1024);   /* a class of several slots */
    if (p == NULL) {
      CHECK(errno == ENOMEM);
      break;
    }
    CHECK(n < 2048);
    mid[n++] = p;
  }
  CHECK(n > 0);
  CHECK(tsri_os_reserved() <= LIMIT);
  tsr_free(mid[n / 2]);
  mid[n / 2] = tsr_malloc(100 * 1024);   /* the slots just freed serve again */
  CHECK(mid[n / 2] != NULL);
  for (size_t i = 0; i < n; i++) tsr_free(mid[i]);
  CHECK(tsr_check() == 0);
}

static void freeing_gives_room_back(void) {
  for (size_t i = 0; i < n_large; i++) tsr_free(large[i]);
  tsr_collect();
  void *p = tsr_malloc(8u << 20);
  CHECK_MSG(p != NULL, "no 8 MiB block after freeing %zu of them", n_large);
  tsr_free(p);
  CHECK(tsri_os_reserved() <= LIMIT);
}

WT_MAIN(WT_CASE(setting_is_in_force), WT_CASE(large_blocks_until_enomem),
        WT_CASE(small_blocks_still_served), WT_CASE(arenas_fill_up_then_enomem),
        WT_CASE(freeing_gives_room_back))
