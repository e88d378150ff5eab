/* heap.c: per-thread heaps, their slow paths, remote frees, thread exit and
 * fork.
 *
 * Owns: making a heap for a thread on its first allocation, finding or
 * making a page when the current page of a class is exhausted, moving pages
 * between a heap's avail and full queues, the remote-free protocol, handing
 * pages over when a thread exits (abandoning) and taking them up again
 * (adopting), and the fork handlers.  The fast paths are in heap.h.
 *
 * Remote-free protocol.  A thread that frees a block of a page it does not
 * own sets the block's bit in the page's remote bitmap (fetch_or, which
 * also catches a second remote free of the same block) and then reads the
 * page state in xowner:
 *   AVAIL or QUEUED: nothing more; the owner merges the bit when it next
 *     looks for a free block in that page;
 *   FULL: the owner will not look at the page, so the freeing thread moves
 *     it to QUEUED with a CAS and pushes it on the owner's notify stack;
 *   ABANDONED: the owner is gone; the freeing thread merges the bit itself
 *     under abandoned_lock and gives the span back when the page is empty.
 * The owner marks a page FULL and then re-reads the remote bitmap (both
 * seq_cst, as the freeing thread's fetch_or and state read are), so a free
 * that raced with FULL is seen by one side or the other, never lost.
 * `pushers` counts freeing threads from just before their CAS to the end
 * of their push, so that an exiting owner, once every page is ABANDONED,
 * can wait for them before it drops its notify stack and hands its pages
 * on (a page must not be carved again while a push of it is pending).
 *
 * Locks: heap_lock guards the list of heaps; abandoned_lock the abandoned
 * pages.  Lock order: abandoned_lock, then the arena lock.
 */
#include "hooks.h"
#include "queue.h"

/* The page every class of a new heap points at: no free bits, so the fast
 * path falls through to the slow path without a NULL test. */
static _Atomic(uint64_t) page_empty_bits[2 * TSR_BITMAP_WORDS];
static tsr_page_t page_empty_desc = { .bits = page_empty_bits };

tsr_heap_t tsri_heap_none = {
  .sample_left = -1,   /* every allocation goes to tsri_hook_alloc, which gets a heap */
  .cur = { [0 ... TSR_CLASS_COUNT - 1] = &page_empty_desc },
};

TSRI_TLS tsr_heap_t *tsri_tl_heap = &tsri_heap_none;

static tsri_lock_t heap_lock;
static tsr_heap_t *heap_all;          /* every heap ever made */

static tsri_lock_t abandoned_lock;
static tsr_queue_t abandoned[TSR_CLASS_COUNT];
static _Atomic size_t abandoned_count[TSR_CLASS_COUNT];

/* Queues.  A page is in exactly one queue of its owner (or, moving, in
 * h->loose: queue.h); for avail queues cur[] follows the first page. */

static inline void heap_sync_cur(tsr_heap_t *h, size_t cls) {
  h->cur[cls] = h->avail[cls].first ? h->avail[cls].first : &page_empty_desc;
}

void tsri_heap_prefer(tsr_heap_t *h, tsr_page_t *pg) {
  heap_enter(h);
  /* the reclaimer may have frozen it meanwhile (mesh.c): then it stays
   * where it is */
  if (atomic_load_explicit(&pg->xowner, memory_order_relaxed) != ((uintptr_t)h | TSR_PAGE_AVAIL)) {
    heap_leave(h);
    return;
  }
  if (h->avail[pg->cls].first != pg) {
    loose_begin(h, pg);
    queue_remove(&h->avail[pg->cls], pg);
    queue_push_front(&h->avail[pg->cls], pg);
    loose_end(h);
  }
  heap_sync_cur(h, pg->cls);
  heap_leave(h);
}

/* Give an empty page, in no queue, back to its arena. */
static void heap_retire(tsr_page_t *pg) {
  tsr_assert_internal(atomic_load_explicit(&pg->used, memory_order_relaxed) == 0);
  tsr_assert_expensive(tsri_page_check(pg) == 0);
  if (atomic_load_explicit(&pg->filed, memory_order_relaxed) != 0) {
    tsri_mesh_check(pg);
    if (atomic_load_explicit(&pg->filed, memory_order_relaxed) != 0) {
      /* the OS would not map private memory back in place of a shared
       * page (mesh.c): carved again, the span would write over another
       * page's blocks.  It stays out of use, owned by nobody. */
      tsri_warning("cannot take a meshed page at %p out of the shared file; its span is kept out of use",
                   (void *)pg->start);
      set_owner(pg, NULL, TSR_PAGE_ABANDONED);
      return;
    }
  }
  tsri_hook_page_retire(pg);
  set_owner(pg, NULL, TSR_PAGE_AVAIL);
  tsri_arena_span_free(pg);
}

