/* debug.c: the checks of TESSERA_DEBUG (guard, fill, quarantine), and the
 * messages of the debug checks and of guarded sampling with their stacks.
 *
 * Owns: a record per block handed out under debug mode (its requested and
 * usable size, the stacks and threads of its allocation and free, and its
 * state), the quarantine, and the checks.  The core reaches it through
 * core/hooks.h: every allocation comes to tsri_hook_alloc (debug mode
 * keeps each heap's countdown at -1), which hands it to tsri_debug_alloc;
 * a free of a block of a page marked TSRI_TRACKED_DEBUG, or of any block
 * outside the arenas, comes to tsri_hook_debug_free; every realloc to
 * tsri_hook_debug_realloc.  Blocks handed out before debug mode started
 * (the dynamic loader's, say) have no record and are freed as usual.
 *
 * The checks:
 *  - guard: the bytes from the requested size to the end of the block
 *    hold TSRI_DEBUG_GUARD_BYTE, at least GUARD_MIN of them (a request
 *    that leaves fewer gets the next class whose blocks keep its
 *    alignment; a large block is asked for GUARD_MIN bytes more), checked
 *    on free, on realloc and by tsr_check.
 *  - fill: a new block is filled with TSRI_DEBUG_NEW_BYTE (a read of
 *    memory never written shows it), a freed one with
 *    TSRI_DEBUG_FREED_BYTE, which is checked when the block leaves the
 *    quarantine and when it is handed out again: a byte that differs was
 *    written after the free.
 *  - quarantine: a freed block stays allocated in its page, unusable,
 *    until TESSERA_QUARANTINE_BYTES of blocks freed after it (or
 *    QUARANTINE_MAX blocks) push it out, first in first out; so a stale
 *    pointer reads the freed pattern and its writes are found.
 * Records of small blocks stay, state freed, after the block went back to
 * its page, so a write after the free or a second free names both stacks;
 * they go when the block is handed out again or its page is retired (a
 * retired page's memory may come back as zeros, or as another class).
 * With fill on, the core neither trims free blocks' OS pages nor meshes
 * (core/page.c, core/mesh.c), which would lose the freed pattern.
 *
 * Cost: one lock (debug_lock) around a hash lookup per allocation and free,
 * a stack capture on each (the allocation's is the one tracking makes,
 * from the heap's memo), and a pass over the block's bytes for each check
 * on; docs/debugging.md has measured figures.
 */
#include "meta.h"

#define GUARD_MIN 8                  /* fewest guard bytes a block gets */
#define QUARANTINE_MAX ((size_t)1 << 18)   /* blocks the quarantine holds at most */

enum { STATE_LIVE = 1, STATE_FREED = 2, STATE_HELD = 3 };   /* HELD: in the quarantine */

typedef struct dbg_entry_s {
  uintptr_t ptr;                     /* the block; 0: empty slot */
  size_t requested;                  /* bytes asked for */
  size_t usable;                     /* bytes of the block */
  uint32_t alloc_stack, free_stack;  /* stack ids (stack.c); 0: none */
  uint32_t alloc_thread, free_thread;
  uint32_t state;                    /* STATE_* */
} dbg_entry_t;

static tsri_lock_t debug_lock;
static tsri_table_t debug_table = TSRI_TABLE_INIT(dbg_entry_t, 1024);
/* The quarantine: a ring of block addresses, oldest at q_head, under
 * debug_lock; memory from the OS at the first use. */
static uintptr_t *q_ring;
static size_t q_head, q_count, q_bytes;

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

void tsri_debug_stack_lines(const char *what, uint32_t stack, uint32_t thread) {
  if (thread != 0) tsri_error_line("%s by thread %zu at:", what, (size_t)thread);
  else tsri_error_line("%s at:", what);
  void *const *frames;
  size_t depth = stack != 0 ? tsri_stack_frames(stack, &frames) : 0;
  if (depth == 0) tsri_error_line("  (no call stack recorded)");
  for (size_t f = 0; f < depth; f++) {
    tsri_os_symbol_t sym;
    if (tsri_os_symbolize(frames[f], &sym) != 0) {
      tsri_error_line("  #%zu %p", f, frames[f]);
    } else if (sym.file[0]) {
      tsri_error_line("  #%zu %p %s+0x%x (%s:%zu) in %s", f, frames[f], sym.function[0] ? sym.function : "??",
                      (unsigned)sym.offset, sym.file, (size_t)sym.line, sym.module);
    } else {
      tsri_error_line("  #%zu %p %s+0x%x in %s", f, frames[f], sym.function[0] ? sym.function : "??",
                      (unsigned)sym.offset, sym.module);
    }
  }
}

