/* queue.h: a heap's page queues and a page's owner word, for the files
 * that move pages between queues: heap.c, and mesh.c when it freezes and
 * thaws pages.  The caller is the heap's owner, or holds its park
 * (parking, below), or holds the abandoned lock for the abandoned lists.
 * And the park itself, and the note of a page out of every queue
 * (h->loose).
 */
#ifndef TSR_QUEUE_H
#define TSR_QUEUE_H

#include "internal.h"

static inline void queue_remove(tsr_queue_t *q, tsr_page_t *pg) {
  if (pg->prev) pg->prev->next = pg->next;
  else q->first = pg->next;
  if (pg->next) pg->next->prev = pg->prev;
  else q->last = pg->prev;
  pg->next = pg->prev = NULL;
}

static inline void queue_push_front(tsr_queue_t *q, tsr_page_t *pg) {
  tsr_assert_internal(pg->next == NULL && pg->prev == NULL && q->first != pg);
  pg->prev = NULL;
  pg->next = q->first;
  if (q->first) q->first->prev = pg;
  else q->last = pg;
  q->first = pg;
}

static inline void queue_push_back(tsr_queue_t *q, tsr_page_t *pg) {
  tsr_assert_internal(pg->next == NULL && pg->prev == NULL && q->last != pg);
  pg->next = NULL;
  pg->prev = q->last;
  if (q->last) q->last->next = pg;
  else q->first = pg;
  q->last = pg;
}

static inline void set_owner(tsr_page_t *pg, tsr_heap_t *h, uintptr_t state) {
  atomic_store_explicit(&pg->xowner, (uintptr_t)h | state, memory_order_seq_cst);
}

/* Parking.  The reclaimer (reclaim.c) gives back the free memory of heaps
 * whose thread has taken no allocation slow path for one of its periods.
 * It walks a heap's queues and trims its pages other than the current
 * ones, which only the owner's slow paths change: the owner's fast paths
 * allocate from the current pages alone and, freeing, set bits and counts
 * that trimming only reads.  `park` says who is in: the owner for the
 * length of each slow path, the reclaimer for its look at the heap; the
 * other waits (the reclaimer does not: it passes the heap by). */
enum { HEAP_OPEN = 0, HEAP_OWNER = 1, HEAP_PARKED = 2, HEAP_PARKED_WAITED = 3 };

/* out of line: the park is open nearly always (unused in mesh.c).  The
 * owner sleeps in the OS until the reclaimer leaves (tsri_heap_unpark
 * wakes it), after a short spin: yielding instead, an owner of real-time
 * priority on the reclaimer's CPU would keep the reclaimer, of normal
 * priority, from ever leaving (tests/test_locks.c). */
#define HEAP_ENTER_SPINS 128
static tsr_noinline __attribute__((unused)) void heap_enter_wait(tsr_heap_t *h) {
  for (unsigned spins = 0;; spins++) {
    int seen = HEAP_OPEN;
    if (atomic_compare_exchange_weak_explicit(&h->park, &seen, HEAP_OWNER, memory_order_acquire,
                                              memory_order_relaxed))
      return;
    if (seen == HEAP_OPEN) continue;
    if (spins < HEAP_ENTER_SPINS) {
      tsri_spin_pause();
      continue;
    }
    if (seen == HEAP_PARKED &&
        !atomic_compare_exchange_strong_explicit(&h->park, &seen, HEAP_PARKED_WAITED, memory_order_relaxed,
                                                 memory_order_relaxed))
      continue;
    tsri_os_wait(&h->park, HEAP_PARKED_WAITED);
  }
}

static inline void heap_enter(tsr_heap_t *h) {
  int open = HEAP_OPEN;
  if (tsr_unlikely(!atomic_compare_exchange_strong_explicit(&h->park, &open, HEAP_OWNER, memory_order_acquire,
                                                            memory_order_relaxed)))
    heap_enter_wait(h);
}

static inline void heap_leave(tsr_heap_t *h) { atomic_store_explicit(&h->park, HEAP_OPEN, memory_order_release); }

/* The reclaimer's leave: it wakes an owner that sleeps on the park. */
static inline void heap_unpark(tsr_heap_t *h) {
  if (atomic_exchange_explicit(&h->park, HEAP_OPEN, memory_order_release) == HEAP_PARKED_WAITED)
    tsri_os_wake(&h->park);
}

/* h->loose: pg is out of h's queues from now (it is, or goes, in none) until
 * loose_end.  Seq_cst: a fork copies the process between two stores of
 * ours, never with a later one and without an earlier one. */
static inline void loose_begin(tsr_heap_t *h, tsr_page_t *pg) {
  atomic_store_explicit(&h->loose, pg, memory_order_seq_cst);
}

static inline void loose_end(tsr_heap_t *h) { atomic_store_explicit(&h->loose, NULL, memory_order_seq_cst); }

#endif /* TSR_QUEUE_H */