/* ------------------------------------------------------------------------
 * Making heaps
 * ---------------------------------------------------------------------- */

/* Heaps are carved from chunks of this many bytes of records. */
#define HEAP_CHUNK ((size_t)256 * 1024)

static uint8_t *heap_chunk_next, *heap_chunk_end;   /* heap_lock held */

/* A heap for the calling thread: a free one from the list, else a new one
 * carved from a chunk of records (never user memory).  NULL when the OS
 * refuses memory. */
static tsr_heap_t *heap_acquire(void) {
  size_t size = tsri_align_up(sizeof(tsr_heap_t), 64);
  tsri_lock(&heap_lock);
  tsr_heap_t *h = heap_all;
  while (h != NULL && h->in_use) h = h->next_all;
  if (h == NULL) {
    if (heap_chunk_next == NULL || (size_t)(heap_chunk_end - heap_chunk_next) < size) {
      void *mem;
      if (tsri_os_alloc(HEAP_CHUNK, tsri_os_page_size(), &mem) != 0) {
        tsri_unlock(&heap_lock);
        return NULL;
      }
      tsri_count(&tsri_counters.os_reserves, 1);
      tsri_count(&tsri_counters.metadata, (int64_t)HEAP_CHUNK);
      tsri_count(&tsri_counters.committed, (int64_t)HEAP_CHUNK);
      tsri_count(&tsri_counters.reserved, (int64_t)HEAP_CHUNK);
      tsri_own_add(mem, HEAP_CHUNK, TSRI_OWN_META);
      heap_chunk_next = mem;
      heap_chunk_end = heap_chunk_next + HEAP_CHUNK;
    }
    h = (tsr_heap_t *)heap_chunk_next;
    heap_chunk_next += size;
    h->next_all = heap_all;
    heap_all = h;
  }
  h->in_use = true;
  tsri_unlock(&heap_lock);
  heap_enter(h);   /* a reclaimer that saw in_use early looks at empty queues: wait for it */
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    h->avail[c].first = h->avail[c].last = NULL;
    h->cur[c] = &page_empty_desc;
    h->fit[c] = 0;
  }
  h->full.first = h->full.last = NULL;
  atomic_store_explicit(&h->loose, NULL, memory_order_relaxed);
  atomic_store_explicit(&h->notify, NULL, memory_order_relaxed);
  atomic_store_explicit(&h->slow_calls, 0, memory_order_relaxed);
  h->next_trim_ms = 0;
  h->thread = tsri_os_thread_id();
  tsri_hook_heap_init(h);
  heap_leave(h);
  return h;
}

/* Set once this thread's heap was handed over at its exit: destructors
 * that run after tessera's may allocate, each time from a heap lent for
 * that allocation alone (tsri_heap_done; design.md: Threads). */
static TSRI_TLS bool tl_exited;

static tsr_heap_t *heap_thread_start(void) {
  tsri_init();
  tsr_heap_t *h = heap_acquire();
  if (h == NULL || tl_exited) return h;   /* lent: never the thread's tsri_tl_heap */
  tsri_tl_heap = h;
  /* without the exit callback the heap would stay taken for good after
   * the thread ends: hand it back now, and the allocation fails (the
   * next one tries again) */
  if (tsri_os_thread_set(h) != 0) {
    tsri_tl_heap = &tsri_heap_none;
    tsri_heap_give_back(h);
    return NULL;
  }
  return h;
}

tsr_heap_t *tsri_heap_get(void) {
  tsr_heap_t *h = tsri_tl_heap;
  return h != &tsri_heap_none ? h : heap_thread_start();
}

void tsri_heap_foreach(void (*fn)(tsr_heap_t *h, void *arg), void *arg) {
  tsri_lock(&heap_lock);
  for (tsr_heap_t *h = heap_all; h != NULL; h = h->next_all) fn(h, arg);
  tsri_unlock(&heap_lock);
}

/* ------------------------------------------------------------------------
 * Allocation slow path
 * ---------------------------------------------------------------------- */

/* Take the pages other threads pushed on our notify stack back into the
 * avail queues.  Owner only. */
static void heap_take_notices(tsr_heap_t *h) {
  if (atomic_load_explicit(&h->notify, memory_order_relaxed) == NULL) return;
  tsr_page_t *pg = atomic_exchange_explicit(&h->notify, NULL, memory_order_acquire);
  while (pg != NULL) {
    tsr_page_t *next = pg->notify_next;
    if (atomic_load_explicit(&pg->xowner, memory_order_seq_cst) ==
        ((uintptr_t)h | TSR_PAGE_QUEUED)) {
      if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) != 0) {
        /* frozen (mesh.c): FULL again before merging, so that a remote
         * free from now on pushes a new notice */
        set_owner(pg, h, TSR_PAGE_FULL);
        tsri_page_collect(pg);
        /* still meshed, or queued again by a remote free since (its new
         * notice brings it back): it stays in the full queue */
        uintptr_t full = (uintptr_t)h | TSR_PAGE_FULL;
        if (tsri_mesh_check(pg) != 0 ||
            !atomic_compare_exchange_strong_explicit(&pg->xowner, &full, (uintptr_t)h | TSR_PAGE_AVAIL,
                                                     memory_order_seq_cst, memory_order_seq_cst)) {
          pg = next;
          continue;
        }
      } else {
        set_owner(pg, h, TSR_PAGE_AVAIL);
      }
      loose_begin(h, pg);
      queue_remove(&h->full, pg);
      tsri_page_collect(pg);
      if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0 && h->avail[pg->cls].first != NULL) {
        heap_retire(pg);   /* every block came back from other threads */
      } else {
        queue_push_back(&h->avail[pg->cls], pg);
        heap_sync_cur(h, pg->cls);
      }
      loose_end(h);
    }
    pg = next;
  }
}

/* pg (first in its avail queue) has no free block: move it to the full
 * queue.  Returns true when a remote free raced in and pg stays available. */
static bool heap_page_full(tsr_heap_t *h, tsr_page_t *pg) {
  size_t cls = pg->cls;
  tsr_assert_internal(h->avail[cls].first == pg);
  tsr_assert_expensive(tsri_page_check(pg) == 0);
  loose_begin(h, pg);
  queue_remove(&h->avail[cls], pg);
  queue_push_back(&h->full, pg);
  set_owner(pg, h, TSR_PAGE_FULL);
  if (tsri_page_has_remote(pg)) {
    uintptr_t expect = (uintptr_t)h | TSR_PAGE_FULL;
    if (atomic_compare_exchange_strong_explicit(&pg->xowner, &expect,
                                                (uintptr_t)h | TSR_PAGE_AVAIL,
                                                memory_order_seq_cst, memory_order_seq_cst)) {
      queue_remove(&h->full, pg);
      queue_push_front(&h->avail[cls], pg);
      loose_end(h);
      heap_sync_cur(h, cls);
      return true;
    }
  }
  loose_end(h);
  heap_sync_cur(h, cls);
  return false;
}

/* An abandoned page of class cls with a free block, now owned by h, or
 * NULL.  Pages still full are left where they are (their remote frees come
 * through tsri_heap_abandoned_free), and at most ADOPT_TRIES of them are
 * looked at, so one malloc never walks a long list. */
#define ADOPT_TRIES 8

/* An abandoned page with a free block of at least need bytes that is not
 * frozen (mesh.c). */
static bool heap_adoptable(tsr_page_t *pg, size_t need) {
  return atomic_load_explicit(&pg->used, memory_order_relaxed) < pg->capacity && pg->block_size >= need &&
         (atomic_load_explicit(&pg->meshed, memory_order_relaxed) == 0 || tsri_mesh_check(pg) == 0);
}

static tsr_page_t *heap_adopt(tsr_heap_t *h, size_t cls, size_t need) {
  if (atomic_load_explicit(&abandoned_count[cls], memory_order_relaxed) == 0) return NULL;
  tsri_lock(&abandoned_lock);
  tsr_page_t *pg = abandoned[cls].first, *next;
  for (int tries = 0; pg != NULL && tries < ADOPT_TRIES; tries++, pg = next) {
    next = pg->next;
    tsri_page_collect(pg);   /* we hold the lock: we act as its owner */
    if (heap_adoptable(pg, need)) break;
    if (pg->block_size < need && next != NULL) {   /* a fitted page: behind the others */
      queue_remove(&abandoned[cls], pg);
      queue_push_back(&abandoned[cls], pg);
    }
  }
  if (pg != NULL && heap_adoptable(pg, need)) {
    queue_remove(&abandoned[cls], pg);
    atomic_fetch_sub_explicit(&abandoned_count[cls], 1, memory_order_relaxed);
    set_owner(pg, h, TSR_PAGE_AVAIL);
    loose_begin(h, pg);   /* under the lock: a fork child finds it */
  } else {
    pg = NULL;
  }
  tsri_unlock(&abandoned_lock);
  return pg;
}

/* Fitted pages (docs/design.md; tsri_fit_note): a request too big for a
 * fitted page's blocks comes here (heap.h), which passes such pages to the
 * back of the queue, at most FIT_PASS_MAX of them each time. */
#define FIT_PASS_MAX 16

