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
#include "reserve_limit.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define OS_SINGLE_THREADED_KNOWN 1
#else
#define OS_SINGLE_THREADED_KNOWN 0
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
 * often returns aligned addresses for large sizes); else ask for aligned
 * addresses, which the kernel takes when they are free: the one just
 * above where it put them, the window below the last aligned mapping made
 * here (aligned reservations, arenas, go down one window after another,
 * as the kernel hands out addresses top down; the range it chose may lie
 * in the unused end of a smaller arena's window), then those below where
 * it put them; else over-map by align and unmap the two ends.  The hints
 * cost no more address space than size, which is what counts under a cap
 * on the address space (RLIMIT_AS): near the cap the over-map fails where
 * they succeed. */
#define OS_MAP_HINTS 8
static _Atomic uintptr_t os_next_hint;   /* a window below the last aligned mapping; 0: none */

static void *os_map_at(uintptr_t hint, size_t size, int prot, int flags) {
  if (hint == 0 || hint + size < hint) return NULL;
  void *q = mmap((void *)hint, size, prot, flags, -1, 0);
  if (q == (void *)hint) return q;
  if (q != MAP_FAILED) munmap(q, size);
  return NULL;
}

/* A 32-bit process: its address space is what runs out, so an aligned
 * reservation (an arena, which lives as long as the process and holds its
 * long-lived small blocks) takes the lowest free aligned window, as on
 * Windows, while the kernel hands large blocks out top down: the free
 * space stays one range between the two.  The window is found in
 * /proc/self/maps and asked for by hint; a hint the kernel does not take
 * (another thread mapped there meanwhile) is given back. */
#define OS_SPACE_TIGHT (UINTPTR_MAX <= 0xFFFFFFFFu)

typedef struct os_low_s {
  size_t size, align;
  uintptr_t from;      /* end of the last mapping seen */
  uintptr_t found;     /* 0: none yet */
} os_low_t;

static bool os_low_fits(os_low_t *w, uintptr_t end) {
  uintptr_t at = (w->from + w->align - 1) & ~(uintptr_t)(w->align - 1);
  if (at >= w->from && at + w->size > at && at + w->size <= end) w->found = at;
  return w->found != 0;
}

static int os_low_region(const tsri_os_region_t *r, void *arg) {
  os_low_t *w = arg;
  if (r->start > w->from && os_low_fits(w, r->start)) return 1;
  if (r->end > w->from) w->from = r->end;
  return 0;
}

static void *os_map_lowest(size_t size, size_t align, int prot, int flags) {
  os_low_t w = { size, align, align, 0 };   /* never the window at address 0 */
  uintptr_t lo, hi;
  if (tsri_os_regions(os_low_region, &w, &lo, &hi) != 0) return NULL;
  if (w.found == 0 && !os_low_fits(&w, hi)) return NULL;
  return os_map_at(w.found, size, prot, flags);
}

/* Large blocks in a 32-bit process go best fit: to the top of the
 * smallest free range that holds them (the kernel's own choice is the
 * highest range that does, which cuts up the big ones), so the big free
 * ranges stay whole for the big requests to come, as a best-fit heap
 * keeps its big free chunks.  NULL when the walk finds no range or the
 * kernel will not map there (the caller maps where the kernel likes). */
typedef struct os_best_s {
  size_t size;
  uintptr_t from;      /* end of the last mapping seen */
  uintptr_t best_end, best_len;
} os_best_t;

static void os_best_gap(os_best_t *w, uintptr_t end) {
  if (end <= w->from) return;
  uintptr_t len = end - w->from;
  if (len >= w->size && (w->best_len == 0 || len <= w->best_len)) {
    w->best_len = len;
    w->best_end = end;
  }
}

static int os_best_region(const tsri_os_region_t *r, void *arg) {
  os_best_t *w = arg;
  os_best_gap(w, r->start);
  if (r->end > w->from) w->from = r->end;
  return 0;
}

static void *os_map_best(size_t size, int prot, int flags) {
  os_best_t w = { size, tsri_os_page_size(), 0, 0 };
  uintptr_t lo, hi;
  if (tsri_os_regions(os_best_region, &w, &lo, &hi) != 0) return NULL;
  os_best_gap(&w, hi);
  return w.best_len != 0 ? os_map_at(w.best_end - size, size, prot, flags) : NULL;
}

/* Map size bytes at a multiple of align, or NULL. */
static void *os_map_aligned_try(size_t size, size_t align, int prot, int flags) {
  if (OS_SPACE_TIGHT && align > tsri_os_page_size()) {
    void *low = os_map_lowest(size, align, prot, flags);
    if (low != NULL) return low;
  }
  void *p = mmap(NULL, size, prot, flags, -1, 0);
  if (p == MAP_FAILED) return NULL;
  uintptr_t mask = ~(uintptr_t)(align - 1);
  if (((uintptr_t)p & ~mask) == 0) return p;
  munmap(p, size);
  uintptr_t below = (uintptr_t)p & mask;
  uintptr_t next = atomic_load_explicit(&os_next_hint, memory_order_relaxed) & mask;
  void *q = os_map_at(below + align, size, prot, flags);
  if (q == NULL && next != 0) q = os_map_at(next, size, prot, flags);
  for (size_t i = 0; q == NULL && i < OS_MAP_HINTS && below > i * align; i++)
    q = os_map_at(below - i * align, size, prot, flags);
  if (q != NULL || size + align < size) return q;
  p = mmap(NULL, size + align, prot, flags, -1, 0);
  if (p == MAP_FAILED) return NULL;
  uintptr_t start = ((uintptr_t)p + align - 1) & mask;
  size_t head = start - (uintptr_t)p;
  size_t tail = align - head;
  if (head != 0) munmap(p, head);
  if (tail != 0) munmap((void *)(start + size), tail);
  return (void *)start;
}

static int os_map_aligned(size_t size, size_t align, int prot, int flags, void **out) {
  void *p = os_map_aligned_try(size, align, prot, flags);
  if (p == NULL) return ENOMEM;
  if (align > tsri_os_page_size())
    atomic_store_explicit(&os_next_hint, (uintptr_t)p - align, memory_order_relaxed);
  *out = p;
  return 0;
}

int tsri_os_reserve(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESERVE) || !os_budget_take(size)) return ENOMEM;
  int saved = errno;
  int rc = os_map_aligned(size, align, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, out);
  errno = saved;
  if (rc != 0) os_budget_give(size);
  return rc;
}

