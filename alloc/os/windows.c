/* windows.c: the Windows implementation of os.h (64- and 32-bit, built with
 * mingw-w64; see docs/windows.md).
 *
 * Owns: reservations (VirtualAlloc MEM_RESERVE, aligned beyond the 64 KiB
 * allocation granularity when asked), commit (MEM_COMMIT), decommit
 * (VirtualFree MEM_DECOMMIT: the pages fault until committed again, unlike
 * POSIX), reset (MEM_RESET), release (MEM_RELEASE of a whole reservation),
 * the thread-exit hook (a fiber-local storage slot with a callback, which
 * Windows runs when a thread ends), threads and the wake-up (CreateThread, a
 * semaphore), files (CreateFileW, appended), and the address-space walk
 * (VirtualQuery over the whole user range).  Stack capture and symbols are
 * in windows_symbols.c.
 *
 * Nothing here calls malloc: paths are converted in stack buffers, and the
 * only memory taken is from VirtualAlloc.  Every function leaves both errno
 * and the thread's last-error value (GetLastError) as the caller had them.
 */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <psapi.h>

#include "os.h"
#include "reserve_limit.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifndef ENOTSUP
#define ENOTSUP 129
#endif

/* Save and restore errno and GetLastError around a body of OS calls. */
#define OS_SAVE int saved_errno = errno; DWORD saved_last = GetLastError()
#define OS_RESTORE (errno = saved_errno, SetLastError(saved_last))

/* ------------------------------------------------------------------------
 * Sizes
 * ---------------------------------------------------------------------- */

static _Atomic size_t os_page, os_gran;
static _Atomic uintptr_t os_min_addr, os_max_addr;   /* the user address range */

static void os_sizes(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  atomic_store_explicit(&os_min_addr, (uintptr_t)si.lpMinimumApplicationAddress, memory_order_relaxed);
  atomic_store_explicit(&os_max_addr, (uintptr_t)si.lpMaximumApplicationAddress, memory_order_relaxed);
  atomic_store_explicit(&os_gran, si.dwAllocationGranularity ? si.dwAllocationGranularity : 65536,
                        memory_order_relaxed);
  atomic_store_explicit(&os_page, si.dwPageSize ? si.dwPageSize : 4096, memory_order_relaxed);
}

size_t tsri_os_page_size(void) {
  size_t page = atomic_load_explicit(&os_page, memory_order_relaxed);
  if (page == 0) {
    os_sizes();
    page = atomic_load_explicit(&os_page, memory_order_relaxed);
  }
  return page;
}

size_t tsri_os_granularity(void) {
  size_t gran = atomic_load_explicit(&os_gran, memory_order_relaxed);
  if (gran == 0) {
    os_sizes();
    gran = atomic_load_explicit(&os_gran, memory_order_relaxed);
  }
  return gran;
}

/* ------------------------------------------------------------------------
 * Memory
 * ---------------------------------------------------------------------- */

/* Where the next aligned reservation is tried first (64-bit): just past
 * the last one, so that arenas line up without the over-reserve dance
 * below. */
static _Atomic uintptr_t os_hint;

/* A 32-bit process: its 2 GiB are what runs out, so placement follows
 * FastMM's rule.  Aligned reservations (arenas, which live as long as the
 * process and hold its long-lived small blocks) go to the lowest aligned
 * window that is free; large blocks, which come and go, are reserved top
 * down (tsri_os_alloc_high, tsri_os_reserve_open); the free space stays
 * one range between the two instead of being cut by whichever came
 * last. */
#define OS_SPACE_TIGHT (UINTPTR_MAX <= 0xFFFFFFFFu)

/* Whether the process runs under wine, whose VirtualQuery calls the free
 * parts of the ranges it reserved for itself at start-up MEM_RESERVE,
 * though VirtualAlloc hands them out (in a 32-bit process everything
 * above the first 512 MiB). */
static bool os_under_wine(void) {
  static _Atomic int wine;   /* 0 unknown, 1 no, 2 yes */
  int w = atomic_load_explicit(&wine, memory_order_relaxed);
  if (w == 0) {
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    w = ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL ? 2 : 1;
    atomic_store_explicit(&wine, w, memory_order_relaxed);
  }
  return w == 2;
}

