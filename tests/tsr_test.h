/* tsr_test.h: helpers shared by the test programs.
 *
 * Reading scale settings from the environment, the resident set size,
 * fill patterns that tell one block's contents from another's, and
 * running a piece of code in a child process with its stderr captured
 * (for the misuse tests, which must see the process die and read what
 * tessera printed).  Everything here is static: each test file is its own
 * program.
 */
#ifndef TSR_TEST_H
#define TSR_TEST_H

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tessera.h"

/* Sanitizer builds: the tests that measure RSS skip that part there, since
 * the sanitizer's shadow memory moves with ours. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TSR_TEST_SHADOW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TSR_TEST_SHADOW 1
#endif
#endif
#ifndef TSR_TEST_SHADOW
#define TSR_TEST_SHADOW 0
#endif
/* ThreadSanitizer builds: threads started in the child of a multi-threaded
 * fork are outside what its runtime supports (it dies, or with
 * die_after_fork=0 delivers no signal to them). */
#if defined(__SANITIZE_THREAD__)
#define TSR_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSR_TEST_TSAN 1
#endif
#endif
#ifndef TSR_TEST_TSAN
#define TSR_TEST_TSAN 0
#endif

/* An integer setting from the environment, or def when unset or not a
 * positive number. */
static inline long tsr_test_env(const char *name, long def) {
  const char *s = getenv(name);
  if (s == NULL || *s == 0) return def;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end == 0 && v > 0) ? v : def;
}

static inline long tsr_test_threads(void) { return tsr_test_env("TSR_TEST_THREADS", 4); }
static inline long tsr_test_seconds(void) { return tsr_test_env("TSR_TEST_SECONDS", 1); }

static inline double tsr_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void tsr_test_sleep_ms(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Resident set size of this process in bytes, from /proc/self/statm. */
static inline size_t tsr_test_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  unsigned long size = 0, resident = 0;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Bytes of address space the process has mapped (VmSize); 0 if unknown. */
static inline size_t tsr_test_mapped(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  unsigned long pages = 0;
  int n = fscanf(f, "%lu", &pages);
  fclose(f);
  return n == 1 ? (size_t)pages * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

static inline tsr_stats_t tsr_test_stats(void) {
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  if (tsr_stats_get(&s) != 0) abort();
  return s;
}

/* x, hidden from the compiler: huge sizes passed to the malloc family
 * would otherwise be refused at compile time (-Walloc-size-larger-than). */
static inline size_t tsr_test_opaque(size_t x) {
  volatile size_t v = x;
  return v;
}
#define HUGE(x) tsr_test_opaque(x)

/* A small, fast PRNG (xorshift64*), one state per thread. */
static inline uint64_t tsr_test_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* The pattern byte at offset i of a block tagged `tag`. */
static inline uint8_t tsr_test_byte(uint64_t tag, size_t i) {
  return (uint8_t)((tag * 131u) ^ (i * 7u) ^ (i >> 8));
}

static inline void tsr_test_fill(void *p, size_t n, uint64_t tag) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = tsr_test_byte(tag, i);
}

/* Offset of the first byte that does not hold the pattern, or n. */
static inline size_t tsr_test_verify(const void *p, size_t n, uint64_t tag) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != tsr_test_byte(tag, i)) return i;
  return n;
}

/* ------------------------------------------------------------------------
 * Running code in a child process
 * ---------------------------------------------------------------------- */

typedef struct tsr_child_s {
  int status;          /* from waitpid */
  char err[8192];      /* what the child wrote to stderr, NUL-terminated */
  size_t err_len;
} tsr_child_t;

/* Wait for child pid: true when it exited 0, else how it ended in why
 * ("exit N", "signal N"). */
