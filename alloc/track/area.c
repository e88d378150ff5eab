/* area.c: the record areas of pages tracked in full (area.h): making and
 * committing them, their contexts (found, made, and freed when no live
 * record names them), counting and checking their records, and keeping
 * them from span to span until the arena purges the slot.
 */
#include "area.h"

static inline tsr_arena_t *arena_of(const tsr_page_t *pg) {
  return (tsr_arena_t *)((uintptr_t)pg & ~(uintptr_t)TSR_ARENA_MASK);
}

static size_t area_bytes(const tsr_page_t *pg) {
  return tsri_align_up(sizeof(tsri_recs_t) + (size_t)pg->capacity * (rec_fmt(pg->block_size).width / 8),
                       tsri_os_page_size());
}

static size_t area_long_bytes(const tsr_page_t *pg) {
  return tsri_align_up(sizeof(tsri_recs_t) + tsri_align_up((size_t)pg->capacity * 4, 8) + (size_t)pg->capacity * 8,
                       tsri_os_page_size());
}

/* Commit the area of pg (at r) up to bytes; what is committed already is
 * all zero.  false when the OS refuses. */
static bool area_commit(tsri_recs_t *r, tsr_page_t *pg, size_t bytes) {
  if (pg->recs_committed >= bytes) return true;
  if (tsri_os_commit((uint8_t *)r + pg->recs_committed, bytes - pg->recs_committed) != 0) return false;
  tsri_count(&tsri_counters.os_commits, 1);
  tsri_count(&tsri_counters.committed, (int64_t)(bytes - pg->recs_committed));
  tsri_count(&tsri_counters.metadata, (int64_t)(bytes - pg->recs_committed));
  pg->recs_committed = (uint32_t)bytes;
  return true;
}

/* pg->ctx_epoch, odd while the owner frees contexts; written by the owner
 * only. */
static inline void epoch_bump(tsr_page_t *pg) {
  atomic_thread_fence(memory_order_release);   /* what came before, before the bump */
  atomic_store_explicit(&pg->ctx_epoch, atomic_load_explicit(&pg->ctx_epoch, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_thread_fence(memory_order_release);   /* the bump, before what follows */
}

tsri_recs_t *tsri_area_make(tsr_page_t *pg) {
  tsr_arena_t *a = arena_of(pg);
  uint8_t *base = atomic_load_explicit(&a->recs, memory_order_acquire);
  if (base == NULL) {
    void *mem;
    if (tsri_os_reserve(a->slots * TSRI_RECS_STRIDE, tsri_os_granularity(), &mem) != 0) return NULL;
    uint8_t *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&a->recs, &none, (uint8_t *)mem, memory_order_acq_rel,
                                                memory_order_acquire)) {
      base = mem;
      tsri_count(&tsri_counters.os_reserves, 1);
      tsri_count(&tsri_counters.reserved, (int64_t)(a->slots * TSRI_RECS_STRIDE));
    } else {
      tsri_os_release(mem, a->slots * TSRI_RECS_STRIDE);
      base = none;
    }
  }
  tsri_recs_t *r = (tsri_recs_t *)(void *)(base + (size_t)(pg - a->pages) * TSRI_RECS_STRIDE);
  if (!area_commit(r, pg, area_bytes(pg))) return NULL;
  epoch_bump(pg);   /* a new table: hints about the page's last one are void */
  epoch_bump(pg);
  atomic_store_explicit(&pg->recs, r, memory_order_release);
  atomic_fetch_or_explicit(&pg->tracked, TSRI_TRACKED_ARRAY, memory_order_relaxed);
  return r;
}

/* ---- contexts ---- */

static inline size_t ctx_hash(uint32_t stack, uint32_t thread) {
  return (size_t)(((stack * 0x9e3779b1u) ^ (thread * 0x85ebca6bu)) >> 25);
}

static inline bool ctx_holds(const tsri_ctx_t *c, uint32_t stack, uint32_t thread, uint64_t seq,
                             unsigned off_bits) {
  return atomic_load_explicit(&c->stack, memory_order_relaxed) == stack &&
         atomic_load_explicit(&c->thread, memory_order_relaxed) == thread &&
         seq - atomic_load_explicit(&c->seq_base, memory_order_relaxed) < ((uint64_t)1 << off_bits);
}

