/* test_api.c: the malloc family through the tsr_ names, with the C, POSIX
 * and glibc semantics tessera.h promises: special sizes, overflow, errno,
 * realloc across the small/large boundary, the aligned variants, and the
 * ownership and statistics calls.  Every test ends with tsr_check() == 0.
 */
#include "tsr_criterion.h"

#include <stdalign.h>

#include "tsr_test.h"

#define SMALL_MAX ((size_t)128 * 1024)
#define ERRNO_MARK 1234

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void heap_is_sound(void) { cr_assert_eq(tsr_check(), 0, "tsr_check found problems"); }

/* ------------------------------------------------------------------------
 * malloc, calloc, free
 * ---------------------------------------------------------------------- */

Test(api, malloc_zero_is_unique_and_freeable) {
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = tsr_malloc(0);
    cr_assert_not_null(p[i]);
    cr_assert(tsr_owns(p[i]));
    for (int j = 0; j < i; j++) cr_assert_neq(p[i], p[j], "malloc(0) returned %p twice", p[i]);
  }
  for (int i = 0; i < N; i++) tsr_free(p[i]);
  heap_is_sound();
}

Test(api, free_null_is_a_no_op) {
  errno = ERRNO_MARK;
  tsr_free(NULL);
  cr_assert_eq(errno, ERRNO_MARK);
  heap_is_sound();
}

Test(api, calloc_zeroes) {
  static const size_t sizes[] = { 1, 15, 16, 100, 1000, 4096, 60000, SMALL_MAX, SMALL_MAX + 1, 3 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint8_t *p = tsr_calloc(1, sizes[i]);
    cr_assert_not_null(p);
    for (size_t k = 0; k < sizes[i]; k++) cr_assert_eq(p[k], 0, "calloc(%zu) byte %zu", sizes[i], k);
    tsr_free(p);
  }
  heap_is_sound();
}

/* calloc of a block that was just freed dirty must still give zeroes: the
 * small classes reuse the block, large blocks reuse a cached mapping. */
Test(api, calloc_zeroes_reused_dirty_memory) {
  static const size_t sizes[] = { 8, 48, 256, 3000, 20000, SMALL_MAX, SMALL_MAX + 4096, 1 << 20, 5 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    for (int round = 0; round < 3; round++) {
      uint8_t *p = tsr_malloc(n);
      cr_assert_not_null(p);
      memset(p, 0xff, tsr_usable_size(p));
      tsr_free(p);
      uint8_t *q = tsr_calloc(n / 4 ? n / 4 : 1, 4);
      cr_assert_not_null(q);
      size_t total = (n / 4 ? n / 4 : 1) * 4;
      for (size_t k = 0; k < total; k++)
        cr_assert_eq(q[k], 0, "calloc(%zu) after a dirty free: byte %zu is %#x", total, k, q[k]);
      tsr_free(q);
    }
  }
  heap_is_sound();
}

Test(api, calloc_overflow_is_enomem) {
  errno = 0;
  cr_assert_null(tsr_calloc(HUGE(SIZE_MAX / 2 + 1), 2));
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(tsr_calloc(2, HUGE(SIZE_MAX / 2 + 1)));
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(tsr_calloc(HUGE(SIZE_MAX), HUGE(SIZE_MAX)));
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(tsr_calloc(HUGE((size_t)1 << 32), HUGE((size_t)1 << 32)));
  cr_assert_eq(errno, ENOMEM);
  /* a product that fits but is too big for any mapping */
  errno = 0;
  cr_assert_null(tsr_calloc(HUGE(PTRDIFF_MAX / 2), 2));
  cr_assert_eq(errno, ENOMEM);
  void *z = tsr_calloc(0, HUGE(SIZE_MAX));   /* zero bytes: no overflow */
  cr_assert_not_null(z);
  tsr_free(z);
  heap_is_sound();
}

Test(api, huge_malloc_is_enomem) {
  static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX,
                                  (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX - 4096,
                                  (size_t)1 << 62 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    void *p = tsr_malloc(HUGE(sizes[i]));
    cr_assert_null(p, "malloc(%zu) succeeded", sizes[i]);
    cr_assert_eq(errno, ENOMEM, "malloc(%zu): errno %d", sizes[i], errno);
  }
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.large_live, 0);
  cr_assert_eq(s.errors, 0, "running out of memory is not a bad call");
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * realloc
 * ---------------------------------------------------------------------- */

