/* test_records.c: the records of full tracking, at the edges of their
 * compact form (meta.c, "Record areas of pages tracked in full").
 *
 * A page tracked in full keeps one 4- or 8-byte record per block naming a
 * context (call stack, thread, first record number) from a table of 128
 * per page; a record's time follows from its number through the time log.
 * What does not fit (more contexts than the table holds, more unasked-for
 * bytes than the record holds, numbers further apart than its offset
 * reaches) must still be recorded exactly, in the table of full records.
 * Each test checks what the walk, the sites and the totals say against
 * what it allocated.
 *
 * This program's own malloc is the C library's; only its tsr_ calls reach
 * tessera, and every test runs in a process of its own (Criterion).
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include "tsr_sites.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tessera.h>

#include "track/track.h"   /* the tests look at a page's record area and the table's totals */

static void heap_is_sound(void) { cr_assert_eq(tsr_check(), 0, "tsr_check found problems"); }

/* What the walk says about a set of blocks. */
typedef struct seen_s {
  void **ptrs;
  size_t n;
  size_t found, tracked, requested_bad;
  size_t *requested;        /* expected requested bytes per block */
  tsr_block_t *copy;        /* the walk's answer per block */
} seen_t;

static int see(const tsr_block_t *b, void *arg) {
  seen_t *s = arg;
  for (size_t i = 0; i < s->n; i++) {
    if (s->ptrs[i] != b->ptr) continue;
    s->found++;
    if (b->tracked) s->tracked++;
    if (b->requested != s->requested[i]) s->requested_bad++;
    s->copy[i] = *b;
  }
  return 0;
}

static seen_t walk_blocks(void **ptrs, size_t *requested, size_t n) {
  seen_t s = { ptrs, n, 0, 0, 0, requested, calloc(n, sizeof(tsr_block_t)) };
  cr_assert_eq(tsr_walk(see, &s), 0);
  cr_assert_eq(s.found, n, "the walk saw %zu of %zu blocks", s.found, n);
  cr_assert_eq(s.tracked, n, "%zu of %zu blocks have a record", s.tracked, n);
  cr_assert_eq(s.requested_bad, 0, "%zu blocks with the wrong requested size", s.requested_bad);
  return s;
}

static uint64_t stats_requested(void) {
  tsr_stats_t st = { .size = sizeof st };
  cr_assert_eq(tsr_stats_get(&st), 0);
  return st.requested;
}

static uint64_t stats_tracked(void) {
  tsr_stats_t st = { .size = sizeof st };
  cr_assert_eq(tsr_stats_get(&st), 0);
  return st.tracked_blocks;
}

/* ------------------------------------------------------------------------
 * More call stacks in one page than a page has contexts
 * ---------------------------------------------------------------------- */

/* Stack k (of MANY_STACKS) is many_a's chain of MANY_BITS calls for k
 * (TSR_STACK_PER_K), down to MANY_EACH allocations: 256 stacks, one
 * class, a few pages. */
enum { MANY_BITS = 8, MANY_STACKS = 1 << MANY_BITS, MANY_SIZE = 40, MANY_EACH = 3 };

TSR_STACK_PER_K(many, MANY_EACH, MANY_SIZE)

static void *many_blocks[MANY_STACKS * MANY_EACH];

static void many_alloc(unsigned k) { many_a(k, MANY_BITS, &many_blocks[k * MANY_EACH]); }

/* Every live block of stacks [from, to) is recorded, and the sites hold
 * MANY_EACH blocks each. */
