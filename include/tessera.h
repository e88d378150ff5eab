/* tessera.h: the public API of the tessera memory manager.
 *
 * Two faces share one implementation: the prefixed functions below, usable
 * on every platform and next to another heap in the same process, and (in
 * the override build, libtessera.so) the standard C names malloc, free, ...
 * which forward to them.  See docs/api.md.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(TSR_BUILD_SHARED)
#    define TSR_API __declspec(dllexport)
#  elif defined(TSR_USE_SHARED)
#    define TSR_API __declspec(dllimport)
#  else
#    define TSR_API
#  endif
#  define TSR_MALLOC_ATTR
#  define TSR_ALLOC_SIZE(...)
#else
#  define TSR_API __attribute__((visibility("default")))
#  define TSR_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#  define TSR_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#endif

#define TSR_VERSION_MAJOR 0
#define TSR_VERSION_MINOR 1
#define TSR_VERSION_PATCH 0

/* ------------------------------------------------------------------------
 * The malloc family.  Semantics are those of C11 and POSIX, as glibc gives
 * them: NULL with errno = ENOMEM when memory runs out or a size overflows;
 * realloc(p, 0) frees p and returns NULL; realloc(NULL, n) is malloc(n).
 * Every block is aligned to at least 16 bytes.
 * ---------------------------------------------------------------------- */

TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1) void *tsr_malloc(size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1, 2) void *tsr_calloc(size_t count, size_t size);
TSR_API TSR_ALLOC_SIZE(2) void *tsr_realloc(void *ptr, size_t size);
TSR_API TSR_ALLOC_SIZE(2, 3) void *tsr_reallocarray(void *ptr, size_t count, size_t size);
TSR_API void tsr_free(void *ptr);

/* Aligned allocation.  alignment must be a power of two (posix_memalign:
 * also a multiple of sizeof(void *)); otherwise EINVAL. */
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(2) void *tsr_aligned_alloc(size_t alignment, size_t size);
TSR_API int tsr_posix_memalign(void **out, size_t alignment, size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(2) void *tsr_memalign(size_t alignment, size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1) void *tsr_valloc(size_t size);
TSR_API TSR_MALLOC_ATTR void *tsr_pvalloc(size_t size);

/* The bytes the block really has (>= the size asked for); 0 for NULL.
 * A pointer tessera did not hand out is reported like a bad free. */
TSR_API size_t tsr_usable_size(const void *ptr);

/* ------------------------------------------------------------------------
 * Ownership and maintenance
 * ---------------------------------------------------------------------- */

/* 1 if ptr is the start of a live block handed out by tessera, else 0.
 * Never touches the memory ptr points to, never reports an error. */
TSR_API int tsr_owns(const void *ptr);

/* Return free memory to the OS now: collect blocks freed by other threads
 * into the calling thread's pages, and decommit every free page and every
 * cached large block without waiting for TESSERA_PURGE_DELAY_MS. */
TSR_API void tsr_collect(void);

/* Walk every arena, page and block record; on an inconsistency print what
 * is wrong and return the number of problems found (0: heap is sound). */
TSR_API size_t tsr_check(void);

/* ------------------------------------------------------------------------
 * Counters (the full report API grows here; see docs/api.md)
 * ---------------------------------------------------------------------- */

#define TSR_STATS_VERSION 1

typedef struct tsr_stats_s {
  size_t size;              /* set by the caller: sizeof(tsr_stats_t) */
  uint32_t version;         /* set by tessera: TSR_STATS_VERSION */
  uint64_t allocated;       /* bytes in live blocks, usable size */
  uint64_t committed;       /* bytes committed from the OS (arenas, large) */
  uint64_t reserved;        /* bytes of address space reserved */
  uint64_t metadata;        /* bytes committed for tessera's own records */
  uint64_t large_live;      /* live blocks above the largest size class */
  uint64_t arenas;          /* arenas reserved */
  uint64_t os_commits;      /* commit calls made to the OS */
  uint64_t os_decommits;    /* decommit calls made to the OS */
  uint64_t os_reserves;     /* reserve calls made to the OS */
  uint64_t os_releases;     /* release calls made to the OS */
  uint64_t os_resets;       /* calls giving back free OS pages inside used pages */
  uint64_t errors;          /* bad calls reported (bad free, double free, ...) */
} tsr_stats_t;

/* Fill *stats (stats->size must be set).  Returns 0, or EINVAL when the
 * struct is smaller than the first version of it. */
TSR_API int tsr_stats_get(tsr_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */
