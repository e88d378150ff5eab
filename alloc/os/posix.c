/* posix.c: the POSIX (Linux first) implementation of os.h.
 *
 * Reservations are PROT_NONE anonymous mappings with MAP_NORESERVE, so they
 * cost address space only; commit is mprotect(READ|WRITE); decommit is
 * madvise(MADV_DONTNEED), which gives the physical pages back at once (RSS
 * falls) and leaves the protection alone.  Changing the protection back to
 * PROT_NONE would split the mapping at every boundary between used and free
 * slots, and a large fragmented heap would run into vm.max_map_count
 * (65530 mappings), after which every mmap fails.  Every function saves
 * and restores errno so that a malloc call never changes it behind the
 * caller's back except where the C standard says it does.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "os.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

extern char **environ;

/* Read lazily by whichever thread asks first; every thread computes the
 * same value, so a relaxed atomic is enough. */
static _Atomic size_t os_page;

size_t tsri_os_page_size(void) {
  size_t page = atomic_load_explicit(&os_page, memory_order_relaxed);
  if (page == 0) {
    long p = sysconf(_SC_PAGESIZE);
    page = p > 0 ? (size_t)p : 4096;
    atomic_store_explicit(&os_page, page, memory_order_relaxed);
  }
  return page;
}

size_t tsri_os_granularity(void) { return tsri_os_page_size(); }

/* ------------------------------------------------------------------------
 * Memory
 * ---------------------------------------------------------------------- */

/* Map size bytes aligned to align: try the plain call first (the kernel
 * often returns aligned addresses for large sizes), else over-map by align
 * and unmap the two ends. */
static int os_map_aligned(size_t size, size_t align, int prot, int flags, void **out) {
  void *p = mmap(NULL, size, prot, flags, -1, 0);
  if (p == MAP_FAILED) return errno == EINVAL ? EINVAL : ENOMEM;
  if (((uintptr_t)p & (align - 1)) == 0) {
    *out = p;
    return 0;
  }
  munmap(p, size);
  if (size + align < size) return ENOMEM;
  p = mmap(NULL, size + align, prot, flags, -1, 0);
  if (p == MAP_FAILED) return ENOMEM;
  uintptr_t start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = start - (uintptr_t)p;
  size_t tail = align - head;
  if (head != 0) munmap(p, head);
  if (tail != 0) munmap((void *)(start + size), tail);
  *out = (void *)start;
  return 0;
}

int tsri_os_reserve(size_t size, size_t align, void **out) {
  int saved = errno;
  int rc = os_map_aligned(size, align, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, out);
  errno = saved;
  return rc;
}

int tsri_os_alloc(size_t size, size_t align, void **out) {
  int saved = errno;
  int rc = os_map_aligned(size, align, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, out);
  errno = saved;
  return rc;
}

int tsri_os_commit(void *addr, size_t size) {
  int saved = errno;
  int rc = mprotect(addr, size, PROT_READ | PROT_WRITE) == 0 ? 0 : ENOMEM;
  errno = saved;
  return rc;
}

int tsri_os_decommit(void *addr, size_t size) {
  int saved = errno;
  int rc = madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : EINVAL;
  errno = saved;
  return rc;
}

/* The same call as decommit on Linux: MADV_DONTNEED already keeps the
 * range accessible, which is what a reset needs. */
int tsri_os_reset(void *addr, size_t size) { return tsri_os_decommit(addr, size); }

int tsri_os_release(void *addr, size_t size) {
  int saved = errno;
  int rc = munmap(addr, size) == 0 ? 0 : EINVAL;
  errno = saved;
  return rc;
}

int tsri_os_remap(void *addr, size_t old_size, size_t new_size, void **out) {
#if defined(__linux__)
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE);
  errno = saved;
  if (p == MAP_FAILED) return ENOMEM;
  *out = p;
  return 0;
#else
  (void)addr; (void)old_size; (void)new_size; (void)out;
  return ENOTSUP;
#endif
}

/* ------------------------------------------------------------------------
 * Threads
 * ---------------------------------------------------------------------- */

static pthread_key_t os_exit_key;

int tsri_os_thread_exit_init(void (*fn)(void *value)) {
  int saved = errno;
  int rc = pthread_key_create(&os_exit_key, fn);
  errno = saved;
  return rc;
}

void tsri_os_thread_set(void *value) {
  int saved = errno;
  pthread_setspecific(os_exit_key, value);
  errno = saved;
}

void tsri_os_yield(void) { sched_yield(); }

int tsri_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  return pthread_atfork(prepare, parent, child);
}

/* ------------------------------------------------------------------------
 * Host services
 * ---------------------------------------------------------------------- */

uint64_t tsri_os_clock_ms(void) {
  struct timespec ts;
#if defined(CLOCK_MONOTONIC_COARSE)
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* getenv() itself does not allocate in glibc, but reading environ directly
 * keeps that a property of our code rather than of the libc. */
const char *tsri_os_getenv(const char *name) {
  size_t n = strlen(name);
  if (environ == NULL) return NULL;
  for (char **e = environ; *e != NULL; e++) {
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
  }
  return NULL;
}

void tsri_os_write_stderr(const char *text, size_t len) {
  int saved = errno;
  while (len > 0) {
    ssize_t w = write(2, text, len);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;
    }
    text += w;
    len -= (size_t)w;
  }
  errno = saved;
}

_Noreturn void tsri_os_abort(void) { abort(); }