/* realloc p (holding `have` bytes of the pattern tagged tag) to size n and
 * check the common prefix survived; returns the new block. */
static void *realloc_keeps(void *p, size_t have, size_t n, uint64_t tag) {
  void *q = tsr_realloc(p, n);
  cr_assert_not_null(q, "realloc(%p, %zu) failed", p, n);
  size_t keep = have < n ? have : n;
  cr_assert_eq(tsr_test_verify(q, keep, tag), keep, "realloc %zu -> %zu lost contents at %zu",
               have, n, tsr_test_verify(q, keep, tag));
  cr_assert_geq(tsr_usable_size(q), n);
  tsr_test_fill(q, n, tag);
  return q;
}

static void realloc_chain(const size_t *sizes, size_t count, uint64_t tag) {
  void *p = tsr_malloc(sizes[0]);
  cr_assert_not_null(p);
  tsr_test_fill(p, sizes[0], tag);
  for (size_t i = 1; i < count; i++) p = realloc_keeps(p, sizes[i - 1], sizes[i], tag);
  tsr_free(p);
}

Test(api, realloc_small_to_small) {
  static const size_t grow[] = { 1, 8, 17, 64, 65, 200, 1000, 1025, 4096, 9000, 65536, SMALL_MAX };
  realloc_chain(grow, sizeof grow / sizeof grow[0], 1);
  static const size_t shrink[] = { SMALL_MAX, 100000, 60000, 4000, 1024, 100, 16, 1 };
  realloc_chain(shrink, sizeof shrink / sizeof shrink[0], 2);
  static const size_t wobble[] = { 100, 90, 110, 50, 300, 33, 1024, 1023, 1025 };
  realloc_chain(wobble, sizeof wobble / sizeof wobble[0], 3);
  heap_is_sound();
}

Test(api, realloc_small_to_large_and_back) {
  static const size_t sizes[] = { 100, SMALL_MAX + 1, 1000, SMALL_MAX, 2 * SMALL_MAX, 64, 1 << 20, 16 };
  realloc_chain(sizes, sizeof sizes / sizeof sizes[0], 4);
  heap_is_sound();
}

/* Large to large goes through mremap; the contents must move with it. */
Test(api, realloc_large_to_large) {
  static const size_t sizes[] = { 1 << 20, 8 << 20, (8 << 20) + 1, 64 << 20, 3 << 20,
                                  (3 << 20) - 100, 300000, 32 << 20, 200000 };
  realloc_chain(sizes, sizeof sizes / sizeof sizes[0], 5);
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.large_live, 0);
  heap_is_sound();
}

/* Many large blocks live while one of them moves: the table of large
 * blocks must follow the move and keep finding all of them. */
Test(api, realloc_large_among_many) {
  enum { N = 40 };
  void *b[N];
  size_t n[N];
  for (int i = 0; i < N; i++) {
    n[i] = SMALL_MAX + 4096 * (size_t)(i + 1);
    b[i] = tsr_malloc(n[i]);
    cr_assert_not_null(b[i]);
    tsr_test_fill(b[i], n[i], (uint64_t)i);
  }
  for (int round = 0; round < 4; round++) {
    for (int i = round % 2; i < N; i += 2) {
      size_t m = round % 2 ? n[i] / 2 + SMALL_MAX : n[i] * 3;
      b[i] = realloc_keeps(b[i], n[i], m, (uint64_t)i);
      n[i] = m;
    }
  }
  for (int i = 0; i < N; i++) {
    cr_assert_eq(tsr_test_verify(b[i], n[i], (uint64_t)i), n[i]);
    cr_assert(tsr_owns(b[i]));
    tsr_free(b[i]);
  }
  cr_assert_eq(tsr_test_stats().large_live, 0);
  heap_is_sound();
}

