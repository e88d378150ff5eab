/* reclaim.c: memory given back while the program is idle.
 *
 * Owns: the reclaimer, a background thread that every TESSERA_RECLAIM_MS
 * does what a thread's allocation slow path otherwise does now and then:
 * decommits the free pages whose purge delay ran out (arena.c) and the
 * cached large blocks (large.c), and trims the pages of threads that took
 * no allocation slow path since its last pass, their free blocks and the
 * ones other threads freed into them alike (queue.h: parking, page.c:
 * tsri_page_trim_idle), and the abandoned pages.  Without it a server
 * that stops allocating keeps its peak: those steps run from the slow
 * path of whoever allocates next (tsri_reclaim_on_slow_path, also here).
 *
 * Cost.  A pass takes the arena and large-block locks as a slow path's
 * purge does, and parks each idle heap for as long as it reads its queues
 * and trims what changed (tsri_page_trim_idle skips a page with no more
 * blocks free than at its last trim); a thread that enters a slow path
 * meanwhile waits that long.  A busy heap is passed by.  The thread
 * starts at an allocation slow path once the process is a second old or
 * has 32 MiB committed, so small short-lived programs never start it, and
 * again in a fork child a second old; never in a process that forbade
 * itself system calls since it started (a seccomp filter: os.h,
 * tsri_os_restricted), which clone could kill.
 *
 * Meshing.  A round meshes the quiet heaps (fewer than
 * RECLAIM_QUIET_RATE blocks a second handed out since the round before,
 * fast path included), all their sparse pages counting as cold, for at
 * most 10 ms in all (TSRI_MESH_IDLE_NS; a round that runs out starts the
 * next at the heap after the one that spent it).  While rounds find
 * pairs and have more to look at, the next comes after
 * RECLAIM_MESH_MORE_MS instead of TESSERA_RECLAIM_MS, so that a process
 * gone quiet after its peak gets its memory back within about a second,
 * at most two thirds of one core meanwhile, and a quiet heap's owner
 * waits at most 10 ms when it enters a slow path; once a round finds
 * nothing, the period is the usual one.  A thread at work meshes its own
 * pages, from its slow path.
 */
#include "internal.h"

#define RECLAIM_AFTER_MS 1000                  /* age at which the reclaimer starts */
#define RECLAIM_AFTER_BYTES ((uint64_t)32 << 20)   /* or committed memory, whichever first */
#define RECLAIM_MESH_MORE_MS 5                 /* the pause between rounds while meshing has work */
#define RECLAIM_QUIET_RATE 4096                /* blocks a second a quiet heap hands out, at most */

_Atomic int tsri_reclaim_due;
static _Atomic int reclaim_running;
static _Atomic uint64_t reclaim_born_ms;   /* when this process began: start, or its fork */
static tsri_lock_t reclaim_lock;   /* held for a pass; fork waits for it */

/* Give back the free OS pages inside our pages that are not current
 * (TESSERA_TRIM_MS), where a page has not gained blocks since the last
 * pass: a page that emptied after a peak and stays so (its survivors are
 * scattered) is trimmed; a page the heap keeps refilling, whose trimmed
 * OS pages would soon be faulted back in, is left alone.  Owner only:
 * nobody else may hand out their free blocks meanwhile. */
static void slow_path_trim(tsr_heap_t *h) {
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    tsr_page_t *pg = h->avail[c].first;
    if (pg == NULL) continue;
    for (pg = pg->next; pg != NULL; pg = pg->next) {
      uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
      bool settled = used <= pg->seen_used;
      pg->seen_used = used;
      if (settled) tsri_page_trim(pg, false);
    }
  }
}

void tsri_reclaim_on_slow_path(tsr_heap_t *h) {
  tsri_reclaim_note();
  tsri_arena_purge(false);
  tsri_large_purge(false);
  int64_t every = tsri_option(TSRI_OPT_TRIM_MS);
  if (every > 0) {
    uint64_t now = tsri_os_clock_ms();
    if (now >= h->next_trim_ms) {
      h->next_trim_ms = now + (uint64_t)every;
      slow_path_trim(h);
    }
  }
  if (tsri_mesh_due(h)) tsri_heap_mesh(h, TSRI_MESH_OWNER, tsri_os_clock_ns() + TSRI_MESH_OWNER_NS);
}

/* Trim every page of h, parked, but the current ones: the blocks other
 * threads freed into them count as free (page.c: tsri_page_trim_idle). */
static void reclaim_trim(tsr_heap_t *h) {
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    tsr_page_t *pg = h->avail[c].first;
    for (pg = pg ? pg->next : NULL; pg != NULL; pg = pg->next) tsri_page_trim_idle(pg);
  }
  for (tsr_page_t *pg = h->full.first; pg != NULL; pg = pg->next) tsri_page_trim_idle(pg);
}

/* Mesh h, parked, when due or when its last pass left pages to look at,
 * while the round's budget (round_end, ns) lasts; past it, h waits for
 * the next round.  Only a quiet heap: one that handed out fewer than
 * RECLAIM_QUIET_RATE blocks a second since the reclaimer's last look, fast
 * path included (a server serving the odd request is quiet; a thread at
 * work meshes its own pages, from its slow path, and its pages are not
 * cold).  True when its meshing has more to do. */
