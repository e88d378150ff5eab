/* test_override.c: the standard names, in real programs.
 *
 * Runs programs that are on the machine (python3, sort) and a C++ workload
 * of ours with and without LD_PRELOAD=libtessera.so, and checks that they
 * succeed and print the same output either way; and runs the C++ workload
 * linked to the override library (no preload), where it checks by itself
 * that operator new hands out tessera blocks.  The python and C++ runs
 * under preload also check, from inside, that malloc is tessera's
 * (TSR_EXPECT_TESSERA=1), so a preload that silently did nothing fails.
 *
 * Paths come from CMake: TSR_LIBTESSERA, TSR_PYTHON3, TSR_SORT,
 * TSR_PY_SCRIPT, TSR_CXX_PLAIN, TSR_CXX_LINKED.  Not built in TSan/ASan
 * builds (see tests/CMakeLists.txt).
 */
#include "tsr_criterion.h"

#include <sys/stat.h>

#include "tsr_test.h"

static char preload_env[4096];

static char **preload(bool expect_check) {
  static char *env[4];
  snprintf(preload_env, sizeof preload_env, "LD_PRELOAD=%s", TSR_LIBTESSERA);
  env[0] = preload_env;
  env[1] = expect_check ? (char *)"TSR_EXPECT_TESSERA=1" : (char *)"TSR_EXPECT_TESSERA=0";
  env[2] = (char *)"LC_ALL=C";
  env[3] = NULL;
  return env;
}

static char **plain(void) {
  static char *env[] = { (char *)"TSR_EXPECT_TESSERA=0", (char *)"LC_ALL=C", NULL };
  return env;
}

/* Run argv with env, require exit status 0, return its stdout. */
static char *run_ok(char *const argv[], char *const env[], size_t *len, const char *label) {
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &child), "%s: could not start %s", label,
            argv[0]);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0,
            "%s: %s %s %d\nstderr:\n%s", label, argv[0],
            WIFEXITED(child.status) ? "exited with" : "died of signal",
            WIFEXITED(child.status) ? WEXITSTATUS(child.status) : WTERMSIG(child.status), child.err);
  char *text = tsr_test_slurp(out, len);
  cr_assert_not_null(text);
  fclose(out);
  return text;
}

static void same_output(char *const argv[], const char *label) {
  size_t n_plain, n_pre;
  char *a = run_ok(argv, plain(), &n_plain, label);
  char *b = run_ok(argv, preload(true), &n_pre, label);
  cr_assert_gt(n_plain, 0, "%s printed nothing", label);
  cr_assert(n_plain == n_pre && memcmp(a, b, n_plain) == 0,
            "%s: output differs under LD_PRELOAD\nwithout:\n%.400s\nwith:\n%.400s", label, a, b);
  free(a);
  free(b);
}

/* ------------------------------------------------------------------------ */

Test(override, library_is_present) {
  struct stat st;
  cr_assert_eq(stat(TSR_LIBTESSERA, &st), 0, "%s is missing", TSR_LIBTESSERA);
  cr_assert_eq(access(TSR_PYTHON3, X_OK), 0, "python3 (%s) is missing", TSR_PYTHON3);
  cr_assert_eq(access(TSR_SORT, X_OK), 0, "sort (%s) is missing", TSR_SORT);
}

Test(override, python_dicts, .timeout = 300) {
  char *argv[] = { (char *)TSR_PYTHON3, (char *)TSR_PY_SCRIPT, NULL };
  size_t n;
  char *out = run_ok(argv, plain(), &n, "python3");
  cr_assert_not_null(strstr(out, "checksum "), "python3 output: %s", out);
  free(out);
  same_output(argv, "python3");
}

/* A large generated file through sort, in memory and with temporary
 * files (a small -S buffer), single and multi-threaded. */
