/* walk.c: every live block, with its record, and the leak marks.
 *
 * Owns: the walk over every live block that the reports and tsr_walk
 * read (each page copied under the arena lock, its compact records
 * expanded through meta.c's time log, large blocks from a snapshot of
 * large.c's table), and the marks that say a live block or a function's
 * blocks are expected at exit (tsr_leak_expect, _function).  Making and
 * dropping records is meta.c's.
 */
#include "meta.h"

/* ------------------------------------------------------------------------
 * Leak marks
 * ---------------------------------------------------------------------- */

#define EXPECT_FUNCTIONS 64
static char expect_names[EXPECT_FUNCTIONS][128];
static _Atomic size_t expect_count;   /* written under meta.c's lock */

int tsr_leak_expect(const void *p) {
  tsri_init();
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    if (idx < 0 || tsri_block_is_free(pg, (size_t)idx)) return EINVAL;
    tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
    if (r != NULL) {
      rec_fmt_t f = rec_fmt(pg->block_size);
      for (uint64_t v; (v = rec_read(r, f, (size_t)idx)) != 0;)
        if (rec_swap(r, f, (size_t)idx, v, v | rec_expected_bit(f))) return 0;
    }
  }
  return tsri_meta_table_expect(p) ? 0 : EINVAL;
}

int tsr_leak_expect_function(const char *name) {
  if (name == NULL || *name == 0 || strlen(name) >= sizeof expect_names[0]) return EINVAL;
  tsri_init();
  tsri_lock(tsri_meta_lock_get());
  size_t n = atomic_load_explicit(&expect_count, memory_order_relaxed);
  int rc = ENOMEM;
  if (n < EXPECT_FUNCTIONS) {
    memcpy(expect_names[n], name, strlen(name) + 1);
    atomic_store_explicit(&expect_count, n + 1, memory_order_release);
    rc = 0;
  }
  tsri_unlock(tsri_meta_lock_get());
  return rc;
}

bool tsri_meta_site_expected(uint32_t stack) {
  size_t n = atomic_load_explicit(&expect_count, memory_order_acquire);
  if (n == 0) return false;
  void *const *frames;
  size_t depth = tsri_stack_frames(stack, &frames);
  for (size_t f = 0; f < depth; f++) {
    tsri_os_symbol_t sym;
    char decoded[256];
    if (tsri_os_symbolize(frames[f], &sym) != 0) continue;
    bool has_decoded = tsri_os_demangle(sym.function, decoded, sizeof decoded);
    for (size_t k = 0; k < n; k++)
      if (strcmp(sym.function, expect_names[k]) == 0 || (has_decoded && strcmp(decoded, expect_names[k]) == 0))
        return true;
  }
  return false;
}

/* ------------------------------------------------------------------------
 * Walking every live block
 * ---------------------------------------------------------------------- */

typedef struct walk_page_s {
  uint64_t free[TSR_BITMAP_WORDS];
  tsri_ctx_t ctx[TSRI_CTX_SLOTS];
  uint64_t recs[TSR_PAGE_MAX_BLOCKS];
  uint64_t longs[TSR_PAGE_MAX_BLOCKS];   /* where recs[i] names REC_LONG */
  tsri_time_mark_t log[TSRI_TIME_LOG];       /* the time log when the walk began */
  size_t marks;
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
  tsri_rec_t rec;
  double weight;
  uint64_t requested;
  if (!tsri_meta_table_get(b->pub.ptr, &rec, &weight, &requested)) return false;
  fill_block(b, &rec, weight);
  b->pub.requested = requested;
  return true;
}

/* Copy page `slot` of a under the arena lock; false when it is no page
 * with blocks.  A span is carved under the lock but initialised by its new
 * owner outside it, and published by the owner's (seq_cst) store of
 * xowner: a page without an owner is skipped, and the geometry of one
 * with an owner (its phase's start and capacity, page.c) was written
 * before that store and stays while the page is in use. */
