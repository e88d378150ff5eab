/* guarded.c: guarded sampling (TESSERA_GUARD_SAMPLE), GWP-ASan's idea.
 *
 * Owns: a pool of TESSERA_GUARD_SLOTS slots, each one OS page between two
 * inaccessible ones (guard pages), reserved once; which slots are free;
 * the record of each slot's block (its size, where it lies, the stacks and
 * threads of its allocation and free); and the fault handler that turns
 * an access to a guard page or to a freed slot into a report.
 *
 * Which allocations.  The byte countdown of sampling (meta.c) is the only
 * test the fast path makes: when it runs out, tsri_guarded_due decides,
 * so a heap whose countdown ran out after A allocations guards this one
 * with probability min(1, A / N), N = TESSERA_GUARD_SAMPLE, which guards
 * one allocation in N on average as long as A stays below N (at most one
 * per countdown: about one per TESSERA_SAMPLE_BYTES allocated).  N = 1
 * sends every allocation to the hook and guards each that finds a free
 * slot.  Requests above an OS page, and alignments above 16, are never
 * guarded.
 *
 * Placement.  A block lies against the guard page after its slot (so an
 * overflow faults at its first byte past the end) or, chosen at random
 * per block, against the one before (an underflow faults at once).
 * Against the trailing guard it keeps the 16-byte alignment every block of
 * tessera's has (compilers assume it of malloc), or the alignment asked
 * for; the bytes between its end and the guard, up to 15, hold
 * TSRI_DEBUG_GUARD_BYTE and are checked on free, so an overflow into
 * them is reported then rather than at the write.
 *
 * Free.  The slot is made inaccessible (tsri_os_guard: its memory goes
 * back too) and joins the end of the free list, which hands out the slot
 * freed longest ago: a freed slot stays inaccessible while the others
 * take their turn, so a use after free faults.  Its record stays, so the
 * fault names the allocation and free stacks.
 *
 * fork.  A slot's commit and its guard are made outside the lock, the
 * slot marked busy meanwhile (off the free list, or still live), and
 * what the slot counts (committed memory, live blocks) moves under the
 * lock with its state.  A fork child, where the thread in the middle is
 * gone, guards each busy slot again and puts it back on the free list: a
 * block being freed is freed, one being handed out was never handed out.
 * Without it the child lost the slot for good (one of 32 by default).
 *
 * A fault.  The handler (os.h: tsri_os_fault_catch, shared with meshing)
 * finds the slot: in a guard page, the nearer of the blocks on its two
 * sides (overflow or underflow); in a freed slot, use after free.  It
 * writes the report, counts the error, and passes the fault on: the
 * program's own handler, or the default action, ends the process as it
 * would have ended without tessera (TESSERA_ON_ERROR=continue cannot make
 * the access succeed).
 */
#include "track.h"

enum { SLOT_UNUSED = 0, SLOT_LIVE = 1, SLOT_FREED = 2 };

typedef struct gslot_s {
  uintptr_t block;                   /* the block's address; 0: never used */
  size_t size;                       /* bytes asked for */
  uint32_t alloc_stack, free_stack;  /* stack ids (stack.c) */
  uint32_t alloc_thread, free_thread;
  uint32_t state;                    /* SLOT_* */
  uint32_t busy;                     /* 1: its commit or guard is under way (see fork) */
} gslot_t;

static tsri_lock_t guard_lock;
static _Atomic int guard_setup;      /* 0: not tried, 1: ready, 2: failed */
static uintptr_t pool;               /* first guard page */
static size_t page, slots;           /* OS page size; slots of the pool */
static gslot_t *slot_rec;            /* a record per slot */
static uint32_t *free_list;          /* a ring of free slots, oldest freed first */
static size_t free_head, free_count;
static _Atomic int fault_reported;   /* one report per process */
static _Atomic uint64_t live_blocks, live_bytes;   /* for the totals (tsri_guarded_stats) */

static inline uintptr_t slot_page(size_t i) { return pool + (2 * i + 1) * page; }

/* ------------------------------------------------------------------------
 * Faults
 * ---------------------------------------------------------------------- */

/* Distance from addr to the block of slot i, where it points outside it;
 * SIZE_MAX when the slot never held a block. */
static size_t distance(size_t i, uintptr_t addr) {
  const gslot_t *s = &slot_rec[i];
  if (s->state == SLOT_UNUSED) return SIZE_MAX;
  if (addr < s->block) return s->block - addr;
  size_t end = s->block + (s->size ? s->size : 1);
  return addr >= end ? addr - end : 0;
}

/* In a signal handler (or a vectored exception handler): report a fault
 * in the pool and let it go on to kill the process. */