/* The stacks of e: its allocation, and its free when it was freed. */
static void entry_stacks(const dbg_entry_t *e) {
  tsri_debug_stack_lines("allocated", e->alloc_stack, e->alloc_thread);
  if (e->state != STATE_LIVE) tsri_debug_stack_lines("freed", e->free_stack, e->free_thread);
}

/* The first byte of [p + from, p + to) that is not `byte`, or `to`. */
static size_t first_not(const uint8_t *p, size_t from, size_t to, uint8_t byte) {
  size_t i = from;
  while (i < to && p[i] == byte) i++;
  return i;
}

/* Damage that ends at the last byte of e's block, with intact bytes
 * before it, is more likely a write before the start of the block after
 * it (an underflow) than an overflow of e: name that block and its stacks,
 * when it has a record.  from: the first damaged byte. */
static void underflow_note(const dbg_entry_t *e, size_t from, uint8_t byte) {
  const uint8_t *p = (const uint8_t *)e->ptr;
  if (p[e->usable - 1] == byte) return;
  size_t first = e->usable - 1;
  while (first > from && p[first - 1] != byte) first--;
  if (first == from && from <= e->requested) return;
  dbg_entry_t next = { 0 };
  tsri_lock(&debug_lock);
  const dbg_entry_t *r = tsri_table_find(&debug_table, e->ptr + e->usable);
  if (r != NULL) next = *r;
  tsri_unlock(&debug_lock);
  tsri_error_line("bytes %zu to %zu, the end of the block, are damaged: perhaps a heap buffer underflow "
                  "of the block after it, %p, written %zu bytes before its start",
                  first, e->usable - 1, (void *)(e->ptr + e->usable), e->usable - first);
  if (next.ptr != 0) {
    tsri_error_line("the block after it, %p of %zu bytes:", (void *)next.ptr, next.requested);
    entry_stacks(&next);
  }
}

/* Check e's guard bytes (its block live or held, not yet refilled); a
 * report when one was written.  found_by: the call that looked.  Returns
 * whether they were intact. */
static bool guard_check(const dbg_entry_t *e, const char *found_by) {
  const uint8_t *p = (const uint8_t *)e->ptr;
  size_t at = first_not(p, e->requested, e->usable, TSRI_DEBUG_GUARD_BYTE);
  if (at == e->usable) return true;
  tsri_error_begin(TSR_ERROR_OVERFLOW,
                   "heap buffer overflow: block %p of %zu bytes was written past its end: byte %zu "
                   "(%zu past the end) is damaged; found by %s",
                   (void *)p, e->requested, at, at - e->requested, found_by);
  entry_stacks(e);
  underflow_note(e, at, TSRI_DEBUG_GUARD_BYTE);
  return false;
}

/* Check the freed pattern of e's block (freed, not handed out since). */
static bool fill_check(const dbg_entry_t *e, const char *found_by) {
  const uint8_t *p = (const uint8_t *)e->ptr;
  size_t at = first_not(p, 0, e->usable, TSRI_DEBUG_FREED_BYTE);
  if (at == e->usable) return true;
  tsri_error_begin(TSR_ERROR_WRITE_AFTER_FREE,
                   "write after free: block %p of %zu bytes was written after it was freed: byte %zu "
                   "is damaged; found by %s",
                   (void *)p, e->requested, at, found_by);
  entry_stacks(e);
  underflow_note(e, at, TSRI_DEBUG_FREED_BYTE);
  return false;
}

/* ------------------------------------------------------------------------
 * Allocation
 * ---------------------------------------------------------------------- */

/* The class for a request of size bytes that class cls serves, with room
 * for GUARD_MIN guard bytes: cls, or the next class whose blocks are
 * multiples of the largest power of two that divides cls's (so an
 * alignment cls met still holds); TSR_CLASS_COUNT for a large block. */
static size_t guard_class(size_t size, size_t cls) {
  uint32_t bs = tsri_classes[cls].block_size;
  uint32_t align = bs & (0u - bs);
  while (cls < TSR_CLASS_COUNT &&
         (tsri_classes[cls].block_size - size < GUARD_MIN || tsri_classes[cls].block_size % align != 0))
    cls++;
  return cls;
}

