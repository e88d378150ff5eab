/* test_debug.c: the debug checks (TESSERA_DEBUG) and guarded sampling
 * (TESSERA_GUARD_SAMPLE=1) catch each kind of memory error, and the
 * message names the block, the damaged byte and the stacks.
 *
 * Each case runs debug_helper (tsr_malloc and tsr_free) and, where the
 * override can be linked (not under the address and thread sanitizers,
 * whose runtimes own malloc), debug_helper_override (plain malloc and
 * free) with the setting in its environment, and reads what it printed.
 * An error ends the helper abnormally: SIGABRT after a message of the
 * debug checks, SIGSEGV (or the sanitizer's own exit, whose fault
 * handler comes after ours) after a guarded-sampling fault.  Under
 * TESSERA_ON_ERROR=continue the helper goes on, and the errors are
 * counted by kind in tsr_stats_get and in the report written at exit.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

typedef struct run_s {
  tsr_child_t child;
  char out[4096];
} run_t;

/* Run helper's case name with the settings env (NULL ended) added to its
 * environment. */
static void run_helper_env(const char *helper, const char *name, char *const env[], run_t *r) {
  char *argv[] = { (char *)helper, (char *)name, NULL };
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &r->child), "could not start %s", helper);
  rewind(out);
  size_t n = fread(r->out, 1, sizeof r->out - 1, out);
  r->out[n] = 0;
  fclose(out);
}

static void run_helper(const char *helper, const char *name, const char *setting, run_t *r) {
  char *env[2] = { (char *)setting, NULL };
  run_helper_env(helper, name, env, r);
}

static const char *helpers[] = {
  TSR_DEBUG_HELPER,
#if defined(TSR_DEBUG_HELPER_OVERRIDE)
  TSR_DEBUG_HELPER_OVERRIDE,
#endif
};
#define HELPERS (sizeof helpers / sizeof helpers[0])

#define HAS(text, s) (strstr((text), (s)) != NULL)

/* The case must end abnormally with a message holding each of want (NULL
 * ended), naming the victim block, whose stacks name alloc_victim and,
 * when freed, free_victim. */
static void expect_caught(const char *name, const char *setting, bool freed, const char *const *want) {
  for (size_t h = 0; h < HELPERS; h++) {
    run_t r;
    run_helper(helpers[h], name, setting, &r);
    const char *e = r.child.err;
    cr_assert(!(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0),
              "%s %s with %s was not caught; stdout:\n%s\nstderr:\n%s", helpers[h], name, setting, r.out, e);
    const char *block = strstr(r.out, "block=");
    cr_assert_not_null(block, "%s %s: no block printed; stdout:\n%s", helpers[h], name, r.out);
    char addr[32];
    sscanf(block + 6, "%31s", addr);
    cr_assert(HAS(e, addr), "%s %s with %s: the message does not name %s; stderr:\n%s", helpers[h], name,
              setting, addr, e);
    for (size_t i = 0; want[i] != NULL; i++)
      cr_assert(HAS(e, want[i]), "%s %s with %s: no \"%s\" in the message; stderr:\n%s", helpers[h], name,
                setting, want[i], e);
    cr_assert(HAS(e, "allocated by thread") && HAS(e, "alloc_victim"),
              "%s %s with %s: no allocation stack; stderr:\n%s", helpers[h], name, setting, e);
    if (freed)
      cr_assert(HAS(e, "freed by thread") && HAS(e, "free_victim"),
                "%s %s with %s: no free stack; stderr:\n%s", helpers[h], name, setting, e);
  }
}

/* The case must run to its end, and print value=<value>. */
static void expect_value(const char *name, const char *setting, const char *value) {
  for (size_t h = 0; h < HELPERS; h++) {
    run_t r;
    run_helper(helpers[h], name, setting, &r);
    cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0,
              "%s %s with %s: status %#x; stdout:\n%s\nstderr:\n%s", helpers[h], name, setting, r.child.status,
              r.out, r.child.err);
    char want[64];
    snprintf(want, sizeof want, "value=%s\n", value);
    cr_assert(HAS(r.out, want), "%s %s with %s: not %s; stdout:\n%s", helpers[h], name, setting, want, r.out);
  }
}

/* ---- debug mode ----------------------------------------------------------- */

