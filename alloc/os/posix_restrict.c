/* posix_restrict.c: whether the program forbade itself system calls.
 *
 * Owns: the answer to "may the calling thread make the system calls it
 * could make when tessera started?" (os.h: tsri_os_restricted).  A
 * program that sandboxes itself after start installs a seccomp filter
 * that names the calls it still needs and kills the process at any other:
 * OpenSSH's privilege-separated child allows memory calls, futex, reads
 * and writes, and kills at clone.  glibc's malloc makes no call outside
 * such a list; tessera's reclaimer thread (clone), meshing's file calls
 * (memfd_create, pwrite, fallocate), its SIGSEGV handler (rt_sigaction)
 * and the stack walk's reading of unwind tables (pread64: unwind_eh.c)
 * are outside it.  Each asks first.
 *
 * A filter installed through the C library's prctl or syscall is seen as
 * it goes by (posix_seccomp.c, in libtessera.so): restricted at once.
 * Otherwise tessera compares the calling thread's seccomp state with the
 * one at start (filters stack: a filter added since raises their count),
 * read with openat, read and close alone, which most such filters refuse
 * with an error (OpenSSH: EACCES) rather than kill, since the C library
 * opens files for its own ends; where it changed or the open is refused,
 * restricted.  A filter in place before tessera started (a container's,
 * systemd's SystemCallFilter=) is the baseline: tessera takes it that it
 * allows what the process was started to do, threads included, and they
 * start as usual (one that kills at clone kills the process at the
 * reclaimer's start: docs/options.md).
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__linux__)

typedef struct os_seccomp_s {
  long mode;      /* 0 none, 1 strict, 2 filters; -1 not read */
  long filters;   /* filters stacked (Linux 5.9 and later); -1 not shown */
} os_seccomp_t;

static os_seccomp_t seccomp_start = { -1, -1 };
static _Atomic bool restricted;

static long field_value(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (*s - '0');
  return v;
}

static void status_line(const char *line, os_seccomp_t *st) {
  static const char mode[] = "Seccomp:", filters[] = "Seccomp_filters:";
  if (strncmp(line, mode, sizeof mode - 1) == 0) st->mode = field_value(line + sizeof mode - 1);
  else if (strncmp(line, filters, sizeof filters - 1) == 0) st->filters = field_value(line + sizeof filters - 1);
}

enum { READ_OK, READ_REFUSED, READ_FOR_NOW, READ_NO_PROC };

/* The calling thread's seccomp state: READ_OK; READ_REFUSED where opening
 * the file is refused (a filter's errno, a Landlock ruleset);
 * READ_FOR_NOW where it cannot be opened for want of a descriptor or of
 * memory, and READ_NO_PROC where /proc is not there (a chroot, as named
 * and unbound make), which say nothing of the process's filters. */
static int seccomp_read(os_seccomp_t *st) {
  int saved = errno, rc = READ_OK;
  *st = (os_seccomp_t){ -1, -1 };
  /* system calls, not the C library's open and close: those are
   * cancellation points, which malloc must not be, and a program may
   * define its own */
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[512], line[40];   /* the lines wanted are short; longer ones are cut */
    size_t len = 0;
    for (;;) {
      intptr_t n = tsri_os_read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (intptr_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
          if (len < sizeof line - 1) line[len++] = buf[i];
          continue;
        }
        line[len] = 0;
        status_line(line, st);
        len = 0;
      }
    }
    syscall(SYS_close, fd);
  } else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == EINTR || errno == EAGAIN) {
    rc = READ_FOR_NOW;
  } else if (errno == ENOENT || errno == ENOTDIR) {
    rc = READ_NO_PROC;
  }
  errno = saved;
  return rc != READ_OK ? rc : st->mode >= 0 ? READ_OK : READ_REFUSED;
}

void tsri_os_restriction_note(void) { seccomp_read(&seccomp_start); }

/* A server out of descriptors for a moment (EMFILE) is answered yes, not
 * for good: the call waits for a later check.  A chroot without /proc is
 * answered no: a filter installed through the C library was seen as it
 * went by (posix_seccomp.c), and a chrooted daemon keeps its threads. */
bool tsri_os_restricted(void) {
  if (atomic_load_explicit(&restricted, memory_order_relaxed)) return true;
  if (seccomp_start.mode < 0) return false;
  os_seccomp_t now;
  int rc = seccomp_read(&now);
  if (rc == READ_FOR_NOW) return true;
  if (rc == READ_NO_PROC) return false;
  if (rc == READ_OK && now.mode == seccomp_start.mode && now.filters == seccomp_start.filters) return false;
  atomic_store_explicit(&restricted, true, memory_order_relaxed);
  return true;
}

bool tsri_os_restricted_known(void) { return atomic_load_explicit(&restricted, memory_order_relaxed); }

void tsri_os_restriction_seen(void) { atomic_store_explicit(&restricted, true, memory_order_relaxed); }

#else

void tsri_os_restriction_note(void) {}
bool tsri_os_restricted(void) { return false; }
bool tsri_os_restricted_known(void) { return false; }
void tsri_os_restriction_seen(void) {}

#endif
