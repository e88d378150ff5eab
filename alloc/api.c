/* api.c: the prefixed malloc family, tsr_malloc .. tsr_usable_size.
 *
 * Owns: the C and POSIX semantics (sizes that overflow, alignments that are
 * invalid, realloc's special cases, errno) and the checks on the pointers a
 * caller hands back, with a defined answer for each bad one.  Routes each
 * request to the size-class heap (internal.h fast paths) or to large.c.
 */
#include "internal.h"

/* ------------------------------------------------------------------------
 * Allocation
 * ---------------------------------------------------------------------- */

static inline void *alloc_small(size_t size) { return tsri_heap_alloc(tsri_tl_heap, tsri_size_class(size)); }

void *tsr_malloc(size_t size) {
  if (tsr_likely(size <= TSR_SMALL_MAX)) return alloc_small(size);
  tsri_init();
  return tsri_large_alloc(size, 0, false);
}

void *tsr_calloc(size_t count, size_t size) {
  size_t total;
  if (tsr_unlikely(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (total > TSR_SMALL_MAX) {
    tsri_init();
    return tsri_large_alloc(total, 0, true);   /* fresh mappings are zero already */
  }
  void *p = alloc_small(total);
  if (p != NULL) memset(p, 0, total);
  return p;
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
static void *alloc_aligned(size_t align, size_t size) {
  if (align <= TSR_MIN_ALIGN) return tsr_malloc(size);
  size_t c = aligned_class(size, align);
  if (c < TSR_CLASS_COUNT) return tsri_heap_alloc(tsri_tl_heap, c);
  tsri_init();
  return tsri_large_alloc(size, align, false);
}

static inline bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void *tsr_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(alignment, size);
}

int tsr_posix_memalign(void **out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  int saved = errno;
  void *p = alloc_aligned(alignment, size);
  errno = saved;
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
  return alloc_aligned(a, size);
}

void *tsr_valloc(size_t size) { return alloc_aligned(tsri_os_page_size(), size); }

void *tsr_pvalloc(size_t size) {
  size_t page = tsri_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(page, size == 0 ? page : tsri_align_up(size, page));
}

/* ------------------------------------------------------------------------
 * Pointers coming back: classify, check, answer
 * ---------------------------------------------------------------------- */

typedef struct block_ref_s {
  tsr_page_t *page;   /* NULL for a large block */
  size_t index;
  size_t usable;
} block_ref_t;

/* Report why p is not a live block, naming what it is. */
static tsr_noinline void report_bad(const char *call, const void *p) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)TSR_ARENA_MASK;
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    if (idx >= 0)
      tsri_error("%s(%p): block already free (double free or use after free)", call, p);
    else
      tsri_error("%s(%p): interior pointer, not the start of a block of %zu bytes", call, p,
                 (size_t)pg->block_size);
  } else if (tsri_arena_registered(a)) {
    tsri_error("%s(%p): points into tessera's arena but not into a live page "
               "(double free, use after free, or a wild pointer)", call, p);
  } else if (tsri_large_contains(p)) {
    tsri_error("%s(%p): interior pointer into a large block", call, p);
  } else {
    tsri_error("%s(%p): not allocated by tessera (foreign pointer, "
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
    size_t usable = tsri_large_usable(p);
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

void tsr_free(void *p) {
  if (p == NULL) return;
  tsr_page_t *pg = tsri_page_of(p);
  if (tsr_likely(pg != NULL)) {
    long idx = tsri_block_index(pg, p);
    if (tsr_likely(idx >= 0)) {
      tsri_heap_free_block(pg, (size_t)idx, p);
      return;
    }
  } else if (tsri_large_free(p)) {
    return;
  }
  report_bad("free", p);
}

void *tsr_realloc(void *p, size_t size) {
  if (p == NULL) return tsr_malloc(size);
  block_ref_t ref;
  if (!block_lookup("realloc", p, &ref)) {
    errno = EINVAL;
    return NULL;
  }
  if (size == 0) {   /* glibc: free and return NULL */
    tsr_free(p);
    return NULL;
  }
  if (ref.page == NULL && size > TSR_SMALL_MAX) {
    void *moved = tsri_large_realloc(p, size);
    if (moved != NULL) return moved;
  } else if (size <= ref.usable && size > ref.usable / 2) {
    return p;   /* fits, and moving would not save much */
  }
  void *q = tsr_malloc(size);
  if (q == NULL) return NULL;   /* p stays valid, as C requires */
  memcpy(q, p, size < ref.usable ? size : ref.usable);
  tsr_free(p);
  return q;
}

void *tsr_reallocarray(void *p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return tsr_realloc(p, total);
}

size_t tsr_usable_size(const void *p) {
  if (p == NULL) return 0;
  block_ref_t ref;
  return block_lookup("malloc_usable_size", p, &ref) ? ref.usable : 0;
}

int tsr_owns(const void *p) {
  if (p == NULL) return 0;
  tsr_page_t *pg = tsri_page_of(p);
  if (pg != NULL) {
    long idx = tsri_block_index(pg, p);
    return idx >= 0 && !tsri_block_is_free(pg, (size_t)idx);
  }
  return tsri_large_usable(p) != 0;
}

void tsr_collect(void) {
  tsri_init();
  tsri_heap_collect();
  while (tsri_arena_purge(true) != 0) {
  }
  tsri_large_purge(true);
}
