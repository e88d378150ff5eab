/* test_locked.c: a program that locks its memory, mlockall(MCL_CURRENT |
 * MCL_FUTURE), as real-time programs do so that no thread of theirs waits
 * for a page fault (issue 18: real-time threads).
 *
 * The kernel refuses MADV_DONTNEED in locked memory, which is how tessera
 * gave pages back: such a program kept its peak for good (a churn of
 * 150 MB of small blocks and twenty 1 MiB buffers, all freed, left 189 MB
 * resident where glibc's heap left 6 MB), and its first large block filled
 * a whole writable segment at once.  Now a decommit there maps the range
 * afresh, inaccessible, and segments are committed run by run.  Each case
 * runs in a child, which locks its memory (root, or a memlock limit that
 * allows it; skipped with a message where the OS refuses), allocates and
 * frees through every size class and large blocks, checks every block's
 * contents, and gives everything back with tsr_collect.  Not under ASan or
 * TSan, whose shadow memory a lock of all future mappings would fill.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <sys/mman.h>

#define SMALL 100000
#define BIG 24

static unsigned char *small[SMALL];
static unsigned char *big[BIG];

static size_t small_size(size_t i, int round) { return 16 + (i * 37 + (size_t)round * 11) % 3000; }
static size_t big_size(size_t i) { return ((size_t)1 << 20) + i * 40960; }

/* Allocate, fill, check and free: exit code 0, or a number naming what
 * went wrong. */
static int churn(int rounds) {
  for (int r = 0; r < rounds; r++) {
    for (size_t i = 0; i < SMALL; i++) {
      small[i] = tsr_malloc(small_size(i, r));
      if (small[i] == NULL) return 10;
      tsr_test_fill(small[i], small_size(i, r), i + (uint64_t)r);
    }
    for (size_t i = 0; i < BIG; i++) {
      big[i] = tsr_malloc(big_size(i));
      if (big[i] == NULL) return 11;
      tsr_test_fill(big[i], big_size(i), i * 7 + (uint64_t)r);
    }
    for (size_t i = 0; i < BIG; i += 2) {   /* grown in place or moved */
      unsigned char *p = tsr_realloc(big[i], big_size(i) + 300000);
      if (p == NULL) return 12;
      big[i] = p;
      tsr_test_fill(big[i] + big_size(i), 300000, i);
    }
    for (size_t i = 0; i < SMALL; i++) {
      if (tsr_test_verify(small[i], small_size(i, r), i + (uint64_t)r) != small_size(i, r)) return 13;
      tsr_free(small[i]);
    }
    for (size_t i = 0; i < BIG; i++) {
      if (tsr_test_verify(big[i], big_size(i), i * 7 + (uint64_t)r) != big_size(i)) return 14;
      tsr_free(big[i]);
    }
    tsr_collect();   /* each round finds its ranges given back */
  }
  return 0;
}

static void locked_child(void *arg) {
  (void)arg;
  /* a segment made before the lock is writable from the start: its runs
   * given back later become inaccessible, and must be committed again */
  tsr_free(tsr_malloc((size_t)2 << 20));
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) _exit(77);
  int rc = churn(3);
  if (rc != 0) _exit(rc);
  for (size_t i = 0; i < SMALL; i++) {
    small[i] = tsr_malloc(small_size(i, 0));
    if (small[i] == NULL) _exit(15);
    memset(small[i], 1, small_size(i, 0));
  }
  size_t peak = tsr_test_rss();
  for (size_t i = 0; i < SMALL; i++) tsr_free(small[i]);
  tsr_collect();
  size_t after = tsr_test_rss();
  /* 150 MB of blocks freed: what stays is the program, its arrays and
   * tessera's records, not the blocks' pages */
  if (after > peak / 4) {
    fprintf(stderr, "resident %zu KiB after the frees, %zu KiB at the peak\n", after >> 10, peak >> 10);
    _exit(16);
  }
  _exit(0);
}

Test(locked, a_locked_heap_gives_memory_back_and_keeps_its_blocks, .timeout = 120) {
  if (TSR_TEST_SHADOW) cr_skip_test("a lock of all future mappings would fill the sanitizer's shadow memory");
  tsr_child_t child;
  cr_assert(tsr_test_run_child(locked_child, NULL, &child));
  if (WIFEXITED(child.status) && WEXITSTATUS(child.status) == 77)
    cr_skip_test("mlockall refused (needs root or a memlock limit of a few hundred MiB)");
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0, "%s %d\n%s",
            WIFEXITED(child.status) ? "exit" : "signal",
            WIFEXITED(child.status) ? WEXITSTATUS(child.status) : WTERMSIG(child.status), child.err);
}
