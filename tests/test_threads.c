/* test_threads.c: several threads at once.
 *
 * Producers hand blocks to consumers through a queue (every free is a
 * remote free), threads exit with live blocks that others free later, many
 * short-lived threads come and go, and memory freed after its thread
 * exited is reused rather than piling up.  Contents are checked at every
 * hand-over; the heap is checked with tsr_check() at the end.
 *
 * TSR_TEST_THREADS (default 4) and TSR_TEST_SECONDS (default 1) scale the
 * tests; keep them small by default, TSan runs this ten times slower.
 */
#include "tsr_criterion.h"

#include <pthread.h>
#include <stdatomic.h>

#include "tsr_test.h"

/* A random size: mostly small, some medium, a few large. */
static size_t random_size(uint64_t *rng) {
  uint64_t r = tsr_test_rand(rng);
  switch (r & 15) {
  case 0: return (size_t)(r >> 32) % 400000 + 1;   /* large now and then */
  case 1: case 2: return (size_t)(r >> 32) % 30000 + 1;
  default: return (size_t)(r >> 32) % 600 + 1;
  }
}

static void heap_is_sound_and_empty(uint64_t allocated_before) {
  tsr_collect();
  cr_assert_eq(tsr_check(), 0, "tsr_check found problems");
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, allocated_before, "live bytes %llu, expected %llu",
               (unsigned long long)s.allocated, (unsigned long long)allocated_before);
  cr_assert_eq(s.large_live, 0);
  cr_assert_eq(s.errors, 0);
}

/* ------------------------------------------------------------------------
 * First calls
 * ---------------------------------------------------------------------- */

static pthread_barrier_t first_barrier;

static void *first_small(void *arg) {
  pthread_barrier_wait(&first_barrier);
  void *p = tsr_malloc(100);   /* makes this thread's heap */
  *(void **)arg = p;
  return NULL;
}

static void *first_large(void *arg) {
  pthread_barrier_wait(&first_barrier);
  void *p = tsr_malloc(1 << 20);   /* a large block, no heap needed */
  *(void **)arg = p;
  return NULL;
}

/* The very first calls of a process, from two threads at once: whatever
 * tessera sets up lazily must be safe to set up concurrently.  (The TSan
 * build checks this one: it reports any unsynchronised lazy init.) */
Test(threads, first_calls_from_two_threads_at_once) {
  void *a = NULL, *b = NULL;
  pthread_t ta, tb;
  pthread_barrier_init(&first_barrier, NULL, 2);
  pthread_create(&ta, NULL, first_small, &a);
  pthread_create(&tb, NULL, first_large, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_barrier_destroy(&first_barrier);
  cr_assert(a != NULL && b != NULL);
  cr_assert_geq(tsr_usable_size(b), (size_t)1 << 20);
  tsr_free(a);
  tsr_free(b);
  heap_is_sound_and_empty(0);
}

/* ------------------------------------------------------------------------
 * Producer / consumer
 * ---------------------------------------------------------------------- */

typedef struct item_s {
  uint8_t *p;
  size_t size;
  uint64_t tag;
} item_t;

#define QUEUE_CAP 1024

typedef struct queue_s {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  item_t items[QUEUE_CAP];
  size_t head, count;
  int producers_left;
} queue_t;

static void queue_init(queue_t *q, int producers) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  q->producers_left = producers;
}

