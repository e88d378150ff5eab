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
 *  - recvmmsg with anything it writes in such memory is made in pieces:
 *    runs of messages with their headers on the stack, a message whose
 *    own memory is ours alone through recvmsg; preadv2, pselect and
 *    epoll_pwait2 go the ways of readv, select and epoll_wait.
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
#include "override_io.h"

static const char *const io_names[IO_COUNT] = {
  "read", "pread", "pread64", "readv", "preadv64", "recvfrom", "recvmsg", "poll",
  "ppoll", "select", "epoll_wait", "epoll_pwait", "__read_chk", "__pread_chk", "__pread64_chk", "__recv_chk",
  "__recvfrom_chk", "__poll_chk", "__ppoll_chk", "accept", "accept4", "preadv64v2", "recvmmsg", "pselect",
  "epoll_pwait2",
};
static _Atomic(void *) io_fns[IO_COUNT];

void *tsri_io_next(int which) {
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
 * The kernel writes each message's length and header fields into the
 * vector after it took the message, the message into its buffers,
 * address and control data, and the time left into the timeout.  When any
 * of that is ours, the call is made in pieces, each as the kernel would
 * go on: a run of messages whose own memory is not ours is one call of
 * the C library's recvmmsg with up to MMSG_BOUNCE headers copied to the
 * stack (the kernel's rules hold within it, and the lengths and header
 * fields are copied back); a message whose memory is ours is taken alone
 * through recvmsg above.  Between pieces: under MSG_WAITFORONE the next
 * is taken only if there at once; the timeout is checked after each
 * message, and its time left written back (saturating, as the kernel
 * adds); a message marked MSG_OOB ends the call; a later message the
 * kernel would wait for is waited for, alone, with poll (which a signal
 * always interrupts, as it ends the kernel's wait, and which stops at the
 * socket's SO_RCVTIMEO); an error after the first message ends the call
 * with the messages taken and errno as it was.  Unlike the kernel, that
 * error is not kept for the next call. */

#define MMSG_BOUNCE 32   /* headers on the stack at a time: 2 KiB */

typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);

/* Whether the kernel would write into memory of ours for message m
 * besides its header: its buffers, address or control data. */
static bool mmsg_data_ours(const struct msghdr *m) {
  size_t bounce;
  return (m->msg_iovlen <= IO_IOV_MAX && iov_ours(m->msg_iov, (int)m->msg_iovlen, &bounce)) ||
         (m->msg_name != NULL && OURS(m->msg_name, m->msg_namelen)) ||
         (m->msg_control != NULL && OURS(m->msg_control, m->msg_controllen));
}

#define TS_SEC_MAX ((time_t)((((uint64_t)1) << (sizeof(time_t) * 8 - 1)) - 1))

/* now + d, saturating as the kernel's end time does */
static struct timespec mmsg_end(struct timespec d) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (d.tv_sec >= TS_SEC_MAX - now.tv_sec) return (struct timespec){ TS_SEC_MAX, 0 };
  struct timespec e = { now.tv_sec + d.tv_sec, now.tv_nsec + d.tv_nsec };
  if (e.tv_nsec >= 1000000000) {
    e.tv_sec++;
    e.tv_nsec -= 1000000000;
  }
  return e;
}

/* The time from now to end in *left, 0 when past: false when none is left. */
static bool mmsg_left(struct timespec end, struct timespec *left) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  *left = (struct timespec){ end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec };
  if (left->tv_nsec < 0) {
    left->tv_sec--;
    left->tv_nsec += 1000000000;
  }
  if (left->tv_sec < 0) *left = (struct timespec){ 0, 0 };
  return left->tv_sec != 0 || left->tv_nsec != 0;
}

/* n messages whose own memory is not ours, with their headers on the stack */
__attribute__((noinline)) static int mmsg_batch(int fd, struct mmsghdr *vec, unsigned int n, int flags,
                                                struct timespec *left) {
  struct mmsghdr v[MMSG_BOUNCE];
  memcpy(v, vec, n * sizeof *v);
  int r = IO_FN(IO_RECVMMSG, recvmmsg_fn)(fd, v, n, flags, left);
  for (int i = 0; i < r; i++) {
    vec[i].msg_len = v[i].msg_len;
    vec[i].msg_hdr.msg_namelen = v[i].msg_hdr.msg_namelen;
    vec[i].msg_hdr.msg_controllen = v[i].msg_hdr.msg_controllen;
    vec[i].msg_hdr.msg_flags = v[i].msg_hdr.msg_flags;
  }
  return r;
}