Test(debug, overflow_by_one_byte_found_by_free, .timeout = 60) {
  const char *want[] = { "heap buffer overflow", "of 13 bytes", "byte 13 ", "found by free", "being freed",
                         "free_victim", NULL };
  expect_caught("overflow", "TESSERA_DEBUG=guard", false, want);
  expect_caught("overflow", "TESSERA_DEBUG=all", false, want);
}

/* malloc_usable_size under the guard is the size asked for, as under
 * AddressSanitizer: it was the block's, 64 bytes for 50, and a program
 * that wrote up to it (Redis's strings do) was reported for an overflow
 * at its free (an sshd login under TESSERA_DEBUG=all failed so, in PAM). */
Test(debug, writes_up_to_the_usable_size_are_no_overflow, .timeout = 60) {
  expect_value("usable", "TESSERA_DEBUG=guard", "50");
  expect_value("usable", "TESSERA_DEBUG=all", "50");
}

Test(debug, write_after_free_found_in_the_quarantine, .timeout = 60) {
  const char *want[] = { "write after free", "of 40 bytes", "byte 3 ", NULL };
  expect_caught("write_after_free", "TESSERA_DEBUG=all", true, want);
}

Test(debug, double_free_names_both_stacks, .timeout = 60) {
  const char *want[] = { "double free of", "freed again by thread", NULL };
  expect_caught("double_free", "TESSERA_DEBUG=all", true, want);
  expect_caught("double_free", "TESSERA_DEBUG=fill", true, want);
}

Test(debug, uninitialised_read_sees_the_new_pattern, .timeout = 60) {
  expect_value("uninit", "TESSERA_DEBUG=fill", "abababab");
}

Test(debug, read_after_free_sees_the_freed_pattern, .timeout = 60) {
  expect_value("read_after_free", "TESSERA_DEBUG=fill,quarantine", "fb");
}

Test(debug, double_free_still_reported_without_debug, .timeout = 60) {
  for (size_t h = 0; h < HELPERS; h++) {
    run_t r;
    run_helper(helpers[h], "double_free", "TESSERA_DEBUG=none", &r);
    cr_assert(WIFSIGNALED(r.child.status) && WTERMSIG(r.child.status) == SIGABRT, "status %#x; stderr:\n%s",
              r.child.status, r.child.err);
    cr_assert(HAS(r.child.err, "double free"), "stderr:\n%s", r.child.err);
  }
}

/* ---- guarded sampling, every allocation ----------------------------------- */

/* A block lies against the leading or the trailing guard at random: a few
 * runs see both. */
Test(debug, guarded_overflow_by_one_byte, .timeout = 120) {
  const char *want[] = { "heap buffer overflow", "13 bytes", NULL };
  for (int i = 0; i < 4; i++) expect_caught("overflow", "TESSERA_GUARD_SAMPLE=1", false, want);
}

Test(debug, guarded_underflow_by_one_byte, .timeout = 120) {
  const char *want[] = { "heap buffer underflow", "13 bytes", NULL };
  for (int i = 0; i < 4; i++) expect_caught("underflow", "TESSERA_GUARD_SAMPLE=1", false, want);
}

Test(debug, guarded_write_after_free_faults, .timeout = 60) {
  const char *want[] = { "guarded sampling: use after free", "byte 3 of block", NULL };
  expect_caught("write_after_free", "TESSERA_GUARD_SAMPLE=1", true, want);
}

Test(debug, guarded_read_after_free_faults, .timeout = 60) {
  const char *want[] = { "guarded sampling: use after free", "byte 3 of block", NULL };
  expect_caught("read_after_free", "TESSERA_GUARD_SAMPLE=1", true, want);
}

/* tessera's SIGSEGV handler (guarded sampling's, at the defaults too)
 * let a SIGSEGV sent by raise or kill go by once: the process went on. */
