/* test_locks.c: tessera's locks sleep rather than spin for ever.
 *
 * Two threads of real-time priority (SCHED_FIFO) share one CPU and both
 * take tessera's large-block lock over and over.  The higher one sleeps a
 * little between its rounds, so the lower one runs then and is often
 * holding the lock when the higher one wakes and preempts it.  A lock
 * that spins and yields leaves the higher thread spinning for good: a
 * yield gives way only to threads of its own priority or above, so the
 * holder never runs again.  A lock that sleeps in the OS lets it finish.
 * Where the process may not use real-time priority or pin a thread to a
 * CPU, the test says so and is skipped.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "tsr_test.h"

#define ROUNDS 2000
#define LARGE (256 * 1024)   /* a block of its own: large.c's lock */

static atomic_int high_done;

static void *low_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&high_done)) {
    void *p = tsr_malloc(LARGE);
    tsr_free(p);
  }
  return NULL;
}

static void *high_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    struct timespec nap = { 0, 50000 };   /* 50 us: the low thread runs meanwhile */
    nanosleep(&nap, NULL);
    void *p = tsr_malloc(LARGE);
    tsr_free(p);
  }
  atomic_store(&high_done, 1);
  return NULL;
}

/* A thread of SCHED_FIFO priority prio on CPU 0; false when the process
 * may not (EPERM, or no such CPU in its set). */
static bool start_rt(pthread_t *t, int prio, void *(*fn)(void *)) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
  pthread_attr_setschedpolicy(&a, SCHED_FIFO);
  struct sched_param sp = { .sched_priority = prio };
  pthread_attr_setschedparam(&a, &sp);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  pthread_attr_setaffinity_np(&a, sizeof one, &one);
  int rc = pthread_create(t, &a, fn, NULL);
  pthread_attr_destroy(&a);
  return rc == 0;
}

Test(locks, real_time_threads_on_one_cpu_both_finish, .timeout = 120) {
  /* warm up: both threads' heaps exist, the large-block cache has room */
  tsr_free(tsr_malloc(LARGE));
  pthread_t low, high;
  if (!start_rt(&low, 10, low_thread)) {
    cr_skip_test("real-time priority (SCHED_FIFO) or pinning to CPU 0 is not permitted here");
    return;
  }
  if (!start_rt(&high, 20, high_thread)) {
    atomic_store(&high_done, 1);
    pthread_join(low, NULL);
    cr_skip_test("real-time priority (SCHED_FIFO) or pinning to CPU 0 is not permitted here");
    return;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 60;
  cr_assert_eq(pthread_timedjoin_np(high, NULL, &until), 0,
               "the high-priority thread did not finish %d rounds within 60 s: it spins behind "
               "a holder it keeps off the CPU", ROUNDS);
  cr_assert_eq(pthread_timedjoin_np(low, NULL, &until), 0);
  cr_assert_eq(tsr_check(), 0);
}
