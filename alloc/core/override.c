/* override.c: the standard C names, forwarding to the tsr_ functions.
 *
 * Compiled only into the override library (libtessera.so, the target a
 * program links to swap tessera in); no logic lives here.  C++ new and
 * delete reach tessera through these: libstdc++'s operators call malloc,
 * aligned_alloc and free.
 */
#include "internal.h"

#include <malloc.h>
#include <stdlib.h>

#define TSRI_EXPORT __attribute__((visibility("default")))

TSRI_EXPORT void *malloc(size_t size) { return tsr_malloc(size); }
TSRI_EXPORT void *calloc(size_t count, size_t size) { return tsr_calloc(count, size); }
TSRI_EXPORT void *realloc(void *p, size_t size) { return tsr_realloc(p, size); }
TSRI_EXPORT void *reallocarray(void *p, size_t count, size_t size) { return tsr_reallocarray(p, count, size); }
TSRI_EXPORT void free(void *p) { tsr_free(p); }
TSRI_EXPORT int posix_memalign(void **out, size_t alignment, size_t size) { return tsr_posix_memalign(out, alignment, size); }
TSRI_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return tsr_aligned_alloc(alignment, size); }
TSRI_EXPORT void *memalign(size_t alignment, size_t size) { return tsr_memalign(alignment, size); }
TSRI_EXPORT void *valloc(size_t size) { return tsr_valloc(size); }
TSRI_EXPORT void *pvalloc(size_t size) { return tsr_pvalloc(size); }
TSRI_EXPORT size_t malloc_usable_size(void *p) { return tsr_usable_size(p); }

#if defined(__GLIBC__)
/* glibc's second names for its heap, which programs call to reach the C
 * library's allocator under one of their own (a tracer's malloc that calls
 * __libc_malloc) and free with the other name: each is tessera's too, so
 * that the two never meet a block of the other heap.  cfree: programs
 * linked before glibc 2.26 removed it. */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
void cfree(void *p);

TSRI_EXPORT void *__libc_malloc(size_t size) { return tsr_malloc(size); }
TSRI_EXPORT void *__libc_calloc(size_t count, size_t size) { return tsr_calloc(count, size); }
TSRI_EXPORT void *__libc_realloc(void *p, size_t size) { return tsr_realloc(p, size); }
TSRI_EXPORT void __libc_free(void *p) { tsr_free(p); }
TSRI_EXPORT void *__libc_memalign(size_t alignment, size_t size) { return tsr_memalign(alignment, size); }
TSRI_EXPORT void *__libc_valloc(size_t size) { return tsr_valloc(size); }
TSRI_EXPORT void *__libc_pvalloc(size_t size) { return tsr_pvalloc(size); }
TSRI_EXPORT void cfree(void *p) { tsr_free(p); }
#endif
