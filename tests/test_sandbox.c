/* test_sandbox.c: a program that forbids itself system calls after it
 * started (sandbox_helper.c), as OpenSSH's privilege-separated child does
 * with a seccomp filter that kills the process at any call it does not
 * name (issue 18: what real servers do to an allocator).
 *
 * glibc's malloc makes no call outside such a list; tessera made four.
 * Guarded sampling installed its SIGSEGV handler (rt_sigaction) at its
 * first sample, the reclaimer's start made a thread (clone) once the
 * process was a second old, the stack walk read unwind tables from their
 * files (pread64), and a report at exit (TESSERA_REPORT) wrote to a file,
 * which the child, limited to 0-byte files, is killed for (meshing's
 * file calls make a fifth, with TESSERA_MESH=on).
 * Each killed the helper's child before the fix; an sshd run with
 * TESSERA_REPORT set refused every login ("preauth child terminated by
 * signal 25").  Now tessera sees that the filters changed since it
 * started (os/posix_restrict.c) and makes none of them; a filter in force
 * from the start (a container's) keeps the reclaimer.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <dirent.h>
#include <sys/stat.h>

static void run(const char *mode, char *const env[]) {
  char *argv[] = { (char *)TSR_SANDBOX_HELPER, (char *)mode, NULL };
  char out_path[] = "/tmp/tsr_sandbox_out_XXXXXX";
  int out_fd = mkstemp(out_path);
  cr_assert(out_fd >= 0, "mkstemp: %s", strerror(errno));
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, out_fd, &child), "cannot start %s", argv[0]);
  char said[512] = "";
  ssize_t n = pread(out_fd, said, sizeof said - 1, 0);
  said[n > 0 ? n : 0] = 0;
  close(out_fd);
  unlink(out_path);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0, "%s %s: %s %d\n%s%s", mode,
            env != NULL && env[0] != NULL ? env[0] : "", WIFEXITED(child.status) ? "exit" : "signal",
            WIFEXITED(child.status) ? WEXITSTATUS(child.status) : WTERMSIG(child.status), said, child.err);
  /* the child may not write, even to stderr: nothing is said */
  cr_expect_eq(child.err_len, 0, "%s: tessera wrote to stderr in a restricted process:\n%s", mode, child.err);
}

/* Guarded sampling at its default rate samples a few of the child's
 * blocks, the reclaimer is due after a second, and meshing (forced on
 * in the release stage's second run, and below) has pairs to make. */
Test(sandbox, an_openssh_like_child_lives, .timeout = 60) { run("ssh", NULL); }

Test(sandbox, a_child_whose_filter_lets_proc_be_read_lives, .timeout = 60) { run("proc", NULL); }

/* Each of tessera's calls alone: guarded sampling's handler, the
 * reclaimer's thread, and the stack walk's reading of unwind tables from
 * their files (pread64, which the "proc" filter kills where it lets the
 * file be opened). */
Test(sandbox, guarded_sampling_alone, .timeout = 60) {
  /* the first sample comes after the parent's fork: the parent allocates
   * less than a sampling period before it */
  char *env[] = { "TESSERA_GUARD_SAMPLE=100", "TESSERA_RECLAIM_MS=0", NULL };
  run("ssh", env);
}

Test(sandbox, the_reclaimer_alone, .timeout = 60) {
  char *env[] = { "TESSERA_GUARD_SAMPLE=0", "TESSERA_TRACK=stats", NULL };
  run("ssh", env);
}

Test(sandbox, stack_walks_alone, .timeout = 60) {
  char *env[] = { "TESSERA_GUARD_SAMPLE=0", "TESSERA_RECLAIM_MS=0", "TESSERA_TRACK=full", NULL };
  run("proc", env);
}

Test(sandbox, no_report_is_written_where_the_child_may_write_no_file, .timeout = 60) {
  char dir[] = "/tmp/tsr_sandbox_XXXXXX";
  cr_assert(mkdtemp(dir) != NULL);
  char report[64 + sizeof dir];
  snprintf(report, sizeof report, "TESSERA_REPORT=%s/r.%%p", dir);
  /* the report alone */
  char *env[] = { report, "TESSERA_GUARD_SAMPLE=0", "TESSERA_RECLAIM_MS=0", "TESSERA_TRACK=stats", NULL };
  run("ssh", env);
  run("proc", env);
  /* the two parents' reports, and none of the children's */
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  int reports = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char path[sizeof dir + 300];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    cr_expect(stat(path, &st) == 0 && st.st_size > 0, "%s is empty", path);
    unlink(path);
    reports++;
  }
  closedir(d);
  rmdir(dir);
  cr_expect_eq(reports, 2, "%d reports for two parents", reports);
}

