/* glibc_shim.c: glibc's own malloc for a program linked to another heap.
 *
 * Debian's redis-server is linked to jemalloc, whose malloc comes before
 * the C library's; preloaded, this routes the malloc family to glibc's
 * (its __libc_* entry points), so that bench/server_lru.sh can measure
 * the system heap under the same server.  Only what redis calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

void *malloc(size_t size) { return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *aligned_alloc(size_t align, size_t size) { return __libc_memalign(align, size); }

int posix_memalign(void **out, size_t align, size_t size) {
  void *p = __libc_memalign(align, size);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

/* glibc's own, not the first one the loader finds (jemalloc's) */
size_t malloc_usable_size(void *p) {
  static size_t (*libc_usable)(void *);
  if (libc_usable == NULL)
    libc_usable = (size_t (*)(void *))dlsym(dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD), "malloc_usable_size");
  return p != NULL && libc_usable != NULL ? libc_usable(p) : 0;
}