Test(api, realloc_null_is_malloc) {
  void *p = tsr_realloc(NULL, 100);
  cr_assert_not_null(p);
  cr_assert(tsr_owns(p));
  cr_assert_geq(tsr_usable_size(p), 100);
  tsr_free(p);
  void *l = tsr_realloc(NULL, 1 << 20);
  cr_assert_not_null(l);
  cr_assert_geq(tsr_usable_size(l), (size_t)1 << 20);
  tsr_free(l);
  void *z = tsr_realloc(NULL, 0);
  cr_assert_not_null(z, "realloc(NULL, 0) is malloc(0): a unique pointer");
  tsr_free(z);
  heap_is_sound();
}

Test(api, realloc_to_zero_frees) {
  void *p = tsr_malloc(100);
  errno = ERRNO_MARK;
  cr_assert_null(tsr_realloc(p, 0));
  cr_assert_eq(errno, ERRNO_MARK);
  cr_assert_not(tsr_owns(p), "realloc(p, 0) must free p");
  void *l = tsr_malloc(1 << 20);
  cr_assert_null(tsr_realloc(l, 0));
  cr_assert_not(tsr_owns(l));
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.large_live, 0);
  cr_assert_eq(s.errors, 0);
  heap_is_sound();
}

Test(api, realloc_failure_keeps_the_block) {
  uint8_t *p = tsr_malloc(1000);
  tsr_test_fill(p, 1000, 9);
  errno = 0;
  cr_assert_null(tsr_realloc(p, HUGE(SIZE_MAX)));
  cr_assert_eq(errno, ENOMEM);
  cr_assert(tsr_owns(p));
  cr_assert_eq(tsr_test_verify(p, 1000, 9), 1000);
  uint8_t *l = tsr_malloc(1 << 20);
  tsr_test_fill(l, 1 << 20, 10);
  errno = 0;
  cr_assert_null(tsr_realloc(l, HUGE((size_t)PTRDIFF_MAX)));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(tsr_test_verify(l, 1 << 20, 10), (size_t)1 << 20);
  tsr_free(p);
  tsr_free(l);
  heap_is_sound();
}

Test(api, reallocarray) {
  uint32_t *a = tsr_reallocarray(NULL, 10, sizeof *a);
  cr_assert_not_null(a);
  for (uint32_t i = 0; i < 10; i++) a[i] = i * 3;
  a = tsr_reallocarray(a, 100000, sizeof *a);
  cr_assert_not_null(a);
  for (uint32_t i = 0; i < 10; i++) cr_assert_eq(a[i], i * 3);
  errno = 0;
  cr_assert_null(tsr_reallocarray(a, HUGE(SIZE_MAX / 2 + 1), 2));
  cr_assert_eq(errno, ENOMEM);
  /* the old block is untouched and still ours */
  cr_assert(tsr_owns(a));
  for (uint32_t i = 0; i < 10; i++) cr_assert_eq(a[i], i * 3);
  errno = 0;
  cr_assert_null(tsr_reallocarray(a, HUGE(SIZE_MAX), HUGE(SIZE_MAX)));
  cr_assert_eq(errno, ENOMEM);
  cr_assert(tsr_owns(a));
  tsr_free(a);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * Aligned allocation
 * ---------------------------------------------------------------------- */

Test(api, posix_memalign_rejects_bad_alignments) {
  static const size_t bad[] = { 0, 1, 2, 3, 4, 12, 24, 48, 100, 4097, SIZE_MAX };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *out = (void *)0x1234;
    errno = ERRNO_MARK;
    int rc = tsr_posix_memalign(&out, bad[i], 64);
    cr_assert_eq(rc, EINVAL, "posix_memalign(alignment %zu) = %d", bad[i], rc);
    cr_assert_eq(out, (void *)0x1234, "posix_memalign must not touch *out on failure");
    cr_assert_eq(errno, ERRNO_MARK, "posix_memalign reports through its result, not errno");
  }
  heap_is_sound();
}

