/* posix_mesh.c: what meshing needs of the OS on Linux (os.h: memory mapped
 * at two addresses).
 *
 * The file is a memfd: memory with no name in the file system, whose pages
 * exist only where they were written, and which mmap(MAP_SHARED) can map
 * at any number of addresses.  A page mapped at two addresses is one
 * physical page; fallocate(PUNCH_HOLE) gives it back.  The fault handler
 * is the write barrier of core/mesh.c: a thread that writes to a page
 * while it is being copied faults, waits in the handler until the copy is
 * mapped in its place, and runs its write again there.  The same handler
 * serves guarded sampling (track/guarded.c), which registers with it too:
 * one SIGSEGV handler for the process, whoever asked first installs it.
 * A read that bypasses the read family libtessera.so defines (whose EFAULT
 * retry is the barrier's other half: core/override_io.c) and the lookup of
 * the C library's own definitions are here too.  Every function saves and
 * restores errno, but tsri_os_read, whose errno is part of its answer.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "os.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

/* The file's descriptor, and what fstat says it is.  A program may close
 * descriptors it did not open (a daemon's closerange(3, ...) after fork,
 * closefrom) and open a file of its own under the same number: then the
 * file's calls would truncate, write into and map that file (a Python
 * daemon's log grew to 128 MiB of heap pages and zeros).  Each call
 * checks first that the descriptor is still the file (share_ours), and
 * the file moves to a descriptor far above the ones a program's open gets
 * (the lowest free), so that the number is seldom taken again. */
static int share_fd = -1;
static dev_t share_dev;
static ino_t share_ino;
#define SHARE_FD_LOW 512   /* where the file's descriptor goes, or above */

/* Whether share_fd still names the file (the program may have closed it
 * and opened one of its own under the number).  errno is left as it was. */
static bool share_ours(void) {
  if (tsri_os_restricted_known()) return false;   /* fstat, pwrite, fallocate: posix_restrict.c */
  int saved = errno;
  struct stat st;
  bool ours = share_fd >= 0 && fstat(share_fd, &st) == 0 && st.st_dev == share_dev && st.st_ino == share_ino;
  errno = saved;
  return ours;
}

int tsri_os_share_open(void) {
#if defined(__linux__) && defined(MFD_CLOEXEC)
  if (TSRI_OS_FAIL(TSRI_OS_POINT_SHARE_OPEN)) return ENOMEM;
  if (tsri_os_restricted_known()) return EPERM;
  int saved = errno;
  int fd = memfd_create("tessera-mesh", MFD_CLOEXEC);
  int rc = fd >= 0 ? 0 : errno;
  struct stat st;
  if (fd >= 0 && fd < SHARE_FD_LOW) {
    struct rlimit rl;
    int high = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 2 * SHARE_FD_LOW
                   ? fcntl(fd, F_DUPFD_CLOEXEC, SHARE_FD_LOW) : -1;
    if (high >= 0) {
      close(fd);
      fd = high;
    }
  }
  if (fd >= 0 && fstat(fd, &st) != 0) {
    rc = errno;
    close(fd);
    fd = -1;
  }
  if (fd >= 0) {
    share_fd = fd;
    share_dev = st.st_dev;
    share_ino = st.st_ino;
  }
  errno = saved;
  return rc;
#else
  return ENOSYS;
#endif
}

bool tsri_os_share_ok(void) { return share_ours(); }

const char *tsri_os_share_why(void) {
#if defined(__linux__) && defined(MFD_CLOEXEC)
  return NULL;
#else
  return "no memfd_create on this OS";
#endif
}

void tsri_os_share_close(void) {
  int saved = errno;
  if (share_ours()) close(share_fd);
  share_fd = -1;
  errno = saved;
}

