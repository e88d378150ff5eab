/* hooks.h: the one place where the core calls up, into tracking.
 *
 * The core (alloc/core/) knows nothing of records, call stacks or reports.
 * Where tracking must act on a block or a page, the core calls one of the
 * hooks below; tracking (alloc/track/) defines them, and nothing else of
 * tracking is visible here.  scripts/check_layers.py fails the build's tests
 * when a core object names any other symbol of a higher layer.
 *
 * What each costs when tracking is `stats`: nothing on the fast paths.
 * The allocation hooks run only when a heap's countdown (sample_left, set
 * by tsri_hook_heap_init) runs out, which `stats` never lets happen after
 * a thread's first allocation; the free hooks run only for a page whose
 * `tracked` word is set or while tsri_large_tracked is nonzero, which
 * only tracking sets; the page and slot hooks are on paths that already
 * give memory back to an arena.
 *
 * The debug checks and guarded sampling hook in here too: an allocation
 * reaches them through tsri_hook_alloc (debug mode keeps every heap's
 * countdown at -1, and guarded sampling decides when a countdown runs
 * out); a free reaches tsri_hook_debug_free only from the branch for
 * tracked pages (debug mode marks its pages, TSRI_TRACKED_DEBUG) or for
 * pointers outside the arenas, and tsri_hook_guarded_* only for pointers
 * in the guarded pool (tsri_guarded), which lies outside the arenas.
 * Neither adds a test to the fast paths.
 */
#ifndef TSR_HOOKS_H
#define TSR_HOOKS_H

#include "internal.h"

/* ---- allocation ---------------------------------------------------------- */

/* A request whose heap countdown ran out (a sample is due, tracking is
 * full, or the thread has no heap yet), and a large block when its
 * countdown runs out: allocate (class cls, or a large block when cls ==
 * TSR_CLASS_COUNT) with the core's own functions, count it, and record
 * the block if it is to be tracked.  caller: the return address into the
 * program, where the stack of the record begins. */
tsri_hidden void *tsri_hook_alloc(size_t size, size_t cls, size_t align, bool zero, void *caller);
/* tsri_hook_alloc for a block of class cls (< TSR_CLASS_COUNT), with the
 * path of nearly every allocation under full tracking inline.  align: the
 * alignment asked for (0: malloc's), which the class's blocks meet. */
tsri_hidden void *tsri_hook_alloc_small(size_t size, size_t cls, size_t align, void *caller);
/* Tracked block p was resized in place to requested bytes. */
tsri_hidden void tsri_hook_resized(const void *p, size_t requested);
/* tsri_large_realloc(p, size) for a large block that may have a record:
 * the record is out of the table while the OS resizes or moves the
 * block, and goes in again at the block's new address and size.  Moved
 * after the mapping, it would still stand at the old address when
 * another thread's block is mapped there. */
tsri_hidden void *tsri_hook_large_realloc(void *p, size_t size);

/* ---- free ----------------------------------------------------------------- */

/* Drop the table record of block p of pg, if it has one. */
tsri_hidden void tsri_hook_free_table(tsr_page_t *pg, const void *p);
/* Block idx's bit in its page's in_table mask (types.h). */
static inline uint32_t tsri_in_table_bit(size_t idx) { return (uint32_t)1 << (idx % 32); }

/* Block idx of pg, which p points at, is being freed and pg->tracked != 0:
 * drop its record before the block can be reused.  Inline: under full
 * tracking every free comes here, and the record it clears is in the
 * page's record area (types.h: tsri_recs_t), whose layout the core
 * already knows.  A free block has no record (its free cleared it), so a
 * double free finds nothing to drop and is reported by the free path. */