/* A region a placement may try: free, or under wine one of wine's
 * reserved areas as VirtualQuery shows them (a try there fails at once
 * when the region is a real reservation). */
static bool os_may_place(const MEMORY_BASIC_INFORMATION *m) {
  return m->State == MEM_FREE || (m->State == MEM_RESERVE && m->Type == MEM_PRIVATE &&
                                  m->AllocationBase == m->BaseAddress && os_under_wine());
}

/* Reserve (type) size bytes at the lowest multiple of align inside a free
 * region, found by VirtualQuery from the bottom; NULL when none is free.
 * A window another thread took meanwhile is passed by. */
static void *os_alloc_lowest(size_t size, size_t align, DWORD type, DWORD prot) {
  uintptr_t at = atomic_load_explicit(&os_min_addr, memory_order_relaxed);
  uintptr_t last = atomic_load_explicit(&os_max_addr, memory_order_relaxed);
  while (at < last) {
    MEMORY_BASIC_INFORMATION m;
    if (VirtualQuery((const void *)at, &m, sizeof m) != sizeof m || m.RegionSize == 0) break;
    uintptr_t start = (uintptr_t)m.BaseAddress, end = start + m.RegionSize;
    if (end <= at) break;
    uintptr_t want = (start + align - 1) & ~(uintptr_t)(align - 1);
    if (os_may_place(&m) && want >= start && want + size > want && want + size <= end) {
      void *p = VirtualAlloc((void *)want, size, type, prot);
      if (p == (void *)want) return p;
      if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
    }
    at = end;
  }
  return NULL;
}

/* A large block in a 32-bit process: best fit, at the top of the
 * smallest free region that holds it (found by VirtualQuery), so that the
 * big free ranges stay whole for the big requests to come, as a best-fit
 * heap keeps its big free chunks; NULL when none does or another thread
 * took it meanwhile (the caller asks for MEM_TOP_DOWN instead). */
static void *os_alloc_best(size_t size, DWORD type, DWORD prot) {
  size_t gran = tsri_os_granularity();
  uintptr_t at = atomic_load_explicit(&os_min_addr, memory_order_relaxed);
  uintptr_t last = atomic_load_explicit(&os_max_addr, memory_order_relaxed);
  uintptr_t best = 0, best_len = 0;
  while (at < last) {
    MEMORY_BASIC_INFORMATION m;
    if (VirtualQuery((const void *)at, &m, sizeof m) != sizeof m || m.RegionSize == 0) break;
    uintptr_t start = (uintptr_t)m.BaseAddress, end = start + m.RegionSize;
    if (end <= at) break;
    uintptr_t top = (end - size) & ~(uintptr_t)(gran - 1);
    if (os_may_place(&m) && m.RegionSize >= size && top >= start && (best_len == 0 || m.RegionSize <= best_len)) {
      best = top;
      best_len = m.RegionSize;
    }
    at = end;
  }
  if (best_len == 0) return NULL;
  void *p = VirtualAlloc((void *)best, size, type, prot);
  if (p == (void *)best) return p;
  if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  return NULL;
}

/* VirtualAlloc size bytes (type MEM_RESERVE, or MEM_RESERVE|MEM_COMMIT,
 * with MEM_TOP_DOWN for a large block in a 32-bit process) aligned to
 * align.  Windows aligns every reservation to the allocation granularity;
 * beyond that it cannot trim a reservation as munmap can, so an aligned
 * one is found at the lowest free aligned window (32-bit) or just past
 * the last one (64-bit), else by reserving size + align, releasing it,
 * and reserving again at the aligned address inside it, which another
 * thread may take in between: then the whole step is tried again. */
