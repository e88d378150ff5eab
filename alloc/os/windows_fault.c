/* windows_fault.c: what meshing and guarded sampling need of Windows
 * (os.h): the fault handler they share, guard pages, a fine clock, and
 * meshing's memory mapped twice, which tessera does not have on Windows
 * yet (only the report's reason why).  Split from windows.c, which keeps
 * memory, threads, files and the address-space walk.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include "os.h"

#include <errno.h>

/* errno and the thread's last error, kept across a call (as in windows.c) */
#define OS_SAVE int saved_errno = errno; DWORD saved_last = GetLastError()
#define OS_RESTORE (errno = saved_errno, SetLastError(saved_last))

/* Meshing needs memory that can be mapped at two addresses and replaced
 * in place without a hole: on Windows, a pagefile-backed section mapped
 * into placeholders (VirtualAlloc2, MapViewOfFile3, UnmapViewOfFile2:
 * Windows 10 1803 and later; docs/windows.md, "Meshing", has the design).
 * tessera does not use them yet: tsri_os_share_open answers ENOSYS,
 * meshing stays off, and the rest is never called.  The report says why
 * (tsri_os_share_why): the OS lacks placeholders, or tessera lacks the
 * port.  wine 8.0 exports the three functions from kernelbase.dll (not
 * kernel32.dll) but refuses MEM_RESERVE_PLACEHOLDER with
 * ERROR_INVALID_PARAMETER, so tessera cannot be tested with them there. */
#define OS_MEM_RESERVE_PLACEHOLDER 0x00040000u   /* not in mingw's headers */

typedef PVOID(WINAPI *os_valloc2_t)(HANDLE process, PVOID base, SIZE_T size, ULONG type, ULONG prot,
                                    void *params, ULONG count);

/* What the OS offers, asked once: 1 no placeholder functions, 2 they are
 * there but refuse a placeholder, 3 placeholders work.  Only
 * ERROR_INVALID_PARAMETER is a refusal: any other failure (no address
 * space left, in a report at failure) means the OS took the flag. */
static int os_placeholders(void) {
  static volatile LONG known;
  LONG k = known;
  if (k != 0) return (int)k;
  OS_SAVE;
  HMODULE kb = GetModuleHandleW(L"kernelbase.dll");
  os_valloc2_t valloc2 = kb != NULL ? (os_valloc2_t)(void (*)(void))GetProcAddress(kb, "VirtualAlloc2") : NULL;
  k = 1;
  if (valloc2 != NULL && GetProcAddress(kb, "MapViewOfFile3") != NULL &&
      GetProcAddress(kb, "UnmapViewOfFile2") != NULL) {
    /* one allocation granule, released at once: not counted in the cap */
    void *p = valloc2(NULL, NULL, tsri_os_granularity(), MEM_RESERVE | OS_MEM_RESERVE_PLACEHOLDER,
                      PAGE_NOACCESS, NULL, 0);
    k = p != NULL || GetLastError() != ERROR_INVALID_PARAMETER ? 3 : 2;
    if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  }
  OS_RESTORE;
  InterlockedExchange(&known, k);
  return (int)k;
}

const char *tsri_os_share_why(void) {
  switch (os_placeholders()) {
  case 1: return "placeholders (VirtualAlloc2, MapViewOfFile3) not available: the OS lacks them "
                 "(before Windows 10 1803)";
  case 2: return "placeholders (VirtualAlloc2, MapViewOfFile3) not available: VirtualAlloc2 refuses "
                 "MEM_RESERVE_PLACEHOLDER";
  default: return "not built for Windows yet (the OS has placeholders: VirtualAlloc2, MapViewOfFile3)";
  }
}

int tsri_os_share_open(void) { return ENOSYS; }
void tsri_os_share_close(void) {}
bool tsri_os_share_ok(void) { return false; }
int tsri_os_share_size(uint64_t bytes) { (void)bytes; return ENOSYS; }
int tsri_os_share_write(uint64_t off, const void *src, size_t size) {
  (void)off; (void)src; (void)size;
  return ENOSYS;
}
int tsri_os_share_map(void *addr, size_t size, uint64_t off) {
  (void)addr; (void)size; (void)off;
  return ENOSYS;
}
int tsri_os_share_punch(uint64_t off, size_t size) { (void)off; (void)size; return ENOSYS; }
int tsri_os_private_map(void *addr, size_t size) { (void)addr; (void)size; return ENOSYS; }
int tsri_os_protect(void *addr, size_t size, bool write) {
  (void)addr; (void)size; (void)write;
  return ENOSYS;
}
size_t tsri_os_map_limit(void) { return 0; }
/* Faults: a vectored exception handler, first in the chain, sees every
 * access violation before the program's own handlers (structured
 * exception handlers, the unhandled-exception filter) and passes on what
 * no registered function takes: the process then ends as it would have.
 * A vectored handler cannot be replaced, so once installed it stays ours. */
static bool (*volatile fault_fns[TSRI_OS_FAULT_FNS])(void *addr);
static volatile LONG fault_state;   /* 0: not installed, 1: being installed, 2: installed */

static LONG CALLBACK fault_handler(EXCEPTION_POINTERS *info) {
  EXCEPTION_RECORD *r = info->ExceptionRecord;
  if (r->ExceptionCode != EXCEPTION_ACCESS_VIOLATION || r->NumberParameters < 2)
    return EXCEPTION_CONTINUE_SEARCH;
  void *addr = (void *)r->ExceptionInformation[1];
  for (size_t i = 0; i < TSRI_OS_FAULT_FNS; i++) {
    bool (*fn)(void *) = fault_fns[i];
    if (fn != NULL && fn(addr)) return EXCEPTION_CONTINUE_EXECUTION;
  }
  return EXCEPTION_CONTINUE_SEARCH;
}

int tsri_os_fault_catch(bool (*fn)(void *addr)) {
  size_t at = TSRI_OS_FAULT_FNS;
  for (size_t i = 0; i < TSRI_OS_FAULT_FNS && at == TSRI_OS_FAULT_FNS; i++) {
    if (fault_fns[i] == fn) at = i;
    else if (InterlockedCompareExchangePointer((PVOID volatile *)&fault_fns[i], (PVOID)fn, NULL) == NULL) at = i;
  }
  if (at == TSRI_OS_FAULT_FNS) return ENOSPC;
  if (InterlockedCompareExchange(&fault_state, 1, 0) != 0) {
    while (fault_state == 1) SwitchToThread();
    return fault_state == 2 ? 0 : EAGAIN;
  }
  OS_SAVE;
  bool ok = AddVectoredExceptionHandler(1, fault_handler) != NULL;
  OS_RESTORE;
  InterlockedExchange(&fault_state, ok ? 2 : 0);
  return ok ? 0 : ENOMEM;
}

bool tsri_os_fault_front(void) { return fault_state == 2; }

int tsri_os_guard(void *addr, size_t size) { return tsri_os_decommit(addr, size); }
/* Windows has no asynchronous signals to hold back. */
void tsri_os_signals_hold(tsri_os_sigmask_t *saved) { (void)saved; }
void tsri_os_signals_restore(const tsri_os_sigmask_t *saved) { (void)saved; }

int tsri_os_pipe(intptr_t handles[2]) { (void)handles; return ENOSYS; }
void tsri_os_pipe_read_byte(intptr_t handle) { (void)handle; }

uint64_t tsri_os_clock_ns(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER now;
  if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  return (uint64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}
