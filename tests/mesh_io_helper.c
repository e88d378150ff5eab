/* mesh_io_helper.c: the kernel writing into blocks while meshing copies
 * their pages (test_mesh_io.c).  Linked to the override, TESSERA_MESH=on.
 *
 *   mesh_io_helper CALL SECONDS
 *
 * Rounds for SECONDS: the main thread makes sparse pages (blocks of 256
 * bytes, or BIG, one in eight kept) and meshes them with tsr_collect, while a
 * reader thread makes CALL again and again with what the kernel writes
 * in the kept blocks of the round, one after another:
 *   read, recv, readv: 64 bytes at a time from a socket pair kept full by
 *     a writer thread;
 *   recvfrom: the same into memory of the helper's own, the sender's
 *     address and its length in the block (the kernel writes them after
 *     it took the data);
 *   recvmsg: the same, with the msghdr and its iovec in the block (the
 *     kernel writes the lengths and flags back after it took the data);
 *   eventfd: an eventfd's count, which a writer thread adds 1 to (the
 *     kernel takes the count before it copies it);
 *   poll: a pollfd of the socket pair, which the kernel writes back;
 *   readbig: read, BIG bytes into blocks of BIG (too many to go through
 *     the read family's buffer on the stack: the call is made again);
 *   badptr: read into address 8, an EFAULT of the program's own, which
 *     must come back every time;
 *   dgram: numbered datagrams from a socket bound to a name, by recvfrom
 *     with the sender's address in the block and its length on the stack
 *     (a datagram whose address the kernel could not write is lost);
 *   fds: datagrams that each carry a descriptor, by recvmsg with the
 *     control data in the block (FDS_CONTROL bytes of blocks of
 *     FDS_BLOCK: more than 1 KiB), every descriptor checked;
 *   file: pread of a file's first BIG bytes into blocks of BIG, each
 *     read checked whole (the kernel stops short at a fenced page past
 *     the first);
 *   accept: connections, by accept4 with the peer's address and its
 *     length in the block (the kernel closes a connection whose address
 *     it could not write), every one counted;
 *   mmsg: numbered datagrams by recvmmsg, two at a time, the vector (the
 *     lengths and headers the kernel writes back), the iovecs and the
 *     first datagram in the block, the second in the helper's memory
 *     (both ways of override_io.c's recvmmsg), set up when the round
 *     starts (a write of the reader's own just before each call would
 *     wait out any fence, and the kernel's write would never meet one);
 *   preadv2: file's reads by preadv2 with RWF_HIPRI into blocks of BIG;
 *   pselect: pselect's read set in the block (likewise set up when the
 *     round starts, the socket kept readable), then a read of the socket;
 *   epoll2: epoll_pwait2's events in the block, then a read of the socket;
 *   raw: read as the system call itself, past any library: what a program
 *     gets without tessera's read family.
 * Every byte of the stream is checked (bad counts a gap once, and each
 * wrong byte), and the eventfd's counts summed against those added.
 * Prints "calls=N efault=E meshes=M bad=B other=O";
 * exit status 0 when the run went through (the caller judges efault), 1
 * on a lost or wrong byte or count or a call failing otherwise, 2 on bad
 * usage.
 */
#define _GNU_SOURCE
#include "tsr_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 4096     /* a round's blocks: 16 spans of 256 blocks */
#define BIG 6000        /* readbig's blocks and reads: over the read family's stack buffer */
#define BIG_BLOCKS 1024
#define KEEP 8          /* one in KEEP kept */
#define FDS_BLOCK 2048  /* fds' blocks; the control data given the kernel (more than 1 KiB) */
#define FDS_CONTROL 2000
#define CHUNK 64
#define MMSG_DATA 160   /* mmsg: where in the block its first datagram goes, after two headers and two iovecs */

enum {
  CALL_READ, CALL_RECV, CALL_READV, CALL_RECVFROM, CALL_RECVMSG, CALL_EVENTFD, CALL_POLL, CALL_READBIG, CALL_BADPTR,
  CALL_DGRAM, CALL_FDS, CALL_FILE, CALL_ACCEPT, CALL_MMSG, CALL_PREADV2, CALL_PSELECT, CALL_EPOLL2, CALL_RAW, CALLS
};
static const char *const call_names[CALLS] = { "read",    "recv",   "readv", "recvfrom", "recvmsg", "eventfd", "poll",
                                               "readbig", "badptr", "dgram", "fds",      "file",    "accept",  "mmsg",
                                               "preadv2", "pselect", "epoll2", "raw" };

