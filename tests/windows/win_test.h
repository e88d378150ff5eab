/* win_test.h: the small test runner of the Windows tests (Criterion does
 * not exist for mingw).  A test is a function; CHECK stops it at the first
 * failed condition with the file, line and condition.  main() runs every
 * test of the file in order and ends with the line "N passed, N failed";
 * the exit status is 1 when any failed.
 *
 *   static void sizes(void) { CHECK(tsr_malloc(1) != NULL); }
 *   WT_MAIN(WT_CASE(sizes), WT_CASE(other))
 */
#ifndef TSR_WIN_TEST_H
#define TSR_WIN_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wt_case_s {
  const char *name;
  void (*fn)(void);
} wt_case_t;

static int wt_failed_now;

static void wt_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stdout, "  %s:%d: ", file, line);
  vfprintf(stdout, fmt, ap);
  fprintf(stdout, "\n");
  fflush(stdout);
  va_end(ap);
  wt_failed_now = 1;
}

/* Stop the test when cond is false. */
#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      wt_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);            \
      return;                                                            \
    }                                                                    \
  } while (0)

/* The same, with a message of one's own (printf format). */
#define CHECK_MSG(cond, ...)                                             \
  do {                                                                   \
    if (!(cond)) {                                                       \
      wt_fail(__FILE__, __LINE__, __VA_ARGS__);                          \
      return;                                                            \
    }                                                                    \
  } while (0)

#define WT_CASE(fn) { #fn, fn }

static int wt_run(const wt_case_t *cases, size_t n) {
  size_t passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    wt_failed_now = 0;
    fprintf(stdout, "[ RUN  ] %s\n", cases[i].name);
    fflush(stdout);
    cases[i].fn();
    fprintf(stdout, "[ %s ] %s\n", wt_failed_now ? "FAIL" : " OK ", cases[i].name);
    fflush(stdout);
    if (wt_failed_now) failed++;
    else passed++;
  }
  fprintf(stdout, "%zu passed, %zu failed\n", passed, failed);
  fflush(stdout);
  return failed == 0 && passed > 0 ? 0 : 1;
}

#define WT_MAIN(...)                                                     \
  int main(void) {                                                       \
    static const wt_case_t cases[] = { __VA_ARGS__ };                    \
    return wt_run(cases, sizeof cases / sizeof cases[0]);                \
  }

#endif /* TSR_WIN_TEST_H */
