/* test_win_api.c: the malloc family on Windows, through the prefixed API:
 * sizes across every class and into large blocks, alignment, calloc
 * overflow and zeroing, realloc keeping contents, the answers to sizes
 * nobody can have, and the heap check after each. */
#include "win_test.h"

#include <errno.h>
#include <stdint.h>
#include <tessera.h>

/* Keep the compiler from folding sizes it can see are impossible. */
static volatile size_t opaque;
#define HUGE(x) ((size_t)(x) + opaque)

static void fill(unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + i * 7);
}

static size_t verify(const unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(tag + i * 7)) return i;
  return n;
}

static void sizes_every_class_and_large(void) {
  static void *blocks[600];
  size_t n = 0;
  for (size_t size = 1; size <= ((size_t)4 << 20) && n < 600; size += size / 8 + 1) {
    unsigned char *p = tsr_malloc(size);
    CHECK_MSG(p != NULL, "malloc(%zu) failed", size);
    CHECK_MSG(((uintptr_t)p & 15) == 0, "malloc(%zu) = %p is not 16-byte aligned", size, (void *)p);
    CHECK_MSG(tsr_usable_size(p) >= size, "usable %zu < %zu", tsr_usable_size(p), size);
    CHECK(tsr_owns(p));
    fill(p, size, (unsigned)size);
    blocks[n++] = p;
  }
  CHECK(tsr_check() == 0);
  size_t i = 0;
  for (size_t size = 1; size <= ((size_t)4 << 20) && i < n; size += size / 8 + 1, i++) {
    CHECK_MSG(verify(blocks[i], size, (unsigned)size) == size, "block of %zu overwritten", size);
    tsr_free(blocks[i]);
  }
  CHECK(tsr_check() == 0);
}

static void malloc_zero_is_unique(void) {
  void *a = tsr_malloc(0), *b = tsr_malloc(0);
  CHECK(a != NULL && b != NULL && a != b);
  tsr_free(a);
  tsr_free(b);
}

static void alignment_powers_of_two(void) {
  for (size_t align = 16; align <= ((size_t)1 << 22); align <<= 1) {
    size_t sizes[] = { 1, align / 2 + 1, align, 3 * align + 5 };
    for (size_t k = 0; k < 4; k++) {
      void *p = tsr_aligned_alloc(align, sizes[k]);
      CHECK_MSG(p != NULL, "aligned_alloc(%zu, %zu) failed", align, sizes[k]);
      CHECK_MSG(((uintptr_t)p & (align - 1)) == 0, "aligned_alloc(%zu) = %p", align, p);
      CHECK(tsr_usable_size(p) >= sizes[k]);
      memset(p, 0xab, sizes[k]);
      tsr_free(p);
      void *q = NULL;
      CHECK(tsr_posix_memalign(&q, align, sizes[k]) == 0);
      CHECK(((uintptr_t)q & (align - 1)) == 0);
      tsr_free(q);
    }
  }
  CHECK(tsr_check() == 0);
}

static void bad_alignment_is_einval(void) {
  void *q = (void *)1;
  CHECK(tsr_posix_memalign(&q, 24, 10) == EINVAL);
  CHECK(q == (void *)1);
  CHECK(tsr_posix_memalign(&q, 0, 10) == EINVAL);
  CHECK(tsr_posix_memalign(&q, sizeof(void *) / 2, 10) == EINVAL);
  errno = 0;
  CHECK(tsr_aligned_alloc(48, 96) == NULL);
  CHECK(errno == EINVAL);
}

static void calloc_overflow_is_enomem(void) {
  errno = 0;
  CHECK(tsr_calloc(HUGE(SIZE_MAX / 2 + 1), 2) == NULL);
  CHECK(errno == ENOMEM);
  errno = 0;
  CHECK(tsr_calloc(2, HUGE(SIZE_MAX / 2 + 1)) == NULL);
  CHECK(errno == ENOMEM);
  errno = 0;
  CHECK(tsr_calloc(HUGE(SIZE_MAX), HUGE(SIZE_MAX)) == NULL);
  CHECK(errno == ENOMEM);
  errno = 0;
  CHECK(tsr_reallocarray(NULL, HUGE(SIZE_MAX / 4), 8) == NULL);
  CHECK(errno == ENOMEM);
}

static void huge_malloc_is_enomem(void) {
  size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)PTRDIFF_MAX + 1 };
  for (size_t i = 0; i < 4; i++) {
    errno = 0;
    void *p = tsr_malloc(HUGE(sizes[i]));
    CHECK_MSG(p == NULL, "malloc(%zu) succeeded", sizes[i]);
    CHECK_MSG(errno == ENOMEM, "malloc(%zu): errno %d", sizes[i], errno);
  }
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  CHECK(tsr_stats_get(&s) == 0);
  CHECK_MSG(s.errors == 0, "running out of memory is not a bad call");
}

static void calloc_zeroes_reused_memory(void) {
  for (int round = 0; round < 3; round++) {
    size_t sizes[] = { 24, 1000, 5000, 70000, 300000 };
    for (size_t i = 0; i < 5; i++) {
      unsigned char *p = tsr_malloc(sizes[i]);
      CHECK(p != NULL);
      memset(p, 0xee, sizes[i]);
      tsr_free(p);
      unsigned char *q = tsr_calloc(1, sizes[i]);
      CHECK(q != NULL);
      for (size_t k = 0; k < sizes[i]; k++) CHECK_MSG(q[k] == 0, "calloc(%zu) byte %zu", sizes[i], k);
      tsr_free(q);
    }
  }
}

static void realloc_keeps_contents(void) {
  size_t steps[] = { 1, 15, 16, 100, 1024, 5000, 65536, 131072, 131073, 1 << 20, 3 << 20, 200000, 3000, 7 };
  unsigned char *p = NULL;
  size_t have = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    size_t n = steps[i];
    unsigned char *q = tsr_realloc(p, n);
    CHECK_MSG(q != NULL, "realloc to %zu failed", n);
    size_t keep = have < n ? have : n;
    CHECK_MSG(verify(q, keep, 0x5a) == keep, "realloc %zu -> %zu lost contents", have, n);
    CHECK(tsr_usable_size(q) >= n);
    fill(q, n, 0x5a);
    p = q;
    have = n;
  }
  CHECK(tsr_realloc(p, 0) == NULL);   /* frees, as glibc */
  CHECK(tsr_check() == 0);
  void *r = tsr_realloc(NULL, 40);    /* malloc */
  CHECK(r != NULL && tsr_owns(r));
  tsr_free(r);
}

static void free_null_keeps_errno(void) {
  errno = 1234;
  tsr_free(NULL);
  CHECK(errno == 1234);
  void *p = tsr_malloc(100);
  errno = 4321;
  tsr_free(p);
  CHECK(errno == 4321);
}

WT_MAIN(WT_CASE(sizes_every_class_and_large), WT_CASE(malloc_zero_is_unique),
        WT_CASE(alignment_powers_of_two), WT_CASE(bad_alignment_is_einval),
        WT_CASE(calloc_overflow_is_enomem), WT_CASE(huge_malloc_is_enomem),
        WT_CASE(calloc_zeroes_reused_memory), WT_CASE(realloc_keeps_contents),
        WT_CASE(free_null_keeps_errno))
