/* sandbox_helper.c: a program that forbids itself system calls, as
 * OpenSSH's privilege-separated child does (test_sandbox.c runs it).
 *
 *   sandbox_helper ssh    fork; the child limits the size of the files it
 *                         writes to 0 bytes and installs a seccomp filter
 *                         like OpenSSH's: memory calls, futex, read, write,
 *                         sleeps and the clock allowed, open refused with
 *                         EACCES, the process killed at any other call
 *                         (clone, rt_sigaction, memfd_create, ...).  Then it
 *                         waits past the reclaimer's start, allocates,
 *                         frees and reallocates through every size class
 *                         and large blocks, and leaves with exit(0), so
 *                         that the report at exit is due.
 *   sandbox_helper killopen  a filter that kills at open and openat too
 *                         (kcgi's workers'), installed with prctl; and
 *   sandbox_helper killopen-syscall  the same installed with
 *                         syscall(SYS_seccomp), as libseccomp does: tessera
 *                         sees the filter pass by and never looks at /proc.
 *   sandbox_helper proc   the same as ssh with open and close allowed: tessera
 *                         reads that its filters changed.
 *   sandbox_helper born   a filter that kills at acct(2) alone, in force
 *                         before the program starts (it execs itself as
 *                         "born-child", as a container does): tessera
 *                         starts its reclaimer there as anywhere.
 *   sandbox_helper born-proc  under that filter from the start, the
 *                         child of "proc": only the count of filters tells
 *                         tessera that one was added (Linux 5.9 and later).
 *   sandbox_helper rlimit OpenSSH's rlimit sandbox, where it has no filter:
 *                         the child (as user 65534 when run as root, as
 *                         sshd's is) may write no file and open no
 *                         descriptor or process; a warning that the
 *                         reclaimer's thread cannot start (RLIMIT_NPROC)
 *                         would raise SIGXFSZ where stderr is a file.
 *   sandbox_helper fds    no filter: every descriptor is taken while the
 *                         reclaimer is due, then given back; tessera's
 *                         look at its seccomp state fails there (EMFILE),
 *                         and the process is not taken for a sandboxed one.
 *
 * The parent exits 0 when the child did, 1 (saying why) when it was
 * killed.  born-child and fds exit 0 when their reclaimer thread runs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsr_scenario.h"

#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define REFUSE(nr, e) \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))
#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define KILL BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

#ifdef SYS_open
#define OPEN_TOO(rule) rule(SYS_open, EACCES),
#else
#define OPEN_TOO(rule)
#endif
#define OPEN_ALLOWED(nr, e) ALLOW(nr)

static int install(struct sock_filter *f, size_t n) {
  struct sock_fprog prog = { (unsigned short)n, f };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

#define MEMORY_AND_TIME                                                                                  \
  ALLOW(SYS_read), ALLOW(SYS_write), ALLOW(SYS_exit), ALLOW(SYS_exit_group), ALLOW(SYS_futex),           \
      ALLOW(SYS_mmap), ALLOW(SYS_munmap), ALLOW(SYS_mprotect), ALLOW(SYS_madvise), ALLOW(SYS_mremap),    \
      ALLOW(SYS_brk), ALLOW(SYS_clock_gettime), ALLOW(SYS_gettimeofday), ALLOW(SYS_nanosleep),           \
      ALLOW(SYS_clock_nanosleep), ALLOW(SYS_getpid), ALLOW(SYS_gettid), ALLOW(SYS_rt_sigprocmask),       \
      ALLOW(SYS_rt_sigreturn), ALLOW(SYS_getrandom)

static int sandbox_ssh(void) {
  struct sock_filter f[] = { LOAD_NR, REFUSE(SYS_openat, EACCES), OPEN_TOO(REFUSE) MEMORY_AND_TIME, KILL };
  return install(f, sizeof f / sizeof f[0]);
}

static int sandbox_proc(void) {
  struct sock_filter f[] = { LOAD_NR, ALLOW(SYS_openat), OPEN_TOO(OPEN_ALLOWED) ALLOW(SYS_close),
                             MEMORY_AND_TIME, KILL };
  return install(f, sizeof f / sizeof f[0]);
}

#define KILL_OPEN_FILTER struct sock_filter f[] = { LOAD_NR, MEMORY_AND_TIME, KILL }

static int sandbox_killopen(void) {
  KILL_OPEN_FILTER;
  return install(f, sizeof f / sizeof f[0]);
}

static int sandbox_killopen_syscall(void) {
  KILL_OPEN_FILTER;
  struct sock_fprog prog = { (unsigned short)(sizeof f / sizeof f[0]), f };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int sandbox_rlimit(void) {
  struct rlimit none = { 0, 0 };
  if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return -1;
  return setrlimit(RLIMIT_NOFILE, &none) != 0 || setrlimit(RLIMIT_NPROC, &none) != 0 ? -1 : 0;
}

static int sandbox_acct(void) {
  struct sock_filter f[] = { LOAD_NR, BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_acct, 0, 1), KILL,
                             BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
  return install(f, sizeof f / sizeof f[0]);
}

static void sleep_ms(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

#define BLOCKS 20000
static unsigned char *blocks[BLOCKS];

/* Every size class and large blocks, contents checked. */
static int churn(int rounds) {
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < BLOCKS; i++) {
      size_t n = (i % 97 == 0) ? 140000 + (size_t)i : 16 + (size_t)(i * 37 + round) % 20000;
      blocks[i] = S_MALLOC(n);
      if (blocks[i] == NULL) return 2;
      memset(blocks[i], i & 0xff, 16);
    }
    for (int i = 0; i < BLOCKS; i += 3) {
      unsigned char *p = S_REALLOC(blocks[i], 24 + (size_t)i % 3000);
      if (p == NULL) return 2;
      blocks[i] = p;
    }
    for (int i = 0; i < BLOCKS; i++) {
      if (blocks[i][0] != (unsigned char)(i & 0xff) || blocks[i][15] != (unsigned char)(i & 0xff)) return 3;
      if (i % 10 != 0 || round == rounds - 1) S_FREE(blocks[i]);
    }
    sleep_ms(20);
  }
  return 0;
}

