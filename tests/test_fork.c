/* test_fork.c: fork from a process whose other threads are busy in the
 * allocator.
 *
 * The child must find a working heap: it allocates and frees, frees blocks
 * that the parent's other threads allocated before the fork (their pages
 * now belong to threads that do not exist in the child), passes tsr_check
 * and exits 0.  The parent forks several times while its threads keep
 * going, and checks every child's exit status.
 *
 * The child reports what went wrong through its exit code (and a line on
 * stderr), since it may not use Criterion's machinery.
 */
#include "tsr_criterion.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tsr_test.h"

#define HANDOFF 256     /* blocks each worker publishes before the forks */
#define WORKING 512     /* blocks each worker churns through */

typedef struct worker_s {
  pthread_t thread;
  uint64_t seed;
  uint8_t *handoff[HANDOFF];    /* written before `ready`, read-only after */
  size_t handoff_size[HANDOFF];
  _Atomic int *stop;
  _Atomic int *ready;
  _Atomic uint64_t *bad;
  _Atomic uint64_t ops;
} worker_t;

static size_t worker_size(uint64_t *rng) {
  uint64_t r = tsr_test_rand(rng);
  if ((r & 63) == 0) return (size_t)(r >> 40) % 600000 + 1;   /* large */
  if ((r & 7) == 0) return (size_t)(r >> 40) % 40000 + 1;
  return (size_t)(r >> 40) % 500 + 1;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  uint64_t rng = w->seed;
  for (int i = 0; i < HANDOFF; i++) {
    w->handoff_size[i] = worker_size(&rng);
    w->handoff[i] = tsr_malloc(w->handoff_size[i]);
    if (w->handoff[i] == NULL) atomic_fetch_add(w->bad, 1);
    else tsr_test_fill(w->handoff[i], w->handoff_size[i] < 256 ? w->handoff_size[i] : 256, w->seed + (uint64_t)i);
  }
  atomic_fetch_add(w->ready, 1);
  uint8_t *live[WORKING] = { 0 };
  size_t size[WORKING] = { 0 };
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    size_t k = (size_t)(tsr_test_rand(&rng) % WORKING);
    if (live[k] != NULL) {
      size_t n = size[k] < 64 ? size[k] : 64;
      if (tsr_test_verify(live[k], n, (uint64_t)k) != n) atomic_fetch_add(w->bad, 1);
      if (tsr_test_rand(&rng) & 1) {
        tsr_free(live[k]);
        live[k] = NULL;
      } else {
        size_t m = worker_size(&rng);
        uint8_t *q = tsr_realloc(live[k], m);
        if (q == NULL) { atomic_fetch_add(w->bad, 1); continue; }
        live[k] = q;
        size[k] = m;
        tsr_test_fill(q, m < 64 ? m : 64, (uint64_t)k);
      }
    } else {
      size[k] = worker_size(&rng);
      live[k] = tsr_malloc(size[k]);
      if (live[k] == NULL) { atomic_fetch_add(w->bad, 1); continue; }
      tsr_test_fill(live[k], size[k] < 64 ? size[k] : 64, (uint64_t)k);
    }
    atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
  }
  for (int k = 0; k < WORKING; k++) tsr_free(live[k]);
  return NULL;
}

/* ------------------------------------------------------------------------
 * The child
 * ---------------------------------------------------------------------- */

static void child_fail(int code, const char *what) {
  char buf[160];
  int n = snprintf(buf, sizeof buf, "fork child: %s\n", what);
  if (n > 0) (void)!write(2, buf, (size_t)n);
  _exit(code);
}