Test(override, sort_large_file, .timeout = 300) {
  char dir[] = "/tmp/tsr_sort_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char input[256];
  snprintf(input, sizeof input, "%s/input.txt", dir);
  FILE *f = fopen(input, "w");
  cr_assert_not_null(f);
  uint64_t rng = 12345;
  long lines = tsr_test_env("TSR_TEST_SORT_LINES", 300000);
  for (long i = 0; i < lines; i++) {
    uint64_t r = tsr_test_rand(&rng);
    int len = (int)(r % 60) + 1;
    char line[80];
    for (int k = 0; k < len; k++) line[k] = (char)('a' + (tsr_test_rand(&rng) % 26));
    line[len] = 0;
    fprintf(f, "%s %llu\n", line, (unsigned long long)(r >> 20));
  }
  fclose(f);
  char tmpdir_arg[300];
  snprintf(tmpdir_arg, sizeof tmpdir_arg, "--temporary-directory=%s", dir);
  char *in_memory[] = { (char *)TSR_SORT, input, NULL };
  same_output(in_memory, "sort");
  char *merging[] = { (char *)TSR_SORT, (char *)"-S", (char *)"1M", (char *)"--parallel=4",
                      tmpdir_arg, input, NULL };
  same_output(merging, "sort -S 1M --parallel=4");
  char *numeric[] = { (char *)TSR_SORT, (char *)"-k2,2n", (char *)"--parallel=2", input, NULL };
  same_output(numeric, "sort -k2,2n");
  unlink(input);
  rmdir(dir);
}

Test(override, cxx_preloaded, .timeout = 300) {
  char *argv[] = { (char *)TSR_CXX_PLAIN, (char *)"4", (char *)"6", NULL };
  same_output(argv, "override_cxx");
}

/* Linked to the override library: tessera without LD_PRELOAD.  The
 * program checks tsr_owns on what new returned; its output equals the
 * plain build's. */
Test(override, cxx_linked, .timeout = 300) {
  char *plain_argv[] = { (char *)TSR_CXX_PLAIN, (char *)"4", (char *)"6", NULL };
  char *linked_argv[] = { (char *)TSR_CXX_LINKED, (char *)"4", (char *)"6", NULL };
  size_t na, nb;
  char *a = run_ok(plain_argv, plain(), &na, "override_cxx");
  char *b = run_ok(linked_argv, plain(), &nb, "override_cxx_linked");
  cr_assert_not_null(strstr(b, "checksum "));
  cr_assert(na == nb && memcmp(a, b, na) == 0, "linked build prints %s, plain build %s", b, a);
  free(a);
  free(b);
}

/* The plain C++ build under preload with its own check on: it must find
 * tessera (tsr_owns) in the process. */
Test(override, cxx_preload_check_is_real) {
  char *argv[] = { (char *)TSR_CXX_PLAIN, (char *)"1", (char *)"1", NULL };
  char *env[] = { (char *)"TSR_EXPECT_TESSERA=1", NULL };
  FILE *out = tmpfile();
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &child));
  fclose(out);
  /* without the preload the check has nothing to find, and says so */
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 3,
            "the in-program check passed without tessera loaded (status %#x)", child.status);
}

/* Under TESSERA_TRACK=full every block has a record, from the first one
 * of the process on: in a C++ program under preload the first allocation
 * comes from the C++ library's start-up, before tessera's own
 * constructor, and must already see the level the environment sets.
 * In the UBSan build the first allocations come even earlier, from the
 * sanitizer's runtime before the C library has set up the environment:
 * the settings must still be applied. */
static uint64_t json_count(const char *json, const char *key) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\":", key);
  const char *at = strstr(json, quoted);
  cr_assert_not_null(at, "no %s in the report", key);
  return strtoull(at + strlen(quoted), NULL, 10);
}

Test(override, cxx_preloaded_full_tracking_records_every_block, .timeout = 120) {
  char report[] = "/tmp/tsr-override-report-XXXXXX";
  int fd = mkstemp(report);
  cr_assert_geq(fd, 0);
  close(fd);
  char preload_setting[4200], report_setting[128];
  snprintf(preload_setting, sizeof preload_setting, "LD_PRELOAD=%s", TSR_LIBTESSERA);
  snprintf(report_setting, sizeof report_setting, "TESSERA_REPORT=%s", report);
  char *env[] = { preload_setting, report_setting, (char *)"TESSERA_TRACK=full",
                  (char *)"TESSERA_REPORT_FORMAT=json", (char *)"TSR_EXPECT_TESSERA=1", NULL };
  char *argv[] = { (char *)TSR_CXX_PLAIN, (char *)"2", (char *)"3", NULL };
  size_t len;
  free(run_ok(argv, env, &len, "override_cxx, tracked in full"));
  FILE *f = fopen(report, "r");
  cr_assert_not_null(f);
  char *json = tsr_test_slurp(f, &len);
  fclose(f);
  unlink(report);
  uint64_t live = json_count(json, "live_blocks"), tracked = json_count(json, "tracked_blocks");
  cr_assert_gt(live, 0, "the C++ library keeps blocks until exit");
  cr_assert_eq(tracked, live, "%llu of %llu live blocks have a record", (unsigned long long)tracked,
               (unsigned long long)live);
  free(json);
}