/* ---- locked memory ----
 * A program may lock its memory, mlockall(MCL_CURRENT | MCL_FUTURE), as
 * real-time programs do so that they never wait for a page fault.  The
 * kernel then refuses MADV_DONTNEED in it, and fills every writable
 * mapping as it is made and every range as it is made writable.  So a
 * decommit there puts a fresh inaccessible mapping in the range's place
 * (the pages go back; the mapping splits), and a reservation that would
 * be writable from the start (tsri_os_reserve_open) is made inaccessible
 * instead, committed as its parts are used: writable, it would take all
 * its memory at once.  os_locked: seen once, for good. */
static _Atomic bool os_locked;

bool tsri_os_memory_locked(void) { return atomic_load_explicit(&os_locked, memory_order_relaxed); }

/* Whether a writable mapping is filled as it is made (MCL_FUTURE): a page
 * mapped and never touched is already resident.  Not asked in a process
 * that forbade itself system calls (mincore may kill it). */
static bool os_future_locked(void) {
  if (tsri_os_memory_locked()) return true;
  if (tsri_os_restricted()) return false;
  size_t page = tsri_os_page_size();
  void *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  unsigned char in = 0;
  bool locked = mincore(p, page, &in) == 0 && (in & 1) != 0;
  munmap(p, page);
  if (locked) atomic_store_explicit(&os_locked, true, memory_order_relaxed);
  return locked;
}

int tsri_os_reserve_open(size_t size, size_t align, void **out, bool *open) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESERVE_OPEN) || !os_budget_take(size)) return ENOMEM;
  int saved = errno;
  *open = !os_future_locked();
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, prot = *open ? PROT_READ | PROT_WRITE : PROT_NONE;
  void *best = OS_SPACE_TIGHT && align <= tsri_os_page_size() ? os_map_best(size, prot, flags) : NULL;
  int rc = 0;
  if (best != NULL) *out = best;
  else rc = os_map_aligned(size, align, prot, flags, out);
  errno = saved;
  if (rc != 0) os_budget_give(size);
  return rc;
}

static int os_alloc(size_t size, size_t align, void **out) {
  if (!os_budget_take(size)) return ENOMEM;
  int saved = errno;
  int rc = os_map_aligned(size, align, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, out);
  errno = saved;
  if (rc != 0) os_budget_give(size);
  return rc;
}

