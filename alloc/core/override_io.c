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
 * count, recvmsg's sender address, an accepted connection), and so lose
 * it.  So libtessera.so
 * defines these calls, each forwarding to the C library's own definition
 * (the next one, dlsym RTLD_NEXT, looked up when the library loads):
 *
 *  - Where the kernel would write outside memory meshing may fence (not
 *    a span in use of tessera's arenas, or meshing off: one load and a
 *    lookup), the call goes through as it is.
 *  - Into such memory, up to IO_BOUNCE bytes go through a buffer on the
 *    stack: the kernel writes there, and tessera copies the result to the
 *    caller's memory, where a write to a fenced page waits as any write
 *    does.  Nothing can fail or be lost for meshing then.  recvfrom's,
 *    recvmsg's and accept's peer address, recvmsg's header and control
 *    data, poll's and select's sets take the same way.  Not a read in whole 512-byte
 *    sectors, which O_DIRECT may need aligned as they are.
 *  - Larger reads into such memory go straight in; when one fails with
 *    EFAULT while a fence moved, it is made again if the descriptor keeps
 *    what a failed read did not copy (a file, a pipe, a stream socket:
 *    tsri_os_fd_kind), and returned as it failed otherwise; a file's read
 *    cut short at a fenced page past its first goes on from there.
 *    epoll_wait is made again whatever the size: the kernel puts back the
 *    events it could not copy.
 *  - recvmmsg with anything it writes in such memory takes its messages
 *    one at a time through recvmsg; preadv2, pselect and epoll_pwait2 go
 *    the ways of readv, select and epoll_wait.
 *  - The stack buffers are in functions of their own (noinline), so that
 *    a call into other memory takes no more stack than it used to.
 *
 * An EFAULT of the program's own (a bad pointer) comes back with no fence
 * in between and is returned.  With meshing on, the caller's argument
 * structures (a msghdr, an iovec array, fd_sets, an address's length
 * beside an address that is ours) are read in user space: a bad one
 * faults here, where the kernel would have returned EFAULT.  What stays
 * exposed is named in docs/options.md (TESSERA_MESH).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* recvmmsg, preadv2, epoll_pwait2 */
#endif
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
#include <time.h>
#include <unistd.h>

#define TSRI_EXPORT __attribute__((visibility("default")))
#define IO_BOUNCE 4096                 /* bytes read through the stack, at most */
#define IO_BOUNCE_POLL 256             /* pollfds */
#define IO_BOUNCE_CONTROL 2048         /* bytes of recvmsg's control data: 253 descriptors' (SCM_MAX_FD) and more */
#define IO_IOV_MAX 1024                /* the kernel's UIO_MAXIOV: beyond, EINVAL */

/* The C library's definitions. */
enum {
  IO_READ, IO_PREAD, IO_PREAD64, IO_READV, IO_PREADV64, IO_RECVFROM, IO_RECVMSG, IO_POLL,
  IO_PPOLL, IO_SELECT, IO_EPOLL_WAIT, IO_EPOLL_PWAIT, IO_READ_CHK, IO_PREAD_CHK, IO_PREAD64_CHK, IO_RECV_CHK,
  IO_RECVFROM_CHK, IO_POLL_CHK, IO_PPOLL_CHK, IO_ACCEPT, IO_ACCEPT4, IO_PREADV64V2, IO_RECVMMSG, IO_PSELECT,
  IO_EPOLL_PWAIT2, IO_COUNT
};
static const char *const io_names[IO_COUNT] = {
  "read", "pread", "pread64", "readv", "preadv64", "recvfrom", "recvmsg", "poll",
  "ppoll", "select", "epoll_wait", "epoll_pwait", "__read_chk", "__pread_chk", "__pread64_chk", "__recv_chk",
  "__recvfrom_chk", "__poll_chk", "__ppoll_chk", "accept", "accept4", "preadv64v2", "recvmmsg", "pselect",
  "epoll_pwait2",
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
#define OURS(p, n) (tsri_mesh_is_armed() && tsri_mesh_fenceable((uintptr_t)(p), (n)))

/* A buffer and length a read with O_DIRECT may have been given (512-byte
 * aligned, whole 512-byte sectors): it goes to the kernel as it is, since
 * a buffer on the stack would not be aligned and the read would fail. */
static inline bool sector_aligned(const void *p, size_t n) { return ((uintptr_t)p | n) % 512 == 0; }

/* After a direct call into memory of ours that returned r, of n bytes
 * asked (seen: the fence count before it): make it again?  Only for an
 * EFAULT while a fence moved, on a descriptor that keeps what was not
 * copied.  *more: a file's read came back short while a fence moved (the
 * kernel stops at a fenced page it meets past the first): the rest is to
 * be read, from where it stopped. */
static bool again(ssize_t r, size_t n, int fd, uint64_t seen, bool *more) {
  *more = false;
  if (r == -1 && errno == EFAULT) return tsri_os_fd_kind(fd) != TSRI_FD_OTHER && tsri_mesh_fenced_since(seen);
  /* a socket's or a pipe's short read is theirs: a look at the fences
   * first, without waiting, then at the descriptor */
  *more = r > 0 && (size_t)r < n && tsri_mesh_fence_moved(seen) && tsri_os_fd_kind(fd) == TSRI_FD_FILE &&
          tsri_mesh_fenced_since(seen);
  return false;
}

static void copy_out(void *to, const void *from, ssize_t r, size_t cap) {
  if (r > 0) memcpy(to, from, (size_t)r < cap ? (size_t)r : cap);   /* recv with MSG_TRUNC may say more */
}

/* ---- read, pread ---------------------------------------------------------- */

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off64_t);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off64_t, int);

