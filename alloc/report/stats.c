/* stats.c: the counters, tsr_stats_get, tsr_class_stats and tsr_check.
 *
 * Owns: the process-wide OS counters (updated where the OS is called) and
 * turning them, the heaps' allocation counts, a walk of the arenas and the
 * record totals of meta.c into tsr_stats_t and the per-class rows.  The hot
 * paths count only into their own heap: live bytes come from the pages'
 * own `used` counts.
 */
#include "report.h"

/* ------------------------------------------------------------------------
 * One pass over the pages, shared by the totals and the class rows
 * ---------------------------------------------------------------------- */

/* Live blocks of span head pg (its other threads' frees not merged yet
 * count as free), its capacity in *capacity.  Arena lock held. */
static uint32_t page_live(const tsr_page_t *pg, uint32_t *capacity) {
  uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  uint32_t cap = tsri_page_capacity_seen(pg);
  if (used > cap) used = cap;   /* an owner between its two updates */
  /* `used` still counts the blocks other threads freed into the page
   * until its owner merges them: those are free */
  uint32_t remote = 0;
  if (used != 0)
    for (size_t w = 0; w < ((size_t)cap + 63) / 64; w++)
      remote += (uint32_t)__builtin_popcountll(atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed));
  *capacity = cap;
  return remote < used ? used - remote : 0;
}

void tsri_pages_each(tsri_page_visit_fn *visit, void *arg) {
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) {
    for (size_t i = a->meta_slots; i < a->slots; i++) {
      const tsr_page_t *pg = &a->pages[i];
      if (pg->kind != TSR_SLOT_HEAD) continue;
      uint32_t cap, live = page_live(pg, &cap);
      visit(arg, pg, live, cap);   /* cls is set under the lock */
    }
  }
  tsri_unlock(tsri_arena_lock_get());
}

/* tsr_stats_get's sums over the pages */
typedef struct page_totals_s {
  uint64_t live, blocks, rec_live, rec_requested, rec_usable;   /* bytes, blocks; records in page areas */
} page_totals_t;

static void totals_visit(void *arg, const tsr_page_t *pg, uint32_t live, uint32_t capacity) {
  (void)capacity;
  page_totals_t *t = arg;
  uint64_t size = pg->block_size, rec_live = 0, rec_requested = 0;
  tsri_meta_area_count(pg, &rec_live, &rec_requested);
  t->live += live * size;
  t->blocks += live;
  t->rec_live += rec_live;
  t->rec_requested += rec_requested;
  t->rec_usable += rec_live * size;
}

typedef struct heap_sum_s {
  uint64_t allocs, frees;
} heap_sum_t;

static void heap_sum(tsr_heap_t *h, void *arg) {
  heap_sum_t *s = arg;
  s->allocs += atomic_load_explicit(&h->allocs, memory_order_relaxed);
  s->frees += atomic_load_explicit(&h->frees, memory_order_relaxed);
}

static double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

