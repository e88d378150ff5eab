/* test_sizeclass.c: the size-class table seen through the public API.
 *
 * For every request size up to the largest class, the block handed out
 * must hold the request, be 16-byte aligned and waste no more than the
 * bound sizeclass.c promises: 15 bytes up to 128 bytes, 12.5 % above.
 * Above the largest class, blocks are rounded to whole OS pages.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#define SMALL_MAX ((size_t)128 * 1024)

/* Check size and return the usable size of its block. */
static size_t check_one(size_t size) {
  void *p = tsr_malloc(size);
  cr_assert_not_null(p, "malloc(%zu) failed", size);
  cr_assert_eq((uintptr_t)p % 16, 0, "malloc(%zu) = %p is not 16-byte aligned", size, p);
  size_t usable = tsr_usable_size(p);
  cr_assert_geq(usable, size, "malloc(%zu): usable size %zu is smaller", size, usable);
  if (size > 128)
    cr_assert_leq((double)usable, (double)size * 1.125,
                  "malloc(%zu): usable %zu wastes more than 12.5%%", size, usable);
  else
    cr_assert_leq(usable - size, 15, "malloc(%zu): usable %zu wastes more than 15 bytes", size,
                  usable);
  /* the first and last byte of the usable part are ours */
  ((volatile uint8_t *)p)[0] = 1;
  ((volatile uint8_t *)p)[usable - 1] = 2;
  tsr_free(p);
  return usable;
}

Test(sizeclass, every_small_size_fits_with_bounded_waste) {
  size_t prev = 0;
  for (size_t size = 1; size <= SMALL_MAX; size++) {
    size_t usable = check_one(size);
    /* the table is sorted: a larger request never gets a smaller block */
    cr_assert_geq(usable, prev, "usable(%zu) = %zu < usable(%zu) = %zu", size, usable, size - 1,
                  prev);
    prev = usable;
  }
  cr_assert_eq(tsr_check(), 0);
}

Test(sizeclass, size_zero_gets_a_minimal_block) {
  void *p = tsr_malloc(0);
  cr_assert_not_null(p);
  cr_assert_eq((uintptr_t)p % 16, 0);
  size_t usable = tsr_usable_size(p);
  cr_assert(usable >= 1 && usable <= 16, "malloc(0) usable %zu", usable);
  tsr_free(p);
}

/* The smallest requests share one class: 16 bytes. */
Test(sizeclass, tiny_sizes_share_the_16_byte_class) {
  for (size_t size = 1; size <= 16; size++) {
    void *p = tsr_malloc(size);
    cr_assert_eq(tsr_usable_size(p), 16, "malloc(%zu)", size);
    tsr_free(p);
  }
}

/* Blocks of one class are distinct, non-overlapping and all aligned, also
 * when many are live at once (several pages of the class). */
Test(sizeclass, live_blocks_do_not_overlap) {
  static const size_t sizes[] = { 16, 24, 48, 100, 128, 129, 1000, 1025, 4097, 10000, 70000, 131072 };
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t size = sizes[s];
    size_t n = size < 4096 ? 3000 : 40;
    uint8_t **blocks = calloc(n, sizeof *blocks);
    cr_assert_not_null(blocks);
    for (size_t i = 0; i < n; i++) {
      blocks[i] = tsr_malloc(size);
      cr_assert_not_null(blocks[i]);
      cr_assert_eq((uintptr_t)blocks[i] % 16, 0);
      tsr_test_fill(blocks[i], size, i + 1);
    }
    for (size_t i = 0; i < n; i++) {
      cr_assert_eq(tsr_test_verify(blocks[i], size, i + 1), size,
                   "block %zu of size %zu was overwritten by another block", i, size);
      tsr_free(blocks[i]);
    }
    free(blocks);
  }
  cr_assert_eq(tsr_check(), 0);
}

/* Above the largest class: the usable size is a whole number of pages.  A
 * fresh mapping is the request rounded up to a page; a mapping reused from
 * the cache of freed large blocks may be up to a quarter bigger (large.c). */
Test(sizeclass, large_blocks_are_page_rounded) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  static const size_t extra[] = { 1, 2, 100, 4095, 4096, 4097, 65535, 65536, 1000000 };
  for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++) {
    for (size_t mult = 1; mult <= 64; mult *= 4) {
      size_t size = SMALL_MAX * mult + extra[k];
      void *p = tsr_malloc(size);
      cr_assert_not_null(p, "malloc(%zu)", size);
      size_t usable = tsr_usable_size(p);
      cr_assert_eq(usable % page, 0, "malloc(%zu): usable %zu not a page multiple", size, usable);
      cr_assert_geq(usable, size);
      size_t rounded = (size + page - 1) / page * page;
      cr_assert_leq(usable, rounded + rounded / 4, "malloc(%zu): usable %zu is too big", size,
                    usable);
      cr_assert_eq((uintptr_t)p % page, 0);
      ((volatile uint8_t *)p)[usable - 1] = 1;
      tsr_free(p);
    }
  }
  cr_assert_eq(tsr_check(), 0);
}

/* With nothing cached yet, a large block wastes less than one page. */
Test(sizeclass, fresh_large_block_wastes_less_than_a_page) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = SMALL_MAX * 3 + 12345;
  void *p = tsr_malloc(size);
  cr_assert_not_null(p);
  size_t usable = tsr_usable_size(p);
  cr_assert_eq(usable % page, 0);
  cr_assert(usable >= size && usable - size < page, "malloc(%zu): usable %zu", size, usable);
  tsr_free(p);
}

/* Crossing the boundary between the largest class and large blocks. */
Test(sizeclass, boundary_of_largest_class) {
  void *a = tsr_malloc(SMALL_MAX);
  void *b = tsr_malloc(SMALL_MAX + 1);
  cr_assert_eq(tsr_usable_size(a), SMALL_MAX);
  cr_assert_geq(tsr_usable_size(b), SMALL_MAX + 1);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.large_live, 1, "only the block above 128 KiB is a large block");
  tsr_free(a);
  tsr_free(b);
  s = tsr_test_stats();
  cr_assert_eq(s.large_live, 0);
}