static bool reclaim_mesh(tsr_heap_t *h, uint64_t round_end) {
  uint64_t allocs = atomic_load_explicit(&h->allocs, memory_order_relaxed), now = tsri_os_clock_ms();
  bool quiet = (allocs - h->reclaim_allocs) * 1000 < RECLAIM_QUIET_RATE * (now - h->reclaim_at_ms + 1);
  h->reclaim_allocs = allocs;
  h->reclaim_at_ms = now;
  if (!quiet || !tsri_mesh_allowed() || !(h->mesh_more || tsri_mesh_due(h))) return false;
  if (tsri_os_clock_ns() >= round_end) return h->mesh_more = true;
  tsri_heap_mesh(h, TSRI_MESH_IDLE, round_end);
  return h->mesh_more;
}

/* The heap a round starts at: the one after the heap that spent the last
 * round's meshing budget, so that every heap gets its turn. */
static tsr_heap_t *reclaim_from;

/* One round over the heaps: each idle one parked, trimmed and meshed
 * (heap.c: tsri_heap_park_idle), then the abandoned pages swept.  True
 * when meshing has more to do. */
static bool reclaim_heaps(void) {
  tsr_heap_t *first = tsri_heap_all();
  bool more = false;
  uint64_t round_end = tsri_os_clock_ns() + TSRI_MESH_IDLE_NS;
  /* from reclaim_from to the list's end, and on from its first back to it */
  tsr_heap_t *from = reclaim_from != NULL ? reclaim_from : first, *h = from;
  reclaim_from = NULL;
  while (h != NULL) {
    bool waits = false;
    if (tsri_heap_park_idle(h)) {
      reclaim_trim(h);
      waits = reclaim_mesh(h, round_end);
      tsri_heap_unpark(h);
    }
    more |= waits;
    h = h->next_all != NULL ? h->next_all : first;
    if (waits && reclaim_from == NULL && tsri_os_clock_ns() >= round_end) reclaim_from = h;
    if (h == from) break;
  }
  tsri_heap_sweep_abandoned();
  return more;
}

static void reclaim_main(void *arg) {
  (void)arg;
  bool more = false;
  for (;;) {
    int64_t every = tsri_option(TSRI_OPT_RECLAIM_MS);
    if (more && every > RECLAIM_MESH_MORE_MS) every = RECLAIM_MESH_MORE_MS;
    tsri_os_sleep_ms((uint32_t)(every > 0 ? every : 1000));
    if (every == 0) continue;   /* tsri_options_init may have read a new value */
    tsri_lock(&reclaim_lock);
    tsri_arena_purge(false);
    tsri_large_purge(false);
    more = reclaim_heaps();
    tsri_unlock(&reclaim_lock);
  }
}

void tsri_reclaim_note(void) {
  if (atomic_load_explicit(&reclaim_running, memory_order_relaxed) ||
      tsri_option(TSRI_OPT_RECLAIM_MS) == 0)
    return;
  /* a fork child goes by its age alone: the committed memory it counts
   * is its parent's */
  uint64_t born = atomic_load_explicit(&reclaim_born_ms, memory_order_relaxed);
  bool big = born == 0 &&
             atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed) >= RECLAIM_AFTER_BYTES;
  if (born == 0) born = tsri_start_ms;
  if (!big && tsri_os_clock_ms() - born < RECLAIM_AFTER_MS) return;
  atomic_store_explicit(&tsri_reclaim_due, 1, memory_order_relaxed);
}

void tsri_reclaim_start(void) {
  atomic_store_explicit(&tsri_reclaim_due, 0, memory_order_relaxed);
  if (atomic_exchange_explicit(&reclaim_running, 1, memory_order_acq_rel)) return;
  int rc = tsri_os_thread_start(reclaim_main, NULL);
  /* EPERM: the program forbade itself system calls since it started, or
   * it could not be told for now (os.h: tsri_os_restricted).  It is told
   * nothing (its stderr may be a socket by then), its slow paths still
   * give memory back, and a later one tries again. */
  if (rc == EPERM) atomic_store_explicit(&reclaim_running, 0, memory_order_relaxed);
  else if (rc != 0)
    tsri_warning("cannot start the reclaimer thread; an idle process keeps its free memory "
                 "until its next allocation");
}

tsri_lock_t *tsri_reclaim_lock_get(void) { return &reclaim_lock; }

void tsri_reclaim_fork_prepare(void) { tsri_lock(&reclaim_lock); }

void tsri_reclaim_fork_parent(void) { tsri_unlock(&reclaim_lock); }

/* The child has no reclaimer: the first slow path that notes the child is
 * a second old starts one (a child that soon execs or exits starts none).
 * locked: the prepare handler took reclaim_lock. */
void tsri_reclaim_fork_child(bool locked) {
  if (locked) tsri_unlock(&reclaim_lock);
  atomic_store_explicit(&reclaim_born_ms, tsri_os_clock_ms(), memory_order_relaxed);
  atomic_store_explicit(&reclaim_running, 0, memory_order_relaxed);
  atomic_store_explicit(&tsri_reclaim_due, 0, memory_order_relaxed);
}
