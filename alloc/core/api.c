/* api.c: the prefixed malloc family, tsr_malloc .. tsr_usable_size.
 *
 * Owns: the C and POSIX semantics (sizes that overflow, alignments that are
 * invalid, realloc's special cases, errno) and the checks on the pointers a
 * caller hands back, with a defined answer for each bad one.  Routes each
 * request to the size-class heap (heap.h fast paths) or to large.c, and
 * to tracking through the hooks of hooks.h when a record may be due.
 */
#include "hooks.h"

_Atomic uint32_t tsri_debug_checks;
_Atomic uintptr_t tsri_guard_lo, tsri_guard_len;

/* ------------------------------------------------------------------------
 * Allocation
 * ---------------------------------------------------------------------- */

/* Every allocation starts here: count the bytes down to the next sample
 * and take the fast path, or call tracking's allocation hook
 * (core/hooks.h) when a record may be due (sampling, full tracking, a
 * thread's first allocation).  Inlined into each public function, so that
 * `caller` is the address the program's call returns to. */
#define TSRI_CALLER __builtin_return_address(0)

static inline __attribute__((always_inline)) void *alloc_class(size_t size, size_t cls, size_t need,
                                                               size_t align, void *caller) {
  tsr_heap_t *h = tsri_tl_heap;
  int64_t left = atomic_load_explicit(&h->sample_left, memory_order_relaxed) - (int64_t)size;
  if (tsr_unlikely(left < 0)) return tsri_hook_alloc_small(size, cls, align, caller);
  atomic_store_explicit(&h->sample_left, left, memory_order_relaxed);
  tsri_heap_count(&h->allocs);
  return tsri_heap_alloc(h, cls, need);
}

/* A large block (or one whose alignment no class serves), counted down
 * like any other: large.c's own mapping when no record is due.  The hook's
 * stack walk skips this frame, which the compiler usually makes a tail
 * jump anyway. */
static tsr_noinline void *alloc_large(size_t size, size_t align, bool zero, void *caller) {
  tsr_heap_t *h = tsri_tl_heap;
  int64_t left = atomic_load_explicit(&h->sample_left, memory_order_relaxed);
  if (left < 0 || size > (uint64_t)left) return tsri_hook_alloc(size, TSR_CLASS_COUNT, align, zero, caller);
  void *p = tsri_large_alloc(size, align, zero);
  if (p == NULL) return NULL;
  atomic_store_explicit(&h->sample_left, left - (int64_t)size, memory_order_relaxed);
  tsri_heap_count(&h->allocs);
  return p;
}

static inline __attribute__((always_inline)) void *alloc_any(size_t size, bool zero, void *caller) {
  if (tsr_likely(size <= TSR_SMALL_MAX)) {
    /* two paths, so that the classes up to 1024 bytes, which are never
     * fitted, test no block size */
    void *p = size <= 1024 ? alloc_class(size, tsri_size_class_small(size), 0, 0, caller)
                           : alloc_class(size, tsri_size_class_medium(size), size, 0, caller);
    if (zero && p != NULL) memset(p, 0, size);
    return p;
  }
  return alloc_large(size, 0, zero, caller);   /* fresh mappings are zero */
}

void *tsr_malloc(size_t size) { return alloc_any(size, false, TSRI_CALLER); }

