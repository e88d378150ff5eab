/* meta.c: per-block records, out of band.
 *
 * Owns: the tracking level (TESSERA_TRACK, tsr_track_set), the sampling
 * countdown of each heap, making a record when a block is to be tracked and
 * dropping it when the block is freed, the two places records live, the
 * walk over every live block, and the leak marks.
 *
 * Where records live.  A page allocated from while tracking is full gets
 * an array of records, one per block (tsr_page_t.recs), in a reservation
 * each arena makes for that purpose the first time (TSR_PAGE_MAX_BLOCKS
 * records per slot, committed page by page as pages are tracked).  Every
 * other record (a sampled block, a large block) lives in one hash table
 * keyed by block address, under meta_lock.  A page's `tracked` word says
 * whether a free must look: the array flag plus the number of its blocks in
 * the table; 0 for almost every page when sampling.
 *
 * Sampling.  Each heap counts down the bytes asked for; when the count
 * crosses zero the allocation takes the slow path here and its block is
 * recorded, and the next countdown is drawn from an exponential
 * distribution with mean TESSERA_SAMPLE_BYTES.  A block of s bytes is so
 * sampled with probability p = 1 - exp(-s / mean), and its record stands
 * for 1/p blocks (the `weight`), which makes the sums over samples unbiased
 * estimates of the sums over all blocks, as in tcmalloc's and jemalloc's
 * heap profilers.  Full tracking keeps the countdown at -1, so every
 * allocation comes here.
 *
 * The free paths call tsri_meta_free_* before the block is given back, so
 * a record is gone before its block can be reused.
 */
#include "internal.h"


_Atomic int tsri_track_level = TSR_TRACK_SAMPLE;
uint64_t tsri_start_ms;
_Atomic size_t tsri_meta_large_tracked;

static _Atomic uint64_t meta_seq;   /* last record number given to a heap */
#define SEQ_BLOCK 256                /* record numbers a heap takes at a time */

/* Records in page arrays dropped by threads without a heap, per class. */
static _Atomic int64_t orphan_live[TSR_CLASS_COUNT], orphan_requested[TSR_CLASS_COUNT];

/* ------------------------------------------------------------------------
 * The table of sampled and large records
 * ---------------------------------------------------------------------- */

typedef struct meta_entry_s {
  uintptr_t ptr;            /* block address; 0: empty slot */
  uint64_t requested;       /* bytes asked for (large blocks may pass 2^32) */
  uint64_t usable;
  double weight;            /* blocks this record stands for */
  uint32_t cls;             /* TSR_CLASS_COUNT: large */
  tsri_rec_t rec;
} meta_entry_t;

static tsri_lock_t meta_lock;
static tsri_table_t table = TSRI_TABLE_INIT(meta_entry_t, 1024);
static tsri_meta_totals_t table_sums; /* over the entries */

static void sums_add(const meta_entry_t *e, double sign) {
  table_sums.tracked += sign > 0 ? 1 : (uint64_t)-1;
  table_sums.requested += sign > 0 ? e->requested : (uint64_t)0 - e->requested;
  table_sums.w_blocks += sign * e->weight;
  table_sums.w_usable += sign * e->weight * (double)e->usable;
  table_sums.w_requested += sign * e->weight * (double)e->requested;
}

/* meta_lock held. */
static bool table_insert(const meta_entry_t *e) {
  meta_entry_t *slot = tsri_table_insert(&table, e->ptr);
  if (slot == NULL) return false;
  *slot = *e;
  sums_add(e, 1.0);
  return true;
}

/* Remove p's entry into *out; false when there is none.  meta_lock held. */
static bool table_remove(uintptr_t p, meta_entry_t *out) {
  meta_entry_t *e = tsri_table_find(&table, p);
  if (e == NULL) return false;
  *out = *e;
  sums_add(out, -1.0);
  tsri_table_remove(&table, e);
  return true;
}

void tsri_meta_table_totals(tsri_meta_totals_t *t) {
  tsri_lock(&meta_lock);
  *t = table_sums;
  tsri_unlock(&meta_lock);
}

/* ------------------------------------------------------------------------
 * Record arrays of pages tracked in full
 * ---------------------------------------------------------------------- */

