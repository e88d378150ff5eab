/* test_defrag.c: tsr_defrag_hint, used the way a program that can move its
 * own objects uses it (Redis's active defrag): after most blocks of a size
 * were freed at random, move each block the hint names (allocate, copy,
 * free the old one) until it names none.  The pages of that size must fall
 * to about what the survivors need, and every survivor keep its bytes.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#define SIZE 200      /* one size class, used by no other test in this program */
#define COUNT 30000   /* about 6 MB: many pages of the class */

/* Pages of the class that holds SIZE-byte blocks, and its block count. */
static uint64_t class_pages(uint64_t *capacity_per_page) {
  tsr_class_stats_t rows[128];
  size_t n = tsr_class_stats(rows, 128);
  cr_assert(n <= 128);
  size_t best = n;
  for (size_t i = 0; i + 1 < n; i++)
    if (rows[i].block_size >= SIZE && (best == n || rows[i].block_size < rows[best].block_size)) best = i;
  cr_assert(best < n);
  if (capacity_per_page != NULL)
    *capacity_per_page = rows[best].pages ? rows[best].blocks_total / rows[best].pages : 0;
  return rows[best].pages;
}

Test(defrag, moving_what_the_hint_names_empties_sparse_pages) {
  static unsigned char *blocks[COUNT];
  uint64_t rng = 12345;
  for (size_t i = 0; i < COUNT; i++) {
    blocks[i] = tsr_malloc(SIZE);
    cr_assert_not_null(blocks[i]);
    tsr_test_fill(blocks[i], SIZE, i);
  }
  size_t live = 0;
  for (size_t i = 0; i < COUNT; i++) {
    if (tsr_test_rand(&rng) % 10 == 0) {   /* one in ten survives, scattered over every page */
      blocks[live++] = blocks[i];
      continue;
    }
    tsr_free(blocks[i]);
  }
  /* the survivors' fill seeds: their old index, kept alongside */
  static size_t seed[COUNT];
  rng = 12345;
  for (size_t i = 0, k = 0; i < COUNT; i++)
    if (tsr_test_rand(&rng) % 10 == 0) seed[k++] = i;

  uint64_t per_page = 0;
  uint64_t before = class_pages(&per_page);
  cr_assert_gt(per_page, 0);
  uint64_t needed = (live + per_page - 1) / per_page;
  cr_assert_gt(before, 4 * needed, "%llu pages for %zu blocks before moving: not sparse",
               (unsigned long long)before, live);

  size_t moved = 0, passes = 0;
  for (bool any = true; any && passes < 20; passes++) {
    any = false;
    for (size_t i = 0; i < live; i++) {
      if (!tsr_defrag_hint(blocks[i])) continue;
      unsigned char *q = tsr_malloc(SIZE);
      cr_assert_not_null(q);
      memcpy(q, blocks[i], SIZE);
      tsr_free(blocks[i]);
      blocks[i] = q;
      moved++;
      any = true;
    }
  }
  cr_assert_lt(passes, 20, "the hint still named blocks after 20 passes");
  cr_assert_lt(moved, 2 * live, "%zu moves for %zu blocks", moved, live);
  tsr_collect();
  uint64_t after = class_pages(NULL);
  cr_assert_leq(after, needed + 2, "%llu pages after moving %zu of %zu blocks; %llu would hold them (%llu before)",
                (unsigned long long)after, moved, live, (unsigned long long)needed, (unsigned long long)before);
  for (size_t i = 0; i < live; i++)
    cr_assert_eq(tsr_test_verify(blocks[i], SIZE, seed[i]), SIZE, "block %zu lost its bytes", i);
  cr_assert_eq(tsr_check(), 0);
  for (size_t i = 0; i < live; i++) tsr_free(blocks[i]);
}

Test(defrag, no_hint_where_moving_gains_nothing) {
  cr_assert_eq(tsr_defrag_hint(NULL), 0);
  void *large = tsr_malloc(1 << 20);
  cr_assert_not_null(large);
  cr_assert_eq(tsr_defrag_hint(large), 0, "a large block has its own mapping");
  tsr_free(large);
  /* blocks of the page new blocks come from: moving them stays in it */
  void *a = tsr_malloc(SIZE), *b = tsr_malloc(SIZE);
  cr_assert_eq(tsr_defrag_hint(a), 0);
  cr_assert_eq(tsr_defrag_hint(b), 0);
  tsr_free(a);
  tsr_free(b);
}
