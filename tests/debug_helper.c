/* debug_helper.c: one memory error per run, for test_debug.c.
 *
 *   TESSERA_DEBUG=... | TESSERA_GUARD_SAMPLE=1  debug_helper CASE
 *
 * Built twice: debug_helper calls tsr_malloc and tsr_free (linked with
 * the prefixed library, so it runs under every sanitizer), and
 * debug_helper_override calls malloc and free, which the override
 * library answers, as a program that knows nothing of tessera would.
 * The victim block is made in alloc_victim and freed in free_victim
 * (functions of their own, never inlined), so that a message's stacks
 * can be checked by name.  It prints "block=0x..." (the victim) before
 * the error, and "value=..." for a read, on unbuffered stdout.
 *
 * Cases: overflow (one byte past a 13-byte block), underflow (one byte
 * before it), write_after_free, read_after_free, uninit (a read of a new
 * block), double_free, align (every block of sizes 0 to 100 aligned to
 * 16 bytes and as large as asked: exit 3 otherwise), and two_errors (under
 * TESSERA_ON_ERROR=continue: a double free, then an overflow, and what
 * tsr_stats_get counts of them: "errors=2 double_free=1 overflow=1"), and
 * usable (a 50-byte block written to its usable size, which it prints).
 */
#include "tsr_helper.h"

#if defined(TSR_HELPER_OVERRIDE)
#include <malloc.h>
#define ALLOC malloc
#define FREE free
#define USABLE malloc_usable_size
#else
#define ALLOC tsr_malloc
#define FREE tsr_free
#define USABLE tsr_usable_size
#endif

__attribute__((noinline)) char *alloc_victim(size_t size) {
  char *p = ALLOC(size);
  __asm__ volatile("" ::: "memory");
  return p;
}

__attribute__((noinline)) void free_victim(char *p) {
  FREE(p);
  __asm__ volatile("" ::: "memory");
}

static char *victim(size_t size) {
  char *p = alloc_victim(size);
  char addr[32];
  tsr_test_addr(addr, sizeof addr, p);
  printf("block=%s\n", addr);
  return p;
}

static int run_case(const char *name) {
  if (strcmp(name, "overflow") == 0) {
    volatile char *p = victim(13);
    memset((char *)p, 'a', 13);
    p[13] = 'x';
    free_victim((char *)p);
  } else if (strcmp(name, "underflow") == 0) {
    volatile char *p = victim(13);
    p[-1] = 'x';
    free_victim((char *)p);
  } else if (strcmp(name, "write_after_free") == 0) {
    volatile char *p = victim(40);
    free_victim((char *)p);
    p[3] = 'x';
  } else if (strcmp(name, "read_after_free") == 0) {
    volatile char *p = victim(40);
    memset((char *)p, 7, 40);
    free_victim((char *)p);
    printf("value=%x\n", (unsigned)(unsigned char)p[3]);
  } else if (strcmp(name, "uninit") == 0) {
    volatile unsigned *p = (volatile unsigned *)(void *)victim(40);
    printf("value=%x\n", p[2]);
    free_victim((char *)p);
  } else if (strcmp(name, "double_free") == 0) {
    char *p = victim(40);
    free_victim(p);
    free_victim(p);
  } else if (strcmp(name, "two_errors") == 0) {
    char *p = victim(40);
    free_victim(p);
    free_victim(p);
    volatile char *q = victim(13);
    q[13] = 'x';
    free_victim((char *)q);
    tsr_stats_t s = tsr_test_stats();
    printf("errors=%llu double_free=%llu overflow=%llu\n", (unsigned long long)s.errors,
           (unsigned long long)s.errors_by_kind[TSR_ERROR_DOUBLE_FREE],
           (unsigned long long)s.errors_by_kind[TSR_ERROR_OVERFLOW]);
  } else if (strcmp(name, "raise_segv") == 0) {
    /* a program with SIGSEGV at its default action (a sanitizer's runtime
     * may have put its own in: it goes) sends itself one after a guarded
     * block set tessera's handler up: the signal must still end it */
    signal(SIGSEGV, SIG_DFL);
    free_victim(alloc_victim(64));
    raise(SIGSEGV);
    return 4;
  } else if (strcmp(name, "align") == 0) {
    /* every block 16-byte aligned and as large as asked, malloc(0) too */
    for (size_t size = 0; size <= 100; size++) {
      char *p = alloc_victim(size);
      if (p == NULL || (uintptr_t)p % 16 != 0 || USABLE(p) < (size ? size : 1)) {
        printf("size=%zu block=%p\n", size, (void *)p);
        return 3;
      }
      free_victim(p);
    }
  } else if (strcmp(name, "usable") == 0) {
    /* a program may write every byte malloc_usable_size gives it (Redis's
     * strings grow into them): no overflow at the free */
    char *p = alloc_victim(50);
    size_t n = USABLE(p);
    memset(p, 'x', n);
    free_victim(p);
    printf("value=%zu\n", n);
  } else {
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) { return tsr_helper_main(argc, argv, run_case, "TESSERA_DEBUG=all"); }
