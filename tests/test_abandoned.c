/* test_abandoned.c: frees into the pages of a thread that has exited.
 *
 * Such a free merges only its own bitmap word (heap.c:
 * tsri_heap_abandoned_free), so the page must still go back to its arena
 * with its last free, whichever threads free its blocks and in whatever
 * order, and while other threads adopt some of the pages.  Run with the
 * reclaimer off (tests/CMakeLists.txt), whose sweep would otherwise give
 * back the pages a lost merge left behind, and without guarded sampling,
 * so that every block lies in a page.
 *
 * TSR_TEST_THREADS (default 4) scales the freeing threads.
 */
#include "tsr_criterion.h"

#include <pthread.h>
#include <stdatomic.h>

#include "tsr_test.h"

#define BLOCK 48            /* many bitmap words to a page */
#define BLOCKS 20000        /* a few dozen pages */

/* Pages (spans) of the class of BLOCK-byte blocks. */
static uint64_t class_pages(void) {
  tsr_class_stats_t rows[128];
  size_t n = tsr_class_stats(rows, sizeof rows / sizeof rows[0]);
  cr_assert(n <= sizeof rows / sizeof rows[0]);
  for (size_t i = 0; i < n; i++)
    if (rows[i].block_size == BLOCK) return rows[i].pages;
  cr_assert_fail("no class of %d-byte blocks", BLOCK);
  return 0;
}

static void *blocks[BLOCKS];
static _Atomic uint64_t bad;

static void *alloc_all(void *arg) {
  (void)arg;
  for (size_t i = 0; i < BLOCKS; i++) {
    blocks[i] = tsr_malloc(BLOCK);
    if (blocks[i] == NULL) { atomic_fetch_add(&bad, 1); continue; }
    tsr_test_fill(blocks[i], BLOCK, i);
  }
  return NULL;   /* exits with every block live: its pages are abandoned */
}

typedef struct freer_s {
  size_t first, step;
  pthread_barrier_t *start;
} freer_t;

/* Free blocks first, first + step, ...: every thread frees into every
 * word of every page, at the same time as the others. */
static void *free_share(void *arg) {
  freer_t *f = arg;
  pthread_barrier_wait(f->start);
  for (size_t i = f->first; i < BLOCKS; i += f->step) {
    if (blocks[i] == NULL) continue;
    if (tsr_test_verify(blocks[i], BLOCK, i) != BLOCK) atomic_fetch_add(&bad, 1);
    tsr_free(blocks[i]);
  }
  return NULL;
}

/* Allocate blocks of the same class meanwhile (adopting abandoned pages
 * with free blocks), check and free them, and exit. */
static void *adopt_some(void *arg) {
  freer_t *f = arg;
  void *mine[2000];
  pthread_barrier_wait(f->start);
  for (size_t i = 0; i < 2000; i++) {
    mine[i] = tsr_malloc(BLOCK);
    if (mine[i] == NULL) { atomic_fetch_add(&bad, 1); continue; }
    tsr_test_fill(mine[i], BLOCK, 1000000 + i);
  }
  for (size_t i = 0; i < 2000; i++) {
    if (mine[i] == NULL) continue;
    if (tsr_test_verify(mine[i], BLOCK, 1000000 + i) != BLOCK) atomic_fetch_add(&bad, 1);
    tsr_free(mine[i]);
  }
  return NULL;
}

/* Thread A allocates and exits; n threads free its blocks, each its
 * share of them, with `adopters` threads allocating the class at the
 * same time.  Once all have exited, the class holds no more pages than
 * before A, without tsr_collect. */
static void run(int adopters) {
  uint64_t before_bytes = tsr_test_stats().allocated;
  uint64_t before_pages = class_pages();
  atomic_store(&bad, 0);
  pthread_t a;
  pthread_create(&a, NULL, alloc_all, NULL);
  pthread_join(a, NULL);
  cr_assert_gt(class_pages(), before_pages + 10, "the exited thread's pages: %llu, before %llu",
               (unsigned long long)class_pages(), (unsigned long long)before_pages);
  cr_assert_eq(tsr_check(), 0);

  int n = (int)tsr_test_threads();
  if (n < 2) n = 2;
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)(n + adopters));
  pthread_t t[64 + 4];
  freer_t f[64 + 4];
  cr_assert(n + adopters <= 64 + 4);
  for (int i = 0; i < n + adopters; i++) {
    f[i] = (freer_t){ (size_t)i, (size_t)n, &start };
    pthread_create(&t[i], NULL, i < n ? free_share : adopt_some, &f[i]);
  }
  for (int i = 0; i < n + adopters; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);

  cr_assert_eq(atomic_load(&bad), 0, "%llu blocks damaged or refused", (unsigned long long)atomic_load(&bad));
  cr_assert_eq(tsr_check(), 0, "tsr_check found problems");
  cr_assert_eq(class_pages(), before_pages, "%llu pages of %d-byte blocks left, %llu before",
               (unsigned long long)class_pages(), BLOCK, (unsigned long long)before_pages);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, before_bytes);
  cr_assert_eq(s.errors, 0);
}

Test(abandoned, frees_from_many_threads_give_the_pages_back) { run(0); }

Test(abandoned, frees_racing_with_adoption_give_the_pages_back) { run(2); }