/* n bytes into buf at off (-1: the file's position), with preadv2's
 * flags (0: read or pread) */
static ssize_t read_at(int fd, void *buf, size_t n, off64_t off, int flags) {
  if (flags != 0) {
    struct iovec one = { buf, n };
    return IO_FN(IO_PREADV64V2, preadv2_fn)(fd, &one, 1, off, flags);
  }
  return off < 0 ? IO_FN(IO_READ, read_fn)(fd, buf, n) : IO_FN(IO_PREAD64, pread_fn)(fd, buf, n, off);
}

/* n bytes into buf at off (-1: the file's position), straight in, made
 * again or carried on after meshing got in the way (again). */
static ssize_t read_direct(int fd, void *buf, size_t n, off64_t off, int flags) {
  size_t done = 0;
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    ssize_t r = read_at(fd, (unsigned char *)buf + done, n - done, off < 0 ? off : off + (off64_t)done, flags);
    bool more;
    if (again(r, n - done, fd, seen, &more)) continue;
    if (r < 0) return done > 0 ? (ssize_t)done : r;
    done += (size_t)r;
    if (!more) return (ssize_t)done;
  }
}

/* A read into buf, which is ours: through the stack when it fits. */
__attribute__((noinline)) static ssize_t read_ours(int fd, void *buf, size_t n, off64_t off) {
  if (n > IO_BOUNCE || sector_aligned(buf, n)) return read_direct(fd, buf, n, off, 0);
  unsigned char b[IO_BOUNCE];
  ssize_t r = read_at(fd, b, n, off, 0);
  copy_out(buf, b, r, n);
  return r;
}

/* Each entry tests whether meshing is armed before anything else, so
 * that without it the call is a load, a test and a jump to the C
 * library's. */
__attribute__((noinline)) static ssize_t read_armed(int fd, void *buf, size_t n) {
  if (!OURS(buf, n)) return IO_FN(IO_READ, read_fn)(fd, buf, n);
  return read_ours(fd, buf, n, -1);
}

