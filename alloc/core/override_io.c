/* override_io.c: the C library's calls that have the kernel write into
 * the caller's memory, made so that meshing never fails them.
 *
 * Compiled only into the override library on Linux, next to override.c.
 * While meshing copies a page into its shared file the page is read-only
 * (core/mesh_fence.c): a thread writing to it waits in tessera's fault
 * handler, but the kernel cannot wait, and a read(2) into a buffer on that
 * page fails with EFAULT for the microseconds of the copy.  A server would
 * take that for a broken connection; worse, many calls take what they
 * read out of the kernel before they copy it (a datagram, an eventfd's
 * count, recvmsg's sender address), and so lose it.  So libtessera.so
 * defines these calls, each forwarding to the C library's own definition
 * (the next one, dlsym RTLD_NEXT, looked up when the library loads):
 *
 *  - Where the kernel would write outside memory meshing may fence (not
 *    a span in use of tessera's arenas, or meshing off: one load and a
 *    lookup), the call goes through as it is.
 *  - Into such memory, up to IO_BOUNCE bytes go through a buffer on the
 *    stack: the kernel writes there, and tessera copies the result to the
 *    caller's memory, where a write to a fenced page waits as any write
 *    does.  Nothing can fail or be lost for meshing then.  recvfrom's and
 *    recvmsg's sender address, recvmsg's control data and flags, poll's
 *    and select's sets take the same way.
 *  - Larger reads into such memory go straight in; when one fails with
 *    EFAULT while a fence moved, it is made again if the descriptor keeps
 *    what a failed read did not copy (a file, a pipe, a stream socket:
 *    tsri_os_fd_keeps_unread), and returned as it failed otherwise.
 *    epoll_wait is made again whatever the size: the kernel puts back the
 *    events it could not copy.
 *
 * An EFAULT of the program's own (a bad pointer) comes back with no fence
 * in between and is returned.  With meshing on, the caller's argument
 * structures (a msghdr, an iovec array, fd_sets that are ours) are read
 * in user space: a bad one faults here, where the kernel would have
 * returned EFAULT.  What stays
 * exposed is named in docs/options.md (TESSERA_MESH).
 */
#define _LARGEFILE64_SOURCE 1
#undef _FILE_OFFSET_BITS
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TSRI_EXPORT __attribute__((visibility("default")))
#define IO_BOUNCE 4096                 /* bytes read through the stack, at most */
#define IO_BOUNCE_POLL 256             /* pollfds */
#define IO_BOUNCE_CONTROL 1024         /* bytes of recvmsg's control data */
#define IO_IOV_MAX 1024                /* the kernel's UIO_MAXIOV: beyond, EINVAL */

/* The C library's definitions. */
enum {
  IO_READ, IO_PREAD, IO_PREAD64, IO_READV, IO_PREADV, IO_PREADV64, IO_RECV, IO_RECVFROM, IO_RECVMSG, IO_POLL,
  IO_PPOLL, IO_SELECT, IO_EPOLL_WAIT, IO_EPOLL_PWAIT, IO_READ_CHK, IO_PREAD_CHK, IO_PREAD64_CHK, IO_RECV_CHK,
  IO_RECVFROM_CHK, IO_POLL_CHK, IO_PPOLL_CHK, IO_COUNT
};
static const char *const io_names[IO_COUNT] = {
  "read", "pread", "pread64", "readv", "preadv", "preadv64", "recv", "recvfrom", "recvmsg", "poll",
  "ppoll", "select", "epoll_wait", "epoll_pwait", "__read_chk", "__pread_chk", "__pread64_chk", "__recv_chk",
  "__recvfrom_chk", "__poll_chk", "__ppoll_chk",
};
static _Atomic(void *) io_fns[IO_COUNT];

static void *io_next(int which) {
  void *fn = atomic_load_explicit(&io_fns[which], memory_order_acquire);
  if (tsr_unlikely(fn == NULL)) {
    fn = tsri_os_next_symbol(io_names[which]);
    if (fn == NULL) {
      tsri_warning("%s: the C library has no definition after tessera's; stopping", io_names[which]);
      tsri_os_abort();
    }
    atomic_store_explicit(&io_fns[which], fn, memory_order_release);
  }
  return fn;
}

