/* inject_helper.c: the workload test_inject.c runs with TESSERA_FAIL set,
 * one process per case.  It asks for memory in every way the API has
 * (small and large blocks, calloc, realloc growing and shrinking, aligned
 * blocks, threads that start and end, sparse pages for meshing and
 * tsr_collect), and checks every answer: a NULL comes with ENOMEM (an
 * error number from posix_memalign), a block it got holds what was written
 * to it until it is freed, a failed realloc leaves the block as it was.
 * At the end: tsr_check finds nothing, and what tracking could not record
 * is counted (tsr_stats_t records_lost, stacks_lost) and shown by the
 * reports.
 *
 * stdout: "FAIL: ..." lines, then "nulls N", "records_lost N",
 * "stacks_lost N", "untracked N", "point NAME CALLS FAILED" for every
 * injection point, and "ok" when every check held.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "tsr_helper.h"

/* Injection's counts (alloc/os/os.h; hidden, but this program links the
 * static library). */
const char *tsri_os_point_name(int point);
void tsri_os_fail_counts(int point, uint64_t *calls, uint64_t *failed);
#define POINTS 19   /* TSRI_OS_POINTS */

static _Atomic uint64_t nulls;       /* requests answered NULL (or an error number) */
static _Atomic int failures;         /* checks that failed, on any thread */

#define FAILED(...)                   \
  do {                                \
    printf("FAIL: " __VA_ARGS__);     \
    printf("\n");                     \
    atomic_fetch_add(&failures, 1);   \
  } while (0)

typedef struct held_s {
  void *p;
  size_t size;
  uint64_t tag;
} held_t;

#define HELD_MAX 6000
static held_t held[HELD_MAX];
static size_t held_n;
static uint64_t next_tag = 1;

/* p came back from a request for size bytes (errno as the call left it):
 * a NULL must say ENOMEM, a block is filled and kept. */
static bool took(held_t *h, void *p, size_t size, int err, const char *what) {
  if (p == NULL) {
    if (err != ENOMEM) FAILED("%s(%zu) gave NULL with errno %d, not ENOMEM", what, size, err);
    atomic_fetch_add(&nulls, 1);
    return false;
  }
  h->p = p;
  h->size = size;
  h->tag = next_tag++;
  tsr_test_fill(p, size, h->tag);
  return true;
}

static void verify(const held_t *h, const char *when) {
  size_t at = tsr_test_verify(h->p, h->size, h->tag);
  if (at != h->size) FAILED("block %p of %zu bytes changed at byte %zu (%s)", h->p, h->size, at, when);
}


static void drop(size_t i) {
  verify(&held[i], "free");
  tsr_free(held[i].p);
  held[i] = held[--held_n];
}

/* ---- the requests ---- */

static void small_blocks(size_t n, size_t size) {
  for (size_t i = 0; i < n && held_n < HELD_MAX; i++) {
    errno = 0;
    void *p = tsr_malloc(size);
    int err = errno;
    if (took(&held[held_n], p, size, err, "malloc")) held_n++;
  }
}

static void large(size_t size) {
  errno = 0;
  void *p = tsr_malloc(size);
  int err = errno;
  if (held_n < HELD_MAX && took(&held[held_n], p, size, err, "malloc")) held_n++;
  else tsr_free(p);
}

static void zeroed(size_t count, size_t size) {
  errno = 0;
  uint8_t *p = tsr_calloc(count, size);
  int err = errno;
  if (p != NULL) {
    for (size_t i = 0; i < count * size; i++)
      if (p[i] != 0) {
        FAILED("calloc(%zu, %zu) byte %zu is %d", count, size, i, p[i]);
        break;
      }
  }
  if (held_n < HELD_MAX && took(&held[held_n], p, count * size, err, "calloc")) held_n++;
  else tsr_free(p);
}

