/* lock.c: the contended side of the locks of internal.h.
 *
 * Spin a little (a holder on another CPU is usually out within a few
 * hundred cycles), then mark the lock as slept on (2) and sleep in the OS
 * until the holder's tsri_unlock wakes one sleeper.  A thread that takes
 * the lock after sleeping leaves it at 2: another may still sleep on it,
 * and a wake too many costs one system call.  This is the third of the
 * mutexes in Drepper's "Futexes Are Tricky" (2004).
 */
#include "internal.h"

#define LOCK_SPINS 128

#if !defined(_WIN32)
TSRI_TLS _Atomic int tsri_tl_locks;
#endif

void tsri_lock_slow(tsri_lock_t *l) {
  for (unsigned spins = 0; spins < LOCK_SPINS; spins++) {
    int free_now = 0;
    if (atomic_load_explicit(&l->held, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->held, &free_now, 1, memory_order_acquire, memory_order_relaxed))
      return;
    tsri_spin_pause();
  }
  while (atomic_exchange_explicit(&l->held, 2, memory_order_acquire) != 0) tsri_os_wait(&l->held, 2);
}

#define BRIEF_YIELDS 64

void tsri_wait_brief(uint32_t round) {
  if (round < BRIEF_YIELDS) tsri_os_yield();
  else tsri_os_sleep_ms(1);
}
