/* test_notify.c: a page queued on its owner's notify stack while the
 * owner is busy elsewhere (issue 18, item 7).
 *
 * A page its owner filled sits in the owner's full queue; the first free
 * into it from another thread marks it QUEUED and pushes it on the
 * owner's notify stack, and only that stack brings it back: the owner
 * takes its notices at its next allocation slow path.  tsr_check() looks
 * at the calling thread's heap (and the abandoned pages and the arenas),
 * so another thread's check does not see the page at all; the owner's
 * check did see it in its full queue, but took a page there that is on no
 * notify stack (a lost notice: its free blocks never reused, for good)
 * for sound.  Now the owner's check reports such a page.  The test drops
 * the owner's notify stack to make one (with tessera's own declarations,
 * alloc/core/internal.h), and then checks that with the stack back the
 * owner reuses every block the other thread freed.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <pthread.h>

#include "core/internal.h"

#define SIZE 48
#define FREED 10

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int step;   /* 1: the owner filled its page; 2: the other thread freed into it */
static void **blocks;
static size_t capacity;
static size_t check_queued, check_lost, check_back, reused;

static void wait_step(int s) {
  pthread_mutex_lock(&lock);
  while (step < s) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
}

static void set_step(int s) {
  pthread_mutex_lock(&lock);
  step = s;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
}

static void *owner(void *arg) {
  (void)arg;
  void *first = tsr_malloc(SIZE);
  tsr_page_t *pg = tsri_page_of(first);
  capacity = pg->capacity;
  /* the page full, and one block more: the slow path moves it to the full queue */
  blocks = tsr_malloc((capacity + 1) * sizeof *blocks);
  blocks[0] = first;
  for (size_t i = 1; i <= capacity; i++) blocks[i] = tsr_malloc(SIZE);
  set_step(1);
  wait_step(2);
  check_queued = tsr_check();
  /* a lost notice: the page stays QUEUED in the full queue, on no stack */
  tsr_heap_t *h = tsri_tl_heap;
  tsr_page_t *stack = atomic_exchange(&h->notify, NULL);
  check_lost = tsr_check();
  atomic_store(&h->notify, stack);
  check_back = tsr_check();
  /* the blocks the other thread freed come back to this thread once the
   * current page (the second) is full */
  size_t n = capacity + FREED;
  void **again = tsr_malloc(n * sizeof *again);
  for (size_t i = 0; i < n; i++) {
    again[i] = tsr_malloc(SIZE);
    if (tsri_page_of(again[i]) == pg) reused++;
  }
  for (size_t i = 0; i < n; i++) tsr_free(again[i]);
  tsr_free(again);
  for (size_t i = FREED; i <= capacity; i++) tsr_free(blocks[i]);
  tsr_free(blocks);
  return NULL;
}

Test(notify, queued_page_with_a_lost_notice_is_reported) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, owner, NULL), 0);
  wait_step(1);
  tsr_page_t *pg = tsri_page_of(blocks[0]);
  cr_assert_eq(tsri_page_of(blocks[capacity - 1]), pg, "the first blocks share a page");
  cr_assert_eq(atomic_load(&pg->xowner) & TSR_PAGE_STATE_MASK, (uintptr_t)TSR_PAGE_FULL,
               "the owner's filled page is in its full queue");
  for (size_t i = 0; i < FREED; i++) tsr_free(blocks[i]);
  cr_assert_eq(atomic_load(&pg->xowner) & TSR_PAGE_STATE_MASK, (uintptr_t)TSR_PAGE_QUEUED,
               "a free from another thread queued the page");
  cr_assert_eq(tsr_check(), 0, "another thread's check");
  set_step(2);
  pthread_join(t, NULL);
  cr_assert_eq(check_queued, 0, "the owner's check of its queued page");
  cr_assert_eq(check_lost, 1, "a queued page on no notify stack: %zu problems reported", check_lost);
  cr_assert_eq(check_back, 0, "the owner's check with its stack back");
  cr_assert_geq(reused, FREED, "%zu of the %d blocks freed by another thread were reused", reused, FREED);
  cr_assert_eq(tsr_check(), 0);
}