int tsri_os_alloc(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_ALLOC)) return ENOMEM;
  return os_alloc(size, align, out);
}

int tsri_os_alloc_uncapped(size_t size, void **out) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  if (p == MAP_FAILED) return ENOMEM;
  *out = p;
  return 0;
}

void tsri_os_release_uncapped(void *addr, size_t size) {
  int saved = errno;
  munmap(addr, size);
  errno = saved;
}

/* Best fit in a 32-bit process (os_map_best); elsewhere the kernel's
 * order, top down already. */
int tsri_os_alloc_high(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_ALLOC_HIGH)) return ENOMEM;
  if (!OS_SPACE_TIGHT || align > tsri_os_page_size()) return os_alloc(size, align, out);
  if (!os_budget_take(size)) return ENOMEM;
  int saved = errno;
  void *p = os_map_best(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  int rc = 0;
  if (p != NULL) *out = p;
  else rc = os_map_aligned(size, align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, out);
  errno = saved;
  if (rc != 0) os_budget_give(size);
  return rc;
}

/* A binary search of PROT_NONE mappings, each unmapped at once; the cap
 * (RLIMIT_AS) is the kernel's, TESSERA_RESERVE_LIMIT is not consulted. */
uint64_t tsri_os_largest_reservation(void) {
  int saved = errno;
  size_t page = tsri_os_page_size();
  uint64_t lo = 0, hi = TSRI_OS_PROBE_MAX + page;
  while (hi - lo > page) {
    uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)(page - 1);
    if (mid <= lo) break;
    void *p = mid <= SIZE_MAX ? mmap(NULL, (size_t)mid, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                              : MAP_FAILED;
    if (p != MAP_FAILED) {
      munmap(p, (size_t)mid);
      lo = mid;
    } else {
      hi = mid;
    }
  }
  errno = saved;
  return lo;
}

int tsri_os_commit(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_COMMIT)) return ENOMEM;
  int saved = errno;
  int rc = mprotect(addr, size, PROT_READ | PROT_WRITE) == 0 ? 0 : ENOMEM;
  errno = saved;
  return rc;
}

static int os_dontneed(void *addr, size_t size) {
  int saved = errno;
  int rc = madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_decommit(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_DECOMMIT)) return ENOMEM;
  int rc = os_dontneed(addr, size);
  if (rc != EINVAL) return rc;
  /* EINVAL: locked memory (above), which without this keeps its peak for
   * good; the commit that takes the range again fills it at once */
  atomic_store_explicit(&os_locked, true, memory_order_relaxed);
  int saved = errno;
  void *p = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  errno = saved;
  return p == addr ? 0 : EINVAL;
}

/* The same call as decommit on Linux: MADV_DONTNEED already keeps the
 * range accessible, which is what a reset needs. */
int tsri_os_reset(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESET)) return ENOMEM;
  return os_dontneed(addr, size);
}

int tsri_os_release(void *addr, size_t size) {
  int saved = errno;
  int rc = munmap(addr, size) == 0 ? 0 : EINVAL;
  errno = saved;
  if (rc == 0) os_budget_give(size);
  return rc;
}

int tsri_os_remap(void *addr, size_t old_size, size_t new_size, void **out) {
#if defined(__linux__)
  if (TSRI_OS_FAIL(TSRI_OS_POINT_REMAP)) return ENOMEM;
  if (new_size > old_size && !os_budget_take(new_size - old_size)) return ENOMEM;
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE);
  errno = saved;
  if (p == MAP_FAILED) {
    if (new_size > old_size) os_budget_give(new_size - old_size);
    return ENOMEM;
  }
  if (new_size < old_size) os_budget_give(old_size - new_size);
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

/* The key is made once; when the OS refused it at initialisation, the
 * next tsri_os_thread_set tries again (under os_key_lock), so that no
 * value is ever set on a key that is not ours. */
static pthread_key_t os_exit_key;
static void (*os_exit_fn)(void *value);
static _Atomic int os_key_made;
static pthread_mutex_t os_key_lock = PTHREAD_MUTEX_INITIALIZER;

