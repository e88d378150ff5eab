/* test_large_remap.c: the large-block lock and mremap (issue 18, item 7).
 *
 * Blocks above 4 MiB are mappings of their own, which realloc resizes and
 * a cached one is fitted to a new request with mremap.  A shrink frees the
 * pages of the tail, as long as a munmap of them: tens of milliseconds for
 * a GiB, during which another thread's large malloc and free, and a fork
 * (whose prepare handler takes every lock), waited when large.c held its
 * lock across the call.  Now it does not across an mremap that frees
 * pages.
 *
 * The test does not time anything.  It defines mremap itself (the
 * program's definition comes before the C library's), and while tessera's
 * mremap of a shrink runs on this thread, another thread allocates and
 * frees a large block and forks: that must finish while the mremap waits
 * for it.  With the lock held it cannot, and after a deadline the test
 * fails, naming the call.
 */
#define _GNU_SOURCE   /* mremap's flags, before any system header */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <pthread.h>
#include <stdatomic.h>

#define MiB ((size_t)1 << 20)
#define DEADLINE_S 10.0

static pthread_t prober;
static _Atomic int probe_asked, probe_done;
static _Atomic long probes, probes_blocked;

/* The other thread: at each request, a large block allocated, written and
 * freed, and a fork whose child leaves at once. */
static void *probe_main(void *arg) {
  (void)arg;
  for (;;) {
    while (!atomic_load(&probe_asked)) tsr_test_sleep_ms(1);
    atomic_store(&probe_asked, 0);
    char *p = tsr_malloc(6 * MiB);
    if (p != NULL) p[0] = 1;
    tsr_free(p);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    atomic_store(&probe_done, 1);
  }
  return NULL;
}

/* tessera's mremap, from this test's thread, when it frees pages: the
 * other thread must get through meanwhile. */
void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
  if (new_size < old_size && !pthread_equal(pthread_self(), prober)) {
    atomic_store(&probe_done, 0);
    atomic_store(&probe_asked, 1);
    double deadline = tsr_test_now() + DEADLINE_S;
    while (!atomic_load(&probe_done) && tsr_test_now() < deadline) tsr_test_sleep_ms(1);
    atomic_fetch_add(&probes, 1);
    /* a probe that blocked goes on once the lock is given back */
    if (!atomic_load(&probe_done)) atomic_fetch_add(&probes_blocked, 1);
  }
  va_list ap;
  va_start(ap, flags);
  void *moved = tsr_test_mremap_call(old, old_size, new_size, flags, ap);
  va_end(ap);
  return moved;
}

static void start_prober(void) {
  cr_assert_eq(pthread_create(&prober, NULL, probe_main, NULL), 0);
}

Test(large_remap, realloc_shrink_leaves_the_lock_free, .timeout = 120) {
  start_prober();
  char *p = tsr_malloc(64 * MiB);
  cr_assert_not_null(p);
  tsr_test_fill(p, 64 * MiB, 7);
  char *q = tsr_realloc(p, 12 * MiB);
  cr_assert_eq(q, p, "a shrink stays in place");
  cr_assert_eq(tsr_test_verify(q, 12 * MiB, 7), 12 * MiB, "the kept part keeps its contents");
  cr_assert_eq(tsr_usable_size(q), 12 * MiB);
  tsr_free(q);
  cr_assert_geq(atomic_load(&probes), 1, "tessera's realloc did not call mremap");
  cr_assert_eq(atomic_load(&probes_blocked), 0,
               "another thread's large malloc, free and fork waited for realloc's mremap (%ld of %ld)",
               (long)atomic_load(&probes_blocked), (long)atomic_load(&probes));
  cr_assert_eq(tsr_check(), 0);
}

Test(large_remap, cached_mapping_fitted_without_the_lock, .timeout = 120) {
  start_prober();
  /* freed, a 24 MiB block stays cached (the cache holds 32 MiB at least);
   * a 12 MiB request takes it and shrinks it */
  char *p = tsr_malloc(24 * MiB);
  cr_assert_not_null(p);
  p[0] = 1;
  tsr_free(p);
  char *q = tsr_malloc(12 * MiB);
  cr_assert_not_null(q);
  tsr_test_fill(q, 12 * MiB, 9);
  cr_assert_eq(tsr_test_verify(q, 12 * MiB, 9), 12 * MiB);
  tsr_free(q);
  cr_assert_geq(atomic_load(&probes), 1, "the cached mapping was not resized with mremap");
  cr_assert_eq(atomic_load(&probes_blocked), 0,
               "another thread's large malloc, free and fork waited for the cache's mremap (%ld of %ld)",
               (long)atomic_load(&probes_blocked), (long)atomic_load(&probes));
  cr_assert_eq(tsr_check(), 0);
}
