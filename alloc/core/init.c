/* init.c: bringing tessera up, once, and the fork handlers.
 *
 * Initialisation is lazy (the first allocation of the process may come
 * from the dynamic loader, before any constructor) and must not call
 * malloc.  Its parts that may call back into malloc (registering fork
 * handlers allocates inside glibc) run after tsri_ready is set, so such a
 * nested call finds a working heap.  Tracking learns its level through
 * tsri_hook_options; the report layer starts its own triggers from a
 * constructor of its own (report/trigger.c), which runs after ours.
 */
#include "hooks.h"

_Atomic int tsri_ready;
uint64_t tsri_start_ms;
static tsri_lock_t init_lock;

/* ------------------------------------------------------------------------
 * fork
 * ---------------------------------------------------------------------- */

static void (*_Atomic fork_child_fn)(void);
_Atomic int tsri_fork_child_pending;

void tsri_on_fork_child(void (*fn)(void)) {
  atomic_store_explicit(&fork_child_fn, fn, memory_order_release);
}

/* Any thread's slow path may see the flag first: one of them runs fn. */
void tsri_fork_child_run(void) {
  if (!atomic_exchange_explicit(&tsri_fork_child_pending, 0, memory_order_acq_rel)) return;
  void (*fn)(void) = atomic_load_explicit(&fork_child_fn, memory_order_acquire);
  if (fn != NULL) fn();
}

/* Before fork.  The child must find every lock free and what it guards
 * whole, so prepare normally takes them all, and three cases decide how:
 *
 *  - The C library says the process never had a second thread: no other
 *    thread can hold a lock, so none is taken (glibc's fork takes none of
 *    its own then).  This is what lets a fork from a signal handler work
 *    in a single-threaded program, where the handler may have interrupted
 *    malloc, or the prepare handler of another fork, holding a lock
 *    (glibc's tst-mallocfork2 and tst-mallocfork).
 *  - This thread holds or waits for one of tessera's locks
 *    (tsri_locks_held): fork was called by a signal handler that interrupted
 *    tessera, or interrupted a fork between its prepare and its parent
 *    handler; waiting would never end.  None is taken.  The child starts
 *    from the heap as the interrupted code left it and, as POSIX says of
 *    a child of a process with threads, may call only async-signal-safe
 *    functions (it may _exit or exec; tessera's own threads, the
 *    reclaimer and the report thread, make a program that started none
 *    such a process).
 *  - Otherwise: the C library's lock on its list of streams first, then
 *    tessera's.  The C library's fork takes that lock after the prepare
 *    handlers, and fflush(NULL) holds it while it takes each stream's
 *    lock, whose holder (getline growing its buffer) may be in malloc:
 *    tessera's locks held across that wait closed a cycle (glibc bug
 *    19431, tst-malloc-fork-deadlock).  Taken first, it orders fork as
 *    glibc orders its own malloc's locks: the list, a stream, the heap.
 *    Then, as everywhere: the reclaimer's, heap and abandoned locks,
 *    arena lock, tracking's, large lock (tsr_check's record check and
 *    debug mode look large blocks up under tracking's locks; a fork that
 *    took the large lock first waited for them while they waited for it).
 *
 * Meshing's part (mesh.c: the meshed pages read-only until the child has
 * its own copy of them) runs in the first two cases too, unless this
 * thread holds a lock: a single-threaded child must not share memory with
 * its parent either.  In the second case the child shares the meshed
 * pages until it execs or exits.
 *
 * A fork that takes no lock nests inside one that does, on the same
 * thread (a handler's fork inside the interrupted fork), so counts per
 * thread of the forks that took none, and of those that left meshing
 * out, tell each parent and child handler which kind it ends. */
static TSRI_TLS int fork_unlocked, fork_unmeshed;

