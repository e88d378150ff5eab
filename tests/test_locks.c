/* test_locks.c: tessera's locks, and its other waits, sleep rather than
 * spin for ever.
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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/* The reclaimer parks an idle heap while it trims its pages, and the
 * heap's owner entering its slow path meanwhile waits for it.  An owner of
 * real-time priority that waited by yielding, on the reclaimer's CPU, kept
 * the reclaimer (of normal priority) off it: the owner stalled until the
 * kernel's real-time throttling (at most 95 % of a second) let the
 * reclaimer run, or for good where throttling is off.  Here the
 * reclaimer's madvise (this program's own, which tessera calls) takes
 * 20 ms, so that the owner wakes to a parked heap; waiting for it, the
 * owner must sleep, not spend the wait on the CPU. */
#define PARK_ROUNDS 20
#define PARK_BLOCK 1000
#define PARK_BATCH 256
static void *park_keep[PARK_ROUNDS * 2 * (PARK_BATCH / 16)];   /* one in sixteen of each batch */
static double park_worst, park_worst_cpu;   /* seconds: a round's, and its CPU time */
static atomic_int park_slow;
static atomic_long owner_tid;

int madvise(void *addr, size_t len, int advice) {
  if (atomic_load(&park_slow) && advice == MADV_DONTNEED && syscall(SYS_gettid) != atomic_load(&owner_tid))
    tsr_test_sleep_ms(20);
  return (int)syscall(SYS_madvise, addr, len, advice);
}

/* A batch of blocks, all but one in sixteen freed: pages with whole free
 * OS pages in them for the reclaimer to trim. */
static void park_batch(void **keep) {   /* PARK_BATCH / 16 places */
  void *b[PARK_BATCH];
  for (int i = 0; i < PARK_BATCH; i++) b[i] = tsr_malloc(PARK_BLOCK);
  for (int i = 0; i < PARK_BATCH; i++) {
    if (i % 16 == 0) keep[i / 16] = b[i];
    else tsr_free(b[i]);
  }
}

static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *owner_thread(void *arg) {
  (void)arg;
  atomic_store(&owner_tid, (long)syscall(SYS_gettid));
  for (int r = 0; r < PARK_ROUNDS; r++) {
    park_batch(&park_keep[(2 * r) * (PARK_BATCH / 16)]);
    tsr_test_sleep_ms(6);   /* idle: the reclaimer parks the heap and trims it */
    double t0 = tsr_test_now(), c0 = thread_cpu();
    park_batch(&park_keep[(2 * r + 1) * (PARK_BATCH / 16)]);   /* its first slow path may wait for the park */
    double cpu = thread_cpu() - c0;
    if (cpu > park_worst_cpu) park_worst_cpu = cpu;
    if (tsr_test_now() - t0 > park_worst) park_worst = tsr_test_now() - t0;
  }
  return NULL;
}

Test(locks, a_real_time_owner_waits_for_the_reclaimer_without_spinning, .timeout = 120) {
  /* every thread on CPU 0: the reclaimer too, which starts here (a thread
   * of normal priority) once the process is a second old */
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) {
    cr_skip_test("pinning to CPU 0 is not permitted here");
    return;
  }
  tsr_test_sleep_ms(1100);
  /* slow paths of this thread start it, here, of normal priority */
  static void *warm[20000];
  for (size_t i = 0; i < 20000; i++) warm[i] = tsr_malloc(16 + (i * 37) % 1000);
  for (size_t i = 0; i < 20000; i++) tsr_free(warm[i]);
  atomic_store(&park_slow, 1);
  pthread_t owner;
  if (!start_rt(&owner, 10, owner_thread)) {
    cr_skip_test("real-time priority (SCHED_FIFO) is not permitted here");
    return;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 90;
  cr_assert_eq(pthread_timedjoin_np(owner, NULL, &until), 0, "the real-time owner did not finish within 90 s");
  atomic_store(&park_slow, 0);
  /* the rounds wait up to the park's length (about 20 ms a madvise); the
   * owner's CPU time is its own work, a spin would be all of the wait */
  cr_assert(park_worst_cpu < 0.05, "a round of the real-time owner took %.0f ms of CPU (%.0f ms in all): it "
               "spun behind the parked heap", park_worst_cpu * 1000, park_worst * 1000);
  for (size_t i = 0; i < sizeof park_keep / sizeof park_keep[0]; i++) tsr_free(park_keep[i]);
  cr_assert_eq(tsr_check(), 0);
}