void *tsri_debug_alloc(tsr_heap_t *h, size_t size, size_t cls, size_t align, bool zero, void *caller, void *fp) {
  uint32_t checks = atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed);
  size_t want = size;
  if (checks & TSRI_DEBUG_GUARD) {
    if (cls < TSR_CLASS_COUNT) cls = guard_class(size, cls);
    if (cls == TSR_CLASS_COUNT) {
      if (size > SIZE_MAX - GUARD_MIN) {
        errno = ENOMEM;
        return NULL;
      }
      want = size + GUARD_MIN;
    }
  }
  /* every allocation comes back here, and the inline path of full
   * tracking (tsri_hook_alloc_small) never serves this heap: it needs
   * record numbers, which debug mode does not hand out */
  atomic_store_explicit(&h->sample_left, -1, memory_order_relaxed);
  h->seq_end = h->seq_next;
  size_t idx;
  /* blocks of the class's own size, which guard_class measured: never a
   * fitted page's (heap.c) */
  void *p = cls < TSR_CLASS_COUNT
                ? tsri_heap_alloc_at(h, cls, tsri_class_need(tsri_classes[cls].block_size, cls, 0), &idx)
                : tsri_large_alloc(want, align, zero);
  if (p == NULL) return NULL;
  tsri_heap_count(&h->allocs);
  tsr_page_t *pg = cls < TSR_CLASS_COUNT ? tsri_page_of(p) : NULL;
  size_t usable = pg != NULL ? pg->block_size : tsri_large_usable(p);
  uint32_t stack = tsri_meta_stack(caller, h, fp);

  tsri_lock(&debug_lock);
  dbg_entry_t *e = tsri_table_find(&debug_table, (uintptr_t)p);
  if (e != NULL && e->state == STATE_FREED && (checks & TSRI_DEBUG_FILL) && !fill_check(e, "malloc"))
    tsri_error_end();
  if (e == NULL) e = tsri_table_insert(&debug_table, (uintptr_t)p);
  if (e != NULL)
    *e = (dbg_entry_t){ (uintptr_t)p, size, usable, stack, 0, h->thread, 0, STATE_LIVE };
  tsri_unlock(&debug_lock);
  if (e == NULL) {   /* no memory for a record: the block goes unchecked */
    tsri_count(&tsri_records_lost, 1);
    return p;
  }

  if (pg != NULL && !(atomic_load_explicit(&pg->tracked, memory_order_relaxed) & TSRI_TRACKED_DEBUG))
    atomic_fetch_or_explicit(&pg->tracked, TSRI_TRACKED_DEBUG, memory_order_relaxed);
  if ((checks & TSRI_DEBUG_FILL) && !zero) memset(p, TSRI_DEBUG_NEW_BYTE, usable);
  if (checks & TSRI_DEBUG_GUARD) memset((uint8_t *)p + size, TSRI_DEBUG_GUARD_BYTE, usable - size);
  if (atomic_load_explicit(&tsri_track_level, memory_order_relaxed) != TSR_TRACK_STATS)
    tsri_meta_record(p, pg, size, stack, h);
  return p;
}

/* ------------------------------------------------------------------------
 * Free and the quarantine
 * ---------------------------------------------------------------------- */

/* Give block p back to the core for good (it left the quarantine, or
 * there is none). */
static void release(uintptr_t p) {
  tsr_page_t *pg = tsri_page_of((void *)p);
  if (pg != NULL) {
    tsri_heap_free_block(pg, tsri_block_index_of(pg, (void *)p), (void *)p);
  } else if (tsri_large_free((void *)p)) {
    tsri_heap_count_free();
  }
}

#define EVICT_BATCH 16

/* Take out of the quarantine into out what lies past its bounds, oldest
 * first, at most EVICT_BATCH; *more: others remain past them.  The
 * records of small blocks stay, freed; a large block's goes, since its
 * memory goes back to the OS.  debug_lock held. */
static size_t quarantine_evict(dbg_entry_t *out, bool *more) {
  size_t limit = (size_t)tsri_option(TSRI_OPT_QUARANTINE_BYTES), n = 0;
  while (n < EVICT_BATCH && q_count > 0 && (q_bytes > limit || q_count >= QUARANTINE_MAX)) {
    uintptr_t old = q_ring[q_head];
    q_head = (q_head + 1) % QUARANTINE_MAX;
    q_count--;
    dbg_entry_t *e = tsri_table_find(&debug_table, old);
    q_bytes -= e->usable;
    out[n++] = *e;
    if (tsri_page_of((void *)old) != NULL) e->state = STATE_FREED;
    else tsri_table_remove(&debug_table, e);
  }
  *more = q_count > 0 && (q_bytes > limit || q_count >= QUARANTINE_MAX);
  return n;
}