static void aligned(size_t align, size_t size) {
  errno = 0;
  void *p = tsr_aligned_alloc(align, size);
  int err = errno;
  if (p != NULL && ((uintptr_t)p & (align - 1)) != 0) FAILED("aligned_alloc(%zu) gave %p", align, p);
  if (held_n < HELD_MAX && took(&held[held_n], p, size, err, "aligned_alloc")) held_n++;
  else tsr_free(p);
  void *q = NULL;
  int rc = tsr_posix_memalign(&q, align, size);
  if (rc != 0 && rc != ENOMEM) FAILED("posix_memalign(%zu, %zu) answered %d", align, size, rc);
  if (rc != 0 && q != NULL) FAILED("posix_memalign failed and set the pointer");
  if (rc == 0 && held_n < HELD_MAX && took(&held[held_n], q, size, 0, "posix_memalign")) held_n++;
  else if (rc == 0) tsr_free(q);
  else atomic_fetch_add(&nulls, 1);
}

/* Resize held block i to size: on failure the block stays as it was. */
static void resize(size_t i, size_t size) {
  held_t *h = &held[i];
  errno = 0;
  void *q = tsr_realloc(h->p, size);
  int err = errno;
  if (q == NULL) {
    if (err != ENOMEM) FAILED("realloc(%zu -> %zu) gave NULL with errno %d", h->size, size, err);
    atomic_fetch_add(&nulls, 1);
    verify(h, "failed realloc");
    return;
  }
  h->p = q;
  size_t kept = h->size < size ? h->size : size;
  size_t at = tsr_test_verify(q, kept, h->tag);
  if (at != kept) FAILED("realloc to %zu lost byte %zu of %zu", size, at, kept);
  h->size = size;
  tsr_test_fill(q, size, h->tag);
}

/* One live block per OS page, at a different offset in each: pages that
 * meshing can put together. */
static void sparse_pages(void) {
  enum { SIZE = 256, PER_PAGE = 16, N = 512 };
  static held_t run[N];
  size_t got = 0;
  for (size_t i = 0; i < N; i++) {
    errno = 0;
    void *p = tsr_malloc(SIZE);
    int err = errno;
    if (took(&run[got], p, SIZE, err, "malloc")) got++;
  }
  for (size_t i = 0; i < got; i++) {
    if (i % PER_PAGE == (i / PER_PAGE) % PER_PAGE && held_n < HELD_MAX) {
      held[held_n++] = run[i];
    } else {
      verify(&run[i], "free");
      tsr_free(run[i].p);
    }
  }
}

static void *thread_main(void *arg) {
  size_t size = (size_t)(uintptr_t)arg;
  void *mine[100];
  size_t n = 0;
  for (size_t i = 0; i < 100; i++) {
    errno = 0;
    void *p = tsr_malloc(size + i % 64);
    int err = errno;
    if (p == NULL) {
      if (err != ENOMEM) FAILED("a thread's malloc gave NULL with errno %d", err);
      atomic_fetch_add(&nulls, 1);
      continue;
    }
    memset(p, (int)(i & 0xff), size + i % 64);
    mine[n++] = p;
  }
  for (size_t i = 0; i < n; i++) tsr_free(mine[i]);
  return NULL;
}

static void threads(size_t count) {
  pthread_t id[16];
  for (size_t i = 0; i < count; i++)
    if (pthread_create(&id[i], NULL, thread_main, (void *)(uintptr_t)(16 + 40 * i)) != 0) {
      FAILED("pthread_create");
      return;
    }
  for (size_t i = 0; i < count; i++) pthread_join(id[i], NULL);
}

/* ---- the checks at the end ---- */

typedef struct walked_s {
  uint64_t untracked, no_site;
} walked_t;

static int walk_block(const tsr_block_t *b, void *arg) {
  walked_t *w = arg;
  if (!b->tracked) w->untracked++;
  else if (b->site == 0) w->no_site++;
  return 0;
}

typedef struct text_s {
  char buf[1 << 16];
  size_t len;
} text_t;

