/* stats.c: the counters and tsr_stats_get, tsr_check.
 *
 * Owns: the process-wide OS counters (updated where the OS is called) and
 * turning them and a walk of the arenas into tsr_stats_t.  The hot paths
 * count nothing: live bytes come from the pages' own `used` counts.
 */
#include "internal.h"

tsri_os_counters_t tsri_counters;

int tsr_stats_get(tsr_stats_t *stats) {
  if (stats == NULL || stats->size < sizeof(tsr_stats_t)) return EINVAL;
  tsri_init();
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  s.version = TSR_STATS_VERSION;
  uint64_t live = 0;
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) {
    for (size_t i = a->meta_slots; i < TSR_ARENA_SLOTS; i++) {
      const tsr_page_t *pg = &a->pages[i];
      if (pg->kind == TSR_SLOT_HEAD)
        live += (uint64_t)atomic_load_explicit(&pg->used, memory_order_relaxed) *
                tsri_classes[pg->cls].block_size;   /* cls is set under the lock */
    }
  }
  tsri_unlock(tsri_arena_lock_get());
  uint64_t large_bytes, large_blocks, large_mapped;
  tsri_large_stats(&large_bytes, &large_blocks, &large_mapped);
  s.allocated = live + large_bytes;
  s.large_live = large_blocks;
#define TSRI_COPY(name) s.name = atomic_load_explicit(&tsri_counters.name, memory_order_relaxed);
  TSRI_OS_COUNTERS(TSRI_COPY)
#undef TSRI_COPY
  s.committed = atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed);
  s.reserved = atomic_load_explicit(&tsri_counters.reserved, memory_order_relaxed);
  s.metadata = atomic_load_explicit(&tsri_counters.metadata, memory_order_relaxed);
  s.arenas = atomic_load_explicit(&tsri_counters.arenas, memory_order_relaxed);
  s.errors = atomic_load_explicit(&tsri_error_count, memory_order_relaxed);
  memcpy(stats, &s, sizeof s);
  return 0;
}

size_t tsr_check(void) {
  tsri_init();
  size_t bad = tsri_heap_check();
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) bad += tsri_arena_check(a);
  tsri_unlock(tsri_arena_lock_get());
  return bad;
}