/* Looked up when the library loads: a first call from a signal handler
 * must not run dlsym (it takes the loader's lock).  A symbol the C library
 * lacks (musl has no _chk forms) is looked up again, and reported, only
 * if something calls it. */
__attribute__((constructor)) static void io_resolve(void) {
  for (int i = 0; i < IO_COUNT; i++) {
    void *fn = tsri_os_next_symbol(io_names[i]);
    if (fn != NULL) atomic_store_explicit(&io_fns[i], fn, memory_order_release);
  }
}

#define IO_FN(which, type) ((type)io_next(which))

/* Memory meshing may fence.  (An address, not a pointer: the C library's
 * headers mark read's buffer write-only, and the compiler would take
 * passing it on for reading it.) */
#define OURS(p, n) tsri_mesh_fenceable((uintptr_t)(p), (n))

/* After a direct call that returned r (seen: the fence count before it):
 * make it again?  Only for an EFAULT while a fence moved, on a descriptor
 * that keeps what was not copied. */
static bool again(ssize_t r, int fd, uint64_t seen) {
  return r == -1 && errno == EFAULT && tsri_os_fd_keeps_unread(fd) && tsri_mesh_fenced_since(seen);
}

static void copy_out(void *to, const void *from, ssize_t r, size_t cap) {
  if (r > 0) memcpy(to, from, (size_t)r < cap ? (size_t)r : cap);   /* recv with MSG_TRUNC may say more */
}

/* ---- read, pread ---------------------------------------------------------- */

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off64_t);

/* A read of n bytes into buf (which is ours) at off (-1: the file's
 * position; pread64 otherwise).  */
static ssize_t read_ours(int fd, void *buf, size_t n, off64_t off) {
  if (n <= IO_BOUNCE) {
    unsigned char b[IO_BOUNCE];
    ssize_t r = off < 0 ? IO_FN(IO_READ, read_fn)(fd, b, n) : IO_FN(IO_PREAD64, pread_fn)(fd, b, n, off);
    copy_out(buf, b, r, n);
    return r;
  }
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    ssize_t r = off < 0 ? IO_FN(IO_READ, read_fn)(fd, buf, n) : IO_FN(IO_PREAD64, pread_fn)(fd, buf, n, off);
    if (!again(r, fd, seen)) return r;
  }
}

TSRI_EXPORT ssize_t read(int fd, void *buf, size_t n) {
  if (!OURS(buf, n)) return IO_FN(IO_READ, read_fn)(fd, buf, n);
  return read_ours(fd, buf, n, -1);
}

TSRI_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t off) {
  if (!OURS(buf, n) || off < 0) return IO_FN(IO_PREAD64, pread_fn)(fd, buf, n, off);
  return read_ours(fd, buf, n, off);
}

TSRI_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off) {
  if (!OURS(buf, n) || off < 0) return IO_FN(IO_PREAD, ssize_t (*)(int, void *, size_t, off_t))(fd, buf, n, off);
  return read_ours(fd, buf, n, off);
}

/* ---- readv, preadv ---------------------------------------------------------- */

typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off64_t);

/* Bytes iov asks for when some buffer of it is ours and they fit a
 * bounce; 0 when none is ours or they do not (then the call goes
 * through as it is, and again after an EFAULT of meshing's). */
static size_t iov_bounce(const struct iovec *iov, int count, bool *any_ours) {
  size_t total = 0;
  *any_ours = false;
  if (iov == NULL || count <= 0 || count > IO_IOV_MAX) return 0;   /* the kernel's EINVAL, unchanged */
  for (int i = 0; i < count; i++) {
    if (OURS(iov[i].iov_base, iov[i].iov_len)) *any_ours = true;
    total += iov[i].iov_len < IO_BOUNCE ? iov[i].iov_len : IO_BOUNCE + 1;
    if (total > IO_BOUNCE) total = IO_BOUNCE + 1;
  }
  return *any_ours && total <= IO_BOUNCE ? total : 0;
}