int tsri_os_share_size(uint64_t bytes) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_SHARE_SIZE)) return ENOMEM;
  if (!share_ours()) return EBADF;
  int saved = errno;
  int rc = ftruncate(share_fd, (off_t)bytes) == 0 ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_share_write(uint64_t off, const void *src, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_SHARE_WRITE)) return ENOMEM;
  if (!share_ours()) return EBADF;
  int saved = errno, rc = 0;
  const char *from = src;
  while (size > 0) {
    ssize_t n = pwrite(share_fd, from, size, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { rc = n < 0 ? errno : EIO; break; }
    from += n;
    off += (uint64_t)n;
    size -= (size_t)n;
  }
  errno = saved;
  return rc;
}

int tsri_os_share_map(void *addr, size_t size, uint64_t off) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_SHARE_MAP)) return ENOMEM;
  if (!share_ours()) return EBADF;
  int saved = errno;
  void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, share_fd, (off_t)off);
  int rc = p == addr ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_share_punch(uint64_t off, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_SHARE_PUNCH)) return ENOMEM;
  if (!share_ours()) return EBADF;
  int saved = errno;
  int rc = fallocate(share_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)size) == 0
               ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_private_map(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_PRIVATE_MAP)) return ENOMEM;
  int saved = errno;
  /* the flags of the arenas' own mapping (posix.c), so that the kernel
   * can merge the page back into its neighbours */
  void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                 -1, 0);
  int rc = p == addr ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_protect(void *addr, size_t size, bool write) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_PROTECT)) return ENOMEM;
  int saved = errno;
  int rc = mprotect(addr, size, write ? PROT_READ | PROT_WRITE : PROT_READ) == 0 ? 0 : errno;
  errno = saved;
  return rc;
}

int tsri_os_guard(void *addr, size_t size) {
  if (TSRI_OS_FAIL(TSRI_OS_POINT_GUARD)) return ENOMEM;
  int saved = errno;
  /* one call where mprotect and madvise were two: each sends the other
   * CPUs running the process a TLB shootdown, and guarded sampling makes
   * it at every free of a guarded block.  The fresh mapping has the
   * reservation's flags, so the kernel merges it with its neighbours. */
  void *p = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  int rc = p == addr ? 0 : errno;
  errno = saved;
  return rc;
}

size_t tsri_os_map_limit(void) {
  int saved = errno;
  size_t limit = 65530;   /* the kernel's default */
  int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[32];
    intptr_t n = tsri_os_read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      size_t v = 0;
      for (intptr_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (size_t)(buf[i] - '0');
      if (v > 0) limit = v;
    }
  }
  errno = saved;
  return limit;
}

/* ------------------------------------------------------------------------
 * The fault handler: one for the process, shared by whoever registers
 * (core/mesh.c's write barrier, track/guarded.c's guard pages)
 * ---------------------------------------------------------------------- */

static bool (*_Atomic fault_fns[TSRI_OS_FAULT_FNS])(void *addr);
/* Ours has two entry points, installed in turn (fault_install), and each
 * passes what is not meshing's on to the handler it replaced: fault_prev[0]
 * or [1].  A program handler that went in front of one of ours saved that
 * one as its previous action; when it puts it back and raises the signal
 * again, as Python's faulthandler does, that entry passes on to what it
 * replaced, as the kernel would have, and not to the program's handler
 * again (which, done, returns: the fault would come back for ever).
 * fault_prev_at: the entry last seen in front, which a program handler
 * put in front of ours since most likely saved; the next install takes
 * the other, so that the record of the one saved stays, and a fault taken
 * through the one in front never sees its record half written. */
static struct sigaction fault_prev[2];
static _Atomic int fault_prev_at;
static _Atomic int fault_state;       /* 0: not installed, 1: being installed, 2: installed */
/* While this thread's handler runs the program's: its frame and the
 * fault's siginfo.  The same fault reaching ours again deeper on the
 * stack came from the program's own handler (one that passes on to the
 * handler it replaced, which was ours), and gets the default action
 * instead of going round for ever.  A handler that left by longjmp leaves
 * them behind: a later fault has a siginfo of its own, or the same one at
 * the same depth, never the same one deeper. */
static __thread __attribute__((tls_model("initial-exec"))) uintptr_t fault_chain_frame;
static __thread __attribute__((tls_model("initial-exec"))) const siginfo_t *fault_chain_info;

static void fault_default(int sig) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
}