static int os_key_make(void) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_KEY)) return ENOMEM;
  int saved = errno;
  pthread_mutex_lock(&os_key_lock);
  int rc = 0;
  if (!atomic_load_explicit(&os_key_made, memory_order_relaxed)) {
    rc = pthread_key_create(&os_exit_key, os_exit_fn);
    if (rc == 0) atomic_store_explicit(&os_key_made, 1, memory_order_release);
  }
  pthread_mutex_unlock(&os_key_lock);
  errno = saved;
  return rc;
}

int tsri_os_thread_exit_init(void (*fn)(void *value)) {
  os_exit_fn = fn;
  return os_key_make();
}

int tsri_os_thread_set(void *value) {
  if (!atomic_load_explicit(&os_key_made, memory_order_acquire) && os_key_make() != 0) return ENOMEM;
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_SET)) return ENOMEM;
  int saved = errno;
  int rc = pthread_setspecific(os_exit_key, value) == 0 ? 0 : ENOMEM;
  errno = saved;
  return rc;
}

void tsri_os_yield(void) { sched_yield(); }

#if defined(__linux__)
#include <linux/futex.h>

void tsri_os_wait(_Atomic int *addr, int expected) {
  int saved = errno;
  syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
  errno = saved;
}

void tsri_os_wake(_Atomic int *addr) {
  int saved = errno;
  syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  errno = saved;
}
#else
void tsri_os_wait(_Atomic int *addr, int expected) {
  (void)addr;
  (void)expected;
  sched_yield();
}

void tsri_os_wake(_Atomic int *addr) { (void)addr; }
#endif

bool tsri_os_others_gone(void) { return false; }

/* libstdc++'s, when the process has it (a weak reference: 0 otherwise). */
extern void _ZN9__gnu_cxx9__freeresEv(void) __attribute__((weak));

void tsri_os_runtime_freeres(void) {
  if (_ZN9__gnu_cxx9__freeresEv != NULL) _ZN9__gnu_cxx9__freeresEv();
}

/* The C++ ABI's demangler (libstdc++, libc++abi), when the process has it.
 * Its answer comes from the process's malloc, which need not be tessera
 * (a library loaded with dlopen, or under another preloaded heap), and
 * goes back to the process's free: found by name, since this library's
 * own calls to free are bound to tessera's. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status) __attribute__((weak));
static void (*_Atomic os_process_free)(void *);

bool tsri_os_demangle(const char *name, char *out, size_t size) {
  char mangled[512];
  size_t n = strcspn(name, "@");
  if (__cxa_demangle == NULL || size == 0 || strncmp(name, "_Z", 2) != 0 || n >= sizeof mangled) return false;
  memcpy(mangled, name, n);
  mangled[n] = 0;
  int saved = errno, status = -1;
  void (*process_free)(void *) = atomic_load_explicit(&os_process_free, memory_order_relaxed);
  if (process_free == NULL) {
    process_free = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
    if (process_free == NULL) {
      errno = saved;
      return false;
    }
    atomic_store_explicit(&os_process_free, process_free, memory_order_relaxed);
  }
  char *d = __cxa_demangle(mangled, NULL, NULL, &status);
  bool ok = d != NULL && status == 0;
  if (ok) {
    size_t len = strlen(d);
    if (len >= size) len = size - 1;
    memcpy(out, d, len);
    out[len] = 0;
  }
  process_free(d);
  errno = saved;
  return ok;
}

int tsri_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  return pthread_atfork(prepare, parent, child);
}

bool tsri_os_single_threaded(void) {
#if OS_SINGLE_THREADED_KNOWN
  return __libc_single_threaded != 0;
#else
  return false;
#endif
}

#if defined(__GLIBC__)
/* Exported by glibc (GLIBC_2.2.5), no longer declared by its headers. */
extern void _IO_list_lock(void);
extern void _IO_list_unlock(void);
extern void _IO_list_resetlock(void);

void tsri_os_stdio_lock(void) { _IO_list_lock(); }

/* In the child glibc's fork has reset the lock already when the process
 * had threads; resetting it again is harmless, and right when it had none
 * (fork then leaves the lock as it was, held by us). */
void tsri_os_stdio_unlock(bool child) {
  if (child) _IO_list_resetlock();
  else _IO_list_unlock();
}
#else
void tsri_os_stdio_lock(void) {}
void tsri_os_stdio_unlock(bool child) { (void)child; }
#endif

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

