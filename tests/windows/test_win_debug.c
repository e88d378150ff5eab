/* test_win_debug.c: the debug checks and guarded sampling on Windows.
 * Runs with TESSERA_DEBUG=all and TESSERA_ON_ERROR=continue (set by
 * ctest): an overflow, a double free and a write after free are each
 * reported and counted, under their kinds, and the program goes on.  Guarded sampling's
 * fault goes through the vectored exception handler and ends the process:
 * that case runs in a child of this program ("uaf"), started with
 * TESSERA_GUARD_SAMPLE=1 and without the debug checks, whose exit code
 * must be the access violation's and whose stderr must hold the report. */
#include "win_test.h"

#include <stdint.h>
#include <stdio.h>
#include <tessera.h>
#include <windows.h>

static tsr_stats_t stats(void) {
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  tsr_stats_get(&s);
  return s;
}

static uint64_t errors(void) { return stats().errors; }

static uint64_t errors_of(tsr_error_kind_t kind) { return stats().errors_by_kind[kind]; }

static void debug_checks_report_and_go_on(void) {
  CHECK(getenv("TESSERA_DEBUG") != NULL);
  uint64_t before = errors(), overflows = errors_of(TSR_ERROR_OVERFLOW);
  uint64_t double_frees = errors_of(TSR_ERROR_DOUBLE_FREE), written = errors_of(TSR_ERROR_WRITE_AFTER_FREE);
  volatile char *p = tsr_malloc(13);
  CHECK(p != NULL);
  p[13] = 'x';
  tsr_free((void *)p);
  CHECK_MSG(errors() == before + 1, "overflow: %llu errors", (unsigned long long)(errors() - before));
  CHECK(errors_of(TSR_ERROR_OVERFLOW) == overflows + 1);
  char *q = tsr_malloc(40);
  tsr_free(q);
  tsr_free(q);
  CHECK_MSG(errors() == before + 2, "double free: %llu errors", (unsigned long long)(errors() - before));
  CHECK(errors_of(TSR_ERROR_DOUBLE_FREE) == double_frees + 1);
  volatile char *r = tsr_malloc(40);
  tsr_free((void *)r);
  r[3] = 'x';
  CHECK_MSG(tsr_check() == 1, "write after free not found by tsr_check");
  CHECK(errors_of(TSR_ERROR_WRITE_AFTER_FREE) == written + 1);
}

static int child_uaf(void) {
  volatile char *p = tsr_malloc(40);
  tsr_free((void *)p);
  p[3] = 'x';
  return 0;
}

static void guarded_fault_reported(void) {
  wchar_t self[MAX_PATH], cmd[MAX_PATH + 16], out[MAX_PATH];
  DWORD n = GetModuleFileNameW(NULL, self, MAX_PATH);
  CHECK(n > 0 && n < MAX_PATH);
  _snwprintf(cmd, sizeof cmd / sizeof cmd[0], L"\"%ls\" uaf", self);
  cmd[sizeof cmd / sizeof cmd[0] - 1] = 0;
  _snwprintf(out, sizeof out / sizeof out[0], L"%ls.stderr", self);
  out[sizeof out / sizeof out[0] - 1] = 0;
  SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
  HANDLE err = CreateFileW(out, GENERIC_WRITE | GENERIC_READ, FILE_SHARE_READ, &sa, CREATE_ALWAYS, 0, NULL);
  CHECK(err != INVALID_HANDLE_VALUE);
  SetEnvironmentVariableW(L"TESSERA_DEBUG", L"none");
  SetEnvironmentVariableW(L"TESSERA_GUARD_SAMPLE", L"1");
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdError = err;
  si.hStdOutput = err;
  CHECK(CreateProcessW(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
  DWORD code = 99;
  CHECK(WaitForSingleObject(pi.hProcess, 60000) == WAIT_OBJECT_0);
  GetExitCodeProcess(pi.hProcess, &code);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  CloseHandle(err);
  CHECK_MSG(code == 0xC0000005u, "the child ended with %#lx, not an access violation", (unsigned long)code);
  char text[8192];
  FILE *f = _wfopen(out, L"rb");
  CHECK(f != NULL);
  size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f) fclose(f);
  text[len] = 0;
  CHECK_MSG(strstr(text, "guarded sampling: use after free") != NULL, "no report; the child wrote:\n%s", text);
  CHECK_MSG(strstr(text, "allocated by thread") != NULL && strstr(text, "freed by thread") != NULL,
            "no stacks; the child wrote:\n%s", text);
  DeleteFileW(out);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "uaf") == 0) return child_uaf();
  static const wt_case_t cases[] = { WT_CASE(debug_checks_report_and_go_on), WT_CASE(guarded_fault_reported) };
  return wt_run(cases, sizeof cases / sizeof cases[0]);
}