#define ARENA_RECS_BYTES ((size_t)TSR_ARENA_SLOTS * TSR_PAGE_MAX_BLOCKS * sizeof(tsri_rec_t))

static inline tsr_arena_t *arena_of(const tsr_page_t *pg) {
  return (tsr_arena_t *)((uintptr_t)pg & ~(uintptr_t)TSR_ARENA_MASK);
}

static size_t recs_bytes(const tsr_page_t *pg) {
  return tsri_align_up((size_t)pg->capacity * sizeof(tsri_rec_t), tsri_os_page_size());
}

/* The record array of pg, made on first use; NULL when the OS refuses.
 * Caller: the owner of pg (nobody else makes arrays for it). */
static tsri_rec_t *page_recs(tsr_page_t *pg) {
  tsri_rec_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
  if (tsr_likely(r != NULL)) return r;
  tsr_arena_t *a = arena_of(pg);
  tsri_rec_t *base = atomic_load_explicit(&a->recs, memory_order_acquire);
  if (base == NULL) {
    void *mem;
    if (tsri_os_reserve(ARENA_RECS_BYTES, tsri_os_granularity(), &mem) != 0) return NULL;
    tsri_rec_t *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&a->recs, &none, (tsri_rec_t *)mem,
                                                memory_order_acq_rel, memory_order_acquire)) {
      base = mem;
      tsri_count(&tsri_counters.os_reserves, 1);
      tsri_count(&tsri_counters.reserved, (int64_t)ARENA_RECS_BYTES);
    } else {
      tsri_os_release(mem, ARENA_RECS_BYTES);
      base = none;
    }
  }
  r = base + (size_t)(pg - a->pages) * TSR_PAGE_MAX_BLOCKS;
  size_t bytes = recs_bytes(pg);
  if (tsri_os_commit(r, bytes) != 0) return NULL;   /* fresh commit: all zero */
  tsri_count(&tsri_counters.os_commits, 1);
  tsri_count(&tsri_counters.committed, (int64_t)bytes);
  tsri_count(&tsri_counters.metadata, (int64_t)bytes);
  atomic_store_explicit(&pg->recs, r, memory_order_release);
  atomic_fetch_or_explicit(&pg->tracked, TSRI_TRACKED_ARRAY, memory_order_relaxed);
  return r;
}

/* Count records made (blocks > 0) or dropped in page arrays of class cls
 * by the calling thread, whose heap is h (tsri_heap_none: it has none).
 * Each heap's counters have one writer, its thread, so no atomic add. */
static inline void count_recs(tsr_heap_t *h, size_t cls, int64_t blocks, int64_t bytes) {
  if (h == &tsri_heap_none) {
    atomic_fetch_add_explicit(&orphan_live[cls], blocks, memory_order_relaxed);
    atomic_fetch_add_explicit(&orphan_requested[cls], bytes, memory_order_relaxed);
    return;
  }
  atomic_store_explicit(&h->rec_live[cls],
                        atomic_load_explicit(&h->rec_live[cls], memory_order_relaxed) + blocks,
                        memory_order_relaxed);
  atomic_store_explicit(&h->rec_requested[cls],
                        atomic_load_explicit(&h->rec_requested[cls], memory_order_relaxed) + bytes,
                        memory_order_relaxed);
}

static void sum_recs(tsr_heap_t *h, void *arg) {
  int64_t(*sums)[TSR_CLASS_COUNT] = arg;
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    sums[0][c] += atomic_load_explicit(&h->rec_live[c], memory_order_relaxed);
    sums[1][c] += atomic_load_explicit(&h->rec_requested[c], memory_order_relaxed);
  }
}

void tsri_meta_array_totals(uint64_t live[TSR_CLASS_COUNT], uint64_t requested[TSR_CLASS_COUNT]) {
  int64_t sums[2][TSR_CLASS_COUNT];
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    sums[0][c] = atomic_load_explicit(&orphan_live[c], memory_order_relaxed);
    sums[1][c] = atomic_load_explicit(&orphan_requested[c], memory_order_relaxed);
  }
  tsri_heap_foreach(sum_recs, sums);
  /* a record made and dropped by different threads between two reads of
   * their counters may show as a passing negative */
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    live[c] = sums[0][c] > 0 ? (uint64_t)sums[0][c] : 0;
    requested[c] = sums[1][c] > 0 ? (uint64_t)sums[1][c] : 0;
  }
}