TSRI_EXPORT ssize_t read(int fd, void *buf, size_t n) {
  if (tsr_likely(!tsri_mesh_is_armed())) return IO_FN(IO_READ, read_fn)(fd, buf, n);
  return read_armed(fd, buf, n);
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

/* Whether a buffer of iov is ours; *bounce: the bytes they ask for, when
 * they fit the stack and none may be O_DIRECT's, else 0. */
static bool iov_ours(const struct iovec *iov, int count, size_t *bounce) {
  size_t total = 0;
  bool any = false, sectors = true;
  *bounce = 0;
  if (iov == NULL || count <= 0 || count > IO_IOV_MAX) return false;   /* the kernel's EINVAL, unchanged */
  for (int i = 0; i < count; i++) {
    any |= OURS(iov[i].iov_base, iov[i].iov_len);
    sectors &= sector_aligned(iov[i].iov_base, iov[i].iov_len);
    total += iov[i].iov_len < IO_BOUNCE ? iov[i].iov_len : IO_BOUNCE + 1;
    if (total > IO_BOUNCE) total = IO_BOUNCE + 1;
  }
  if (any && total <= IO_BOUNCE && !sectors) *bounce = total;
  return any;
}

/* Copy r bytes (at most) between a buffer and the buffers of iov. */
static void iov_copy(const struct iovec *iov, int count, unsigned char *flat, ssize_t r, bool scatter) {
  size_t left = r > 0 ? (size_t)r : 0;
  for (int i = 0; i < count && left > 0; i++) {
    size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
    if (scatter) memcpy(iov[i].iov_base, flat, n);
    else memcpy(flat, iov[i].iov_base, n);
    flat += n;
    left -= n;
  }
}

/* readv, preadv64 or (flags) preadv64v2 */
static ssize_t readv_call(int fd, const struct iovec *iov, int count, off64_t off, int flags) {
  if (flags != 0) return IO_FN(IO_PREADV64V2, preadv2_fn)(fd, iov, count, off, flags);
  return off < 0 ? IO_FN(IO_READV, ssize_t (*)(int, const struct iovec *, int))(fd, iov, count)
                 : IO_FN(IO_PREADV64, preadv_fn)(fd, iov, count, off);
}

__attribute__((noinline)) static ssize_t readv_ours(int fd, const struct iovec *iov, int count, off64_t off,
                                                    int flags, size_t bounce) {
  if (bounce > 0) {
    unsigned char b[IO_BOUNCE];
    ssize_t r = read_at(fd, b, bounce, off, flags);
    iov_copy(iov, count, b, r, true);
    return r;
  }
  size_t asked = 0;
  for (int i = 0; i < count; i++) asked += iov[i].iov_len;
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    ssize_t r = readv_call(fd, iov, count, off, flags);
    bool more;
    if (again(r, asked, fd, seen, &more)) continue;
    if (r < 0 || !more) return r;
    /* a file's read stopped short at a fenced page: the rest, buffer by
     * buffer, from where it stopped */
    size_t done = (size_t)r;
    for (int i = 0; i < count; i++) {
      size_t len = iov[i].iov_len, skip = done < len ? done : len;
      done -= skip;
      if (skip == len) continue;
      ssize_t got = read_direct(fd, (unsigned char *)iov[i].iov_base + skip, len - skip,
                                off < 0 ? off : off + r, flags);
      if (got > 0) r += got;
      if (got < 0 || (size_t)got < len - skip) break;
    }
    return r;
  }
}

static ssize_t readv_at(int fd, const struct iovec *iov, int count, off64_t off, int flags) {
  size_t bounce;
  if (!tsri_mesh_is_armed() || !iov_ours(iov, count, &bounce)) return readv_call(fd, iov, count, off, flags);
  return readv_ours(fd, iov, count, off, flags, bounce);
}

TSRI_EXPORT ssize_t readv(int fd, const struct iovec *iov, int count) { return readv_at(fd, iov, count, -1, 0); }
TSRI_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int count, off64_t off) {
  if (off < 0) return IO_FN(IO_PREADV64, preadv_fn)(fd, iov, count, off);
  return readv_at(fd, iov, count, off, 0);
}
TSRI_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int count, off_t off) {
  if (off < 0) return IO_FN(IO_PREADV64, preadv_fn)(fd, iov, count, off);
  return readv_at(fd, iov, count, off, 0);
}

/* preadv2's offset -1 is the file's position, as readv's; its flags
 * (RWF_NOWAIT, RWF_HIPRI, ...) go with every call made for it, a short
 * read carried on included.  Offsets below -1 go to the C library, which
 * turns them away. */
TSRI_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int count, off64_t off, int flags) {
  if (off < -1) return IO_FN(IO_PREADV64V2, preadv2_fn)(fd, iov, count, off, flags);
  return readv_at(fd, iov, count, off, flags);
}
TSRI_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int count, off_t off, int flags) {
  return preadv64v2(fd, iov, count, off, flags);
}

/* ---- recv, recvfrom, recvmsg ------------------------------------------------- */

typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);

/* A peer's address the kernel would write after it took the data or the
 * connection (recvfrom, recvmsg, accept) goes through the stack when it
 * or its length is ours. */