/* The slow path proper, parked as the owner. */
static void *heap_alloc_slow(tsr_heap_t *h, size_t cls, size_t need) {
  heap_take_notices(h);
  uint32_t calls = atomic_load_explicit(&h->slow_calls, memory_order_relaxed) + 1;
  atomic_store_explicit(&h->slow_calls, calls, memory_order_relaxed);
  if ((calls & 15) == 0) tsri_reclaim_on_slow_path(h);
  if (need != 0) tsri_fit_note(&h->fit[cls], cls, need);
  tsr_page_t *pg, *passed = NULL;
  for (int n = 0; (pg = h->avail[cls].first) != NULL && pg != passed && n < FIT_PASS_MAX;) {
    if (pg->block_size >= need) {
      if (tsri_page_refill(pg)) return tsri_heap_alloc(h, cls, need);
      heap_page_full(h, pg);
      continue;
    }
    /* a fitted page of blocks too small for this request: to the back, or
     * back to its arena if it is empty (kept while it was current) */
    loose_begin(h, pg);
    queue_remove(&h->avail[cls], pg);
    if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0) {
      heap_retire(pg);
    } else {
      queue_push_back(&h->avail[cls], pg);
      if (passed == NULL) passed = pg;
      n++;
    }
    loose_end(h);
    heap_sync_cur(h, cls);
  }
  pg = heap_adopt(h, cls, need);   /* has a free block: refill finds it */
  if (pg == NULL) {
    size_t fit = h->fit[cls] != 0 ? h->fit[cls] : tsri_classes[cls].block_size;
    pg = tsri_arena_span_alloc(cls, fit, &h->loose);
    /* a fitted span may want a longer run of slots than the class's (8 for
     * 16,400 bytes, 2 for 18,432): where the arenas have none left and can
     * grow no more, the class's may still fit, and then fitting stops for
     * it (where neither fits, the next request tries the fitted one again) */
    if (pg == NULL && fit != tsri_classes[cls].block_size &&
        (pg = tsri_arena_span_alloc(cls, tsri_classes[cls].block_size, &h->loose)) != NULL)
      h->fit[cls] = tsri_classes[cls].block_size;
    if (pg == NULL) { errno = ENOMEM; return NULL; }
    tsri_page_init(pg, cls);
    set_owner(pg, h, TSR_PAGE_AVAIL);
  }
  queue_push_front(&h->avail[cls], pg);
  loose_end(h);
  heap_sync_cur(h, cls);
  bool ready = tsri_page_refill(pg);
  tsr_assert(ready && pg->block_size >= need);
  (void)ready;
  return tsri_heap_alloc(h, cls, need);
}

/* The words of the current page above scan, before the slow path: a page
 * of small blocks is many bitmap words, and moving from one to the next
 * needs neither the park nor the heap's queues.  Only the owner writes the
 * local bitmap and scan of its current page; the reclaimer and meshing
 * leave current pages alone (queue.h: parking, mesh.c). */
void *tsri_heap_alloc_next(tsr_heap_t *h, size_t cls, size_t need) {
  tsr_page_t *pg = h->cur[cls];
  if (!tsri_page_find(pg, (size_t)pg->scan + 1)) return tsri_heap_alloc_slow(h, cls, need);
  size_t w = pg->scan;
  return pg->start + tsri_page_take(pg, w, atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed)) *
                         pg->block_size;
}

void *tsri_heap_alloc_slow(tsr_heap_t *h, size_t cls, size_t need) {
  if (h == &tsri_heap_none) {
    h = heap_thread_start();
    if (h == NULL) { errno = ENOMEM; return NULL; }
    void *p = tsri_heap_alloc(h, cls, need);
    tsri_heap_done(h);
    return p;
  }
  /* what may start a thread (which allocates) runs outside the park */
  if (tsr_unlikely(atomic_load_explicit(&tsri_fork_child_pending, memory_order_relaxed)))
    tsri_fork_child_run();   /* a fork child: what was left for now (init.c) */
  if (tsr_unlikely(atomic_load_explicit(&tsri_reclaim_due, memory_order_relaxed))) tsri_reclaim_start();
  heap_enter(h);
  void *p = heap_alloc_slow(h, cls, need);
  heap_leave(h);
  if (tsr_unlikely(p == NULL)) tsri_refused(tsri_classes[cls].block_size, TSRI_REFUSED_SMALL);
  return p;
}

/* ------------------------------------------------------------------------
 * Free slow paths
 * ---------------------------------------------------------------------- */

/* The owner freed into pg and pg became empty, or pg was not AVAIL.
 * Parked as the owner by tsri_heap_free_slow. */