static void iov_scatter(const struct iovec *iov, int count, const unsigned char *from, ssize_t r) {
  size_t left = r > 0 ? (size_t)r : 0;
  for (int i = 0; i < count && left > 0; i++) {
    size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
    memcpy(iov[i].iov_base, from, n);
    from += n;
    left -= n;
  }
}

static ssize_t readv_at(int fd, const struct iovec *iov, int count, off64_t off, bool positioned) {
  bool any = false;
  size_t total = tsri_option(TSRI_OPT_MESH) != 0 ? iov_bounce(iov, count, &any) : 0;
  if (total > 0) {
    unsigned char b[IO_BOUNCE];
    ssize_t r = positioned ? IO_FN(IO_PREAD64, pread_fn)(fd, b, total, off) : IO_FN(IO_READ, read_fn)(fd, b, total);
    iov_scatter(iov, count, b, r);
    return r;
  }
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    ssize_t r = positioned ? IO_FN(IO_PREADV64, preadv_fn)(fd, iov, count, off)
                           : IO_FN(IO_READV, ssize_t (*)(int, const struct iovec *, int))(fd, iov, count);
    if (!any || !again(r, fd, seen)) return r;
  }
}

TSRI_EXPORT ssize_t readv(int fd, const struct iovec *iov, int count) { return readv_at(fd, iov, count, 0, false); }
TSRI_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int count, off64_t off) {
  return readv_at(fd, iov, count, off, true);
}
TSRI_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int count, off_t off) {
  return readv_at(fd, iov, count, off, true);
}

/* ---- recv, recvfrom, recvmsg ------------------------------------------------- */

typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);

TSRI_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *addr_len) {
  recvfrom_fn fn = IO_FN(IO_RECVFROM, recvfrom_fn);
  bool data = OURS(buf, n);
  /* the sender's address is written after the data is taken: through the
   * stack, when it is ours (its length is read where it is ours too) */
  bool name = addr != NULL && addr_len != NULL && OURS(addr_len, sizeof *addr_len) &&
              OURS(addr, *addr_len);
  if (!data && !name) return fn(fd, buf, n, flags, addr, addr_len);
  struct sockaddr_storage a;
  socklen_t a_len = name ? (*addr_len < sizeof a ? *addr_len : (socklen_t)sizeof a) : 0;
  struct sockaddr *to = name ? (struct sockaddr *)&a : addr;
  socklen_t *to_len = name ? &a_len : addr_len;
  ssize_t r;
  if (data && n <= IO_BOUNCE) {
    unsigned char b[IO_BOUNCE];
    r = fn(fd, b, n, flags, to, to_len);
    copy_out(buf, b, r, n);
  } else {
    for (;;) {
      uint64_t seen = tsri_mesh_fences();
      r = fn(fd, buf, n, flags, to, to_len);
      if (!data || !again(r, fd, seen)) break;
    }
  }
  if (name && r >= 0) {
    size_t got = a_len < *addr_len ? a_len : *addr_len;
    memcpy(addr, &a, got < sizeof a ? got : sizeof a);
    *addr_len = a_len;
  }
  return r;
}

TSRI_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) { return recvfrom(fd, buf, n, flags, NULL, NULL); }