static int call_kind, file_fd, listener, epoll_fd;
static uint64_t mmsg_next;   /* the reader's: the datagram due next */
static struct sockaddr_un listen_at;
static socklen_t listen_len;
static _Atomic uint64_t connected;
static uint64_t accepted;   /* the reader's, then main's */
static bool datagrams;   /* dgram and fds: a datagram socket pair, its sender bound to a name */
static socklen_t sender_len;
static int sock[2], event_fd;
static _Atomic uint64_t event_added;
static unsigned char *kept[BLOCKS];
static _Atomic size_t kept_n;          /* blocks of the round the reader may use; 0: wait */
static _Atomic int reader_busy;        /* the reader is inside a round's blocks */
static _Atomic int stop;
static _Atomic uint64_t calls, efaults, bad_bytes, other_errors;
static uint64_t event_taken;   /* the reader's */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stream is bytes i % 251 for i = 0, 1, ...: any byte read out of
 * order, lost or doubled shows. */
static void *writer_main(void *arg) {
  (void)arg;
  if (call_kind == CALL_EVENTFD) {
    while (!atomic_load(&stop)) {
      if (eventfd_write(event_fd, 1) == 0) atomic_fetch_add(&event_added, 1);
      if ((atomic_load(&event_added) & 63) == 0) sched_yield();
    }
    return NULL;
  }
  if (call_kind == CALL_ACCEPT) {   /* connections from sockets with a name of their own (autobind) */
    while (!atomic_load(&stop)) {
      int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
      struct sockaddr_un self = { .sun_family = AF_UNIX };
      if (c < 0) return NULL;
      if (bind(c, (struct sockaddr *)&self, sizeof self.sun_family) == 0 &&
          connect(c, (struct sockaddr *)&listen_at, listen_len) == 0)
        atomic_fetch_add(&connected, 1);
      else
        sched_yield();   /* the queue is full */
      close(c);
    }
    return NULL;
  }
  if (datagrams) {   /* numbered datagrams; with fds, each carries a descriptor */
    uint64_t seq = 0;
    while (!atomic_load(&stop)) {
      unsigned char d[CHUNK] = { 0 };
      memcpy(d, &seq, sizeof seq);
      struct iovec iov = { d, CHUNK };
      union { struct cmsghdr h; unsigned char b[CMSG_SPACE(sizeof(int))]; } u;
      struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
      if (call_kind == CALL_FDS) {
        m.msg_control = u.b;
        m.msg_controllen = sizeof u.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &event_fd, sizeof(int));
      }
      if (sendmsg(sock[0], &m, MSG_DONTWAIT | MSG_NOSIGNAL) == CHUNK) seq++;
      else sched_yield();
    }
    return NULL;
  }
  unsigned char buf[4096];
  uint64_t at = 0;
  while (!atomic_load(&stop)) {
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)((at + i) % 251);
    size_t off = 0;
    while (off < sizeof buf && !atomic_load(&stop)) {
      ssize_t n = send(sock[0], buf + off, sizeof buf - off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) off += (size_t)n;
      else sched_yield();
    }
    at += off;
  }
  return NULL;
}

static unsigned char sink[CHUNK];   /* the reader's memory, not the heap's */
static unsigned char second[CHUNK];  /* likewise, mmsg's second datagram */
static volatile uintptr_t bad_address = 8;   /* volatile: the compiler would see the bad write coming */