static inline void tsri_hook_free_small(tsr_page_t *pg, size_t idx, const void *p) {
  uint32_t t = atomic_load_explicit(&pg->tracked, memory_order_relaxed);
  tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
  if ((t & TSRI_TRACKED_ARRAY) && r != NULL) {   /* NULL: a double free racing the page's retirement */
    /* with no table records in the page, the record is the area's */
    bool only_area = (t & ~TSRI_TRACKED_DEBUG) == TSRI_TRACKED_ARRAY;
    uint64_t had = 0;
    if (pg->block_size <= TSRI_REC_NARROW_MAX) {
      _Atomic uint32_t *rec = &((_Atomic uint32_t *)(void *)r->recs)[idx];
      if (!only_area) had = atomic_load_explicit(rec, memory_order_relaxed);
      atomic_store_explicit(rec, 0, memory_order_relaxed);
    } else {
      if (!only_area) had = atomic_load_explicit(&r->recs[idx], memory_order_relaxed);
      atomic_store_explicit(&r->recs[idx], 0, memory_order_relaxed);
    }
    if (only_area || had != 0) return;   /* a block has one record: not in the table too */
  }
  if (tsr_unlikely((t & TSRI_TRACKED_COUNT) != 0) &&
      (atomic_load_explicit(&pg->in_table, memory_order_relaxed) & tsri_in_table_bit(idx)) != 0)
    tsri_hook_free_table(pg, p);
}

/* Drop the record of large block p, if it has one; called for every
 * large free while tsri_large_tracked (large.c) is nonzero. */
tsri_hidden void tsri_hook_free_large(const void *p);

/* ---- debug checks (track/debug.c) and guarded sampling (track/guarded.c) -- */

/* Free p under TESSERA_DEBUG: block idx of pg (a tracked page), or a
 * block outside the arenas (pg NULL).  Checks the guard bytes, records
 * the free's stack, fills the block and holds it in the quarantine or
 * gives it back; reports a double free with both stacks.  False when p
 * has no debug record (a block from before debug mode, or no block at
 * all): the caller frees it as usual.  caller: the program's return
 * address. */
tsri_hidden bool tsri_hook_debug_free(tsr_page_t *pg, size_t idx, void *p, void *caller);
/* realloc under TESSERA_DEBUG: always a new block and a debug free of
 * the old one (so its guard is checked and a stale pointer to it hits the
 * fill).  False when p has no debug record; else *out is the answer. */
tsri_hidden bool tsri_hook_debug_realloc(void *p, size_t size, void *caller, void **out);
/* malloc_usable_size under TESSERA_DEBUG=guard: the bytes asked for, where
 * p has a debug record (its guard bytes follow them); else usable. */
tsri_hidden size_t tsri_hook_debug_usable(const void *p, size_t usable);
/* Free p, which lies in the guarded pool (tsri_guarded). */
tsri_hidden void tsri_hook_guarded_free(void *p, void *caller);
/* The size of the live guarded block starting at p; 0 when p is not one. */
tsri_hidden size_t tsri_hook_guarded_usable(const void *p);

/* ---- pages and slots ------------------------------------------------------ */

/* A span goes back to its arena: let go of its record area. */
tsri_hidden void tsri_hook_page_retire(tsr_page_t *pg);
/* Slot `slot` of a, free and in transit, was decommitted: so is its
 * record area. */
tsri_hidden void tsri_hook_slot_purged(tsr_arena_t *a, size_t slot);

/* ---- heaps, start-up, fork ------------------------------------------------ */

/* A heap was made for a thread: arm its countdown for the tracking level
 * and reset its tracking state (stack memo, record numbers). */
tsri_hidden void tsri_hook_heap_init(tsr_heap_t *h);
/* The options were read (early: before the environment existed, when
 * every block is recorded so that none misses a record the environment
 * may ask for): take the tracking level from them, and re-arm the heaps
 * there already are. */
tsri_hidden void tsri_hook_options(bool early);
/* fork: take tracking's locks after the core's (prepare) and give them
 * back before the core's (parent, child). */
tsri_hidden void tsri_hook_fork_prepare(void);
tsri_hidden void tsri_hook_fork_parent(void);
tsri_hidden void tsri_hook_fork_child(void);

#endif /* TSR_HOOKS_H */
