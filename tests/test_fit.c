/* test_fit.c: fitted pages (heap.c; docs/design.md, "Fitted pages").
 *
 * A heap's pages of a class above 1024 bytes are cut to the first size it
 * is asked for, in a span shaped for that size, until a request of the
 * class needs more; from then on it carves the class's own pages, and the
 * fitted ones serve what they fit.  Each test runs in a process of its
 * own (Criterion), so its heap starts without fitting.
 */
#include "tsr_criterion.h"

#include <pthread.h>

#include "tsr_test.h"

#include "core/internal.h"   /* the class table and tsri_span_shape */

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The class of a request, by its block size (classes above 1024 only). */
static size_t class_of(size_t size) {
  size_t c = TSRI_FIT_FIRST;
  while (tsri_classes[c].block_size < size) c++;
  return c;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31 + i);
}

static bool intact(const unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed * 31 + i)) return false;
  return true;
}

Test(fit, the_shape_rules_give_every_class_its_row) {
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    tsri_shape_t s = tsri_span_shape(tsri_classes[c].block_size);
    cr_assert(s.slots == tsri_classes[c].span_slots && s.capacity == tsri_classes[c].capacity,
              "class %zu (%u bytes): the rules give %zu slots, %zu blocks; the table %u, %u", c,
              (unsigned)tsri_classes[c].block_size, s.slots, s.capacity, (unsigned)tsri_classes[c].span_slots,
              (unsigned)tsri_classes[c].capacity);
  }
  /* just past a class, the span is longer: 31 blocks of 16,400 bytes in
   * 8 slots (3 % over) where the class holds 7 of 18,432 in 2 */
  tsri_shape_t s = tsri_span_shape(16400);
  cr_assert(s.slots == 8 && s.capacity == 31, "16,400 bytes: %zu slots, %zu blocks", s.slots, s.capacity);
  /* just past 64 KiB no span of up to 10 slots leaves 1/16 over: the one
   * that leaves least */
  s = tsri_span_shape(65600);
  cr_assert(s.slots == 10 && s.capacity == 9, "65,600 bytes: %zu slots, %zu blocks", s.slots, s.capacity);
  cr_assert(tsri_fit_pays(16400, class_of(16400)) && tsri_fit_pays(65600, class_of(65600)));
  cr_assert_not(tsri_fit_pays(tsri_classes[40].block_size, 40), "a class's own size is no fit");
}

/* Spans in the arena map with blocks of block_size bytes. */
typedef struct span_count_s {
  size_t block_size, spans, bad;
  tsri_shape_t shape;
} span_count_t;

static int count_spans(const tsr_map_entry_t *e, void *arg) {
  span_count_t *c = arg;
  if (e->state != TSR_SLOT_STATE_USED || e->block_size != c->block_size) return 0;
  c->spans++;
  if (e->slots != c->shape.slots || e->capacity > c->shape.capacity || e->capacity + 1 < c->shape.capacity) c->bad++;
  return 0;
}

Test(fit, a_class_asked_for_one_size_gets_blocks_of_that_size) {
  static const size_t sizes[] = { 1025, 4112, 16400, 40000, 65600, 100000, 130000 };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t size = sizes[k], bs = round16(size);
    tsri_shape_t shape = tsri_span_shape(bs);
    size_t n = 3 * shape.capacity + 1;
    unsigned char **p = malloc(n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
      p[i] = tsr_malloc(size);
      cr_assert_not_null(p[i]);
      cr_assert_eq(tsr_usable_size(p[i]), bs, "malloc(%zu): %zu usable", size, tsr_usable_size(p[i]));
      fill(p[i], size, (unsigned)i);
    }
    span_count_t c = { bs, 0, 0, shape };
    cr_assert_eq(tsr_map_walk(count_spans, &c), 0);
    cr_assert_eq(c.spans, 4, "%zu-byte blocks: %zu spans for %zu blocks of %zu a span", bs, c.spans, n,
                 shape.capacity);
    cr_assert_eq(c.bad, 0, "%zu-byte blocks: a span is not of %zu slots and %zu blocks", bs, shape.slots,
                 shape.capacity);
    cr_assert_eq(tsr_check(), 0);
    for (size_t i = 0; i < n; i++) {
      cr_assert(intact(p[i], size, (unsigned)i), "malloc(%zu) number %zu lost its contents", size, i);
      tsr_free(p[i]);
    }
    free(p);
  }
  cr_assert_eq(tsr_check(), 0);
}

Test(fit, classes_up_to_1024_bytes_are_never_fitted) {
  void *a = tsr_malloc(1000), *b = tsr_malloc(520);
  cr_assert_eq(tsr_usable_size(a), 1024);
  cr_assert_eq(tsr_usable_size(b), 576);
  tsr_free(a);
  tsr_free(b);
}

