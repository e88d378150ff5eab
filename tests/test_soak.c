/* test_soak.c: a server-shaped program run for a while (soak_helper.c
 * has what it does and what it checks): threads that come and go, a
 * shared cache with eviction whose value sizes drift, large buffers
 * grown and shrunk with realloc, a fork now and then, a report on a
 * signal, tsr_check throughout, every block's contents checked, and the
 * resident set required to stop growing.
 *
 * How long: TSR_TEST_SOAK_SECONDS (default 15; scripts/test.sh's release
 * stage runs 120).  For a longer soak on demand:
 *   TSR_TEST_SOAK_SECONDS=1800 ctest --test-dir build -R test_soak -V
 * (ctest gives it an hour), or run the helper itself, which prints its
 * figures:
 *   TSR_TEST_SOAK_SECONDS=7200 TESSERA_MESH=on build/tests/soak_helper_override
 *
 * Through the override (soak_helper_override, the C names, as a server
 * uses tessera), with meshing off and on; under TSan and ASan, whose
 * runtimes own malloc, through the tsr_ names (soak_helper) instead.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

static void soak(const char *helper, const char *mesh) {
  char path[64], report[96];
  snprintf(path, sizeof path, "/tmp/tsr_soak_%d_%s.txt", (int)getpid(), mesh);
  unlink(path);
  snprintf(report, sizeof report, "TESSERA_REPORT=%s", path);
  char mesh_env[32];
  snprintf(mesh_env, sizeof mesh_env, "TESSERA_MESH=%s", mesh);
  char *argv[] = { (char *)helper, NULL };
  /* the fork children's first allocation starts tessera's threads again
   * (the reclaimer, the report thread), which ThreadSanitizer refuses
   * after a fork with threads unless told */
  char *env[] = { report, mesh_env, "TESSERA_REPORT_SIGNAL=usr1",
                  "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:die_after_fork=0", NULL };
  tsr_child_t child;
  /* its figures go to this program's output (ctest -V shows them) */
  cr_assert(tsr_test_run_exec(argv, env, -1, &child), "cannot start %s", helper);
  FILE *f = fopen(path, "r");
  char *text = f != NULL ? tsr_test_slurp(f, NULL) : NULL;
  if (f != NULL) fclose(f);
  unlink(path);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0, "%s, TESSERA_MESH=%s: %s %d\n%s", helper,
            mesh, WIFEXITED(child.status) ? "exit" : "signal",
            WIFEXITED(child.status) ? WEXITSTATUS(child.status) : WTERMSIG(child.status), child.err);
  /* the reports asked for by signal, and the one at exit */
  cr_assert_not_null(text, "no report in %s", path);
  cr_assert_not_null(strstr(text, "), signal after "), "no report on a signal:\n%.2000s", text);
  cr_assert_not_null(strstr(text, "), exit after "), "no report at exit:\n%.2000s", text);
  free(text);
}

#ifdef TSR_SOAK_HELPER_OVERRIDE
Test(soak, override, .timeout = 3600) { soak(TSR_SOAK_HELPER_OVERRIDE, "off"); }
Test(soak, override_meshing, .timeout = 3600) { soak(TSR_SOAK_HELPER_OVERRIDE, "on"); }
#else
Test(soak, tsr_names, .timeout = 3600) { soak(TSR_SOAK_HELPER, "off"); }
Test(soak, tsr_names_meshing, .timeout = 3600) { soak(TSR_SOAK_HELPER, "on"); }
#endif