/* Records in arrays are read by walkers while their owner writes them:
 * three relaxed words, seq last on store and first on load, so a reader
 * sees either no record or one that was whole when seq was read. */
static inline void rec_store(tsri_rec_t *dst, const tsri_rec_t *src) {
  uint64_t w[3];
  memcpy(w, src, sizeof w);
  _Atomic uint64_t *d = (_Atomic uint64_t *)(void *)dst;
  atomic_store_explicit(&d[1], w[1], memory_order_relaxed);
  atomic_store_explicit(&d[2], w[2], memory_order_relaxed);
  atomic_store_explicit(&d[0], w[0], memory_order_release);
}

static inline void rec_load(const tsri_rec_t *src, tsri_rec_t *dst) {
  _Atomic uint64_t *s = (_Atomic uint64_t *)(void *)(uintptr_t)src;
  uint64_t w[3];
  w[0] = atomic_load_explicit(&s[0], memory_order_acquire);
  w[1] = atomic_load_explicit(&s[1], memory_order_relaxed);
  w[2] = atomic_load_explicit(&s[2], memory_order_relaxed);
  memcpy(dst, w, sizeof w);
}

static inline void rec_clear(tsri_rec_t *r) {
  atomic_store_explicit((_Atomic uint64_t *)(void *)r, 0, memory_order_relaxed);
}

void tsri_meta_page_retire(tsr_page_t *pg) {
  if (atomic_load_explicit(&pg->recs, memory_order_relaxed) == NULL) return;
  /* walkers copy records under the arena lock: once the pointer is gone
   * under that lock, nobody reads the array any more */
  tsri_lock(tsri_arena_lock_get());
  tsri_rec_t *r = atomic_load_explicit(&pg->recs, memory_order_relaxed);
  atomic_store_explicit(&pg->recs, NULL, memory_order_relaxed);
  atomic_fetch_and_explicit(&pg->tracked, ~TSRI_TRACKED_ARRAY, memory_order_relaxed);
  tsri_unlock(tsri_arena_lock_get());
  size_t bytes = recs_bytes(pg);
  tsri_os_decommit(r, bytes);
  tsri_count(&tsri_counters.os_decommits, 1);
  tsri_count(&tsri_counters.committed, -(int64_t)bytes);
  tsri_count(&tsri_counters.metadata, -(int64_t)bytes);
}

/* ------------------------------------------------------------------------
 * Tracking level and sampling
 * ---------------------------------------------------------------------- */

/* The two functions of the sampling arithmetic, written here so that the
 * library needs no libm (whose pages would add to every process's RSS).
 * Both are good to about 1e-12, far below what sampling can resolve. */
#define LN2 0.6931471805599453

/* -ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), and
 * ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172. */
static double neg_log(double u) {
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double series = 1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 / 13)))));
  return -((double)e * LN2 + 2.0 * s * series);
}

/* 1 - exp(-x) for x >= 0, without the cancellation near 0. */
static double one_minus_exp(double x) {
  if (x > 40.0) return 1.0;
  double sum = 0.0, term = 1.0;
  if (x < 0.5) {   /* x - x^2/2! + x^3/3! - ... */
    for (int n = 1; n <= 24; n++) {
      term *= (n == 1 ? x : -x / n);
      sum += term;
    }
    return sum;
  }
  int k = (int)(x / LN2);          /* exp(-x) = 2^-k exp(-r), r in [0, ln 2) */
  double r = x - k * LN2;
  for (int n = 1; n <= 24; n++) {  /* exp(-r) */
    sum += term;
    term *= -r / n;
  }
  uint64_t bits = (uint64_t)(1023 - k) << 52;   /* 2^-k, k <= 57 */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return 1.0 - sum * scale;
}

/* Bytes to the next sample: exponential with mean TESSERA_SAMPLE_BYTES. */
static int64_t next_interval(tsr_heap_t *h) {
  uint64_t x = h->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  h->rng = x;
  double u = (double)(((x * 0x2545f4914f6cdd1dull) >> 11) + 1) * (1.0 / 9007199254740992.0);
  double mean = (double)tsri_option(TSRI_OPT_SAMPLE_BYTES);
  double n = neg_log(u) * mean;
  return n > 4e18 ? INT64_MAX : (int64_t)n;
}

