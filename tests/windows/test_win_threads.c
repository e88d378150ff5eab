/* test_win_threads.c: Windows threads allocating at once, and blocks
 * freed by a thread other than the one that allocated them (the remote
 * free path), then threads that exit with blocks still live (their pages
 * are abandoned and adopted).  TSR_TEST_THREADS and TSR_TEST_SECONDS
 * scale it, as on Linux. */
#include "win_test.h"

#include <stdint.h>
#include <tessera.h>
#include <windows.h>

#include "core/internal.h"   /* tsri_heap_foreach: whose heaps are in use */

#define RING 4096

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v != NULL && atoi(v) > 0 ? atoi(v) : def;
}

/* A single-producer single-consumer ring of blocks. */
typedef struct ring_s {
  void *volatile slot[RING];
  size_t size[RING];          /* what the producer asked for */
  volatile LONG head, tail;   /* producer writes head, consumer tail */
  volatile LONG done;
  size_t produced, consumed, bad;
  unsigned seed;
} ring_t;

static size_t size_of(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  unsigned r = *seed >> 8;
  return (r & 7) == 0 ? 1000 + r % 200000 : 1 + r % 512;
}

static DWORD WINAPI producer(void *arg) {
  ring_t *q = arg;
  DWORD until = GetTickCount() + (DWORD)env_int("TSR_TEST_SECONDS", 1) * 1000;
  while (GetTickCount() < until) {
    LONG h = q->head;
    if (h - InterlockedCompareExchange(&q->tail, 0, 0) >= RING) { SwitchToThread(); continue; }
    size_t n = size_of(&q->seed);
    unsigned char *p = tsr_malloc(n);
    if (p == NULL) { q->bad++; break; }
    p[0] = (unsigned char)n;
    p[n - 1] = (unsigned char)(n >> 3);
    q->slot[h % RING] = p;
    q->size[h % RING] = n;
    q->produced++;
    InterlockedExchange(&q->head, h + 1);
  }
  InterlockedExchange(&q->done, 1);
  return 0;
}

static DWORD WINAPI consumer(void *arg) {
  ring_t *q = arg;
  for (;;) {
    LONG t = q->tail;
    if (t == InterlockedCompareExchange(&q->head, 0, 0)) {
      if (InterlockedCompareExchange(&q->done, 0, 0) && t == q->head) break;
      SwitchToThread();
      continue;
    }
    unsigned char *p = q->slot[t % RING];
    size_t n = q->size[t % RING];
    if (tsr_usable_size(p) < n || p[0] != (unsigned char)n || p[n - 1] != (unsigned char)(n >> 3)) q->bad++;
    tsr_free(p);   /* a block of the producer's heap: a remote free */
    q->consumed++;
    InterlockedExchange(&q->tail, t + 1);
  }
  return 0;
}

static void cross_thread_frees(void) {
  int pairs = env_int("TSR_TEST_THREADS", 4) / 2;
  if (pairs < 1) pairs = 1;
  ring_t *rings = calloc((size_t)pairs, sizeof(ring_t));
  HANDLE *th = calloc((size_t)pairs * 2, sizeof(HANDLE));
  CHECK(rings != NULL && th != NULL);
  for (int i = 0; i < pairs; i++) {
    rings[i].seed = 77u + (unsigned)i;
    th[2 * i] = CreateThread(NULL, 0, producer, &rings[i], 0, NULL);
    th[2 * i + 1] = CreateThread(NULL, 0, consumer, &rings[i], 0, NULL);
    CHECK(th[2 * i] != NULL && th[2 * i + 1] != NULL);
  }
  for (int i = 0; i < 2 * pairs; i++) {
    CHECK(WaitForSingleObject(th[i], 120000) == WAIT_OBJECT_0);
    CloseHandle(th[i]);
  }
  size_t total = 0;
  for (int i = 0; i < pairs; i++) {
    CHECK_MSG(rings[i].bad == 0, "pair %d: %zu bad blocks", i, rings[i].bad);
    CHECK(rings[i].produced == rings[i].consumed);
    total += rings[i].produced;
  }
  CHECK_MSG(total > 1000, "only %zu blocks went across threads", total);
  CHECK(tsr_check() == 0);
  free(rings);
  free(th);
}

/* Threads that exit holding live blocks; the main thread frees them after
 * the threads are gone (frees into abandoned pages). */
static void *volatile leftovers[8][512];

static DWORD WINAPI allocate_and_exit(void *arg) {
  void *volatile *mine = arg;
  for (int i = 0; i < 512; i++) {
    mine[i] = tsr_malloc((size_t)(16 + (i % 40) * 24));
    if (mine[i] == NULL) return 1;
    memset(mine[i], i & 0xff, 16);
  }
  /* and some garbage freed by itself */
  for (int i = 0; i < 200; i++) tsr_free(tsr_malloc(64));
  return 0;
}

static void blocks_outlive_their_thread(void) {
  HANDLE th[8];
  for (int i = 0; i < 8; i++) {
    th[i] = CreateThread(NULL, 0, allocate_and_exit, (void *)leftovers[i], 0, NULL);
    CHECK(th[i] != NULL);
  }
  for (int i = 0; i < 8; i++) {
    DWORD code = 99;
    CHECK(WaitForSingleObject(th[i], 60000) == WAIT_OBJECT_0);
    CHECK(GetExitCodeThread(th[i], &code) && code == 0);
    CloseHandle(th[i]);
  }
  CHECK(tsr_check() == 0);
  for (int i = 0; i < 8; i++)
    for (int k = 0; k < 512; k++) {
      CHECK(tsr_owns(leftovers[i][k]));
      CHECK(((unsigned char *)leftovers[i][k])[0] == (k & 0xff));
      tsr_free(leftovers[i][k]);
    }
  CHECK(tsr_check() == 0);
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  CHECK(tsr_stats_get(&s) == 0);
  CHECK_MSG(s.errors == 0, "%llu errors", (unsigned long long)s.errors);
}

/* The thread-exit hook (a fiber-local storage callback, windows.c): every
 * thread that ended gave its heap back, so that no heap is still marked
 * in use for a thread other than this one. */
static void count_foreign(tsr_heap_t *h, void *arg) {
  if (h->in_use && h->thread != GetCurrentThreadId()) (*(int *)arg)++;
}

static void exited_threads_gave_their_heaps_back(void) {
  int foreign = 0;
  tsri_heap_foreach(count_foreign, &foreign);
  CHECK_MSG(foreign == 0, "%d heaps still in use for threads that ended", foreign);
  /* and a new thread takes one of them instead of a new one */
  HANDLE th = CreateThread(NULL, 0, allocate_and_exit, (void *)leftovers[0], 0, NULL);
  CHECK(th != NULL);
  CHECK(WaitForSingleObject(th, 60000) == WAIT_OBJECT_0);
  CloseHandle(th);
  tsri_heap_foreach(count_foreign, &foreign);
  CHECK_MSG(foreign == 0, "%d heaps in use after one more thread ended", foreign);
  for (int k = 0; k < 512; k++) tsr_free(leftovers[0][k]);
  CHECK(tsr_check() == 0);
}

WT_MAIN(WT_CASE(cross_thread_frees), WT_CASE(blocks_outlive_their_thread),
        WT_CASE(exited_threads_gave_their_heaps_back))