/* Run the program's handler as the kernel would have: with its mask
 * blocked, and its SA_RESETHAND honoured. */
static void fault_pass_on(int sig, siginfo_t *info, void *ctx, int entry) {
  const struct sigaction *prev = &fault_prev[entry];
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  bool handler = (prev->sa_flags & SA_SIGINFO) || (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN);
  bool chained = info == fault_chain_info && here < fault_chain_frame;
  if (!handler || chained) {
    /* with the default action back in place, the access faults again as
     * it would have without tessera; a signal sent (kill, raise: the way
     * crash handlers end the process) runs nothing again, so it is
     * raised again, unless the program had it ignored */
    bool sent = info->si_code <= 0;
    if (sent && !chained && !(prev->sa_flags & SA_SIGINFO) && prev->sa_handler == SIG_IGN) return;
    fault_default(sig);
    if (sent) raise(sig);
    return;
  }
  if (prev->sa_flags & SA_RESETHAND) fault_default(sig);
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &prev->sa_mask, &old);
  uintptr_t outer = fault_chain_frame;
  const siginfo_t *outer_info = fault_chain_info;
  fault_chain_frame = here;
  fault_chain_info = info;
  if (prev->sa_flags & SA_SIGINFO) prev->sa_sigaction(sig, info, ctx);
  else prev->sa_handler(sig);
  fault_chain_frame = outer;
  fault_chain_info = outer_info;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void fault_handle(int sig, siginfo_t *info, void *ctx, int entry) {
  int saved = errno;
  /* the state turns 2 once sigaction has filled fault_prev: a fault in
   * between (not meshing's, which has not begun) waits those instants */
  while (atomic_load_explicit(&fault_state, memory_order_acquire) != 2) {
  }
  /* a signal sent (si_code SI_USER, SI_TKILL, SI_QUEUE...) has no address */
  for (size_t i = 0; i < TSRI_OS_FAULT_FNS && info->si_code > 0; i++) {
    bool (*fn)(void *) = atomic_load_explicit(&fault_fns[i], memory_order_acquire);
    if (fn != NULL && fn(info->si_addr)) {
      errno = saved;
      return;   /* the access runs again */
    }
  }
  errno = saved;
  fault_pass_on(sig, info, ctx, entry);
}

static void fault_handler0(int sig, siginfo_t *info, void *ctx) { fault_handle(sig, info, ctx, 0); }
static void fault_handler1(int sig, siginfo_t *info, void *ctx) { fault_handle(sig, info, ctx, 1); }
static void (*const fault_entry[2])(int, siginfo_t *, void *) = { fault_handler0, fault_handler1 };

/* Put the entry of ours not last seen in front in place, the handler it
 * replaces into its record of fault_prev, and make it the one in use
 * (left as they were when sigaction fails).  The caller holds fault_state
 * at 1.  0 or an errno value. */
static int fault_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  int next = !atomic_load_explicit(&fault_prev_at, memory_order_relaxed);
  sa.sa_sigaction = fault_entry[next];
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER;
  if (sigaction(SIGSEGV, &sa, &fault_prev[next]) != 0) return errno;
  atomic_store_explicit(&fault_prev_at, next, memory_order_release);
  return 0;
}

int tsri_os_fault_catch(bool (*fn)(void *addr)) {
  if (tsri_os_restricted()) return EPERM;   /* rt_sigaction: posix_restrict.c */
  size_t free_at = TSRI_OS_FAULT_FNS;
  for (size_t i = 0; i < TSRI_OS_FAULT_FNS; i++) {
    bool (*had)(void *) = atomic_load_explicit(&fault_fns[i], memory_order_acquire);
    if (had == fn) {
      free_at = i;
      break;
    }
    if (had == NULL && free_at == TSRI_OS_FAULT_FNS) {
      bool (*none)(void *) = NULL;
      if (atomic_compare_exchange_strong_explicit(&fault_fns[i], &none, fn, memory_order_acq_rel,
                                                  memory_order_acquire))
        free_at = i;
    }
  }
  if (free_at == TSRI_OS_FAULT_FNS) return ENOSPC;
  int expected = 0;
  if (!atomic_compare_exchange_strong_explicit(&fault_state, &expected, 1, memory_order_acq_rel,
                                               memory_order_acquire)) {
    /* another thread installs it: a sleep, not a yield, lets it finish
     * when it has a lower priority on this CPU (core/lock.c) */
    while (atomic_load_explicit(&fault_state, memory_order_acquire) == 1) tsri_os_sleep_ms(1);
    return atomic_load_explicit(&fault_state, memory_order_acquire) == 2 ? 0 : EAGAIN;
  }
  int saved = errno;
  int rc = fault_install();
  atomic_store_explicit(&fault_state, rc == 0 ? 2 : 0, memory_order_release);
  errno = saved;
  return rc;
}