/* Blocks out of the quarantine: their freed pattern checked, given back. */
static void release_evicted(const dbg_entry_t *out, size_t n, uint32_t checks) {
  for (size_t i = 0; i < n; i++) {
    if (checks & TSRI_DEBUG_FILL) {
      dbg_entry_t e = out[i];
      e.state = STATE_FREED;
      if (!fill_check(&e, "the quarantine")) tsri_error_end();
    }
    release(out[i].ptr);
  }
}

/* The free of the block of e (a copy of its record, live) by call (free,
 * realloc): check, fill, hold or give back.  Its tracking record is
 * dropped by the caller. */
static void debug_free_block(dbg_entry_t e, uint32_t free_stack, uint32_t checks, const char *call) {
  if ((checks & TSRI_DEBUG_GUARD) && !guard_check(&e, call)) {
    tsri_debug_stack_lines("being freed", free_stack, tsri_os_thread_id());
    tsri_error_end();
  }
  if (checks & TSRI_DEBUG_FILL) memset((void *)e.ptr, TSRI_DEBUG_FREED_BYTE, e.usable);
  bool held = false, now = false, more = false;
  tsri_lock(&debug_lock);
  dbg_entry_t *r = tsri_table_find(&debug_table, e.ptr);
  if (r != NULL && r->state == STATE_LIVE) {   /* else a second free raced this one */
    r->free_stack = free_stack;
    r->free_thread = tsri_os_thread_id();
    held = (checks & TSRI_DEBUG_QUARANTINE) && q_ring != NULL;
    if (held) {
      r->state = STATE_HELD;
      q_ring[(q_head + q_count) % QUARANTINE_MAX] = e.ptr;
      q_count++;
      q_bytes += e.usable;
      more = true;
    } else {
      r->state = STATE_FREED;
      if (tsri_page_of((void *)e.ptr) == NULL) tsri_table_remove(&debug_table, r);
      now = true;
    }
  }
  tsri_unlock(&debug_lock);
  if (now) release(e.ptr);
  while (more) {   /* a big block may push many small ones out */
    dbg_entry_t out[EVICT_BATCH];
    tsri_lock(&debug_lock);
    size_t n = quarantine_evict(out, &more);
    tsri_unlock(&debug_lock);
    release_evicted(out, n, checks);
  }
}

bool tsri_hook_debug_free(tsr_page_t *pg, size_t idx, void *p, void *caller) {
  uint32_t checks = atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed);
  if (checks == 0) return false;
  tsri_lock(&debug_lock);
  dbg_entry_t *r = tsri_table_find(&debug_table, (uintptr_t)p);
  dbg_entry_t e = r != NULL ? *r : (dbg_entry_t){ 0 };
  tsri_unlock(&debug_lock);
  if (e.ptr == 0) return false;
  uint32_t stack = tsri_stack_capture_from(caller);
  if (e.state != STATE_LIVE) {
    tsri_error_begin(TSR_ERROR_DOUBLE_FREE, "double free of %p (block of %zu bytes, already freed)", p,
                     e.requested);
    entry_stacks(&e);
    tsri_debug_stack_lines("freed again", stack, tsri_os_thread_id());
    tsri_error_end();
    return true;
  }
  if (pg != NULL) tsri_hook_free_small(pg, idx, p);
  else if (atomic_load_explicit(&tsri_large_tracked, memory_order_relaxed) != 0) tsri_hook_free_large(p);
  debug_free_block(e, stack, checks, "free");
  return true;
}