/* One message through recvmsg; a later one (not the first of the call)
 * as the kernel takes it: at once if there, else waited for unless the
 * call or the socket says not to wait. */
static int mmsg_one(int fd, struct mmsghdr *m, int flags, bool later) {
  for (;;) {
    ssize_t r = recvmsg(fd, &m->msg_hdr, later ? flags | MSG_DONTWAIT : flags);
    if (r >= 0) {
      m->msg_len = (unsigned int)r;
      return 1;
    }
    if (!later || (errno != EAGAIN && errno != EWOULDBLOCK) || (flags & MSG_DONTWAIT) ||
        (fcntl(fd, F_GETFL) & O_NONBLOCK))
      return -1;
    struct timeval t = { 0, 0 };
    socklen_t t_len = sizeof t;
    int wait_ms = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, &t_len) == 0 && (t.tv_sec != 0 || t.tv_usec != 0))
      wait_ms = t.tv_sec >= 2000000 ? 2000000000 : (int)(t.tv_sec * 1000 + t.tv_usec / 1000);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (IO_FN(IO_POLL, int (*)(struct pollfd *, nfds_t, int))(&p, 1, wait_ms) <= 0) return -1;
  }
}

/* Leading messages of vec (count of them, at most MMSG_BOUNCE) whose own
 * memory is not ours */
static unsigned int mmsg_plain(const struct mmsghdr *vec, unsigned int count) {
  unsigned int n = 0;
  while (n < count && n < MMSG_BOUNCE && !mmsg_data_ours(&vec[n].msg_hdr)) n++;
  return n;
}

__attribute__((noinline)) static int recvmmsg_ours(int fd, struct mmsghdr *vec, unsigned int count, int flags,
                                                   struct timespec *timeout) {
  struct timespec end = { 0, 0 }, left = { 0, 0 };
  if (timeout != NULL) {
    left = *timeout;
    if (left.tv_sec < 0 || left.tv_nsec < 0 || left.tv_nsec >= 1000000000) {
      errno = EINVAL;
      return -1;
    }
    end = mmsg_end(left);
  }
  int saved = errno;
  unsigned int got = 0;
  while (got < count) {
    bool later = got > 0;
    int f = later && (flags & MSG_WAITFORONE) ? flags | MSG_DONTWAIT : flags;
    unsigned int n = mmsg_plain(vec + got, count - got);
    int r = n > 0 ? mmsg_batch(fd, vec + got, n, f, timeout != NULL ? &left : NULL)
                  : mmsg_one(fd, &vec[got], f & ~MSG_WAITFORONE, later);
    if (r < 0) {
      if (!later) return -1;
      break;
    }
    got += (unsigned int)r;
    if ((n > 0 && (unsigned int)r < n) || r == 0) break;                 /* the kernel stopped */
    if (vec[got - 1].msg_hdr.msg_flags & MSG_OOB) break;                  /* as the kernel does */
    if (timeout != NULL && !mmsg_left(end, &left)) break;                 /* the time is up */
  }
  if (timeout != NULL) {
    (void)mmsg_left(end, &left);
    *timeout = left;
  }
  errno = saved;
  return (int)got;
}

TSRI_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int count, int flags, struct timespec *timeout) {
  recvmmsg_fn fn = IO_FN(IO_RECVMMSG, recvmmsg_fn);
  if (!tsri_mesh_is_armed() || vec == NULL || count == 0) return fn(fd, vec, count, flags, timeout);
  bool mine = OURS(vec, (size_t)count * sizeof *vec) || (timeout != NULL && OURS(timeout, sizeof *timeout));
  for (unsigned int i = 0; i < count && !mine; i++) mine = mmsg_data_ours(&vec[i].msg_hdr);
  if (!mine) return fn(fd, vec, count, flags, timeout);
  return recvmmsg_ours(fd, vec, count, flags, timeout);
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