/* What the child does: runs on the forking thread's copy of the heap. */
static void child_work(worker_t *workers, int nworkers) {
  if (tsr_check() != 0) child_fail(10, "tsr_check failed right after fork");
  /* the blocks of the parent's other threads: contents intact, freeable */
  for (int t = 0; t < nworkers; t++) {
    for (int i = 0; i < HANDOFF; i++) {
      uint8_t *p = workers[t].handoff[i];
      if (p == NULL) continue;
      size_t n = workers[t].handoff_size[i] < 256 ? workers[t].handoff_size[i] : 256;
      if (!tsr_owns(p)) child_fail(11, "a parent thread's block is not live in the child");
      if (tsr_test_verify(p, n, workers[t].seed + (uint64_t)i) != n)
        child_fail(12, "a parent thread's block changed");
      if (i % 2 == 0) tsr_free(p);   /* the other half by a realloc below */
    }
  }
  /* allocate and free a lot, of every kind */
  enum { N = 4000 };
  static uint8_t *b[N];
  static size_t n[N];
  uint64_t rng = 4242;
  for (int i = 0; i < N; i++) {
    n[i] = worker_size(&rng);
    b[i] = tsr_malloc(n[i]);
    if (b[i] == NULL) child_fail(13, "malloc failed in the child");
    tsr_test_fill(b[i], n[i] < 128 ? n[i] : 128, (uint64_t)i);
  }
  for (int t = 0; t < nworkers; t++) {
    for (int i = 1; i < HANDOFF; i += 2) {
      uint8_t *p = workers[t].handoff[i];
      if (p == NULL) continue;
      uint8_t *q = tsr_realloc(p, workers[t].handoff_size[i] + 1000);
      if (q == NULL) child_fail(14, "realloc of a parent thread's block failed");
      tsr_free(q);
    }
  }
  for (int i = 0; i < N; i++) {
    size_t m = n[i] < 128 ? n[i] : 128;
    if (tsr_test_verify(b[i], m, (uint64_t)i) != m) child_fail(15, "a child block changed");
    tsr_free(b[i]);
  }
  tsr_collect();
  if (tsr_check() != 0) child_fail(16, "tsr_check failed at the end");
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  if (tsr_stats_get(&s) != 0) child_fail(17, "tsr_stats_get failed");
  if (s.errors != 0) child_fail(18, "the child reported bad calls");
  _exit(0);
}

static void fork_while_busy(int nworkers, int forks) {
  _Atomic int stop = 0, ready = 0;
  _Atomic uint64_t bad = 0;
  worker_t *w = calloc((size_t)nworkers, sizeof *w);
  for (int i = 0; i < nworkers; i++) {
    w[i].seed = (uint64_t)(i + 1) * 0x51ed27;
    w[i].stop = &stop;
    w[i].ready = &ready;
    w[i].bad = &bad;
    cr_assert_eq(pthread_create(&w[i].thread, NULL, worker_main, &w[i]), 0);
  }
  while (atomic_load(&ready) < nworkers) tsr_test_sleep_ms(1);
  /* the forking thread has a heap of its own too */
  void *mine = tsr_malloc(100);
  double until = tsr_test_now() + (double)tsr_test_seconds();
  int done = 0;
  while (done < forks || tsr_test_now() < until) {
    tsr_test_sleep_ms(tsr_test_env("TSR_TEST_FORK_GAP_MS", 10));   /* let the workers run */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) child_work(w, nworkers);
    int status = 0;
    /* a child that deadlocked on a lock held at fork time never exits:
     * give it a deadline */
    double deadline = tsr_test_now() + 30.0 * (TSR_TEST_SHADOW ? 4 : 1);
    pid_t got;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && tsr_test_now() < deadline)
      tsr_test_sleep_ms(5);
    if (got == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      atomic_store(&stop, 1);
      cr_assert_fail("fork child %d hung (deadlock on an allocator lock?)", done);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "fork child %d failed: %s %d", done, WIFEXITED(status) ? "exit" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    done++;
  }
  atomic_store(&stop, 1);
  uint64_t ops = 0;
  for (int i = 0; i < nworkers; i++) {
    pthread_join(w[i].thread, NULL);
    ops += atomic_load(&w[i].ops);
    for (int k = 0; k < HANDOFF; k++) tsr_free(w[i].handoff[k]);
  }
  tsr_free(mine);
  cr_assert_eq(atomic_load(&bad), 0);
  cr_assert_gt(ops, 0, "the workers never ran");
  free(w);
  cr_assert_eq(tsr_check(), 0);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, 0);
}

Test(fork, fork_while_threads_allocate, .timeout = 300) {
  fork_while_busy((int)tsr_test_threads(), 8);
}

