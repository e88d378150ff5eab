/* own.c: what tessera took from the OS.
 *
 * Owns: the process-wide OS counters (tsri_counters: calls, reserved,
 * committed and metadata bytes; updated where the OS is called, read by
 * report/stats.c), and the registry of tessera's reservations that are
 * neither arenas nor large blocks (the stack table, heap chunks, hash
 * tables), which the address-space report reads to tell tessera's
 * regions from the program's.
 */
#include "internal.h"

tsri_os_counters_t tsri_counters;

/* A fixed set of slots claimed with a CAS, so that adding one from under
 * any lock, or in a fork child, needs no lock of its own.  A slot whose
 * size is 0 is being filled or emptied. */
static _Atomic uintptr_t own_base[TSRI_OWN_SLOTS];
static _Atomic size_t own_size[TSRI_OWN_SLOTS];

void tsri_own_add(const void *base, size_t size) {
  for (size_t i = 0; i < TSRI_OWN_SLOTS; i++) {
    uintptr_t none = 0;
    if (atomic_load_explicit(&own_base[i], memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(&own_base[i], &none, (uintptr_t)base,
                                                memory_order_relaxed, memory_order_relaxed)) {
      atomic_store_explicit(&own_size[i], size, memory_order_release);
      return;
    }
  }
  /* all taken: the address-space report counts this one as not ours */
}

void tsri_own_remove(const void *base) {
  for (size_t i = 0; i < TSRI_OWN_SLOTS; i++) {
    if (atomic_load_explicit(&own_base[i], memory_order_relaxed) == (uintptr_t)base) {
      atomic_store_explicit(&own_size[i], 0, memory_order_relaxed);
      atomic_store_explicit(&own_base[i], 0, memory_order_release);
      return;
    }
  }
}

bool tsri_own_next(size_t *cursor, uintptr_t *base, size_t *size) {
  while (*cursor < TSRI_OWN_SLOTS) {
    size_t i = (*cursor)++;
    size_t s = atomic_load_explicit(&own_size[i], memory_order_acquire);
    uintptr_t b = atomic_load_explicit(&own_base[i], memory_order_relaxed);
    if (s != 0 && b != 0) {
      *base = b;
      *size = s;
      return true;
    }
  }
  return false;
}