static int os_virtual_alloc(size_t size, size_t align, DWORD type, void **out) {
  size_t gran = tsri_os_granularity();
  DWORD prot = (type & MEM_COMMIT) ? PAGE_READWRITE : PAGE_NOACCESS;
  if (size == 0 || (align & (align - 1)) != 0) return EINVAL;
  if (align <= gran) {
    void *p = (type & MEM_TOP_DOWN) ? os_alloc_best(size, type & ~(DWORD)MEM_TOP_DOWN, prot) : NULL;
    if (p == NULL) p = VirtualAlloc(NULL, size, type, prot);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
  }
  type &= ~(DWORD)MEM_TOP_DOWN;
  if (OS_SPACE_TIGHT) {
    void *p = os_alloc_lowest(size, align, type, prot);
    if (p != NULL) {
      *out = p;
      return 0;
    }
  }
  uintptr_t hint = atomic_load_explicit(&os_hint, memory_order_relaxed);
  if (!OS_SPACE_TIGHT && hint != 0 && (hint & (align - 1)) == 0) {
    void *p = VirtualAlloc((void *)hint, size, type, prot);
    if (p == (void *)hint) {
      atomic_store_explicit(&os_hint, hint + size, memory_order_relaxed);
      *out = p;
      return 0;
    }
    if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  }
  if (size + align < size) return ENOMEM;
  for (int attempt = 0; attempt < 64; attempt++) {
    void *wide = VirtualAlloc(NULL, size + align, MEM_RESERVE, PAGE_NOACCESS);
    if (wide == NULL) return ENOMEM;
    uintptr_t start = ((uintptr_t)wide + align - 1) & ~(uintptr_t)(align - 1);
    VirtualFree(wide, 0, MEM_RELEASE);
    void *p = VirtualAlloc((void *)start, size, type, prot);
    if (p == (void *)start) {
      atomic_store_explicit(&os_hint, start + size, memory_order_relaxed);
      *out = p;
      return 0;
    }
    if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  }
  return ENOMEM;
}

/* What a reservation of size bytes costs in address space: whole
 * allocation granules. */
static size_t os_span(size_t size) {
  size_t gran = tsri_os_granularity();
  return size + gran - 1 < size ? size : (size + gran - 1) & ~(gran - 1);
}

int tsri_os_reserve(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESERVE) || !os_budget_take(os_span(size))) return ENOMEM;
  OS_SAVE;
  int rc = os_virtual_alloc(size, align, MEM_RESERVE, out);
  OS_RESTORE;
  if (rc != 0) os_budget_give(os_span(size));
  return rc;
}

/* Placed high in a 32-bit process: a large segment (segment.c). */
int tsri_os_reserve_open(size_t size, size_t align, void **out, bool *open) {
  *open = false;   /* committed page by page, as any reservation */
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESERVE_OPEN) || !os_budget_take(os_span(size))) return ENOMEM;
  OS_SAVE;
  int rc = os_virtual_alloc(size, align, MEM_RESERVE | (OS_SPACE_TIGHT ? MEM_TOP_DOWN : 0), out);
  OS_RESTORE;
  if (rc != 0) os_budget_give(os_span(size));
  return rc;
}

static int os_alloc_placed(size_t size, size_t align, DWORD top, void **out) {
  if (!os_budget_take(os_span(size))) return ENOMEM;
  OS_SAVE;
  int rc = os_virtual_alloc(size, align, MEM_RESERVE | MEM_COMMIT | top, out);
  OS_RESTORE;
  if (rc != 0) os_budget_give(os_span(size));
  return rc;
}

int tsri_os_alloc(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_ALLOC)) return ENOMEM;
  return os_alloc_placed(size, align, 0, out);
}

int tsri_os_alloc_high(size_t size, size_t align, void **out) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_ALLOC_HIGH)) return ENOMEM;
  return os_alloc_placed(size, align, OS_SPACE_TIGHT ? MEM_TOP_DOWN : 0, out);
}

int tsri_os_alloc_uncapped(size_t size, void **out) {
  OS_SAVE;
  int rc = os_virtual_alloc(size, tsri_os_granularity(), MEM_RESERVE | MEM_COMMIT, out);
  OS_RESTORE;
  return rc;
}

void tsri_os_release_uncapped(void *addr, size_t size) {
  (void)size;
  OS_SAVE;
  VirtualFree(addr, 0, MEM_RELEASE);
  OS_RESTORE;
}

/* A binary search of reservations, each released at once; not counted
 * against the cap (nothing is kept). */