static void many_check(unsigned from, unsigned to) {
  size_t n = (size_t)(to - from) * MANY_EACH;
  size_t *req = malloc(n * sizeof *req);
  for (size_t i = 0; i < n; i++) req[i] = MANY_SIZE;
  seen_t s = walk_blocks(&many_blocks[from * MANY_EACH], req, n);
  /* each stack's blocks share one site, and no two stacks do */
  for (unsigned k = 0; k < to - from; k++) {
    uint32_t site = s.copy[k * MANY_EACH].site;
    cr_assert_neq(site, 0);
    for (unsigned i = 1; i < MANY_EACH; i++) cr_assert_eq(s.copy[k * MANY_EACH + i].site, site);
    if (k > 0) cr_assert_neq(site, s.copy[(k - 1) * MANY_EACH].site, "stacks %u and %u share a site", k - 1, k);
  }
  size_t count = tsr_sites(NULL, 0);
  tsr_site_t *sites = calloc(count, sizeof *sites);
  cr_assert_eq(tsr_sites(sites, count), count);
  size_t with_blocks = 0;
  for (size_t i = 0; i < count; i++) {
    if (sites[i].blocks == 0) continue;
    with_blocks++;
    cr_assert_eq(sites[i].blocks, MANY_EACH, "a site with %llu blocks", (unsigned long long)sites[i].blocks);
    cr_assert_eq(sites[i].requested, (uint64_t)MANY_EACH * MANY_SIZE);
    cr_assert_eq(sites[i].estimated, 0);
  }
  cr_assert_eq(with_blocks, to - from);
  cr_assert_eq(stats_requested(), (uint64_t)n * MANY_SIZE);
  free(sites);
  free(s.copy);
  free(req);
}

static size_t table_records(void) {
  tsri_meta_totals_t t;
  tsri_meta_table_totals(&t);
  return (size_t)t.tracked;
}

static size_t contexts_in_use(const void *block) {
  tsri_recs_t *r = atomic_load(&tsri_page_of(block)->recs);
  cr_assert_not_null(r);
  size_t n = 0;
  for (size_t k = 0; k < TSRI_CTX_SLOTS; k++) n += atomic_load(&r->ctx[k].thread) != 0;
  return n;
}

Test(records, more_stacks_than_contexts) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  for (unsigned k = 0; k < MANY_STACKS; k++) many_alloc(k);
  cr_assert_eq(tsri_page_of(many_blocks[0]), tsri_page_of(many_blocks[MANY_STACKS * MANY_EACH - 1]),
               "the blocks share a page");
  cr_assert_eq(contexts_in_use(many_blocks[0]), TSRI_CTX_SLOTS - 1, "every context slot is in use");
  cr_assert_eq(table_records(), (MANY_STACKS - (TSRI_CTX_SLOTS - 1)) * MANY_EACH,
               "the stacks past the contexts have table records");
  many_check(0, MANY_STACKS);
  heap_is_sound();
  /* free the first half, make it again: contexts no block names any more
   * are taken for new stacks */
  for (size_t i = 0; i < MANY_STACKS / 2 * MANY_EACH; i++) tsr_free(many_blocks[i]);
  for (unsigned k = 0; k < MANY_STACKS / 2; k++) many_alloc(k);
  many_check(0, MANY_STACKS);
  heap_is_sound();
  for (size_t i = 0; i < MANY_STACKS * MANY_EACH; i++) tsr_free(many_blocks[i]);
  cr_assert_eq(stats_tracked(), 0);
  cr_assert_eq(stats_requested(), 0);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * Unasked-for bytes: more than a 32-bit record holds (15) goes to the
 * table; an 8-byte record holds any a block can have
 * ---------------------------------------------------------------------- */

static TSR_ALLOC_FN void *aligned_small(size_t align, size_t size) {
  void *p = tsr_aligned_alloc(align, size);
  TSR_KEEP(p);
  return p;
}

Test(records, waste_beyond_the_compact_record) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  enum { N = 40 };
  void *p[4 * N];
  size_t req[4 * N];
  for (size_t i = 0; i < N; i++) {
    p[i] = aligned_small(64, 1);   /* a 64-byte block for 1 byte: 63 unasked, a table record */
    req[i] = 1;
    p[N + i] = aligned_small(256, 3);   /* 253 unasked: an 8-byte record holds it */
    req[N + i] = 3;
    p[2 * N + i] = tsr_malloc(48);   /* shrunk in place below: 23 unasked, to the table */
    req[2 * N + i] = 25;
    p[3 * N + i] = tsr_malloc(5000);   /* grown in place below */
    req[3 * N + i] = tsr_usable_size(p[3 * N + i]);
  }
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(tsr_realloc(p[2 * N + i], 25), p[2 * N + i], "a shrink by half stays in place");
    cr_assert_eq(tsr_realloc(p[3 * N + i], req[3 * N + i]), p[3 * N + i]);
  }
  cr_assert_eq(table_records(), 2 * N, "the aligned 64-byte and the shrunk blocks have table records");
  uint64_t total = 0;
  for (size_t i = 0; i < 4 * N; i++) total += req[i];
  seen_t s = walk_blocks(p, req, 4 * N);
  free(s.copy);
  cr_assert_eq(stats_requested(), total);
  cr_assert_eq(stats_tracked(), 4 * N);
  heap_is_sound();
  for (size_t i = 0; i < 4 * N; i++) tsr_free(p[i]);
  cr_assert_eq(stats_tracked(), 0);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * Record numbers further apart than an offset reaches
 * ---------------------------------------------------------------------- */

