/* posix_files.c: files and standard error (POSIX), for reports and
 * messages.
 *
 * Owns: the report file (opened for appending, never truncated, not
 * through a symbolic link, made 0600), the program's path for a report's
 * header, and writing text to a file or to stderr.  A write stops where
 * the file would pass the process's file size limit: past it the kernel
 * raises SIGXFSZ, which ends the process (ulimit -f; OpenSSH's sandboxed
 * child has a limit of 0).  Every function saves and restores errno.
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many bytes a write to fd may add before the file passes the
 * process's RLIMIT_FSIZE.  SIZE_MAX without a limit, where fd is not a
 * regular file, and in a process that forbade itself system calls
 * (posix_restrict.c: getrlimit may be what kills it; such a process
 * writes only its last words). */
static size_t file_room(int fd) {
  struct rlimit rl;
  struct stat st;
  if (tsri_os_restricted() || getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return SIZE_MAX;
  int flags = fcntl(fd, F_GETFL);
  off_t at = flags >= 0 && (flags & O_APPEND) ? st.st_size : lseek(fd, 0, SEEK_CUR);
  if (at < 0 || (uint64_t)at >= (uint64_t)rl.rlim_cur) return 0;
  uint64_t room = (uint64_t)rl.rlim_cur - (uint64_t)at;
  return room < SIZE_MAX ? (size_t)room : SIZE_MAX;   /* a 32-bit size_t */
}

/* write(2) all of text to fd, cut where the file would pass
 * RLIMIT_FSIZE (EFBIG).  Under a limit, SIGXFSZ is ignored meanwhile
 * where it would end the process: another process appending to the file
 * (a forked worker writing its report to the same one) may take it to
 * the limit between file_room and the write, and a write that starts
 * there raises it.  errno is left as it was. */
static int write_all(int fd, const char *text, size_t len) {
  int saved = errno, rc = 0;
  size_t room = file_room(fd);
  if (len > room) {
    len = room;
    rc = EFBIG;
  }
  struct sigaction ignore, was;
  memset(&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  bool ignored = room != SIZE_MAX && len > 0 && sigaction(SIGXFSZ, &ignore, &was) == 0;
  if (ignored && was.sa_handler != SIG_DFL) {   /* the program's handler or SIG_IGN: as it was */
    sigaction(SIGXFSZ, &was, NULL);
    ignored = false;
  }
  while (len > 0) {
    ssize_t w = write(fd, text, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { rc = w < 0 ? errno : EIO; break; }
    text += w;
    len -= (size_t)w;
  }
  if (ignored) sigaction(SIGXFSZ, &was, NULL);
  errno = saved;
  return rc;
}

void tsri_os_write_stderr(const char *text, size_t len) { write_all(2, text, len); }

void tsri_os_program(char *buf, size_t size) {
  int saved = errno;
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  buf[n > 0 ? (size_t)n : 0] = 0;
  errno = saved;
}

int tsri_os_file_append(const char *path, intptr_t *handle) {
  int saved = errno;
  /* appended to, never truncated; not through a symbolic link; readable
   * by its owner alone when made here (a report shows the heap's layout) */
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  int rc = fd < 0 ? errno : 0;
  errno = saved;
  if (fd >= 0) *handle = fd;
  return rc;
}

int tsri_os_file_write(intptr_t handle, const char *text, size_t len) { return write_all((int)handle, text, len); }

void tsri_os_file_close(intptr_t handle) {
  int saved = errno;
  close((int)handle);
  errno = saved;
}