/* Fork from a single-threaded process, the ordinary case, and fork again
 * from the child (the child's heap is a working heap). */
Test(fork, fork_single_threaded_and_nested) {
  void *p = tsr_malloc(1000);
  void *l = tsr_malloc(1 << 20);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    tsr_free(p);
    tsr_free(l);
    void *q = tsr_malloc(5000);
    pid_t grandchild = fork();
    if (grandchild == 0) {
      tsr_free(q);
      if (tsr_check() != 0) _exit(3);
      _exit(0);
    }
    int st = 0;
    waitpid(grandchild, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(4);
    tsr_free(q);
    _exit(tsr_check() == 0 ? 0 : 5);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
  /* the parent's blocks are untouched by what the child did */
  cr_assert(tsr_owns(p) && tsr_owns(l));
  tsr_free(p);
  tsr_free(l);
  cr_assert_eq(tsr_check(), 0);
}

/* A child made while another thread has exited leaving live blocks. */
static void *leave_blocks(void *arg) {
  void **out = arg;
  for (int i = 0; i < 100; i++) out[i] = tsr_malloc((size_t)i * 40 + 1);
  return NULL;
}

Test(fork, child_frees_blocks_of_exited_thread) {
  void *blocks[100];
  pthread_t t;
  pthread_create(&t, NULL, leave_blocks, blocks);
  pthread_join(t, NULL);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    for (int i = 0; i < 100; i++) tsr_free(blocks[i]);
    tsr_collect();
    _exit(tsr_check() == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
  for (int i = 0; i < 100; i++) tsr_free(blocks[i]);
  cr_assert_eq(tsr_check(), 0);
  cr_assert_eq(tsr_test_stats().allocated, 0);
}

/* A fork while another thread carves a span from slots never committed
 * before.  That thread takes the slots under the arena lock and commits
 * them (mprotect) after releasing it, so a fork can come between the
 * two; this test makes it come there every time: the program's own
 * mprotect, which tessera calls in place of the C library's, holds the
 * grower's first commit until the fork is made.  In the child, where the
 * grower is gone, the slots are free and the first carved for a span of
 * their size: it fills blocks there and exits 0 (a slot left
 * inaccessible kills it with SIGSEGV). */
#define GROW_BLOCK 30000

/* 0: commits go through; 1: the grower's next commit waits; 2: it
 * waits; 3: it waited too long (it held a lock the fork needs) */
static _Atomic int commit_hold;
static _Atomic pthread_t commit_holder;

int mprotect(void *addr, size_t len, int prot) {
  if (atomic_load(&commit_hold) == 1 && prot == (PROT_READ | PROT_WRITE) &&
      pthread_equal(pthread_self(), atomic_load(&commit_holder))) {
    atomic_store(&commit_hold, 2);
    double give_up = tsr_test_now() + 10.0;
    while (atomic_load(&commit_hold) == 2)
      if (tsr_test_now() > give_up) atomic_store(&commit_hold, 3);
      else sched_yield();
  }
  return (int)syscall(SYS_mprotect, addr, len, prot);
}

static void *grower_main(void *arg) {
  _Atomic int *grown = arg;
  /* the arena, its bitmaps and a first span (commits made under the
   * arena lock among them) before the hold */
  if (tsr_malloc(GROW_BLOCK) == NULL) return NULL;
  atomic_store(&commit_holder, pthread_self());
  atomic_store(&commit_hold, 1);
  /* until a span takes slots that need a commit */
  for (int i = 0; i < 1000 && atomic_load(&commit_hold) == 1; i++) {
    if (tsr_malloc(GROW_BLOCK) == NULL) break;
    atomic_fetch_add(grown, 1);
  }
  return NULL;
}

Test(fork, fork_while_a_thread_commits_new_slots, .timeout = 60) {
  _Atomic int grown = 0;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, grower_main, &grown), 0);
  double deadline = tsr_test_now() + 30.0;
  while (atomic_load(&commit_hold) != 2 && tsr_test_now() < deadline) sched_yield();
  cr_assert_eq(atomic_load(&commit_hold), 2, "the grower made no commit in %d blocks", atomic_load(&grown));
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 16; i++) {
      uint8_t *p = tsr_malloc(GROW_BLOCK);
      if (p == NULL) child_fail(20, "malloc failed in the child");
      memset(p, 0x5a, GROW_BLOCK);
    }
    _exit(tsr_check() == 0 ? 0 : 21);
  }
  int held = atomic_exchange(&commit_hold, 0);
  pthread_join(t, NULL);
  cr_assert_geq(pid, 0, "fork failed");
  cr_assert_eq(held, 2, "the commit was held under a lock fork needs: the fork came after it");
  char why[64];
  cr_assert(tsr_test_exited_0(pid, why, sizeof why), "the fork child failed: %s", why);
  cr_assert_eq(tsr_check(), 0);
}