static TSR_ALLOC_FN void *one_site(size_t size) {
  void *p = tsr_malloc(size);
  TSR_KEEP(p);
  return p;
}

/* rounds blocks of size bytes from one stack, of which the first (p[0])
 * and the last (p[1]) are kept and the others freed at once. */
static TSR_ALLOC_FN void keep_first_and_last(size_t size, int rounds, void **p) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(rounds); i++) {
    void *q = one_site(size);
    /* i hidden: GCC would otherwise peel the first round off, with a call
     * (a stack) of its own */
    int at = tsr_opaque_count(i);
    if (at == 0) p[0] = q;
    else if (at == rounds - 1) p[1] = q;
    else tsr_free(q);
  }
}

Test(records, numbers_beyond_one_context) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  /* 32-bit records reach 2^19 numbers from their context's first: keep a
   * block from the start, churn past that, keep another */
  void *p[2];
  size_t req[2] = { 24, 24 };
  keep_first_and_last(24, (1 << 19) + 1000, p);
  cr_assert_eq(tsri_page_of(p[0]), tsri_page_of(p[1]), "the two blocks share a page");
  cr_assert_eq(contexts_in_use(p[0]), 2, "a second context for the later numbers");
  cr_assert_eq(table_records(), 0);
  seen_t s = walk_blocks(p, req, 2);
  cr_assert_eq(s.copy[0].site, s.copy[1].site);
  cr_assert_gt(s.copy[1].seq, s.copy[0].seq + (1u << 19), "numbers %llu and %llu",
               (unsigned long long)s.copy[0].seq, (unsigned long long)s.copy[1].seq);
  free(s.copy);
  heap_is_sound();
  tsr_free(p[0]);
  tsr_free(p[1]);
}

/* ------------------------------------------------------------------------
 * Times
 * ---------------------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One try: GAPS + 1 blocks, GAP_MS apart.  Every try asserts what holds
 * under any load: times and numbers never go back.  Returns whether every
 * gap also came within SLACK_MS of the one measured, which a ticker kept
 * off the CPU for longer (a loaded 2-core machine running the suite in
 * parallel) may miss: both times come from the same clock, tessera's
 * late by a tick, the ticker's period and its wait for a CPU. */
enum { GAPS = 4, GAP_MS = 300, SLACK_MS = 100 };

static bool times_try(void) {
  void *p[GAPS + 1];
  size_t req[GAPS + 1];
  uint64_t at[GAPS + 1];
  for (int i = 0; i <= GAPS; i++) {
    if (i > 0) usleep(GAP_MS * 1000);
    at[i] = now_ms();
    p[i] = one_site(100);
    req[i] = 100;
  }
  seen_t s = walk_blocks(p, req, GAPS + 1);
  bool close = true;
  for (int i = 1; i <= GAPS; i++) {
    int64_t theirs = (int64_t)s.copy[i].time_ms - (int64_t)s.copy[i - 1].time_ms;
    int64_t ours = (int64_t)(at[i] - at[i - 1]);
    cr_assert_geq(theirs, 0, "block %d dated before the one before", i);
    cr_assert_gt(s.copy[i].seq, s.copy[i - 1].seq);
    if (theirs < ours - SLACK_MS || theirs > ours + SLACK_MS) {
      fprintf(stderr, "block %d: %lld ms after the one before, measured %lld\n", i, (long long)theirs,
              (long long)ours);
      close = false;
    }
  }
  free(s.copy);
  for (int i = 0; i <= GAPS; i++) tsr_free(p[i]);
  return close;
}

Test(records, times_follow_the_clock, .timeout = 30) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  enum { TRIES = 4 };
  int tries = 0;
  while (!times_try()) cr_assert_lt(++tries, TRIES, "no try out of %d dated its blocks within %d ms", TRIES, SLACK_MS);
}

/* A long run fills the time log (1024 clock readings, one per tick in
 * which a thread took numbers): thinned, it still dates every block to
 * within 1/32 of its age, or the clock's precision for recent ones. */