Test(fit, a_larger_request_turns_fitting_off_for_the_class) {
  void *a = tsr_malloc(4112);
  cr_assert_eq(tsr_usable_size(a), 4112);
  void *b = tsr_malloc(4500);
  cr_assert_eq(tsr_usable_size(b), 4608, "a request the fitted page cannot take gets the class's block");
  void *c = tsr_malloc(4112);
  cr_assert_eq(tsr_usable_size(c), 4608, "new blocks come from the class's page now");
  /* and further pages of the class are the class's */
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = tsr_malloc(i % 2 ? 4500 : 4200);
    cr_assert_eq(tsr_usable_size(p[i]), 4608);
  }
  for (int i = 0; i < N; i++) tsr_free(p[i]);
  tsr_free(a);
  tsr_free(b);
  tsr_free(c);
  cr_assert_eq(tsr_check(), 0);
}

/* Fitted pages with free blocks, after fitting went off: the requests
 * they fit take those blocks again once the class's current page is full;
 * the requests they do not fit never do. */
Test(fit, fitted_pages_keep_serving_what_they_fit) {
  enum { N = 15 * 12 };   /* twelve fitted pages of 4,112-byte blocks */
  unsigned char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = tsr_malloc(4112);
    cr_assert_eq(tsr_usable_size(p[i]), 4112);
    fill(p[i], 4112, (unsigned)i);
  }
  for (int i = 0; i < N; i += 2) tsr_free(p[i]);   /* a hole every other block */
  enum { BIG = 3 * 14 };                            /* three of the class's pages */
  void *big[BIG];
  for (int i = 0; i < BIG; i++) {
    big[i] = tsr_malloc(4500);
    cr_assert_eq(tsr_usable_size(big[i]), 4608);
    for (int j = 0; j < N; j += 2)
      cr_assert_neq(big[i], p[j], "a 4,500-byte request took a 4,112-byte block");
  }
  /* the holes come back to requests of 4,112 bytes, after at most what is
   * left of the class's current page */
  int reused = 0;
  void *again[N / 2 + 14];
  for (int i = 0; i < N / 2 + 14; i++) {
    again[i] = tsr_malloc(4112);
    cr_assert_not_null(again[i]);
    for (int j = 0; j < N; j += 2) reused += again[i] == p[j];
  }
  cr_assert_eq(reused, N / 2, "%d of the %d holes of the fitted pages were used again", reused, N / 2);
  for (int i = 1; i < N; i += 2) cr_assert(intact(p[i], 4112, (unsigned)i), "block %d lost its contents", i);
  cr_assert_eq(tsr_check(), 0);
  for (int i = 1; i < N; i += 2) tsr_free(p[i]);
  for (int i = 0; i < BIG; i++) tsr_free(big[i]);
  for (int i = 0; i < N / 2 + 14; i++) tsr_free(again[i]);
  cr_assert_eq(tsr_check(), 0);
}

Test(fit, aligned_requests_get_aligned_blocks_in_a_fitted_class) {
  void *a = tsr_malloc(4112);
  cr_assert_eq(tsr_usable_size(a), 4112);
  static const size_t aligns[] = { 32, 64, 256, 512 };
  for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
    for (int i = 0; i < 40; i++) {
      void *p = NULL;
      cr_assert_eq(tsr_posix_memalign(&p, aligns[k], 4112), 0);
      cr_assert_eq((uintptr_t)p % aligns[k], 0, "posix_memalign(%zu, 4112) = %p", aligns[k], p);
      cr_assert_geq(tsr_usable_size(p), 4112);
      memset(p, 0x5a, 4112);
      if (i % 3) tsr_free(p);
    }
  }
  tsr_free(a);
  cr_assert_eq(tsr_check(), 0);
}

Test(fit, realloc_out_of_a_fitted_block_keeps_the_contents) {
  unsigned char *p = tsr_malloc(4112);
  cr_assert_eq(tsr_usable_size(p), 4112);
  fill(p, 4112, 7);
  int moves = 0;
  size_t n = 4112;
  for (; n < 4608; n += 8) {
    unsigned char *q = tsr_realloc(p, n + 8);
    cr_assert_not_null(q);
    moves += q != p;
    p = q;
  }
  cr_assert(intact(p, 4112, 7));
  cr_assert_eq(moves, 1, "%d moves growing from 4,112 to 4,608 bytes", moves);
  tsr_free(p);
}

/* Blocks of a thread's fitted pages freed by another thread come back to
 * the owner. */
typedef struct remote_s {
  void **p;
  size_t n;
} remote_t;

