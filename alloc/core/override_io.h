/* override_io.h: what the two files of the read family share
 * (override_io.c: the reads; override_wait.c: the waits): the C library's
 * definitions they forward to, and the test of memory meshing may fence.
 * Included first: it asks the C library's headers for the GNU calls.
 */
#ifndef TSRI_OVERRIDE_IO_H
#define TSRI_OVERRIDE_IO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* recvmmsg, preadv2, epoll_pwait2 */
#endif
#define _LARGEFILE64_SOURCE 1
#undef _FILE_OFFSET_BITS
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
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
/* The C library's definition of call `which` (looked up when the library
 * loads; a call it lacks ends the process with a message). */
tsri_hidden void *tsri_io_next(int which);

#define IO_FN(which, type) ((type)tsri_io_next(which))

/* Memory meshing may fence.  (An address, not a pointer: the C library's
 * headers mark read's buffer write-only, and the compiler would take
 * passing it on for reading it.) */
#define OURS(p, n) (tsri_mesh_is_armed() && tsri_mesh_fenceable((uintptr_t)(p), (n)))

#endif