TSRI_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  recvmsg_fn fn = IO_FN(IO_RECVMSG, recvmsg_fn);
  if (msg == NULL || tsri_option(TSRI_OPT_MESH) == 0) return fn(fd, msg, flags);
  bool any;
  size_t total = iov_bounce(msg->msg_iov, (int)msg->msg_iovlen, &any);
  bool whole = OURS(msg, sizeof *msg);   /* the kernel writes lengths and flags back into it */
  bool name = msg->msg_name != NULL && OURS(msg->msg_name, msg->msg_namelen);
  bool control = msg->msg_control != NULL && msg->msg_controllen <= IO_BOUNCE_CONTROL &&
                 OURS(msg->msg_control, msg->msg_controllen);
  if (!any && !whole && !name && !control) return fn(fd, msg, flags);
  /* everything the kernel writes goes through the stack: a copy of the
   * header, and of what of it is ours */
  struct msghdr m = *msg;
  struct sockaddr_storage a;
  unsigned char c[IO_BOUNCE_CONTROL], b[IO_BOUNCE];
  struct iovec one = { b, total };
  if (name) {
    m.msg_name = &a;
    m.msg_namelen = msg->msg_namelen < sizeof a ? msg->msg_namelen : (socklen_t)sizeof a;
  }
  if (control) m.msg_control = c;
  if (total > 0) {
    m.msg_iov = &one;
    m.msg_iovlen = 1;
  }
  ssize_t r;
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    r = fn(fd, &m, flags);
    if (total > 0 || !any || !again(r, fd, seen)) break;
  }
  if (r < 0) return r;
  if (total > 0) iov_scatter(msg->msg_iov, (int)msg->msg_iovlen, b, r < (ssize_t)total ? r : (ssize_t)total);
  if (name) {
    size_t got = m.msg_namelen < msg->msg_namelen ? m.msg_namelen : msg->msg_namelen;
    memcpy(msg->msg_name, &a, got < sizeof a ? got : sizeof a);
  }
  if (control) memcpy(msg->msg_control, c, m.msg_controllen);
  msg->msg_namelen = m.msg_namelen;
  msg->msg_controllen = m.msg_controllen;
  msg->msg_flags = m.msg_flags;
  return r;
}

/* ---- poll, ppoll, select, epoll -------------------------------------------- */

typedef int (*ppoll_fn)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
TSRI_EXPORT int ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask);

/* poll and ppoll: a set that is ours and small goes through the stack;
 * a larger one is polled again after an EFAULT of meshing's (the kernel
 * writes revents after the wait, so that one may wait its timeout again) */
