/* mesh_fence.c: meshing's write barrier.
 *
 * Owns: the fence a meshing step puts up around the virtual page it copies
 * (mesh.c), the fence of fork over every page mapped from the shared file,
 * the fault function that makes a writer wait for either, and the count of
 * fences that lets a system call the kernel failed with EFAULT run again
 * (override_io.c).
 *
 * A page being copied into the shared file is read-only for the time of
 * the copy: a thread that writes to it faults and waits here until the
 * page is mapped from the file, then runs its write again there; reads
 * never wait.  The kernel cannot wait: a system call writing into such a
 * page (read(2) into a buffer there) fails with EFAULT instead.  The C
 * library's read family as libtessera.so defines it (override_io.c) asks
 * here whether a buffer is memory meshing may fence; such reads go
 * through the stack where they can, and otherwise may be made again:
 * every fence, put up or taken down, moves a count, read before the call,
 * and after an EFAULT the fence up now is waited for and the count
 * compared: a fault that was meshing's goes away, one that is the
 * program's comes back with no fence in between and is returned.
 * docs/design.md ("The kernel's writes").
 */
#include "internal.h"

#include <errno.h>

static _Atomic uintptr_t fence_page;   /* the page being copied, 0: none */
static _Atomic uint64_t fence_seq;     /* fences ended */
static _Atomic uint64_t fence_moves;   /* fences put up or taken down, fork's included */
static _Atomic uint64_t fig_pause_max; /* the longest a page stayed fenced, ns */
static _Atomic int fork_fence;
/* Who put fork's fence up: set before it goes up (its store publishes
 * them).  Atomic: a writer that saw one fork's fence may read them still
 * while the next fork sets them. */
static _Atomic uint32_t fork_pid, fork_tid;
static TSRI_TLS uintptr_t fault_last_page;
static TSRI_TLS uint64_t fault_last_seq;
static uint8_t unshare_buf[TSRI_MESH_PAGE_MAX];

void tsri_mesh_unshare(uintptr_t va) {
  size_t page_size = tsri_os_page_size();
  memcpy(unshare_buf, (const void *)va, page_size);
  if (tsri_os_private_map((void *)va, page_size) == 0) memcpy((void *)va, unshare_buf, page_size);
}

void tsri_mesh_writable_again(uintptr_t va) {
  size_t page_size = tsri_os_page_size();
  if (tsri_os_protect((void *)va, page_size, true) == 0) return;
  memcpy(unshare_buf, (const void *)va, page_size);
  if (tsri_os_private_map((void *)va, page_size) == 0) {
    memcpy((void *)va, unshare_buf, page_size);
    return;
  }
  tsri_warning("meshing: the OS refused to make page %p writable again; stopping", (void *)va);
  tsri_os_abort();
}

bool tsri_mesh_fault(void *addr) {
  size_t page_size = tsri_os_page_size();
  uintptr_t page = (uintptr_t)addr & ~(uintptr_t)(page_size - 1);
  uint64_t seq = atomic_load_explicit(&fence_seq, memory_order_acquire);
  /* fence_page is 0 with no fence up: a fault in page 0 (a NULL pointer's
   * field) is the program's, never a writer to wait */
  if (page != 0 && atomic_load_explicit(&fence_page, memory_order_acquire) == page) {
    for (uint32_t r = 0; atomic_load_explicit(&fence_page, memory_order_acquire) == page; r++) tsri_wait_brief(r);
    return true;
  }
  if (!tsri_arena_registered(page & ~(uintptr_t)TSR_ARENA_MASK)) return false;
  if (atomic_load_explicit(&fork_fence, memory_order_acquire)) {
    if (tsri_os_process_id() != atomic_load_explicit(&fork_pid, memory_order_relaxed)) {
      tsri_mesh_unshare(page);   /* a fork child writing before its handler ran */
    } else if (tsri_os_thread_id() == atomic_load_explicit(&fork_tid, memory_order_relaxed)) {
      /* the forking thread itself, between fork's prepare and parent
       * handlers: it cannot wait for itself */
      tsri_os_protect((void *)page, page_size, true);
    } else {
      for (uint32_t r = 0; atomic_load_explicit(&fork_fence, memory_order_acquire); r++) tsri_wait_brief(r);
    }
    return true;
  }
  /* A fault on our memory as a fence ended: run it again, once per fence
   * (a second fault at the same page with no fence in between is real). */
  if (fault_last_page == page && fault_last_seq == seq) return false;
  fault_last_page = page;
  fault_last_seq = seq;
  return true;
}

