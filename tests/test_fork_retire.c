/* test_fork_retire.c: a fork while another thread gives a page back.
 *
 * A heap's owner takes an empty page out of its queues and then gives its
 * span back to the arena, which takes the arena lock.  Fork holds that
 * lock (with all of tessera's) from its prepare handler to the copy of
 * the process, so a thread that comes to give a page back meanwhile waits
 * for it across the fork: its page is in no queue, and in the child,
 * where that thread is gone, nobody gave the span back (the child's
 * abandoning of the thread's heap walks the heap's queues).  This test
 * puts that thread there every time: a prepare handler of the program's
 * own, registered before tessera's so that it runs after it (prepare
 * handlers run in the reverse order), lets the thread free the page's
 * last block and waits until the thread sleeps on the arena lock.  The
 * child checks that the span is back in the arena.
 *
 * It reads tessera's internals (alloc/core/internal.h): the arena lock,
 * the page of a block.  No sampled records and no guarded sampling
 * (tests/CMakeLists.txt), so that the free waits on nothing else first;
 * the second test records every block, in the page's record area.
 */
#include "tsr_criterion.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr_test.h"

#include "core/internal.h"

#define BLOCK 1024

/* 0: nothing; 1: armed (the next fork lets the thread go); 2: the thread
 * may free the last block; 3: it sleeps on the arena lock; 4: the
 * handler ran before tessera's (the lock was free); 5: the thread never
 * slept there */
static _Atomic int stage;

static void prepare_after_tessera(void) {
  if (atomic_load(&stage) != 1) return;
  if (atomic_load(&tsri_arena_lock_get()->held) == 0) {
    atomic_store(&stage, 4);
    return;
  }
  atomic_store(&stage, 2);
  double give_up = tsr_test_now() + 10.0;
  while (atomic_load(&tsri_arena_lock_get()->held) != 2)
    if (tsr_test_now() > give_up) {
      atomic_store(&stage, 5);
      return;
    } else {
      sched_yield();
    }
  atomic_store(&stage, 3);
}

/* Before tessera registers its handlers (at its first allocation, or its
 * own constructor of the same priority, linked after this object). */
__attribute__((constructor(101))) static void register_prepare(void) {
  pthread_atfork(prepare_after_tessera, NULL, NULL);
}

typedef struct giver_s {
  tsr_page_t *page;   /* the page given back */
  _Atomic int ready;  /* all its blocks but one freed */
} giver_t;

static void *giver_main(void *arg) {
  giver_t *g = arg;
  enum { N = 4096 };
  static void *blocks[N];
  size_t n = 0, pages = 0;
  /* three pages of the class: the first is full, and not the current one */
  while (n < N && pages < 3) {
    blocks[n] = tsr_malloc(BLOCK);
    if (blocks[n] == NULL) return NULL;
    if (n == 0 || tsri_page_of(blocks[n]) != tsri_page_of(blocks[n - 1])) pages++;
    n++;
  }
  g->page = tsri_page_of(blocks[0]);
  void *last = NULL;
  for (size_t i = 0; i < n; i++) {
    if (tsri_page_of(blocks[i]) != g->page) continue;
    if (last == NULL) last = blocks[i];
    else tsr_free(blocks[i]);
  }
  atomic_store(&g->ready, 1);
  while (atomic_load(&stage) != 2)
    if (atomic_load(&stage) >= 4) return NULL;
    else sched_yield();
  tsr_free(last);   /* the page's last block: the page goes back */
  return NULL;
}

static void fork_while_giving_back(void) {
  giver_t g = { NULL, 0 };
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, giver_main, &g), 0);
  while (!atomic_load(&g.ready)) sched_yield();
  atomic_store(&stage, 1);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (atomic_load(&stage) != 3) _exit(30);
    if (g.page->kind == TSR_SLOT_HEAD) {
      fprintf(stderr, "child: the span of page %p is still taken\n", (void *)g.page->start);
      _exit(20);
    }
    /* no ticker thread for full records: ThreadSanitizer allows no
     * thread in the child of a process with threads */
    tsr_track_set(TSR_TRACK_SAMPLE);
    void *p = tsr_malloc(BLOCK);
    if (p == NULL) _exit(21);
    tsr_free(p);
    _exit(tsr_check() == 0 ? 0 : 22);
  }
  int reached = atomic_exchange(&stage, 0);
  pthread_join(t, NULL);
  cr_assert_geq(pid, 0, "fork failed");
  char why[64];
  bool exited_0 = tsr_test_exited_0(pid, why, sizeof why);
  cr_assert_neq(reached, 4, "the program's prepare handler ran before tessera's");
  cr_assert_eq(reached, 3, "the thread did not wait for the arena lock across the fork (stage %d)", reached);
  cr_assert(exited_0, "the fork child failed: %s", why);
  cr_assert_neq(g.page->kind, TSR_SLOT_HEAD, "the parent kept the span");
  cr_assert_eq(tsr_check(), 0);
}

/* The thread sleeps on the arena lock in span_free, the page owned by
 * nobody any more. */
Test(fork_retire, fork_while_a_thread_gives_a_page_back, .timeout = 60) { fork_while_giving_back(); }

/* With a record area, the thread sleeps on the arena lock earlier, where
 * it takes the area from the page (track/area.c), the page still its own. */
Test(fork_retire, fork_while_a_thread_gives_a_tracked_page_back, .timeout = 60) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  fork_while_giving_back();
}