void tsri_os_sleep_ms(uint32_t ms) {
  int saved = errno;
  struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
  nanosleep(&ts, NULL);
  errno = saved;
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

bool tsri_os_env_ready(void) { return environ != NULL; }

#if defined(__linux__)
#include <sys/auxv.h>

bool tsri_os_secure(void) { return getauxval(AT_SECURE) != 0; }
#else
bool tsri_os_secure(void) { return getuid() != geteuid() || getgid() != getegid(); }
#endif

_Noreturn void tsri_os_abort(void) { abort(); }

/* ------------------------------------------------------------------------
 * Process, files, address space, report triggers
 * ---------------------------------------------------------------------- */

uint32_t tsri_os_thread_id(void) {
#if defined(__linux__)
  return (uint32_t)syscall(SYS_gettid);
#else
  return (uint32_t)(uintptr_t)pthread_self();
#endif
}

uint32_t tsri_os_process_id(void) { return (uint32_t)getpid(); }

/* Parse one line of /proc/self/maps:
 * "start-end perms offset dev inode   name" */
static bool maps_line(char *line, tsri_os_region_t *r) {
  char *s = line;
  uintptr_t v[2] = { 0, 0 };
  for (int i = 0; i < 2; i++) {
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    while ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))
      v[i] = v[i] * 16 + (uintptr_t)(*s <= '9' ? *s - '0' : *s - 'a' + 10), s++;
    if (i == 0 && *s++ != '-') return false;
  }
  if (*s++ != ' ' || s[0] == 0 || s[1] == 0 || s[2] == 0) return false;
  r->start = v[0];
  r->end = v[1];
  r->prot = (s[0] == 'r' ? 1u : 0u) | (s[1] == 'w' ? 2u : 0u) | (s[2] == 'x' ? 4u : 0u);
  r->accessible = r->prot != 0;
  for (int field = 0; field < 4 && *s; field++) {   /* perms offset dev inode */
    while (*s && *s != ' ') s++;
    while (*s == ' ') s++;
  }
  r->name = s;
  return true;
}

int tsri_os_regions(int (*fn)(const tsri_os_region_t *r, void *arg), void *arg,
                    uintptr_t *lo, uintptr_t *hi) {
  int saved = errno;
  *lo = 0x10000;   /* vm.mmap_min_addr's usual value */
  *hi = UINTPTR_MAX > 0xFFFFFFFFu ? ((uintptr_t)1 << 47) : (uintptr_t)0xC0000000u;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int rc = errno;
    errno = saved;
    return rc;
  }
  char buf[8192];
  size_t have = 0;
  int stop = 0;
  uintptr_t guard_end = 0;   /* end of the last anonymous no-access page run of up to 64 KiB */
  for (;;) {
    intptr_t n = tsri_os_read(fd, buf + have, sizeof buf - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 && have == 0) break;
    if (n > 0) have += (size_t)n;
    buf[have] = 0;
    char *line = buf, *nl;
    while (!stop && (nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
      *nl = 0;
      tsri_os_region_t r = { 0 };
      /* a 32-bit process on a 64-bit kernel has all 4 GiB: its mappings
       * above 3 GiB say so */
      if (maps_line(line, &r) && UINTPTR_MAX <= 0xFFFFFFFFu && r.end > *hi) *hi = (uintptr_t)0xFFFFE000u;
      if (r.end != 0 && r.end <= *hi) {
        bool anon = r.name[0] == 0;
        if (strcmp(r.name, "[heap]") == 0) r.holder = TSRI_OS_HOLDER_HEAP;
        else if (strncmp(r.name, "[stack", 6) == 0) r.holder = TSRI_OS_HOLDER_STACK;
        else if (anon && (r.prot & 3u) == 3u && guard_end == r.start) r.holder = TSRI_OS_HOLDER_STACK;
        guard_end = anon && r.prot == 0 && r.end - r.start <= 65536 ? r.end : 0;
        stop = fn(&r, arg);
      }
      line = nl + 1;
    }
    if (stop) break;
    size_t rest = have - (size_t)(line - buf);
    if (rest == have && n <= 0) break;                 /* a last line without newline */
    if (rest == sizeof buf - 1) rest = 0;              /* a line longer than the buffer */
    memmove(buf, line, rest);
    have = rest;
  }
  close(fd);
  errno = saved;
  return 0;
}

typedef struct os_thread_s {
  void (*fn)(void *);
  void *arg;
} os_thread_t;

static void *os_thread_main(void *p) {
  os_thread_t t = *(os_thread_t *)p;
  tsri_os_release(p, tsri_os_page_size());
  t.fn(t.arg);
  return NULL;
}

