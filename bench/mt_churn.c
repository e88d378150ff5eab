/* mt_churn.c: independent churn per thread.
 *
 * BENCH_THREADS threads (default 4), each with its own table of 4096 slots
 * and the mix of st_mixed.c: every step frees a random slot's block and
 * allocates a new one there.  No block crosses threads, so this measures
 * how an allocator scales when the threads outnumber the cores (these
 * workloads run on 2 cores with 2 to 16 threads) and what each thread's
 * private pools cost in memory.
 */
#include "bench.h"

#include <pthread.h>

#define SLOTS 4096

static uint64_t steps_per_thread;

static size_t pick_size(bench_rng_t *r) {
  uint64_t x = bench_rand(r) & 127;
  if (x == 0) return bench_range(r, 4096, 32767);
  if (x < 16) return bench_range(r, 512, 4095);
  return bench_log_size(r, 8, 512);
}

static void *worker(void *arg) {
  uint64_t id = (uint64_t)(uintptr_t)arg;
  bench_rng_t r = { 1000 + id };
  unsigned char **p = calloc(SLOTS, sizeof *p);
  size_t *n = calloc(SLOTS, sizeof *n);
  if (p == NULL || n == NULL) bench_fail("out of memory");
  uint64_t sum = 0;
  for (uint64_t i = 0; i < steps_per_thread; i++) {
    size_t k = (size_t)(bench_rand(&r) % SLOTS);
    if (p[k] != NULL) {
      if (p[k][0] != (unsigned char)n[k]) bench_fail("a block changed while it was live (heap corruption)");
      sum += n[k];
      free(p[k]);
    }
    n[k] = pick_size(&r);
    p[k] = bench_xmalloc(n[k]);
    p[k][0] = (unsigned char)n[k];
  }
  for (size_t k = 0; k < SLOTS; k++) free(p[k]);
  free(p);
  free(n);
  return (void *)(uintptr_t)sum;
}

int main(void) {
  bench_start("mt_churn");
  int threads = (int)bench_env_num("BENCH_THREADS", 4);
  if (threads < 1) threads = 1;
  /* the same total work whatever the thread count */
  steps_per_thread = (uint64_t)(10000000 * bench_env_num("BENCH_SCALE", 1)) / (uint64_t)threads;
  pthread_t *t = bench_xmalloc(sizeof *t * (size_t)threads);
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0) bench_fail("pthread_create failed");
  uint64_t sum = 0;
  for (int i = 0; i < threads; i++) {
    void *ret;
    pthread_join(t[i], &ret);
    sum += (uint64_t)(uintptr_t)ret;
  }
  free(t);
  printf("threads: %d\n", threads);
  bench_end(steps_per_thread * (uint64_t)threads, sum);
  return 0;
}