Test(api, posix_memalign_accepts_powers_of_two) {
  for (size_t a = sizeof(void *); a <= ((size_t)1 << 22); a <<= 1) {
    void *out = NULL;
    errno = ERRNO_MARK;
    int rc = tsr_posix_memalign(&out, a, 100);
    cr_assert_eq(rc, 0, "posix_memalign(alignment %zu) = %d", a, rc);
    cr_assert_eq(errno, ERRNO_MARK);
    cr_assert_not_null(out);
    cr_assert_eq((uintptr_t)out % a, 0);
    cr_assert_geq(tsr_usable_size(out), 100);
    memset(out, 0x5a, 100);
    tsr_free(out);
  }
  void *out = (void *)0x1234;
  errno = 0;
  int rc = tsr_posix_memalign(&out, 64, HUGE(SIZE_MAX));
  cr_assert_eq(rc, ENOMEM);
  cr_assert_eq(errno, ENOMEM, "posix_memalign's ENOMEM is in errno too, as glibc's");
  cr_assert_eq(out, (void *)0x1234);
  heap_is_sound();
}

Test(api, aligned_alloc) {
  static const size_t bad[] = { 0, 3, 24, 48, 1000, SIZE_MAX };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    cr_assert_null(tsr_aligned_alloc(bad[i], 64), "aligned_alloc(%zu, 64)", bad[i]);
    cr_assert_eq(errno, EINVAL, "aligned_alloc(%zu): errno %d", bad[i], errno);
  }
  for (size_t a = 1; a <= ((size_t)1 << 21); a <<= 1) {
    void *p = tsr_aligned_alloc(a, 3 * a);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % a, 0, "aligned_alloc(%zu) = %p", a, p);
    cr_assert_geq(tsr_usable_size(p), 3 * a);
    memset(p, 1, 3 * a);
    tsr_free(p);
  }
  errno = 0;
  cr_assert_null(tsr_aligned_alloc(64, HUGE(SIZE_MAX)));
  cr_assert_eq(errno, ENOMEM);
  heap_is_sound();
}

Test(api, memalign_rounds_alignment_up) {
  static const struct { size_t asked, needed; } cases[] = {
    { 0, 1 }, { 1, 1 }, { 3, 4 }, { 24, 32 }, { 48, 64 }, { 100, 128 }, { 1000, 1024 },
    { 5000, 8192 }, { 70000, 131072 }, { (1 << 20) + 1, 2 << 20 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    void *p = tsr_memalign(cases[i].asked, 200);
    cr_assert_not_null(p, "memalign(%zu)", cases[i].asked);
    cr_assert_eq((uintptr_t)p % cases[i].needed, 0, "memalign(%zu, 200) = %p, not %zu-aligned",
                 cases[i].asked, p, cases[i].needed);
    cr_assert_geq(tsr_usable_size(p), 200);
    tsr_free(p);
  }
  errno = 0;
  cr_assert_null(tsr_memalign(HUGE(SIZE_MAX), 10));
  cr_assert(errno == EINVAL || errno == ENOMEM);
  heap_is_sound();
}

Test(api, valloc_and_pvalloc) {
  size_t page = page_size();
  static const size_t sizes[] = { 0, 1, 100, 4095, 4096, 4097, 70000, SMALL_MAX, SMALL_MAX + 1, 1 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *v = tsr_valloc(sizes[i]);
    cr_assert_not_null(v);
    cr_assert_eq((uintptr_t)v % page, 0, "valloc(%zu) = %p", sizes[i], v);
    cr_assert_geq(tsr_usable_size(v), sizes[i]);
    tsr_free(v);
    void *p = tsr_pvalloc(sizes[i]);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % page, 0, "pvalloc(%zu) = %p", sizes[i], p);
    size_t rounded = sizes[i] == 0 ? page : (sizes[i] + page - 1) / page * page;
    cr_assert_geq(tsr_usable_size(p), rounded, "pvalloc(%zu): usable %zu < %zu", sizes[i],
                  tsr_usable_size(p), rounded);
    memset(p, 7, rounded);
    tsr_free(p);
  }
  errno = 0;
  cr_assert_null(tsr_pvalloc(HUGE(SIZE_MAX - 10)));
  cr_assert_eq(errno, ENOMEM);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * usable_size, owns, errno
 * ---------------------------------------------------------------------- */

Test(api, usable_size) {
  cr_assert_eq(tsr_usable_size(NULL), 0);
  uint8_t *p = tsr_malloc(50);
  size_t u = tsr_usable_size(p);
  cr_assert_geq(u, 50);
  memset(p, 0xab, u);   /* every usable byte may be written */
  tsr_free(p);
  heap_is_sound();
}

Test(api, owns) {
  int local = 0;
  cr_assert_eq(tsr_owns(NULL), 0);
  cr_assert_eq(tsr_owns(&local), 0);
  void *foreign = malloc(100);   /* the C library's heap: not ours */
  cr_assert_eq(tsr_owns(foreign), 0);
  free(foreign);
  void *big_foreign = malloc(1 << 20);
  cr_assert_eq(tsr_owns(big_foreign), 0);
  free(big_foreign);
  uint8_t *p = tsr_malloc(64);
  cr_assert_eq(tsr_owns(p), 1);
  cr_assert_eq(tsr_owns(p + 1), 0);
  cr_assert_eq(tsr_owns(p + 16), 0);
  uint8_t *l = tsr_malloc(1 << 20);
  cr_assert_eq(tsr_owns(l), 1);
  cr_assert_eq(tsr_owns(l + 4096), 0);
  cr_assert_eq(tsr_owns(l + 1), 0);
  tsr_free(p);
  tsr_free(l);
  cr_assert_eq(tsr_owns(p), 0, "a freed block is not live");
  cr_assert_eq(tsr_owns(l), 0, "a freed large block is not live");
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.errors, 0, "tsr_owns never reports an error");
  heap_is_sound();
}