/* One call into block p (256 bytes); the stream's bytes land at *data. */
static ssize_t take(unsigned char *p, unsigned char **data) {
  *data = p;
  switch (call_kind) {
    case CALL_READ: return read(sock[1], p, CHUNK);
    case CALL_RECV: return recv(sock[1], p, CHUNK, 0);
    case CALL_READV: {
      struct iovec iov[2] = { { p, CHUNK / 2 }, { p + CHUNK / 2, CHUNK / 2 } };
      return readv(sock[1], iov, 2);
    }
    case CALL_RECVFROM: {   /* the data into memory of the helper's own: only the address is at stake */
      socklen_t *len = (socklen_t *)(void *)(p + 192);
      *len = 112;
      *data = sink;
      return recvfrom(sock[1], sink, CHUNK, 0, (struct sockaddr *)(void *)(p + 64), len);
    }
    case CALL_RECVMSG: {    /* likewise: the header the kernel writes back is at stake */
      struct msghdr *m = (struct msghdr *)(void *)p;
      struct iovec *iov = (struct iovec *)(void *)(p + 64);
      *data = sink;
      *iov = (struct iovec){ sink, CHUNK };
      *m = (struct msghdr){ .msg_iov = iov, .msg_iovlen = 1 };
      return recvmsg(sock[1], m, 0);
    }
    case CALL_POLL: {
      struct pollfd *f = (struct pollfd *)(void *)p;
      *f = (struct pollfd){ .fd = sock[1], .events = POLLIN };
      int r = poll(f, 1, 0);
      if (r == 1 && !(f->revents & POLLIN)) atomic_fetch_add(&bad_bytes, 1);
      if (r == 1) {   /* keep the stream moving */
        *data = sink;
        return read(sock[1], sink, CHUNK);
      }
      return r < 0 ? r : 0;
    }
    case CALL_DGRAM: {   /* the sender's address in the block, its length on the stack */
      socklen_t len = sizeof(struct sockaddr_un);
      *data = sink;
      ssize_t r = recvfrom(sock[1], sink, CHUNK, MSG_DONTWAIT, (struct sockaddr *)(void *)(p + 64), &len);
      if (r == CHUNK && (len != sender_len || memcmp(((struct sockaddr_un *)(void *)(p + 64))->sun_path + 1,
                                                     "tsr-mesh-io", 11) != 0))
        atomic_fetch_add(&bad_bytes, 1);
      return r;
    }
    case CALL_FDS: {     /* the control data (descriptors) in the block, the rest on the stack */
      struct iovec iov = { sink, CHUNK };
      struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = p, .msg_controllen = FDS_CONTROL };
      *data = sink;
      ssize_t r = recvmsg(sock[1], &m, MSG_DONTWAIT);
      if (r == CHUNK) {
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        int fd = -1;
        if (c != NULL && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
        if (fd < 0 || (m.msg_flags & MSG_CTRUNC)) atomic_fetch_add(&bad_bytes, 1);   /* a descriptor lost */
        if (fd >= 0) close(fd);
      }
      return r;
    }
    case CALL_FILE: {    /* the whole of a file's first BIG bytes, every time */
      ssize_t r = pread(file_fd, p, BIG, 0);
      if (r >= 0 && r != BIG) atomic_fetch_add(&bad_bytes, 1);
      *data = NULL;
      return r;
    }
    case CALL_ACCEPT: {  /* the peer's address and its length in the block */
      socklen_t *len = (socklen_t *)(void *)(p + 192);
      *len = 112;
      *data = NULL;
      int c = accept4(listener, (struct sockaddr *)(void *)(p + 64), len, SOCK_NONBLOCK);
      if (c < 0) return -1;
      accepted++;
      if (*len != sizeof(sa_family_t) + 6) atomic_fetch_add(&bad_bytes, 1);   /* autobind: a NUL and 5 hex digits */
      close(c);
      return 0;
    }
    case CALL_MMSG: {    /* two at a time; every datagram checked here */
      struct mmsghdr *v = (struct mmsghdr *)(void *)p;
      *data = NULL;
      int r = recvmmsg(sock[1], v, 2, MSG_DONTWAIT, NULL);
      for (int k = 0; k < r; k++) {
        uint64_t seq;
        memcpy(&seq, k == 0 ? p + MMSG_DATA : second, sizeof seq);
        if (v[k].msg_len != CHUNK || seq != mmsg_next) atomic_fetch_add(&bad_bytes, 1);   /* lost or wrong */
        mmsg_next = seq + 1;
      }
      return r;
    }
    case CALL_PREADV2: {
      struct iovec iov = { p, BIG };
      ssize_t r = preadv2(file_fd, &iov, 1, 0, RWF_HIPRI);
      if (r >= 0 && r != BIG) atomic_fetch_add(&bad_bytes, 1);
      *data = NULL;
      return r;
    }
    case CALL_PSELECT: {
      fd_set *set = (fd_set *)(void *)p;
      if (!FD_ISSET(sock[1], set)) FD_SET(sock[1], set);   /* the last call found nothing to read */
      struct timespec zero = { 0, 0 };
      int r = pselect(sock[1] + 1, set, NULL, NULL, &zero, NULL);
      if (r == 1 && !FD_ISSET(sock[1], set)) atomic_fetch_add(&bad_bytes, 1);
      if (r == 1) {
        *data = sink;
        return read(sock[1], sink, CHUNK);
      }
      return r < 0 ? r : 0;
    }
    case CALL_EPOLL2: {
      struct epoll_event *e = (struct epoll_event *)(void *)p;
      struct timespec zero = { 0, 0 };
      int r = epoll_pwait2(epoll_fd, e, 4, &zero, NULL);
      if (r == 1 && (e->data.fd != sock[1] || !(e->events & EPOLLIN))) atomic_fetch_add(&bad_bytes, 1);
      if (r == 1) {
        *data = sink;
        return read(sock[1], sink, CHUNK);
      }
      return r < 0 ? r : 0;
    }
    case CALL_EVENTFD: return read(event_fd, p, sizeof(uint64_t));
    case CALL_READBIG: return read(sock[1], p, BIG);
    case CALL_BADPTR: return read(sock[1], (void *)bad_address, CHUNK);
    default: return (ssize_t)syscall(SYS_read, sock[1], p, CHUNK);
  }
}

