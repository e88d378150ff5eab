/* test_fork_guarded.c: a fork while another thread is inside an OS call
 * of guarded sampling, run with every allocation guarded and one slot
 * (TESSERA_GUARD_SAMPLE=1, TESSERA_GUARD_SLOTS=1: tests/CMakeLists.txt).
 *
 * A thread handing out a guarded block takes its slot off the free list
 * under the lock and commits the slot's page after releasing it; a thread
 * freeing one makes the page inaccessible outside the lock too, and puts
 * the slot back after.  A fork in either window left the child without
 * the slot for good: the thread that would have given it back is not in
 * the child.  Each test holds the other thread inside that call (the
 * program's own mprotect or mmap, which tessera calls in place of the C
 * library's) until the main thread has forked; the child then needs the
 * slot: its next block must be guarded, on the slot's page.
 */
#include "tsr_criterion.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr_test.h"

#define BLOCK 100

/* 0: calls go through; 1: the holder's next call of the kind waits; 2: it
 * waits; 3: it waited too long (it held a lock the fork needs) */
static _Atomic int hold;
static _Atomic pthread_t holder;
static _Atomic int hold_kind;   /* HOLD_COMMIT or HOLD_GUARD */
enum { HOLD_COMMIT = 1, HOLD_GUARD = 2 };

static void hold_here(void) {
  atomic_store(&hold, 2);
  double give_up = tsr_test_now() + 10.0;
  while (atomic_load(&hold) == 2)
    if (tsr_test_now() > give_up) atomic_store(&hold, 3);
    else sched_yield();
}

static bool held_call(int kind) {
  return atomic_load(&hold) == 1 && atomic_load(&hold_kind) == kind &&
         pthread_equal(pthread_self(), atomic_load(&holder));
}

/* a slot's commit: one OS page made readable and writable */
int mprotect(void *addr, size_t len, int prot) {
  if (len == (size_t)sysconf(_SC_PAGESIZE) && prot == (PROT_READ | PROT_WRITE) && held_call(HOLD_COMMIT))
    hold_here();
  return (int)syscall(SYS_mprotect, addr, len, prot);
}

/* a slot's guard: one OS page mapped anew, inaccessible, in place */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if ((flags & MAP_FIXED) && prot == PROT_NONE && len == (size_t)sysconf(_SC_PAGESIZE) && held_call(HOLD_GUARD))
    hold_here();
  return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static uintptr_t page_of(const void *p) { return (uintptr_t)p & ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1); }

typedef struct holder_arg_s {
  int kind;
  void *block;   /* HOLD_GUARD: the block to free */
} holder_arg_t;

static void *holder_main(void *arg) {
  holder_arg_t *a = arg;
  atomic_store(&holder, pthread_self());
  atomic_store(&hold_kind, a->kind);
  atomic_store(&hold, 1);
  if (a->kind == HOLD_COMMIT) a->block = tsr_malloc(BLOCK);
  else tsr_free(a->block);
  return NULL;
}

/* The child's first block: on the slot's page (`slot`), or exit 20. */
static void child_uses_the_slot(uintptr_t slot) {
  void *p = tsr_malloc(BLOCK);
  if (p == NULL || page_of(p) != slot) {
    fprintf(stderr, "child: block %p is not on the guarded slot's page %#lx\n", p, (unsigned long)slot);
    _exit(20);
  }
  memset(p, 0x5a, BLOCK);
  tsr_free(p);
  _exit(tsr_check() == 0 ? 0 : 21);
}

/* Run the holder (kind) until its call is held, fork, and check the child. */
static void fork_inside(holder_arg_t *a, uintptr_t slot) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, holder_main, a), 0);
  double deadline = tsr_test_now() + 30.0;
  while (atomic_load(&hold) != 2 && tsr_test_now() < deadline) sched_yield();
  int reached = atomic_load(&hold);
  pid_t pid = -1;
  if (reached == 2) {
    fflush(NULL);
    pid = fork();
    if (pid == 0) child_uses_the_slot(slot);
  }
  int held = atomic_exchange(&hold, 0);
  pthread_join(t, NULL);
  cr_assert_eq(reached, 2, "the holder made no such call");
  cr_assert_geq(pid, 0, "fork failed");
  cr_assert_eq(held, 2, "the call was held under a lock fork needs: the fork came after it");
  char why[64];
  cr_assert(tsr_test_exited_0(pid, why, sizeof why), "the fork child failed: %s", why);
}

/* The slot's page: a first block, freed (the slot is free again). */
static uintptr_t the_slot(void) {
  void *p = tsr_malloc(BLOCK);
  cr_assert_not_null(p);
  uintptr_t slot = page_of(p), page = (uintptr_t)sysconf(_SC_PAGESIZE);
  /* a guard page follows a guarded block's page: the kernel cannot read
   * it (write(2) from it fails with EFAULT, where a fault would end us) */
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  errno = 0;
  bool guarded = write(fds[1], (const void *)(slot + page), 1) < 0 && errno == EFAULT;
  close(fds[0]);
  close(fds[1]);
  cr_assert(guarded, "block %p is not guarded (TESSERA_GUARD_SAMPLE=1, TESSERA_GUARD_SLOTS=1)", p);
  tsr_free(p);
  void *q = tsr_malloc(BLOCK);
  cr_assert_eq(page_of(q), slot, "blocks are not guarded (TESSERA_GUARD_SAMPLE=1, TESSERA_GUARD_SLOTS=1)");
  tsr_free(q);
  return slot;
}

Test(fork_guarded, fork_while_a_thread_commits_a_guarded_slot, .timeout = 60) {
  uintptr_t slot = the_slot();
  holder_arg_t a = { HOLD_COMMIT, NULL };
  fork_inside(&a, slot);
  cr_assert_eq(page_of(a.block), slot);
  tsr_free(a.block);
  cr_assert_eq(tsr_check(), 0);
}

Test(fork_guarded, fork_while_a_thread_guards_a_freed_slot, .timeout = 60) {
  uintptr_t slot = the_slot();
  holder_arg_t a = { HOLD_GUARD, tsr_malloc(BLOCK) };
  cr_assert_eq(page_of(a.block), slot);
  fork_inside(&a, slot);
  void *p = tsr_malloc(BLOCK);
  cr_assert_eq(page_of(p), slot, "the parent lost the slot");
  tsr_free(p);
  cr_assert_eq(tsr_check(), 0);
}
