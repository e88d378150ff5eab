/* page.c: what happens inside one page (a span of one size class).
 *
 * Owns: setting a page up for a class, finding free blocks in its local
 * bitmap, merging the remote bitmap (frees by other threads) into it, and
 * checking its invariants.  The caller is the page's owner (heap.c), or the
 * holder of the abandoned-list lock for a page whose owner exited; nobody
 * else writes local, used or scan.
 *
 * Free blocks are bits, not links threaded through the blocks: allocation
 * and free never read or write the user's memory, so a buffer overflow
 * cannot redirect the allocator and a double free is seen before anything
 * is written.
 */
#include "internal.h"


void tsri_page_init(tsr_page_t *pg, size_t cls) {
  const tsri_class_t *c = &tsri_classes[cls];
  tsr_assert(c->capacity <= TSR_PAGE_MAX_BLOCKS && c->span_slots == pg->span_slots);
  pg->block_size = c->block_size;
  pg->capacity = c->capacity;
  pg->magic = (((uint64_t)1 << TSR_MAGIC_SHIFT) / c->block_size) + 1;
  atomic_store_explicit(&pg->used, 0, memory_order_relaxed);
  pg->scan = 0;
  pg->trimmed_at_used = c->capacity;
  pg->seen_used = c->capacity;   /* not seen yet: no growth to hold trimming back */
  pg->mesh_seen_used = UINT32_MAX;   /* not seen yet: not cold */
  pg->next = pg->prev = NULL;
  pg->notify_next = NULL;
  size_t full_words = c->capacity / 64, rest = c->capacity % 64;
  for (size_t w = 0; w < TSR_BITMAP_WORDS; w++) {
    uint64_t bits = w < full_words ? ~(uint64_t)0 : (w == full_words && rest ? ((uint64_t)1 << rest) - 1 : 0);
    atomic_store_explicit(tsri_local(pg, w), bits, memory_order_relaxed);
    atomic_store_explicit(tsri_remote(pg, w), 0, memory_order_relaxed);
  }
}

/* Give back the OS pages inside runs of free blocks: the local bitmap's,
 * and with_remote the blocks other threads freed too (free as well, and
 * handed out by nobody until the owner collects them). */
static size_t trim_runs(tsr_page_t *pg, bool with_remote) {
  /* the fill check of TESSERA_DEBUG reads a freed block's pattern back
   * when the block is handed out again: its pages must keep it */
  if (atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) & TSRI_DEBUG_FILL) return 0;
  size_t os_page = tsri_os_page_size(), given = 0;
  uintptr_t run_start = 0;   /* start of the current run of free blocks, 0: none */
  for (size_t i = 0; i <= pg->capacity; i++) {
    uint64_t word = 0;
    if (i < pg->capacity) {
      word = atomic_load_explicit(tsri_local(pg, i >> 6), memory_order_relaxed);
      if (with_remote) word |= atomic_load_explicit(tsri_remote(pg, i >> 6), memory_order_relaxed);
    }
    bool free_block = (word >> (i & 63)) & 1;
    uintptr_t at = (uintptr_t)pg->start + i * pg->block_size;
    if (free_block) {
      if (run_start == 0) run_start = at;
      continue;
    }
    if (run_start != 0) {
      uintptr_t lo = (run_start + os_page - 1) & ~(uintptr_t)(os_page - 1);
      uintptr_t hi = at & ~(uintptr_t)(os_page - 1);
      if (hi > lo && tsri_os_reset((void *)lo, hi - lo) == 0) {
        tsri_count(&tsri_counters.os_resets, 1);
        given += hi - lo;
      }
      run_start = 0;
    }
  }
  return given;
}

size_t tsri_page_trim(tsr_page_t *pg, bool force) {
  uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  if (!force && used + pg->capacity / 8u > pg->trimmed_at_used) return 0;
  pg->trimmed_at_used = used;
  tsri_mesh_check(pg);   /* an OS page of the shared file with no live block leaves it */
  return trim_runs(pg, false);
}

/* Free blocks of pg by its local bitmap, and with_remote its remote one
 * too. */