/* A kept block, as the round starts: what the kernel reads of it. */
static void prepare(unsigned char *p) {
  if (call_kind == CALL_MMSG) {
    struct mmsghdr *v = (struct mmsghdr *)(void *)p;
    struct iovec *iov = (struct iovec *)(void *)(p + 2 * sizeof *v);
    for (int k = 0; k < 2; k++) {
      iov[k] = (struct iovec){ k == 0 ? p + MMSG_DATA : second, CHUNK };
      v[k] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[k], .msg_iovlen = 1 } };
    }
  } else if (call_kind == CALL_PSELECT) {
    FD_ZERO((fd_set *)(void *)p);
    FD_SET(sock[1], (fd_set *)(void *)p);
  }
}

static void *reader_main(void *arg) {
  (void)arg;
  uint64_t at = 0;   /* the stream's next byte */
  size_t i = 0;
  while (!atomic_load(&stop)) {
    atomic_store(&reader_busy, 1);
    size_t n = atomic_load(&kept_n);
    if (n == 0) {
      atomic_store(&reader_busy, 0);
      sched_yield();
      continue;
    }
    unsigned char *data, *p = kept[i++ % n];
    ssize_t got = take(p, &data);
    atomic_fetch_add(&calls, 1);
    if (got < 0 && errno == EFAULT) atomic_fetch_add(&efaults, 1);
    else if (got < 0 && errno != EAGAIN) atomic_fetch_add(&other_errors, 1);
    if (call_kind == CALL_FILE || call_kind == CALL_FDS || call_kind == CALL_ACCEPT || call_kind == CALL_MMSG ||
        call_kind == CALL_PREADV2) {
      /* checked in take */
    } else if (datagrams) {
      uint64_t seq;
      if (got == CHUNK) {
        memcpy(&seq, data, sizeof seq);
        if (seq != at) atomic_fetch_add(&bad_bytes, 1);   /* datagrams lost */
        at = seq + 1;
      }
    } else if (call_kind == CALL_EVENTFD) {
      if (got == (ssize_t)sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, data, sizeof v);
        event_taken += v;
      }
    } else {
      if (got > 0 && data[0] != (unsigned char)(at % 251)) {
        /* bytes lost: one gap, and on from where the stream is now (a
         * gap of under 251 bytes, as a lost call's 64) */
        atomic_fetch_add(&bad_bytes, 1);
        at += ((uint64_t)data[0] + 251 - at % 251) % 251;
      }
      for (ssize_t k = 1; k < got; k++)
        if (data[k] != (unsigned char)((at + (uint64_t)k) % 251)) atomic_fetch_add(&bad_bytes, 1);
      if (got > 0) at += (uint64_t)got;
    }
    atomic_store(&reader_busy, 0);
  }
  return NULL;
}

