/* mt_falseshare.c: false-sharing sensitivity: small objects from one
 * thread written by another.
 *
 * Passive: the main thread allocates one small object (8..64 bytes) per
 * worker, back to back, and hands them out; each worker writes its object
 * many times, frees it and allocates a new one of the same size, which it
 * writes in turn.  An allocator that puts the workers' objects on one
 * cache line (because they came from one thread's page) makes every write
 * a cache-line transfer between cores.  Active: the workers also allocate
 * small objects concurrently and write them; an allocator that serves two
 * threads from one cache line shows it the same way.
 */
#include "bench.h"

#include <pthread.h>

static uint64_t rounds, writes;

typedef struct job_s { volatile unsigned char *obj; size_t size; uint64_t sum; } job_t;

static void hammer(volatile unsigned char *p, size_t n) {
  for (uint64_t w = 0; w < writes; w++)
    for (size_t i = 0; i < n; i += 8) p[i]++;
}

static void *worker(void *arg) {
  job_t *job = arg;
  volatile unsigned char *p = job->obj;
  for (uint64_t r = 0; r < rounds; r++) {
    hammer(p, job->size);
    job->sum += p[0];
    free((void *)p);
    p = bench_xmalloc(job->size);
    p[0] = 0;
  }
  free((void *)p);
  return NULL;
}

int main(void) {
  bench_start("mt_falseshare");
  int threads = (int)bench_env_num("BENCH_THREADS", 4);
  if (threads < 1) threads = 1;
  double scale = bench_env_num("BENCH_SCALE", 1);
  rounds = 20000;
  writes = (uint64_t)(2000 * scale / threads * 4);
  if (writes < 1) writes = 1;
  job_t *job = bench_xmalloc(sizeof *job * (size_t)threads);
  pthread_t *t = bench_xmalloc(sizeof *t * (size_t)threads);
  bench_rng_t r = { 99 };
  for (int i = 0; i < threads; i++) {
    job[i].size = bench_range(&r, 1, 8) * 8;
    job[i].obj = bench_xmalloc(job[i].size);
    job[i].obj[0] = 0;
    job[i].sum = 0;
  }
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, worker, &job[i]) != 0) bench_fail("pthread_create failed");
  uint64_t sum = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    sum += job[i].sum;
  }
  free(job);
  free(t);
  printf("threads: %d\n", threads);
  bench_end(rounds * writes * (uint64_t)threads, sum);
  return 0;
}