void *tsr_calloc(size_t count, size_t size) {
  size_t total;
  if (tsr_unlikely(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_any(total, true, TSRI_CALLER);
}

/* Smallest class that holds size bytes and whose blocks all start on a
 * multiple of align (slots are 64 KiB aligned, so block_size % align == 0
 * suffices); TSR_CLASS_COUNT when there is none. */
static size_t aligned_class(size_t size, size_t align) {
  if (size > TSR_SMALL_MAX || align > TSR_SLOT_SIZE) return TSR_CLASS_COUNT;
  size_t c = tsri_size_class(size < align ? align : size);
  while (c < TSR_CLASS_COUNT && tsri_classes[c].block_size % align != 0) c++;
  return c;
}

/* align: a power of two. */
static inline __attribute__((always_inline)) void *alloc_aligned(size_t align, size_t size, void *caller) {
  if (align <= TSR_MIN_ALIGN) return alloc_any(size, false, caller);
  size_t c = aligned_class(size, align);
  if (c < TSR_CLASS_COUNT) return alloc_class(size, c, tsri_class_need(size, c, align), align, caller);
  return alloc_large(size, align, false, caller);
}

static inline bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void *tsr_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(alignment, size, TSRI_CALLER);
}

/* Its result says why it failed; a failure for want of memory leaves
 * ENOMEM in errno too, as glibc's does and as programs expect (the
 * allocation path set it), while a bad alignment leaves errno alone. */
int tsr_posix_memalign(void **out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  void *p = alloc_aligned(alignment, size, TSRI_CALLER);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

/* memalign: as glibc, an alignment that is not a power of two is rounded
 * up to one. */
void *tsr_memalign(size_t alignment, size_t size) {
  if (alignment > ((size_t)1 << (sizeof(size_t) * 8 - 1))) {
    errno = EINVAL;
    return NULL;
  }
  size_t a = TSR_MIN_ALIGN;
  while (a < alignment) a <<= 1;
  return alloc_aligned(a, size, TSRI_CALLER);
}

void *tsr_valloc(size_t size) { return alloc_aligned(tsri_os_page_size(), size, TSRI_CALLER); }

void *tsr_pvalloc(size_t size) {
  size_t page = tsri_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(page, size == 0 ? page : tsri_align_up(size, page), TSRI_CALLER);
}

/* ------------------------------------------------------------------------
 * Pointers coming back: classify, check, answer
 * ---------------------------------------------------------------------- */

typedef struct block_ref_s {
  tsr_page_t *page;   /* NULL for a large block */
  size_t index;
  size_t usable;
} block_ref_t;

/* Report why p is not a live block, naming what it is, and its kind.  A
 * block already free comes here only from realloc, malloc_usable_size and
 * tsr_defrag_hint (a free of one is the heap's double free): a use after
 * its free. */
static tsr_noinline void report_bad(const char *call, const void *p) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)TSR_ARENA_MASK;
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    if (idx >= 0)
      tsri_error(TSR_ERROR_USE_AFTER_FREE, "%s(%p): block already free (double free or use after free)",
                 call, p);
    else
      tsri_error(TSR_ERROR_BAD_FREE, "%s(%p): interior pointer, not the start of a block of %zu bytes", call,
                 p, (size_t)pg->block_size);
  } else if (tsri_arena_registered(a)) {
    tsri_error(TSR_ERROR_BAD_FREE, "%s(%p): points into tessera's arena but not into a live page "
               "(double free, use after free, or a wild pointer)", call, p);
  } else if (tsri_guarded(p)) {
    tsri_error(TSR_ERROR_BAD_FREE, "%s(%p): not a live block of guarded sampling (double free, use after "
               "free, or an interior pointer)", call, p);
  } else if (tsri_large_contains(p)) {
    tsri_error(TSR_ERROR_BAD_FREE, "%s(%p): interior pointer into a large block", call, p);
  } else {
    tsri_error(TSR_ERROR_BAD_FREE, "%s(%p): not allocated by tessera (foreign pointer, "
               "or a large block already freed)", call, p);
  }
}

/* Resolve p to a live block; false (after a report) when it is not one. */
static bool block_lookup(const char *call, const void *p, block_ref_t *ref) {
  tsr_page_t *pg = tsri_page_of(p);
  if (tsr_likely(pg != NULL)) {
    long idx = tsri_block_index(pg, p);
    if (tsr_likely(idx >= 0 && !tsri_block_is_free(pg, (size_t)idx))) {
      ref->page = pg;
      ref->index = (size_t)idx;
      ref->usable = pg->block_size;
      return true;
    }
  } else {
    size_t usable = tsri_guarded(p) ? tsri_hook_guarded_usable(p) : tsri_large_usable(p);
    if (usable != 0) {
      ref->page = NULL;
      ref->index = 0;
      ref->usable = usable;
      return true;
    }
  }
  report_bad(call, p);
  return false;
}

/* caller: the program's return address, for the stack of a debug free. */
static inline __attribute__((always_inline)) void free_any(void *p, void *caller) {
  if (p == NULL) return;
  tsr_page_t *pg = tsri_page_of(p);
  if (tsr_likely(pg != NULL)) {
    long idx = tsri_block_index(pg, p);
    if (tsr_likely(idx >= 0)) {
      uint32_t t = atomic_load_explicit(&pg->tracked, memory_order_relaxed);
      if (tsr_unlikely(t != 0)) {
        /* under TESSERA_DEBUG the debug checks take the block */
        if (tsr_unlikely(t & TSRI_TRACKED_DEBUG) && tsri_hook_debug_free(pg, (size_t)idx, p, caller)) return;
        tsri_hook_free_small(pg, (size_t)idx, p);
      }
      tsri_heap_free_block(pg, (size_t)idx, p);
      return;
    }
  } else {
    if (tsri_guarded(p)) {
      tsri_hook_guarded_free(p, caller);
      return;
    }
    if (atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) != 0 &&
        tsri_hook_debug_free(NULL, 0, p, caller))
      return;
    if (atomic_load_explicit(&tsri_large_tracked, memory_order_relaxed) != 0) tsri_hook_free_large(p);
    if (tsri_large_free(p)) {
      tsri_heap_count_free();
      return;
    }
  }
  report_bad("free", p);
}

/* Everything free does but an owner's or another thread's free of an
 * untracked small block. */
static tsr_noinline void free_cold(void *p, void *caller) { free_any(p, caller); }

/* The common free in full, the rest in free_cold: every call left here is
 * the function's last act, so the compiler saves no register for it (a
 * free is about 20 instructions shorter than through free_any). */
