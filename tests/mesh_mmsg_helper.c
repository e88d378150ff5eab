/* mesh_mmsg_helper.c: recvmmsg as libtessera.so defines it answers as the
 * kernel's does (test_mesh_io.c).  Linked to the override, TESSERA_MESH=on.
 *
 * With meshing on, a recvmmsg that writes into memory meshing may fence
 * (the heap's small blocks) is made in pieces (core/override_io.c).  Each
 * case here runs three times on a fresh socket pair with the same
 * datagrams queued: the system call itself, past any library, with the
 * vector and the buffers in static memory; the vector in the heap (runs of
 * headers through the stack), and vector and buffers in the heap (one
 * message at a time through recvmsg).  What the call returns, errno,
 * each message's length and flags, the bytes, the time left and, for the
 * signal case, how long it took, must be the same all three times.
 * Prints a line for each difference and "cases=N differences=D"; exit
 * status 0 when D is 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define VLEN_MAX 2000
#define BUF 16

enum { WHERE_STATIC, WHERE_HEAP_VECTOR, WHERE_HEAP_ALL, WHERES };
static const char *const where_names[WHERES] = { "static", "heap vector", "heap vector and buffers" };

typedef struct case_s {
  const char *name;
  int type;                  /* SOCK_DGRAM or SOCK_STREAM */
  int queued;                /* datagrams (stream: bytes) sent before the call */
  size_t size;               /* of each */
  unsigned int vlen;
  int flags;
  bool timeout;
  struct timespec t;
  bool late_signal;          /* a SA_RESTART signal at 200 ms, one more datagram at 2 s */
} case_t;

typedef struct result_s {
  int r, err;
  unsigned int len[8];
  int mflags[8];
  unsigned char bytes[8][BUF];
  bool huge_left;            /* time left past 10^9 s */
  long left_ms;
  bool slow;                 /* took 1.5 s or more */
} result_t;

static struct mmsghdr static_vec[VLEN_MAX];
static struct iovec static_iov[VLEN_MAX];
static unsigned char static_buf[VLEN_MAX][BUF];

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_alarm(int sig) { (void)sig; }

typedef struct late_s {
  int fd;
  size_t size;
} late_t;

static void *send_late(void *arg) {
  late_t *l = arg;
  usleep(2000000);
  unsigned char d[BUF] = { 0xee };
  (void)!send(l->fd, d, l->size, 0);
  return NULL;
}

static result_t run(const case_t *c, int where) {
  result_t res;
  memset(&res, 0, sizeof res);
  int sv[2];
  if (socketpair(AF_UNIX, c->type, 0, sv) != 0) {
    perror("socketpair");
    exit(2);
  }
  if (c->type == SOCK_STREAM) {   /* one send of `queued` bytes */
    static unsigned char bytes[VLEN_MAX];
    memset(bytes, 0x41, sizeof bytes);
    if (send(sv[0], bytes, (size_t)c->queued, 0) != c->queued) {
      perror("send");
      exit(2);
    }
  }
  for (int i = 0; c->type == SOCK_DGRAM && i < c->queued; i++) {
    unsigned char d[BUF];
    memset(d, 0x40 + i % 64, sizeof d);
    if (send(sv[0], d, c->size, 0) != (ssize_t)c->size) {
      perror("send");
      exit(2);
    }
  }
  struct mmsghdr *vec = where == WHERE_STATIC ? static_vec : calloc(c->vlen, sizeof *vec);
  struct iovec *iov = where == WHERE_HEAP_ALL ? calloc(c->vlen, sizeof *iov) : static_iov;
  unsigned char(*buf)[BUF] = where == WHERE_HEAP_ALL ? calloc(c->vlen, BUF) : static_buf;
  if (vec == NULL || iov == NULL || buf == NULL) exit(2);
  memset(buf, 0, (size_t)c->vlen * BUF);
  for (unsigned int i = 0; i < c->vlen; i++) {
    iov[i] = (struct iovec){ buf[i], c->type == SOCK_STREAM ? 1 : 10 };
    vec[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
  }
  struct timespec *t = NULL;
  if (c->timeout) {
    static struct timespec static_t;
    t = where == WHERE_STATIC ? &static_t : malloc(sizeof *t);
    if (t == NULL) exit(2);
    *t = c->t;
  }
  pthread_t late;
  late_t l = { sv[0], c->size };
  if (c->late_signal) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    /* the signal for this thread: the sender starts with it blocked */
    sigset_t alarm, old;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, &old);
    pthread_create(&late, NULL, send_late, &l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    struct itimerval it = { { 0, 0 }, { 0, 200000 } };
    setitimer(ITIMER_REAL, &it, NULL);
  }
  double t0 = now_s();
  errno = 1234;
  /* the kernel's answer from the system call itself, past any library */
  res.r = where == WHERE_STATIC ? (int)syscall(SYS_recvmmsg, sv[1], vec, c->vlen, c->flags, t)
                                : recvmmsg(sv[1], vec, c->vlen, c->flags, t);
  res.err = errno;
  res.slow = now_s() - t0 >= 1.5;
  if (c->late_signal) pthread_join(late, NULL);
  for (int i = 0; i < 8 && i < (int)c->vlen; i++) {
    res.len[i] = vec[i].msg_len;
    res.mflags[i] = vec[i].msg_hdr.msg_flags;
    memcpy(res.bytes[i], buf[i], BUF);
  }
  if (t != NULL) {
    res.huge_left = t->tv_sec > 1000000000;
    res.left_ms = res.huge_left ? 0 : (long)t->tv_sec * 1000 + t->tv_nsec / 1000000;
  }
  if (where != WHERE_STATIC) free(vec);
  if (where == WHERE_HEAP_ALL) {
    free(iov);
    free(buf);
  }
  if (where != WHERE_STATIC) free(t);
  close(sv[0]);
  close(sv[1]);
  return res;
}

