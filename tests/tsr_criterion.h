/* tsr_criterion.h: Criterion, or a small stand-in for it where Criterion
 * cannot run.
 *
 * The tests are written against Criterion's API.  Criterion's runtime
 * (BoxFort) maps an "inheritable arena" at random fixed addresses when it
 * starts, which ThreadSanitizer's memory layout forbids: every Criterion
 * program dies with "Could not initialize inheritable arena" under TSan
 * (upstream: Snaipe/Criterion#274).  For that build, tests/CMakeLists.txt
 * defines TSR_TEST_BUILTIN_RUNNER and this header supplies the subset of
 * Criterion the tests use: Test() with .signal, .timeout and .disabled,
 * the cr_assert family, cr_skip_test, and a main() that runs each test in a forked child
 * (as Criterion does), with a timeout, and checks how it ended.  Arguments:
 * substrings of "suite::name" to run only matching tests.
 */
#ifndef TSR_CRITERION_H
#define TSR_CRITERION_H

#if !defined(TSR_TEST_BUILTIN_RUNNER)

#include <criterion/criterion.h>

#else /* the stand-in */

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct tsr_crit_opts_s {
  int unused_;
  int signal;          /* the signal the test must die of; 0: must pass */
  double timeout;      /* seconds; 0: the default */
  int disabled;        /* listed as skipped, not run */
} tsr_crit_opts_t;

typedef struct tsr_crit_test_s {
  const char *suite, *name;
  void (*fn)(void);
  const tsr_crit_opts_t *opts;
} tsr_crit_test_t;

#define TSR_CRIT_MAX_TESTS 256
static tsr_crit_test_t tsr_crit_tests[TSR_CRIT_MAX_TESTS];
static int tsr_crit_count;

static inline void tsr_crit_register(const char *suite, const char *name, void (*fn)(void),
                                     const tsr_crit_opts_t *opts) {
  if (tsr_crit_count < TSR_CRIT_MAX_TESTS)
    tsr_crit_tests[tsr_crit_count++] = (tsr_crit_test_t){ suite, name, fn, opts };
}

#define Test(suite, name, ...)                                                       \
  static void tsr_crit_fn_##suite##_##name(void);                                    \
  __attribute__((constructor)) static void tsr_crit_reg_##suite##_##name(void) {     \
    static const tsr_crit_opts_t opts = { .unused_ = 0, __VA_ARGS__ };               \
    tsr_crit_register(#suite, #name, tsr_crit_fn_##suite##_##name, &opts);           \
  }                                                                                  \
  static void tsr_crit_fn_##suite##_##name(void)

__attribute__((noreturn, format(printf, 4, 5))) static inline void
tsr_crit_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n[----]   %s\n", file, line,
          msg[0] ? msg : expr, msg[0] ? expr : "");
  fflush(stderr);
  _exit(1);
}

#define TSR_CRIT_CHECK(cond, expr, ...) \
  ((cond) ? (void)0 : tsr_crit_fail(__FILE__, __LINE__, expr, "" __VA_ARGS__))

#define cr_assert(cond, ...) TSR_CRIT_CHECK((cond), #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) TSR_CRIT_CHECK(!(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) TSR_CRIT_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) TSR_CRIT_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) TSR_CRIT_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) TSR_CRIT_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) TSR_CRIT_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) TSR_CRIT_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) TSR_CRIT_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) TSR_CRIT_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_fail(...) tsr_crit_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)

/* A test that cannot run here says why and ends with this status. */
#define TSR_CRIT_SKIPPED 77
__attribute__((noreturn, format(printf, 1, 2))) static inline void tsr_crit_skip(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[----] skipped: %s\n", msg);
  fflush(NULL);
  _exit(TSR_CRIT_SKIPPED);
}
#define cr_skip_test(...) tsr_crit_skip(__VA_ARGS__)

static inline double tsr_crit_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run one test in a child; returns 1 when it ended as expected, 2 when it
 * skipped itself. */
static inline int tsr_crit_run(const tsr_crit_test_t *t) {
  double timeout = t->opts->timeout > 0 ? t->opts->timeout : 60;
  double start = tsr_crit_now();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 0;
  }
  if (pid == 0) {
    if (t->opts->signal != 0) {   /* an expected crash needs no core file */
      struct rlimit rl = { 0, 0 };
      setrlimit(RLIMIT_CORE, &rl);
    }
    t->fn();
    fflush(NULL);
    _exit(0);
  }
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, WNOHANG)) == 0 && tsr_crit_now() - start < timeout) {
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
  }
  double took = tsr_crit_now() - start;
  if (got == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fprintf(stderr, "[FAIL] %s::%s: timed out after %.0f s\n", t->suite, t->name, timeout);
    return 0;
  }
  if (t->opts->signal == 0 && WIFEXITED(status) && WEXITSTATUS(status) == TSR_CRIT_SKIPPED) {
    fprintf(stderr, "[SKIP] %s::%s: (%.2fs)\n", t->suite, t->name, took);
    return 2;
  }
  int ok;
  if (t->opts->signal != 0)
    ok = WIFSIGNALED(status) && WTERMSIG(status) == t->opts->signal;
  else
    ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok) {
    if (WIFSIGNALED(status))
      fprintf(stderr, "[FAIL] %s::%s: died of signal %d (%.2fs)\n", t->suite, t->name,
              WTERMSIG(status), took);
    else
      fprintf(stderr, "[FAIL] %s::%s: exit status %d (%.2fs)\n", t->suite, t->name,
              WEXITSTATUS(status), took);
  } else {
    fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, took);
  }
  return ok;
}

/* ThreadSanitizer kills a process that starts a thread after a fork made
 * while it had several (exit 66), and tessera's fork children start
 * theirs: the reclaimer once the child is a second old (reclaim.c), the
 * report thread where one is asked for.  A child of the tests that a
 * loaded machine keeps past its first second died so (test_fork's
 * fork_while_threads_allocate, about one tsan run in twenty on CI's two
 * cores), so the runner lets them live; TSAN_OPTIONS is read after these
 * defaults and may still say otherwise.  The helpers that tests start
 * are given the same in their environment (test_soak.c, test_report.c). */
#if defined(__SANITIZE_THREAD__)
#define TSR_CRIT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSR_CRIT_TSAN 1
#endif
#endif
#if defined(TSR_CRIT_TSAN)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif

int main(int argc, char **argv) {
  int run = 0, passed = 0, skipped = 0;
  for (int i = 0; i < tsr_crit_count; i++) {
    const tsr_crit_test_t *t = &tsr_crit_tests[i];
    char full[256];
    snprintf(full, sizeof full, "%s::%s", t->suite, t->name);
    int wanted = argc < 2;
    for (int a = 1; a < argc && !wanted; a++) wanted = strstr(full, argv[a]) != NULL;
    if (!wanted) continue;
    if (t->opts->disabled) {
      fprintf(stderr, "[SKIP] %s::%s: disabled\n", t->suite, t->name);
      continue;
    }
    int r = tsr_crit_run(t);
    if (r == 2) {
      skipped++;
      continue;
    }
    run++;
    passed += r;
  }
  fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n", run, passed,
          run - passed, skipped);
  return run == passed ? 0 : 1;
}

#endif /* TSR_TEST_BUILTIN_RUNNER */

#endif /* TSR_CRITERION_H */