uint64_t tsri_os_largest_reservation(void) {
  OS_SAVE;
  size_t gran = tsri_os_granularity();
  uint64_t lo = 0;
  uint64_t hi = (uint64_t)atomic_load_explicit(&os_max_addr, memory_order_relaxed) + 1;
  if (hi > TSRI_OS_PROBE_MAX) hi = TSRI_OS_PROBE_MAX + gran;
  while (hi - lo > gran) {
    uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)(gran - 1);
    if (mid <= lo) break;
    void *p = mid <= SIZE_MAX ? VirtualAlloc(NULL, (size_t)mid, MEM_RESERVE, PAGE_NOACCESS) : NULL;
    if (p != NULL) {
      VirtualFree(p, 0, MEM_RELEASE);
      lo = mid;
    } else {
      hi = mid;
    }
  }
  OS_RESTORE;
  return lo;
}

int tsri_os_commit(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_COMMIT)) return ENOMEM;
  OS_SAVE;
  int rc = VirtualAlloc(addr, size, MEM_COMMIT, PAGE_READWRITE) == addr ? 0 : ENOMEM;
  OS_RESTORE;
  return rc;
}

int tsri_os_decommit(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_DECOMMIT)) return ENOMEM;
  OS_SAVE;
  int rc = VirtualFree(addr, size, MEM_DECOMMIT) ? 0 : EINVAL;
  OS_RESTORE;
  return rc;
}

/* MEM_RESET: the OS may drop the pages' contents instead of writing them
 * to the page file; they stay committed and accessible. */
int tsri_os_reset(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_RESET)) return ENOMEM;
  OS_SAVE;
  int rc = VirtualAlloc(addr, size, MEM_RESET, PAGE_READWRITE) != NULL ? 0 : EINVAL;
  OS_RESTORE;
  return rc;
}

/* size is the size of the whole reservation: Windows releases a
 * reservation only whole, from its base. */
int tsri_os_release(void *addr, size_t size) {
  OS_SAVE;
  int rc = VirtualFree(addr, 0, MEM_RELEASE) ? 0 : EINVAL;
  OS_RESTORE;
  if (rc == 0) os_budget_give(os_span(size));
  return rc;
}

/* Windows has no mremap: large.c copies instead. */
int tsri_os_remap(void *addr, size_t old_size, size_t new_size, void **out) {
  (void)addr; (void)old_size; (void)new_size; (void)out;
  return ENOTSUP;
}

/* ------------------------------------------------------------------------
 * Threads
 * ---------------------------------------------------------------------- */

static _Atomic DWORD os_fls = FLS_OUT_OF_INDEXES;
static void (*os_exit_fn)(void *value);
/* ntdll's RtlDllShutdownInProgress: true once ExitProcess has begun. */
static BOOLEAN (WINAPI *os_shutting_down)(void);

/* Runs when a thread that stored a value ends, and also for the thread
 * that calls ExitProcess, after every other thread was terminated
 * wherever it stood, possibly holding one of tessera's locks: handing a
 * heap on then could spin forever on such a lock, and would be of no use
 * to anyone, so the process's end is left alone.  WINAPI is not the C
 * convention on 32-bit, hence the wrapper. */
static void WINAPI os_fls_callback(void *value) {
  if (value == NULL || os_exit_fn == NULL) return;
  if (tsri_os_others_gone()) return;
  os_exit_fn(value);
}

/* The index is made once; when the OS refused it at initialisation, the
 * next tsri_os_thread_set tries again.  Two threads may both make one:
 * the loser frees its own. */
static int os_fls_make(void) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_KEY)) return ENOMEM;
  OS_SAVE;
  DWORD made = FlsAlloc(os_fls_callback), none = FLS_OUT_OF_INDEXES;
  if (made != FLS_OUT_OF_INDEXES &&
      !atomic_compare_exchange_strong_explicit(&os_fls, &none, made, memory_order_acq_rel, memory_order_acquire))
    FlsFree(made);
  OS_RESTORE;
  return made == FLS_OUT_OF_INDEXES ? ENOMEM : 0;
}

