/* fuzz_heap.c: libFuzzer harness for the tsr_ malloc family.
 *
 * The input is a program: each operation is one byte of opcode followed by
 * argument bytes.  A table of live blocks (slot -> pointer, size, tag)
 * follows what the program did; every block gets a pattern written over
 * its whole size when it is made or resized, and the pattern is verified
 * before the block is freed or moved, so a block handed out twice, or
 * memory that moved without its contents, is caught.  At the end every
 * block is verified and freed, and tsr_check() must find nothing wrong.
 * One operation is tsr_collect(), which trims, purges and, run with
 * TESSERA_MESH=on (ctest's fuzz_heap_mesh), meshes every sparse page it
 * can: the blocks the program holds then sit on shared pages, and every
 * operation after it runs on them.  Another has a thread of its own
 * allocate a burst of one size and exit: its heap starts without fitting,
 * so its pages are fitted to that size (docs/design.md, "Fitted pages"),
 * and they are abandoned with the blocks in them, which this thread then
 * frees and whose free blocks its heap may adopt.
 *
 *   cmake -DCMAKE_C_COMPILER=clang -DTSR_FUZZ=ON ... && ./fuzz_heap -max_total_time=60
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

#define SLOTS 64
#define MAX_LIVE_BYTES ((size_t)256 << 20)

typedef struct slot_s {
  uint8_t *p;
  size_t size;
  uint8_t tag;
} slot_t;

static slot_t slots[SLOTS];
static size_t live_bytes;

typedef struct reader_s {
  const uint8_t *data;
  size_t size, at;
} reader_t;

static uint32_t take(reader_t *r, unsigned bytes) {
  uint32_t v = 0;
  for (unsigned i = 0; i < bytes; i++) v = (v << 8) | (r->at < r->size ? r->data[r->at++] : 0);
  return v;
}

static void die(const char *what, size_t slot, size_t size) {
  fprintf(stderr, "fuzz_heap: %s (slot %zu, size %zu)\n", what, slot, size);
  abort();
}

/* A size from two bytes of input: mostly small, with a class selector so
 * that the large and boundary sizes come up often. */
static size_t take_size(reader_t *r) {
  uint32_t sel = take(r, 1), v = take(r, 2);
  switch (sel & 7) {
  case 0: return v % 17;                                  /* tiny, including 0 */
  case 1: return v % 1025;
  case 2: return v;                                        /* up to 64 KiB */
  case 3: return (size_t)128 * 1024 - 64 + v % 129;        /* around the largest class */
  case 4: return (size_t)v * 16 + 1;                       /* up to 1 MiB */
  case 5: return (size_t)1 << (v % 22);                    /* powers of two */
  case 6: {                                                /* just around them */
    size_t p = (size_t)1 << (v % 22), d = sel >> 3;       /* d: 0..31 */
    return p > 16 ? p + d - 16 : p + d;
  }
  default: return v % 256;
  }
}

/* The pattern covers small blocks whole; of a big block, its first and
 * last 4 KiB and one byte in every 512 (which still catches two blocks
 * that overlap, or a move that lost a page), so that one input runs in
 * milliseconds even in a Debug build. */
#define WHOLE 8192

static inline uint8_t pattern(const slot_t *s, size_t i) {
  return (uint8_t)(s->tag + i * 13 + (i >> 9));
}

static inline size_t next_index(size_t i, size_t n) {
  if (n <= WHOLE || i < 4096 || i >= n - 4096) return i + 1;
  size_t j = (i | 511) + 1;
  return j < n - 4096 ? j : n - 4096;
}

static void fill(slot_t *s) {
  for (size_t i = 0; i < s->size; i = next_index(i, s->size)) s->p[i] = pattern(s, i);
}

/* Check the first n bytes (n <= s->size) hold what fill() wrote. */
static void verify(const slot_t *s, size_t n, size_t idx) {
  for (size_t i = 0; i < n; i = next_index(i, s->size))
    if (s->p[i] != pattern(s, i)) die("block contents changed", idx, s->size);
}

static void check_block(const slot_t *s, size_t idx, size_t align) {
  if (((uintptr_t)s->p & 15) != 0) die("block not 16-byte aligned", idx, s->size);
  if (align > 1 && ((uintptr_t)s->p & (align - 1)) != 0) die("block misaligned", idx, s->size);
  if (tsr_usable_size(s->p) < s->size) die("usable size below the request", idx, s->size);
  if (!tsr_owns(s->p)) die("tsr_owns denies a live block", idx, s->size);
}

static void release(size_t idx) {
  slot_t *s = &slots[idx];
  if (s->p == NULL) return;
  verify(s, s->size, idx);
  tsr_free(s->p);
  live_bytes -= s->size;
  s->p = NULL;
  s->size = 0;
}

static void place(size_t idx, uint8_t *p, size_t size, uint8_t tag, size_t align) {
  slot_t *s = &slots[idx];
  s->p = p;
  s->size = size;
  s->tag = tag;
  live_bytes += size;
  check_block(s, idx, align);
  fill(s);
}