static bool address_ours(const struct sockaddr *addr, const socklen_t *addr_len) {
  return addr != NULL && addr_len != NULL && (OURS(addr_len, sizeof *addr_len) || OURS(addr, 1));
}

/* The room given the kernel for an address the caller gave cap bytes for. */
static socklen_t address_room(socklen_t cap) {
  return cap < sizeof(struct sockaddr_storage) ? cap : (socklen_t)sizeof(struct sockaddr_storage);
}

/* The address of `len` bytes the kernel wrote in a, to the caller's cap
 * bytes at to: what fits, as the kernel would have cut it. */
static void address_back(void *to, socklen_t cap, const struct sockaddr_storage *a, socklen_t len) {
  size_t got = len < cap ? len : cap;
  memcpy(to, a, got < sizeof *a ? got : sizeof *a);
}

/* The sender's address and its length are written after the data is
 * taken: through the stack, when either is ours. */
__attribute__((noinline)) static ssize_t recvfrom_ours(int fd, void *buf, size_t n, int flags,
                                                       struct sockaddr *addr, socklen_t *addr_len, bool data) {
  recvfrom_fn fn = IO_FN(IO_RECVFROM, recvfrom_fn);
  struct sockaddr_storage a;
  bool name = addr_len != NULL && addr != NULL;
  socklen_t cap = name ? *addr_len : 0, a_len = address_room(cap);
  struct sockaddr *to = name ? (struct sockaddr *)&a : addr;
  socklen_t *to_len = name ? &a_len : addr_len;
  ssize_t r;
  if (data && n <= IO_BOUNCE) {
    unsigned char b[IO_BOUNCE];
    /* with MSG_TRUNC a stream socket discards and writes nothing: the
     * caller's bytes go back as they were */
    if (flags & MSG_TRUNC) memcpy(b, buf, n);
    r = fn(fd, b, n, flags, to, to_len);
    copy_out(buf, b, r, n);
  } else {
    for (;;) {
      uint64_t seen = tsri_mesh_fences();
      r = fn(fd, buf, n, flags, to, to_len);
      bool more;
      if (!data || !again(r, n, fd, seen, &more)) break;
    }
  }
  if (name && r >= 0) {
    address_back(addr, cap, &a, a_len);
    *addr_len = a_len;
  }
  return r;
}

TSRI_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *addr_len) {
  if (tsr_likely(!tsri_mesh_is_armed())) return IO_FN(IO_RECVFROM, recvfrom_fn)(fd, buf, n, flags, addr, addr_len);
  bool data = OURS(buf, n);
  if (!data && !address_ours(addr, addr_len)) return IO_FN(IO_RECVFROM, recvfrom_fn)(fd, buf, n, flags, addr, addr_len);
  return recvfrom_ours(fd, buf, n, flags, addr, addr_len, data);
}

/* recv is recvfrom without an address, the C library's recvfrom serving
 * it (as preadv64 serves preadv) */
TSRI_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) { return recvfrom(fd, buf, n, flags, NULL, NULL); }

/* ---- accept, accept4 ----------------------------------------------------------
 * The kernel writes the peer's address after it took the connection off
 * the queue, and when that write fails it closes the connection. */

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

__attribute__((noinline)) static int accept_ours(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags,
                                                 bool four) {
  struct sockaddr_storage a;
  socklen_t cap = *addr_len, a_len = address_room(cap);
  int r = four ? IO_FN(IO_ACCEPT4, accept4_fn)(fd, (struct sockaddr *)&a, &a_len, flags)
               : IO_FN(IO_ACCEPT, int (*)(int, struct sockaddr *, socklen_t *))(fd, (struct sockaddr *)&a, &a_len);
  if (r >= 0) {
    address_back(addr, cap, &a, a_len);
    *addr_len = a_len;
  }
  return r;
}

TSRI_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags);

static bool accept_via_stack(struct sockaddr *addr, socklen_t *addr_len) {
  return tsri_mesh_is_armed() && address_ours(addr, addr_len);
}

TSRI_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *addr_len) {
  if (tsr_likely(!accept_via_stack(addr, addr_len)))
    return IO_FN(IO_ACCEPT, int (*)(int, struct sockaddr *, socklen_t *))(fd, addr, addr_len);
  return accept_ours(fd, addr, addr_len, 0, false);
}