static int64_t countdown_for(int level, tsr_heap_t *h) {
  if (level == TSR_TRACK_FULL) return -1;
  if (level == TSR_TRACK_STATS) return INT64_MAX;
  return next_interval(h);
}

void tsri_meta_heap_init(tsr_heap_t *h) {
  memset(&h->stack_memo, 0, sizeof h->stack_memo);   /* a new thread: another stack */
  h->rng = ((uint64_t)(uintptr_t)h * 0x9e3779b97f4a7c15ull) ^ tsri_os_clock_ms() ^
           ((uint64_t)tsri_os_thread_id() << 32);
  if (h->rng == 0) h->rng = 1;
  atomic_store_explicit(&h->sample_left,
                        countdown_for(atomic_load_explicit(&tsri_track_level, memory_order_relaxed), h),
                        memory_order_relaxed);
}

static void track_heap(tsr_heap_t *h, void *arg) {
  atomic_store_explicit(&h->sample_left, *(int64_t *)arg, memory_order_relaxed);
}

int tsr_track_set(tsr_track_t level) {
  if ((int)level < TSR_TRACK_STATS || (int)level > TSR_TRACK_FULL) return EINVAL;
  tsri_init();
  atomic_store_explicit(&tsri_track_level, (int)level, memory_order_relaxed);
  /* every heap takes the slow path at its next allocation and re-arms its
   * countdown there for the new level */
  int64_t now = -1;
  tsri_heap_foreach(track_heap, &now);
  return 0;
}

