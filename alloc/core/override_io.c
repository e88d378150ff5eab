/* override_io.c: the C library's calls that have the kernel write into
 * the caller's memory, run again when meshing made them fail.
 *
 * Compiled only into the override library on Linux, next to override.c.
 * While meshing copies a page into its shared file the page is read-only
 * (core/mesh_fence.c): a thread writing to it waits in tessera's fault
 * handler, but the kernel cannot wait, and a read(2) into a buffer on that
 * page fails with EFAULT for the microseconds of the copy.  A server would
 * take that for a broken connection.  So libtessera.so defines these
 * calls: each reads meshing's fence count, calls the C library's own
 * definition (the next one, dlsym RTLD_NEXT), and when that fails with
 * EFAULT while a fence moved, waits for the fence and calls it again.  An
 * EFAULT that is the program's own (a bad pointer) comes back with no
 * fence in between and is returned as it was; with meshing off no fence
 * ever moves, and the cost is one load per call.
 *
 * What a retry cannot mend is named in docs/options.md (TESSERA_MESH):
 * a datagram the kernel dropped when its copy failed, an accepted
 * connection whose address could not be written, calls made inside the C
 * library (its stdio reads into a FILE's buffer) or by raw system calls,
 * and I/O into memory pinned earlier (io_uring, AIO).  A stream socket, a
 * pipe or a file keeps what was not copied, and a call that copied part
 * returns that part, as read(2) may.
 *
 * The prototypes are tessera's own, with the C library's types spelled as
 * the ABI has them (opaque pointers where the call only forwards them), so
 * that no header's redirection of pread to pread64 gets in the way;
 * select's are its header's, which sys/types.h brings in.
 */
#include "internal.h"

#include <errno.h>
#include <sys/select.h>
#include <sys/types.h>

#define TSRI_EXPORT __attribute__((visibility("default")))

/* The C library's definition of name, looked up once. */
static void *io_next(_Atomic(void *) *slot, const char *name) {
  void *fn = atomic_load_explicit(slot, memory_order_acquire);
  if (tsr_unlikely(fn == NULL)) {
    fn = tsri_os_next_symbol(name);
    if (fn == NULL) {
      tsri_warning("%s: the C library has no definition after tessera's; the call fails with ENOSYS", name);
      return NULL;
    }
    atomic_store_explicit(slot, fn, memory_order_release);
  }
  return fn;
}

/* Define NAME(PARAMS), calling the next definition with ARGS, again while
 * it fails with EFAULT and a meshing fence moved meanwhile. */
#define IO_CALL(ret, name, params, args)                                                   \
  TSRI_EXPORT ret name params;                                                             \
  TSRI_EXPORT ret name params {                                                            \
    static _Atomic(void *) next;                                                           \
    ret(*fn) params = (ret(*) params)io_next(&next, #name);                                \
    if (fn == NULL) {                                                                      \
      errno = ENOSYS;                                                                      \
      return -1;                                                                           \
    }                                                                                      \
    for (;;) {                                                                             \
      uint64_t seen = tsri_mesh_fences();                                                  \
      ret r = fn args;                                                                     \
      if (r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;           \
    }                                                                                      \
  }

IO_CALL(ssize_t, read, (int fd, void *buf, size_t n), (fd, buf, n))
IO_CALL(ssize_t, pread, (int fd, void *buf, size_t n, long off), (fd, buf, n, off))
IO_CALL(ssize_t, pread64, (int fd, void *buf, size_t n, int64_t off), (fd, buf, n, off))
IO_CALL(ssize_t, readv, (int fd, const void *iov, int count), (fd, iov, count))
IO_CALL(ssize_t, preadv, (int fd, const void *iov, int count, long off), (fd, iov, count, off))
IO_CALL(ssize_t, preadv64, (int fd, const void *iov, int count, int64_t off), (fd, iov, count, off))
IO_CALL(ssize_t, recv, (int fd, void *buf, size_t n, int flags), (fd, buf, n, flags))
IO_CALL(ssize_t, recvfrom, (int fd, void *buf, size_t n, int flags, void *addr, void *addr_len),
        (fd, buf, n, flags, addr, addr_len))
IO_CALL(ssize_t, recvmsg, (int fd, void *msg, int flags), (fd, msg, flags))
IO_CALL(int, poll, (void *fds, unsigned long count, int timeout), (fds, count, timeout))
IO_CALL(int, ppoll, (void *fds, unsigned long count, const void *timeout, const void *mask),
        (fds, count, timeout, mask))
IO_CALL(int, select, (int count, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout),
        (count, rd, wr, ex, timeout))
IO_CALL(int, epoll_wait, (int fd, void *events, int count, int timeout), (fd, events, count, timeout))
IO_CALL(int, epoll_pwait, (int fd, void *events, int count, int timeout, const void *mask),
        (fd, events, count, timeout, mask))

/* What _FORTIFY_SOURCE makes of the calls above (Debian builds its
 * packages with it): the C library checks the buffer's length and then
 * reads through its own internal read, which no definition here reaches,
 * so the checking forms are defined too. */
IO_CALL(ssize_t, __read_chk, (int fd, void *buf, size_t n, size_t buf_len), (fd, buf, n, buf_len))
IO_CALL(ssize_t, __pread_chk, (int fd, void *buf, size_t n, long off, size_t buf_len), (fd, buf, n, off, buf_len))
IO_CALL(ssize_t, __pread64_chk, (int fd, void *buf, size_t n, int64_t off, size_t buf_len),
        (fd, buf, n, off, buf_len))
IO_CALL(ssize_t, __recv_chk, (int fd, void *buf, size_t n, size_t buf_len, int flags), (fd, buf, n, buf_len, flags))
IO_CALL(ssize_t, __recvfrom_chk,
        (int fd, void *buf, size_t n, size_t buf_len, int flags, void *addr, void *addr_len),
        (fd, buf, n, buf_len, flags, addr, addr_len))
IO_CALL(int, __poll_chk, (void *fds, unsigned long count, int timeout, size_t fds_len), (fds, count, timeout, fds_len))
IO_CALL(int, __ppoll_chk, (void *fds, unsigned long count, const void *timeout, const void *mask, size_t fds_len),
        (fds, count, timeout, mask, fds_len))