static void ctx_index_add(tsri_recs_t *r, size_t slot) {
  size_t i = ctx_hash(atomic_load_explicit(&r->ctx[slot].stack, memory_order_relaxed),
                      atomic_load_explicit(&r->ctx[slot].thread, memory_order_relaxed));
  while (r->index[i] != 0) i = (i + 1) & (TSRI_CTX_SLOTS - 1);
  r->index[i] = (uint8_t)(slot + 1);
}

/* Free the contexts no record names and rebuild the index; false when
 * every one is still named. */
static bool ctx_collect(tsri_recs_t *r, const tsr_page_t *pg, rec_fmt_t f) {
  uint64_t named[TSRI_CTX_SLOTS / 64] = { 0 };
  for (size_t i = 0; i < pg->capacity; i++) {
    rec_fields_t rec = rec_unpack(f, rec_read(r, f, i));
    if (!rec.valid) continue;
    if (rec_is_long(f, rec)) rec.ctx = long_unpack(long_read(r, pg->capacity, i), false).ctx;
    named[rec.ctx / 64] |= (uint64_t)1 << (rec.ctx % 64);
  }
  bool freed = false;
  memset(r->index, 0, sizeof r->index);
  for (size_t s = 0; s < TSRI_CTX_SLOTS; s++) {
    uint64_t bit = (uint64_t)1 << (s % 64);
    if (!(r->ctx_used[s / 64] & bit)) continue;
    if (named[s / 64] & bit) {
      ctx_index_add(r, s);
      continue;
    }
    r->ctx_used[s / 64] &= ~bit;
    atomic_store_explicit(&r->ctx[s].thread, 0, memory_order_relaxed);   /* matches no heap */
    atomic_store_explicit(&r->ctx[s].stack, 0, memory_order_relaxed);
    freed = true;
  }
  return freed;
}

/* A free context slot of r, or -1 (REC_LONG is never one). */
static int ctx_free_slot(const tsri_recs_t *r) {
  uint64_t free0 = ~r->ctx_used[0], free1 = ~r->ctx_used[1] & ~((uint64_t)1 << (REC_LONG - 64));
  if (free0 != 0) return __builtin_ctzll(free0);
  return free1 != 0 ? 64 + __builtin_ctzll(free1) : -1;
}

int tsri_area_ctx_find(tsri_recs_t *r, tsr_page_t *pg, rec_fmt_t f, uint32_t stack, uint32_t thread,
                       uint64_t seq, bool *is_long) {
  int same = -1;   /* a context of (stack, thread), whatever its range */
  for (size_t i = ctx_hash(stack, thread), n = 0; n < TSRI_CTX_SLOTS && r->index[i] != 0;
       i = (i + 1) & (TSRI_CTX_SLOTS - 1), n++) {
    size_t slot = r->index[i] - 1u;
    if (ctx_holds(&r->ctx[slot], stack, thread, seq, f.off_bits)) return (int)slot;
    if (atomic_load_explicit(&r->ctx[slot].stack, memory_order_relaxed) == stack &&
        atomic_load_explicit(&r->ctx[slot].thread, memory_order_relaxed) == thread)
      same = (int)slot;
  }
  int slot = ctx_free_slot(r);
  if (slot < 0 && r->gc_wait == 0) {
    /* odd while contexts go (walkers copy again), and a new value for
     * the heaps' hints, which may name one of them */
    epoch_bump(pg);
    bool freed = ctx_collect(r, pg, f);
    epoch_bump(pg);
    if (freed) {
      slot = ctx_free_slot(r);
      same = -1;   /* it may have gone; the new context serves */
    } else {
      r->gc_wait = pg->capacity / 4u;   /* each search reads every record: not too often */
    }
  } else if (slot < 0) {
    r->gc_wait--;
  }
  if (slot < 0) {
    if (f.width != 32 || same < 0 || !area_commit(r, pg, area_long_bytes(pg))) return -1;
    *is_long = true;
    return same;
  }
  r->ctx_used[slot / 64] |= (uint64_t)1 << (slot % 64);
  atomic_store_explicit(&r->ctx[slot].thread, thread, memory_order_relaxed);
  atomic_store_explicit(&r->ctx[slot].seq_base, seq, memory_order_relaxed);
  atomic_store_explicit(&r->ctx[slot].stack, stack, memory_order_relaxed);
  ctx_index_add(r, (size_t)slot);
  return slot;
}

