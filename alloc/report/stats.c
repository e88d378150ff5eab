/* stats.c: the counters, tsr_stats_get, tsr_class_stats and tsr_check.
 *
 * Owns: the process-wide OS counters (updated where the OS is called) and
 * turning them, the heaps' allocation counts, a walk of the arenas and the
 * record totals of meta.c into tsr_stats_t and the per-class rows.  The hot
 * paths count only into their own heap: live bytes come from the pages'
 * own `used` counts.
 */
#include "track/track.h"

/* ------------------------------------------------------------------------
 * One pass over the pages, shared by the totals and the class rows
 * ---------------------------------------------------------------------- */

typedef struct class_acc_s {
  uint64_t pages, committed, live, total;
  uint64_t rec_live, rec_requested;          /* records in page areas (meta.c) */
  uint64_t occupancy[TSR_OCCUPANCY_BUCKETS];
} class_acc_t;

uint32_t tsri_page_live(const tsr_page_t *pg, uint32_t *capacity) {
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

static void pages_pass(class_acc_t acc[TSR_CLASS_COUNT]) {
  memset(acc, 0, sizeof(class_acc_t) * TSR_CLASS_COUNT);
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) {
    for (size_t i = a->meta_slots; i < a->slots; i++) {
      const tsr_page_t *pg = &a->pages[i];
      if (pg->kind != TSR_SLOT_HEAD) continue;
      class_acc_t *c = &acc[pg->cls];   /* cls is set under the lock */
      uint32_t cap, used = tsri_page_live(pg, &cap);
      c->pages++;
      c->committed += (uint64_t)pg->span_slots * TSR_SLOT_SIZE;
      c->live += used;
      c->total += cap;
      size_t bucket = (size_t)used * TSR_OCCUPANCY_BUCKETS / cap;
      c->occupancy[bucket < TSR_OCCUPANCY_BUCKETS ? bucket : TSR_OCCUPANCY_BUCKETS - 1]++;
      tsri_meta_area_count(pg, &c->rec_live, &c->rec_requested);
    }
  }
  tsri_unlock(tsri_arena_lock_get());
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
  class_acc_t acc[TSR_CLASS_COUNT];
  pages_pass(acc);
  uint64_t live = 0, blocks = 0, rec_live = 0, rec_req = 0, rec_usable = 0;
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    live += acc[c].live * tsri_classes[c].block_size;
    blocks += acc[c].live;
    rec_live += acc[c].rec_live;
    rec_req += acc[c].rec_requested;
    rec_usable += acc[c].rec_live * tsri_classes[c].block_size;
  }
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
} class_samples_t;

static int class_sample(const tsri_block_t *b, void *arg) {
  class_samples_t *cs = arg;
  if (b->in_area) return 0;   /* counted by pages_pass */
  if (b->pub.weight == 1.0) {
    cs->exact_blocks[b->cls]++;
    cs->exact_requested[b->cls] += b->pub.requested;
    return 0;
  }
  cs->w_usable[b->cls] += b->pub.weight * (double)b->pub.usable;
  cs->w_requested[b->cls] += b->pub.weight * (double)b->pub.requested;
  return 0;
}

size_t tsr_class_stats(tsr_class_stats_t *out, size_t max) {
  tsri_init();
  size_t rows = TSR_CLASS_COUNT + 1;
  if (out == NULL || max == 0) return rows;
  class_acc_t acc[TSR_CLASS_COUNT];
  pages_pass(acc);
  class_samples_t cs;
  memset(&cs, 0, sizeof cs);
  tsri_meta_totals_t t;
  tsri_meta_table_totals(&t);
  if (t.tracked != 0) tsri_meta_walk(class_sample, &cs, true);
  uint64_t large_bytes, large_blocks, large_mapped;
  tsri_large_stats(&large_bytes, &large_blocks, &large_mapped);
  for (size_t c = 0; c < rows && c < max; c++) {
    tsr_class_stats_t *r = &out[c];
    memset(r, 0, sizeof *r);
    r->index = (uint32_t)c;
    if (c == TSR_CLASS_COUNT) {
      r->pages = r->blocks_live = r->blocks_total = large_blocks;
      r->committed = large_mapped;
      r->bytes_live = large_bytes;
      r->utilisation = large_blocks ? 1.0 : 0.0;
    } else {
      const class_acc_t *a = &acc[c];
      r->block_size = tsri_classes[c].block_size;
      r->pages = a->pages;
      r->committed = a->committed;
      r->blocks_live = a->live;
      r->blocks_total = a->total;
      r->bytes_live = a->live * r->block_size;
      r->utilisation = ratio((double)a->live, (double)a->total);
      memcpy(r->occupancy, a->occupancy, sizeof r->occupancy);
    }
    /* exact where every live block has an exact record; else scaled */
    uint64_t rec_live = (c < TSR_CLASS_COUNT ? acc[c].rec_live : 0) + cs.exact_blocks[c];
    uint64_t rec_req = (c < TSR_CLASS_COUNT ? acc[c].rec_requested : 0) + cs.exact_requested[c];
    uint64_t rec_usable = c < TSR_CLASS_COUNT ? rec_live * r->block_size : 0;
    double w_usable = (double)rec_usable + cs.w_usable[c];
    double w_req = (double)rec_req + cs.w_requested[c];
    if (rec_live >= r->blocks_live && cs.w_usable[c] == 0) r->bytes_requested = rec_req;
    else if (w_usable > 0) r->bytes_requested = (uint64_t)((double)r->bytes_live * w_req / w_usable);
    else r->bytes_requested = r->bytes_live;
  }
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
