/* test_options.c: the TESSERA_* environment settings change what tessera
 * does, and a value it cannot use is reported and replaced by the default.
 *
 * Each case runs options_helper with the setting in its environment (the
 * options are read once, at start-up, so they cannot be changed inside a
 * running test) and checks its exit status and what it printed.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

typedef struct run_s {
  tsr_child_t child;
  char out[4096];
} run_t;

static void run_helper(const char *name, const char *setting, const char *setting2, run_t *r) {
  char *argv[] = { (char *)TSR_OPTIONS_HELPER, (char *)name, NULL };
  char *env[3] = { (char *)setting, (char *)setting2, NULL };
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &r->child), "could not start the helper");
  rewind(out);
  size_t n = fread(r->out, 1, sizeof r->out - 1, out);
  r->out[n] = 0;
  fclose(out);
}

static void expect_ok(const char *name, const char *setting, const char *setting2) {
  run_t r;
  run_helper(name, setting, setting2, &r);
  cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0,
            "%s with %s %s: status %#x\nstdout:\n%s\nstderr:\n%s", name, setting,
            setting2 ? setting2 : "", r.child.status, r.out, r.child.err);
  cr_assert_not_null(strstr(r.out, "ok\n"));
}

Test(options, purge_delay_zero_decommits_at_once, .timeout = 120) {
  expect_ok("purge_now", "TESSERA_PURGE_DELAY_MS=0", NULL);
}

Test(options, purge_delay_minus_one_never_purges, .timeout = 120) {
  expect_ok("purge_never", "TESSERA_PURGE_DELAY_MS=-1", NULL);
}

Test(options, purge_delay_long_waits, .timeout = 120) {
  expect_ok("purge_slow", "TESSERA_PURGE_DELAY_MS=600000", NULL);
}

Test(options, large_cache_zero_releases_at_once) {
  expect_ok("large_cache_off", "TESSERA_LARGE_CACHE_MB=0", NULL);
}

/* These two measure RSS, which a sanitizer's shadow memory blurs: as the
 * other RSS checks (tsr_test.h), they run in the plain builds only.  They
 * are about the trimming of a thread that allocates, without the
 * reclaimer, which trims a thread idle for a whole period whatever
 * TESSERA_TRIM_MS says (test_purge.c has that): its pass between the
 * helper's frees and its reading of the resident set made both fail
 * (with TESSERA_RECLAIM_MS=30, 31 and 4 runs in 60). */
Test(options, trim_interval_gives_back_free_os_pages, .timeout = 120) {
  if (TSR_TEST_SHADOW) return;
  expect_ok("trim_on", "TESSERA_TRIM_MS=10", "TESSERA_RECLAIM_MS=0");
}

Test(options, trim_off_by_default_until_collect, .timeout = 120) {
  if (TSR_TEST_SHADOW) return;
  expect_ok("trim_off", "TESSERA_TRIM_MS=0", "TESSERA_RECLAIM_MS=0");
}

Test(options, large_cache_default_reuses) {
  expect_ok("large_cache_on", "TESSERA_LARGE_CACHE_MB=256", NULL);
}

/* Values tessera cannot use: a warning naming the setting, then the
 * default. */
static void expect_warning_and_default(const char *setting, const char *env_name) {
  run_t r;
  run_helper("defaults_kept", setting, NULL, &r);
  cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0,
            "%s: status %#x\nstdout:\n%s\nstderr:\n%s", setting, r.child.status, r.out, r.child.err);
  cr_assert_not_null(strstr(r.child.err, "tessera: warning"), "%s: no warning; stderr:\n%s",
                     setting, r.child.err);
  cr_assert_not_null(strstr(r.child.err, env_name), "%s: the warning does not name %s:\n%s", setting,
                     env_name, r.child.err);
}

Test(options, invalid_number_warns) {
  expect_warning_and_default("TESSERA_PURGE_DELAY_MS=abc", "TESSERA_PURGE_DELAY_MS");
}

Test(options, out_of_range_warns) {
  expect_warning_and_default("TESSERA_PURGE_DELAY_MS=-5", "TESSERA_PURGE_DELAY_MS");
}

Test(options, overflowing_number_warns) {
  expect_warning_and_default("TESSERA_LARGE_CACHE_MB=99999999999999999999999", "TESSERA_LARGE_CACHE_MB");
}

Test(options, unknown_word_warns) {
  expect_warning_and_default("TESSERA_ON_ERROR=sometimes", "TESSERA_ON_ERROR");
}

Test(options, valid_values_do_not_warn) {
  run_t r;
  run_helper("defaults_kept", "TESSERA_PURGE_DELAY_MS=10", "TESSERA_LARGE_CACHE_MB=64", &r);
  cr_assert(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0, "%s", r.out);
  cr_assert_null(strstr(r.child.err, "tessera:"), "unexpected message:\n%s", r.child.err);
}

/* TESSERA_ON_ERROR takes its words in any case; anything else keeps the
 * default, abort. */
Test(options, on_error_continue_any_case) {
  expect_ok("bad_free", "TESSERA_ON_ERROR=CONTINUE", NULL);
  expect_ok("bad_free", "TESSERA_ON_ERROR=Continue", NULL);
}

Test(options, on_error_invalid_keeps_abort) {
  run_t r;
  run_helper("bad_free", "TESSERA_ON_ERROR=ignore", NULL, &r);
  cr_assert(WIFSIGNALED(r.child.status) && WTERMSIG(r.child.status) == SIGABRT,
            "status %#x\nstderr:\n%s", r.child.status, r.child.err);
  cr_assert_not_null(strstr(r.child.err, "TESSERA_ON_ERROR"));
}

Test(options, on_error_abort_explicit) {
  run_t r;
  run_helper("bad_free", "TESSERA_ON_ERROR=abort", NULL, &r);
  cr_assert(WIFSIGNALED(r.child.status) && WTERMSIG(r.child.status) == SIGABRT,
            "status %#x\nstderr:\n%s", r.child.status, r.child.err);
  cr_assert_null(strstr(r.child.err, "warning"), "abort is a valid value:\n%s", r.child.err);
}