/* Past the age at which the reclaimer starts, then churn. */
static int work(void) {
  sleep_ms(1100);
  return churn(5);
}

static int forked(int (*sandbox)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    struct rlimit none = { 0, 0 };   /* OpenSSH's child writes no file */
    if (setrlimit(RLIMIT_FSIZE, &none) != 0 || sandbox() != 0) _exit(4);
    exit(work());   /* exit: the report at exit is due */
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (WIFSIGNALED(status)) {
    printf("the sandboxed child was killed by signal %d\n", WTERMSIG(status));
    return 1;
  }
  if (WEXITSTATUS(status) != 0) printf("the sandboxed child exited %d\n", WEXITSTATUS(status));
  return WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int threads(void) {
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  if (d == NULL) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* The reclaimer falls due at the first slow paths after a second, while
 * every descriptor is taken. */
static int out_of_fds(void) {
  struct rlimit few = { 32, 32 };
  if (setrlimit(RLIMIT_NOFILE, &few) != 0) return 4;
  sleep_ms(1100);
  int fds[32], n = 0;
  for (int fd; n < 32 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fds[n++] = fd;
  int rc = churn(2);
  while (n > 0) close(fds[--n]);
  if (rc != 0) return rc;
  sleep_ms(1100);   /* the reclaimer's start, put off by a second */
  rc = churn(2);
  if (rc != 0) return rc;
  int t = threads();
  if (t < 2) printf("%d thread: no reclaimer after the process ran out of descriptors for a moment\n", t);
  return t >= 2 ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  S_FREE(S_MALLOC(1));
  if (strcmp(mode, "ssh") == 0) return forked(sandbox_ssh);
  if (strcmp(mode, "proc") == 0) return forked(sandbox_proc);
  if (strcmp(mode, "killopen") == 0) return forked(sandbox_killopen);
  if (strcmp(mode, "killopen-syscall") == 0) return forked(sandbox_killopen_syscall);
  if (strcmp(mode, "rlimit") == 0) return forked(sandbox_rlimit);
  if (strcmp(mode, "born") == 0 || strcmp(mode, "born-proc") == 0) {
    if (sandbox_acct() != 0) return 4;
    execl("/proc/self/exe", argv[0], strcmp(mode, "born") == 0 ? "born-child" : "born-proc-child", (char *)NULL);
    return 5;
  }
  if (strcmp(mode, "born-proc-child") == 0) return forked(sandbox_proc);
  if (strcmp(mode, "born-child") == 0) {
    int rc = work();
    if (rc != 0) return rc;
    int n = threads();
    if (n < 2) printf("%d thread: no reclaimer under a filter that was there at start\n", n);
    return n >= 2 ? 0 : 1;
  }
  if (strcmp(mode, "fds") == 0) return out_of_fds();
  fprintf(stderr, "usage: %s ssh|proc|killopen|killopen-syscall|rlimit|born|born-proc|fds\n", argv[0]);
  return 2;
}