static void area_sum(const tsr_page_t *pg, const tsri_recs_t *r, uint64_t *live, uint64_t *requested) {
  rec_fmt_t f = rec_fmt(pg->block_size);
  for (size_t i = 0; i < pg->capacity; i++) {
    uint64_t v = rec_read(r, f, i);
    if (v == 0) continue;
    *live += 1;
    *requested += pg->block_size - rec_unpack(f, v).waste;
  }
}

/* Records in pg's area r (for checks). */
static inline size_t area_count_of(const tsr_page_t *pg, const tsri_recs_t *r) {
  uint64_t live = 0, requested = 0;
  area_sum(pg, r, &live, &requested);
  return (size_t)live;
}

void tsri_meta_area_count(const tsr_page_t *pg, uint64_t *live, uint64_t *requested) {
  const tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
  if (r != NULL) area_sum(pg, r, live, requested);
}

void tsri_hook_page_retire(tsr_page_t *pg) {
  tsri_debug_page_retire(pg);
  if (atomic_load_explicit(&pg->recs, memory_order_relaxed) == NULL) return;
  /* walkers copy areas under the arena lock: once the pointer is gone
   * under that lock, nobody reads the area any more */
  tsri_lock(tsri_arena_lock_get());
  tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_relaxed);
  atomic_store_explicit(&pg->recs, NULL, memory_order_relaxed);
  atomic_fetch_and_explicit(&pg->tracked, ~TSRI_TRACKED_ARRAY, memory_order_relaxed);
  tsri_unlock(tsri_arena_lock_get());
  epoch_bump(pg);   /* the heaps' hints name this area and its contexts */
  epoch_bump(pg);
  /* Every block is free, so every record is 0 (frees clear them): the
   * contexts and long records are all that is left.  The area stays committed for the
   * slot's next span, until the arena purges the slot (a decommit per
   * page would cost a TLB shootdown per page in a threaded program). */
  tsr_assert_expensive(area_count_of(pg, r) == 0);
  if (r->has_long) memset((void *)area_long(r, pg->capacity), 0, (size_t)pg->capacity * 8);
  memset(r, 0, offsetof(tsri_recs_t, recs));
}

void tsri_hook_slot_purged(tsr_arena_t *a, size_t slot) {
  tsr_page_t *pg = &a->pages[slot];
  if (pg->recs_committed == 0) return;
  uint8_t *base = atomic_load_explicit(&a->recs, memory_order_acquire);
  /* refused: the area stays committed and in use, as while the slot is
   * not purged (a new area must read as zero, which this one would not) */
  if (tsri_os_decommit(base + slot * TSRI_RECS_STRIDE, pg->recs_committed) != 0) return;
  tsri_count(&tsri_counters.os_decommits, 1);
  tsri_count(&tsri_counters.committed, -(int64_t)pg->recs_committed);
  tsri_count(&tsri_counters.metadata, -(int64_t)pg->recs_committed);
  pg->recs_committed = 0;
}

size_t tsri_area_check(const tsr_page_t *pg, const tsri_recs_t *r, const _Atomic uint64_t *seq_now, bool report) {
  uint32_t stacks = tsri_stack_count();
  rec_fmt_t f = rec_fmt(pg->block_size);
  size_t bad = 0;
  for (size_t i = 0; i < pg->capacity; i++) {
    uint64_t v = rec_read(r, f, i);
    if (v == 0) continue;
    /* a block being freed right now may still show its record: only a
     * record that cannot belong to the block is reported */
    rec_fields_t rec = rec_unpack(f, v);
    bool is_long = rec_is_long(f, rec);
    if (is_long) rec = long_unpack(long_read(r, pg->capacity, i), false);
    const tsri_ctx_t *c = &r->ctx[rec.ctx];
    uint32_t stack = atomic_load_explicit(&c->stack, memory_order_relaxed);
    uint32_t thread = atomic_load_explicit(&c->thread, memory_order_relaxed);
    uint64_t seq = (is_long ? 0 : atomic_load_explicit(&c->seq_base, memory_order_relaxed)) + rec.off;
    if (rec.valid && rec.waste < pg->block_size && thread != 0 && stack <= stacks &&
        seq <= atomic_load_explicit(seq_now, memory_order_relaxed))
      continue;
    if (report)
      tsri_warning("check: record of block %p is corrupt (context %u: stack %u, thread %u; waste %u of %u bytes)",
                   (void *)(pg->start + i * pg->block_size), (unsigned)rec.ctx, (unsigned)stack, (unsigned)thread,
                   (unsigned)rec.waste, (unsigned)pg->block_size);
    bad++;
  }
  return bad;
}