bool tsri_os_fault_front(void) {
  if (atomic_load_explicit(&fault_state, memory_order_acquire) != 2 || tsri_os_restricted_known()) return false;
  int saved = errno;
  struct sigaction now;
  /* either entry: one the program put back passes on to what it replaced */
  bool front = false;
  if (sigaction(SIGSEGV, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO)) {
    for (int i = 0; i < 2 && !front; i++) {
      front = now.sa_sigaction == fault_entry[i];
      if (front) atomic_store_explicit(&fault_prev_at, i, memory_order_release);
    }
  }
  int installed = 2;
  /* the program put a handler of its own in ours' place (Redis does, for
   * its crash report): ours goes back in front and passes what is not
   * ours on to it; faults meanwhile wait for fault_prev to name it */
  if (!front && atomic_compare_exchange_strong_explicit(&fault_state, &installed, 1, memory_order_acq_rel,
                                                        memory_order_acquire)) {
    front = fault_install() == 0;
    atomic_store_explicit(&fault_state, 2, memory_order_release);
  }
  errno = saved;
  return front;
}

_Static_assert(sizeof(sigset_t) <= sizeof(tsri_os_sigmask_t), "a signal mask fits tsri_os_sigmask_t");

void tsri_os_signals_hold(tsri_os_sigmask_t *saved) {
  int keep = errno;
  sigset_t all;
  sigfillset(&all);
  static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP };
  for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&all, faults[i]);
  pthread_sigmask(SIG_BLOCK, &all, (sigset_t *)(void *)saved->words);
  errno = keep;
}

void tsri_os_signals_restore(const tsri_os_sigmask_t *saved) {
  int keep = errno;
  pthread_sigmask(SIG_SETMASK, (const sigset_t *)(const void *)saved->words, NULL);
  errno = keep;
}

/* ------------------------------------------------------------------------
 * The fork pipe
 * ---------------------------------------------------------------------- */

int tsri_os_pipe(intptr_t handles[2]) {
  int saved = errno, fds[2];
  int rc = pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
  if (rc == 0) {
    handles[0] = fds[0];
    handles[1] = fds[1];
  }
  errno = saved;
  return rc;
}

intptr_t tsri_os_read(int fd, void *buf, size_t size) {
#if defined(__linux__)
  return (intptr_t)syscall(SYS_read, fd, buf, size);
#else
  return (intptr_t)read(fd, buf, size);
#endif
}

void *tsri_os_next_symbol(const char *name) { return dlsym(RTLD_NEXT, name); }

int tsri_os_fd_kind(int fd) {
  int saved = errno;
  struct stat st;
  int kind = TSRI_FD_OTHER;
  if (fstat(fd, &st) == 0) {
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
      kind = TSRI_FD_FILE;
    } else if (S_ISFIFO(st.st_mode)) {
      kind = TSRI_FD_STREAM;
    } else if (S_ISSOCK(st.st_mode)) {
      int type = 0;
      socklen_t len = sizeof type;
      if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM) kind = TSRI_FD_STREAM;
    }
  }
  errno = saved;
  return kind;
}

void tsri_os_pipe_read_byte(intptr_t handle) {
  int saved = errno;
  char c;
  while (tsri_os_read((int)handle, &c, 1) < 0 && errno == EINTR) {
  }
  errno = saved;
}

uint64_t tsri_os_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
