/* tessera-malloc.h: route a program's own malloc, free and friends to
 * tessera at build time, by name.  For platforms where the heap cannot be
 * swapped under a finished program (Windows: every module calls the malloc
 * of the C runtime it was linked against; there is no LD_PRELOAD).
 *
 * Include it after the system headers, in every source file of the
 * program (or force it in: gcc -include tessera-malloc.h), and link the
 * prefixed library (libtessera-prefixed.a or tessera.dll).  Then each
 * malloc, calloc, realloc, free, ... *written in those files* calls the
 * tsr_ function instead.
 *
 * What is not routed, and stays the C runtime's heap (docs/windows.md):
 *  - memory the C runtime allocates itself and hands back: strdup's
 *    (mapped here, see below), but also _getcwd(NULL, 0), _fullpath(NULL),
 *    _tempnam, _wcsdup and every other CRT function that returns a block
 *    for the caller to free.  Free those with tsr_crt_free(), never free();
 *  - allocations made inside other modules (DLLs, the CRT's own buffers
 *    for stdio, locale, ...) and blocks passed across a DLL boundary: a
 *    block must go back to the heap of the module that allocated it;
 *  - C++ operator new/delete (a C++ program defines them itself, forwarding
 *    to tsr_malloc and tsr_free, in one of its files).
 * A free() of a block tessera did not hand out is reported and refused
 * (TESSERA_ON_ERROR), never passed on: mixing the heaps is a bug to find.
 */
#ifndef TESSERA_MALLOC_H
#define TESSERA_MALLOC_H

#include <stdlib.h>
#include <string.h>
#if defined(_WIN32)
#include <malloc.h>
#endif

#include "tessera.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The C runtime's free, for blocks the runtime allocated (defined before
 * the names below are mapped, so it reaches the real one). */
static inline void tsr_crt_free(void *p) { free(p); }

/* strdup and strndup allocate inside the C runtime; these copies allocate
 * from tessera, so that free() of their result is right. */
static inline char *tsr_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = (char *)tsr_malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

static inline char *tsr_strndup(const char *s, size_t max) {
  size_t n = 0;
  while (n < max && s[n] != 0) n++;
  char *p = (char *)tsr_malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

/* The Microsoft aligned heap: _aligned_free must only see blocks from
 * _aligned_malloc, which here are tessera's as well. */
static inline void *tsr_ms_aligned_malloc(size_t size, size_t alignment) {
  return tsr_aligned_alloc(alignment, size);
}

#ifdef __cplusplus
}
#endif

#undef malloc
#undef calloc
#undef realloc
#undef free
#undef strdup
#undef strndup
#define malloc tsr_malloc
#define calloc tsr_calloc
#define realloc tsr_realloc
#define reallocarray tsr_reallocarray
#define free tsr_free
#define aligned_alloc tsr_aligned_alloc
#define posix_memalign tsr_posix_memalign
#define memalign tsr_memalign
#define valloc tsr_valloc
#define pvalloc tsr_pvalloc
#define malloc_usable_size tsr_usable_size
#define strdup tsr_strdup
#define strndup tsr_strndup
#if defined(_WIN32)
#undef _strdup
#undef _msize
#undef _aligned_malloc
#undef _aligned_free
#define _strdup tsr_strdup
#define _msize tsr_usable_size
#define _aligned_malloc tsr_ms_aligned_malloc
#define _aligned_free tsr_free
#endif

#endif /* TESSERA_MALLOC_H */
