/* meta.c: per-block records, out of band.
 *
 * Owns: the tracking level (TESSERA_TRACK, tsr_track_set), the sampling
 * countdown of each heap, making a record when a block is to be tracked and
 * dropping it when the block is freed, the two places records live, the
 * record numbers and the time log that dates them, and the ticker thread
 * of full tracking.  Reading the records back (the walk over every live
 * block) and the leak marks are walk.c's.
 *
 * Where records live.  A page allocated from while tracking is full gets
 * a record area (tsr_page_t.recs; area.h, area.c) in a reservation each
 * arena makes for that purpose the first time: contexts (stack, thread,
 * first record number) that its blocks share, and one compact record per
 * block, 4 bytes up to 128-byte blocks (a quarter of the smallest, an
 * eighth from 32 bytes on), 8 above (at most a sixteenth).  Every other
 * record (a sampled block, a large block, a block whose record
 * does not fit the compact format) lives in one hash table keyed by block
 * address, under meta_lock.  A page's `tracked` word says whether a free
 * must look: the area flag plus the number of its blocks in the table (0
 * for most pages when sampling), and its `in_table` mask which blocks may
 * be among them, by index modulo 32: in a page holding one sampled block,
 * 31 frees in 32 neither search the table nor take meta_lock.  Record
 * numbers and times: see seq_take.
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
 * The core's free paths call the free hooks (core/hooks.h, defined here)
 * before the block is given back, so a record is gone before its block
 * can be reused.
 */
#include "meta.h"

_Atomic int tsri_track_level = TSR_TRACK_SAMPLE;
_Atomic uint64_t tsri_records_lost;

static _Atomic uint64_t meta_seq;   /* last record number handed out */

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
static tsri_table_t table = TSRI_TABLE_INIT(meta_entry_t, 64);   /* 4 KiB at first */
static tsri_meta_totals_t table_sums; /* over the entries */

static void sums_add(const meta_entry_t *e, double sign) {
  table_sums.tracked += sign > 0 ? 1 : (uint64_t)-1;
  table_sums.requested += sign > 0 ? e->requested : (uint64_t)0 - e->requested;
  table_sums.w_blocks += sign * e->weight;
  table_sums.w_usable += sign * e->weight * (double)e->usable;
  table_sums.w_requested += sign * e->weight * (double)e->requested;
  if (table_sums.tracked == 0) {   /* the rounding of the adds and subtracts is not left over */
    table_sums.w_blocks = 0;
    table_sums.w_usable = 0;
    table_sums.w_requested = 0;
  }
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

tsri_lock_t *tsri_meta_lock_get(void) { return &meta_lock; }

bool tsri_meta_table_get(const void *p, tsri_rec_t *rec, double *weight, uint64_t *requested) {
  tsri_lock(&meta_lock);
  const meta_entry_t *e = tsri_table_find(&table, (uintptr_t)p);
  if (e != NULL) {
    *rec = e->rec;
    *weight = e->weight;
    *requested = e->requested;
  }
  tsri_unlock(&meta_lock);
  return e != NULL;
}

bool tsri_meta_table_expect(const void *p) {
  tsri_lock(&meta_lock);
  meta_entry_t *e = tsri_table_find(&table, (uintptr_t)p);
  if (e != NULL) e->rec.stack |= TSRI_REC_EXPECTED;
  tsri_unlock(&meta_lock);
  return e != NULL;
}

/* ------------------------------------------------------------------------
 * Tracking level and sampling
 * ---------------------------------------------------------------------- */

/* Bytes to the next sample: exponential with mean TESSERA_SAMPLE_BYTES. */
static int64_t next_interval(tsr_heap_t *h) {
  uint64_t x = h->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  h->rng = x;
  double u = (double)(((x * 0x2545f4914f6cdd1dull) >> 11) + 1) * (1.0 / 9007199254740992.0);
  double mean = (double)tsri_option(TSRI_OPT_SAMPLE_BYTES);
  double n = tsri_neg_log(u) * mean;
  return n > 4e18 ? INT64_MAX : (int64_t)n;
}

/* -1 sends every allocation to tsri_hook_alloc: full tracking, debug
 * mode, guarded sampling of every allocation.  Guarded sampling decides
 * when a countdown runs out, so it keeps one even at `stats`. */
static int64_t countdown_for(int level, tsr_heap_t *h) {
  int64_t guard = tsri_option(TSRI_OPT_GUARD_SAMPLE);
  if (level == TSR_TRACK_FULL || guard == 1 || atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) != 0)
    return -1;
  if (level == TSR_TRACK_STATS && guard == 0) return INT64_MAX;
  return next_interval(h);
}