static uint32_t free_count(const tsr_page_t *pg, bool with_remote) {
  uint32_t n = 0;
  for (size_t w = 0, words = tsri_page_words(pg); w < words; w++) {
    uint64_t bits = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    if (with_remote) bits |= atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed);
    n += (uint32_t)__builtin_popcountll(bits);
  }
  return n;
}

size_t tsri_page_trim_idle(tsr_page_t *pg) {
  uint32_t taken = pg->capacity - free_count(pg, true);
  if (taken >= pg->trimmed_at_used) return 0;   /* nothing freed since its last trim */
  pg->trimmed_at_used = taken;
  tsri_mesh_check(pg);
  return trim_runs(pg, true);
}

void tsri_page_recount(tsr_page_t *pg) {
  atomic_store_explicit(&pg->used, pg->capacity - free_count(pg, false), memory_order_relaxed);
}

bool tsri_page_has_remote(const tsr_page_t *pg) {
  for (size_t w = 0, n = tsri_page_words(pg); w < n; w++)
    if (atomic_load_explicit(tsri_remote(pg, w), memory_order_seq_cst) != 0) return true;
  return false;
}

uint32_t tsri_page_collect(tsr_page_t *pg) {
  uint32_t back = 0;
  for (size_t w = 0, n = tsri_page_words(pg); w < n; w++) {
    if (atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed) == 0) continue;
    uint64_t bits = atomic_exchange_explicit(tsri_remote(pg, w), 0, memory_order_acquire);
    uint64_t local = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    uint64_t twice = bits & local;
    if (tsr_unlikely(twice != 0)) {
      /* freed by the owner and by another thread at the same time */
      size_t idx = w * 64 + (size_t)__builtin_ctzll(twice);
      tsri_error(TSR_ERROR_DOUBLE_FREE, "double free of %p (freed concurrently by two threads)",
                 (void *)(pg->start + idx * pg->block_size));
      bits &= ~twice;
    }
    atomic_store_explicit(tsri_local(pg, w), local | bits, memory_order_relaxed);
    back += (uint32_t)__builtin_popcountll(bits);
  }
  if (back != 0) {
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
    tsr_assert_internal(used >= back);
    atomic_store_explicit(&pg->used, used - back, memory_order_relaxed);
  }
  return back;
}

bool tsri_page_refill(tsr_page_t *pg) {
  /* the owner's own frees may sit below scan; remote frees anywhere */
  if (tsri_page_find(pg, pg->scan) || tsri_page_find(pg, 0)) return true;
  return tsri_page_collect(pg) != 0 && tsri_page_find(pg, 0);
}

size_t tsri_page_check(const tsr_page_t *pg) {
  size_t bad = 0, free_bits = 0, n = tsri_page_words(pg);
  for (size_t w = 0; w < TSR_BITMAP_WORDS; w++) {
    uint64_t local = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    uint64_t remote = atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed);
    uint64_t valid = w < n ? (w + 1 < n || pg->capacity % 64 == 0 ? ~(uint64_t)0
                                                                  : ((uint64_t)1 << (pg->capacity % 64)) - 1)
                           : 0;
    if ((local | remote) & ~valid) {
      tsri_warning("check: page %p has free bits past its last block", (void *)pg->start);
      bad++;
    }
    if (local & remote) {
      tsri_warning("check: page %p has blocks freed twice", (void *)pg->start);
      bad++;
    }
    free_bits += (size_t)__builtin_popcountll(local);
  }
  uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  if (free_bits + used != pg->capacity) {
    tsri_warning("check: page %p: %zu free + %zu used != %zu blocks", (void *)pg->start, free_bits,
                 (size_t)used, (size_t)pg->capacity);
    bad++;
  }
  if (pg->block_size != tsri_classes[pg->cls].block_size || pg->capacity != tsri_classes[pg->cls].capacity) {
    tsri_warning("check: page %p: block size %zu does not match class %d", (void *)pg->start,
                 (size_t)pg->block_size, (int)pg->cls);
    bad++;
  }
  return bad;
}
