/* test_fork_libc.c: fork in the hard cases, where it meets the C
 * library: fork from a signal handler that interrupted fork or malloc,
 * and fork while other threads hold the C library's stream locks and
 * allocate (fork_helper.c has the scenarios and where they come from).
 *
 * Each scenario runs in fork_helper, a program of its own that starts
 * with one thread as glibc's tests do (glibc's fork is async-signal-safe
 * only then, and a child of this test program would inherit Criterion's
 * threads): through the tsr_ names, and once more in
 * fork_helper_override, linked to the override, where the C library's
 * own allocations are tessera's (not under TSan or ASan, whose runtimes
 * own malloc).  A scenario that deadlocks never ends, so the helper
 * leads a process group of its own and has a deadline: past it the group
 * is killed and the test fails, naming the scenario.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

/* Each scenario takes a few seconds at most; a deadlock, for ever. */
#define DEADLINE_S (8.0 * (TSR_TEST_SHADOW ? 4 : 1))

static void run_guarded(const char *helper, const char *scenario) {
  char *argv[] = { (char *)helper, (char *)scenario, NULL };
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork failed");
  if (pid == 0) {
    setpgid(0, 0);
    tsr_test_no_core();
    execv(helper, argv);
    _exit(127);
  }
  setpgid(pid, pid);
  double deadline = tsr_test_now() + DEADLINE_S;
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, WNOHANG)) == 0 && tsr_test_now() < deadline) tsr_test_sleep_ms(5);
  /* the signal sender and the children of the handlers go too */
  kill(-pid, SIGKILL);
  if (got == 0) {
    waitpid(pid, &status, 0);
    cr_assert_fail("%s %s: still running after %.0f s, deadlocked", helper, scenario, DEADLINE_S);
  }
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s %s: %s %d", helper, scenario,
            WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ThreadSanitizer holds a signal back until its runtime is at a safe
 * point, so a handler never interrupts tessera there, and its own fork
 * allocates, which it reports as a call unsafe in a signal handler. */
static void signal_scenarios_run_here(void) {
  if (TSR_TEST_TSAN) cr_skip_test("fork from a signal handler is not async-signal-safe under TSan");
}

/* glibc's tst-mallocfork: before, tessera's fork handler waited for the
 * locks the interrupted fork held. */
Test(fork_libc, fork_in_handler_of_signal_during_fork, .timeout = 60) {
  signal_scenarios_run_here();
  run_guarded(TSR_FORK_HELPER, "signal_in_fork");
}

/* glibc's tst-mallocfork2: before, the handler's fork waited for a lock
 * the interrupted malloc or free held. */
Test(fork_libc, fork_in_handler_of_signal_during_malloc, .timeout = 60) {
  signal_scenarios_run_here();
  run_guarded(TSR_FORK_HELPER, "signal_in_malloc");
}

/* glibc's tst-malloc-fork-deadlock: before, fork held tessera's locks
 * while it waited for the list of streams, whose holder (fflush) waited
 * for a stream whose holder (a reader) waited for tessera's lock. */
Test(fork_libc, fork_while_streams_flush_and_grow, .timeout = 60) {
  run_guarded(TSR_FORK_HELPER, "stdio");
}

/* A fork of a process that never had a second thread takes no lock, but
 * its meshed pages must still become the child's own (mesh.c). */
Test(fork_libc, single_threaded_fork_of_meshed_pages, .timeout = 60) {
  setenv("TESSERA_MESH", "on", 1);
  setenv("TESSERA_RECLAIM_MS", "0", 1);
  run_guarded(TSR_FORK_HELPER, "mesh");
}

#ifdef TSR_FORK_HELPER_OVERRIDE
Test(fork_libc, override_fork_in_handler_of_signal_during_fork, .timeout = 60) {
  run_guarded(TSR_FORK_HELPER_OVERRIDE, "signal_in_fork");
}

Test(fork_libc, override_fork_in_handler_of_signal_during_malloc, .timeout = 60) {
  run_guarded(TSR_FORK_HELPER_OVERRIDE, "signal_in_malloc");
}

/* getline and fflush themselves, with tessera as the C library's heap. */
Test(fork_libc, override_fork_while_getline_and_fflush, .timeout = 60) {
  run_guarded(TSR_FORK_HELPER_OVERRIDE, "stdio");
}
#endif