static inline bool tsr_test_exited_0(pid_t pid, char *why, size_t cap) {
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
  if (got != pid) {
    snprintf(why, cap, "no child %d", (int)pid);
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  snprintf(why, cap, "%s %d", WIFEXITED(status) ? "exit" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  return false;
}

/* The whole of f, from its start, in a malloc'ed NUL-terminated buffer
 * (*len: its length, when len is not NULL); NULL without memory.  f must
 * seek: a file, not a pipe. */
static inline char *tsr_test_slurp(FILE *f, size_t *len) {
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL) return NULL;
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = 0;
  if (len) *len = got;
  return buf;
}

static inline void tsr_test_no_core(void) {
  struct rlimit rl = { 0, 0 };
  setrlimit(RLIMIT_CORE, &rl);
}

static inline void tsr_test_read_all(int fd, tsr_child_t *out) {
  out->err_len = 0;
  for (;;) {
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t room = sizeof out->err - 1 - out->err_len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(out->err + out->err_len, buf, take);
    out->err_len += take;
  }
  out->err[out->err_len] = 0;
}

/* Fork with the child's stderr going to a pipe.  Returns the pid (0 in the
 * child, -1 when the pipe or fork failed); the parent gets the read end in
 * *read_fd. */
static inline pid_t tsr_test_fork_captured(int *read_fd) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    tsr_test_no_core();
    return 0;
  }
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

/* Parent side: collect the child's stderr and its exit status. */
static inline bool tsr_test_collect(pid_t pid, int read_fd, tsr_child_t *out) {
  tsr_test_read_all(read_fd, out);
  close(read_fd);
  while (waitpid(pid, &out->status, 0) < 0 && errno == EINTR) {}
  return true;
}

/* Fork; in the child, send stderr to a pipe, run fn(arg) and _exit(0) if
 * it returns.  The parent collects stderr and the exit status.  Returns
 * false when the fork itself failed. */
static inline bool tsr_test_run_child(void (*fn)(void *), void *arg, tsr_child_t *out) {
  int fd;
  pid_t pid = tsr_test_fork_captured(&fd);
  if (pid < 0) return false;
  if (pid == 0) {
    fn(arg);
    _exit(0);
  }
  return tsr_test_collect(pid, fd, out);
}

/* Run argv (argv[0] a path) with extra environment entries ("NAME=value",
 * NULL-terminated list, may be NULL), stdout to out_fd (or inherited when
 * -1), stderr captured into out. */
static inline bool tsr_test_run_exec(char *const argv[], char *const env_add[], int out_fd,
                                     tsr_child_t *out) {
  int fd;
  pid_t pid = tsr_test_fork_captured(&fd);
  if (pid < 0) return false;
  if (pid == 0) {
    if (out_fd >= 0) {
      dup2(out_fd, 1);
      close(out_fd);
    }
    for (size_t i = 0; env_add != NULL && env_add[i] != NULL; i++) putenv(env_add[i]);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return tsr_test_collect(pid, fd, out);
}

/* "0x" and the lowercase hex of p, as tessera's messages print addresses. */
static inline void tsr_test_addr(char *buf, size_t size, const void *p) {
  snprintf(buf, size, "0x%lx", (unsigned long)(uintptr_t)p);
}

/* Does text contain the address p as a whole token (not as a prefix of a
 * longer number)? */
static inline bool tsr_test_names_addr(const char *text, const void *p) {
  char addr[32];
  tsr_test_addr(addr, sizeof addr, p);
  size_t n = strlen(addr);
  for (const char *s = strstr(text, addr); s != NULL; s = strstr(s + 1, addr)) {
    char next = s[n];
    bool hexdigit = (next >= '0' && next <= '9') || (next >= 'a' && next <= 'f');
    if (!hexdigit) return true;
  }
  return false;
}

/* fn(NULL) on a thread with the smallest stack POSIX allows; what it
 * returned in *result.  False when the thread cannot be made. */
static inline bool tsr_test_on_small_stack(void *(*fn)(void *), void **result) {
  pthread_attr_t attr;
  pthread_t t;
  bool made = pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN) == 0 &&
              pthread_create(&t, &attr, fn, NULL) == 0;
  pthread_attr_destroy(&attr);
  if (made) pthread_join(t, result);
  return made;
}

/* The system call behind an mremap that a test defines (a program's own
 * definition comes before the C library's, and tessera calls it): ap, from
 * the wrapper's va_start, holds the new address when flags has
 * MREMAP_FIXED (in a test whose first line defines _GNU_SOURCE). */
#ifdef MREMAP_FIXED
static inline void *tsr_test_mremap_call(void *old, size_t old_size, size_t new_size, int flags, va_list ap) {
  void *target = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
  return (void *)syscall(SYS_mremap, old, old_size, new_size, flags, target);
}
#endif

#endif /* TSR_TEST_H */
