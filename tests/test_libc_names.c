/* test_libc_names.c: glibc's second names for its heap (__libc_malloc,
 * __libc_free and the rest, and cfree) are tessera's too.  Programs call
 * them to reach the C library's allocator under a malloc of their own (a
 * tracer's) and free the block with the other name; a test suite of
 * allocator replacements (oneDPL's) frees every __libc_ block with free.
 * Before, they reached glibc's heap, and free of such a block was tessera's
 * "not a block of tessera's" abort.  Linked to libtessera.so, as a program
 * that swaps tessera in is.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <malloc.h>

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
void cfree(void *p);

/* A block of tessera's: its own figures count it (a block of glibc's heap
 * would not be; tsr_usable_size would report it as not tessera's). */
static void tesseras(void *p, size_t size) {
  cr_assert_not_null(p);
  cr_assert_geq(tsr_usable_size(p), size);
  memset(p, 0x5a, size);
}

Test(libc_names, each_name_hands_out_and_takes_back_tesseras_blocks) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void *m = __libc_malloc(100);
  tesseras(m, 100);
  free(m);
  unsigned char *c = __libc_calloc(10, 30);
  cr_assert_not_null(c);
  for (size_t i = 0; i < 300; i++) cr_assert_eq(c[i], 0);
  tesseras(c, 300);
  __libc_free(c);
  void *r = __libc_realloc(malloc(10), 200000);   /* a large block */
  tesseras(r, 200000);
  r = realloc(r, 50);
  tesseras(r, 50);
  __libc_free(r);
  void *a = __libc_memalign(256, 1000);
  tesseras(a, 1000);
  cr_assert_eq((uintptr_t)a % 256, 0);
  cfree(a);
  void *v = __libc_valloc(100);
  tesseras(v, 100);
  cr_assert_eq((uintptr_t)v % page, 0);
  free(v);
  void *pv = __libc_pvalloc(page + 1);
  tesseras(pv, 2 * page);
  cr_assert_eq((uintptr_t)pv % page, 0);
  __libc_free(pv);
  __libc_free(NULL);
  free(__libc_realloc(__libc_malloc(8), 0));   /* NULL or a block: either is freed */
}

/* the pairs across names a tracer's malloc makes */
Test(libc_names, blocks_cross_between_the_names) {
  void *blocks[64];
  for (int i = 0; i < 64; i++) blocks[i] = (i & 1) ? __libc_malloc(24 + (size_t)i * 40) : malloc(24 + (size_t)i * 40);
  for (int i = 0; i < 64; i++) {
    cr_assert_geq(malloc_usable_size(blocks[i]), 24 + (size_t)i * 40);
    if (i & 1) free(blocks[i]);
    else __libc_free(blocks[i]);
  }
}