/* The round's blocks are the reader's no more once it is outside them. */
static void withdraw(void) {
  atomic_store(&kept_n, 0);
  while (atomic_load(&reader_busy)) sched_yield();
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: TESSERA_MESH=on %s CALL SECONDS (CALL: read, recv, readv, ..., raw)\n", argv[0]);
    return 2;
  }
  call_kind = -1;
  for (int k = 0; k < CALLS; k++)
    if (strcmp(argv[1], call_names[k]) == 0) call_kind = k;
  double seconds = atof(argv[2]);
  if (call_kind < 0 || seconds <= 0) return 2;
  datagrams = call_kind == CALL_DGRAM || call_kind == CALL_FDS || call_kind == CALL_MMSG;
  if (socketpair(AF_UNIX, datagrams ? SOCK_DGRAM : SOCK_STREAM, 0, sock) != 0) return 1;
  if (datagrams) {   /* a name in the abstract space, which the kernel writes as the sender's address */
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int len = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "tsr-mesh-io-%d", (int)getpid());
    sender_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    if (bind(sock[0], (struct sockaddr *)&a, sender_len) != 0) return 1;
  }
  if (call_kind == CALL_ACCEPT) {
    listen_at = (struct sockaddr_un){ .sun_family = AF_UNIX };
    int len = snprintf(listen_at.sun_path + 1, sizeof listen_at.sun_path - 1, "tsr-mesh-io-l-%d", (int)getpid());
    listen_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&listen_at, listen_len) != 0 || listen(listener, 64) != 0)
      return 1;
  }
  event_fd = eventfd(0, EFD_NONBLOCK);
  if (event_fd < 0) return 1;
  if (call_kind == CALL_EPOLL2) {
    struct epoll_event e = { .events = EPOLLIN, .data.fd = sock[1] };
    epoll_fd = epoll_create1(0);
    if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, sock[1], &e) != 0) return 1;
  }
  if (call_kind == CALL_FILE || call_kind == CALL_PREADV2) {
    char path[] = "/tmp/tsr_mesh_io_XXXXXX";
    unsigned char bytes[2 * BIG];
    memset(bytes, 0x5a, sizeof bytes);
    file_fd = mkstemp(path);
    if (file_fd < 0 || write(file_fd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) return 1;
    unlink(path);
  }
  pthread_t writer, reader;
  if (pthread_create(&writer, NULL, writer_main, NULL) != 0 || pthread_create(&reader, NULL, reader_main, NULL) != 0)
    return 1;
  static unsigned char *all[BLOCKS];
  uint64_t seed = 7, meshes = 0;
  tsr_pins_t fig;
  double end = now_s() + seconds;
  while (now_s() < end) {
    size_t n = 0;
    bool big = call_kind == CALL_READBIG || call_kind == CALL_FILE || call_kind == CALL_PREADV2;
    size_t blocks = big || call_kind == CALL_FDS ? BIG_BLOCKS : BLOCKS;
    for (size_t i = 0; i < blocks; i++) all[i] = malloc(big ? BIG : call_kind == CALL_FDS ? FDS_BLOCK : 256);
    for (size_t i = 0; i < blocks; i++) {
      if (all[i] == NULL) return 1;
      if (tsr_test_rand(&seed) % KEEP == 0) prepare(kept[n++] = all[i]);
      else free(all[i]);
    }
    atomic_store(&kept_n, n);
    tsr_pins(&fig, NULL, 0);
    uint64_t before = fig.meshes;
    tsr_collect();
    tsr_pins(&fig, NULL, 0);
    meshes += fig.meshes - before;
    withdraw();
    for (size_t i = 0; i < n; i++) free(kept[i]);
  }
  atomic_store(&stop, 1);
  pthread_join(reader, NULL);
  close(sock[1]);   /* the writer may be waiting for room */
  pthread_join(writer, NULL);
  if (call_kind == CALL_ACCEPT) {   /* what the reader did not take is still queued */
    int c;
    while ((c = accept(listener, NULL, NULL)) >= 0) {
      accepted++;
      close(c);
    }
    if (accepted != atomic_load(&connected)) {
      printf("accept: %llu connected, %llu accepted\n", (unsigned long long)atomic_load(&connected),
             (unsigned long long)accepted);
      atomic_fetch_add(&bad_bytes, 1);
    }
  }
  if (call_kind == CALL_EVENTFD) {
    uint64_t left = 0;
    eventfd_read(event_fd, &left);   /* what the reader did not take (EAGAIN leaves 0) */
    if (event_taken + left != atomic_load(&event_added)) {
      printf("eventfd: %llu added, %llu taken and %llu left\n", (unsigned long long)atomic_load(&event_added),
             (unsigned long long)event_taken, (unsigned long long)left);
      atomic_fetch_add(&bad_bytes, 1);
    }
  }
  printf("calls=%llu efault=%llu meshes=%llu bad=%llu other=%llu\n", (unsigned long long)calls,
         (unsigned long long)efaults, (unsigned long long)meshes, (unsigned long long)bad_bytes,
         (unsigned long long)other_errors);
  return bad_bytes != 0 || other_errors != 0 ? 1 : 0;
}
