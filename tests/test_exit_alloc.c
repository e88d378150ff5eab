/* test_exit_alloc.c: allocations made by thread-specific-data destructors
 * after tessera's own thread-exit destructor (issue 18, item 7;
 * exit_alloc_helper.c has the scenario).
 *
 * A destructor that allocates in the last round of destructors, after
 * tessera's, made a heap that no round handed over: its pages stayed
 * owned by a thread that was gone, and what was freed into them never came
 * back (each batch of 200 such threads kept another 69 MiB committed).
 * The helper runs two batches and fails when the second ends above the
 * first.  It runs through the tsr_ names and, linked to the override,
 * through the C names (not under TSan or ASan, whose runtimes own malloc),
 * with the keys made before tessera's, after it, and both; and under full
 * tracking and the debug checks, whose allocation paths lend the heap
 * too.  exit_alloc_cxx_helper.cpp does the same with C++ thread_local
 * objects whose destructors allocate.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

static void run(const char *helper, const char *order, const char *setting) {
  /* ThreadSanitizer ends its own view of a thread in an early round of the
   * destructors: an instrumented destructor of a later round crashes in
   * its runtime (TraceSwitchPart) before it reaches tessera */
  if (TSR_TEST_TSAN) cr_skip_test("destructors of the later rounds do not run under TSan");
  char order_env[64];
  snprintf(order_env, sizeof order_env, "TSR_EXIT_ALLOC_ORDER=%s", order);
  char *argv[] = { (char *)helper, NULL };
  char *env[] = { order_env, (char *)setting, NULL };
  tsr_child_t out;
  cr_assert(tsr_test_run_exec(argv, env, -1, &out), "cannot start %s", helper);
  cr_assert(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0, "%s, keys %s, %s: %s %d\n%s", helper, order,
            setting ? setting : "defaults", WIFEXITED(out.status) ? "exit" : "signal",
            WIFEXITED(out.status) ? WEXITSTATUS(out.status) : WTERMSIG(out.status), out.err);
}

Test(exit_alloc, tsr_names_keys_before, .timeout = 120) { run(TSR_EXIT_ALLOC_HELPER, "before", NULL); }
Test(exit_alloc, tsr_names_keys_after, .timeout = 120) { run(TSR_EXIT_ALLOC_HELPER, "after", NULL); }
Test(exit_alloc, tsr_names_keys_both, .timeout = 120) { run(TSR_EXIT_ALLOC_HELPER, "both", NULL); }
Test(exit_alloc, tsr_names_full_tracking, .timeout = 120) {
  run(TSR_EXIT_ALLOC_HELPER, "both", "TESSERA_TRACK=full");
}
Test(exit_alloc, tsr_names_debug_checks, .timeout = 120) {
  run(TSR_EXIT_ALLOC_HELPER, "both", "TESSERA_DEBUG=guard,fill");
}

#ifdef TSR_EXIT_ALLOC_HELPER_OVERRIDE
Test(exit_alloc, override_keys_after, .timeout = 120) { run(TSR_EXIT_ALLOC_HELPER_OVERRIDE, "after", NULL); }
Test(exit_alloc, override_keys_both, .timeout = 120) { run(TSR_EXIT_ALLOC_HELPER_OVERRIDE, "both", NULL); }
Test(exit_alloc, override_full_tracking, .timeout = 120) {
  run(TSR_EXIT_ALLOC_HELPER_OVERRIDE, "both", "TESSERA_TRACK=full");
}
Test(exit_alloc, override_debug_checks, .timeout = 120) {
  run(TSR_EXIT_ALLOC_HELPER_OVERRIDE, "both", "TESSERA_DEBUG=guard,fill");
}
#endif
#ifdef TSR_EXIT_ALLOC_CXX_HELPER
/* C++ thread_local destructors, one constructing another as the thread
 * exits; the order of keys does not apply */
Test(exit_alloc, cxx_thread_locals, .timeout = 120) { run(TSR_EXIT_ALLOC_CXX_HELPER, "after", NULL); }
Test(exit_alloc, cxx_thread_locals_full_tracking, .timeout = 120) {
  run(TSR_EXIT_ALLOC_CXX_HELPER, "after", "TESSERA_TRACK=full");
}
#endif