static void text_out(const char *text, size_t len, void *arg) {
  text_t *t = arg;
  size_t room = sizeof t->buf - 1 - t->len;
  if (len > room) len = room;
  memcpy(t->buf + t->len, text, len);
  t->len += len;
  t->buf[t->len] = 0;
}

static void accounts(void) {
  tsr_stats_t s = tsr_test_stats();
  walked_t w = { 0, 0 };
  tsr_walk(walk_block, &w);
  /* under full tracking every block gets a record and a stack, unless
   * memory for it could not be had, which is counted */
  if (tsr_track_get() == TSR_TRACK_FULL && w.untracked > s.records_lost)
    FAILED("%llu live blocks without a record, %llu records counted lost", (unsigned long long)w.untracked,
           (unsigned long long)s.records_lost);
  if (w.no_site > 0 && s.stacks_lost == 0)
    FAILED("%llu blocks have no stack and no stack was counted lost", (unsigned long long)w.no_site);
  static text_t text, json;
  text.len = json.len = 0;
  if (tsr_report(TSR_FORMAT_TEXT, text_out, &text) != 0) FAILED("text report");
  if (tsr_report(TSR_FORMAT_JSON, text_out, &json) != 0) FAILED("JSON report");
  if ((s.records_lost != 0 || s.stacks_lost != 0) && strstr(text.buf, "lost for want of memory") == NULL)
    FAILED("the text report does not say what was lost");
  char want[96];
  snprintf(want, sizeof want, "\"records_lost\":%llu,\"stacks_lost\":%llu", (unsigned long long)s.records_lost,
           (unsigned long long)s.stacks_lost);
  if (strstr(json.buf, want) == NULL) FAILED("the JSON report lacks %s", want);
  printf("nulls %llu\nrecords_lost %llu\nstacks_lost %llu\nuntracked %llu\n", (unsigned long long)nulls,
         (unsigned long long)s.records_lost, (unsigned long long)s.stacks_lost, (unsigned long long)w.untracked);
}

static int run(const char *name) {
  if (strcmp(name, "workload") != 0) return 2;
  for (int round = 0; round < 2; round++) {
    small_blocks(400, 24 + 40 * (size_t)round);
    small_blocks(60, 3000 + 1000 * (size_t)round);
    zeroed(100, 40);
    zeroed(1, 200000);
    large((size_t)600 << 10);
    large((size_t)3 << 20);
    large((size_t)5 << 20);   /* past the segments: a mapping of its own */
    aligned(64, 200);
    aligned(4096, 5000);
    aligned(65536, 70000);
    for (size_t i = 0; i < held_n; i += 37) resize(i, held[i].size * 3 + 10);   /* grow */
    for (size_t i = 5; i < held_n; i += 41) resize(i, held[i].size / 2 + 1);    /* shrink */
    for (size_t i = 0; i < held_n; i += 97) resize(i, held[i].size + (1 << 20)); /* grow a lot */
    for (size_t i = 0; i < held_n; i++)
      if (held[i].size >= ((size_t)5 << 20)) resize(i, held[i].size + (1 << 20));    /* mremap */
    sparse_pages();
    threads(8);
    for (size_t i = held_n; i-- > 0;)
      if (i % 3 == 0) drop(i);
    tsr_collect();
    for (size_t i = 0; i < held_n; i++) verify(&held[i], "after tsr_collect");
  }
  accounts();
  while (held_n > 0) drop(held_n - 1);
  tsr_collect();
  size_t bad = tsr_check();
  if (bad != 0) FAILED("tsr_check found %zu problems", bad);
  for (int p = 0; p < POINTS; p++) {
    uint64_t calls, failed;
    tsri_os_fail_counts(p, &calls, &failed);
    printf("point %s %llu %llu\n", tsri_os_point_name(p), (unsigned long long)calls, (unsigned long long)failed);
  }
  tsr_helper_failures += atomic_load(&failures);
  return 0;
}

int main(int argc, char **argv) { return tsr_helper_main(argc, argv, run, "TESSERA_FAIL=point[:nth[:count]]"); }