static void heap_free_slow(tsr_heap_t *h, tsr_page_t *pg) {
  size_t cls = pg->cls;
  tsr_assert_internal(pg->kind == TSR_SLOT_HEAD && cls < TSR_CLASS_COUNT);
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_seq_cst);
  if ((x & TSR_PAGE_STATE_MASK) == TSR_PAGE_FULL) {
    if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) != 0 && tsri_mesh_check(pg) != 0)
      return;   /* frozen: still shares an OS page (mesh.c) */
    if (!atomic_compare_exchange_strong_explicit(&pg->xowner, &x, (uintptr_t)h | TSR_PAGE_AVAIL,
                                                 memory_order_seq_cst, memory_order_seq_cst))
      return;   /* QUEUED meanwhile: heap_take_notices brings it back */
    loose_begin(h, pg);
    queue_remove(&h->full, pg);
    queue_push_back(&h->avail[cls], pg);
    loose_end(h);
    heap_sync_cur(h, cls);
  } else if ((x & TSR_PAGE_STATE_MASK) != TSR_PAGE_AVAIL) {
    return;
  }
  /* An empty page goes back to its arena, unless it is the class's current
   * page: keeping one avoids carving a span per block in a malloc/free loop. */
  if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0 && h->avail[cls].first != pg) {
    loose_begin(h, pg);
    queue_remove(&h->avail[cls], pg);
    heap_sync_cur(h, cls);
    heap_retire(pg);
    loose_end(h);
  }
}

void tsri_heap_free_slow(tsr_heap_t *h, tsr_page_t *pg) {
  heap_enter(h);
  heap_free_slow(h, pg);
  heap_leave(h);
}

_Atomic uint64_t tsri_frees_heapless;

void tsri_heap_count_free(void) {
  tsr_heap_t *h = tsri_tl_heap;
  if (h == &tsri_heap_none)
    atomic_fetch_add_explicit(&tsri_frees_heapless, 1, memory_order_relaxed);
  else
    tsri_heap_count(&h->frees);
}

void tsri_heap_free_remote(tsr_page_t *pg, size_t word, uint64_t mask, void *p) {
  if (tsr_unlikely(atomic_load_explicit(tsri_local(pg, word), memory_order_relaxed) & mask)) {
    tsri_error(TSR_ERROR_DOUBLE_FREE, "double free of %p (block already free)", p);
    return;
  }
  uint64_t old = atomic_fetch_or_explicit(tsri_remote(pg, word), mask, memory_order_seq_cst);
  if (tsr_unlikely(old & mask)) {
    tsri_error(TSR_ERROR_DOUBLE_FREE, "double free of %p (block already freed by another thread)", p);
    return;
  }
  tsri_heap_count_free();
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_seq_cst);
  for (;;) {
    uintptr_t state = x & TSR_PAGE_STATE_MASK;
    if (state == TSR_PAGE_ABANDONED) {
      tsri_heap_abandoned_free(pg, word);
      return;
    }
    if (state != TSR_PAGE_FULL) return;
    tsr_heap_t *owner = (tsr_heap_t *)(x & ~TSR_PAGE_STATE_MASK);
    atomic_fetch_add_explicit(&owner->pushers, 1, memory_order_seq_cst);
    if (atomic_compare_exchange_strong_explicit(&pg->xowner, &x, (uintptr_t)owner | TSR_PAGE_QUEUED,
                                                memory_order_seq_cst, memory_order_seq_cst)) {
      tsr_page_t *head = atomic_load_explicit(&owner->notify, memory_order_relaxed);
      do {
        pg->notify_next = head;
      } while (!atomic_compare_exchange_weak_explicit(&owner->notify, &head, pg,
                                                      memory_order_release, memory_order_relaxed));
      atomic_fetch_sub_explicit(&owner->pushers, 1, memory_order_seq_cst);
      return;
    }
    atomic_fetch_sub_explicit(&owner->pushers, 1, memory_order_seq_cst);
  }
}

/* ------------------------------------------------------------------------
 * Abandoning and the abandoned list
 * ---------------------------------------------------------------------- */

/* A remote free hit a page whose owner exited: merge it here and give the
 * span back once the page is empty.  (Adopting the page into the freeing
 * thread's heap instead was measured: no faster on larson, and twice the
 * peak RSS on mstress.)  Only the freed block's word is merged: every
 * remote free since heap_abandon_page's merge comes here for its own
 * word, so `used` still reaches 0 with the page's last free. */
void tsri_heap_abandoned_free(tsr_page_t *pg, size_t word) {
  tsri_lock(&abandoned_lock);
  if (atomic_load_explicit(&pg->xowner, memory_order_seq_cst) == TSR_PAGE_ABANDONED) {
    tsri_page_collect_word(pg, word);
    if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) != 0) tsri_mesh_check(pg);
    if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0) {
      queue_remove(&abandoned[pg->cls], pg);
      atomic_fetch_sub_explicit(&abandoned_count[pg->cls], 1, memory_order_relaxed);
      heap_retire(pg);
    }
  }
  tsri_unlock(&abandoned_lock);
}