static bool guard_fault(void *at) {
  uintptr_t addr = (uintptr_t)at;
  if (!tsri_guarded(at)) return false;
  if (atomic_exchange_explicit(&fault_reported, 1, memory_order_relaxed)) return false;
  size_t n = (addr - pool) / page, i;
  if (n % 2 == 1) {
    i = n / 2;
  } else {   /* a guard page: the nearer of the blocks on its sides */
    size_t before = n > 0 ? distance(n / 2 - 1, addr) : SIZE_MAX;
    size_t after = n / 2 < slots ? distance(n / 2, addr) : SIZE_MAX;
    i = before <= after ? n / 2 - 1 : n / 2;
    if (before == SIZE_MAX && after == SIZE_MAX) i = SIZE_MAX;
  }
  const gslot_t *s = i != SIZE_MAX ? &slot_rec[i] : NULL;
  if (s == NULL || s->state == SLOT_UNUSED) {
    tsri_error_begin(TSR_ERROR_OTHER, "guarded sampling: access at %p, in tessera's guard pages and near "
                     "no block (a wild pointer)", at);
    return false;
  }
  tsr_error_kind_t k = s->state == SLOT_FREED ? TSR_ERROR_USE_AFTER_FREE
                       : addr < s->block      ? TSR_ERROR_UNDERFLOW
                                              : TSR_ERROR_OVERFLOW;
  const char *kind = k == TSR_ERROR_USE_AFTER_FREE ? "use after free"
                     : k == TSR_ERROR_UNDERFLOW    ? "heap buffer underflow"
                                                   : "heap buffer overflow";
  if (addr < s->block)
    tsri_error_begin(k, "guarded sampling: %s at %p, %zu bytes before block %p of %zu bytes%s", kind, at,
                     (size_t)(s->block - addr), (void *)s->block, s->size,
                     s->state == SLOT_FREED ? " (freed)" : "");
  else if (addr >= s->block + s->size)
    tsri_error_begin(k, "guarded sampling: %s at %p, %zu bytes past the end of block %p of %zu bytes%s",
                     kind, at, (size_t)(addr - s->block - s->size), (void *)s->block, s->size,
                     s->state == SLOT_FREED ? " (freed)" : "");
  else
    tsri_error_begin(k, "guarded sampling: %s at %p, byte %zu of block %p of %zu bytes (freed)", kind, at,
                     (size_t)(addr - s->block), (void *)s->block, s->size);
  tsri_debug_stack_lines("allocated", s->alloc_stack, s->alloc_thread);
  if (s->state == SLOT_FREED) tsri_debug_stack_lines("freed", s->free_stack, s->free_thread);
  return false;
}

/* ------------------------------------------------------------------------
 * The pool
 * ---------------------------------------------------------------------- */

/* Reserve the pool and its records and register the fault handler, once;
 * false when the OS would not. */
static tsr_noinline bool guard_init(void) {
  tsri_lock(&guard_lock);
  if (atomic_load_explicit(&guard_setup, memory_order_acquire) == 0) {
    int ok = 2;
    page = tsri_os_page_size();
    slots = (size_t)tsri_option(TSRI_OPT_GUARD_SLOTS);
    size_t gran = tsri_os_granularity();
    size_t bytes = tsri_align_up((2 * slots + 1) * page, gran);
    size_t meta = tsri_align_up(slots * (sizeof(gslot_t) + sizeof(uint32_t)), gran);
    void *mem, *recs;
    if (tsri_os_reserve(bytes, gran, &mem) == 0) {
      if (tsri_os_alloc(meta, gran, &recs) == 0) {
        tsri_own_add(mem, bytes, TSRI_OWN_LARGE);   /* user blocks, as large ones are */
        tsri_own_add(recs, meta, TSRI_OWN_META);
        tsri_count(&tsri_counters.metadata, (int64_t)meta);
        pool = (uintptr_t)mem;
        slot_rec = recs;
        free_list = (uint32_t *)(void *)((uint8_t *)recs + slots * sizeof(gslot_t));
        for (size_t i = 0; i < slots; i++) free_list[i] = (uint32_t)i;
        free_count = slots;
        tsri_os_fault_catch(guard_fault);
        atomic_store_explicit(&tsri_guard_len, (2 * slots + 1) * page, memory_order_relaxed);
        atomic_store_explicit(&tsri_guard_lo, pool, memory_order_relaxed);
        ok = 1;
      } else {
        tsri_os_release(mem, bytes);
      }
    }
    atomic_store_explicit(&guard_setup, ok, memory_order_release);
  }
  tsri_unlock(&guard_lock);
  return atomic_load_explicit(&guard_setup, memory_order_acquire) == 1;
}