static void queue_push(queue_t *q, item_t it) {
  pthread_mutex_lock(&q->lock);
  while (q->count == QUEUE_CAP) pthread_cond_wait(&q->not_full, &q->lock);
  q->items[(q->head + q->count++) % QUEUE_CAP] = it;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* false when the queue is empty and every producer is done */
static bool queue_pop(queue_t *q, item_t *it) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && q->producers_left > 0) pthread_cond_wait(&q->not_empty, &q->lock);
  bool got = q->count > 0;
  if (got) {
    *it = q->items[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return got;
}

static void producer_done(queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->producers_left--;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

typedef struct pc_arg_s {
  queue_t *q;
  uint64_t seed;
  double until;
  _Atomic uint64_t *bad;        /* content mismatches seen */
  _Atomic uint64_t *handed;     /* blocks passed through the queue */
} pc_arg_t;

/* Only the start and end of big blocks are written and checked, to keep
 * the test fast; small blocks in full. */
static void mark(uint8_t *p, size_t n, uint64_t tag) {
  if (n <= 4096) {
    tsr_test_fill(p, n, tag);
  } else {
    tsr_test_fill(p, 2048, tag);
    tsr_test_fill(p + n - 2048, 2048, tag + 1);
  }
}

static bool marked(const uint8_t *p, size_t n, uint64_t tag) {
  if (n <= 4096) return tsr_test_verify(p, n, tag) == n;
  return tsr_test_verify(p, 2048, tag) == 2048 && tsr_test_verify(p + n - 2048, 2048, tag + 1) == 2048;
}

static void *producer(void *arg) {
  pc_arg_t *a = arg;
  uint64_t rng = a->seed;
  uint64_t tag = a->seed << 32;
  /* some blocks this thread frees itself, mixed with the ones it hands on */
  uint8_t *own[64] = { 0 };
  size_t own_size[64] = { 0 };
  while (tsr_test_now() < a->until) {
    for (int burst = 0; burst < 64; burst++) {
      size_t n = random_size(&rng);
      uint8_t *p = (rng & 0x10000) ? tsr_calloc(1, n) : tsr_malloc(n);
      if (p == NULL) {
        atomic_fetch_add(a->bad, 1);
        continue;
      }
      mark(p, n, ++tag);
      if (burst & 1) {
        queue_push(a->q, (item_t){ p, n, tag });
        atomic_fetch_add(a->handed, 1);
      } else {
        size_t k = (size_t)burst / 2;
        if (own[k] != NULL) {
          if (!marked(own[k], own_size[k], (uint64_t)(uintptr_t)own[k])) atomic_fetch_add(a->bad, 1);
          tsr_free(own[k]);
        }
        mark(p, n, (uint64_t)(uintptr_t)p);
        own[k] = p;
        own_size[k] = n;
      }
    }
  }
  for (int k = 0; k < 64; k++) {
    if (own[k] == NULL) continue;
    if (!marked(own[k], own_size[k], (uint64_t)(uintptr_t)own[k])) atomic_fetch_add(a->bad, 1);
    tsr_free(own[k]);
  }
  producer_done(a->q);
  return NULL;
}

static void *consumer(void *arg) {
  pc_arg_t *a = arg;
  uint64_t rng = a->seed;
  item_t it;
  while (queue_pop(a->q, &it)) {
    if (!marked(it.p, it.size, it.tag)) atomic_fetch_add(a->bad, 1);
    if ((tsr_test_rand(&rng) & 7) == 0) {
      /* realloc a block allocated by another thread */
      size_t n = random_size(&rng);
      uint8_t *q = tsr_realloc(it.p, n);
      if (q == NULL) {
        atomic_fetch_add(a->bad, 1);
        tsr_free(it.p);
        continue;
      }
      size_t keep = n < it.size ? n : it.size;
      if (keep <= 4096 && it.size <= 4096 && tsr_test_verify(q, keep, it.tag) != keep)
        atomic_fetch_add(a->bad, 1);
      it.p = q;
    }
    tsr_free(it.p);
  }
  return NULL;
}

Test(threads, producer_consumer_cross_thread_frees, .timeout = 300) {
  uint64_t before = tsr_test_stats().allocated;
  int n = (int)tsr_test_threads();
  int producers = n / 2 > 0 ? n / 2 : 1;
  int consumers = n - producers > 0 ? n - producers : 1;
  queue_t *q = malloc(sizeof *q);
  queue_init(q, producers);
  _Atomic uint64_t bad = 0, handed = 0;
  double until = tsr_test_now() + (double)tsr_test_seconds();
  pthread_t *t = calloc((size_t)(producers + consumers), sizeof *t);
  pc_arg_t *args = calloc((size_t)(producers + consumers), sizeof *args);
  for (int i = 0; i < producers + consumers; i++) {
    args[i] = (pc_arg_t){ q, (uint64_t)i * 7919 + 17, until, &bad, &handed };
    cr_assert_eq(pthread_create(&t[i], NULL, i < producers ? producer : consumer, &args[i]), 0);
  }
  for (int i = 0; i < producers + consumers; i++) pthread_join(t[i], NULL);
  cr_assert_eq(atomic_load(&bad), 0, "%llu blocks with wrong contents or failed calls",
               (unsigned long long)atomic_load(&bad));
  cr_assert_gt(atomic_load(&handed), 0);
  free(t);
  free(args);
  free(q);
  heap_is_sound_and_empty(before);
}

/* ------------------------------------------------------------------------
 * Threads that exit with live blocks
 * ---------------------------------------------------------------------- */

typedef struct batch_s {
  uint8_t **blocks;
  size_t *sizes;
  size_t count;
  uint64_t seed;
  _Atomic uint64_t *bad;
} batch_t;

static void *alloc_and_exit(void *arg) {
  batch_t *b = arg;
  uint64_t rng = b->seed;
  for (size_t i = 0; i < b->count; i++) {
    b->sizes[i] = random_size(&rng);
    b->blocks[i] = tsr_malloc(b->sizes[i]);
    if (b->blocks[i] == NULL) {
      atomic_fetch_add(b->bad, 1);
      continue;
    }
    mark(b->blocks[i], b->sizes[i], b->seed + i);
  }
  /* free a third itself, so its pages are partly used when it exits */
  for (size_t i = 0; i < b->count; i += 3) {
    tsr_free(b->blocks[i]);
    b->blocks[i] = NULL;
  }
  return NULL;
}

static void *free_batch(void *arg) {
  batch_t *b = arg;
  for (size_t i = 0; i < b->count; i++) {
    if (b->blocks[i] == NULL) continue;
    if (!marked(b->blocks[i], b->sizes[i], b->seed + i)) atomic_fetch_add(b->bad, 1);
    tsr_free(b->blocks[i]);
  }
  return NULL;
}

Test(threads, exited_threads_blocks_freed_by_others, .timeout = 300) {
  uint64_t before = tsr_test_stats().allocated;
  int n = (int)tsr_test_threads();
  size_t per = 3000;
  _Atomic uint64_t bad = 0;
  double until = tsr_test_now() + (double)tsr_test_seconds();
  int rounds = 0;
  do {
    batch_t *b = calloc((size_t)n, sizeof *b);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
      b[i] = (batch_t){ calloc(per, sizeof(uint8_t *)), calloc(per, sizeof(size_t)), per,
                        (uint64_t)(rounds * 1000 + i + 1) * 0x10001, &bad };
      pthread_create(&t[i], NULL, alloc_and_exit, &b[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    /* every owner is gone: the heap still knows its blocks */
    for (int i = 0; i < n; i++)
      for (size_t k = 1; k < per; k += 97)
        if (b[i].blocks[k] != NULL) cr_assert(tsr_owns(b[i].blocks[k]));
    cr_assert_eq(tsr_check(), 0);
    /* now other threads free them: batch i by thread (i + 1) % n */
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, free_batch, &b[(i + 1) % n]);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < n; i++) {
      free(b[i].blocks);
      free(b[i].sizes);
    }
    free(b);
    free(t);
    rounds++;
  } while (tsr_test_now() < until);
  cr_assert_eq(atomic_load(&bad), 0);
  heap_is_sound_and_empty(before);
}

/* Blocks of exited threads freed by the main thread, which never owned
 * them, while new threads adopt the abandoned pages. */
Test(threads, abandoned_pages_are_adopted, .timeout = 300) {
  uint64_t before = tsr_test_stats().allocated;
  int n = (int)tsr_test_threads();
  size_t per = 2000;
  _Atomic uint64_t bad = 0;
  batch_t *old = calloc((size_t)n, sizeof *old);
  pthread_t *t = calloc((size_t)n, sizeof *t);
  for (int i = 0; i < n; i++) {
    old[i] = (batch_t){ calloc(per, sizeof(uint8_t *)), calloc(per, sizeof(size_t)), per,
                        (uint64_t)(i + 1) * 0x777, &bad };
    pthread_create(&t[i], NULL, alloc_and_exit, &old[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  /* new threads allocate (adopting the abandoned pages) while main frees
   * half of the old blocks */
  batch_t *fresh = calloc((size_t)n, sizeof *fresh);
  for (int i = 0; i < n; i++) {
    fresh[i] = (batch_t){ calloc(per, sizeof(uint8_t *)), calloc(per, sizeof(size_t)), per,
                          (uint64_t)(i + 1) * 0x999, &bad };
    pthread_create(&t[i], NULL, alloc_and_exit, &fresh[i]);
  }
  for (int i = 0; i < n; i++) {
    for (size_t k = 0; k < per; k += 2) {
      if (old[i].blocks[k] == NULL) continue;
      if (!marked(old[i].blocks[k], old[i].sizes[k], old[i].seed + k)) atomic_fetch_add(&bad, 1);
      tsr_free(old[i].blocks[k]);
      old[i].blocks[k] = NULL;
    }
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  cr_assert_eq(tsr_check(), 0);
  for (int i = 0; i < n; i++) {
    free_batch(&old[i]);
    free_batch(&fresh[i]);
    free(old[i].blocks);
    free(old[i].sizes);
    free(fresh[i].blocks);
    free(fresh[i].sizes);
  }
  free(old);
  free(fresh);
  free(t);
  cr_assert_eq(atomic_load(&bad), 0);
  heap_is_sound_and_empty(before);
}

/* ------------------------------------------------------------------------
 * Many short-lived threads
 * ---------------------------------------------------------------------- */

typedef struct short_arg_s {
  uint64_t seed;
  uint8_t *leftover;            /* a block left for main to free */
  size_t leftover_size;
  _Atomic uint64_t *bad;
} short_arg_t;

static void *short_lived(void *arg) {
  short_arg_t *a = arg;
  uint64_t rng = a->seed;
  void *tmp[32];
  size_t sz[32];
  for (int i = 0; i < 32; i++) {
    sz[i] = random_size(&rng) % 5000 + 1;
    tmp[i] = tsr_malloc(sz[i]);
    if (tmp[i] == NULL) { atomic_fetch_add(a->bad, 1); continue; }
    mark(tmp[i], sz[i], a->seed + (uint64_t)i);
  }
  for (int i = 0; i < 32; i++) {
    if (tmp[i] == NULL) continue;
    if (!marked(tmp[i], sz[i], a->seed + (uint64_t)i)) atomic_fetch_add(a->bad, 1);
    tsr_free(tmp[i]);
  }
  a->leftover_size = random_size(&rng);
  a->leftover = tsr_malloc(a->leftover_size);
  if (a->leftover) mark(a->leftover, a->leftover_size, a->seed);
  return NULL;
}

Test(threads, many_short_lived_threads, .timeout = 300) {
  uint64_t before = tsr_test_stats().allocated;
  int width = (int)tsr_test_threads();
  _Atomic uint64_t bad = 0;
  double until = tsr_test_now() + (double)tsr_test_seconds();
  uint64_t seed = 1;
  long total = 0;
  short_arg_t *args = calloc((size_t)width, sizeof *args);
  pthread_t *t = calloc((size_t)width, sizeof *t);
  do {
    for (int i = 0; i < width; i++) {
      args[i] = (short_arg_t){ seed++ * 0x9E37, NULL, 0, &bad };
      cr_assert_eq(pthread_create(&t[i], NULL, short_lived, &args[i]), 0);
    }
    for (int i = 0; i < width; i++) {
      pthread_join(t[i], NULL);
      cr_assert_not_null(args[i].leftover);
      cr_assert(marked(args[i].leftover, args[i].leftover_size, args[i].seed));
      tsr_free(args[i].leftover);
    }
    total += width;
  } while (tsr_test_now() < until || total < 64);
  free(args);
  free(t);
  cr_assert_eq(atomic_load(&bad), 0);
  heap_is_sound_and_empty(before);
}

/* ------------------------------------------------------------------------
 * Statistics read while other threads work (a server's metrics thread)
 * ---------------------------------------------------------------------- */

typedef struct churn_arg_s {
  _Atomic int *stop;
  uint64_t seed;
} churn_arg_t;

static void *churn(void *arg) {
  churn_arg_t *a = arg;
  uint64_t rng = a->seed;
  void *live[256] = { 0 };
  while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
    size_t k = (size_t)(tsr_test_rand(&rng) % 256);
    if (live[k]) {
      tsr_free(live[k]);
      live[k] = NULL;
    } else {
      live[k] = tsr_malloc(random_size(&rng));
    }
  }
  for (int k = 0; k < 256; k++) tsr_free(live[k]);
  return NULL;
}

Test(threads, stats_while_threads_allocate, .timeout = 300) {
  int n = (int)tsr_test_threads();
  _Atomic int stop = 0;
  pthread_t *t = calloc((size_t)n, sizeof *t);
  churn_arg_t *a = calloc((size_t)n, sizeof *a);
  for (int i = 0; i < n; i++) {
    a[i] = (churn_arg_t){ &stop, (uint64_t)i * 101 + 1 };
    pthread_create(&t[i], NULL, churn, &a[i]);
  }
  double until = tsr_test_now() + (double)tsr_test_seconds();
  long reads = 0;
  while (tsr_test_now() < until || reads < 100) {
    tsr_stats_t s = tsr_test_stats();
    cr_assert_eq(s.version, TSR_STATS_VERSION);
    cr_assert_eq(s.errors, 0);
    reads++;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  free(t);
  free(a);
  heap_is_sound_and_empty(0);
}

/* ------------------------------------------------------------------------
 * Memory of exited threads is reused
 * ---------------------------------------------------------------------- */

typedef struct hold_arg_s {
  void **blocks;
  size_t count;
  size_t size;
  bool free_own;
} hold_arg_t;

static void *alloc_hold(void *arg) {
  hold_arg_t *a = arg;
  for (size_t i = 0; i < a->count; i++) {
    a->blocks[i] = tsr_malloc(a->size + (i % 7) * 16);
    if (a->blocks[i]) memset(a->blocks[i], 0x3c, a->size);
  }
  if (a->free_own) {
    for (size_t i = 0; i < a->count; i += 2) {
      tsr_free(a->blocks[i]);
      a->blocks[i] = NULL;
    }
  }
  return NULL;
}

/* One round: n threads each allocate `count` blocks and exit; main frees
 * what they left. Returns committed bytes after the round. */
static uint64_t reuse_round(int n, size_t count, size_t size, bool free_own) {
  pthread_t *t = calloc((size_t)n, sizeof *t);
  hold_arg_t *a = calloc((size_t)n, sizeof *a);
  for (int i = 0; i < n; i++) {
    a[i] = (hold_arg_t){ calloc(count, sizeof(void *)), count, size, free_own };
    pthread_create(&t[i], NULL, alloc_hold, &a[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < n; i++) {
    for (size_t k = 0; k < count; k++) {
      cr_assert(a[i].blocks[k] != NULL || (free_own && k % 2 == 0), "allocation failed");
      tsr_free(a[i].blocks[k]);
    }
    free(a[i].blocks);
  }
  free(a);
  free(t);
  return tsr_test_stats().committed;
}

static void expect_no_growth(size_t size, bool free_own) {
  int n = (int)tsr_test_threads();
  size_t count = ((size_t)8 << 20) / size / (size_t)n + 1;   /* ~8 MiB a round */
  int rounds = (int)tsr_test_env("TSR_TEST_REUSE_ROUNDS", 12);
  uint64_t first = reuse_round(n, count, size, free_own);
  uint64_t peak = first;
  for (int r = 1; r < rounds; r++) {
    uint64_t c = reuse_round(n, count, size, free_own);
    if (c > peak) peak = c;
  }
  /* a round needs ~8 MiB; if nothing were reused, 12 rounds would commit
   * ~96 MiB.  Allow two rounds' worth of slack for timing of purges. */
  cr_assert_leq(peak, first + ((uint64_t)16 << 20),
                "committed keeps growing: %llu after the first round, %llu at peak",
                (unsigned long long)first, (unsigned long long)peak);
  cr_assert_eq(tsr_check(), 0);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, 0);
}

Test(threads, exited_thread_memory_is_reused_small, .timeout = 300) { expect_no_growth(48, false); }
Test(threads, exited_thread_memory_is_reused_medium, .timeout = 300) { expect_no_growth(3000, true); }
Test(threads, exited_thread_memory_is_reused_big_classes, .timeout = 300) { expect_no_growth(50000, false); }

/* The committed figure after all blocks are freed and collected goes back
 * near where it started, with no thread holding memory. */
Test(threads, collect_after_threads_returns_memory, .timeout = 300) {
  int n = (int)tsr_test_threads();
  tsr_stats_t s0 = tsr_test_stats();
  reuse_round(n, 20000, 200, false);
  tsr_collect();
  tsr_stats_t s1 = tsr_test_stats();
  cr_assert_eq(s1.allocated, 0);
  cr_assert_leq(s1.committed, s0.committed + ((uint64_t)4 << 20),
                "committed %llu -> %llu after everything was freed and collected",
                (unsigned long long)s0.committed, (unsigned long long)s1.committed);
  cr_assert_eq(tsr_check(), 0);
}