/* Hand one page of an exiting heap over.  abandoned_lock held.  In a fork
 * child (`recount`), the page's owner may have been stopped between setting
 * a bitmap bit and updating `used`; it will never finish, so the count is
 * taken from the bitmap (a block it was handing out stays allocated). */
static void heap_abandon_page(tsr_page_t *pg, bool recount) {
  set_owner(pg, NULL, TSR_PAGE_ABANDONED);
  if (recount) tsri_page_recount(pg);
  tsri_page_collect(pg);
  if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0) {
    heap_retire(pg);
  } else {
    queue_push_back(&abandoned[pg->cls], pg);
    atomic_fetch_add_explicit(&abandoned_count[pg->cls], 1, memory_order_relaxed);
  }
}

/* Give every page of h to the abandoned list (or back to the arena when
 * empty) and put h back in the pool.  `in_child`: h belonged to a thread
 * that does not exist in this fork child, so nobody is pushing and its
 * records may have been left mid-update. */
static bool heap_page_valid(const tsr_page_t *pg, const tsr_heap_t *h) {
  if (!tsri_arena_registered((uintptr_t)pg & ~(uintptr_t)TSR_ARENA_MASK)) return false;
  uintptr_t owner = atomic_load_explicit(&pg->xowner, memory_order_relaxed) & ~TSR_PAGE_STATE_MASK;
  return pg->kind == TSR_SLOT_HEAD && owner == (uintptr_t)h && pg->cls < TSR_CLASS_COUNT;
}

/* In a fork child: h's loose page, when h's thread was cut off with it
 * in none of h's queues.  Still h's (its queues did not have it): to
 * `taken`.  Owned by nobody (carved, or given back half way): set up
 * anew and given back.  Anything else is no longer h's to hand over. */
static void heap_take_loose(tsr_heap_t *h, tsr_page_t **taken) {
  tsr_page_t *pg = atomic_exchange_explicit(&h->loose, NULL, memory_order_relaxed);
  if (pg == NULL || pg->kind != TSR_SLOT_HEAD) return;
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_relaxed);
  if ((x & ~TSR_PAGE_STATE_MASK) == (uintptr_t)h) {
    set_owner(pg, NULL, TSR_PAGE_ABANDONED);
    pg->prev = NULL;
    pg->next = *taken;
    *taken = pg;
  } else if (x == ((uintptr_t)NULL | TSR_PAGE_AVAIL)) {
    tsri_page_init(pg, pg->cls);
    heap_retire(pg);
  }
}

static void heap_abandon(tsr_heap_t *h, bool in_child) {
  /* in a fork child no reclaimer runs, and the owner's slow path may have
   * been cut: the heap is open */
  if (in_child) atomic_store_explicit(&h->park, HEAP_OPEN, memory_order_relaxed);
  heap_enter(h);
  tsri_lock(&abandoned_lock);
  /* 1. Mark every page ABANDONED before any is handed on, so that no
   *    remote free can win a CAS to QUEUED from now on. */
  tsr_page_t *taken = NULL;
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    tsr_queue_t *q = c < TSR_CLASS_COUNT ? &h->avail[c] : &h->full;
    tsr_page_t *pg = q->first;
    while (pg != NULL) {
      tsr_page_t *next = pg->next;
      /* in a fork child a queue may have been cut mid-update: take only
       * pages that really are h's, and stop at the first that is not */
      if (in_child && !heap_page_valid(pg, h)) break;
      set_owner(pg, NULL, TSR_PAGE_ABANDONED);
      pg->prev = NULL;
      pg->next = taken;
      taken = pg;
      pg = next;
    }
    q->first = q->last = NULL;
    if (c < TSR_CLASS_COUNT) h->cur[c] = &page_empty_desc;
  }
  if (in_child) heap_take_loose(h, &taken);
  /* 2. Wait for the threads that won that CAS earlier and are still
   *    pushing (they take no lock meanwhile), then drop their notices: a
   *    page may be retired and carved again only after its last push.  In
   *    a fork child those threads are gone. */
  if (in_child) atomic_store_explicit(&h->pushers, 0, memory_order_relaxed);
  for (uint32_t r = 0; atomic_load_explicit(&h->pushers, memory_order_seq_cst) != 0; r++) tsri_wait_brief(r);
  atomic_store_explicit(&h->notify, NULL, memory_order_seq_cst);
  /* 3. Hand the pages on: back to the arena when empty, else to the
   *    abandoned list. */
  while (taken != NULL) {
    tsr_page_t *pg = taken;
    taken = pg->next;
    pg->next = NULL;
    heap_abandon_page(pg, in_child);
  }
  tsri_unlock(&abandoned_lock);
  tsri_lock(&heap_lock);
  h->in_use = false;
  tsri_unlock(&heap_lock);
  heap_leave(h);
}