static inline uint64_t rng_next(tsr_heap_t *h) {
  uint64_t x = h->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  h->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

bool tsri_guarded_due(tsr_heap_t *h, size_t size) {
  uint64_t n = (uint64_t)tsri_option(TSRI_OPT_GUARD_SAMPLE);
  if (n == 0 || size > tsri_os_page_size()) return false;
  uint64_t allocs = atomic_load_explicit(&h->allocs, memory_order_relaxed);
  uint64_t seen = allocs - h->guard_seen + 1;   /* this one too */
  h->guard_seen = allocs + 1;
  return n == 1 || seen >= n || (rng_next(h) >> 11) % n < seen;
}

void *tsri_guarded_alloc(size_t size, size_t align, tsr_heap_t *h, void *caller, void *fp) {
  if (size > tsri_os_page_size() || align > 16) return NULL;
  if (atomic_load_explicit(&guard_setup, memory_order_acquire) != 1 && !guard_init()) return NULL;
  tsri_lock(&guard_lock);
  if (free_count == 0) {
    tsri_unlock(&guard_lock);
    return NULL;
  }
  size_t i = free_list[free_head];
  free_head = (free_head + 1) % slots;
  free_count--;
  slot_rec[i].busy = 1;
  tsri_unlock(&guard_lock);

  uint8_t *start = (uint8_t *)slot_page(i);
  if (tsri_os_commit(start, page) != 0) {
    tsri_lock(&guard_lock);
    slot_rec[i].busy = 0;
    free_list[(free_head + free_count) % slots] = (uint32_t)i;
    free_count++;
    tsri_unlock(&guard_lock);
    return NULL;
  }
  tsri_count(&tsri_counters.os_commits, 1);
  if (size == 0) size = 1;   /* malloc(0): a block of one byte, as the arenas' 16 have room for */
  if (align < 16) align = 16;
  uint8_t *block = (rng_next(h) >> 63) ? start : start + ((page - size) & ~(align - 1));
  memset(start, TSRI_DEBUG_GUARD_BYTE, (size_t)(block - start));
  memset(block + size, TSRI_DEBUG_GUARD_BYTE, (size_t)(start + page - (block + size)));
  gslot_t rec = { (uintptr_t)block, size, tsri_meta_stack(caller, h, fp), 0, h->thread, 0, SLOT_LIVE, 0 };
  tsri_lock(&guard_lock);
  slot_rec[i] = rec;
  tsri_count(&tsri_counters.committed, (int64_t)page);
  atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&live_bytes, size, memory_order_relaxed);
  tsri_unlock(&guard_lock);
  return block;
}

/* Slot i's block is gone (its free ends, or a fork child ends it):
 * freed, and back on the free list when its page is inaccessible again
 * (guarded).  Lock held. */
static void slot_freed(size_t i, bool guarded) {
  gslot_t *s = &slot_rec[i];
  s->state = SLOT_FREED;
  s->busy = 0;
  atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&live_bytes, s->size, memory_order_relaxed);
  if (!guarded) return;
  tsri_count(&tsri_counters.committed, -(int64_t)page);
  free_list[(free_head + free_count) % slots] = (uint32_t)i;
  free_count++;
}

/* The slot whose page holds p, or SIZE_MAX. */
static size_t slot_of(const void *p) {
  size_t n = ((uintptr_t)p - pool) / page;
  return n % 2 == 1 && n / 2 < slots ? n / 2 : SIZE_MAX;
}

size_t tsri_hook_guarded_usable(const void *p) {
  size_t i = slot_of(p);
  if (i == SIZE_MAX) return 0;
  tsri_lock(&guard_lock);
  size_t size = slot_rec[i].state == SLOT_LIVE && slot_rec[i].block == (uintptr_t)p ? slot_rec[i].size : 0;
  tsri_unlock(&guard_lock);
  return size;
}