#define OS_THREAD_STACK ((size_t)256 << 10)
#define OS_THREAD_STACK_ROOMY ((size_t)8 << 20)

/* The C library carves a thread's static TLS (every module's PT_TLS) out
 * of the stack size asked for: 236 KiB of a program's __thread data left
 * the report thread 20 KiB, which it overflowed.  Counted once. */
static int os_tls_visit(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  for (size_t i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_TLS) *(size_t *)arg += info->dlpi_phdr[i].p_memsz + info->dlpi_phdr[i].p_align;
  return 0;
}

static size_t os_thread_stack(void) {
  static _Atomic size_t stack;
  size_t s = atomic_load_explicit(&stack, memory_order_relaxed), page = tsri_os_page_size();
  if (s == 0) {
    dl_iterate_phdr(os_tls_visit, &s);
    s = OS_THREAD_STACK + ((s + page - 1) & ~(page - 1));
    atomic_store_explicit(&stack, s, memory_order_relaxed);
  }
  return s;
}

int tsri_os_thread_start(void (*fn)(void *arg), void *arg) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_START)) return ENOMEM;
  if (tsri_os_restricted()) return EPERM;   /* clone may be what kills it (posix_restrict.c) */
  int saved = errno;
  void *mem;
  int rc = os_alloc(tsri_os_page_size(), tsri_os_page_size(), &mem);
  if (rc == 0) {
    os_thread_t *t = mem;
    t->fn = fn;
    t->arg = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* tessera's threads need tens of KiB (a report about 50 under ASan);
     * the default, 8 MiB, is all resident in a process that locks its
     * memory */
    pthread_attr_setstacksize(&attr, os_thread_stack());
    /* of normal priority when a thread of real-time priority starts them:
     * they would inherit it, and their rounds of work would keep the
     * program's other threads of that CPU waiting.  Any other policy is
     * inherited: a SCHED_IDLE program may not raise its threads to
     * SCHED_OTHER (EPERM, and no thread would start) */
    int policy;
    struct sched_param param;
    if (pthread_getschedparam(pthread_self(), &policy, &param) == 0 && (policy == SCHED_FIFO || policy == SCHED_RR)) {
      param.sched_priority = 0;
      pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
      pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
      pthread_attr_setschedparam(&attr, &param);
    }
    /* Every signal blocked while the thread is made, a mask the thread
     * keeps: the program's signals go to its own threads, and none
     * interrupts pthread_create here.  It marks the process
     * multi-threaded, then takes the C library's malloc lock for the new
     * thread's TLS: a handler's fork there (glibc's tst-mallocfork2,
     * fork_helper signal_in_malloc) took fork's malloc locks on top of
     * its own thread's and waited for ever. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t id;
    rc = pthread_create(&id, &attr, os_thread_main, t);
    if (rc == EINVAL) {   /* static TLS grown since it was counted (a library loaded since) */
      pthread_attr_setstacksize(&attr, OS_THREAD_STACK_ROOMY);
      rc = pthread_create(&id, &attr, os_thread_main, t);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) tsri_os_release(mem, tsri_os_page_size());
  }
  errno = saved;
  return rc;
}

static sem_t os_wakeup;

int tsri_os_wakeup_init(void) { return sem_init(&os_wakeup, 0, 0) == 0 ? 0 : ENOSYS; }

void tsri_os_wakeup_post(void) {
  int saved = errno;
  sem_post(&os_wakeup);
  errno = saved;
}

void tsri_os_wakeup_wait(uint64_t timeout_ms) {
  int saved = errno;
  if (timeout_ms == 0) {
    while (sem_wait(&os_wakeup) != 0 && errno == EINTR) {
    }
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    while (sem_timedwait(&os_wakeup, &ts) != 0 && errno == EINTR) {
    }
  }
  errno = saved;
}

static void (*os_signal_handler)(void);

static void os_on_signal(int sig) {
  (void)sig;
  os_signal_handler();
}

int tsri_os_signal(int which, void (*handler)(void)) {
  static const int signals[] = { 0, SIGUSR1, SIGUSR2, SIGHUP };
  if (which <= 0 || which > 3) return ENOTSUP;
  int saved = errno;
  os_signal_handler = handler;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = os_on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  int rc = sigaction(signals[which], &sa, NULL) == 0 ? 0 : errno;
  errno = saved;
  return rc;
}