/* A fork child that lives past a second starts a reclaimer of its own
 * (the parent's is not in it; reclaim.c), from a slow path, and an idle
 * child then gets its free memory back with no call of its own.  The
 * fork is made while another thread lives, as in
 * fork_while_threads_allocate, whose children start that thread too when
 * a loaded machine keeps them past their first second. */
typedef struct sibling_s {
  _Atomic int running, release;
} sibling_t;

/* The parent forks once this thread runs its own code, not while the
 * sanitizer runtime still starts it: under AddressSanitizer (clang 14's
 * and gcc 12's runtimes intercept no fork and so take none of their
 * allocator's locks around one) that start-up frees from pthread_getattr_np into
 * ASan's quarantine, which may take a region lock of ASan's allocator; a
 * fork then leaves the child that lock held for good, and every thread
 * the child makes waits on it in its own start-up, before any code of
 * ours.  The child's reclaimer did so in 1 to 2 runs of 30 here (more on
 * a quiet machine), and the child purged nothing. */
static void *wait_for_release(void *arg) {
  sibling_t *s = arg;
  atomic_store(&s->running, 1);
  while (!atomic_load(&s->release)) tsr_test_sleep_ms(1);
  return NULL;
}

static int child_reclaims(void) {
  enum { BLOCKS = 32768, SIZE = 1000 };
  static void *b[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    b[i] = tsr_malloc(SIZE);
    if (b[i] == NULL) return 20;
    memset(b[i], 0x2a, SIZE);
  }
  /* a second old: the next slow paths start the reclaimer (a sixteenth
   * notes the age, the one after starts it) */
  tsr_test_sleep_ms(1100);
  for (int round = 0; round < 4; round++) {
    void *big[96];
    for (int i = 0; i < 96; i++)
      if ((big[i] = tsr_malloc(65536 + (size_t)(i % 4) * 8192)) == NULL) return 21;
    for (int i = 0; i < 96; i++) tsr_free(big[i]);
  }
  uint64_t peak = tsr_test_stats().committed;
  for (int i = 0; i < BLOCKS; i++) tsr_free(b[i]);
  /* no allocation from here on: only the reclaimer purges, after the
   * purge delay and a period or two (more under a sanitizer) */
  uint64_t expect = (uint64_t)BLOCKS * SIZE * 3 / 4;
  for (int i = 0; i < 100 && peak - tsr_test_stats().committed < expect; i++) tsr_test_sleep_ms(100);
  if (peak - tsr_test_stats().committed < expect) {
    tsr_stats_t s = tsr_test_stats();
    fprintf(stderr, "child: committed %llu of a peak of %llu, %llu purges\n", (unsigned long long)s.committed,
            (unsigned long long)peak, (unsigned long long)s.purges);
    return 22;
  }
  return tsr_check() == 0 ? 0 : 23;
}

Test(fork, a_child_a_second_old_starts_its_own_reclaimer, .timeout = 120) {
  sibling_t sib = { 0, 0 };
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, wait_for_release, &sib), 0);
  while (!atomic_load(&sib.running)) tsr_test_sleep_ms(1);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) _exit(child_reclaims());
  atomic_store(&sib.release, 1);
  pthread_join(t, NULL);
  cr_assert_geq(pid, 0, "fork failed");
  char why[64];
  cr_assert(tsr_test_exited_0(pid, why, sizeof why), "the fork child failed: %s (22: nothing purged)", why);
}