Test(sandbox, full_tracking_and_every_block_guarded, .timeout = 60) {
  char *env[] = { "TESSERA_TRACK=full", "TESSERA_GUARD_SAMPLE=1", NULL };
  run("ssh", env);
}

Test(sandbox, meshing_on, .timeout = 60) {
  char *env[] = { "TESSERA_MESH=on", "TESSERA_MESH_MS=1", NULL };
  run("ssh", env);
  run("proc", env);
}

/* A filter that kills at openat too, the look at /proc's: tessera sees
 * it installed, through prctl or syscall(SYS_seccomp), and never looks
 * (killed at that openat before). */
Test(sandbox, a_filter_that_kills_at_open_is_seen_as_it_is_installed, .timeout = 60) {
  run("killopen", NULL);
  run("killopen-syscall", NULL);
}

/* A filter in force before the program started is not one it installed:
 * the reclaimer runs there. */
Test(sandbox, a_filter_from_the_start_keeps_the_reclaimer, .timeout = 60) { run("born", NULL); }

/* The report thread (TESSERA_REPORT_SIGNAL) is started again in a fork
 * child, at its first slow path: in the sandboxed child that start is
 * refused, and the child is told nothing (a warning to a stderr that is
 * a file raised SIGXFSZ there). */
Test(sandbox, the_report_thread_is_not_restarted_in_the_child, .timeout = 60) {
  char *env[] = { "TESSERA_REPORT_SIGNAL=SIGUSR2", NULL };
  run("ssh", env);
  run("proc", env);
}

/* A filter from the start and one added since: the mode reads 2 before
 * and after, and only the count of filters changes (the child of "proc"
 * may open the file). */
Test(sandbox, a_filter_added_to_one_from_the_start_is_seen, .timeout = 60) {
  FILE *f = fopen("/proc/self/status", "r");
  cr_assert(f != NULL);
  char line[256];
  bool counted = false;
  while (!counted && fgets(line, sizeof line, f) != NULL) counted = strncmp(line, "Seccomp_filters:", 16) == 0;
  fclose(f);
  if (!counted) cr_skip_test("the kernel does not count a thread's filters (Seccomp_filters: Linux 5.9)");
  run("born-proc", NULL);
}

/* A process out of descriptors for a moment installed no filter: tessera
 * cannot read its state then (EMFILE), makes none of its calls, and asks
 * again later rather than stopping its reclaimer, meshing and reports for
 * good: the reclaimer starts a second after the descriptors came back. */
Test(sandbox, running_out_of_descriptors_is_no_sandbox, .timeout = 60) { run("fds", NULL); }

/* OpenSSH's rlimit sandbox: no filter, but no descriptor (EMFILE for the
 * look at the state), no process (the reclaimer's clone: EAGAIN) and no
 * file: the child must neither start the thread nor say that it could
 * not. */
Test(sandbox, a_child_in_openssh_rlimit_sandbox_lives, .timeout = 60) { run("rlimit", NULL); }

/* A daemon that chroots where no /proc is (named -t, unbound) installed no
 * filter: its reclaimer starts as anywhere.  The child allocates past its
 * first second in an empty root, then sleeps while this process counts its
 * threads. */
Test(sandbox, a_chroot_without_proc_is_no_filter, .timeout = 60) {
  if (geteuid() != 0) cr_skip_test("chroot needs root");
  char root[] = "/tmp/tsr_chroot_XXXXXX";
  cr_assert(mkdtemp(root) != NULL);
  int done[2];
  cr_assert_eq(pipe(done), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    close(done[0]);
    if (chroot(root) != 0 || chdir("/") != 0) _exit(3);
    tsr_test_sleep_ms(1100);
    static void *blocks[20000];
    for (int r = 0; r < 4; r++) {
      for (size_t i = 0; i < 20000; i++) blocks[i] = tsr_malloc(16 + (i * 37) % 2000);
      for (size_t i = 0; i < 20000; i++) tsr_free(blocks[i]);
    }
    tsr_test_sleep_ms(200);   /* the reclaimer's thread is made */
    if (write(done[1], "", 1) != 1) _exit(4);
    tsr_test_sleep_ms(1000);   /* counted meanwhile */
    _exit(0);
  }
  close(done[1]);
  char byte;
  cr_assert_eq(read(done[0], &byte, 1), 1, "the chrooted child ended early");
  close(done[0]);
  char task[64];
  snprintf(task, sizeof task, "/proc/%d/task", (int)pid);
  DIR *d = opendir(task);
  int threads = 0;
  for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) threads += e->d_name[0] != '.';
  if (d != NULL) closedir(d);
  int status;
  waitpid(pid, &status, 0);
  rmdir(root);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
  cr_assert_geq(threads, 2, "%d thread in the chrooted child: no reclaimer", threads);
}