static void fork_prepare(void) {
  bool held = tsri_locks_held();
  if (tsri_os_single_threaded() || held) {
    fork_unlocked++;
    if (held) fork_unmeshed++;
    else tsri_mesh_fork_prepare();
    return;
  }
  tsri_os_stdio_lock();
  tsri_reclaim_fork_prepare();
  tsri_heap_fork_prepare();
  tsri_lock(tsri_arena_lock_get());
  tsri_hook_fork_prepare();
  tsri_large_fork_prepare();
  tsri_mesh_fork_prepare();
}

static void fork_parent(void) {
  if (fork_unmeshed > 0) fork_unmeshed--;
  else tsri_mesh_fork_parent();
  if (fork_unlocked > 0) {
    fork_unlocked--;
    return;
  }
  tsri_large_fork_parent();
  tsri_hook_fork_parent();
  tsri_unlock(tsri_arena_lock_get());
  tsri_heap_fork_parent();
  tsri_reclaim_fork_parent();
  tsri_os_stdio_unlock(false);
}

/* The reclaimer and the report thread are not in the child: either way it
 * may start its own. */
static void fork_child(void) {
  if (fork_unmeshed > 0) fork_unmeshed--;
  else tsri_mesh_fork_child();
  bool locked = fork_unlocked == 0;
  if (locked) {
    tsri_large_fork_child();
    tsri_hook_fork_child();
    tsri_unlock(tsri_arena_lock_get());
    tsri_heap_fork_child();
  } else {
    fork_unlocked--;
  }
  tsri_reclaim_fork_child(locked);
  if (locked) tsri_os_stdio_unlock(true);
  if (atomic_load_explicit(&fork_child_fn, memory_order_relaxed) != NULL)
    atomic_store_explicit(&tsri_fork_child_pending, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Start-up
 * ---------------------------------------------------------------------- */

/* The options were read before the C library had set up the
 * environment: init_at_load reads them again. */
static bool options_early;

/* What the options say of the OS: the cap on reservations, and the
 * failures a test asks for (TESSERA_FAIL). */
static void options_to_os(void) {
  tsri_os_reserve_limit((uint64_t)tsri_option(TSRI_OPT_RESERVE_LIMIT));
  const char *fail = tsri_option_string(TSRI_OPT_FAIL);
  if (tsri_os_fail_set(fail) != 0) tsri_warning("TESSERA_FAIL=%s is not valid; no failure is injected", fail);
}

void tsri_init_slow(void) {
  tsri_lock(&init_lock);
  if (atomic_load_explicit(&tsri_ready, memory_order_acquire)) {
    tsri_unlock(&init_lock);
    return;
  }
  options_early = !tsri_options_init();
  options_to_os();
  tsri_start_ms = tsri_os_clock_ms();
  tsri_os_restriction_note();
  /* before the environment says, every block is recorded: what is still
   * live when it does has a record whatever the level is.  Tracking takes
   * the heap lock inside init_lock here, with no heap made yet; no path
   * that holds the heap lock comes back to tsri_init_slow. */
  tsri_hook_options(options_early);
  tsri_heap_init();
  atomic_store_explicit(&tsri_ready, 1, memory_order_release);
  tsri_unlock(&init_lock);
  tsri_os_atfork(fork_prepare, fork_parent, fork_child);
}

/* Bring tessera up at load time too, so that options are read and the fork
 * handlers registered before the program starts threads.  Priority 101,
 * the first a program may use: before the report layer's constructor,
 * which reads the options this one may read again.  On Windows (gcc and
 * mingw-w64) these run from the C runtime's start-up code of the program,
 * or from DllMain's attach when tessera is a DLL; nothing here loads a
 * library, so the loader lock is no obstacle. */
__attribute__((constructor(101))) static void init_at_load(void) {
  tsri_init();
  if (options_early && tsri_options_init()) {
    /* the first allocations came before the C library's start-up (a
     * sanitizer's runtime, the dynamic loader): apply what the
     * environment says now */
    options_early = false;
    options_to_os();
    tsri_hook_options(false);
  }
}