int tsri_os_thread_exit_init(void (*fn)(void *value)) {
  OS_SAVE;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (ntdll != NULL)
    os_shutting_down = (BOOLEAN (WINAPI *)(void))(void (*)(void))GetProcAddress(ntdll, "RtlDllShutdownInProgress");
  os_exit_fn = fn;
  OS_RESTORE;
  return os_fls_make();
}

bool tsri_os_others_gone(void) { return os_shutting_down != NULL && os_shutting_down(); }

bool tsri_os_secure(void) { return false; }

/* Locked pages (VirtualLock) are decommitted as any others. */
bool tsri_os_memory_locked(void) { return false; }

/* Windows has no seccomp; a job object's limits fail calls, never kill. */
void tsri_os_restriction_note(void) {}
bool tsri_os_restricted(void) { return false; }
bool tsri_os_restricted_known(void) { return false; }
void tsri_os_restriction_seen(void) {}

/* The C++ runtime as a DLL (a program linked with libstdc++ statically
 * keeps its pool in a report at exit). */
void tsri_os_runtime_freeres(void) {
  OS_SAVE;
  HMODULE cxx = GetModuleHandleW(L"libstdc++-6.dll");
  void (*freeres)(void) = NULL;
  if (cxx != NULL) freeres = (void (*)(void))GetProcAddress(cxx, "_ZN9__gnu_cxx9__freeresEv");
  OS_RESTORE;
  if (freeres != NULL) freeres();
}

/* mingw-w64's symbol tables (windows_symbols.c) name C++ functions as
 * they are spelt in the PE export and COFF tables; no decoding. */
bool tsri_os_demangle(const char *name, char *out, size_t size) {
  (void)name;
  (void)out;
  (void)size;
  return false;
}

int tsri_os_thread_set(void *value) {
  if (atomic_load_explicit(&os_fls, memory_order_acquire) == FLS_OUT_OF_INDEXES && os_fls_make() != 0) return ENOMEM;
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_SET)) return ENOMEM;
  OS_SAVE;
  int rc = FlsSetValue(atomic_load_explicit(&os_fls, memory_order_acquire), value) ? 0 : ENOMEM;
  OS_RESTORE;
  return rc;
}

void tsri_os_yield(void) {
  DWORD saved_last = GetLastError();
  SwitchToThread();
  SetLastError(saved_last);
}

/* A contended lock yields with SwitchToThread, which may hand the CPU to
 * a ready thread of lower priority too (Sleep(0) would not), so a holder
 * of lower priority gets to finish.  Not WaitOnAddress: a process that
 * returns from main while threads still allocate is ended by ExitProcess
 * wherever its threads stand, and with waits in WaitOnAddress about one
 * child in seventy of test_win_exit hung in its exit under wine (none in
 * 144 with the yield). */
void tsri_os_wait(_Atomic int *addr, int expected) {
  (void)addr;
  (void)expected;
  tsri_os_yield();
}

void tsri_os_wake(_Atomic int *addr) { (void)addr; }

/* Windows has no fork. */
int tsri_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  (void)prepare; (void)parent; (void)child;
  return 0;
}

bool tsri_os_single_threaded(void) { return false; }

void tsri_os_stdio_lock(void) {}

void tsri_os_stdio_unlock(bool child) { (void)child; }

/* ------------------------------------------------------------------------
 * Host services
 * ---------------------------------------------------------------------- */

uint64_t tsri_os_clock_ms(void) { return (uint64_t)GetTickCount64(); }

void tsri_os_sleep_ms(uint32_t ms) { Sleep(ms); }

/* The C runtime's copy of the environment, read in place (getenv may take
 * the CRT's lock, and _dupenv_s allocates).  Names compare without case,
 * as Windows compares them. */
const char *tsri_os_getenv(const char *name) {
  char **env = _environ;
  size_t n = strlen(name);
  if (env == NULL) return NULL;
  for (; *env != NULL; env++) {
    const char *e = *env;
    size_t i = 0;
    while (i < n && e[i] != 0) {
      char a = e[i], b = name[i];
      if (a >= 'a' && a <= 'z') a = (char)(a - 32);
      if (b >= 'a' && b <= 'z') b = (char)(b - 32);
      if (a != b) break;
      i++;
    }
    if (i == n && e[n] == '=') return e + n + 1;
  }
  return NULL;
}