TSRI_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags) {
  if (tsr_likely(!accept_via_stack(addr, addr_len))) return IO_FN(IO_ACCEPT4, accept4_fn)(fd, addr, addr_len, flags);
  return accept_ours(fd, addr, addr_len, flags, true);
}

/* Everything the kernel writes goes through the stack: a copy of the
 * header, and of what of it is ours (data up to IO_BOUNCE, the address,
 * control data up to IO_BOUNCE_CONTROL, room for the most descriptors
 * one message may carry). */
__attribute__((noinline)) static ssize_t recvmsg_ours(int fd, struct msghdr *msg, int flags, size_t bounce, bool any,
                                                      bool name, bool control) {
  recvmsg_fn fn = IO_FN(IO_RECVMSG, recvmsg_fn);
  struct msghdr m = *msg;
  struct sockaddr_storage a;
  unsigned char c[IO_BOUNCE_CONTROL], b[IO_BOUNCE];
  struct iovec one = { b, bounce };
  int count = (int)msg->msg_iovlen;
  if (name) {
    m.msg_name = &a;
    m.msg_namelen = address_room(msg->msg_namelen);
  }
  if (control) {
    m.msg_control = c;
    m.msg_controllen = msg->msg_controllen < sizeof c ? msg->msg_controllen : sizeof c;
  }
  if (bounce > 0) {
    if (flags & MSG_TRUNC) iov_copy(msg->msg_iov, count, b, (ssize_t)bounce, false);
    m.msg_iov = &one;
    m.msg_iovlen = 1;
  }
  ssize_t r;
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    r = fn(fd, &m, flags);
    bool more;
    if (bounce > 0 || !any || !again(r, 0, fd, seen, &more)) break;
  }
  if (r < 0) return r;
  if (bounce > 0) iov_copy(msg->msg_iov, count, b, r < (ssize_t)bounce ? r : (ssize_t)bounce, true);
  if (name) address_back(msg->msg_name, msg->msg_namelen, &a, m.msg_namelen);
  if (control) memcpy(msg->msg_control, c, m.msg_controllen);
  msg->msg_namelen = m.msg_namelen;
  msg->msg_controllen = m.msg_controllen;
  msg->msg_flags = m.msg_flags;
  return r;
}

TSRI_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  recvmsg_fn fn = IO_FN(IO_RECVMSG, recvmsg_fn);
  if (msg == NULL || !tsri_mesh_is_armed() || msg->msg_iovlen > IO_IOV_MAX) return fn(fd, msg, flags);
  size_t bounce;
  bool any = iov_ours(msg->msg_iov, (int)msg->msg_iovlen, &bounce);
  bool whole = OURS(msg, sizeof *msg);   /* the kernel writes lengths and flags back into it */
  bool name = msg->msg_name != NULL && OURS(msg->msg_name, msg->msg_namelen);
  bool control = msg->msg_control != NULL && OURS(msg->msg_control, msg->msg_controllen);
  if (!any && !whole && !name && !control) return fn(fd, msg, flags);
  return recvmsg_ours(fd, msg, flags, bounce, any, name, control);
}

/* ---- recvmmsg ------------------------------------------------------------------
 * The kernel writes each message's length into the vector, and its
 * header, address and control data, after it took the message.  When any
 * of it is ours, the messages are taken one at a time by recvmsg above,
 * as the kernel would take them: the first waiting as the socket and
 * flags say, the others at once with MSG_WAITFORONE, or waiting until the
 * timeout ran out (checked after each message, as the kernel does; the
 * time left is written back).  An error after the first message ends the
 * call with the messages taken, as the kernel's does. */

typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);

static bool mmsg_ours(const struct mmsghdr *vec, unsigned int count, const struct timespec *timeout) {
  if (OURS(vec, count * sizeof *vec) || (timeout != NULL && OURS(timeout, sizeof *timeout))) return true;
  for (unsigned int i = 0; i < count; i++) {
    const struct msghdr *m = &vec[i].msg_hdr;
    size_t bounce;
    if ((m->msg_iovlen <= IO_IOV_MAX && iov_ours(m->msg_iov, (int)m->msg_iovlen, &bounce)) ||
        (m->msg_name != NULL && OURS(m->msg_name, m->msg_namelen)) ||
        (m->msg_control != NULL && OURS(m->msg_control, m->msg_controllen)))
      return true;
  }
  return false;
}