static void heap_thread_exit(void *value) {
  tsr_heap_t *h = value;
  if (h == NULL || h == &tsri_heap_none) return;
  tsri_tl_heap = &tsri_heap_none;
  tl_exited = true;
  heap_abandon(h, false);
  tsri_arena_purge(false);
}

void tsri_heap_give_back(tsr_heap_t *h) { heap_abandon(h, false); }

/* ------------------------------------------------------------------------
 * Collection, checks, fork
 * ---------------------------------------------------------------------- */

/* Merge the remote frees of every abandoned page, give the empty ones back
 * and trim the rest: all of a page's free OS pages (force: tsr_collect),
 * or those of pages with more blocks free than at their last trim (the
 * reclaimer).  Nobody allocates from them: we hold the lock. */
static void abandoned_sweep(bool force) {
  tsri_lock(&abandoned_lock);
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    tsr_page_t *pg = abandoned[c].first;
    while (pg != NULL) {
      tsr_page_t *next = pg->next;
      tsri_page_collect(pg);
      if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0) {
        queue_remove(&abandoned[c], pg);
        atomic_fetch_sub_explicit(&abandoned_count[c], 1, memory_order_relaxed);
        heap_retire(pg);
      } else {
        if (force) tsri_page_trim(pg, true);
        else tsri_page_trim_idle(pg);
      }
      pg = next;
    }
  }
  tsri_unlock(&abandoned_lock);
}

void tsri_heap_collect(void) {
  tsr_heap_t *h = tsri_tl_heap;
  if (h != &tsri_heap_none) {
    heap_enter(h);
    heap_take_notices(h);
    for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
      tsr_page_t *pg = h->avail[c].first;
      while (pg != NULL) {
        tsr_page_t *next = pg->next;
        tsri_page_collect(pg);
        if (atomic_load_explicit(&pg->used, memory_order_relaxed) == 0) {
          loose_begin(h, pg);
          queue_remove(&h->avail[c], pg);
          heap_retire(pg);
          loose_end(h);
        } else {
          tsri_page_trim(pg, true);
        }
        pg = next;
      }
      heap_sync_cur(h, c);
    }
    if (tsri_option(TSRI_OPT_MESH) != 0)
      while (tsri_heap_mesh(h, TSRI_MESH_ALL, UINT64_MAX) != 0) {   /* all it can */
      }
    heap_leave(h);
  }
  abandoned_sweep(true);
}

bool tsri_heap_park_idle(tsr_heap_t *h) {
  uint32_t calls = atomic_load_explicit(&h->slow_calls, memory_order_relaxed);
  if (calls != h->reclaim_seen) {   /* busy since the last look: its own trimming serves it */
    h->reclaim_seen = calls;
    return false;
  }
  int open = HEAP_OPEN;
  if (!atomic_compare_exchange_strong_explicit(&h->park, &open, HEAP_PARKED, memory_order_acquire,
                                               memory_order_relaxed))
    return false;
  tsri_lock(&heap_lock);   /* in_use is written under it, before the owner enters */
  bool live = h->in_use;
  tsri_unlock(&heap_lock);
  if (!live) heap_unpark(h);
  return live;
}

void tsri_heap_unpark(tsr_heap_t *h) { heap_unpark(h); }

tsr_heap_t *tsri_heap_all(void) {
  tsri_lock(&heap_lock);
  tsr_heap_t *first = heap_all;
  tsri_unlock(&heap_lock);
  return first;
}

void tsri_heap_sweep_abandoned(void) { abandoned_sweep(false); }

/* Check one queue of h: every page in it has the right owner, state and
 * class, and sound bitmaps. */
static size_t heap_check_queue(const tsr_queue_t *q, uintptr_t owner, int cls, bool full) {
  size_t bad = 0;
  const tsr_page_t *prev = NULL;
  for (const tsr_page_t *pg = q->first; pg != NULL; prev = pg, pg = pg->next) {
    uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_relaxed);
    uintptr_t state = x & TSR_PAGE_STATE_MASK;
    bool state_ok = full ? (state == TSR_PAGE_FULL || state == TSR_PAGE_QUEUED)
                         : (state == (owner ? TSR_PAGE_AVAIL : TSR_PAGE_ABANDONED));
    if ((x & ~TSR_PAGE_STATE_MASK) != owner || !state_ok || pg->prev != prev ||
        pg->kind != TSR_SLOT_HEAD || (cls >= 0 && pg->cls != cls)) {
      tsri_warning("check: page %p is in the wrong queue or state", (void *)pg->start);
      bad++;
      continue;
    }
    bad += tsri_page_check(pg);
  }
  if (q->last != prev) {
    tsri_warning("check: a page queue has a broken tail");
    bad++;
  }
  return bad;
}