int tsr_stats_get(tsr_stats_t *stats) {
  if (stats == NULL || stats->size < offsetof(tsr_stats_t, track)) return EINVAL;
  tsri_init();
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = stats->size < sizeof s ? stats->size : sizeof s;
  s.version = TSR_STATS_VERSION;
  page_totals_t pt = { 0, 0, 0, 0, 0 };
  tsri_pages_each(totals_visit, &pt);
  uint64_t live = pt.live, blocks = pt.blocks, rec_live = pt.rec_live, rec_req = pt.rec_requested,
           rec_usable = pt.rec_usable;
  uint64_t large_bytes, large_blocks, large_mapped;
  tsri_large_stats(&large_bytes, &large_blocks, &large_mapped);
  uint64_t guarded_blocks, guarded_bytes;
  tsri_guarded_stats(&guarded_blocks, &guarded_bytes);
  s.allocated = live + large_bytes + guarded_bytes;
  s.large_live = large_blocks;
  s.live_blocks = blocks + large_blocks + guarded_blocks;
#define TSRI_COPY(name) s.name = atomic_load_explicit(&tsri_counters.name, memory_order_relaxed);
  TSRI_OS_COUNTERS(TSRI_COPY)
#undef TSRI_COPY
  s.committed = atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed);
  s.reserved = atomic_load_explicit(&tsri_counters.reserved, memory_order_relaxed);
  s.metadata = atomic_load_explicit(&tsri_counters.metadata, memory_order_relaxed);
  s.arenas = atomic_load_explicit(&tsri_counters.arenas, memory_order_relaxed);
  s.purges = atomic_load_explicit(&tsri_counters.purges, memory_order_relaxed);
  for (size_t k = 0; k < TSR_ERROR_KINDS; k++) {
    s.errors_by_kind[k] = atomic_load_explicit(&tsri_error_counts[k], memory_order_relaxed);
    s.errors += s.errors_by_kind[k];
  }
  s.records_lost = atomic_load_explicit(&tsri_records_lost, memory_order_relaxed);
  s.stacks_lost = atomic_load_explicit(&tsri_stacks_lost, memory_order_relaxed);
  heap_sum_t hs = { 0, 0 };
  tsri_heap_foreach(heap_sum, &hs);
  s.allocations = hs.allocs;
  s.frees = hs.frees + atomic_load_explicit(&tsri_frees_heapless, memory_order_relaxed);
  s.track = (uint32_t)atomic_load_explicit(&tsri_track_level, memory_order_relaxed);
  /* requested: exact when every live block has a record, else the
   * allocated bytes scaled by what the records say of requested/usable */
  tsri_meta_totals_t t;
  tsri_meta_table_totals(&t);
  s.tracked_blocks = rec_live + t.tracked;
  if (s.tracked_blocks >= s.live_blocks) {
    s.requested = rec_req + t.requested;
    s.requested_exact = 1;
  } else if (s.tracked_blocks > 0 && rec_usable + t.w_usable > 0) {
    double share = ((double)rec_req + t.w_requested) / ((double)rec_usable + t.w_usable);
    s.requested = (uint64_t)((double)s.allocated * (share < 0 ? 0 : share > 1 ? 1 : share));
  } else {
    s.requested = s.allocated;   /* nothing recorded: no waste can be seen */
  }
  s.internal_fragmentation = ratio((double)s.allocated, (double)s.requested);
  s.external_fragmentation = ratio((double)s.committed, (double)s.allocated);
  s.metadata_overhead = ratio((double)s.metadata, (double)s.allocated);
  s.efficiency = ratio((double)s.requested, (double)s.committed);
  memcpy(stats, &s, s.size);
  return 0;
}

/* ------------------------------------------------------------------------
 * Class rows
 * ---------------------------------------------------------------------- */

/* The table's records by class: sampled ones scaled by their weight, and
 * exact ones (weight 1: full tracking, whatever did not fit an area). */
typedef struct class_samples_s {
  double w_usable[TSR_CLASS_COUNT + 1], w_requested[TSR_CLASS_COUNT + 1];
  uint64_t exact_blocks[TSR_CLASS_COUNT + 1], exact_requested[TSR_CLASS_COUNT + 1];
  uint64_t exact_usable[TSR_CLASS_COUNT + 1];
} class_samples_t;

static int class_sample(const tsri_block_t *b, void *arg) {
  class_samples_t *cs = arg;
  if (b->in_area) return 0;   /* counted by class_visit */
  if (b->pub.weight == 1.0) {
    cs->exact_blocks[b->cls]++;
    cs->exact_requested[b->cls] += b->pub.requested;
    cs->exact_usable[b->cls] += b->pub.usable;
    return 0;
  }
  cs->w_usable[b->cls] += b->pub.weight * (double)b->pub.usable;
  cs->w_requested[b->cls] += b->pub.weight * (double)b->pub.requested;
  return 0;
}

/* The class rows' page figures, filled in place, and the records of the
 * page areas by class */
typedef struct class_pass_s {
  tsr_class_stats_t *rows;
  uint64_t rec_live[TSR_CLASS_COUNT], rec_requested[TSR_CLASS_COUNT], rec_usable[TSR_CLASS_COUNT];
} class_pass_t;

