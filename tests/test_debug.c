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
 * handler comes after ours) after a guarded-sampling fault.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

typedef struct run_s {
  tsr_child_t child;
  char out[4096];
} run_t;

static void run_helper(const char *helper, const char *name, const char *setting, run_t *r) {
  char *argv[] = { (char *)helper, (char *)name, NULL };
  char *env[2] = { (char *)setting, NULL };
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &r->child), "could not start %s", helper);
  rewind(out);
  size_t n = fread(r->out, 1, sizeof r->out - 1, out);
  r->out[n] = 0;
  fclose(out);
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