/* A burst: count blocks of size bytes into the slots from first on, from
 * a thread of its own.  The caller waits for it in pthread_join, so the
 * slot table is the burst's alone meanwhile. */
typedef struct burst_s {
  size_t first, count, size;
  uint8_t tag;
} burst_t;

static void *burst_main(void *arg) {
  const burst_t *b = arg;
  for (size_t k = 0; k < b->count; k++) {
    size_t idx = (b->first + k) % SLOTS;
    release(idx);
    uint8_t *p = tsr_malloc(b->size);
    if (p == NULL) die("malloc failed in a burst", idx, b->size);
    place(idx, p, b->size, b->tag, 1);
  }
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t r = { data, size, 0 };
  while (r.at < r.size) {
    uint32_t op = take(&r, 1);
    size_t idx = take(&r, 1) % SLOTS;
    uint8_t tag = (uint8_t)take(&r, 1);
    slot_t *s = &slots[idx];
    switch (op % 10) {
    case 0:   /* malloc */
    case 1: {
      size_t n = take_size(&r);
      if (live_bytes + n > MAX_LIVE_BYTES) break;
      release(idx);
      uint8_t *p = tsr_malloc(n);
      if (p == NULL) die("malloc failed", idx, n);
      place(idx, p, n, tag, 1);
      break;
    }
    case 2: {   /* calloc */
      size_t count = take(&r, 1) + 1, n = take_size(&r) / count;
      if (live_bytes + count * n > MAX_LIVE_BYTES) break;
      release(idx);
      uint8_t *p = tsr_calloc(count, n);
      if (p == NULL) die("calloc failed", idx, count * n);
      for (size_t i = 0; i < count * n; i = next_index(i, count * n))
        if (p[i] != 0) die("calloc memory not zero", idx, count * n);
      place(idx, p, count * n, tag, 1);
      break;
    }
    case 3: {   /* realloc, also of NULL and to 0 */
      size_t n = take_size(&r);
      if (live_bytes + n > MAX_LIVE_BYTES) break;
      size_t keep = s->size < n ? s->size : n;
      if (s->p != NULL) verify(s, s->size, idx);
      uint8_t *p = tsr_realloc(s->p, n);
      if (n == 0 && s->p != NULL) {   /* freed */
        if (p != NULL) die("realloc(p, 0) returned a block", idx, n);
        live_bytes -= s->size;
        s->p = NULL;
        s->size = 0;
        break;
      }
      if (p == NULL) die("realloc failed", idx, n);
      s->p = p;
      verify(s, keep, idx);
      live_bytes -= s->size;
      place(idx, p, n, s->tag, 1);
      break;
    }
    case 4: {   /* aligned_alloc / posix_memalign */
      size_t align = (size_t)1 << (take(&r, 1) % 21);
      size_t n = take_size(&r);
      if (live_bytes + n > MAX_LIVE_BYTES) break;
      release(idx);
      uint8_t *p = NULL;
      if ((tag & 1) && align >= sizeof(void *)) {
        if (tsr_posix_memalign((void **)&p, align, n) != 0) die("posix_memalign failed", idx, n);
      } else {
        p = tsr_aligned_alloc(align, n);
      }
      if (p == NULL) die("aligned allocation failed", idx, n);
      place(idx, p, n, tag, align);
      break;
    }
    case 5:   /* free */
      release(idx);
      break;
    case 9: {   /* a burst of one size from a thread that then exits */
      burst_t b = { idx, take(&r, 1) % 32 + 1, take_size(&r), tag };
      if (live_bytes + b.count * b.size > MAX_LIVE_BYTES) break;
      pthread_t t;
      if (pthread_create(&t, NULL, burst_main, &b) != 0 || pthread_join(t, NULL) != 0)
        die("cannot run a burst's thread", idx, b.size);
      break;
    }
    case 8:   /* collect: trim, purge and mesh */
      tsr_collect();
      if (tsr_check() != 0) die("tsr_check failed after a collection", idx, 0);
      break;
    case 6:   /* usable size: the whole usable part may be written */
      if (s->p != NULL) {
        size_t u = tsr_usable_size(s->p);
        if (u < s->size) die("usable size shrank", idx, s->size);
        memset(s->p + s->size, tag, u - s->size);
        verify(s, s->size, idx);
      }
      break;
    default: {   /* requests that must fail cleanly */
      errno = 0;
      if (tsr_malloc(SIZE_MAX - take(&r, 1)) != NULL || errno != ENOMEM) die("huge malloc", idx, 0);
      errno = 0;
      if (tsr_calloc(SIZE_MAX / 2 + 1 + take(&r, 1), 2) != NULL || errno != ENOMEM)
        die("overflowing calloc", idx, 0);
      errno = 0;
      if (tsr_aligned_alloc(24, 10) != NULL || errno != EINVAL) die("bad alignment", idx, 0);
      break;
    }
    }
  }
  for (size_t i = 0; i < SLOTS; i++) release(i);
  if (tsr_check() != 0) die("tsr_check failed", 0, 0);
  if (live_bytes != 0) die("live byte count off", 0, live_bytes);
  return 0;
}