void tsri_mesh_fence_begin(uintptr_t va) {
  atomic_store_explicit(&fence_page, va, memory_order_seq_cst);
  atomic_fetch_add_explicit(&fence_moves, 1, memory_order_seq_cst);
}

void tsri_mesh_fence_end(uint64_t since_ns) {
  atomic_fetch_add_explicit(&fence_seq, 1, memory_order_release);
  atomic_store_explicit(&fence_page, 0, memory_order_seq_cst);
  atomic_fetch_add_explicit(&fence_moves, 1, memory_order_seq_cst);
  uint64_t took = tsri_os_clock_ns() - since_ns;
  if (took > atomic_load_explicit(&fig_pause_max, memory_order_relaxed))
    atomic_store_explicit(&fig_pause_max, took, memory_order_relaxed);
}

uint64_t tsri_mesh_pause_max(void) { return atomic_load_explicit(&fig_pause_max, memory_order_relaxed); }

void tsri_mesh_fork_fence(bool up) {
  if (up) {
    atomic_store_explicit(&fork_pid, tsri_os_process_id(), memory_order_relaxed);
    atomic_store_explicit(&fork_tid, tsri_os_thread_id(), memory_order_relaxed);
  }
  atomic_store_explicit(&fork_fence, up, memory_order_seq_cst);
  atomic_fetch_add_explicit(&fence_moves, 1, memory_order_seq_cst);
}

bool tsri_mesh_fork_fenced(void) { return atomic_load_explicit(&fork_fence, memory_order_relaxed) != 0; }

uint64_t tsri_mesh_fences(void) { return atomic_load_explicit(&fence_moves, memory_order_seq_cst); }

/* A page being copied, or fork's fence over them all. */
static bool fence_up(void) {
  return atomic_load_explicit(&fence_page, memory_order_seq_cst) != 0 ||
         atomic_load_explicit(&fork_fence, memory_order_seq_cst);
}

bool tsri_mesh_fenced_since(uint64_t seen) {
  int saved = errno;
  bool moved = false;
  /* fork's fence is lowered by the thread that forks, once the child has
   * its own memory, and in the child by its handler: a fork handler of
   * the program's that ran before tessera's, in either, would wait for
   * itself, and keeps its EFAULT */
  if (atomic_load_explicit(&fork_fence, memory_order_seq_cst) &&
      (tsri_os_process_id() != atomic_load_explicit(&fork_pid, memory_order_relaxed) ||
       tsri_os_thread_id() == atomic_load_explicit(&fork_tid, memory_order_relaxed)))
    goto out;
  for (uint32_t r = 0; fence_up(); r++) tsri_wait_brief(r);
  moved = atomic_load_explicit(&fence_moves, memory_order_seq_cst) != seen;
out:
  errno = saved;
  return moved;
}

bool tsri_mesh_fence_moved(uint64_t seen) {
  return atomic_load_explicit(&fence_moves, memory_order_seq_cst) != seen || fence_up();
}

_Atomic int tsri_mesh_armed;

bool tsri_mesh_fenceable(uintptr_t p, size_t n) {
  if (!atomic_load_explicit(&tsri_mesh_armed, memory_order_relaxed) || n == 0 || p + n < p) return false;
  const tsr_page_t *pg = tsri_page_of((const void *)p);
  return pg != NULL && pg->capacity != 0 && p + n <= tsri_page_base(pg) + (size_t)pg->span_slots * TSR_SLOT_SIZE;
}