static int differences;

static void differ(const case_t *c, int where, const char *what, long a, long b) {
  printf("%s, %s: %s %ld where the kernel gives %ld\n", c->name, where_names[where], what, b, a);
  differences++;
}

int main(void) {
  /* a first small block sets meshing up: from then on the heap is
   * memory meshing may fence */
  free(malloc(64));
  const struct timespec zero = { 0, 0 }, forever = { LONG_MAX, 0 }, bad_ns = { 0, 1000000000 },
                        negative = { -1, 0 }, long_wait = { 20000000000L, 0 };
  const case_t cases[] = {
    { "wait for one", SOCK_DGRAM, 3, 12, 8, MSG_WAITFORONE, false, zero, false },
    { "nothing there", SOCK_DGRAM, 0, 12, 4, MSG_DONTWAIT, false, zero, false },
    { "all there", SOCK_DGRAM, 2, 12, 2, 0, false, zero, false },
    { "fewer there", SOCK_DGRAM, 2, 12, 4, MSG_DONTWAIT, false, zero, false },
    { "truncated", SOCK_DGRAM, 2, 14, 2, MSG_DONTWAIT, false, zero, false },
    { "zero timeout", SOCK_DGRAM, 2, 12, 4, 0, true, zero, false },
    { "timeout for ever", SOCK_DGRAM, 3, 12, 3, 0, true, forever, false },
    { "long timeout", SOCK_DGRAM, 3, 12, 3, 0, true, long_wait, false },
    { "nanoseconds out of range", SOCK_DGRAM, 1, 12, 2, MSG_DONTWAIT, true, bad_ns, false },
    { "negative timeout", SOCK_DGRAM, 1, 12, 2, MSG_DONTWAIT, true, negative, false },
    { "a signal ends the wait", SOCK_DGRAM, 1, 12, 2, 0, false, zero, true },
    { "more than 1024", SOCK_STREAM, VLEN_MAX, 1, VLEN_MAX, MSG_DONTWAIT, false, zero, false },
  };
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int k = 0; k < n; k++) {
    const case_t *c = &cases[k];
    result_t want = { 0 };
    for (int where = 0; where < WHERES; where++) {
      result_t got = run(c, where);
      if (where == WHERE_STATIC) {
        want = got;
        continue;
      }
      if (got.r != want.r) differ(c, where, "returned", want.r, got.r);
      if (got.r < 0 && got.err != want.err) differ(c, where, "errno", want.err, got.err);
      if (got.r >= 0 && got.err != want.err) differ(c, where, "errno after success", want.err, got.err);
      for (int i = 0; i < 8 && i < got.r && i < want.r; i++) {
        if (got.len[i] != want.len[i]) differ(c, where, "msg_len", want.len[i], got.len[i]);
        if (got.mflags[i] != want.mflags[i]) differ(c, where, "msg_flags", want.mflags[i], got.mflags[i]);
        if (memcmp(got.bytes[i], want.bytes[i], BUF) != 0) differ(c, where, "bytes of message", i, i);
      }
      if (got.huge_left != want.huge_left) differ(c, where, "time left past 10^9 s", want.huge_left, got.huge_left);
      if (labs(got.left_ms - want.left_ms) > 500) differ(c, where, "ms left", want.left_ms, got.left_ms);
      if (got.slow != want.slow) differ(c, where, "took 1.5 s or more", want.slow, got.slow);
    }
  }
  printf("cases=%d differences=%d\n", n, differences);
  return differences == 0 ? 0 : 1;
}
