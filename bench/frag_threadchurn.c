/* frag_threadchurn.c: many short-lived threads.
 *
 * 8 waves of BENCH_THREADS threads (default 8).  Each thread ramps up to
 * BENCH_BUDGET_MB / 8 of blocks of 16..4095 bytes, frees 90 % of them at
 * random, hands the survivors to a shared pool, and exits.  Threads of
 * later waves free the pool's oldest blocks (cross-thread frees into the
 * heap of a thread that is gone), so the live bytes stay at one to two
 * waves' survivors.  glibc gives each thread an
 * arena of its own, which keeps what the thread left there; allocators
 * that hand a dead thread's pages to the next one do better.  Phases:
 * wave1 .. wave8 (after each wave has exited), settle.
 */
#include "bench.h"

#include <pthread.h>

#define WAVES 8

typedef struct blk_s { unsigned char *p; uint32_t n; } blk_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static blk_t *pool;          /* survivors handed over, freed by a later wave */
static size_t pool_len, pool_cap;
static uint64_t pool_bytes;
static size_t per_thread;    /* bytes each thread ramps up to */
static int nthreads;

static void *worker(void *arg) {
  bench_rng_t r = { (uint64_t)(uintptr_t)arg * 7919 + 1 };
  size_t cap = per_thread / 16 + 16, n = 0;
  blk_t *mine = bench_xmalloc(cap * sizeof *mine);
  size_t bytes = 0;
  while (bytes < per_thread && n < cap) {
    uint32_t len = (uint32_t)bench_log_size(&r, 16, 4096);
    mine[n].p = bench_xmalloc(len);
    mine[n].n = len;
    memset(mine[n].p, (int)(len & 0xff), len);
    bytes += len;
    n++;
  }
  /* free the oldest survivors of earlier waves, as many as this thread
   * will add, once the pool holds about a wave's worth */
  pthread_mutex_lock(&pool_lock);
  size_t adds = n / 10, keep = adds * (size_t)nthreads;
  size_t take = pool_len > keep ? pool_len - keep : 0;
  if (take > adds) take = adds;
  blk_t *old = bench_xmalloc((take + 1) * sizeof *old);
  memcpy(old, pool, take * sizeof *old);
  memmove(pool, pool + take, (pool_len - take) * sizeof *pool);
  pool_len -= take;
  for (size_t i = 0; i < take; i++) pool_bytes -= old[i].n;
  pthread_mutex_unlock(&pool_lock);
  for (size_t i = 0; i < take; i++) {
    if (old[i].p[old[i].n - 1] != (unsigned char)(old[i].n & 0xff)) bench_fail("heap corruption");
    free(old[i].p);
  }
  free(old);
  /* free 90 %, hand the rest over */
  pthread_mutex_lock(&pool_lock);
  for (size_t i = 0; i < n; i++) {
    if (bench_rand(&r) % 10 == 0 && pool_len < pool_cap) {
      pool[pool_len++] = mine[i];
      pool_bytes += mine[i].n;
    } else {
      free(mine[i].p);
    }
  }
  pthread_mutex_unlock(&pool_lock);
  free(mine);
  return NULL;
}

int main(void) {
  bench_start("frag_threadchurn");
  int threads = (int)bench_env_num("BENCH_THREADS", 8);
  if (threads < 1) threads = 1;
  nthreads = threads;
  size_t budget = (size_t)(bench_env_num("BENCH_BUDGET_MB", 64) * 1048576.0);
  per_thread = budget / 8;
  pool_cap = (size_t)threads * WAVES * (per_thread / 16 / 10 + 16);
  pool = bench_xmalloc(pool_cap * sizeof *pool);
  pthread_t *t = bench_xmalloc(sizeof *t * (size_t)threads);
  char name[32];
  for (int w = 0; w < WAVES; w++) {
    for (int i = 0; i < threads; i++)
      if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(w * threads + i + 1)) != 0)
        bench_fail("pthread_create failed");
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    snprintf(name, sizeof name, "wave%d", w + 1);
    bench_phase(name, pool_bytes);
  }
  bench_settle(pool_bytes);
  uint64_t sum = pool_bytes;
  for (size_t i = 0; i < pool_len; i++) free(pool[i].p);
  free(pool);
  free(t);
  bench_end((uint64_t)WAVES * (uint64_t)threads, sum);
  return 0;
}