Test(records, times_stay_close_when_the_log_fills, .timeout = 60) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  enum { KEPT = 60, RUN_MS = 6000 };
  void *p[KEPT];
  size_t req[KEPT];
  uint64_t at[KEPT];
  uint64_t start = now_ms();
  size_t kept = 0;
  while (kept < KEPT) {
    uint64_t t = now_ms();
    if (t - start >= (uint64_t)kept * RUN_MS / KEPT) {
      at[kept] = t;
      req[kept] = 64;
      p[kept++] = one_site(64);
    }
    tsr_free(one_site(32));   /* numbers taken in every tick: a reading each */
  }
  seen_t s = walk_blocks(p, req, KEPT);
  uint64_t end = now_ms();
  for (size_t i = 1; i < KEPT; i++) {
    /* time from the first kept block, theirs and ours */
    int64_t theirs = (int64_t)s.copy[i].time_ms - (int64_t)s.copy[0].time_ms;
    int64_t ours = (int64_t)(at[i] - at[0]);
    int64_t slack = 100 + (int64_t)(end - at[0]) / 32;
    cr_assert(theirs >= ours - slack && theirs <= ours + slack,
              "block %zu: %lld ms after the first, measured %lld (slack %lld)", i, (long long)theirs,
              (long long)ours, (long long)slack);
  }
  free(s.copy);
  for (size_t i = 0; i < KEPT; i++) tsr_free(p[i]);
}

/* A page whose context table is full of contexts live blocks name: a
 * block from a stack that has a context there, but of an older range of
 * numbers, gets a long record (a second array), still exact. */
Test(records, long_records_when_contexts_run_out) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  enum { STACKS = 126, ROUNDS = (1 << 19) + 1000 };   /* 126 stacks + one_site's: 127 contexts */
  for (unsigned k = 0; k < STACKS; k++) many_alloc(k);
  void *p[2];
  size_t req[2] = { MANY_SIZE, MANY_SIZE };
  keep_first_and_last(MANY_SIZE, ROUNDS, p);
  tsr_page_t *pg = tsri_page_of(p[1]);
  cr_assert_eq(pg, tsri_page_of(many_blocks[0]), "the blocks share a page");
  tsri_recs_t *r = atomic_load(&pg->recs);
  cr_assert(r != NULL && r->has_long, "no long record was written");
  seen_t s = walk_blocks(p, req, 2);
  cr_assert_eq(s.copy[0].site, s.copy[1].site);
  cr_assert_gt(s.copy[1].seq, s.copy[0].seq + (1u << 19));
  free(s.copy);
  cr_assert_eq(stats_requested(), (uint64_t)(STACKS * MANY_EACH + 2) * MANY_SIZE);
  cr_assert_eq(stats_tracked(), STACKS * MANY_EACH + 2);
  heap_is_sound();
  tsr_free(p[0]);
  tsr_free(p[1]);
  many_check(0, STACKS);   /* and the others are as they were */
  for (size_t i = 0; i < STACKS * MANY_EACH; i++) tsr_free(many_blocks[i]);
  cr_assert_eq(stats_tracked(), 0);
  heap_is_sound();
}

/* A page that empties goes back to its arena, keeping its record area
 * (cleared) for the slot's next page.  Fill pages, free the first, and
 * allocate again from the same stack: a new page on the first one's slot
 * (at a phase of its own with meshing on, page.c), whose records must all
 * be right. */
