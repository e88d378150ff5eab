/* mesh_io_helper.c: the kernel writing into blocks while meshing copies
 * their pages (test_mesh_io.c).  Linked to the override, TESSERA_MESH=on.
 *
 *   mesh_io_helper CALL SECONDS
 *
 * Rounds for SECONDS: the main thread makes sparse pages (blocks of 256
 * bytes, one in eight kept) and meshes them with tsr_collect, while a
 * reader thread takes 64 bytes at a time from a socket pair, kept full by
 * a writer thread, into the kept blocks of the round, one after another.
 * CALL is how the reader takes them: `read`, `recv` or `readv` (the C
 * library's names, which libtessera.so defines), or `raw` (the read
 * system call itself, past any library: what a program gets without
 * tessera's retry).  Every byte read is checked against what was written.
 * Prints "calls=N efault=E meshes=M bad=B"; exit status 0 when the run
 * went through (the caller judges efault), 1 on a wrong byte or a call
 * failing otherwise, 2 on bad usage.
 */
#define _GNU_SOURCE
#include "tsr_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 4096     /* a round's blocks: 16 spans of 256 blocks */
#define KEEP 8          /* one in KEEP kept */
#define CHUNK 64

enum { CALL_READ, CALL_RECV, CALL_READV, CALL_RAW };

static int call_kind;
static int sock[2];
static unsigned char *kept[BLOCKS];
static _Atomic size_t kept_n;          /* blocks of the round the reader may use; 0: wait */
static _Atomic int reader_busy;        /* the reader is inside a round's blocks */
static _Atomic int stop;
static _Atomic uint64_t calls, efaults, bad_bytes, other_errors;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stream is bytes i % 251 for i = 0, 1, ...: any byte read out of
 * order, lost or doubled shows. */
static void *writer_main(void *arg) {
  (void)arg;
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

static ssize_t take(unsigned char *p) {
  switch (call_kind) {
    case CALL_READ: return read(sock[1], p, CHUNK);
    case CALL_RECV: return recv(sock[1], p, CHUNK, 0);
    case CALL_READV: {
      struct iovec iov[2] = { { p, CHUNK / 2 }, { p + CHUNK / 2, CHUNK / 2 } };
      return readv(sock[1], iov, 2);
    }
    default: return (ssize_t)syscall(SYS_read, sock[1], p, CHUNK);
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
    unsigned char *p = kept[i++ % n];
    ssize_t got = take(p);
    atomic_fetch_add(&calls, 1);
    if (got < 0 && errno == EFAULT) atomic_fetch_add(&efaults, 1);
    else if (got < 0) atomic_fetch_add(&other_errors, 1);
    for (ssize_t k = 0; k < got; k++)
      if (p[k] != (unsigned char)((at + (uint64_t)k) % 251)) atomic_fetch_add(&bad_bytes, 1);
    if (got > 0) at += (uint64_t)got;
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
    fprintf(stderr, "usage: TESSERA_MESH=on %s read|recv|readv|raw SECONDS\n", argv[0]);
    return 2;
  }
  const char *names[] = { "read", "recv", "readv", "raw" };
  call_kind = -1;
  for (int k = 0; k < 4; k++)
    if (strcmp(argv[1], names[k]) == 0) call_kind = k;
  double seconds = atof(argv[2]);
  if (call_kind < 0 || seconds <= 0) return 2;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sock) != 0) return 1;
  pthread_t writer, reader;
  if (pthread_create(&writer, NULL, writer_main, NULL) != 0 || pthread_create(&reader, NULL, reader_main, NULL) != 0)
    return 1;
  static unsigned char *all[BLOCKS];
  uint64_t seed = 7, meshes = 0;
  tsr_pins_t fig;
  double end = now_s() + seconds;
  while (now_s() < end) {
    size_t n = 0;
    for (size_t i = 0; i < BLOCKS; i++) all[i] = malloc(256);
    for (size_t i = 0; i < BLOCKS; i++) {
      if (all[i] == NULL) return 1;
      if (tsr_test_rand(&seed) % KEEP == 0) kept[n++] = all[i];
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
  printf("calls=%llu efault=%llu meshes=%llu bad=%llu other=%llu\n", (unsigned long long)calls,
         (unsigned long long)efaults, (unsigned long long)meshes, (unsigned long long)bad_bytes,
         (unsigned long long)other_errors);
  return bad_bytes != 0 || other_errors != 0 ? 1 : 0;
}
