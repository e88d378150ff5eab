/* tsr_helper.h: what the helper programs the tests run (bad_input_helper,
 * options_helper) share: a CHECK that reports and counts a failure and goes
 * on, and main().  A helper's run_case runs one case by name and returns 0,
 * or 2 for a name it does not know; the caller reads "ok" on stdout, or
 * "FAIL: ..." lines, and the exit status. */
#ifndef TSR_HELPER_H
#define TSR_HELPER_H

#include "tsr_test.h"

static int tsr_helper_failures;

#define CHECK(cond, ...)                          \
  do {                                            \
    if (!(cond)) {                                \
      printf("FAIL: " __VA_ARGS__);               \
      printf("  (%s:%d)\n", __FILE__, __LINE__);  \
      tsr_helper_failures++;                      \
    }                                             \
  } while (0)

/* stdout unbuffered, so the caller sees what was printed before a crash. */
static inline int tsr_helper_main(int argc, char **argv, int (*run_case)(const char *),
                                  const char *env_hint) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s %s CASE\n", env_hint, argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  int rc = run_case(argv[1]);
  if (rc != 0) return rc;
  if (tsr_helper_failures != 0) return 1;
  printf("ok\n");
  return 0;
}

#endif /* TSR_HELPER_H */