bool tsri_os_env_ready(void) { return _environ != NULL; }

void tsri_os_write_stderr(const char *text, size_t len) {
  OS_SAVE;
  HANDLE h = GetStdHandle(STD_ERROR_HANDLE);
  while (h != NULL && h != INVALID_HANDLE_VALUE && len > 0) {
    DWORD w = 0;
    if (!WriteFile(h, text, len > 0x40000000u ? 0x40000000u : (DWORD)len, &w, NULL) || w == 0) break;
    text += w;
    len -= w;
  }
  OS_RESTORE;
}

_Noreturn void tsri_os_abort(void) { abort(); }

/* ------------------------------------------------------------------------
 * Process and files
 * ---------------------------------------------------------------------- */

uint32_t tsri_os_thread_id(void) { return (uint32_t)GetCurrentThreadId(); }
uint32_t tsri_os_process_id(void) { return (uint32_t)GetCurrentProcessId(); }

/* UTF-16 to UTF-8 into buf (size > 0); "" when it does not fit. */
static void os_utf8(const wchar_t *w, char *buf, size_t size) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, size > 0x7fffffff ? 0x7fffffff : (int)size,
                              NULL, NULL);
  if (n <= 0) buf[0] = 0;
}

void tsri_os_program(char *buf, size_t size) {
  OS_SAVE;
  wchar_t path[1024];
  DWORD n = GetModuleFileNameW(NULL, path, sizeof path / sizeof path[0]);
  if (n == 0 || n >= sizeof path / sizeof path[0]) buf[0] = 0;
  else os_utf8(path, buf, size);
  OS_RESTORE;
}

static int os_errno_of(DWORD err) {
  switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE: return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_WRITE_PROTECT: return EACCES;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME: return EINVAL;
    case ERROR_FILENAME_EXCED_RANGE: return ENAMETOOLONG;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: return ENOSPC;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return ENOMEM;
    default: return EIO;
  }
}

/* path is UTF-8.  Opened for appending with FILE_APPEND_DATA, so that
 * every write lands at the end even with other writers. */
int tsri_os_file_append(const char *path, intptr_t *handle) {
  OS_SAVE;
  wchar_t wpath[1024];
  int rc = 0;
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wpath,
                          (int)(sizeof wpath / sizeof wpath[0])) <= 0) {
    rc = GetLastError() == ERROR_INSUFFICIENT_BUFFER ? ENAMETOOLONG : EINVAL;
  } else {
    HANDLE h = CreateFileW(wpath, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) rc = os_errno_of(GetLastError());
    else *handle = (intptr_t)h;
  }
  OS_RESTORE;
  return rc;
}

int tsri_os_file_write(intptr_t handle, const char *text, size_t len) {
  OS_SAVE;
  int rc = 0;
  while (len > 0) {
    DWORD w = 0;
    if (!WriteFile((HANDLE)handle, text, len > 0x40000000u ? 0x40000000u : (DWORD)len, &w, NULL)) {
      rc = os_errno_of(GetLastError());
      break;
    }
    if (w == 0) { rc = EIO; break; }
    text += w;
    len -= w;
  }
  OS_RESTORE;
  return rc;
}

void tsri_os_file_close(intptr_t handle) {
  OS_SAVE;
  CloseHandle((HANDLE)handle);
  OS_RESTORE;
}

/* ------------------------------------------------------------------------
 * Address space: VirtualQuery from the lowest to the highest user address.
 * Each answer is a run of pages with the same state, protection and
 * allocation base; free runs are left out (report.c fills the gaps in).
 * ---------------------------------------------------------------------- */

static unsigned os_prot_bits(DWORD protect) {
  switch (protect & 0xff) {
    case PAGE_READONLY: return 1;
    case PAGE_READWRITE: return 3;
    case PAGE_WRITECOPY: return 3;
    case PAGE_EXECUTE: return 4;
    case PAGE_EXECUTE_READ: return 5;
    case PAGE_EXECUTE_READWRITE: return 7;
    case PAGE_EXECUTE_WRITECOPY: return 7;
    default: return 0;   /* PAGE_NOACCESS */
  }
}

