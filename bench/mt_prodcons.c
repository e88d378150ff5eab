/* mt_prodcons.c: producers and consumers with cross-thread frees, the
 * shape of a server whose I/O threads build requests that workers handle
 * and free.
 *
 * BENCH_THREADS threads (default 4), half producers and half consumers
 * (at least one of each).  A producer allocates messages of 32..2047 bytes
 * (log-uniform; one in 64 of 4..64 KiB), fills them, and hands them over
 * in batches of 64 through a bounded queue; a consumer checks and frees
 * them.  Every block is freed by a thread other than the one that
 * allocated it.
 */
#include "bench.h"

#include <pthread.h>

#define BATCH 64
#define QCAP 64   /* batches in flight */

typedef struct msg_s { uint32_t len; uint32_t tag; unsigned char body[]; } msg_t;
typedef struct batch_s { msg_t *m[BATCH]; } batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  batch_t *q[QCAP];
  unsigned head, count;
  int producers_left;
} Q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };

static uint64_t msgs_per_producer;

static void put(batch_t *b) {
  pthread_mutex_lock(&Q.lock);
  while (Q.count == QCAP) pthread_cond_wait(&Q.not_full, &Q.lock);
  Q.q[(Q.head + Q.count++) % QCAP] = b;
  pthread_cond_signal(&Q.not_empty);
  pthread_mutex_unlock(&Q.lock);
}

static batch_t *take(void) {
  pthread_mutex_lock(&Q.lock);
  while (Q.count == 0 && Q.producers_left > 0) pthread_cond_wait(&Q.not_empty, &Q.lock);
  batch_t *b = NULL;
  if (Q.count > 0) {
    b = Q.q[Q.head];
    Q.head = (Q.head + 1) % QCAP;
    Q.count--;
    pthread_cond_signal(&Q.not_full);
  }
  pthread_mutex_unlock(&Q.lock);
  return b;
}

static void *producer(void *arg) {
  bench_rng_t r = { 300 + (uint64_t)(uintptr_t)arg };
  for (uint64_t done = 0; done < msgs_per_producer; done += BATCH) {
    batch_t *b = bench_xmalloc(sizeof *b);
    for (int i = 0; i < BATCH; i++) {
      size_t len = (bench_rand(&r) & 63) == 0 ? bench_range(&r, 4096, 65535) : bench_log_size(&r, 32, 2048);
      msg_t *m = bench_xmalloc(sizeof *m + len);
      m->len = (uint32_t)len;
      m->tag = (uint32_t)(len * 2654435761u);
      memset(m->body, (int)(len & 0xff), len);
      b->m[i] = m;
    }
    put(b);
  }
  pthread_mutex_lock(&Q.lock);
  Q.producers_left--;
  pthread_cond_broadcast(&Q.not_empty);
  pthread_mutex_unlock(&Q.lock);
  return NULL;
}

static void *consumer(void *arg) {
  uint64_t sum = 0;
  batch_t *b;
  while ((b = take()) != NULL) {
    for (int i = 0; i < BATCH; i++) {
      msg_t *m = b->m[i];
      if (m->tag != (uint32_t)(m->len * 2654435761u) || m->body[m->len - 1] != (unsigned char)(m->len & 0xff))
        bench_fail("a message changed in flight (heap corruption)");
      sum += m->len;
      free(m);
    }
    free(b);
  }
  return (void *)(uintptr_t)sum;
}

int main(void) {
  bench_start("mt_prodcons");
  int threads = (int)bench_env_num("BENCH_THREADS", 4);
  if (threads < 2) threads = 2;
  int np = threads / 2, nc = threads - np;
  msgs_per_producer = (uint64_t)(2000000 * bench_env_num("BENCH_SCALE", 1)) / (uint64_t)np;
  msgs_per_producer = (msgs_per_producer + BATCH - 1) / BATCH * BATCH;
  Q.producers_left = np;
  pthread_t *t = bench_xmalloc(sizeof *t * (size_t)threads);
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, i < np ? producer : consumer, (void *)(uintptr_t)i) != 0)
      bench_fail("pthread_create failed");
  uint64_t sum = 0;
  for (int i = 0; i < threads; i++) {
    void *ret;
    pthread_join(t[i], &ret);
    if (i >= np) sum += (uint64_t)(uintptr_t)ret;
  }
  free(t);
  printf("threads: %d producers, %d consumers\n", np, nc);
  bench_end(msgs_per_producer * (uint64_t)np, sum);
  return 0;
}