void tsr_free(void *p) {
  if (p == NULL) return;
  tsr_page_t *pg = tsri_page_of(p);
  if (tsr_likely(pg != NULL)) {
    long idx = tsri_block_index(pg, p);
    if (tsr_likely(idx >= 0 && atomic_load_explicit(&pg->tracked, memory_order_relaxed) == 0)) {
      tsri_heap_free_block(pg, (size_t)idx, p);
      return;
    }
  }
  free_cold(p, TSRI_CALLER);
}

static inline __attribute__((always_inline)) bool is_tracked(const block_ref_t *ref) {
  return ref->page != NULL ? atomic_load_explicit(&ref->page->tracked, memory_order_relaxed) != 0
                           : atomic_load_explicit(&tsri_large_tracked, memory_order_relaxed) != 0;
}

static inline __attribute__((always_inline)) void *realloc_any(void *p, size_t size, void *caller) {
  if (p == NULL) return alloc_any(size, false, caller);
  void *out;
  if (tsr_unlikely(atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) != 0) &&
      tsri_hook_debug_realloc(p, size, caller, &out))
    return out;
  block_ref_t ref;
  if (!block_lookup("realloc", p, &ref)) {
    errno = EINVAL;
    return NULL;
  }
  if (size == 0) {   /* glibc: free and return NULL */
    free_any(p, caller);
    return NULL;
  }
  if (ref.page == NULL && size > TSR_SMALL_MAX) {
    void *moved = is_tracked(&ref) ? tsri_hook_large_realloc(p, size) : tsri_large_realloc(p, size);
    if (moved != NULL) return moved;
  } else if (size <= ref.usable && size > ref.usable / 2) {
    if (is_tracked(&ref)) tsri_hook_resized(p, size);
    return p;   /* fits, and moving would not save much */
  }
  void *q = alloc_any(size, false, caller);
  if (q == NULL) return NULL;   /* p stays valid, as C requires */
  memcpy(q, p, size < ref.usable ? size : ref.usable);
  free_any(p, caller);
  return q;
}

void *tsr_realloc(void *p, size_t size) { return realloc_any(p, size, TSRI_CALLER); }

void *tsr_reallocarray(void *p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc_any(p, total, TSRI_CALLER);
}

size_t tsr_usable_size(const void *p) {
  if (p == NULL) return 0;
  block_ref_t ref;
  if (!block_lookup("malloc_usable_size", p, &ref)) return 0;
  if (tsr_unlikely(atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) & TSRI_DEBUG_GUARD))
    return tsri_hook_debug_usable(p, ref.usable);
  return ref.usable;
}

int tsr_owns(const void *p) {
  if (p == NULL) return 0;
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    return idx >= 0 && !tsri_block_is_free(pg, (size_t)idx);
  }
  return (tsri_guarded(p) ? tsri_hook_guarded_usable(p) : tsri_large_usable(p)) != 0;
}

/* Yes when p's page has at least an eighth of its blocks free and is no
 * fuller than the page the calling thread's next block of the class comes
 * from.  When that page is sparser than p's and p's page is the calling
 * thread's, with room, p's page becomes the one new blocks come from (the
 * answer for p is no: it is where the others go).  So the target only
 * ever gets fuller, and each move takes a block from a page to one at
 * least as full, which raises the sum of the squares of the pages'
 * counts: a program that moves what the hint names until it names
 * nothing stops, with its blocks packed into few pages.  Occupancy is
 * compared as used * the other's capacity, exactly. */
int tsr_defrag_hint(const void *p) {
  block_ref_t ref;
  if (p == NULL || !block_lookup("tsr_defrag_hint", p, &ref) || ref.page == NULL) return 0;
  tsr_page_t *pg = ref.page;
  tsr_heap_t *h = tsri_tl_heap;
  if (h == &tsri_heap_none) return 0;
  /* where this thread's next block of the class comes from: its current
   * page, the first of its queue (the empty page, capacity 0, when none) */
  const tsr_page_t *to = h->cur[pg->cls];
  if (to == pg) return 0;
  uint64_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  uint64_t to_used = to->capacity ? atomic_load_explicit(&to->used, memory_order_relaxed) : 0;
  bool sparser = used * to->capacity <= to_used * pg->capacity;
  /* a fitted current page with smaller blocks (heap.c) may not take p's */
  if (to->capacity != 0 && to_used < to->capacity && sparser && to->block_size >= pg->block_size)
    return 8 * used <= 7 * (uint64_t)pg->capacity;   /* not when nearly full already */
  if (used < pg->capacity &&
      atomic_load_explicit(&pg->xowner, memory_order_relaxed) == ((uintptr_t)h | TSR_PAGE_AVAIL))
    tsri_heap_prefer(h, pg);
  return 0;
}

void tsr_collect(void) {
  tsri_init();
  tsri_lock(tsri_reclaim_lock_get());
  tsri_heap_collect();
  while (tsri_arena_purge(true) != 0) {
  }
  tsri_large_purge(true);
  tsri_unlock(tsri_reclaim_lock_get());
}
