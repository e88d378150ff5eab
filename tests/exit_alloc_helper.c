/* exit_alloc_helper.c: allocations made by thread-specific-data
 * destructors, after tessera's own thread-exit destructor has torn the
 * thread's heap down (issue 18, item 7; test_exit_alloc.c runs it).
 *
 *   TSR_EXIT_ALLOC_ORDER=before|after|both exit_alloc_helper
 *
 * A thread's pthread_key_create destructors run in rounds, up to
 * PTHREAD_DESTRUCTOR_ITERATIONS, while some key still has a value; in a
 * round, in the order of the keys.  tessera's destructor is one of them.
 * Here every key's destructor allocates blocks (small, and now and then
 * large), frees one it allocated in an earlier round, and sets its value
 * again so that it runs in every round, the last one included: so some of
 * its allocations come after tessera's destructor in the last round, with
 * no round left to tear down what they set up.  `before` creates the keys
 * in a constructor that runs before tessera comes up (where the program is
 * linked to the prefixed library, their destructors then run before
 * tessera's in each round), `after` in main, `both` both.
 *
 * Two batches of many threads do this; after each, main checks every
 * block they left (all there, contents whole, tsr_check passes), frees
 * them all (from another thread than the one that allocated them) and
 * collects.  The second batch must end where the first did: the same live
 * blocks and bytes (the C library's own, through the override), and the
 * committed memory within a margin.  Exit status 0 on success;
 * otherwise a line on stderr says what went wrong.
 *
 * Built twice: with the tsr_ names (exit_alloc_helper), and with the C
 * names linked to the override (exit_alloc_helper_override).
 */
#include <limits.h>
#include <pthread.h>

#include "tsr_test.h"

#include "tsr_scenario.h"

#ifndef PTHREAD_DESTRUCTOR_ITERATIONS
#define PTHREAD_DESTRUCTOR_ITERATIONS 4
#endif

#define KEYS 3
#define BATCH_THREADS 200
#define ROUND_BLOCKS 4
#define LARGE_SIZE ((size_t)5 << 20)   /* a mapping of its own (large.c) */

typedef struct kept_s {
  struct kept_s *next;
  void *p;
  size_t size;
  uint64_t tag;
} kept_t;

/* What the destructors left, for main to check and free. */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static kept_t *kept;
static size_t kept_count;
static uint64_t next_tag = 1;
static int failures;

static pthread_key_t keys_early[KEYS], keys_late[KEYS];
static int early_made, late_made;

static void fail(const char *what) {
  pthread_mutex_lock(&kept_lock);
  failures++;
  pthread_mutex_unlock(&kept_lock);
  (void)!write(2, what, strlen(what));
}

/* Each key's value: the round it ran last, and one block of its own from
 * an earlier round, freed in the next one by the same thread. */
typedef struct key_state_s {
  int round;
  void *own;
  size_t own_size;
  uint64_t own_tag;
} key_state_t;

static void keep(void *p, size_t size) {
  kept_t *k = S_MALLOC(sizeof *k);
  if (k == NULL || p == NULL) {
    fail("exit_alloc_helper: an allocation in a destructor failed\n");
    return;
  }
  pthread_mutex_lock(&kept_lock);
  uint64_t tag = next_tag++;
  k->p = p;
  k->size = size;
  k->tag = tag;
  k->next = kept;
  kept = k;
  kept_count++;
  pthread_mutex_unlock(&kept_lock);
  tsr_test_fill(p, size, tag);
}

static void destructor(void *value, pthread_key_t key) {
  key_state_t *st = value;
  if (st->own != NULL) {
    if (tsr_test_verify(st->own, st->own_size, st->own_tag) != st->own_size)
      fail("exit_alloc_helper: a destructor's own block lost its contents\n");
    S_FREE(st->own);
  }
  st->round++;
  for (int i = 0; i < ROUND_BLOCKS; i++) {
    size_t size = 16 + (size_t)(st->round * 97 + i * 1000) % 3000;
    keep(S_MALLOC(size), size);
  }
  /* its first page carries the pattern: the whole of it would take most
   * of the run's time in a debug build */
  if (st->round == PTHREAD_DESTRUCTOR_ITERATIONS) keep(S_MALLOC(LARGE_SIZE), 4096);
  st->own_size = 40 + (size_t)st->round * 8;
  st->own = S_MALLOC(st->own_size);
  st->own_tag = 0x5eed0000u + (uint64_t)st->round;
  if (st->own != NULL) tsr_test_fill(st->own, st->own_size, st->own_tag);
  if (st->round < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(key, st);   /* run again in the next round */
  } else {
    /* the last round: what it still holds stays for main */
    if (st->own != NULL) keep(st->own, 0);
    S_FREE(st);
  }
}

#define DESTRUCTOR(name, keyvar)                                \
  static void name(void *value) { destructor(value, keyvar); }
DESTRUCTOR(destroy_early_0, keys_early[0])
DESTRUCTOR(destroy_early_1, keys_early[1])
DESTRUCTOR(destroy_early_2, keys_early[2])
DESTRUCTOR(destroy_late_0, keys_late[0])
DESTRUCTOR(destroy_late_1, keys_late[1])
DESTRUCTOR(destroy_late_2, keys_late[2])
static void (*const destroy_early[KEYS])(void *) = { destroy_early_0, destroy_early_1, destroy_early_2 };
static void (*const destroy_late[KEYS])(void *) = { destroy_late_0, destroy_late_1, destroy_late_2 };