tsr_track_t tsr_track_get(void) {
  tsri_init();
  return (tsr_track_t)atomic_load_explicit(&tsri_track_level, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Making and dropping records
 * ---------------------------------------------------------------------- */

static TSRI_TLS bool in_capture;   /* an unwinder that calls malloc gets no stack */

/* The call stack from the program's call into tessera outwards.  A stack
 * the heap's memo still holds costs a few loads (os.h). */
static uint32_t capture_stack(void *caller, tsr_heap_t *h) {
  if (in_capture) return 0;
  in_capture = true;
  void *frames[TSRI_STACK_DEPTH + 8];
  uint32_t known;
  size_t n = tsri_os_stack_capture_memo(frames, TSRI_STACK_DEPTH + 8, &h->stack_memo,
                                        (uintptr_t)caller, &known);
  in_capture = false;
  if (known != 0) return known;
  /* drop tessera's own frames: everything inside the caller's call */
  size_t first = 0;
  while (first < n && first < 8 && frames[first] != caller) first++;
  if (first == n || first == 8) {   /* the unwinder lost the way: the caller is known */
    frames[0] = caller;
    first = 0;
    n = 1;
  }
  size_t depth = n - first;
  if (depth > TSRI_STACK_DEPTH) depth = TSRI_STACK_DEPTH;
  uint32_t id = tsri_stack_intern(frames + first, depth);
  tsri_os_stack_memo_tag(&h->stack_memo, id);
  return id;
}

/* Record block p (of class cls, or large) just handed out by h. */
static void record(void *p, size_t cls, size_t requested, double weight, bool full, void *caller,
                   tsr_heap_t *h) {
  tsr_page_t *pg = cls < TSR_CLASS_COUNT ? tsri_page_of(p) : NULL;
  size_t usable = pg != NULL ? pg->block_size : tsri_large_usable(p);
  tsri_rec_t rec;
  if (h->seq_next == h->seq_end) {
    h->seq_next = atomic_fetch_add_explicit(&meta_seq, SEQ_BLOCK, memory_order_relaxed) + 1;
    h->seq_end = h->seq_next + SEQ_BLOCK;
  }
  rec.seq = h->seq_next++;
  rec.requested = requested > UINT32_MAX ? UINT32_MAX : (uint32_t)requested;
  rec.stack = capture_stack(caller, h);
  rec.thread = h->thread;
  rec.time_ms = (uint32_t)(tsri_os_clock_ms() - tsri_start_ms);
  if (pg != NULL && full) {
    tsri_rec_t *recs = page_recs(pg);
    if (recs != NULL) {
      long idx = tsri_block_index(pg, p);
      rec_store(&recs[idx], &rec);
      count_recs(h, cls, 1, (int64_t)rec.requested);
      return;
    }
  }
  meta_entry_t e = { (uintptr_t)p, requested, usable, weight,
                     pg ? pg->cls : TSR_CLASS_COUNT, rec };
  /* the count changes under the lock with the table, so that a fork child
   * (whose parent held the lock) sees both or neither */
  tsri_lock(&meta_lock);
  if (table_insert(&e)) {   /* else no memory for the table: the block goes untracked */
    if (pg != NULL) atomic_fetch_add_explicit(&pg->tracked, 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&tsri_meta_large_tracked, 1, memory_order_relaxed);
  }
  tsri_unlock(&meta_lock);
}

void *tsri_meta_alloc(size_t size, size_t cls, size_t align, bool zero, void *caller) {
  tsri_init();
  tsr_heap_t *h = tsri_heap_get();
  if (h == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = cls < TSR_CLASS_COUNT ? tsri_heap_alloc(h, cls) : tsri_large_alloc(size, align, zero);
  if (p == NULL) return NULL;
  atomic_store_explicit(&h->allocs, atomic_load_explicit(&h->allocs, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  int level = atomic_load_explicit(&tsri_track_level, memory_order_relaxed);
  if (level == TSR_TRACK_FULL) {
    atomic_store_explicit(&h->sample_left, -1, memory_order_relaxed);
    record(p, cls, size, 1.0, true, caller, h);
    return p;
  }
  int64_t left = atomic_load_explicit(&h->sample_left, memory_order_relaxed);
  if (level == TSR_TRACK_SAMPLE) {
    if (left < 0) left = next_interval(h);   /* the level changed: start counting */
    left -= (int64_t)size;
    if (left < 0) {
      double mean = (double)tsri_option(TSRI_OPT_SAMPLE_BYTES);
      double prob = one_minus_exp((double)(size ? size : 1) / mean);
      record(p, cls, size, 1.0 / prob, false, caller, h);
      left = next_interval(h);
    }
  } else {
    left = INT64_MAX;
  }
  atomic_store_explicit(&h->sample_left, left, memory_order_relaxed);
  return p;
}

void tsri_meta_free_small(tsr_page_t *pg, size_t idx, const void *p) {
  if (tsri_block_is_free(pg, idx)) return;   /* a double free: the free path reports it */
  uint32_t t = atomic_load_explicit(&pg->tracked, memory_order_relaxed);
  if (t & TSRI_TRACKED_ARRAY) {
    tsri_rec_t *recs = atomic_load_explicit(&pg->recs, memory_order_acquire);
    tsri_rec_t rec;
    rec_load(&recs[idx], &rec);
    if (rec.seq != 0) {
      rec_clear(&recs[idx]);
      count_recs(tsri_tl_heap, pg->cls, -1, -(int64_t)rec.requested);
    }
  }
  if ((t & ~TSRI_TRACKED_ARRAY) != 0) {
    meta_entry_t e;
    tsri_lock(&meta_lock);
    if (table_remove((uintptr_t)p, &e)) atomic_fetch_sub_explicit(&pg->tracked, 1, memory_order_relaxed);
    tsri_unlock(&meta_lock);
  }
}

void tsri_meta_free_large(const void *p) {
  meta_entry_t e;
  tsri_lock(&meta_lock);
  if (table_remove((uintptr_t)p, &e)) atomic_fetch_sub_explicit(&tsri_meta_large_tracked, 1, memory_order_relaxed);
  tsri_unlock(&meta_lock);
}

void tsri_meta_resized(const void *from, const void *to, size_t requested) {
  tsr_page_t *pg = tsri_page_of(from);
  if (pg != NULL && (atomic_load_explicit(&pg->tracked, memory_order_relaxed) & TSRI_TRACKED_ARRAY)) {
    tsri_rec_t *recs = atomic_load_explicit(&pg->recs, memory_order_acquire);
    long idx = tsri_block_index(pg, from);
    tsri_rec_t rec;
    rec_load(&recs[idx], &rec);
    if (rec.seq != 0) {
      count_recs(tsri_tl_heap, pg->cls, 0, (int64_t)requested - (int64_t)rec.requested);
      rec.requested = (uint32_t)requested;
      rec_store(&recs[idx], &rec);
      return;
    }
  }
  meta_entry_t e;
  tsri_lock(&meta_lock);
  if (table_remove((uintptr_t)from, &e)) {
    e.ptr = (uintptr_t)to;
    e.requested = requested;
    e.rec.requested = requested > UINT32_MAX ? UINT32_MAX : (uint32_t)requested;
    if (pg == NULL) e.usable = tsri_large_usable(to);
    table_insert(&e);   /* cannot fail: an entry was just removed */
  }
  tsri_unlock(&meta_lock);
}

/* ------------------------------------------------------------------------
 * Leak marks
 * ---------------------------------------------------------------------- */

#define EXPECT_FUNCTIONS 64
static char expect_names[EXPECT_FUNCTIONS][128];
static _Atomic size_t expect_count;

int tsr_leak_expect(const void *p) {
  tsri_init();
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    if (idx < 0 || tsri_block_is_free(pg, (size_t)idx)) return EINVAL;
    tsri_rec_t *recs = atomic_load_explicit(&pg->recs, memory_order_acquire);
    if (recs != NULL) {
      tsri_rec_t rec;
      rec_load(&recs[idx], &rec);
      if (rec.seq != 0) {
        rec.stack |= TSRI_REC_EXPECTED;
        rec_store(&recs[idx], &rec);
        return 0;
      }
    }
  }
  int rc = EINVAL;
  tsri_lock(&meta_lock);
  meta_entry_t *e = tsri_table_find(&table, (uintptr_t)p);
  if (e != NULL) {
    e->rec.stack |= TSRI_REC_EXPECTED;
    rc = 0;
  }
  tsri_unlock(&meta_lock);
  return rc;
}

int tsr_leak_expect_function(const char *name) {
  if (name == NULL || *name == 0 || strlen(name) >= sizeof expect_names[0]) return EINVAL;
  tsri_init();
  tsri_lock(&meta_lock);
  size_t n = atomic_load_explicit(&expect_count, memory_order_relaxed);
  int rc = ENOMEM;
  if (n < EXPECT_FUNCTIONS) {
    memcpy(expect_names[n], name, strlen(name) + 1);
    atomic_store_explicit(&expect_count, n + 1, memory_order_release);
    rc = 0;
  }
  tsri_unlock(&meta_lock);
  return rc;
}

bool tsri_meta_site_expected(uint32_t stack) {
  size_t n = atomic_load_explicit(&expect_count, memory_order_acquire);
  if (n == 0) return false;
  void *const *frames;
  size_t depth = tsri_stack_frames(stack, &frames);
  for (size_t f = 0; f < depth; f++) {
    tsri_os_symbol_t sym;
    if (tsri_os_symbolize(frames[f], &sym) != 0) continue;
    for (size_t k = 0; k < n; k++)
      if (strcmp(sym.function, expect_names[k]) == 0) return true;
  }
  return false;
}

/* ------------------------------------------------------------------------
 * Walking every live block
 * ---------------------------------------------------------------------- */

typedef struct walk_page_s {
  uint64_t free[TSR_BITMAP_WORDS];
  tsri_rec_t recs[TSR_PAGE_MAX_BLOCKS];
} walk_page_t;

static void fill_block(tsri_block_t *b, const tsri_rec_t *rec, double weight) {
  b->pub.tracked = 1;
  b->pub.thread = rec->thread;
  b->pub.seq = rec->seq;
  b->pub.time_ms = rec->time_ms;
  b->pub.site = rec->stack & ~TSRI_REC_EXPECTED;
  b->pub.depth = (uint32_t)tsri_stack_frames(b->pub.site, &b->pub.frames);
  b->pub.weight = weight;
  b->expected = (rec->stack & TSRI_REC_EXPECTED) != 0;
}

/* Look p up in the table; true (and b filled) when it has an entry. */
static bool walk_table(tsri_block_t *b) {
  tsri_lock(&meta_lock);
  const meta_entry_t *found = tsri_table_find(&table, (uintptr_t)b->pub.ptr);
  meta_entry_t e;
  if (found != NULL) e = *found;
  tsri_unlock(&meta_lock);
  if (found == NULL) return false;
  fill_block(b, &e.rec, e.weight);
  b->pub.requested = e.requested;
  return true;
}

/* Copy page `slot` of a under the arena lock; false when it is no page
 * with blocks.  A span is carved under the lock but initialised by its new
 * owner outside it, and published by the owner's (seq_cst) store of
 * xowner: a page without an owner is skipped, and its geometry is taken
 * from its class (set under the lock), never from fields being written. */
static bool walk_copy(tsr_arena_t *a, size_t slot, tsr_page_t *out, walk_page_t *w, bool *has_recs) {
  tsri_lock(tsri_arena_lock_get());
  const tsr_page_t *pg = &a->pages[slot];
  if (pg->kind != TSR_SLOT_HEAD) {
    tsri_unlock(tsri_arena_lock_get());
    return false;
  }
  const tsri_class_t *c = &tsri_classes[pg->cls];
  out->cls = pg->cls;
  out->span_slots = pg->span_slots;
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_acquire);
  if ((x & ~TSR_PAGE_STATE_MASK) == 0 && (x & TSR_PAGE_STATE_MASK) != TSR_PAGE_ABANDONED) {
    tsri_unlock(tsri_arena_lock_get());
    out->capacity = 0;   /* nothing to visit; the caller still skips its tail slots */
    atomic_store_explicit(&out->tracked, 0, memory_order_relaxed);
    *has_recs = false;
    return true;
  }
  out->capacity = c->capacity;
  out->block_size = c->block_size;
  out->start = (uint8_t *)a + slot * TSR_SLOT_SIZE;
  atomic_store_explicit(&out->tracked, atomic_load_explicit(&pg->tracked, memory_order_relaxed),
                        memory_order_relaxed);
  size_t words = ((size_t)c->capacity + 63) / 64;
  for (size_t k = 0; k < words; k++)
    w->free[k] = atomic_load_explicit(tsri_local(pg, k), memory_order_relaxed) |
                 atomic_load_explicit(tsri_remote(pg, k), memory_order_relaxed);
  tsri_rec_t *recs = atomic_load_explicit(&pg->recs, memory_order_acquire);
  *has_recs = recs != NULL;
  if (recs != NULL)
    for (size_t i = 0; i < c->capacity; i++) rec_load(&recs[i], &w->recs[i]);
  tsri_unlock(tsri_arena_lock_get());
  return true;
}

static int walk_pages(tsri_walk_fn *fn, void *arg, bool only_tracked, walk_page_t *w) {
  tsri_lock(tsri_arena_lock_get());
  tsr_arena_t *a = tsri_arena_first();
  tsri_unlock(tsri_arena_lock_get());
  for (; a != NULL; a = a->next) {
    for (size_t slot = a->meta_slots; slot < TSR_ARENA_SLOTS; slot++) {
      tsr_page_t pg;
      bool has_recs;
      if (!walk_copy(a, slot, &pg, w, &has_recs)) continue;
      slot += pg.span_slots - 1;
      bool in_table = (atomic_load_explicit(&pg.tracked, memory_order_relaxed) & ~TSRI_TRACKED_ARRAY) != 0;
      if (only_tracked && !has_recs && !in_table) continue;
      for (size_t i = 0; i < pg.capacity; i++) {
        if ((w->free[i >> 6] >> (i & 63)) & 1) continue;
        tsri_block_t b;
        memset(&b, 0, sizeof b);
        b.pub.ptr = pg.start + i * pg.block_size;
        b.pub.usable = pg.block_size;
        b.cls = pg.cls;
        if (has_recs && w->recs[i].seq != 0) {
          fill_block(&b, &w->recs[i], 1.0);
          b.pub.requested = w->recs[i].requested;
        } else if (!(in_table && walk_table(&b)) && only_tracked) {
          continue;
        }
        int stop = fn(&b, arg);
        if (stop != 0) return stop;
      }
    }
  }
  return 0;
}

static int walk_large(tsri_walk_fn *fn, void *arg, bool only_tracked) {
  tsr_large_t *list;
  size_t count, bytes;
  if (tsri_large_snapshot(&list, &count, &bytes) != 0) return 0;
  int stop = 0;
  for (size_t i = 0; i < count && stop == 0; i++) {
    tsri_block_t b;
    memset(&b, 0, sizeof b);
    b.pub.ptr = (void *)list[i].block;
    b.pub.usable = list[i].usable;
    b.cls = TSR_CLASS_COUNT;
    if (!walk_table(&b) && only_tracked) continue;
    stop = fn(&b, arg);
  }
  tsri_large_snapshot_free(list, bytes);
  return stop;
}

int tsri_meta_walk(tsri_walk_fn *fn, void *arg, bool only_tracked) {
  tsri_init();
  void *mem;
  if (tsri_os_alloc(tsri_align_up(sizeof(walk_page_t), tsri_os_page_size()), tsri_os_page_size(), &mem) != 0)
    return ENOMEM;
  int stop = walk_pages(fn, arg, only_tracked, mem);
  tsri_os_release(mem, tsri_align_up(sizeof(walk_page_t), tsri_os_page_size()));
  if (stop == 0) stop = walk_large(fn, arg, only_tracked);
  return stop;
}

/* ------------------------------------------------------------------------
 * Checks, fork
 * ---------------------------------------------------------------------- */

/* Every record must belong to a live block it fits, name a known stack,
 * and be counted where the free path will look for it. */
size_t tsri_meta_check(void) {
  size_t bad = 0;
  uint32_t stacks = tsri_stack_count();
  tsri_lock(&meta_lock);
  size_t cursor = 0;
  for (const meta_entry_t *e; (e = tsri_table_next(&table, &cursor)) != NULL;) {
    tsr_page_t *pg = tsri_page_of((void *)e->ptr);
    long idx = pg ? tsri_block_index(pg, (void *)e->ptr) : -1;
    bool live = pg ? idx >= 0 && !tsri_block_is_free(pg, (size_t)idx) : tsri_large_usable((void *)e->ptr) != 0;
    if (!live || e->requested > e->usable || (e->rec.stack & ~TSRI_REC_EXPECTED) > stacks ||
        (pg != NULL && (atomic_load_explicit(&pg->tracked, memory_order_relaxed) & ~TSRI_TRACKED_ARRAY) == 0)) {
      tsri_warning("check: record of %p (requested %zu, stack %zu) does not match a live block",
                   (void *)e->ptr, (size_t)e->requested, (size_t)(e->rec.stack & ~TSRI_REC_EXPECTED));
      bad++;
    }
  }
  tsri_unlock(&meta_lock);
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) {
    for (size_t s = a->meta_slots; s < TSR_ARENA_SLOTS; s++) {
      tsr_page_t *pg = &a->pages[s];
      tsri_rec_t *recs = atomic_load_explicit(&pg->recs, memory_order_acquire);
      if (pg->kind != TSR_SLOT_HEAD || recs == NULL) continue;
      for (size_t i = 0; i < pg->capacity; i++) {
        tsri_rec_t rec;
        rec_load(&recs[i], &rec);
        if (rec.seq == 0) continue;
        /* a block being freed right now may still show its record: only a
         * record that cannot belong to the block is reported */
        if (rec.requested > pg->block_size || (rec.stack & ~TSRI_REC_EXPECTED) > stacks ||
            rec.seq > atomic_load_explicit(&meta_seq, memory_order_relaxed)) {
          tsri_warning("check: record of block %p is corrupt (requested %zu of %zu bytes, stack %zu)",
                       (void *)(pg->start + i * pg->block_size), (size_t)rec.requested,
                       (size_t)pg->block_size, (size_t)(rec.stack & ~TSRI_REC_EXPECTED));
          bad++;
        }
      }
    }
  }
  tsri_unlock(tsri_arena_lock_get());
  return bad;
}

void tsri_meta_fork_prepare(void) {
  tsri_stack_fork_prepare();
  tsri_lock(&meta_lock);
}

void tsri_meta_fork_parent(void) {
  tsri_unlock(&meta_lock);
  tsri_stack_fork_parent();
}

void tsri_meta_fork_child(void) {
  tsri_unlock(&meta_lock);
  tsri_stack_fork_child();
}
