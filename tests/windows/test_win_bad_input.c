/* test_win_bad_input.c: bad calls on Windows get a defined answer, are
 * counted as errors, and leave the heap sound.  Runs with
 * TESSERA_ON_ERROR=continue (set by ctest), so each bad call returns
 * instead of aborting; the abort itself is test_win_abort. */
#include "win_test.h"

#include <errno.h>
#include <stdint.h>
#include <tessera.h>
#include <windows.h>

static uint64_t errors(void) {
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  tsr_stats_get(&s);
  return s.errors;
}

/* One bad call must add exactly one error. */
#define ONE_ERROR(call)                                                   \
  do {                                                                    \
    uint64_t before_ = errors();                                          \
    call;                                                                 \
    CHECK_MSG(errors() == before_ + 1, "%s: %llu errors, expected 1", #call, \
              (unsigned long long)(errors() - before_));                  \
  } while (0)

static void setting_is_continue(void) {
  const char *v = getenv("TESSERA_ON_ERROR");
  CHECK_MSG(v != NULL && strcmp(v, "continue") == 0, "run with TESSERA_ON_ERROR=continue");
}

static void free_of_foreign_pointers(void) {
  int local = 0;
  ONE_ERROR(tsr_free(&local));
  void *crt = malloc(64);   /* the C runtime's heap, not tessera's */
  CHECK(crt != NULL);
  CHECK(!tsr_owns(crt));
  ONE_ERROR(tsr_free(crt));
  free(crt);
  void *win = HeapAlloc(GetProcessHeap(), 0, 1 << 20);
  CHECK(win != NULL);
  ONE_ERROR(tsr_free(win));
  HeapFree(GetProcessHeap(), 0, win);
  ONE_ERROR(tsr_free((void *)(uintptr_t)0x10));
  CHECK(tsr_check() == 0);
}

static void free_of_interior_pointers(void) {
  char *p = tsr_malloc(100);
  CHECK(p != NULL);
  ONE_ERROR(tsr_free(p + 1));
  ONE_ERROR(tsr_free(p + 16));
  CHECK(tsr_owns(p));
  tsr_free(p);
  char *l = tsr_malloc(1 << 20);
  CHECK(l != NULL);
  ONE_ERROR(tsr_free(l + 4096));
  CHECK(tsr_owns(l));
  tsr_free(l);
  CHECK(tsr_check() == 0);
}

static void double_frees(void) {
  void *p = tsr_malloc(48), *keep = tsr_malloc(48);
  CHECK(p != NULL && keep != NULL);
  tsr_free(p);
  ONE_ERROR(tsr_free(p));
  void *l = tsr_malloc(300000);
  CHECK(l != NULL);
  tsr_free(l);
  ONE_ERROR(tsr_free(l));
  CHECK(tsr_owns(keep));
  tsr_free(keep);
  CHECK(tsr_check() == 0);
}

static void realloc_and_usable_size_of_bad_pointers(void) {
  char *p = tsr_malloc(32);
  CHECK(p != NULL);
  tsr_free(p);
  errno = 0;
  void *q = NULL;
  ONE_ERROR(q = tsr_realloc(p, 64));
  CHECK(q == NULL && errno == EINVAL);
  char *r = tsr_malloc(32);
  CHECK(r != NULL);
  errno = 0;
  ONE_ERROR(q = tsr_realloc(r + 8, 64));
  CHECK(q == NULL && errno == EINVAL);
  size_t n = 1;
  ONE_ERROR(n = tsr_usable_size(r + 8));
  CHECK(n == 0);
  tsr_free(r);
  CHECK(tsr_check() == 0);
}

static void good_calls_are_not_errors(void) {
  uint64_t before = errors();
  void *p = tsr_malloc(10);
  CHECK(tsr_usable_size(p) >= 10);
  tsr_free(p);
  tsr_free(NULL);
  CHECK(tsr_realloc(NULL, 0) != NULL || errno == ENOMEM);
  int local;
  CHECK(tsr_owns(&local) == 0);
  CHECK(errors() == before + 0);
}

WT_MAIN(WT_CASE(setting_is_continue), WT_CASE(free_of_foreign_pointers),
        WT_CASE(free_of_interior_pointers), WT_CASE(double_frees),
        WT_CASE(realloc_and_usable_size_of_bad_pointers), WT_CASE(good_calls_are_not_errors))