static bool walk_copy(tsr_arena_t *a, size_t slot, tsr_page_t *out, walk_page_t *w, bool *has_recs) {
  tsri_lock(tsri_arena_lock_get());
  const tsr_page_t *pg = &a->pages[slot];
  if (pg->kind != TSR_SLOT_HEAD) {
    tsri_unlock(tsri_arena_lock_get());
    return false;
  }
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
  out->capacity = pg->capacity;
  out->block_size = pg->block_size;
  out->start = pg->start;
  atomic_store_explicit(&out->tracked, atomic_load_explicit(&pg->tracked, memory_order_relaxed),
                        memory_order_relaxed);
  size_t words = tsri_page_words(out);
  for (size_t k = 0; k < words; k++)
    w->free[k] = atomic_load_explicit(tsri_local(pg, k), memory_order_relaxed) |
                 atomic_load_explicit(tsri_remote(pg, k), memory_order_relaxed);
  tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
  *has_recs = r != NULL;
  if (r != NULL) {
    rec_fmt_t f = rec_fmt(pg->block_size);
    /* the owner may free contexts meanwhile (ctx_collect, between two
     * bumps of ctx_epoch): copy again until no collection overlapped */
    for (int tries = 0; tries < 8; tries++) {
      uint32_t before = atomic_load_explicit(&pg->ctx_epoch, memory_order_acquire);
      for (size_t i = 0; i < out->capacity; i++) {
        w->recs[i] = rec_read(r, f, i);
        if (w->recs[i] != 0 && rec_is_long(f, rec_unpack(f, w->recs[i]))) w->longs[i] = long_read(r, out->capacity, i);
      }
      for (size_t k = 0; k < TSRI_CTX_SLOTS; k++) {
        atomic_store_explicit(&w->ctx[k].stack, atomic_load_explicit(&r->ctx[k].stack, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&w->ctx[k].thread, atomic_load_explicit(&r->ctx[k].thread, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&w->ctx[k].seq_base,
                              atomic_load_explicit(&r->ctx[k].seq_base, memory_order_relaxed), memory_order_relaxed);
      }
      atomic_thread_fence(memory_order_acquire);
      if ((before & 1) == 0 && atomic_load_explicit(&pg->ctx_epoch, memory_order_relaxed) == before) break;
    }
  }
  tsri_unlock(tsri_arena_lock_get());
  return true;
}

static int walk_pages(tsri_walk_fn *fn, void *arg, bool only_tracked, walk_page_t *w) {
  tsri_lock(tsri_arena_lock_get());
  tsr_arena_t *a = tsri_arena_first();
  tsri_unlock(tsri_arena_lock_get());
  for (; a != NULL; a = a->next) {
    for (size_t slot = a->meta_slots; slot < a->slots; slot++) {
      tsr_page_t pg;
      bool has_recs;
      if (!walk_copy(a, slot, &pg, w, &has_recs)) continue;
      slot += pg.span_slots - 1;
      bool in_table = (atomic_load_explicit(&pg.tracked, memory_order_relaxed) & TSRI_TRACKED_COUNT) != 0;
      if (only_tracked && !has_recs && !in_table) continue;
      rec_fmt_t f = rec_fmt(pg.block_size);
      uint32_t free_blocks = 0;
      for (size_t k = 0; k < tsri_page_words(&pg); k++)
        free_blocks += (uint32_t)__builtin_popcountll(w->free[k]);
      for (size_t i = 0; i < pg.capacity; i++) {
        if ((w->free[i >> 6] >> (i & 63)) & 1) continue;
        tsri_block_t b;
        memset(&b, 0, sizeof b);
        b.pub.ptr = pg.start + i * pg.block_size;
        b.pub.usable = pg.block_size;
        b.cls = pg.cls;
        b.page = &a->pages[slot - (pg.span_slots - 1)];
        b.page_start = (uintptr_t)pg.start;
        b.page_capacity = pg.capacity;
        b.page_slots = pg.span_slots;
        b.page_live = pg.capacity - free_blocks;
        b.page_free = w->free;
        if (has_recs && w->recs[i] != 0) {
          rec_fields_t fields = rec_unpack(f, w->recs[i]);
          tsri_rec_t rec = tsri_meta_rec_expand(w->ctx, fields, w->longs[i], f, pg.block_size, w->log, w->marks);
          fill_block(&b, &rec, 1.0);
          b.pub.requested = rec.requested;
          b.in_area = true;
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
  walk_page_t *w = mem;
  w->marks = tsri_meta_time_log_copy(w->log);
  int stop = walk_pages(fn, arg, only_tracked, w);
  tsri_os_release(mem, tsri_align_up(sizeof(walk_page_t), tsri_os_page_size()));
  if (stop == 0) stop = walk_large(fn, arg, only_tracked);
  if (stop == 0 && !only_tracked) stop = tsri_guarded_walk(fn, arg);
  return stop;
}
