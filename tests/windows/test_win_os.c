/* test_win_os.c: the Windows backend's host services, called directly
 * (alloc/os/os.h): stack capture and symbols (module, function from the
 * COFF symbol table, file and line from DWARF), the program path, files,
 * thread ids, the report thread's start and wake-up, and the honest
 * ENOTSUP for signals. */
#include "win_test.h"

#include <errno.h>
#include <stdint.h>
#include <windows.h>

#include "os/os.h"

static volatile int sink;
static unsigned capture_line;   /* the line of the call in capture_here */

/* noipa: no clone with a suffixed name (.constprop) in an optimised build */
__attribute__((noipa)) static size_t capture_here(void **frames, size_t max) {
  size_t n = tsri_os_stack_capture(frames, max, 0); capture_line = __LINE__;
  sink++;   /* no tail call: this frame stays on the stack */
  return n;
}

__attribute__((noinline)) static void stack_and_symbols(void) {
  void *frames[32];
  size_t n = capture_here(frames, 32);
  sink++;
  CHECK_MSG(n >= 3, "only %zu frames", n);
  tsri_os_symbol_t sym;
  CHECK(tsri_os_symbolize(frames[0], &sym) == 0);
  CHECK_MSG(strcmp(sym.function, "capture_here") == 0, "frame 0 is '%s'", sym.function);
  CHECK(sym.offset > 0 && sym.offset < 256);
  size_t m = strlen(sym.module);
  CHECK_MSG(m >= 15 && _stricmp(sym.module + m - 15, "test_win_os.exe") == 0, "module '%s'", sym.module);
  CHECK(sym.module_offset > 0);
  m = strlen(sym.file);
  CHECK_MSG(m >= 13 && strcmp(sym.file + m - 13, "test_win_os.c") == 0, "file '%s'", sym.file);
  CHECK_MSG(sym.line == capture_line, "line %u, the call is on line %u", sym.line, capture_line);
  CHECK(tsri_os_symbolize(frames[1], &sym) == 0);
  CHECK_MSG(strcmp(sym.function, "stack_and_symbols") == 0, "frame 1 is '%s'", sym.function);
  /* inside a batch, the same answers from the cached file */
  tsri_os_symbols_begin();
  CHECK(tsri_os_symbolize(frames[0], &sym) == 0 && strcmp(sym.function, "capture_here") == 0);
  CHECK(tsri_os_symbolize(frames[1], &sym) == 0 && strcmp(sym.function, "stack_and_symbols") == 0);
  tsri_os_symbols_end();
  /* a system DLL: named from its exports */
  void *sleep_addr = (void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "Sleep");
  CHECK(sleep_addr != NULL);
  CHECK(tsri_os_symbolize((char *)sleep_addr + 1, &sym) == 0);
  CHECK_MSG(strstr(sym.module, "kernel32") != NULL || strstr(sym.module, "KERNEL32") != NULL, "module '%s'",
            sym.module);
  CHECK_MSG(sym.function[0] != 0, "no name for Sleep");
  /* an address in no module */
  int local;
  CHECK(tsri_os_symbolize(&local, &sym) == ENOENT);
  CHECK(sym.function[0] == 0 && sym.module[0] == 0);
}

static void skip_drops_frames(void) {
  void *a[16], *b[16];
  size_t na = tsri_os_stack_capture(a, 16, 0);
  size_t nb = tsri_os_stack_capture(b, 16, 1);
  CHECK(na >= 2 && nb == na - 1);
  for (size_t i = 1; i < nb; i++) CHECK(b[i] == a[i + 1]);
  CHECK(tsri_os_stack_capture(a, 0, 0) == 0);
}

static void program_and_ids(void) {
  char path[1024];
  tsri_os_program(path, sizeof path);
  size_t m = strlen(path);
  CHECK_MSG(m >= 15 && _stricmp(path + m - 15, "test_win_os.exe") == 0, "program '%s'", path);
  char tiny[4];
  tsri_os_program(tiny, sizeof tiny);
  CHECK(tiny[0] == 0);   /* does not fit: "" */
  CHECK(tsri_os_thread_id() == GetCurrentThreadId());
  CHECK(tsri_os_process_id() == GetCurrentProcessId());
  CHECK(tsri_os_page_size() == 4096);
  CHECK(tsri_os_granularity() == 65536);
}

static void files_append(void) {
  char dir[MAX_PATH], path[MAX_PATH];
  CHECK(GetTempPathA(sizeof dir, dir) > 0);
  snprintf(path, sizeof path, "%stessera-os-test-%lu.txt", dir, (unsigned long)GetCurrentProcessId());
  DeleteFileA(path);
  for (int round = 0; round < 2; round++) {
    intptr_t h;
    CHECK(tsri_os_file_append(path, &h) == 0);
    CHECK(tsri_os_file_write(h, "hello ", 6) == 0);
    tsri_os_file_close(h);
  }
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  char buf[64] = { 0 };
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  DeleteFileA(path);
  CHECK(got == 12 && strcmp(buf, "hello hello ") == 0);
  intptr_t h;
  errno = 77;
  CHECK(tsri_os_file_append("Z:\\no\\such\\dir\\at\\all\\x.txt", &h) != 0);
  CHECK(errno == 77);   /* errno left alone */
}

