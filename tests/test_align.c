/* test_align.c: every alignment from 1 byte to 1 MiB against sizes around
 * every power of two and random sizes up to 1 MiB, through aligned_alloc,
 * posix_memalign and memalign.  Each block must be aligned, hold its size,
 * be writable to its last usable byte and not overlap a neighbour.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#define MAX_ALIGN_SHIFT 20
#define MAX_SIZE ((size_t)1 << 20)

enum which { ALIGNED_ALLOC, POSIX_MEMALIGN, MEMALIGN };

static void *alloc_with(enum which w, size_t align, size_t size) {
  switch (w) {
  case ALIGNED_ALLOC: return tsr_aligned_alloc(align, size);
  case MEMALIGN: return tsr_memalign(align, size);
  case POSIX_MEMALIGN: {
    void *p = NULL;
    int rc = tsr_posix_memalign(&p, align, size);
    cr_assert_eq(rc, 0, "posix_memalign(%zu, %zu) = %d", align, size, rc);
    return p;
  }
  }
  return NULL;
}

static const char *name_of(enum which w) {
  return w == ALIGNED_ALLOC ? "aligned_alloc" : w == MEMALIGN ? "memalign" : "posix_memalign";
}

/* The sizes to try (0 has a test of its own): every power of two up to MAX_SIZE and its
 * neighbours, and `randoms` random sizes (more of them small). */
static size_t make_sizes(size_t *sizes, size_t cap, size_t randoms) {
  size_t n = 0;
  for (size_t p = 1; p <= MAX_SIZE; p <<= 1) {
    if (p > 1) sizes[n++] = p - 1;
    sizes[n++] = p;
    sizes[n++] = p + 1;
  }
  uint64_t rng = 0x1234567887654321ull;
  for (size_t i = 0; i < randoms && n < cap; i++) {
    uint64_t r = tsr_test_rand(&rng);
    size_t limit = (r & 3) == 0 ? MAX_SIZE : (r & 3) == 1 ? 65536 : 2048;
    sizes[n++] = (size_t)(r >> 32) % (limit + 1);
  }
  return n;
}

static void check_pair(enum which w, size_t align, size_t size, uint64_t tag) {
  uint8_t *p = alloc_with(w, align, size);
  cr_assert_not_null(p, "%s(%zu, %zu) failed", name_of(w), align, size);
  cr_assert_eq((uintptr_t)p % align, 0, "%s(%zu, %zu) = %p is misaligned", name_of(w), align, size,
               (void *)p);
  cr_assert_eq((uintptr_t)p % 16, 0, "%s(%zu, %zu) = %p: every block is 16-byte aligned",
               name_of(w), align, size, (void *)p);
  size_t usable = tsr_usable_size(p);
  cr_assert_geq(usable, size, "%s(%zu, %zu): usable %zu", name_of(w), align, size, usable);
  cr_assert(tsr_owns(p));
  tsr_test_fill(p, size, tag);
  if (usable > size) memset(p + size, 0xa5, usable - size);
  cr_assert_eq(tsr_test_verify(p, size, tag), size);
  tsr_free(p);
}

static void run_all(enum which w, size_t randoms) {
  static size_t sizes[256];
  size_t n = make_sizes(sizes, 256, randoms);
  uint64_t tag = 0;
  for (unsigned shift = 0; shift <= MAX_ALIGN_SHIFT; shift++) {
    size_t align = (size_t)1 << shift;
    if (w == POSIX_MEMALIGN && align < sizeof(void *)) continue;
    for (size_t i = 0; i < n; i++) check_pair(w, align, sizes[i], ++tag);
  }
  cr_assert_eq(tsr_check(), 0);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, 0, "blocks left live: %llu bytes", (unsigned long long)s.allocated);
  cr_assert_eq(s.large_live, 0);
}

static size_t random_count(void) { return (size_t)tsr_test_env("TSR_TEST_ALIGN_RANDOM", 40); }

Test(align, aligned_alloc_every_pair, .timeout = 120) { run_all(ALIGNED_ALLOC, random_count()); }
Test(align, posix_memalign_every_pair, .timeout = 120) { run_all(POSIX_MEMALIGN, random_count()); }
Test(align, memalign_every_pair, .timeout = 120) { run_all(MEMALIGN, random_count()); }

/* Size 0 with every alignment: a unique, aligned, freeable block (C11 lets
 * aligned_alloc return NULL for size 0, but tessera.h promises malloc's
 * answer, a unique pointer, and posix_memalign must return 0 or ENOMEM). */
static void zero_size(enum which w) {
  for (unsigned shift = 0; shift <= MAX_ALIGN_SHIFT; shift++) {
    size_t align = (size_t)1 << shift;
    if (w == POSIX_MEMALIGN && align < sizeof(void *)) continue;
    void *p = alloc_with(w, align, 0);
    cr_assert_not_null(p, "%s(%zu, 0) returned NULL (errno %d)", name_of(w), align, errno);
    cr_assert_eq((uintptr_t)p % align, 0);
    cr_assert(tsr_owns(p));
    tsr_free(p);
  }
  cr_assert_eq(tsr_check(), 0);
}

Test(align, aligned_alloc_size_zero) { zero_size(ALIGNED_ALLOC); }
Test(align, posix_memalign_size_zero) { zero_size(POSIX_MEMALIGN); }
Test(align, memalign_size_zero) { zero_size(MEMALIGN); }

/* Aligned blocks live side by side: many at once of each alignment, none
 * overwriting another, then freed in reverse. */
Test(align, many_live_aligned_blocks, .timeout = 120) {
  enum { N = 64 };
  uint8_t *b[N];
  size_t n[N];
  uint64_t rng = 77;
  for (unsigned shift = 4; shift <= 16; shift++) {
    size_t align = (size_t)1 << shift;
    for (int i = 0; i < N; i++) {
      n[i] = (size_t)(tsr_test_rand(&rng) % (3 * align)) + 1;
      b[i] = tsr_aligned_alloc(align, n[i]);
      cr_assert_not_null(b[i]);
      cr_assert_eq((uintptr_t)b[i] % align, 0);
      tsr_test_fill(b[i], n[i], (uint64_t)(shift * 1000 + (unsigned)i));
    }
    for (int i = N - 1; i >= 0; i--) {
      cr_assert_eq(tsr_test_verify(b[i], n[i], (uint64_t)(shift * 1000 + (unsigned)i)), n[i],
                   "aligned block %d (align %zu, size %zu) overwritten", i, align, n[i]);
      tsr_free(b[i]);
    }
  }
  cr_assert_eq(tsr_check(), 0);
}

/* Alignments above 1 MiB still work (large blocks with aligned mappings). */
Test(align, huge_alignments) {
  for (unsigned shift = 21; shift <= 26; shift++) {
    size_t align = (size_t)1 << shift;
    void *p = tsr_aligned_alloc(align, 100);
    cr_assert_not_null(p, "aligned_alloc(%zu, 100)", align);
    cr_assert_eq((uintptr_t)p % align, 0);
    memset(p, 1, 100);
    tsr_free(p);
  }
  cr_assert_eq(tsr_check(), 0);
  cr_assert_eq(tsr_test_stats().large_live, 0);
}