/* The name of what backs an image or mapped region, UTF-8, "" when the OS
 * will not say. */
static void os_region_name(const MEMORY_BASIC_INFORMATION *m, char *buf, size_t size) {
  wchar_t w[512];
  buf[0] = 0;
  DWORD n = 0;
  if (m->Type == MEM_IMAGE)
    n = GetModuleFileNameW((HMODULE)m->AllocationBase, w, sizeof w / sizeof w[0]);
  else if (m->Type == MEM_MAPPED)
    n = K32GetMappedFileNameW(GetCurrentProcess(), m->BaseAddress, w, sizeof w / sizeof w[0]);
  if (n > 0 && n < sizeof w / sizeof w[0]) os_utf8(w, buf, size);
}

/* A reservation with nothing committed that VirtualAlloc grants again
 * (released at once) is free: wine's reserved areas.  On Windows the
 * call fails on any reservation. */
static bool os_reservable(uintptr_t start, uintptr_t end) {
  void *p = VirtualAlloc((void *)start, end - start, MEM_RESERVE, PAGE_NOACCESS);
  if (p == NULL) return false;
  VirtualFree(p, 0, MEM_RELEASE);
  return p == (void *)start;
}

/* What holds the reservation at base (private memory): a thread's stack
 * (a guard page in it, or the calling thread's own, which holds a local
 * variable of this function), a heap (the
 * first reservation of one of the process's heaps: GetProcessHeaps; its
 * later segments and big blocks are reservations of their own, which
 * stay TSRI_OS_HOLDER_NONE), or unknown.  Reads the regions of the
 * reservation ahead of the walk. */
static unsigned os_holder_of(uintptr_t base, uintptr_t last, const HANDLE *heaps, DWORD n_heaps) {
  uintptr_t at = base, end = base;
  bool guard = false;
  while (at <= last) {
    MEMORY_BASIC_INFORMATION m;
    if (VirtualQuery((const void *)at, &m, sizeof m) != sizeof m || m.RegionSize == 0) break;
    if ((uintptr_t)m.AllocationBase != base || m.State == MEM_FREE) break;
    guard = guard || (m.State == MEM_COMMIT && (m.Protect & PAGE_GUARD));
    end = (uintptr_t)m.BaseAddress + m.RegionSize;
    at = end;
  }
  uintptr_t here = (uintptr_t)&at;
  if (guard || (here >= base && here < end)) return TSRI_OS_HOLDER_STACK;
  for (DWORD i = 0; i < n_heaps; i++)
    if ((uintptr_t)heaps[i] >= base && (uintptr_t)heaps[i] < end) return TSRI_OS_HOLDER_HEAP;
  return TSRI_OS_HOLDER_NONE;
}

int tsri_os_regions(int (*fn)(const tsri_os_region_t *r, void *arg), void *arg,
                    uintptr_t *lo, uintptr_t *hi) {
  OS_SAVE;
  tsri_os_page_size();
  uintptr_t first = atomic_load_explicit(&os_min_addr, memory_order_relaxed);
  uintptr_t last = atomic_load_explicit(&os_max_addr, memory_order_relaxed);
  *lo = first;
  *hi = last + 1;   /* lpMaximumApplicationAddress is the last byte */
  HANDLE heaps[64];
  DWORD n_heaps = GetProcessHeaps(sizeof heaps / sizeof heaps[0], heaps);
  if (n_heaps > sizeof heaps / sizeof heaps[0]) n_heaps = sizeof heaps / sizeof heaps[0];
  bool wine = os_under_wine();
  uintptr_t at = first, holder_base = 0;
  unsigned holder = TSRI_OS_HOLDER_NONE;
  char name[1024];
  while (at >= first && at <= last) {
    MEMORY_BASIC_INFORMATION m;
    if (VirtualQuery((const void *)at, &m, sizeof m) != sizeof m || m.RegionSize == 0) break;
    uintptr_t start = (uintptr_t)m.BaseAddress, end = start + m.RegionSize;
    if (end <= at) break;
    bool wine_free = wine && m.State == MEM_RESERVE && m.Type == MEM_PRIVATE &&
                     (uintptr_t)m.AllocationBase == start && os_reservable(start, end);
    if (m.State != MEM_FREE && !wine_free) {
      if (m.Type == MEM_PRIVATE && (uintptr_t)m.AllocationBase != holder_base) {
        holder_base = (uintptr_t)m.AllocationBase;
        holder = os_holder_of(holder_base, last, heaps, n_heaps);
      }
      tsri_os_region_t r;
      memset(&r, 0, sizeof r);
      r.start = start;
      r.end = end > last + 1 ? last + 1 : end;
      r.accessible = m.State == MEM_COMMIT;
      r.prot = m.State == MEM_COMMIT && !(m.Protect & PAGE_GUARD) ? os_prot_bits(m.Protect) : 0;
      r.type = m.Type == MEM_IMAGE ? 3u : m.Type == MEM_MAPPED ? 2u : 1u;
      r.base = (uintptr_t)m.AllocationBase;
      r.holder = m.Type == MEM_PRIVATE ? holder : TSRI_OS_HOLDER_NONE;
      os_region_name(&m, name, sizeof name);
      r.name = name;
      if (fn(&r, arg) != 0) break;
    }
    at = end;
  }
  OS_RESTORE;
  return 0;
}