static int poll_any(struct pollfd *fds, nfds_t count, int timeout, const struct timespec *ts, const sigset_t *mask,
                    bool p) {
  int (*pfn)(struct pollfd *, nfds_t, int) = IO_FN(IO_POLL, int (*)(struct pollfd *, nfds_t, int));
  ppoll_fn ppfn = IO_FN(IO_PPOLL, ppoll_fn);
  bool mine = count > 0 && OURS(fds, count * sizeof *fds);
  if (mine && count <= IO_BOUNCE_POLL) {
    struct pollfd f[IO_BOUNCE_POLL];
    memcpy(f, fds, count * sizeof *fds);
    int r = p ? ppfn(f, count, ts, mask) : pfn(f, count, timeout);
    if (r >= 0)
      for (nfds_t i = 0; i < count; i++) fds[i].revents = f[i].revents;
    return r;
  }
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = p ? ppfn(fds, count, ts, mask) : pfn(fds, count, timeout);
    if (!mine || r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int poll(struct pollfd *fds, nfds_t count, int timeout) {
  return poll_any(fds, count, timeout, NULL, NULL, false);
}
TSRI_EXPORT int ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask) {
  return poll_any(fds, count, 0, timeout, mask, true);
}

TSRI_EXPORT int select(int count, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout) {
  typedef int (*select_fn)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
  select_fn fn = IO_FN(IO_SELECT, select_fn);
  size_t bytes = count > 0 ? ((size_t)count + 7) / 8 : 0;
  fd_set *sets[3] = { rd, wr, ex };
  bool mine = timeout != NULL && OURS(timeout, sizeof *timeout);
  for (int i = 0; i < 3; i++) mine |= sets[i] != NULL && bytes > 0 && OURS(sets[i], bytes);
  if (!mine || bytes > sizeof(fd_set)) return fn(count, rd, wr, ex, timeout);
  /* through the stack, all of them: the kernel writes each set back in
   * turn, and one failing would leave the others changed */
  fd_set s[3];
  struct timeval t;
  for (int i = 0; i < 3; i++)
    if (sets[i] != NULL) memcpy(&s[i], sets[i], bytes);
  if (timeout != NULL) t = *timeout;
  int r = fn(count, rd ? &s[0] : NULL, wr ? &s[1] : NULL, ex ? &s[2] : NULL, timeout ? &t : NULL);
  if (r >= 0)
    for (int i = 0; i < 3; i++)
      if (sets[i] != NULL) memcpy(sets[i], &s[i], bytes);
  if (timeout != NULL) *timeout = t;   /* Linux writes the time left, whatever the result */
  return r;
}

typedef int (*epoll_pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);

/* The kernel puts back the events it could not copy: wait again. */
static int epoll_any(int fd, struct epoll_event *events, int count, int timeout, const sigset_t *mask, bool p) {
  int (*wfn)(int, struct epoll_event *, int, int) = IO_FN(IO_EPOLL_WAIT, int (*)(int, struct epoll_event *, int, int));
  epoll_pwait_fn pfn = IO_FN(IO_EPOLL_PWAIT, epoll_pwait_fn);
  bool mine = count > 0 && OURS(events, (size_t)count * sizeof *events);
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = p ? pfn(fd, events, count, timeout, mask) : wfn(fd, events, count, timeout);
    if (!mine || r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int epoll_wait(int fd, struct epoll_event *events, int count, int timeout) {
  return epoll_any(fd, events, count, timeout, NULL, false);
}
TSRI_EXPORT int epoll_pwait(int fd, struct epoll_event *events, int count, int timeout, const sigset_t *mask) {
  return epoll_any(fd, events, count, timeout, mask, true);
}

/* ---- the _FORTIFY_SOURCE forms ------------------------------------------------
 * Debian builds its packages with _FORTIFY_SOURCE, which turns these calls
 * into checking forms that read through the C library's internal read, out
 * of reach of the definitions above.  Each checks as the C library does
 * (its own form runs when the check fails, and ends the process), then
 * takes the way above. */

TSRI_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buf_len);
TSRI_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buf_len) {
  if (n > buf_len) return IO_FN(IO_READ_CHK, ssize_t (*)(int, void *, size_t, size_t))(fd, buf, n, buf_len);
  return read(fd, buf, n);
}

TSRI_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buf_len);
TSRI_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buf_len) {
  if (n > buf_len)
    return IO_FN(IO_PREAD_CHK, ssize_t (*)(int, void *, size_t, off_t, size_t))(fd, buf, n, off, buf_len);
  return pread(fd, buf, n, off);
}

TSRI_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buf_len);
TSRI_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buf_len) {
  if (n > buf_len)
    return IO_FN(IO_PREAD64_CHK, ssize_t (*)(int, void *, size_t, off64_t, size_t))(fd, buf, n, off, buf_len);
  return pread64(fd, buf, n, off);
}

TSRI_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buf_len, int flags);
TSRI_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buf_len, int flags) {
  if (n > buf_len) return IO_FN(IO_RECV_CHK, ssize_t (*)(int, void *, size_t, size_t, int))(fd, buf, n, buf_len, flags);
  return recv(fd, buf, n, flags);
}

TSRI_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buf_len, int flags, struct sockaddr *addr,
                                   socklen_t *addr_len);
TSRI_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buf_len, int flags, struct sockaddr *addr,
                                   socklen_t *addr_len) {
  if (n > buf_len)
    return IO_FN(IO_RECVFROM_CHK, ssize_t (*)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *))(
        fd, buf, n, buf_len, flags, addr, addr_len);
  return recvfrom(fd, buf, n, flags, addr, addr_len);
}

TSRI_EXPORT int __poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_len);
TSRI_EXPORT int __poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_len) {
  if (fds_len / sizeof *fds < count)
    return IO_FN(IO_POLL_CHK, int (*)(struct pollfd *, nfds_t, int, size_t))(fds, count, timeout, fds_len);
  return poll(fds, count, timeout);
}

TSRI_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask,
                            size_t fds_len);
TSRI_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask,
                            size_t fds_len) {
  if (fds_len / sizeof *fds < count)
    return IO_FN(IO_PPOLL_CHK, int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t))(
        fds, count, timeout, mask, fds_len);
  return ppoll(fds, count, timeout, mask);
}