__attribute__((noinline)) static int recvmmsg_ours(int fd, struct mmsghdr *vec, unsigned int count, int flags,
                                                   struct timespec *timeout) {
  uint64_t end = 0;
  if (timeout != NULL) {
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000) {
      errno = EINVAL;
      return -1;
    }
    end = tsri_os_clock_ns() + (uint64_t)timeout->tv_sec * 1000000000u + (uint64_t)timeout->tv_nsec;
  }
  unsigned int got = 0;
  while (got < count) {
    int f = flags & ~MSG_WAITFORONE;
    if (got > 0 && (flags & MSG_WAITFORONE)) f |= MSG_DONTWAIT;
    ssize_t r = recvmsg(fd, &vec[got].msg_hdr, f);
    if (r < 0) {
      if (got == 0) return -1;
      break;
    }
    vec[got++].msg_len = (unsigned int)r;
    if (timeout != NULL && tsri_os_clock_ns() >= end) break;
  }
  if (timeout != NULL) {
    uint64_t now = tsri_os_clock_ns(), left = now < end ? end - now : 0;
    timeout->tv_sec = (time_t)(left / 1000000000u);
    timeout->tv_nsec = (long)(left % 1000000000u);
  }
  return (int)got;
}

TSRI_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int count, int flags, struct timespec *timeout) {
  recvmmsg_fn fn = IO_FN(IO_RECVMMSG, recvmmsg_fn);
  if (!tsri_mesh_is_armed() || vec == NULL || count == 0) return fn(fd, vec, count, flags, timeout);
  if (count > IO_IOV_MAX) count = IO_IOV_MAX;   /* the kernel's cap */
  if (!mmsg_ours(vec, count, timeout)) return fn(fd, vec, count, flags, timeout);
  return recvmmsg_ours(fd, vec, count, flags, timeout);
}

/* ---- poll, ppoll, select, pselect, epoll ----------------------------------- */

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);
typedef int (*ppoll_fn)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);

static int poll_call(struct pollfd *fds, nfds_t count, int timeout, const struct timespec *ts, const sigset_t *mask,
                     bool p) {
  return p ? IO_FN(IO_PPOLL, ppoll_fn)(fds, count, ts, mask) : IO_FN(IO_POLL, poll_fn)(fds, count, timeout);
}

/* A set that is ours: through the stack when small; a larger one is
 * polled again after an EFAULT of meshing's (the kernel writes revents
 * after the wait, so that one may wait its timeout again). */
__attribute__((noinline)) static int poll_ours(struct pollfd *fds, nfds_t count, int timeout,
                                               const struct timespec *ts, const sigset_t *mask, bool p) {
  if (count <= IO_BOUNCE_POLL) {
    struct pollfd f[IO_BOUNCE_POLL];
    memcpy(f, fds, count * sizeof *fds);
    int r = poll_call(f, count, timeout, ts, mask, p);
    /* the kernel writes revents back after the wait, interrupted or not;
     * not when it turned the call away */
    if (r >= 0 || (errno != EINVAL && errno != EFAULT && errno != ENOMEM))
      for (nfds_t i = 0; i < count; i++) fds[i].revents = f[i].revents;
    return r;
  }
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = poll_call(fds, count, timeout, ts, mask, p);
    if (r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int poll(struct pollfd *fds, nfds_t count, int timeout) {
  if (tsr_likely(!tsri_mesh_is_armed()) || count == 0 || !OURS(fds, count * sizeof *fds)) return IO_FN(IO_POLL, poll_fn)(fds, count, timeout);
  return poll_ours(fds, count, timeout, NULL, NULL, false);
}
TSRI_EXPORT int ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask) {
  if (tsr_likely(!tsri_mesh_is_armed()) || count == 0 || !OURS(fds, count * sizeof *fds))
    return IO_FN(IO_PPOLL, ppoll_fn)(fds, count, timeout, mask);
  return poll_ours(fds, count, 0, timeout, mask, true);
}

typedef int (*select_fn)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
typedef int (*pselect_fn)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);

/* select's or (p) pselect's time and mask */
typedef struct select_wait_s {
  struct timeval *timeout;
  const struct timespec *ts;
  const sigset_t *mask;
  bool p;
} select_wait_t;

