/* reserve_limit.h: the cap on reserved address space (os.h:
 * tsri_os_reserve_limit), shared by the OS backends.  Included by exactly
 * one backend file per build (posix.c or windows.c), so the state below
 * exists once.
 *
 * The count is of bytes the backend holds in reservations: a reservation
 * takes its size from the budget before it asks the OS (so two threads
 * cannot both pass the cap), gives it back when the OS refuses, and a
 * release gives it back.  TESSERA_RESERVE_LIMIT simulates an exhausted
 * address space (a 32-bit process, a fragmented one) on any machine.
 */
#ifndef TSR_OS_RESERVE_LIMIT_H
#define TSR_OS_RESERVE_LIMIT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "os.h"

static _Atomic uint64_t os_limit;      /* 0: no cap */
static _Atomic uint64_t os_reserved;   /* bytes held in reservations */

void tsri_os_reserve_limit(uint64_t limit) {
  atomic_store_explicit(&os_limit, limit, memory_order_relaxed);
}

uint64_t tsri_os_reserved(void) { return atomic_load_explicit(&os_reserved, memory_order_relaxed); }

/* Take size bytes from the budget: true, or false (nothing taken) when
 * that would pass the cap. */
static inline bool os_budget_take(size_t size) {
  uint64_t limit = atomic_load_explicit(&os_limit, memory_order_relaxed);
  if (limit == 0) {
    atomic_fetch_add_explicit(&os_reserved, (uint64_t)size, memory_order_relaxed);
    return true;
  }
  uint64_t have = atomic_load_explicit(&os_reserved, memory_order_relaxed);
  do {
    if (have + size < have || have + size > limit) return false;
  } while (!atomic_compare_exchange_weak_explicit(&os_reserved, &have, have + size,
                                                  memory_order_relaxed, memory_order_relaxed));
  return true;
}

static inline void os_budget_give(size_t size) {
  atomic_fetch_sub_explicit(&os_reserved, (uint64_t)size, memory_order_relaxed);
}

#endif /* TSR_OS_RESERVE_LIMIT_H */
