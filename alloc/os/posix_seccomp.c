/* posix_seccomp.c: the C library's two ways into seccomp, prctl and
 * syscall, seen on their way through (Linux; libtessera.so alone, with
 * the standard names).
 *
 * A program that installs a seccomp filter after it started may be killed
 * by the system calls tessera makes that its filter does not name (a
 * thread, a handler, meshing's file: posix_restrict.c).  tessera finds
 * out by reading the calling thread's seccomp state in /proc, an openat
 * that most such filters refuse with an error; a few kill the process at
 * it or raise SIGSYS there (kcgi's workers, Tor's sandbox).  A filter
 * installed through the C library passes through here first: prctl
 * (PR_SET_SECCOMP: OpenSSH, kcgi) or syscall(SYS_seccomp) (libseccomp:
 * Tor, qemu), and once one succeeds, tessera takes the process as
 * restricted at once (tsri_os_restriction_seen) and never reads /proc for
 * it.  Filters installed with a system call instruction of the program's
 * own still get the /proc check.
 *
 * prctl forwards to the C library's definition (dlsym RTLD_NEXT, looked
 * up when the library loads) with the 4 arguments the kernel takes after
 * the option.  syscall is made here (x86-64), as the C library makes it:
 * the 6 arguments in registers, -1 and errno for an error; the C
 * library's cannot be looked up from inside tessera's start-up, whose
 * own system calls (posix_restrict.c reads /proc with syscall, to stay
 * clear of open's cancellation point) come here too.  Unnamed arguments
 * read as whatever the caller left in their registers, as the C
 * library's definitions read them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "os.h"

#include <stdatomic.h>

#include <errno.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define TSRI_EXPORT __attribute__((visibility("default")))

typedef int (*prctl_fn)(int, unsigned long, unsigned long, unsigned long, unsigned long);

static _Atomic(prctl_fn) next_prctl;

__attribute__((constructor)) static void sandbox_resolve(void) {
  atomic_store_explicit(&next_prctl, (prctl_fn)tsri_os_next_symbol("prctl"), memory_order_release);
}

TSRI_EXPORT int prctl(int option, ...) {
  va_list ap;
  va_start(ap, option);
  unsigned long a = va_arg(ap, unsigned long), b = va_arg(ap, unsigned long);
  unsigned long c = va_arg(ap, unsigned long), d = va_arg(ap, unsigned long);
  va_end(ap);
  prctl_fn fn = atomic_load_explicit(&next_prctl, memory_order_acquire);
  if (__builtin_expect(fn == NULL, 0)) {
    sandbox_resolve();
    fn = atomic_load_explicit(&next_prctl, memory_order_acquire);
    if (fn == NULL) {
      static const char msg[] = "tessera: prctl: the C library has no definition after tessera's; stopping\n";
      tsri_os_write_stderr(msg, sizeof msg - 1);
      tsri_os_abort();
    }
  }
  int r = fn(option, a, b, c, d);
  if (r == 0 && option == PR_SET_SECCOMP) tsri_os_restriction_seen();
  return r;
}

#if defined(__x86_64__)
TSRI_EXPORT long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
  long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
  va_end(ap);
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  if (r < 0 && r > -4096) {
    errno = (int)-r;
    return -1;
  }
  if (number == SYS_seccomp && (a == SECCOMP_SET_MODE_STRICT || a == SECCOMP_SET_MODE_FILTER))
    tsri_os_restriction_seen();
  return r;
}
#endif