/* Every entry point that fails for want of memory says ENOMEM in errno,
 * posix_memalign included (glibc's does, and programs read it: glibc's
 * tst-malloc-thread-fail); an alignment that is none says EINVAL, through
 * errno or, for posix_memalign, through its result alone
 * (posix_memalign_rejects_bad_alignments). */
#define FAILS_WITH(code, expr, size)                                                        \
  do {                                                                                      \
    errno = 0;                                                                              \
    void *got_ = (expr);                                                                    \
    int err_ = errno;                                                                       \
    cr_assert_null(got_, "%s succeeded (size %zu)", #expr, (size_t)(size));                 \
    cr_assert_eq(err_, code, "%s: errno %d, not %d (size %zu)", #expr, err_, code, (size_t)(size)); \
  } while (0)

Test(api, every_failure_sets_errno) {
  static const size_t huge[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62 };
  void *small = tsr_malloc(100);
  void *large = tsr_malloc(1 << 20);
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    size_t n = HUGE(huge[i]);
    FAILS_WITH(ENOMEM, tsr_malloc(n), n);
    FAILS_WITH(ENOMEM, tsr_calloc(1, n), n);
    FAILS_WITH(ENOMEM, tsr_realloc(NULL, n), n);
    FAILS_WITH(ENOMEM, tsr_realloc(small, n), n);
    FAILS_WITH(ENOMEM, tsr_realloc(large, n), n);
    FAILS_WITH(ENOMEM, tsr_reallocarray(small, 1, n), n);
    FAILS_WITH(ENOMEM, tsr_aligned_alloc(64, n), n);
    FAILS_WITH(ENOMEM, tsr_aligned_alloc(1 << 20, n), n);
    FAILS_WITH(ENOMEM, tsr_memalign(4096, n), n);
    FAILS_WITH(ENOMEM, tsr_valloc(n), n);
    FAILS_WITH(ENOMEM, tsr_pvalloc(n), n);
    for (size_t align = sizeof(void *); align <= ((size_t)1 << 20); align <<= 4) {
      void *out = (void *)0x1234;
      errno = 0;
      int rc = tsr_posix_memalign(&out, align, n);
      cr_assert_eq(rc, ENOMEM, "posix_memalign(%zu, %zu) = %d", align, n, rc);
      cr_assert_eq(errno, ENOMEM, "posix_memalign(%zu, %zu): errno %d", align, n, errno);
      cr_assert_eq(out, (void *)0x1234);
    }
  }
  FAILS_WITH(ENOMEM, tsr_calloc(HUGE(SIZE_MAX / 2 + 1), 2), SIZE_MAX / 2 + 1);
  FAILS_WITH(ENOMEM, tsr_reallocarray(NULL, HUGE(SIZE_MAX / 2 + 1), 2), SIZE_MAX / 2 + 1);
  FAILS_WITH(EINVAL, tsr_aligned_alloc(24, 64), 64);
  FAILS_WITH(EINVAL, tsr_memalign(HUGE(SIZE_MAX), 64), 64);
  /* the blocks a failed realloc was given stay as they were */
  cr_assert(tsr_owns(small) && tsr_owns(large));
  tsr_free(small);
  tsr_free(large);
  heap_is_sound();
}

/* Successful calls leave errno as the caller had it, on fast and slow
 * paths (first allocation of a thread, new pages, large blocks). */
Test(api, errno_unchanged_by_success) {
  void *keep[2000];
  for (int i = 0; i < 2000; i++) {
    errno = ERRNO_MARK;
    keep[i] = tsr_malloc((size_t)(i % 50) * 97 + 1);
    cr_assert_not_null(keep[i]);
    cr_assert_eq(errno, ERRNO_MARK, "malloc changed errno to %d", errno);
  }
  for (int i = 0; i < 2000; i++) {
    errno = ERRNO_MARK;
    tsr_free(keep[i]);
    cr_assert_eq(errno, ERRNO_MARK, "free changed errno to %d", errno);
  }
  static const size_t sizes[] = { 0, 10, 5000, SMALL_MAX + 1, 4 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    errno = ERRNO_MARK;
    void *p = tsr_malloc(n);
    cr_assert_eq(errno, ERRNO_MARK);
    void *c = tsr_calloc(1, n);
    cr_assert_eq(errno, ERRNO_MARK);
    p = tsr_realloc(p, n * 2 + 1);
    cr_assert_eq(errno, ERRNO_MARK);
    p = tsr_reallocarray(p, 3, n + 1);
    cr_assert_eq(errno, ERRNO_MARK);
    void *a = tsr_aligned_alloc(4096, n);
    cr_assert_eq(errno, ERRNO_MARK);
    void *m = tsr_memalign(64, n);
    cr_assert_eq(errno, ERRNO_MARK);
    void *v = tsr_valloc(n);
    cr_assert_eq(errno, ERRNO_MARK);
    void *pv = tsr_pvalloc(n);
    cr_assert_eq(errno, ERRNO_MARK);
    void *pm = NULL;
    cr_assert_eq(tsr_posix_memalign(&pm, 256, n), 0);
    cr_assert_eq(errno, ERRNO_MARK);
    cr_assert(p && c && a && m && v && pv && pm);
    (void)tsr_usable_size(p);
    (void)tsr_owns(p);
    cr_assert_eq(errno, ERRNO_MARK);
    tsr_free(p);
    tsr_free(c);
    tsr_free(a);
    tsr_free(m);
    tsr_free(v);
    tsr_free(pv);
    tsr_free(pm);
    cr_assert_eq(errno, ERRNO_MARK, "free changed errno for size %zu", n);
  }
  tsr_collect();
  cr_assert_eq(errno, ERRNO_MARK, "tsr_collect changed errno");
  tsr_stats_t s = tsr_test_stats();
  (void)s;
  cr_assert_eq(errno, ERRNO_MARK, "tsr_stats_get changed errno");
  heap_is_sound();
  cr_assert_eq(errno, ERRNO_MARK, "tsr_check changed errno");
}

/* ------------------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------------- */

Test(api, stats_get_checks_size) {
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(tsr_stats_get(&s), EINVAL, "size 0 must be refused");
  s.size = offsetof(tsr_stats_t, track) - 1;   /* smaller than version 1 */
  cr_assert_eq(tsr_stats_get(&s), EINVAL);
  /* a caller built against version 1: gets its fields, nothing past them */
  struct { tsr_stats_t s; } v1;
  memset(&v1, 0xAB, sizeof v1);
  v1.s.size = offsetof(tsr_stats_t, track);
  cr_assert_eq(tsr_stats_get(&v1.s), 0);
  cr_assert_eq(v1.s.version, TSR_STATS_VERSION);
  cr_assert_eq(v1.s.size, offsetof(tsr_stats_t, track));
  cr_assert_eq(v1.s.track, 0xABABABABu, "version 2 fields written into a version 1 struct");
  /* one built against version 2: the same, up to the ratios */
  struct { tsr_stats_t s; } v2;
  memset(&v2, 0xAB, sizeof v2);
  v2.s.size = offsetof(tsr_stats_t, errors_by_kind);
  cr_assert_eq(tsr_stats_get(&v2.s), 0);
  cr_assert_eq(v2.s.size, offsetof(tsr_stats_t, errors_by_kind));
  cr_assert_neq(v2.s.track, 0xABABABABu, "version 2 fields not filled");
  cr_assert_eq(v2.s.errors_by_kind[0], 0xABABABABABABABABull, "version 3 fields written into a version 2 struct");
  s.size = 8;
  cr_assert_eq(tsr_stats_get(&s), EINVAL);
  cr_assert_eq(tsr_stats_get(NULL), EINVAL);
  s.size = sizeof s;
  cr_assert_eq(tsr_stats_get(&s), 0);
  cr_assert_eq(s.version, TSR_STATS_VERSION);
  cr_assert_eq(s.size, sizeof s);
  uint64_t kinds = 0;
  for (size_t k = 0; k < TSR_ERROR_KINDS; k++) kinds += s.errors_by_kind[k];
  cr_assert_eq(kinds, s.errors, "errors is not the sum of errors_by_kind");
  /* a caller built against a newer, bigger struct: accepted */
  struct { tsr_stats_t s; uint64_t future[4]; } big;
  memset(&big, 0xee, sizeof big);
  big.s.size = sizeof big;
  cr_assert_eq(tsr_stats_get(&big.s), 0);
  cr_assert_eq(big.s.version, TSR_STATS_VERSION);
}

Test(api, stats_follow_allocations) {
  tsr_stats_t before = tsr_test_stats();
  void *p = tsr_malloc(1000);
  tsr_stats_t mid = tsr_test_stats();
  cr_assert_geq(mid.allocated, before.allocated + 1000, "allocated %llu -> %llu",
                (unsigned long long)before.allocated, (unsigned long long)mid.allocated);
  cr_assert_geq(mid.committed, mid.allocated);
  cr_assert_geq(mid.reserved, mid.committed);
  cr_assert_geq(mid.arenas, 1);
  cr_assert_geq(mid.os_reserves, 1);
  size_t big = 3 << 20;
  void *l = tsr_malloc(big);
  tsr_stats_t high = tsr_test_stats();
  cr_assert_geq(high.allocated, mid.allocated + big);
  cr_assert_geq(high.committed, mid.committed + big);
  cr_assert_eq(high.large_live, mid.large_live + 1);
  tsr_free(l);
  tsr_free(p);
  tsr_stats_t after = tsr_test_stats();
  cr_assert_eq(after.allocated, before.allocated, "allocated did not return: %llu -> %llu",
               (unsigned long long)before.allocated, (unsigned long long)after.allocated);
  cr_assert_eq(after.large_live, before.large_live);
  cr_assert_eq(after.errors, 0);
  heap_is_sound();
}

/* Many blocks of many sizes live at once, then freed in another order. */
Test(api, mixed_workload) {
  enum { N = 20000 };
  static void *b[N];
  static size_t n[N];
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < N; i++) {
    uint64_t r = tsr_test_rand(&rng);
    n[i] = (r & 7) == 0 ? (size_t)(r >> 40) % 300000 : (size_t)(r >> 40) % 2000;
    b[i] = (r & 0x100) ? tsr_calloc(1, n[i]) : tsr_malloc(n[i]);
    cr_assert_not_null(b[i]);
    tsr_test_fill(b[i], n[i], (uint64_t)i);
  }
  for (int i = 0; i < N; i += 2) {
    cr_assert_eq(tsr_test_verify(b[i], n[i], (uint64_t)i), n[i]);
    tsr_free(b[i]);
  }
  heap_is_sound();
  for (int i = 1; i < N; i += 2) {
    cr_assert_eq(tsr_test_verify(b[i], n[i], (uint64_t)i), n[i]);
    tsr_free(b[i]);
  }
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.allocated, 0);
  cr_assert_eq(s.large_live, 0);
  heap_is_sound();
}