void tsri_hook_heap_init(tsr_heap_t *h) {
  memset(&h->stack_memo, 0, sizeof h->stack_memo);   /* a new thread: another stack */
  h->seq_end = h->seq_next;                           /* and numbers of its own */
  memset(h->ctx_hint, 0, sizeof h->ctx_hint);
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

/* Every heap takes the slow path at its next allocation and re-arms its
 * countdown there for the new level. */
static void level_set(int level) {
  atomic_store_explicit(&tsri_track_level, level, memory_order_relaxed);
  int64_t now = -1;
  tsri_heap_foreach(track_heap, &now);
}

void tsri_hook_options(bool early) {
  if (!early) tsri_debug_options();
  level_set(early ? TSR_TRACK_FULL : (int)tsri_option(TSRI_OPT_TRACK));
}

int tsr_track_set(tsr_track_t level) {
  if ((int)level < TSR_TRACK_STATS || (int)level > TSR_TRACK_FULL) return EINVAL;
  tsri_init();
  level_set((int)level);
  return 0;
}

tsr_track_t tsr_track_get(void) {
  tsri_init();
  return (tsr_track_t)atomic_load_explicit(&tsri_track_level, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Record numbers and their times
 *
 * Under full tracking heaps take record numbers in blocks of SEQ_BLOCK,
 * and take a new block when theirs is used up or the coarse clock has
 * moved since they took it: every number of a block is handed out within
 * one tick of the clock reading taken with it.  The time log holds (first
 * number, reading) for each block taken at a new reading, so the time of
 * a compact record follows from its number and need not be stored.  A
 * sampled record takes a number of its own and holds its time, like every
 * record in the table.  When the log is full it drops marks
 * whose loss moves the time of the blocks they cover, rounded down to the
 * mark before, by at most 1/32 of those blocks' age: recent records keep
 * the clock's resolution, old ones in a long-running process are dated to
 * within a few per cent of their age.
 * ---------------------------------------------------------------------- */

#define SEQ_BLOCK 256                /* record numbers a heap takes at a time */
#define TIME_LOG_ERROR 32            /* thinning errs by at most 1/this of an age */

static tsri_lock_t seq_lock;         /* the log (and meta_seq when it takes a mark) */
static tsri_time_mark_t time_log[TSRI_TIME_LOG];
static size_t time_marks;

static inline uint32_t since_start(uint64_t ms) {
  return ms > tsri_start_ms ? (uint32_t)(ms - tsri_start_ms) : 0;   /* modulo 2^32 */
}

static inline uint32_t clock_now(void) { return since_start(tsri_os_clock_ms()); }

/* The clock under full tracking.  Where reading the OS clock is a call
 * (POSIX: about as long as the rest of a record), a thread of tessera's
 * own, the ticker, started by the first record made under full tracking,
 * keeps a copy of it while tracking stays full, and records read the
 * copy: it lags the clock by TICK_MS at most, more when the ticker waits
 * for a CPU.  Until it runs, or when it cannot be started, records read
 * the clock themselves. */
#define TICK_MS 2

/* TICKER_ON | clock_now(); 0: no ticker */
#define TICKER_ON ((uint64_t)1 << 32)
static _Atomic uint64_t ticker_copy;
static _Atomic int ticker_tried;

/* Runs while tracking is full; the next full record after it ends
 * starts another. */
static void ticker_main(void *arg) {
  (void)arg;
  while (atomic_load_explicit(&tsri_track_level, memory_order_relaxed) == TSR_TRACK_FULL) {
    atomic_store_explicit(&ticker_copy, TICKER_ON | clock_now(), memory_order_relaxed);
    tsri_os_sleep_ms(TICK_MS);
  }
  atomic_store_explicit(&ticker_copy, 0, memory_order_relaxed);
  atomic_store_explicit(&ticker_tried, 0, memory_order_release);
}

static __attribute__((noinline)) uint32_t ticker_start(void) {
  uint32_t now = clock_now();
  /* no thread before the C library's start-up has run */
  if (tsri_os_env_ready() && !atomic_load_explicit(&ticker_tried, memory_order_relaxed) &&
      !atomic_exchange_explicit(&ticker_tried, 1, memory_order_acquire)) {
    atomic_store_explicit(&ticker_copy, TICKER_ON | now, memory_order_relaxed);
    if (tsri_os_thread_start(ticker_main, NULL) != 0) atomic_store_explicit(&ticker_copy, 0, memory_order_relaxed);
  }
  return now;
}

static inline uint32_t clock_full(void) {
  if (TSRI_OS_CLOCK_IS_A_READ) return clock_now();
  uint64_t copy = atomic_load_explicit(&ticker_copy, memory_order_relaxed);
  return tsr_likely(copy != 0) ? (uint32_t)copy : ticker_start();
}

/* Make room in the full log.  seq_lock held. */
static void time_log_thin(uint32_t now) {
  size_t keep = 1;
  for (size_t i = 1; i + 1 < time_marks; i++) {
    /* without mark i its blocks date from the mark kept before it: too
     * early by less than span, and they are at least `age` old */
    uint32_t span = time_log[i + 1].ms - time_log[keep - 1].ms;
    uint32_t age = now - time_log[i + 1].ms;
    if ((uint64_t)span * TIME_LOG_ERROR <= age) continue;
    time_log[keep++] = time_log[i];
  }
  time_log[keep++] = time_log[time_marks - 1];
  if (keep == time_marks) {   /* all recent: merge the two oldest marks */
    memmove(&time_log[1], &time_log[2], (time_marks - 2) * sizeof time_log[0]);
    keep--;
  }
  time_marks = keep;
}

static _Atomic uint32_t time_last;   /* the reading of the log's last mark */

static void seq_take(tsr_heap_t *h, uint32_t now) {
  uint64_t first;
  if (now == atomic_load_explicit(&time_last, memory_order_acquire)) {
    /* the log has this reading: no mark, no lock (a thread that marks the
     * next reading meanwhile may date this block a tick late) */
    first = atomic_fetch_add_explicit(&meta_seq, SEQ_BLOCK, memory_order_relaxed) + 1;
  } else {
    tsri_lock(&seq_lock);
    first = atomic_fetch_add_explicit(&meta_seq, SEQ_BLOCK, memory_order_relaxed) + 1;
    /* a reading older than the last mark (another thread read the clock
     * later but took the lock first) joins that mark */
    if (time_marks == 0 || (int32_t)(now - time_log[time_marks - 1].ms) > 0) {
      if (time_marks == TSRI_TIME_LOG) time_log_thin(now);
      time_log[time_marks++] = (tsri_time_mark_t){ first, now };
      atomic_store_explicit(&time_last, now, memory_order_release);
    }
    tsri_unlock(&seq_lock);
  }
  h->seq_next = first;
  h->seq_end = first + SEQ_BLOCK;
  h->seq_ms = now;
}

/* The next record number of h, whose clock reads now. */
static inline uint64_t seq_next(tsr_heap_t *h, uint32_t now) {
  if (tsr_unlikely(h->seq_next == h->seq_end || now != h->seq_ms)) seq_take(h, now);
  return h->seq_next++;
}

/* The time of record number seq by a copy of the log (n marks). */
static uint32_t time_of(const tsri_time_mark_t *log, size_t n, uint64_t seq) {
  if (n == 0 || seq < log[0].seq) return 0;   /* before the first mark: at start */
  size_t lo = 0, hi = n;   /* the last mark at or before seq */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (log[mid].seq <= seq) lo = mid;
    else hi = mid;
  }
  return log[lo].ms;
}

size_t tsri_meta_time_log_copy(tsri_time_mark_t *out) {
  tsri_lock(&seq_lock);
  size_t n = time_marks;
  memcpy(out, time_log, n * sizeof *out);
  tsri_unlock(&seq_lock);
  return n;
}

/* ------------------------------------------------------------------------
 * Making and dropping records
 * ---------------------------------------------------------------------- */

static TSRI_TLS bool in_capture;   /* an unwinder that calls malloc gets no stack */

/* The walk behind capture_stack, when the memo does not know the stack. */
static __attribute__((noinline)) uint32_t capture_walk(void *caller, tsr_heap_t *h, void *fp) {
  if (in_capture) return 0;
  in_capture = true;
  void *frames[TSRI_STACK_DEPTH + 8];
  size_t n = tsri_os_stack_capture_memo(frames, TSRI_STACK_DEPTH + 8, &h->stack_memo, fp, (uintptr_t)caller);
  in_capture = false;
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

/* The call stack from the program's call into tessera (which returns to
 * caller) outwards; fp is the frame address of the function recording.
 * A stack the heap's memo still holds costs a few loads (os.h). */
static inline uint32_t capture_stack(void *caller, tsr_heap_t *h, void *fp) {
  uint32_t known = tsri_os_stack_memo_find(&h->stack_memo, fp, (uintptr_t)caller);
  return tsr_likely(known != 0) ? known : capture_walk(caller, h, fp);
}

uint32_t tsri_meta_stack(void *caller, tsr_heap_t *h, void *fp) { return capture_stack(caller, h, fp); }

/* The smallest request whose waste in a block of block_size format f holds. */
static inline uint32_t waste_fits_from(rec_fmt_t f, uint32_t block_size) {
  uint32_t most = (1u << f.waste_bits) - 1u;
  return block_size > most ? block_size - most : 0;
}

/* Does the heap's hint name the context of stack in pg, as pg's contexts
 * stand now? */
static inline bool hint_names(const tsri_ctx_hint_t *hint, const tsr_page_t *pg, uint32_t stack) {
  return hint->page == pg && hint->stack == stack &&
         hint->epoch == atomic_load_explicit(&pg->ctx_epoch, memory_order_relaxed);
}

/* Record block idx of pg, just handed out by h, in the page's area; false
 * when it needs a table record instead (no memory for the area, more
 * waste than the format holds, every context named by a live block).
 * Inlined with a constant format f. */
static inline __attribute__((always_inline)) bool record_in_page_as(rec_fmt_t f, tsr_heap_t *h, tsr_page_t *pg,
                                                                    size_t idx, size_t requested, uint32_t stack,
                                                                    uint64_t seq) {
  size_t waste = pg->block_size - requested;
  if (tsr_unlikely(waste >> f.waste_bits)) return false;
  tsri_ctx_hint_t *hint = &h->ctx_hint[pg->cls];
  if (tsr_unlikely(!hint_names(hint, pg, stack) || (hint->seq_span != 0 && seq - hint->seq_base >= hint->seq_span))) {
    tsri_recs_t *r = tsri_area(pg);
    if (tsr_unlikely(r == NULL)) return false;
    bool is_long = false;
    int found = tsri_area_ctx_find(r, pg, f, stack, h->thread, seq, &is_long);
    if (found < 0) return false;
    *hint = (tsri_ctx_hint_t){ pg, r, atomic_load_explicit(&r->ctx[found].seq_base, memory_order_relaxed),
                               is_long ? 0 : (uint64_t)1 << f.off_bits, stack,
                               atomic_load_explicit(&pg->ctx_epoch, memory_order_relaxed), (uint32_t)found,
                               waste_fits_from(f, pg->block_size) };
  }
  tsri_recs_t *r = hint->area;   /* the page's while its epoch holds */
  if (tsr_unlikely(hint->seq_span == 0)) {
    r->has_long = 1;
    atomic_store_explicit(&area_long(r, pg->capacity)[idx], long_pack(hint->slot, (uint32_t)waste, seq), memory_order_relaxed);
    rec_write(r, f, idx, rec_pack(f, REC_LONG, (uint32_t)waste, 0));
    return true;
  }
  rec_write(r, f, idx, rec_pack(f, hint->slot, (uint32_t)waste, seq - hint->seq_base));
  return true;
}

static inline __attribute__((always_inline)) bool record_in_page(tsr_heap_t *h, tsr_page_t *pg, size_t idx,
                                                                 size_t requested, uint32_t stack, uint64_t seq) {
  if (pg->block_size <= TSRI_REC_NARROW_MAX) return record_in_page_as(REC_NARROW, h, pg, idx, requested, stack, seq);
  return record_in_page_as(REC_WIDE, h, pg, idx, requested, stack, seq);
}

/* Put e in the table; false when there is no memory for it. */
static bool record_in_table(const meta_entry_t *e, tsr_page_t *pg) {
  /* the count changes under the lock with the table, so that a fork child
   * (whose parent held the lock) sees both or neither */
  tsri_lock(&meta_lock);
  bool done = table_insert(e);
  if (!done) tsri_count(&tsri_records_lost, 1);
  if (done && pg != NULL) {
    /* the page's first table record starts the mask afresh (the word
     * held the slot's free time, or bits of records gone since) */
    uint32_t bit = tsri_in_table_bit(tsri_block_index_of(pg, (const void *)e->ptr));
    if ((atomic_fetch_add_explicit(&pg->tracked, 1, memory_order_relaxed) & TSRI_TRACKED_COUNT) == 0)
      atomic_store_explicit(&pg->in_table, bit, memory_order_relaxed);
    else
      atomic_fetch_or_explicit(&pg->in_table, bit, memory_order_relaxed);
  } else if (done) {
    atomic_fetch_add_explicit(&tsri_large_tracked, 1, memory_order_relaxed);
  }
  tsri_unlock(&meta_lock);
  return done;
}

/* A table record for block p (of page pg, or large when pg is NULL);
 * without memory for it the block goes untracked. */
static tsr_noinline void record_table(void *p, tsr_page_t *pg, size_t requested, double weight, uint32_t stack,
                                      uint64_t seq, uint32_t ms, tsr_heap_t *h) {
  meta_entry_t e = { (uintptr_t)p, requested, pg != NULL ? pg->block_size : tsri_large_usable(p), weight,
                     pg ? pg->cls : TSR_CLASS_COUNT,
                     { seq, requested > UINT32_MAX ? UINT32_MAX : (uint32_t)requested, stack, h->thread, ms } };
  record_in_table(&e, pg);
}

void tsri_meta_record(void *p, tsr_page_t *pg, size_t size, uint32_t stack, tsr_heap_t *h) {
  uint64_t seq = atomic_fetch_add_explicit(&meta_seq, 1, memory_order_relaxed) + 1;
  record_table(p, pg, size, 1.0, stack, seq, clock_now(), h);
}

/* Full tracking: the record of block p, idx of pg, which h just handed
 * out, when tsri_hook_alloc_small could not make it with loads and stores
 * alone. */
static inline __attribute__((always_inline)) void record_full(void *p, tsr_page_t *pg, size_t idx, size_t requested,
                                                              void *caller, tsr_heap_t *h, void *fp) {
  uint64_t seq = seq_next(h, clock_full());
  uint32_t stack = capture_stack(caller, h, fp);
  if (tsr_unlikely(!record_in_page(h, pg, idx, requested, stack, seq)))
    record_table(p, pg, requested, 1.0, stack, seq, h->seq_ms, h);
}

/* Every request that tsri_hook_alloc_small does not serve with loads and
 * stores: the first allocation of a thread or of the process, large
 * blocks, sampling, and under full tracking an empty scan word, a new
 * block of record numbers or clock reading, a stack to walk, a context to
 * find, a long record, or more waste than a compact record holds.  The
 * stack it records is walked from tsri_hook_alloc's frame, fp. */
static inline __attribute__((always_inline)) void *hook_alloc(tsr_heap_t *h, size_t size, size_t cls, size_t align,
                                                                bool zero, void *caller, void *fp) {
  int level = atomic_load_explicit(&tsri_track_level, memory_order_relaxed);
  if (tsr_unlikely(atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) != 0))
    return tsri_debug_alloc(h, size, cls, align, zero, caller, fp);
  size_t idx = 0;
  /* a guarded block has no record (the totals count it, guarded.c), so
   * full tracking, which records every block, guards none */
  void *p = level != TSR_TRACK_FULL && tsri_guarded_due(h, size) ? tsri_guarded_alloc(size, align, h, caller, fp)
                                                                 : NULL;
  bool guarded = p != NULL;
  if (!guarded)
    p = cls < TSR_CLASS_COUNT ? tsri_heap_alloc_at(h, cls, tsri_class_need(size, cls, align), &idx)
                              : tsri_large_alloc(size, align, zero);
  if (p == NULL) return NULL;
  tsri_heap_count(&h->allocs);
  if (guarded && zero) memset(p, 0, size);
  if (level == TSR_TRACK_FULL) {
    /* a large block, a thread's first allocation, or a small block whose
     * record tsri_hook_alloc_small left to this path */
    atomic_store_explicit(&h->sample_left, -1, memory_order_relaxed);
    if (cls < TSR_CLASS_COUNT) {
      record_full(p, h->cur[cls], idx, size, caller, h, fp);
    } else {
      uint64_t seq = seq_next(h, clock_full());
      record_table(p, NULL, size, 1.0, capture_stack(caller, h, fp), seq, h->seq_ms, h);
    }
    return p;
  }
  int64_t left = atomic_load_explicit(&h->sample_left, memory_order_relaxed);
  if (level == TSR_TRACK_SAMPLE) {
    if (left < 0) left = next_interval(h);   /* the level changed: start counting */
    left -= (int64_t)size;
    if (left < 0 && !guarded) {
      double mean = (double)tsri_option(TSRI_OPT_SAMPLE_BYTES);
      double prob = tsri_one_minus_exp((double)(size ? size : 1) / mean);
      /* a number of its own, dated in the record: a sample takes no block
       * of numbers and no mark in the time log, which serve compact records */
      uint64_t seq = atomic_fetch_add_explicit(&meta_seq, 1, memory_order_relaxed) + 1;
      h->seq_end = h->seq_next;   /* numbers after it only, back under full tracking */
      record_table(p, cls < TSR_CLASS_COUNT ? tsri_page_of(p) : NULL, size, 1.0 / prob,
                   capture_stack(caller, h, fp), seq, clock_now(), h);
    }
  }
  /* a new countdown when this one ran out, or when every allocation is to
   * come here (guarded sampling of each: each is then a fresh draw of
   * the exponential, which forgets what came before) */
  if (left < 0 || level != TSR_TRACK_SAMPLE || tsri_option(TSRI_OPT_GUARD_SAMPLE) == 1)
    left = countdown_for(level, h);
  atomic_store_explicit(&h->sample_left, left, memory_order_relaxed);
  return p;
}

tsr_noinline void *tsri_hook_alloc(size_t size, size_t cls, size_t align, bool zero, void *caller) {
  void *fp = __builtin_frame_address(0);
  tsri_init();   /* the first allocation of the process reads the level here */
  tsr_heap_t *h = tsri_heap_get();
  if (h == NULL) { errno = ENOMEM; return NULL; }
  void *p = hook_alloc(h, size, cls, align, zero, caller, fp);
  tsri_heap_done(h);   /* a heap lent to a thread past its exit goes back */
  return p;
}

/* Does the heap's hint let a block of pg, for a request of size bytes
 * with record number seq, have a compact record naming stack? */
static inline bool hint_serves(const tsri_ctx_hint_t *hint, const tsr_page_t *pg, size_t size, uint32_t stack,
                               uint64_t seq) {
  return hint_names(hint, pg, stack) && seq - hint->seq_base < hint->seq_span && size >= hint->fits_from;
}

/* The path of every small allocation under full tracking.  It first makes
 * sure that the block and its record need nothing but loads and stores: a
 * free block in the page's scan word, a record number left in the heap's
 * block of the ticker's current reading, a stack the memo knows, and the
 * heap's hint on the page's context for it.  Then it takes the block and
 * writes the record.  Anything else goes, untouched, to tsri_hook_alloc.
 *
 * It calls nothing but tsri_hook_alloc, so it saves few registers and sets
 * up little.  Where the compiler makes that call a tail jump (GCC at -O2
 * and -Os, clang from -O1), tsri_hook_alloc has this function's frame
 * address (the same return address, the same saved RBP below it), and the
 * stacks its walks leave in the memo are found here.  Where it does not
 * (-O0, GCC's -O1), the memo never answers here and every allocation takes
 * the general path: slower, and as right, since a memo answer re-reads
 * every stack word its walk depended on.  Without a memo
 * (TSRI_OS_STACK_MEMO 0) or a ticker (TSRI_OS_CLOCK_IS_A_READ) it is the
 * same, and there every record walks its stack, which costs far more than
 * the way round. */
void *tsri_hook_alloc_small(size_t size, size_t cls, size_t align, void *caller) {
  tsr_heap_t *h = tsri_tl_heap;
  if (tsr_likely(atomic_load_explicit(&tsri_track_level, memory_order_relaxed) == TSR_TRACK_FULL &&
                 h != &tsri_heap_none)) {
    void *fp = __builtin_frame_address(0);
    uint32_t stack = tsri_os_stack_memo_find(&h->stack_memo, fp, (uintptr_t)caller);
    tsr_page_t *pg = h->cur[cls];
    const tsri_ctx_hint_t *hint = &h->ctx_hint[cls];
    uint64_t seq = h->seq_next;
    if (tsr_likely(stack != 0 && seq != h->seq_end &&
                   atomic_load_explicit(&ticker_copy, memory_order_relaxed) == (TICKER_ON | h->seq_ms) &&
                   tsri_class_need(size, cls, align) <= pg->block_size && hint_serves(hint, pg, size, stack, seq))) {
      size_t w = pg->scan;
      uint64_t bits = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
      if (tsr_likely(bits != 0)) {
        size_t idx = tsri_page_take(pg, w, bits);
        /* every allocation comes here while tracking stays full; the count
         * down of sampling may still be positive if it was not full before */
        atomic_store_explicit(&h->sample_left, -1, memory_order_relaxed);
        tsri_heap_count(&h->allocs);
        h->seq_next = seq + 1;
        uint32_t waste = (uint32_t)(pg->block_size - size);
        uint64_t off = seq - hint->seq_base;
        if (pg->block_size <= TSRI_REC_NARROW_MAX)
          rec_write(hint->area, REC_NARROW, idx, rec_pack(REC_NARROW, hint->slot, waste, off));
        else
          rec_write(hint->area, REC_WIDE, idx, rec_pack(REC_WIDE, hint->slot, waste, off));
        return pg->start + idx * pg->block_size;
      }
    }
  }
  return tsri_hook_alloc(size, cls, align, false, caller);
}

tsri_rec_t tsri_meta_rec_expand(const tsri_ctx_t *ctxs, rec_fields_t rec, uint64_t longv, rec_fmt_t f,
                                 uint32_t block_size, const tsri_time_mark_t *log, size_t marks) {
  bool is_long = rec_is_long(f, rec);
  if (is_long) rec = long_unpack(longv, rec.expected);
  const tsri_ctx_t *ctx = &ctxs[rec.ctx];
  tsri_rec_t out;
  out.seq = (is_long ? 0 : atomic_load_explicit(&ctx->seq_base, memory_order_relaxed)) + rec.off;
  out.requested = block_size - rec.waste;
  out.stack = atomic_load_explicit(&ctx->stack, memory_order_relaxed) | (rec.expected ? TSRI_REC_EXPECTED : 0);
  out.thread = atomic_load_explicit(&ctx->thread, memory_order_relaxed);
  out.time_ms = time_of(log, marks, out.seq);
  return out;
}

void tsri_hook_free_table(tsr_page_t *pg, const void *p) {
  meta_entry_t e;
  tsri_lock(&meta_lock);
  if (table_remove((uintptr_t)p, &e)) atomic_fetch_sub_explicit(&pg->tracked, 1, memory_order_relaxed);
  tsri_unlock(&meta_lock);
}

void tsri_hook_free_large(const void *p) {
  meta_entry_t e;
  tsri_lock(&meta_lock);
  if (table_remove((uintptr_t)p, &e)) atomic_fetch_sub_explicit(&tsri_large_tracked, 1, memory_order_relaxed);
  tsri_unlock(&meta_lock);
}

/* A block of pg with a compact record was resized in place to requested
 * bytes: the record takes the new size, or moves to the table when its
 * format cannot hold the waste (or it is long). */
static void resized_in_page(tsr_page_t *pg, tsri_recs_t *r, size_t idx, uint64_t v, size_t requested) {
  rec_fmt_t f = rec_fmt(pg->block_size);
  size_t waste = pg->block_size - requested;
  for (;;) {
    rec_fields_t rec = rec_unpack(f, v);
    bool is_long = rec_is_long(f, rec);
    if ((waste >> f.waste_bits) == 0 && !is_long) {
      uint64_t moved = (v & ~((((uint64_t)1 << f.waste_bits) - 1) << f.off_bits)) | (uint64_t)waste << f.off_bits;
      if (rec_swap(r, f, idx, v, moved)) return;   /* fails only when tsr_leak_expect marked it */
    } else {
      tsri_lock(&seq_lock);
      uint64_t longv = is_long ? long_read(r, pg->capacity, idx) : 0;
      tsri_rec_t full = tsri_meta_rec_expand(r->ctx, rec, longv, f, pg->block_size, time_log, time_marks);
      tsri_unlock(&seq_lock);
      full.requested = (uint32_t)requested;
      meta_entry_t e = { (uintptr_t)pg->start + idx * pg->block_size, requested, pg->block_size, 1.0,
                         pg->cls, full };
      if (rec_swap(r, f, idx, v, 0)) {
        record_in_table(&e, pg);
        return;
      }
    }
    v = rec_read(r, f, idx);
    if (v == 0) return;   /* freed meanwhile, by a program that resizes and frees at once */
  }
}

/* Table record e's block is now at p, with requested bytes asked for;
 * a large one has usable bytes (0: a small block's class stays). */
static void entry_resized(meta_entry_t *e, const void *p, size_t requested, size_t usable) {
  e->ptr = (uintptr_t)p;
  e->requested = requested;
  e->rec.requested = requested > UINT32_MAX ? UINT32_MAX : (uint32_t)requested;
  if (usable != 0) e->usable = usable;
}

void tsri_hook_resized(const void *p, size_t requested) {
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL && (atomic_load_explicit(&pg->tracked, memory_order_relaxed) & TSRI_TRACKED_ARRAY)) {
    tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
    size_t idx = (size_t)tsri_block_index(pg, p);
    uint64_t v = rec_read(r, rec_fmt(pg->block_size), idx);
    if (v != 0) {
      resized_in_page(pg, r, idx, v, requested);
      return;
    }
  }
  size_t usable = pg == NULL ? tsri_large_usable(p) : 0;
  meta_entry_t e;
  tsri_lock(&meta_lock);
  if (table_remove((uintptr_t)p, &e)) {   /* out and in again: the table's sums follow */
    entry_resized(&e, p, requested, usable);
    table_insert(&e);   /* cannot fail: an entry was just removed */
  }
  tsri_unlock(&meta_lock);
}

void *tsri_hook_large_realloc(void *p, size_t size) {
  meta_entry_t e;
  tsri_lock(&meta_lock);
  bool had = table_remove((uintptr_t)p, &e);
  tsri_unlock(&meta_lock);
  void *moved = tsri_large_realloc(p, size);
  if (!had) return moved;
  if (moved != NULL) entry_resized(&e, moved, size, tsri_large_usable(moved));
  tsri_lock(&meta_lock);
  /* the room it left may have gone to other threads' records meanwhile */
  if (!table_insert(&e)) {
    tsri_count(&tsri_records_lost, 1);
    atomic_fetch_sub_explicit(&tsri_large_tracked, 1, memory_order_relaxed);
  }
  tsri_unlock(&meta_lock);
  return moved;
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
        (pg != NULL && (atomic_load_explicit(&pg->tracked, memory_order_relaxed) & TSRI_TRACKED_COUNT) == 0)) {
      tsri_warning("check: record of %p (requested %zu, stack %zu) does not match a live block",
                   (void *)e->ptr, (size_t)e->requested, (size_t)(e->rec.stack & ~TSRI_REC_EXPECTED));
      bad++;
    }
  }
  tsri_unlock(&meta_lock);
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) {
    for (size_t s = a->meta_slots; s < a->slots; s++) {
      tsr_page_t *pg = &a->pages[s];
      tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
      if (pg->kind != TSR_SLOT_HEAD || r == NULL) continue;
      /* as walk_copy: a page whose contexts went meanwhile is read again */
      for (int tries = 0; tries < 8; tries++) {
        uint32_t before = atomic_load_explicit(&pg->ctx_epoch, memory_order_acquire);
        size_t page_bad = tsri_area_check(pg, r, &meta_seq, false);
        atomic_thread_fence(memory_order_acquire);
        if ((before & 1) == 0 && atomic_load_explicit(&pg->ctx_epoch, memory_order_relaxed) == before) {
          if (page_bad != 0) bad += tsri_area_check(pg, r, &meta_seq, true);
          break;
        }
      }
    }
  }
  tsri_unlock(tsri_arena_lock_get());
  return bad;
}

void tsri_hook_fork_prepare(void) {
  tsri_debug_fork_prepare();
  tsri_guarded_fork_prepare();
  tsri_stack_fork_prepare();
  tsri_lock(&meta_lock);
  tsri_lock(&seq_lock);
}

void tsri_hook_fork_parent(void) {
  tsri_unlock(&seq_lock);
  tsri_unlock(&meta_lock);
  tsri_stack_fork_parent();
  tsri_guarded_fork_parent();
  tsri_debug_fork_parent();
}

void tsri_hook_fork_child(void) {
  /* the ticker did not come along: the next full record starts one */
  atomic_store_explicit(&ticker_copy, 0, memory_order_relaxed);
  atomic_store_explicit(&ticker_tried, 0, memory_order_relaxed);
  tsri_unlock(&seq_lock);
  tsri_unlock(&meta_lock);
  tsri_stack_fork_child();
  tsri_guarded_fork_child();
  tsri_debug_fork_child();
}