static int select_call(int count, fd_set **sets, const select_wait_t *w) {
  if (w->p) return IO_FN(IO_PSELECT, pselect_fn)(count, sets[0], sets[1], sets[2], w->ts, w->mask);
  return IO_FN(IO_SELECT, select_fn)(count, sets[0], sets[1], sets[2], w->timeout);
}

/* Through the stack, all of them: the kernel writes each set back in
 * turn, and one failing would leave the others changed.  bytes: what the
 * kernel reads and writes of each, whole longs. */
__attribute__((noinline)) static int select_ours(int count, fd_set **sets, const select_wait_t *w, size_t bytes) {
  fd_set s[3];
  fd_set *on_stack[3];
  struct timeval t;
  for (int i = 0; i < 3; i++) {
    on_stack[i] = sets[i] != NULL ? &s[i] : NULL;
    if (sets[i] != NULL) memcpy(&s[i], sets[i], bytes);
  }
  select_wait_t mine = *w;
  if (w->timeout != NULL) {
    t = *w->timeout;
    mine.timeout = &t;
  }
  int r = select_call(count, on_stack, &mine);
  if (r >= 0)
    for (int i = 0; i < 3; i++)
      if (sets[i] != NULL) memcpy(sets[i], &s[i], bytes);
  if (w->timeout != NULL) *w->timeout = t;   /* Linux writes the time left, whatever the result */
  return r;
}

static int select_any(int count, fd_set **sets, const select_wait_t *w) {
  size_t bytes = count > 0 ? ((size_t)count + 8 * sizeof(long) - 1) / (8 * sizeof(long)) * sizeof(long) : 0;
  bool mine = w->timeout != NULL && OURS(w->timeout, sizeof *w->timeout);
  for (int i = 0; i < 3; i++) mine |= sets[i] != NULL && bytes > 0 && OURS(sets[i], bytes);
  if (!mine || bytes > sizeof(fd_set)) return select_call(count, sets, w);
  return select_ours(count, sets, w, bytes);
}

TSRI_EXPORT int select(int count, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout) {
  fd_set *sets[3] = { rd, wr, ex };
  select_wait_t w = { .timeout = timeout };
  return select_any(count, sets, &w);
}

/* pselect leaves its timeout as it was (the C library hands the kernel a
 * copy) */
TSRI_EXPORT int pselect(int count, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
                        const sigset_t *mask) {
  fd_set *sets[3] = { rd, wr, ex };
  select_wait_t w = { .ts = timeout, .mask = mask, .p = true };
  return select_any(count, sets, &w);
}

typedef int (*epoll_pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);
typedef int (*epoll_pwait2_fn)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);

enum { EPOLL_WAIT, EPOLL_PWAIT, EPOLL_PWAIT2 };

/* The kernel puts back the events it could not copy: wait again. */
static int epoll_any(int fd, struct epoll_event *events, int count, int timeout, const struct timespec *ts,
                     const sigset_t *mask, int kind) {
  bool mine = tsri_mesh_is_armed() && count > 0 && OURS(events, (size_t)count * sizeof *events);
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = kind == EPOLL_PWAIT2 ? IO_FN(IO_EPOLL_PWAIT2, epoll_pwait2_fn)(fd, events, count, ts, mask)
            : kind == EPOLL_PWAIT
                ? IO_FN(IO_EPOLL_PWAIT, epoll_pwait_fn)(fd, events, count, timeout, mask)
                : IO_FN(IO_EPOLL_WAIT, int (*)(int, struct epoll_event *, int, int))(fd, events, count, timeout);
    if (!mine || r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int epoll_wait(int fd, struct epoll_event *events, int count, int timeout) {
  return epoll_any(fd, events, count, timeout, NULL, NULL, EPOLL_WAIT);
}
TSRI_EXPORT int epoll_pwait(int fd, struct epoll_event *events, int count, int timeout, const sigset_t *mask) {
  return epoll_any(fd, events, count, timeout, NULL, mask, EPOLL_PWAIT);
}
/* declared here too: C libraries before glibc 2.35 lack it */
TSRI_EXPORT int epoll_pwait2(int fd, struct epoll_event *events, int count, const struct timespec *timeout,
                             const sigset_t *mask);
TSRI_EXPORT int epoll_pwait2(int fd, struct epoll_event *events, int count, const struct timespec *timeout,
                             const sigset_t *mask) {
  return epoll_any(fd, events, count, 0, timeout, mask, EPOLL_PWAIT2);
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