Test(debug, guarded_sampling_lets_a_raised_sigsegv_end_the_process, .timeout = 60) {
  if (TSR_TEST_SHADOW) cr_skip_test("the sanitizer's runtime takes a SIGSEGV before any handler of the program");
  for (size_t h = 0; h < HELPERS; h++) {
    run_t r;
    run_helper(helpers[h], "raise_segv", "TESSERA_GUARD_SAMPLE=1", &r);
    cr_assert(WIFSIGNALED(r.child.status) && WTERMSIG(r.child.status) == SIGSEGV, "%s: %s %d; stderr:\n%s",
              helpers[h], WIFSIGNALED(r.child.status) ? "signal" : "exit",
              WIFSIGNALED(r.child.status) ? WTERMSIG(r.child.status) : WEXITSTATUS(r.child.status), r.child.err);
  }
}

/* Guarded blocks keep what malloc promises: 16-byte alignment (compilers
 * count on it) and room for what was asked, malloc(0) included. */
Test(debug, guarded_blocks_keep_the_alignment_of_malloc, .timeout = 60) {
  for (size_t h = 0; h < HELPERS; h++) {
    run_t r;
    run_helper(helpers[h], "align", "TESSERA_GUARD_SAMPLE=1", &r);
    cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0, "%s: status %#x; stdout:\n%s\nstderr:\n%s",
              helpers[h], r.child.status, r.out, r.child.err);
  }
}

Test(debug, guarded_double_free_names_both_stacks, .timeout = 60) {
  const char *want[] = { "double free of", "guarded block", NULL };
  expect_caught("double_free", "TESSERA_GUARD_SAMPLE=1", true, want);
}

/* ---- the count of each kind ------------------------------------------------ */

/* A double free and an overflow under TESSERA_ON_ERROR=continue: one of
 * each kind in tsr_stats_get, and in the report written at exit in each
 * format (want: what it must hold). */
static void expect_counted(const char *format, const char *const *want) {
  for (size_t h = 0; h < HELPERS; h++) {
    char path[64], report[96], fmt[64];
    snprintf(path, sizeof path, "/tmp/tsr_debug_kinds_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    close(fd);
    snprintf(report, sizeof report, "TESSERA_REPORT=%s", path);
    snprintf(fmt, sizeof fmt, "TESSERA_REPORT_FORMAT=%s", format);
    char *env[] = { (char *)"TESSERA_DEBUG=all", (char *)"TESSERA_ON_ERROR=continue", report, fmt, NULL };
    run_t r;
    run_helper_env(helpers[h], "two_errors", env, &r);
    cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0,
              "%s two_errors: status %#x; stdout:\n%s\nstderr:\n%s", helpers[h], r.child.status, r.out,
              r.child.err);
    cr_assert(HAS(r.out, "errors=2 double_free=1 overflow=1\n"), "%s: tsr_stats_get: %s", helpers[h], r.out);
    cr_assert(HAS(r.child.err, "double free of") && HAS(r.child.err, "heap buffer overflow"), "%s: stderr:\n%s",
              helpers[h], r.child.err);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no report at %s", path);
    char *text = tsr_test_slurp(f, NULL);
    fclose(f);
    unlink(path);
    cr_assert_not_null(text);
    for (size_t i = 0; want[i] != NULL; i++)
      cr_assert(HAS(text, want[i]), "%s, %s report: no \"%s\" in:\n%s", helpers[h], format, want[i], text);
    free(text);
  }
}

Test(debug, errors_counted_by_kind_in_json, .timeout = 60) {
  const char *want[] = { "\"errors\":2,\"errors_by_kind\":{\"bad_free\":0,\"double_free\":1,\"overflow\":1,"
                         "\"underflow\":0,\"write_after_free\":0,\"use_after_free\":0,\"other\":0}",
                         NULL };
  expect_counted("json", want);
}

Test(debug, errors_counted_by_kind_in_text, .timeout = 60) {
  const char *want[] = { "errors reported        2 (double_free 1, overflow 1)\n", NULL };
  expect_counted("text", want);
}

Test(debug, errors_counted_by_kind_in_openmetrics, .timeout = 60) {
  const char *want[] = { "tessera_errors_total 2\n", "# TYPE tessera_errors_by_kind counter\n",
                         "# HELP tessera_errors_by_kind ",
                         "tessera_errors_by_kind_total{kind=\"double_free\"} 1\n",
                         "tessera_errors_by_kind_total{kind=\"overflow\"} 1\n",
                         "tessera_errors_by_kind_total{kind=\"bad_free\"} 0\n", NULL };
  expect_counted("openmetrics", want);
}