/* A QUEUED page of h's full queue comes back only through the notify
 * stack: one not on it waits for good, its free blocks never reused.  A
 * pusher that set QUEUED has pushed once pushers reads 0.  Owner only. */
static size_t heap_check_notices(const tsr_heap_t *h) {
  size_t bad = 0;
  for (const tsr_page_t *pg = h->full.first; pg != NULL; pg = pg->next) {
    if (atomic_load_explicit(&pg->xowner, memory_order_seq_cst) != ((uintptr_t)h | TSR_PAGE_QUEUED)) continue;
    for (uint32_t r = 0; atomic_load_explicit(&h->pushers, memory_order_seq_cst) != 0; r++) tsri_wait_brief(r);
    const tsr_page_t *n = atomic_load_explicit(&h->notify, memory_order_seq_cst);
    for (size_t k = 0; n != NULL && n != pg && k < ((size_t)1 << 24); k++) n = n->notify_next;
    if (n == pg) continue;
    tsri_warning("check: page %p waits for a notice that is on no notify stack", (void *)pg->start);
    bad++;
  }
  return bad;
}

size_t tsri_heap_check(void) {
  size_t bad = 0;
  tsr_heap_t *h = tsri_tl_heap;
  if (h != &tsri_heap_none) {
    heap_enter(h);   /* the reclaimer may be moving its pages (trimming, meshing): wait for it */
    bad += heap_check_notices(h);
    for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
      bad += heap_check_queue(&h->avail[c], (uintptr_t)h, (int)c, false);
      if (h->cur[c] != (h->avail[c].first ? h->avail[c].first : &page_empty_desc)) {
        tsri_warning("check: current page of class %zu is not the first available", c);
        bad++;
      }
    }
    bad += heap_check_queue(&h->full, (uintptr_t)h, -1, true);
    heap_leave(h);
  }
  tsri_lock(&abandoned_lock);
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++)
    bad += heap_check_queue(&abandoned[c], 0, (int)c, false);
  tsri_unlock(&abandoned_lock);
  return bad;
}

void tsri_heap_fork_prepare(void) {
  tsri_lock(&heap_lock);
  tsri_lock(&abandoned_lock);
}

void tsri_heap_fork_parent(void) {
  tsri_unlock(&abandoned_lock);
  tsri_unlock(&heap_lock);
}

/* In the child only the forking thread lives: hand the pages of every other
 * thread's heap over, so that what the child frees into them is reused. */
void tsri_heap_fork_child(void) {
  tsri_unlock(&abandoned_lock);
  tsri_unlock(&heap_lock);
  /* the forking thread was in no slow path, and the reclaimer (held off
   * by its lock) in no heap: every heap is open */
  for (tsr_heap_t *h = heap_all; h != NULL; h = h->next_all)
    atomic_store_explicit(&h->park, HEAP_OPEN, memory_order_relaxed);
  tsri_arena_fork_child();
  for (tsr_heap_t *h = heap_all; h != NULL; h = h->next_all) {
    if (h->in_use && h != tsri_tl_heap) heap_abandon(h, true);
  }
  tsr_heap_t *h = tsri_tl_heap;
  if (h == &tsri_heap_none) return;
  /* the child's key holds the parent's value already: only a refusal to
   * store the same again, which leaves it as it was */
  (void)tsri_os_thread_set(h);
  /* A thread that was freeing into one of our full pages may have been
   * stopped between its CAS to QUEUED and its push: take what was pushed,
   * then bring back every page still QUEUED, on the stack or not. */
  atomic_store_explicit(&h->pushers, 0, memory_order_relaxed);
  heap_take_notices(h);
  tsr_page_t *pg = h->full.first;
  while (pg != NULL) {
    tsr_page_t *next = pg->next;
    if (atomic_load_explicit(&pg->xowner, memory_order_relaxed) == ((uintptr_t)h | TSR_PAGE_QUEUED)) {
      set_owner(pg, h, TSR_PAGE_AVAIL);
      queue_remove(&h->full, pg);
      tsri_page_collect(pg);
      queue_push_back(&h->avail[pg->cls], pg);
      heap_sync_cur(h, pg->cls);
    }
    pg = next;
  }
}

void tsri_heap_init(void) { tsri_os_thread_exit_init(heap_thread_exit); }