static void *free_all(void *arg) {
  remote_t *r = arg;
  for (size_t i = 0; i < r->n; i++) tsr_free(r->p[i]);
  return NULL;
}

Test(fit, other_threads_free_into_fitted_pages) {
  enum { N = 31 * 8 };
  void *p[N], *q[N];
  for (int i = 0; i < N; i++) {
    p[i] = tsr_malloc(16400);
    cr_assert_eq(tsr_usable_size(p[i]), 16400);
  }
  remote_t r = { p, N };
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, free_all, &r), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  int reused = 0;
  for (int i = 0; i < N; i++) {
    q[i] = tsr_malloc(16400);
    cr_assert_eq(tsr_usable_size(q[i]), 16400);
    for (int j = 0; j < N; j++) reused += q[i] == p[j];
  }
  cr_assert_geq(reused, N - 31, "%d of %d blocks freed by another thread were used again", reused, N);
  cr_assert_eq(tsr_check(), 0);
  for (int i = 0; i < N; i++) tsr_free(q[i]);
}

Test(fit, class_rows_count_the_fitted_bytes) {
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) p[i] = tsr_malloc(16400);
  tsr_class_stats_t rows[TSR_CLASS_COUNT + 1];
  cr_assert_eq(tsr_class_stats(rows, TSR_CLASS_COUNT + 1), TSR_CLASS_COUNT + 1);
  const tsr_class_stats_t *r = &rows[class_of(16400)];
  cr_assert_eq(r->block_size, 18432, "the row names its class's size");
  cr_assert_eq(r->blocks_live, N);
  cr_assert_eq(r->bytes_live, (uint64_t)N * 16400, "%llu live bytes", (unsigned long long)r->bytes_live);
  for (int i = 0; i < N; i++) tsr_free(p[i]);
}

/* A fitted span may be longer than its class's: 16,400-byte blocks take
 * eight slots where the class's 18,432 take two.  Under a cap on the
 * address space that leaves the arenas only runs of fewer free slots, the
 * request must still get a block, of the class's size. */
#define MiB ((size_t)1 << 20)

typedef struct span_starts_s {
  uintptr_t start[512];
  size_t n;
  size_t run, longest;   /* free slots in a row */
} span_starts_t;

static int find_spans(const tsr_map_entry_t *e, void *arg) {
  span_starts_t *s = arg;
  if (e->state == TSR_SLOT_STATE_USED && e->block_size == 16384 && s->n < 512) s->start[s->n++] = (uintptr_t)e->start;
  bool free_slot = e->state == TSR_SLOT_STATE_DECOMMITTED || e->state == TSR_SLOT_STATE_DIRTY;
  s->run = free_slot ? s->run + e->slots : 0;
  if (s->run > s->longest) s->longest = s->run;
  return 0;
}


/* In a child: exit 0 when malloc(16,400) got a block, 1 when it did not,
 * 2 or more when the arenas could not be brought into shape. */
static void fragmented_arenas(void *arg) {
  (void)arg;
  tsr_track_set(TSR_TRACK_STATS);   /* no records to map */
  enum { MOST = 4096 };
  static void *blocks[MOST];
  /* fill every arena the cap lets exist with spans of the 16,384-byte
   * class (two slots each), the soft cap raised again for the map walk */
  size_t n = 0;
  blocks[n++] = tsr_malloc(16384);
  struct rlimit rl = { tsr_test_mapped() + 2 * MiB, RLIM_INFINITY };
  if (blocks[0] == NULL || setrlimit(RLIMIT_AS, &rl) != 0) _exit(2);
  while (n < MOST && (blocks[n] = tsr_malloc(16384)) != NULL) n++;
  if (n == MOST) _exit(3);
  rl.rlim_cur = RLIM_INFINITY;
  static span_starts_t s;
  if (setrlimit(RLIMIT_AS, &rl) != 0 || tsr_map_walk(find_spans, &s) != 0 || s.n == 512) _exit(4);
  /* every other span back to its arena: free runs of two slots */
  for (size_t i = 0; i < n; i++) {
    size_t k = 0;
    while (k < s.n && ((uintptr_t)blocks[i] < s.start[k] || (uintptr_t)blocks[i] >= s.start[k] + 2 * 65536)) k++;
    if (k % 2 == 0) tsr_free(blocks[i]);
  }
  s.n = s.run = s.longest = 0;
  if (tsr_map_walk(find_spans, &s) != 0 || s.longest < 2 || s.longest >= tsri_span_shape(16400).slots) _exit(5);
  /* no room for another arena */
  rl.rlim_cur = tsr_test_mapped() + MiB / 2;
  if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(6);
  void *p = tsr_malloc(16400);
  if (p == NULL) _exit(1);
  memset(p, 1, 16400);
  _exit(tsr_check() == 0 ? 0 : 7);
}