Test(records, record_area_of_a_reused_slot) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  enum { SIZE = 48, N = 3000 };
  static void *p[N];
  size_t first_page = 0, reused = 0;
  void *first_slot = NULL;
  /* one call site for both rounds: one stack */
  TSR_ONE_CALL for (int round = 0; round < tsr_opaque_count(2); round++) {
    size_t n = round == 0 ? N : first_page;
    for (size_t i = 0; i < n; i++) {
      p[i] = one_site(SIZE);
      if (round == 0 && i > 0 && first_page == 0 && tsri_page_of(p[i]) != tsri_page_of(p[0])) first_page = i;
      if (round == 1) reused += tsri_page_base(tsri_page_of(p[i])) == (uintptr_t)first_slot;
    }
    if (round == 0) {
      cr_assert_gt(first_page, 0, "the blocks fill more than a page");
      first_slot = (void *)tsri_page_base(tsri_page_of(p[0]));
      for (size_t i = 0; i < first_page; i++) tsr_free(p[i]);   /* the first page empties */
    }
  }
  cr_assert_gt(reused, 0, "no block came from the first page's slot again");
  size_t req[N];
  for (size_t i = 0; i < N; i++) req[i] = SIZE;
  seen_t s = walk_blocks(p, req, N);
  for (size_t i = 0; i < N; i++) cr_assert_eq(s.copy[i].site, s.copy[0].site, "block %zu: another stack", i);
  free(s.copy);
  cr_assert_eq(stats_tracked(), N);
  cr_assert_eq(stats_requested(), (uint64_t)N * SIZE);
  heap_is_sound();
  for (size_t i = 0; i < N; i++) tsr_free(p[i]);
  cr_assert_eq(stats_tracked(), 0);
}

/* ------------------------------------------------------------------------
 * Stacks that differ only in a frame near the thread's first: the stack
 * memo, which takes a stack as unchanged when the words the last walk
 * read are, must still tell them apart
 * ---------------------------------------------------------------------- */

enum { OUTER_ROUNDS = 200, OUTER_EACH = 4, OUTER_SIZE = 24 };
static void *outer_blocks[3 * OUTER_ROUNDS * OUTER_EACH];
static size_t outer_count;

static TSR_ALLOC_FN void outer_leaf(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(OUTER_EACH); i++) {
    outer_blocks[outer_count] = tsr_malloc(OUTER_SIZE);
    TSR_KEEP(outer_blocks[outer_count]);
    outer_count++;
  }
}
static TSR_ALLOC_FN void outer_a(void) { outer_leaf(); TSR_KEEP(&outer_count); }
static TSR_ALLOC_FN void outer_b(void) { outer_leaf(); TSR_KEEP(&outer_count); }

/* The thread's first function: a's stack, then b's, then a's again, each
 * many times in a row (what the memo remembers), all at the same depth. */
static void *outer_thread(void *arg) {
  (void)arg;
  TSR_ONE_CALL for (int r = 0; r < tsr_opaque_count(OUTER_ROUNDS); r++) outer_a();
  TSR_ONE_CALL for (int r = 0; r < tsr_opaque_count(OUTER_ROUNDS); r++) outer_b();
  TSR_ONE_CALL for (int r = 0; r < tsr_opaque_count(OUTER_ROUNDS); r++) outer_a();
  return NULL;
}

/* Which of outer_a and outer_b return address ra lies in: the nearer
 * start below it (both are small and next to each other). */
static char outer_fn_of(const void *ra) {
  uintptr_t x = (uintptr_t)ra, a = (uintptr_t)outer_a, b = (uintptr_t)outer_b;
  if (x > a && (x <= b || a > b)) return 'a';
  if (x > b) return 'b';
  return '?';
}

Test(records, stacks_that_differ_near_the_first_frame) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, outer_thread, NULL), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  cr_assert_eq(outer_count, 3 * OUTER_ROUNDS * OUTER_EACH);
  size_t count = tsr_sites(NULL, 0);
  tsr_site_t *sites = calloc(count, sizeof *sites);
  cr_assert_eq(tsr_sites(sites, count), count);
  uint64_t in_a = 0, in_b = 0;
  for (size_t i = 0; i < count; i++) {
    if (sites[i].blocks == 0) continue;
    cr_assert_geq(sites[i].depth, 2);
    char fn = outer_fn_of(sites[i].frames[1]);
    cr_assert(fn == 'a' || fn == 'b', "a site whose second frame is neither outer_a nor outer_b");
    cr_assert_eq(sites[i].requested, sites[i].blocks * OUTER_SIZE);
    if (fn == 'a') in_a += sites[i].blocks;
    else in_b += sites[i].blocks;
  }
  cr_assert_eq(in_a, 2 * OUTER_ROUNDS * OUTER_EACH, "%llu blocks under outer_a", (unsigned long long)in_a);
  cr_assert_eq(in_b, OUTER_ROUNDS * OUTER_EACH, "%llu blocks under outer_b", (unsigned long long)in_b);
  free(sites);
  heap_is_sound();
  for (size_t i = 0; i < outer_count; i++) tsr_free(outer_blocks[i]);
  cr_assert_eq(stats_tracked(), 0);
}