/* ------------------------------------------------------------------------
 * Report triggers: a thread of our own and a semaphore to wake it
 * ---------------------------------------------------------------------- */

typedef struct os_thread_s {
  void (*fn)(void *);
  void *arg;
} os_thread_t;

static DWORD WINAPI os_thread_main(void *p) {
  os_thread_t t = *(os_thread_t *)p;
  tsri_os_release(p, tsri_os_page_size());
  t.fn(t.arg);
  return 0;
}

int tsri_os_thread_start(void (*fn)(void *arg), void *arg) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_THREAD_START)) return ENOMEM;
  void *mem;
  int rc = os_alloc_placed(tsri_os_page_size(), tsri_os_page_size(), 0, &mem);
  if (rc != 0) return rc;
  OS_SAVE;
  os_thread_t *t = mem;
  t->fn = fn;
  t->arg = arg;
  HANDLE h = CreateThread(NULL, 0, os_thread_main, t, 0, NULL);
  if (h == NULL) {
    rc = os_errno_of(GetLastError());
    if (rc == EIO) rc = EAGAIN;
    tsri_os_release(mem, tsri_os_page_size());
  } else {
    CloseHandle(h);
  }
  OS_RESTORE;
  return rc;
}

static HANDLE os_wakeup;

int tsri_os_wakeup_init(void) {
  if (os_wakeup != NULL) return 0;
  OS_SAVE;
  os_wakeup = CreateSemaphoreW(NULL, 0, 0x7fffffff, NULL);
  int rc = os_wakeup == NULL ? ENOMEM : 0;
  OS_RESTORE;
  return rc;
}

void tsri_os_wakeup_post(void) {
  OS_SAVE;
  if (os_wakeup != NULL) ReleaseSemaphore(os_wakeup, 1, NULL);
  OS_RESTORE;
}

void tsri_os_wakeup_wait(uint64_t timeout_ms) {
  OS_SAVE;
  if (os_wakeup != NULL) {
    DWORD ms = timeout_ms == 0 ? INFINITE : timeout_ms >= INFINITE ? INFINITE - 1 : (DWORD)timeout_ms;
    WaitForSingleObject(os_wakeup, ms);
  } else if (timeout_ms != 0) {
    Sleep(timeout_ms >= INFINITE ? INFINITE - 1 : (DWORD)timeout_ms);
  }
  OS_RESTORE;
}

/* Windows has no SIGUSR1, SIGUSR2 or SIGHUP, and nothing another process
 * can send that a console program receives as reliably (console control
 * events go to every process of the console, and CTRL_CLOSE kills it):
 * TESSERA_REPORT_SIGNAL is not supported; TESSERA_REPORT_INTERVAL_S and
 * tsr_report() are the ways to a report of a running process. */
int tsri_os_signal(int which, void (*handler)(void)) {
  (void)which; (void)handler;
  return ENOTSUP;
}
