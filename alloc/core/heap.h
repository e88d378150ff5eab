/* heap.h: the fast paths of allocation and free, static inline, and the
 * rest of heap.c's interface.
 *
 * A thread's heap holds a current page per size class; allocation takes
 * the first free bit of the page's scan word, free sets the bit back when
 * the calling thread owns the page.  Everything else (a thread's first
 * allocation, an empty scan word, a page that becomes empty or was full,
 * a page of another thread) is a slow path in heap.c.  Included by
 * internal.h, after the declarations it uses.
 */
#ifndef TSR_HEAP_H
#define TSR_HEAP_H

/* The calling thread's heap; the empty heap tsri_heap_none (whose every
 * class has an empty page) until the thread's first allocation and after
 * its heap is given back. */
tsri_hidden extern TSRI_TLS tsr_heap_t *tsri_tl_heap;
tsri_hidden extern tsr_heap_t tsri_heap_none;

/* One more on a heap's allocs or frees: only the heap's owner writes
 * them, so a load and a store, no atomic add; readers sum them relaxed. */
static inline void tsri_heap_count(_Atomic uint64_t *counter) {
  atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* The slow path of a request of class cls whose blocks must be at least
 * need bytes (tsri_class_need). */
tsri_hidden void *tsri_heap_alloc_slow(tsr_heap_t *h, size_t cls, size_t need);
/* The current page's scan word ran out: the next word of the page with a
 * free block, else the slow path.  Owner only. */
tsri_hidden void *tsri_heap_alloc_next(tsr_heap_t *h, size_t cls, size_t need);
/* The calling thread's heap, made now if it has none; NULL without memory.
 * A thread whose heap was handed over at its exit gets a heap lent for one
 * allocation: whoever calls tsri_heap_get calls tsri_heap_done once that
 * allocation is made (and recorded). */
tsri_hidden tsr_heap_t *tsri_heap_get(void);
tsri_hidden void tsri_heap_give_back(tsr_heap_t *h);
static inline void tsri_heap_done(tsr_heap_t *h) {
  if (tsr_unlikely(h != tsri_tl_heap)) tsri_heap_give_back(h);
}
/* Call fn for every heap ever made (in use or pooled), heap lock held:
 * fn must not allocate. */
tsri_hidden void tsri_heap_foreach(void (*fn)(tsr_heap_t *h, void *arg), void *arg);
tsri_hidden void tsri_heap_free_slow(tsr_heap_t *h, tsr_page_t *pg);
/* The reclaimer's look at h (reclaim.c): when h, in use, took no
 * allocation slow path since the reclaimer's last look and its owner is
 * in none now, park it and return true: the reclaimer may then read its
 * queues and trim and mesh its pages other than the current ones, and its
 * owner waits at its next slow path until tsri_heap_unpark.  False, doing
 * nothing, otherwise. */
tsri_hidden bool tsri_heap_park_idle(tsr_heap_t *h);
tsri_hidden void tsri_heap_unpark(tsr_heap_t *h);
/* The first of every heap ever made, in use or pooled: heaps are never
 * freed, and a heap's next_all is set before the list names it, so the
 * list can be followed from here without a lock. */
tsri_hidden tsr_heap_t *tsri_heap_all(void);
/* Merge, give back or trim the pages of exited threads (the reclaimer). */
tsri_hidden void tsri_heap_sweep_abandoned(void);
/* Make pg, a page of h's avail queue (its state AVAIL, its owner h), the
 * page h's next block of its class comes from.  Owner only. */
tsri_hidden void tsri_heap_prefer(tsr_heap_t *h, tsr_page_t *pg);
tsri_hidden void tsri_heap_free_remote(tsr_page_t *pg, size_t word, uint64_t mask, void *p);

/* Take the first free block of scan word w of pg, whose free bits are
 * bits (not 0): its index. */
static inline size_t tsri_page_take(tsr_page_t *pg, size_t w, uint64_t bits) {
  atomic_store_explicit(tsri_local(pg, w), bits & (bits - 1), memory_order_relaxed);
  atomic_store_explicit(&pg->used, atomic_load_explicit(&pg->used, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  return w * 64 + (size_t)__builtin_ctzll(bits);
}

/* Allocate a block of class cls of at least need bytes (tsri_class_need:
 * 0, which the compiler folds away, for the classes up to 1024 bytes):
 * about ten instructions and one branch when the current page of the
 * class has a free block in its scan word, one compare more above 1024.
 * *idx: the block's index in its page, which is then h->cur[cls] (h must
 * be a heap of its own, not tsri_heap_none). */
static inline void *tsri_heap_alloc_at(tsr_heap_t *h, size_t cls, size_t need, size_t *idx) {
  tsr_assert_internal(h != &tsri_heap_none);
  tsr_page_t *pg = h->cur[cls];
  size_t w = pg->scan;
  uint64_t bits = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
  if (tsr_unlikely(bits == 0 || need > pg->block_size)) {
    void *p = need > pg->block_size ? tsri_heap_alloc_slow(h, cls, need) : tsri_heap_alloc_next(h, cls, need);
    if (p != NULL) *idx = tsri_block_index_of(h->cur[cls], p);
    return p;
  }
  *idx = tsri_page_take(pg, w, bits);
  return pg->start + *idx * pg->block_size;
}

static inline void *tsri_heap_alloc(tsr_heap_t *h, size_t cls, size_t need) {
  size_t idx;
  return tsri_heap_alloc_at(h, cls, need, &idx);
}

/* Free block idx of pg, which p points at.  The owner's free checks both
 * bitmaps (double free), sets a bit and counts; everything else (a page
 * that becomes empty or was full, another thread's page) is a slow path. */
static inline void tsri_heap_free_block(tsr_page_t *pg, size_t idx, void *p) {
  tsr_heap_t *h = tsri_tl_heap;
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_relaxed);
  size_t w = idx >> 6;
  uint64_t m = (uint64_t)1 << (idx & 63);
  if (tsr_likely((x & ~TSR_PAGE_STATE_MASK) == (uintptr_t)h)) {
    uint64_t local = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    if (tsr_unlikely(((local | atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed)) & m) != 0)) {
      tsri_error(TSR_ERROR_DOUBLE_FREE, "double free of %p (block already free)", p);
      return;
    }
    atomic_store_explicit(tsri_local(pg, w), local | m, memory_order_relaxed);
    tsri_heap_count(&h->frees);
    /* Reuse the freed block first, and have its line on its way into the
     * cache by then: a free-list allocator gets that for free by writing
     * its link into the block; we only prefetch, which can neither fault
     * nor stall. */
    pg->scan = (uint32_t)w;
    __builtin_prefetch(p, 1, 3);
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) - 1;
    atomic_store_explicit(&pg->used, used, memory_order_relaxed);
    if (tsr_unlikely(used == 0 || (x & TSR_PAGE_STATE_MASK) != TSR_PAGE_AVAIL))
      tsri_heap_free_slow(h, pg);
    return;
  }
  tsri_heap_free_remote(pg, w, m, p);
}

/* Is block idx of pg free (in either bitmap)?  For checks on user input. */
static inline bool tsri_block_is_free(const tsr_page_t *pg, size_t idx) {
  uint64_t m = (uint64_t)1 << (idx & 63);
  return ((atomic_load_explicit(tsri_local(pg, idx >> 6), memory_order_relaxed) |
           atomic_load_explicit(tsri_remote(pg, idx >> 6), memory_order_relaxed)) & m) != 0;
}

/* Count a free made outside the owner's fast path. */
tsri_hidden void tsri_heap_count_free(void);
/* Frees counted for threads that have no heap. */
tsri_hidden extern _Atomic uint64_t tsri_frees_heapless;

/* A remote free of a block in bitmap word `word` of pg hit pg after its
 * owner exited. */
tsri_hidden void tsri_heap_abandoned_free(tsr_page_t *pg, size_t word);
tsri_hidden void tsri_heap_collect(void);
tsri_hidden void tsri_heap_init(void);
tsri_hidden size_t tsri_heap_check(void);
tsri_hidden void tsri_heap_fork_prepare(void);
tsri_hidden void tsri_heap_fork_parent(void);
tsri_hidden void tsri_heap_fork_child(void);

#endif /* TSR_HEAP_H */