static volatile LONG ran;

static void on_thread(void *arg) {
  InterlockedExchange(&ran, (LONG)(intptr_t)arg);
  tsri_os_wakeup_post();
}

static void thread_and_wakeup(void) {
  CHECK(tsri_os_wakeup_init() == 0);
  DWORD t0 = GetTickCount();
  tsri_os_wakeup_wait(50);   /* nothing posted: the timeout */
  CHECK(GetTickCount() - t0 >= 40);
  CHECK(tsri_os_thread_start(on_thread, (void *)(intptr_t)42) == 0);
  tsri_os_wakeup_wait(0);    /* until the thread posts */
  CHECK(ran == 42);
}

static void no_signals_on_windows(void) {
  CHECK(tsri_os_signal(2, NULL) == ENOTSUP);
  CHECK(tsri_os_signal(1, NULL) == ENOTSUP);
  CHECK(tsri_os_remap(NULL, 4096, 8192, NULL) == ENOTSUP);
}

static void memory_keeps_last_error(void) {
  void *p;
  SetLastError(1234);
  errno = 56;
  CHECK(tsri_os_reserve(1 << 20, 1 << 20, &p) == 0);
  CHECK(((uintptr_t)p & ((1 << 20) - 1)) == 0);
  CHECK(tsri_os_commit(p, 8192) == 0);
  ((char *)p)[8191] = 1;
  CHECK(tsri_os_decommit(p, 8192) == 0);
  CHECK(tsri_os_release(p, 1 << 20) == 0);
  CHECK(GetLastError() == 1234 && errno == 56);
  uint64_t held = tsri_os_reserved();
  CHECK(tsri_os_reserve((size_t)1 << 20, 3u << 16, &p) == EINVAL);   /* not a power of two */
  /* a refusal keeps them too, and takes nothing from the budget */
  CHECK(tsri_os_reserve((size_t)1 << 20, 0x1000000 + 0x10000, &p) == EINVAL);
  CHECK(tsri_os_alloc(SIZE_MAX - 0xffff, 1 << 16, &p) == ENOMEM);
  CHECK(tsri_os_reserve(SIZE_MAX / 2 + 1, (size_t)1 << 24, &p) == ENOMEM);
  CHECK(GetLastError() == 1234 && errno == 56);
  CHECK(tsri_os_reserved() == held);
}

/* Aligned reservations from several threads at once: each one reserves
 * more than it needs, lets it go and takes the aligned part, which another
 * thread may have taken meanwhile (windows.c: os_virtual_alloc). */
#define RACE_THREADS 6
#define RACE_ROUNDS 150
#define RACE_SIZE ((size_t)4 << 20)

static volatile LONG race_bad;

static DWORD WINAPI reserve_race(void *arg) {
  void *mine[8];
  size_t align = (size_t)arg;
  for (int r = 0; r < RACE_ROUNDS; r++) {
    for (int k = 0; k < 8; k++) {
      if (tsri_os_reserve(RACE_SIZE, align, &mine[k]) != 0 || ((uintptr_t)mine[k] & (align - 1)) != 0) {
        InterlockedIncrement(&race_bad);
        return 1;
      }
      MEMORY_BASIC_INFORMATION m;
      if (VirtualQuery(mine[k], &m, sizeof m) != sizeof m || m.AllocationBase != mine[k] ||
          m.State != MEM_RESERVE || m.RegionSize != RACE_SIZE) {
        InterlockedIncrement(&race_bad);
        return 1;
      }
    }
    for (int k = 0; k < 8; k++)
      if (tsri_os_release(mine[k], RACE_SIZE) != 0) InterlockedIncrement(&race_bad);
  }
  return 0;
}

static void aligned_reserve_from_many_threads(void) {
  uint64_t held = tsri_os_reserved();
  HANDLE th[RACE_THREADS];
  for (int i = 0; i < RACE_THREADS; i++) {
    size_t align = (size_t)1 << (22 + i % 3);   /* 4, 8 and 16 MiB */
    th[i] = CreateThread(NULL, 0, reserve_race, (void *)align, 0, NULL);
    CHECK(th[i] != NULL);
  }
  for (int i = 0; i < RACE_THREADS; i++) {
    CHECK(WaitForSingleObject(th[i], 60000) == WAIT_OBJECT_0);
    CloseHandle(th[i]);
  }
  CHECK_MSG(race_bad == 0, "%ld reservations failed or misaligned", (long)race_bad);
  CHECK(tsri_os_reserved() == held);
}

WT_MAIN(WT_CASE(stack_and_symbols), WT_CASE(skip_drops_frames), WT_CASE(program_and_ids),
        WT_CASE(files_append), WT_CASE(thread_and_wakeup), WT_CASE(no_signals_on_windows),
        WT_CASE(memory_keeps_last_error), WT_CASE(aligned_reserve_from_many_threads))
