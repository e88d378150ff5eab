/* runmon.c: run one command under a chosen heap and measure it from the
 * outside: its resident set over time, its peak RSS and CPU time as the
 * kernel counts them, and how it ended.
 *
 *   runmon [-p LIB] [-i MS] [-s SERIES] [-r RESULT] [-o OUT] [-e ERR] -- COMMAND ARGS...
 *
 *   -p LIB     LD_PRELOAD for the command only ("" or absent: none, and an
 *              inherited LD_PRELOAD is removed), so runmon itself and the
 *              tool that times it keep the system heap
 *   -i MS      sampling interval (default 5 ms)
 *   -s SERIES  write "seconds rss_kib" per sample (VmRSS of /proc/PID/status)
 *   -r RESULT  write key=value lines: exit (status or -1), signal (0 or the
 *              number), wall_s, user_s, sys_s, maxrss_kib (wait4's
 *              ru_maxrss), final_rss_kib (the last sample), samples, and
 *              preload_mapped (yes, no, or unknown when the command ended
 *              before a sample after its exec: LIB's path was, or was not,
 *              in /proc/PID/maps)
 *   -o OUT, -e ERR   the command's stdout and stderr (default: inherited)
 *
 * Exit status: the command's, or 128 + the signal that ended it; 125 for
 * runmon's own errors, 127 when the command cannot be started.
 *
 * Sampling waits on SIGCHLD with a timeout, so the command's end is seen
 * at once and the wall time is not rounded up to the interval.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "runmon: %s: %s\n", what, strerror(errno));
  exit(125);
}

/* VmRSS of pid in KiB, or -1 when the process is gone. */
static long rss_kib(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  const char *p = strstr(buf, "VmRSS:");
  return p ? strtol(p + 6, NULL, 10) : -1;   /* a zombie has no VmRSS line */
}

/* 1: the process has exec'd (its exe is not runmon's) and maps lib;
 * 0: exec'd and does not; -1: not known yet. */
static int maps_lib(pid_t pid, const char *self_exe, const char *lib) {
  char path[64], exe[PATH_MAX];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
  ssize_t n = readlink(path, exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = 0;
  if (strcmp(exe, self_exe) == 0) return -1;   /* between fork and exec */
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  char line[PATH_MAX + 128];
  int found = 0;
  while (!found && fgets(line, sizeof line, f) != NULL) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    const char *slash = strchr(line, '/');
    if (slash != NULL && strcmp(slash, lib) == 0) found = 1;
  }
  fclose(f);
  return found;
}

static void usage(void) {
  fprintf(stderr, "usage: runmon [-p LIB] [-i MS] [-s SERIES] [-r RESULT] [-o OUT] [-e ERR] -- COMMAND ARGS...\n");
  exit(125);
}

int main(int argc, char **argv) {
  const char *lib = NULL, *series_path = NULL, *result_path = NULL, *out_path = NULL, *err_path = NULL;
  long interval_ms = 5;
  int opt;
  while ((opt = getopt(argc, argv, "+p:i:s:r:o:e:")) != -1) {
    switch (opt) {
      case 'p': lib = optarg; break;
      case 'i': interval_ms = strtol(optarg, NULL, 10); break;
      case 's': series_path = optarg; break;
      case 'r': result_path = optarg; break;
      case 'o': out_path = optarg; break;
      case 'e': err_path = optarg; break;
      default: usage();
    }
  }
  if (optind >= argc || interval_ms < 1) usage();
  char **cmd = argv + optind;

  char lib_real[PATH_MAX] = "";
  if (lib != NULL && *lib != 0) {
    if (realpath(lib, lib_real) == NULL) {
      fprintf(stderr, "runmon: preload library %s: %s\n", lib, strerror(errno));
      exit(125);
    }
  }
  char self_exe[PATH_MAX];
  ssize_t sn = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
  if (sn <= 0) die("/proc/self/exe");
  self_exe[sn] = 0;

  FILE *series = NULL;
  if (series_path != NULL && (series = fopen(series_path, "w")) == NULL) die(series_path);

  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);

  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    if (lib_real[0] != 0) setenv("LD_PRELOAD", lib_real, 1);
    else unsetenv("LD_PRELOAD");
    if (out_path != NULL) {
      int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || dup2(fd, 1) < 0) _exit(125);
      close(fd);
    }
    if (err_path != NULL) {
      int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || dup2(fd, 2) < 0) _exit(125);
      close(fd);
    }
    execvp(cmd[0], cmd);
    fprintf(stderr, "runmon: cannot run %s: %s\n", cmd[0], strerror(errno));
    _exit(127);
  }

  int status = 0, mapped = -1;
  long last = 0;
  unsigned long samples = 0;
  struct rusage ru;
  struct timespec tick = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
  for (;;) {
    pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) die("wait4");
    long rss = rss_kib(pid);
    if (rss > 0) {
      last = rss;
      samples++;
      if (series) fprintf(series, "%.4f %ld\n", now_s() - t0, rss);
      if (lib_real[0] != 0 && mapped < 1) {
        int m = maps_lib(pid, self_exe, lib_real);
        if (m >= 0) mapped = m;
      }
    }
    sigtimedwait(&chld, NULL, &tick);
  }
  double wall = now_s() - t0;
  if (series) fclose(series);

  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (result_path != NULL) {
    FILE *f = fopen(result_path, "w");
    if (f == NULL) die(result_path);
    fprintf(f, "exit=%d\nsignal=%d\nwall_s=%.6f\nuser_s=%.6f\nsys_s=%.6f\nmaxrss_kib=%ld\n"
               "final_rss_kib=%ld\nsamples=%lu\npreload=%s\npreload_mapped=%s\n",
            code, sig, wall, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss, last,
            samples, lib_real[0] ? lib_real : "none",
            lib_real[0] == 0 ? "none" : mapped == 1 ? "yes" : mapped == 0 ? "no" : "unknown");
    fclose(f);
  }
  return sig ? 128 + sig : code;
}
