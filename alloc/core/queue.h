/* queue.h: a heap's page queues and a page's owner word, for the files
 * that move pages between queues: heap.c, and mesh.c when it freezes and
 * thaws pages.  The caller is the heap's owner, or holds its park (heap.c:
 * parking), or holds the abandoned lock for the abandoned lists.
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

#endif /* TSR_QUEUE_H */