static void class_visit(void *arg, const tsr_page_t *pg, uint32_t live, uint32_t capacity) {
  class_pass_t *p = arg;
  tsr_class_stats_t *r = &p->rows[pg->cls];
  r->pages++;
  r->committed += (uint64_t)pg->span_slots * TSR_SLOT_SIZE;
  r->blocks_live += live;
  r->bytes_live += (uint64_t)live * pg->block_size;   /* a fitted page's blocks are smaller */
  r->blocks_total += capacity;
  size_t bucket = (size_t)live * TSR_OCCUPANCY_BUCKETS / capacity;
  r->occupancy[bucket < TSR_OCCUPANCY_BUCKETS ? bucket : TSR_OCCUPANCY_BUCKETS - 1]++;
  uint64_t rec_live = 0;
  tsri_meta_area_count(pg, &rec_live, &p->rec_requested[pg->cls]);
  p->rec_live[pg->cls] += rec_live;
  p->rec_usable[pg->cls] += rec_live * pg->block_size;
}

/* Every row, into rows (TSR_CLASS_COUNT + 1 of them). */
static void class_rows(tsr_class_stats_t *rows) {
  memset(rows, 0, (TSR_CLASS_COUNT + 1) * sizeof *rows);
  class_pass_t p;
  memset(&p, 0, sizeof p);
  p.rows = rows;
  tsri_pages_each(class_visit, &p);
  class_samples_t cs;
  memset(&cs, 0, sizeof cs);
  tsri_meta_totals_t t;
  tsri_meta_table_totals(&t);
  if (t.tracked != 0) tsri_meta_walk(class_sample, &cs, true);
  uint64_t large_bytes, large_blocks, large_mapped;
  tsri_large_stats(&large_bytes, &large_blocks, &large_mapped);
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    tsr_class_stats_t *r = &rows[c];
    r->index = (uint32_t)c;
    if (c == TSR_CLASS_COUNT) {
      r->pages = r->blocks_live = r->blocks_total = large_blocks;
      r->committed = large_mapped;
      r->bytes_live = large_bytes;
      r->utilisation = large_blocks ? 1.0 : 0.0;
    } else {
      r->block_size = tsri_classes[c].block_size;
      r->utilisation = ratio((double)r->blocks_live, (double)r->blocks_total);
    }
    /* exact where every live block has an exact record; else scaled */
    uint64_t rec_live = (c < TSR_CLASS_COUNT ? p.rec_live[c] : 0) + cs.exact_blocks[c];
    uint64_t rec_req = (c < TSR_CLASS_COUNT ? p.rec_requested[c] : 0) + cs.exact_requested[c];
    uint64_t rec_usable = c < TSR_CLASS_COUNT ? p.rec_usable[c] + cs.exact_usable[c] : 0;
    double w_usable = (double)rec_usable + cs.w_usable[c];
    double w_req = (double)rec_req + cs.w_requested[c];
    if (rec_live >= r->blocks_live && cs.w_usable[c] == 0) r->bytes_requested = rec_req;
    else if (w_usable > 0) r->bytes_requested = (uint64_t)((double)r->bytes_live * w_req / w_usable);
    else r->bytes_requested = r->bytes_live;
  }
}

size_t tsr_class_stats(tsr_class_stats_t *out, size_t max) {
  tsri_init();
  size_t rows = TSR_CLASS_COUNT + 1;
  if (out == NULL || max == 0) return rows;
  if (max >= rows) {
    class_rows(out);
    return rows;
  }
  /* fewer rows asked for: all of them made in memory from the OS */
  tsr_class_stats_t *all = tsri_scratch(rows * sizeof *all);
  if (all == NULL) return 0;
  class_rows(all);
  memcpy(out, all, max * sizeof *out);
  tsri_scratch_free(all);
  return rows;
}

size_t tsr_check(void) {
  tsri_init();
  size_t bad = tsri_heap_check();
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) bad += tsri_arena_check(a);
  tsri_unlock(tsri_arena_lock_get());
  return bad + tsri_meta_check() + tsri_debug_check();
}