Test(fit, a_fitted_span_with_no_room_falls_back_to_the_class) {
  if (TSR_TEST_SHADOW) cr_skip_test("the sanitizer's shadow memory counts against the cap");
  tsr_child_t out;
  cr_assert(tsr_test_run_child(fragmented_arenas, NULL, &out));
  cr_assert(WIFEXITED(out.status), "the child died (status %#x): %s", out.status, out.err);
  cr_assert_neq(WEXITSTATUS(out.status), 1, "malloc(16400) failed with free runs of two slots left: %s", out.err);
  cr_assert_eq(WEXITSTATUS(out.status), 0, "the child failed at step %d: %s", WEXITSTATUS(out.status), out.err);
}

static int count_spans_of(size_t block_size) {
  span_count_t c = { block_size, 0, 0, tsri_span_shape(block_size) };
  cr_assert_eq(tsr_map_walk(count_spans, &c), 0);
  return (int)c.spans;
}

/* A fitted page kept empty as the current one goes back to its arena when
 * a request too big for it passes it, rather than wait at the back of the
 * queue. */
Test(fit, an_empty_fitted_page_passed_over_goes_back) {
  enum { N = 15 };   /* one fitted page of 4,112-byte blocks */
  void *p[N];
  for (int i = 0; i < N; i++) p[i] = tsr_malloc(4112);
  for (int i = 0; i < N; i++) tsr_free(p[i]);
  cr_assert_eq(count_spans_of(4112), 1, "the empty current page is kept");
  void *big = tsr_malloc(4500);
  cr_assert_eq(tsr_usable_size(big), 4608);
  cr_assert_eq(count_spans_of(4112), 0, "the empty fitted page stayed");
  tsr_free(big);
  cr_assert_eq(tsr_check(), 0);
}

/* Pages of threads that exited: an abandoned fitted page too small for a
 * request goes behind the others, so that the class's pages further on
 * are adopted, not passed by for a new span each time. */
typedef struct leave_s {
  size_t size;
  int pages, per_page;
} leave_t;

static void *leave_one_per_page(void *arg) {
  const leave_t *l = arg;
  void *p[16 * 15];
  int n = l->pages * l->per_page;
  for (int i = 0; i < n; i++) p[i] = tsr_malloc(l->size);
  for (int i = 0; i < n; i++)
    if (i % l->per_page != 0) tsr_free(p[i]);
  return NULL;   /* the heap's pages, each with one live block, are abandoned */
}

static void *take_class_blocks(void *arg) {
  for (int i = 0; i < *(int *)arg; i++) cr_assert_not_null(tsr_malloc(4600));
  return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
}

Test(fit, adoption_passes_fitted_pages_too_small) {
  /* 4,600 bytes round up to the class's 4,608: no fitting */
  leave_t fitted = { 4112, 12, 15 }, full = { 4600, 3, 14 };
  run_thread(leave_one_per_page, &fitted);   /* twelve fitted pages first in the list */
  run_thread(leave_one_per_page, &full);     /* then three of the class's own */
  cr_assert_eq(count_spans_of(4112), 12);
  cr_assert_eq(count_spans_of(4608), 3);
  int n = 3 * 13;   /* the free blocks of the three */
  run_thread(take_class_blocks, &n);
  int spans = count_spans_of(4608);
  cr_assert_leq(spans, 4, "%d spans of the class: the abandoned ones were passed by", spans);
  cr_assert_eq(tsr_check(), 0);
}

/* tsr_defrag_hint names a block to move where the block would go to a
 * page fuller than its own; a fitted current page of smaller blocks is no
 * such place for a block of the class's size. */
Test(fit, the_defrag_hint_does_not_send_blocks_to_a_fitted_page_too_small) {
  void *f1 = tsr_malloc(4112);                 /* the fitted page, current */
  cr_assert_eq(tsr_usable_size(f1), 4112);
  enum { N = 14 };                             /* a page of the class's 4,608 */
  void *c[N];
  for (int i = 0; i < N; i++) {
    c[i] = tsr_malloc(4600);
    cr_assert_eq(tsr_usable_size(c[i]), 4608);
  }
  void *f2 = tsr_malloc(4112);                 /* the class's page is full: the fitted one is current again */
  cr_assert_eq(tsr_usable_size(f2), 4112);
  for (int i = 1; i < N; i++) tsr_free(c[i]);  /* the class's page holds one block */
  cr_assert_eq(tsr_defrag_hint(c[0]), 0, "a 4,608-byte block sent to a page of 4,112-byte blocks");
  tsr_free(c[0]);
  tsr_free(f1);
  tsr_free(f2);
  cr_assert_eq(tsr_check(), 0);
}
