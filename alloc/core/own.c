/* own.c: what tessera took from the OS.
 *
 * Owns: the process-wide OS counters (tsri_counters: calls, reserved,
 * committed and metadata bytes; updated where the OS is called, read by
 * report/stats.c), and the registry of tessera's reservations that are
 * neither arenas nor large blocks (the stack table, heap chunks, hash
 * tables), which the address-space report reads to tell tessera's
 * regions from the program's; and the refusals (the requests answered
 * NULL because the OS refused), which the report at failure tells.
 */
#include "internal.h"

tsri_os_counters_t tsri_counters;

/* A fixed set of slots claimed with a CAS, so that adding one from under
 * any lock, or in a fork child, needs no lock of its own.  A slot whose
 * size is 0 is being filled or emptied. */
static _Atomic uintptr_t own_base[TSRI_OWN_SLOTS];
static _Atomic size_t own_size[TSRI_OWN_SLOTS];
static _Atomic uint8_t own_kind[TSRI_OWN_SLOTS];

void tsri_own_add(const void *base, size_t size, unsigned kind) {
  for (size_t i = 0; i < TSRI_OWN_SLOTS; i++) {
    uintptr_t none = 0;
    if (atomic_load_explicit(&own_base[i], memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(&own_base[i], &none, (uintptr_t)base,
                                                memory_order_relaxed, memory_order_relaxed)) {
      atomic_store_explicit(&own_kind[i], (uint8_t)kind, memory_order_relaxed);
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

bool tsri_own_next(size_t *cursor, uintptr_t *base, size_t *size, unsigned *kind) {
  while (*cursor < TSRI_OWN_SLOTS) {
    size_t i = (*cursor)++;
    size_t s = atomic_load_explicit(&own_size[i], memory_order_acquire);
    uintptr_t b = atomic_load_explicit(&own_base[i], memory_order_relaxed);
    if (s != 0 && b != 0) {
      *base = b;
      *size = s;
      *kind = atomic_load_explicit(&own_kind[i], memory_order_relaxed);
      return true;
    }
  }
  return false;
}

/* ------------------------------------------------------------------------
 * Refusals
 * ---------------------------------------------------------------------- */

static _Atomic uint64_t refused_count, refused_size, refused_ms;
static _Atomic uint32_t refused_what;
static void (*_Atomic refusal_fn)(void);
static _Atomic int refusal_running;   /* the function runs: refusals meanwhile are counted only */

void tsri_on_refusal(void (*fn)(void)) { atomic_store_explicit(&refusal_fn, fn, memory_order_release); }

void tsri_refused(size_t size, unsigned what) {
  int saved = errno;
  atomic_store_explicit(&refused_size, size, memory_order_relaxed);
  atomic_store_explicit(&refused_what, what, memory_order_relaxed);
  atomic_store_explicit(&refused_ms, tsri_os_clock_ms(), memory_order_relaxed);
  atomic_fetch_add_explicit(&refused_count, 1, memory_order_release);
  void (*fn)(void) = atomic_load_explicit(&refusal_fn, memory_order_acquire);
  if (fn != NULL && !atomic_exchange_explicit(&refusal_running, 1, memory_order_acquire)) {
    fn();
    atomic_store_explicit(&refusal_running, 0, memory_order_release);
  }
  errno = saved;
}

void tsri_refusal_get(tsri_refusal_t *out) {
  out->count = atomic_load_explicit(&refused_count, memory_order_acquire);
  out->size = atomic_load_explicit(&refused_size, memory_order_relaxed);
  out->what = atomic_load_explicit(&refused_what, memory_order_relaxed);
  out->at_ms = atomic_load_explicit(&refused_ms, memory_order_relaxed);
}