void tsri_hook_guarded_free(void *p, void *caller) {
  size_t i = slot_of(p);
  gslot_t s = { 0 };
  tsri_lock(&guard_lock);
  if (i != SIZE_MAX) s = slot_rec[i];
  bool ours = s.block == (uintptr_t)p && s.state == SLOT_LIVE && !s.busy;
  if (ours) slot_rec[i].busy = 1;   /* a second free meanwhile is a double free */
  tsri_unlock(&guard_lock);
  uint32_t stack = tsri_stack_capture_from(caller);
  if (!ours) {
    if (s.block == (uintptr_t)p && s.state != SLOT_UNUSED) {
      bool freed = s.state == SLOT_FREED;
      tsri_error_begin(TSR_ERROR_DOUBLE_FREE, "double free of %p (guarded block of %zu bytes, %s)", p, s.size,
                       freed ? "already freed" : "being freed by another thread");
      tsri_debug_stack_lines("allocated", s.alloc_stack, s.alloc_thread);
      if (freed) tsri_debug_stack_lines("freed", s.free_stack, s.free_thread);
    } else {
      tsri_error_begin(TSR_ERROR_BAD_FREE, "free(%p): not a block of guarded sampling (an interior or wild "
                       "pointer)", p);
    }
    tsri_debug_stack_lines("freed again", stack, tsri_os_thread_id());
    tsri_error_end();
    return;
  }
  uint8_t *start = (uint8_t *)slot_page(i);
  const uint8_t *q = start, *end = start + page;
  while (q < (const uint8_t *)p && *q == TSRI_DEBUG_GUARD_BYTE) q++;
  if (q < (const uint8_t *)p) {
    tsri_error_begin(TSR_ERROR_UNDERFLOW,
                     "heap buffer underflow: guarded block %p of %zu bytes was written before its start: "
                     "byte -%zu is damaged; found by free",
                     p, s.size, (size_t)((const uint8_t *)p - q));
    tsri_debug_stack_lines("allocated", s.alloc_stack, s.alloc_thread);
    tsri_debug_stack_lines("being freed", stack, tsri_os_thread_id());
    tsri_error_end();
  }
  q = (const uint8_t *)p + s.size;
  while (q < end && *q == TSRI_DEBUG_GUARD_BYTE) q++;
  if (q < end) {
    tsri_error_begin(TSR_ERROR_OVERFLOW,
                     "heap buffer overflow: guarded block %p of %zu bytes was written past its end: "
                     "byte %zu (%zu past the end) is damaged; found by free",
                     p, s.size, (size_t)(q - (const uint8_t *)p), (size_t)(q - (const uint8_t *)p) - s.size);
    tsri_debug_stack_lines("allocated", s.alloc_stack, s.alloc_thread);
    tsri_debug_stack_lines("being freed", stack, tsri_os_thread_id());
    tsri_error_end();
  }
  /* refused: the slot stays readable and committed, and is not used
   * again (the pool has one slot fewer) */
  bool guarded = tsri_os_guard(start, page) == 0;
  if (guarded) tsri_count(&tsri_counters.os_decommits, 1);
  tsri_lock(&guard_lock);
  slot_rec[i].free_stack = stack;
  slot_rec[i].free_thread = tsri_os_thread_id();
  slot_freed(i, guarded);
  tsri_unlock(&guard_lock);
  tsri_heap_count_free();
}

void tsri_guarded_stats(uint64_t *blocks, uint64_t *bytes) {
  *blocks = atomic_load_explicit(&live_blocks, memory_order_relaxed);
  *bytes = atomic_load_explicit(&live_bytes, memory_order_relaxed);
}

int tsri_guarded_walk(tsri_walk_fn *fn, void *arg) {
  if (atomic_load_explicit(&guard_setup, memory_order_acquire) != 1) return 0;
  int stop = 0;
  for (size_t i = 0; i < slots && stop == 0; i++) {
    tsri_lock(&guard_lock);
    gslot_t s = slot_rec[i];
    tsri_unlock(&guard_lock);
    if (s.state != SLOT_LIVE) continue;
    tsri_block_t b;
    memset(&b, 0, sizeof b);
    b.pub.ptr = (void *)s.block;
    b.pub.usable = s.size;
    b.cls = TSR_CLASS_COUNT;
    stop = fn(&b, arg);
  }
  return stop;
}

void tsri_guarded_fork_prepare(void) { tsri_lock(&guard_lock); }
void tsri_guarded_fork_parent(void) { tsri_unlock(&guard_lock); }
/* The slots a vanished thread was handing out or freeing (busy): each
 * guarded again and free (see fork); a page the OS will not guard stays
 * out of use, as in a free.  Single-threaded. */
void tsri_guarded_fork_child(void) {
  tsri_unlock(&guard_lock);
  if (atomic_load_explicit(&guard_setup, memory_order_acquire) != 1) return;
  for (size_t i = 0; i < slots; i++) {
    gslot_t *s = &slot_rec[i];
    if (!s->busy) continue;
    bool guarded = tsri_os_guard((void *)slot_page(i), page) == 0;
    if (s->state == SLOT_LIVE) {   /* being freed: its free stack and thread are gone with it */
      s->free_stack = s->free_thread = 0;
      slot_freed(i, guarded);
      continue;
    }
    s->busy = 0;   /* being handed out: nothing counted yet */
    if (guarded) {
      free_list[(free_head + free_count) % slots] = (uint32_t)i;
      free_count++;
    }
  }
}
