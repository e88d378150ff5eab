/* test_own_threads.c: tessera's own threads (the reclaimer here; the report
 * thread and the ticker start the same way, os/posix.c) start whatever the
 * program is like.
 *
 * - A program of scheduling policy SCHED_IDLE, without the privilege to
 *   raise it: each of tessera's threads asked for SCHED_OTHER, which the
 *   kernel refused (EPERM), and none started, silently.
 * - A program with much static TLS (__thread data of its own and of the
 *   libraries it links): the C library carves it out of the stack size
 *   asked for, and of 256 KiB 20 were left, which a report overflowed
 *   (SIGSEGV in the report thread).
 *
 * Each case runs in a child, whose reclaimer starts at a slow path once it
 * is a second old.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <dirent.h>
#include <sched.h>

/* as a program's own: 236 KiB of static TLS left tessera's threads 20 KiB
 * of their 256 */
static __thread char big_tls[236 << 10];

/* Thread ids of this process into ids (up to cap); their count. */
static size_t task_ids(long *ids, size_t cap) {
  DIR *d = opendir("/proc/self/task");
  size_t n = 0;
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.' && n < cap) ids[n++] = strtol(e->d_name, NULL, 10);
  closedir(d);
  return n;
}

/* The thread of this process started since `before` was taken, or 0. */
static long new_thread(const long *before, size_t n_before) {
  long now[64];
  size_t n = task_ids(now, 64);
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t k = 0; k < n_before; k++) seen |= now[i] == before[k];
    if (!seen) return now[i];
  }
  return 0;
}

/* A second old, then slow paths: the reclaimer starts.  Its thread id, or
 * 0 when none started. */
static long start_reclaimer(void) {
  long before[64];
  size_t n = task_ids(before, 64);
  tsr_test_sleep_ms(1100);
  for (int round = 0; round < 20; round++) {
    static void *blocks[4096];
    for (size_t i = 0; i < 4096; i++) blocks[i] = tsr_malloc(16 + i % 2000);
    for (size_t i = 0; i < 4096; i++) tsr_free(blocks[i]);
    long t = new_thread(before, n);
    if (t != 0) return t;
    tsr_test_sleep_ms(20);
  }
  return 0;
}

static void idle_child(void *arg) {
  (void)arg;
  /* without the privilege to leave SCHED_IDLE (as root, CAP_SYS_NICE) */
  if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
  struct sched_param p = { .sched_priority = 0 };
  if (sched_setscheduler(0, SCHED_IDLE, &p) != 0) _exit(78);
  _exit(start_reclaimer() != 0 ? 0 : 1);
}

Test(own_threads, they_start_in_a_program_of_idle_priority, .timeout = 60) {
  tsr_child_t child;
  cr_assert(tsr_test_run_child(idle_child, NULL, &child));
  cr_assert(WIFEXITED(child.status), "signal %d\n%s", WTERMSIG(child.status), child.err);
  if (WEXITSTATUS(child.status) == 77) cr_skip_test("cannot give up root's privileges here");
  if (WEXITSTATUS(child.status) == 78) cr_skip_test("SCHED_IDLE is not permitted here");
  cr_assert_eq(WEXITSTATUS(child.status), 0, "no reclaimer started in a SCHED_IDLE process\n%s", child.err);
}

/* Bytes of stack below the stack pointer of thread tid, which sleeps in a
 * system call: to the bottom of the mapping that holds it (the guard page
 * below is a mapping of its own).  0 when it cannot be read. */
static size_t stack_room(long tid) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  unsigned long v[9] = { 0 };
  bool read = fgets(line, sizeof line, f) != NULL;
  fclose(f);
  /* "nr arg1 .. arg6 sp pc" */
  char *at = line;
  for (int i = 0; read && i < 9; i++) {
    char *end;
    v[i] = strtoul(at, &end, i == 0 ? 10 : 16);
    read = end != at;
    at = end;
  }
  if (!read) return 0;
  f = fopen("/proc/self/maps", "r");
  size_t room = 0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && v[7] >= lo && v[7] < hi) room = v[7] - lo;
  }
  if (f != NULL) fclose(f);
  return room;
}

static void tls_child(void *arg) {
  (void)arg;
  memset(big_tls, 1, sizeof big_tls);
  long t = start_reclaimer();
  if (t == 0) _exit(1);
  tsr_test_sleep_ms(50);   /* asleep between rounds */
  size_t room = stack_room(t);
  if (room == 0) _exit(77);
  if (room < ((size_t)200 << 10)) {
    fprintf(stderr, "the reclaimer has %zu KiB of stack below its frame\n", room >> 10);
    _exit(2);
  }
  _exit(0);
}

Test(own_threads, their_stack_is_over_the_programs_static_tls, .timeout = 60) {
  if (TSR_TEST_TSAN) cr_skip_test("ThreadSanitizer's runtime has threads and TLS of its own");
  tsr_child_t child;
  cr_assert(tsr_test_run_child(tls_child, NULL, &child));
  cr_assert(WIFEXITED(child.status), "signal %d\n%s", WTERMSIG(child.status), child.err);
  if (WEXITSTATUS(child.status) == 77) cr_skip_test("/proc/self/task/*/syscall cannot be read here");
  cr_assert_eq(WEXITSTATUS(child.status), 0, "exit %d\n%s", WEXITSTATUS(child.status), child.err);
}
