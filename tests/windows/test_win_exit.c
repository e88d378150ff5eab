/* test_win_exit.c: a program that returns from main while its threads are
 * still allocating.  ExitProcess terminates those threads wherever they
 * stand, possibly inside tessera holding a lock, and then runs the
 * thread-exit callback (fiber-local storage) of the thread that called it;
 * that callback must not hand the heap on then, or it may spin forever on
 * the lock of a thread that no longer exists (windows.c: os_fls_callback).
 *
 * The test starts itself as a child several times (the race is not hit on
 * every run) and fails when a child does not end within its time. */
#include "win_test.h"

#include <tessera.h>
#include <windows.h>

#define CHILDREN 12
#define CHILD_MS 20000

static DWORD WINAPI churn(void *arg) {
  (void)arg;
  void *v[256];
  for (unsigned r = 0;; r++) {
    for (int i = 0; i < 256; i++) v[i] = tsr_malloc(16 + (size_t)((i * 37 + r) % 300) * 64);
    for (int i = 0; i < 256; i++) tsr_free(v[i]);
    tsr_collect();
  }
  return 0;
}

static DWORD WINAPI brief(void *arg) {
  (void)arg;
  tsr_free(tsr_malloc(100));
  tsr_free(tsr_malloc(5000));
  return 0;
}

/* Threads that start, allocate and end, over and over: their heaps are
 * handed on (and taken) all the time. */
static DWORD WINAPI spawn(void *arg) {
  (void)arg;
  for (;;) {
    HANDLE h = CreateThread(NULL, 0, brief, NULL, 0, NULL);
    if (h == NULL) continue;
    WaitForSingleObject(h, INFINITE);
    CloseHandle(h);
  }
  return 0;
}

static int child(void) {
  tsr_free(tsr_malloc(10));   /* this thread has a heap: its callback runs at exit */
  void *keep = tsr_malloc(10);
  (void)keep;
  for (int i = 0; i < 4; i++) CreateThread(NULL, 0, churn, NULL, 0, NULL);
  for (int i = 0; i < 4; i++) CreateThread(NULL, 0, spawn, NULL, 0, NULL);
  Sleep(100);
  return 0;   /* ExitProcess, threads still running */
}

static void exit_with_threads_running(void) {
  wchar_t self[MAX_PATH];
  DWORD n = GetModuleFileNameW(NULL, self, MAX_PATH);
  CHECK(n > 0 && n < MAX_PATH);
  wchar_t cmd[MAX_PATH + 16];
  _snwprintf(cmd, sizeof cmd / sizeof cmd[0], L"\"%ls\" child", self);
  cmd[sizeof cmd / sizeof cmd[0] - 1] = 0;
  for (int i = 0; i < CHILDREN; i++) {
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    CHECK(CreateProcessW(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    DWORD waited = WaitForSingleObject(pi.hProcess, CHILD_MS);
    DWORD code = 99;
    if (waited != WAIT_OBJECT_0) TerminateProcess(pi.hProcess, 98);
    else GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    CHECK_MSG(waited == WAIT_OBJECT_0, "child %d did not end within %d ms of returning from main", i,
              CHILD_MS);
    CHECK_MSG(code == 0, "child %d ended with %lu", i, (unsigned long)code);
  }
}

static const wt_case_t cases[] = { WT_CASE(exit_with_threads_running) };

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) return child();
  return wt_run(cases, sizeof cases / sizeof cases[0]);
}