/* Before tessera's own constructor (priority 101): where nothing has
 * allocated yet, these keys come before tessera's.  GCC reserves the
 * priorities up to 100 for the implementation and says so. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wprio-ctor-dtor"
#endif
__attribute__((constructor(100))) static void make_early_keys(void) {
  const char *o = getenv("TSR_EXIT_ALLOC_ORDER");
  if (o == NULL || (strcmp(o, "before") != 0 && strcmp(o, "both") != 0)) return;
  for (int i = 0; i < KEYS; i++)
    if (pthread_key_create(&keys_early[i], destroy_early[i]) != 0) abort();
  early_made = 1;
}

static void set_keys(pthread_key_t *keys) {
  for (int i = 0; i < KEYS; i++) {
    key_state_t *st = S_MALLOC(sizeof *st);
    if (st == NULL) abort();
    memset(st, 0, sizeof *st);
    pthread_setspecific(keys[i], st);
  }
}

static void *worker(void *arg) {
  (void)arg;
  if (early_made) set_keys(keys_early);
  if (late_made) set_keys(keys_late);
  /* some ordinary work, so the heap has pages of its own to hand on */
  void *p[64];
  for (int i = 0; i < 64; i++) p[i] = S_MALLOC(24 + (size_t)i * 40);
  for (int i = 0; i < 64; i += 2) S_FREE(p[i]);
  for (int i = 1; i < 64; i += 2) keep(p[i], 24 + (size_t)i * 40);
  return NULL;
}

/* BATCH_THREADS threads, 8 at a time; then every block they left is
 * checked and freed here, and what is free given back. */
static int run_batch(int key_sets) {
  for (int round = 0; round < BATCH_THREADS / 8; round++) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
      if (pthread_create(&t[i], NULL, worker, NULL) != 0) return 2;
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  }
  size_t expect = (size_t)BATCH_THREADS *
                  (32 + (size_t)key_sets * KEYS * (PTHREAD_DESTRUCTOR_ITERATIONS * ROUND_BLOCKS + 2));
  if (kept_count != expect) {
    fprintf(stderr, "exit_alloc_helper: %zu blocks kept, expected %zu\n", kept_count, expect);
    return 1;
  }
  size_t bad_check = tsr_check();
  if (bad_check != 0) {
    fprintf(stderr, "exit_alloc_helper: tsr_check found %zu problems with the blocks live\n", bad_check);
    return 1;
  }
  size_t lost = 0;
  while (kept != NULL) {
    kept_t *k = kept;
    kept = k->next;
    if (k->size != 0 && tsr_test_verify(k->p, k->size, k->tag) != k->size) lost++;
    S_FREE(k->p);
    S_FREE(k);
  }
  kept_count = 0;
  if (lost != 0) {
    fprintf(stderr, "exit_alloc_helper: %zu blocks lost their contents\n", lost);
    return 1;
  }
  tsr_collect();
  bad_check = tsr_check();
  if (bad_check != 0 || failures != 0) {
    fprintf(stderr, "exit_alloc_helper: tsr_check found %zu problems after, %d failures\n", bad_check,
            failures);
    return 1;
  }
  return 0;
}

int main(void) {
  const char *order = getenv("TSR_EXIT_ALLOC_ORDER");
  if (order == NULL) order = "after";
  if (strcmp(order, "after") == 0 || strcmp(order, "both") == 0) {
    for (int i = 0; i < KEYS; i++)
      if (pthread_key_create(&keys_late[i], destroy_late[i]) != 0) return 2;
    late_made = 1;
  }
  if (!early_made && !late_made) {
    fprintf(stderr, "exit_alloc_helper: TSR_EXIT_ALLOC_ORDER '%s' is not before, after or both\n", order);
    return 2;
  }
  /* two batches of threads, each followed by a free of everything they
   * left: the second must end where the first did */
  tsr_stats_t after[2];
  for (int batch = 0; batch < 2; batch++) {
    int rc = run_batch(early_made + late_made);
    if (rc != 0) return rc;
    after[batch] = tsr_test_stats();
  }
  /* tessera's own records (the debug checks' table) may grow with what
   * the batches did; the blocks' memory must not */
  uint64_t held[2];
  for (int batch = 0; batch < 2; batch++) held[batch] = after[batch].committed - after[batch].metadata;
  printf("live_blocks %llu -> %llu, allocated %llu -> %llu, committed less records %llu -> %llu\n",
         (unsigned long long)after[0].live_blocks, (unsigned long long)after[1].live_blocks,
         (unsigned long long)after[0].allocated, (unsigned long long)after[1].allocated,
         (unsigned long long)held[0], (unsigned long long)held[1]);
  if (after[1].live_blocks > after[0].live_blocks || after[1].allocated > after[0].allocated) {
    fprintf(stderr, "exit_alloc_helper: %llu more blocks (%llu bytes) live after the second batch\n",
            (unsigned long long)(after[1].live_blocks - after[0].live_blocks),
            (unsigned long long)(after[1].allocated - after[0].allocated));
    return 1;
  }
  /* a heap that no destructor round handed over keeps its pages, a span
   * (64 KiB) or more per thread: a quarter of that per thread is the bound */
  if (held[1] > held[0] + ((uint64_t)BATCH_THREADS << 16) / 4) {
    fprintf(stderr, "exit_alloc_helper: committed grew from %llu to %llu bytes in the second batch\n",
            (unsigned long long)held[0], (unsigned long long)held[1]);
    return 1;
  }
  return 0;
}
