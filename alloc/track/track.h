/* track.h: tracking's declarations, for tracking itself and the report
 * layer above it.
 *
 * Layer: alloc/track/ owns the per-block records (meta.c: the tracking
 * level, sampling, records in the table and in record areas; walk.c: the
 * walk over every live block), the record areas (area.c) and the call-stack
 * table (stack.c).  It may call the core (core/internal.h) and the OS layer;
 * the core reaches it only through core/hooks.h, which it implements.
 */
#ifndef TSR_TRACK_H
#define TSR_TRACK_H

#include "core/hooks.h"

/* ---- block records (meta.c) and call stacks (stack.c) -------------------- */

tsri_hidden extern _Atomic int tsri_track_level;     /* tsr_track_t */
/* Degradations for want of memory (tsr_stats_t): blocks left without
 * their record (meta.c, debug.c), stacks not stored (stack.c). */
tsri_hidden extern _Atomic uint64_t tsri_records_lost;
tsri_hidden extern _Atomic uint64_t tsri_stacks_lost;

typedef struct tsri_meta_totals_s {
  uint64_t tracked;            /* live blocks with a record */
  uint64_t requested;          /* their requested bytes (exact records) */
  double w_blocks, w_usable, w_requested;  /* sampled records, scaled by weight */
} tsri_meta_totals_t;
/* The totals of the table of sampled and large records (record areas:
 * tsri_meta_area_count). */
tsri_hidden void tsri_meta_table_totals(tsri_meta_totals_t *t);
/* Add the blocks with a record in pg's record area, if it has one, to
 * *live and the bytes they asked for to *requested.  Arena lock held. */
tsri_hidden void tsri_meta_area_count(const tsr_page_t *pg, uint64_t *live, uint64_t *requested);

/* What a walk reports per block: the public struct plus the class. */
typedef struct tsri_block_s {
  tsr_block_t pub;
  uint32_t cls;                /* TSR_CLASS_COUNT for large blocks */
  bool expected;               /* marked by tsr_leak_expect */
  bool in_area;                /* the record is in its page's area (tsri_meta_area_count) */
  /* Small blocks: the page as the walk copied it under the arena lock,
   * the same for each block of a page, which the walk visits one after
   * another.  page names it (never to be read: it may be carved again
   * meanwhile); free is its copied free bitmap (TSR_BITMAP_WORDS words,
   * local and remote together), valid during the visit only. */
  const tsr_page_t *page;
  uintptr_t page_start;        /* its block 0 (page.c: the phase) */
  uint32_t page_capacity;      /* its blocks (of pub.usable bytes each) */
  uint32_t page_slots;         /* slots of its span */
  uint32_t page_live;          /* its live blocks */
  const uint64_t *page_free;
} tsri_block_t;
typedef int tsri_walk_fn(const tsri_block_t *b, void *arg);
/* Walk every live block (see tsr_walk); only_tracked skips blocks without
 * a record cheaply. */
tsri_hidden int tsri_meta_walk(tsri_walk_fn *fn, void *arg, bool only_tracked);
/* Does any frame of stack id lie in a function the program marked with
 * tsr_leak_expect_function? */
tsri_hidden bool tsri_meta_site_expected(uint32_t stack);
tsri_hidden size_t tsri_meta_check(void);

/* ---- making records and capturing stacks (meta.c, stack.c) ---------------- */

/* The stack of an allocation that returns to caller, captured from the
 * frame fp of a function of tracking's that is still running (meta.c:
 * through the heap's memo). */
tsri_hidden uint32_t tsri_meta_stack(void *caller, tsr_heap_t *h, void *fp);
/* A table record, weight 1, for block p of pg (NULL: large) that h just
 * handed out for a request of size bytes. */
tsri_hidden void tsri_meta_record(void *p, tsr_page_t *pg, size_t size, uint32_t stack, tsr_heap_t *h);
/* The stack of the calling thread from the program's call that returns to
 * caller outwards, interned; for frees, which have no heap memo. */
tsri_hidden uint32_t tsri_stack_capture_from(void *caller);

/* ---- the debug checks (debug.c) and guarded sampling (guarded.c) --------- */

/* The patterns of TESSERA_DEBUG: new blocks, freed blocks, guard bytes
 * (also the slack of a guarded block). */
#define TSRI_DEBUG_NEW_BYTE 0xAB
#define TSRI_DEBUG_FREED_BYTE 0xFB
#define TSRI_DEBUG_GUARD_BYTE 0xC5
/* tsri_hook_alloc's work under TESSERA_DEBUG, from its frame fp. */
tsri_hidden void *tsri_debug_alloc(tsr_heap_t *h, size_t size, size_t cls, size_t align, bool zero,
                                   void *caller, void *fp);
/* Take the checks from the options (when they are read). */
tsri_hidden void tsri_debug_options(void);
/* pg goes back to its arena: drop the records of its freed blocks. */
tsri_hidden void tsri_debug_page_retire(tsr_page_t *pg);
/* tsr_check's part: the guard of every live block and the freed pattern
 * of every block in the quarantine; returns the damaged blocks. */
tsri_hidden size_t tsri_debug_check(void);
/* Lines of a message (tsri_error_line): "<what> by thread T at:" and the
 * frames of stack, symbolised. */
tsri_hidden void tsri_debug_stack_lines(const char *what, uint32_t stack, uint32_t thread);
tsri_hidden void tsri_debug_fork_prepare(void);
tsri_hidden void tsri_debug_fork_parent(void);
tsri_hidden void tsri_debug_fork_child(void);
/* Should the allocation whose countdown ran out on h be guarded? */
tsri_hidden bool tsri_guarded_due(tsr_heap_t *h, size_t size);
/* A guarded block of size bytes (align: 0 or the alignment asked for),
 * or NULL when none can be had (too big, no free slot). */
tsri_hidden void *tsri_guarded_alloc(size_t size, size_t align, tsr_heap_t *h, void *caller, void *fp);
/* Live guarded blocks and the bytes asked for them (a guarded block's
 * usable size), for the totals. */
tsri_hidden void tsri_guarded_stats(uint64_t *blocks, uint64_t *bytes);
/* Visit each live guarded block (no record: tracked 0), as tsri_meta_walk
 * does; fn may allocate. */
tsri_hidden int tsri_guarded_walk(tsri_walk_fn *fn, void *arg);
tsri_hidden void tsri_guarded_fork_prepare(void);
tsri_hidden void tsri_guarded_fork_parent(void);
tsri_hidden void tsri_guarded_fork_child(void);

#define TSRI_STACK_DEPTH 32
/* The id of this stack (frames innermost first), interning it on first
 * sight; 0 when n is 0 or the table is full.  Lock-free when known. */
tsri_hidden uint32_t tsri_stack_intern(void *const *frames, size_t n);
/* Frames of stack id (1..tsri_stack_count()); returns the depth. */
tsri_hidden size_t tsri_stack_frames(uint32_t id, void *const **frames);
tsri_hidden uint32_t tsri_stack_count(void);
tsri_hidden void tsri_stack_fork_prepare(void);
tsri_hidden void tsri_stack_fork_parent(void);
tsri_hidden void tsri_stack_fork_child(void);

#endif /* TSR_TRACK_H */