bool tsri_hook_debug_realloc(void *p, size_t size, void *caller, void **out) {
  tsri_lock(&debug_lock);
  dbg_entry_t *r = tsri_table_find(&debug_table, (uintptr_t)p);
  dbg_entry_t e = r != NULL ? *r : (dbg_entry_t){ 0 };
  tsri_unlock(&debug_lock);
  if (e.ptr == 0) return false;
  *out = NULL;
  if (e.state != STATE_LIVE) {
    tsri_error_begin(TSR_ERROR_USE_AFTER_FREE,
                     "realloc(%p): block of %zu bytes already freed (use after free)", p, e.requested);
    entry_stacks(&e);
    tsri_debug_stack_lines("realloc called", tsri_stack_capture_from(caller), tsri_os_thread_id());
    tsri_error_end();
    errno = EINVAL;
    return true;
  }
  uint32_t checks = atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed);
  if (size != 0) {
    tsr_heap_t *h = tsri_heap_get();
    if (h == NULL) {
      errno = ENOMEM;
      return true;
    }
    void *q = tsri_debug_alloc(h, size, size <= TSR_SMALL_MAX ? tsri_size_class(size) : TSR_CLASS_COUNT, 0,
                               false, caller, __builtin_frame_address(0));
    tsri_heap_done(h);
    if (q == NULL) return true;   /* p stays valid, as C requires */
    memcpy(q, p, size < e.requested ? size : e.requested);
    *out = q;
  }
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) tsri_hook_free_small(pg, tsri_block_index_of(pg, p), p);
  else if (atomic_load_explicit(&tsri_large_tracked, memory_order_relaxed) != 0) tsri_hook_free_large(p);
  debug_free_block(e, tsri_stack_capture_from(caller), checks, "realloc");
  return true;
}

/* ------------------------------------------------------------------------
 * Pages retired, start-up, tsr_check
 * ---------------------------------------------------------------------- */

/* As AddressSanitizer answers: the bytes past the request are the
 * guard's, and a program that writes up to the usable size (Redis's
 * strings grow into it) would be reported for an overflow it may make. */
size_t tsri_hook_debug_usable(const void *p, size_t usable) {
  tsri_lock(&debug_lock);
  const dbg_entry_t *e = tsri_table_find(&debug_table, (uintptr_t)p);
  size_t n = e != NULL && e->state == STATE_LIVE ? e->requested : usable;
  tsri_unlock(&debug_lock);
  return n;
}

void tsri_debug_page_retire(tsr_page_t *pg) {
  if (!(atomic_load_explicit(&pg->tracked, memory_order_relaxed) & TSRI_TRACKED_DEBUG)) return;
  tsri_lock(&debug_lock);
  for (size_t i = 0; i < pg->capacity && debug_table.count != 0; i++) {
    dbg_entry_t *e = tsri_table_find(&debug_table, (uintptr_t)(pg->start + i * pg->block_size));
    if (e != NULL) tsri_table_remove(&debug_table, e);
  }
  tsri_unlock(&debug_lock);
}

void tsri_debug_options(void) {
  uint32_t checks = (uint32_t)tsri_option(TSRI_OPT_DEBUG);
  if ((checks & TSRI_DEBUG_QUARANTINE) && q_ring == NULL) {
    void *ring;
    if (tsri_os_alloc(QUARANTINE_MAX * sizeof(uintptr_t), tsri_os_granularity(), &ring) == 0) {
      tsri_count(&tsri_counters.metadata, (int64_t)(QUARANTINE_MAX * sizeof(uintptr_t)));
      q_ring = ring;
    }
  }
  atomic_store_explicit(&tsri_debug_checks, checks, memory_order_relaxed);
}

size_t tsri_debug_check(void) {
  uint32_t checks = atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed);
  size_t bad = 0, cursor = 0;
  if (checks == 0) return 0;
  tsri_lock(&debug_lock);
  const dbg_entry_t *e;
  while ((e = tsri_table_next(&debug_table, &cursor)) != NULL) {
    bool ok = true;
    if (e->state == STATE_LIVE && (checks & TSRI_DEBUG_GUARD)) ok = guard_check(e, "tsr_check");
    else if (e->state == STATE_HELD && (checks & TSRI_DEBUG_FILL)) ok = fill_check(e, "tsr_check");
    if (!ok) {
      bad++;
      tsri_error_end();
    }
  }
  tsri_unlock(&debug_lock);
  return bad;
}

/* At exit, the check tsr_check makes: a damaged guard of a block never
 * freed, a write into a block still in the quarantine. */
__attribute__((destructor)) static void debug_at_exit(void) { tsri_debug_check(); }

void tsri_debug_fork_prepare(void) { tsri_lock(&debug_lock); }
void tsri_debug_fork_parent(void) { tsri_unlock(&debug_lock); }
void tsri_debug_fork_child(void) { tsri_unlock(&debug_lock); }
