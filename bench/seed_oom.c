/* seed_oom.c: the failure tessera was conceived for (issue 19, item 4).
 *
 * A 32-bit server ran out of memory while it held about 80 MB: its 2 GiB
 * of address space had been cut into pieces, and the next large request
 * found no free range big enough.  This program plays such a server,
 * under one allocator, and says how far it gets:
 *
 *   seed_oom crt|heap|tessera grow [SEED]
 *   seed_oom crt|heap|tessera steady ROUNDS [IMAGES [SEED]]
 *
 * crt: the C runtime's malloc (msvcrt on Windows, the C library on
 * Linux); heap: HeapAlloc on the process heap (Windows only); tessera:
 * tsr_malloc.  Each round it allocates long-lived small objects (16 bytes
 * to 2 KiB, a few freed now and then, out of order), buffers (64 to
 * 256 KiB that grow by realloc up to 4 MiB, freed at random) and images
 * (1 to 24 MiB, log-uniform, a pool freed at random; one image in eight
 * is kept for good, as a cache would).
 *
 * grow: the pools grow a little every round until an allocation fails;
 * prints the live bytes then (what the program asked for and holds), the
 * largest free range, and the bytes committed.  steady: the pools stay at
 * a fixed size; prints the same after ROUNDS rounds (and whether anything
 * failed).  The largest free range is measured by reserving: the biggest
 * reservation the OS still grants (a binary search, released at once),
 * which under wine differs from what VirtualQuery calls free (wine reports
 * the free parts of its own reserved areas as MEM_RESERVE).  Committed:
 * Windows, the MEM_COMMIT private regions of a VirtualQuery walk; Linux,
 * the writable private mappings of /proc/self/maps.  Output: one line of
 * key=value pairs.  bench/seed_oom.sh builds and runs it for every
 * allocator.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <sys/mman.h>
#endif

/* ---- allocators ------------------------------------------------------- */

typedef struct alloc_s {
  void *(*alloc)(size_t);
  void *(*grow)(void *, size_t);
  void (*release)(void *);
} alloc_t;

#if defined(_WIN32)
static void *heap_alloc(size_t n) { return HeapAlloc(GetProcessHeap(), 0, n); }
static void *heap_grow(void *p, size_t n) { return HeapReAlloc(GetProcessHeap(), 0, p, n); }
static void heap_release(void *p) { HeapFree(GetProcessHeap(), 0, p); }
#endif

/* ---- the address space ------------------------------------------------ */

/* Whether the OS grants a reservation of n bytes now (released at once). */
static int can_reserve(size_t n) {
#if defined(_WIN32)
  void *p = VirtualAlloc(NULL, n, MEM_RESERVE, PAGE_NOACCESS);
  if (p == NULL) return 0;
  VirtualFree(p, 0, MEM_RELEASE);
#else
  void *p = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  munmap(p, n);
#endif
  return 1;
}

/* The biggest reservation granted, to 64 KiB. */
static uint64_t largest_free(void) {
  uint64_t lo = 0, hi = (uint64_t)1 << (sizeof(void *) == 4 ? 32 : 40);
  while (hi - lo > 65536) {
    uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)65535;
    if (mid <= lo) break;
    if (mid <= SIZE_MAX && can_reserve((size_t)mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

static uint64_t committed(void) {
  uint64_t sum = 0;
#if defined(_WIN32)
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  for (char *at = si.lpMinimumApplicationAddress; at < (char *)si.lpMaximumApplicationAddress;) {
    MEMORY_BASIC_INFORMATION m;
    if (VirtualQuery(at, &m, sizeof m) != sizeof m || m.RegionSize == 0) break;
    if (m.State == MEM_COMMIT && m.Type == MEM_PRIVATE) sum += m.RegionSize;
    at = (char *)m.BaseAddress + m.RegionSize;
  }
#else
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  while (f != NULL && fgets(line, sizeof line, f)) {
    unsigned long long lo, hi;
    char perms[8];
    if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && perms[1] == 'w' && perms[3] == 'p')
      sum += hi - lo;
  }
  if (f != NULL) fclose(f);
#endif
  return sum;
}

/* ---- the workload ----------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}
/* Log-uniform in [lo, hi). */
static size_t log_uniform(size_t lo, size_t hi) {
  double u = (double)next_rand() / 4294967296.0;
  size_t n = (size_t)exp(log((double)lo) + u * (log((double)hi) - log((double)lo)));
  return n < lo ? lo : n >= hi ? hi - 1 : n;
}

typedef struct obj_s {
  char *p;
  size_t size;
} obj_t;

typedef struct pool_s {
  obj_t *o;
  size_t n, cap;
} pool_t;

static const alloc_t *A;
static uint64_t live;
static const char *failed_kind = "";
static size_t failed_size;

static int pool_push(pool_t *pl, char *p, size_t size) {
  if (pl->n == pl->cap) {
    size_t cap = pl->cap ? 2 * pl->cap : 1024;
    obj_t *o = realloc(pl->o, cap * sizeof *o);   /* bookkeeping: the C runtime, in every run */
    if (o == NULL) return 0;
    pl->o = o;
    pl->cap = cap;
  }
  pl->o[pl->n++] = (obj_t){ p, size };
  live += size;
  return 1;
}

static void pool_drop(pool_t *pl, size_t i) {
  A->release(pl->o[i].p);
  live -= pl->o[i].size;
  pl->o[i] = pl->o[--pl->n];
}

/* Touch what a program would: the first bytes and the last. */
static char *get(const char *kind, size_t size) {
  char *p = A->alloc(size);
  if (p == NULL) {
    failed_kind = kind;
    failed_size = size;
    return NULL;
  }
  memset(p, 0x5a, size < 64 ? size : 64);
  p[size - 1] = 1;
  return p;
}

static pool_t smalls, buffers, images, kept;

/* One round; 0 when an allocation failed. */
static int round_once(size_t n_buffers, size_t n_images) {
  for (int i = 0; i < 200; i++) {
    size_t size = log_uniform(16, 2048);
    char *p = get("small", size);
    if (p == NULL || !pool_push(&smalls, p, size)) return 0;
  }
  for (int i = 0; i < 40 && smalls.n > 0; i++) pool_drop(&smalls, next_rand() % smalls.n);
  /* buffers: a new one, and some grow */
  size_t size = log_uniform(64 << 10, 256 << 10);
  char *b = get("buffer", size);
  if (b == NULL || !pool_push(&buffers, b, size)) return 0;
  for (int i = 0; i < 3 && buffers.n > 0; i++) {
    obj_t *o = &buffers.o[next_rand() % buffers.n];
    size_t to = o->size + o->size / 2;
    if (to > ((size_t)4 << 20)) continue;
    char *q = A->grow(o->p, to);
    if (q == NULL) {
      failed_kind = "buffer (realloc)";
      failed_size = to;
      return 0;
    }
    q[to - 1] = 1;
    live += to - o->size;
    o->p = q;
    o->size = to;
  }
  while (buffers.n > n_buffers) pool_drop(&buffers, next_rand() % buffers.n);
  /* images */
  size = log_uniform(1 << 20, 24 << 20);
  char *im = get("image", size);
  if (im == NULL) return 0;
  if (next_rand() % 8 == 0) {
    if (!pool_push(&kept, im, size)) return 0;
  } else if (!pool_push(&images, im, size)) {
    return 0;
  }
  while (images.n > n_images) pool_drop(&images, next_rand() % images.n);
  return 1;
}

int main(int argc, char **argv) {
  static const alloc_t crt = { malloc, realloc, free };
  static const alloc_t tessera = { tsr_malloc, tsr_realloc, tsr_free };
#if defined(_WIN32)
  static const alloc_t heap = { heap_alloc, heap_grow, heap_release };
#endif
  if (argc < 3) {
    fprintf(stderr, "usage: seed_oom crt|heap|tessera grow [SEED] | steady ROUNDS [IMAGES [SEED]]\n");
    return 2;
  }
  if (strcmp(argv[1], "crt") == 0) A = &crt;
  else if (strcmp(argv[1], "tessera") == 0) A = &tessera;
#if defined(_WIN32)
  else if (strcmp(argv[1], "heap") == 0) A = &heap;
#endif
  else {
    fprintf(stderr, "seed_oom: no allocator %s here\n", argv[1]);
    return 2;
  }
  int steady = strcmp(argv[2], "steady") == 0;
  if (!steady && sizeof(void *) > 4) {   /* it would run until the machine's memory is gone */
    fprintf(stderr, "seed_oom: grow is for a 32-bit process\n");
    return 2;
  }
  long rounds = steady ? (argc > 3 ? atol(argv[3]) : 2000) : 1000000;
  size_t steady_images = steady && argc > 4 ? (size_t)atol(argv[4]) : 24;
  int seed_arg = steady ? 5 : 3;
  if (argc > seed_arg) rng ^= strtoull(argv[seed_arg], NULL, 0) * 0x2545F4914F6CDD1Dull;

  uint64_t free_at_start = largest_free();
  long r = 0;
  int ok = 1;
  uint64_t peak = 0;
  for (; r < rounds; r++) {
    /* steady: 48 buffers and IMAGES images; grow: the pools and the kept
     * images and small objects grow with the rounds */
    size_t nb = steady ? 48 : 16 + (size_t)r / 8;
    size_t ni = steady ? steady_images : 8 + (size_t)r / 16;
    if (steady && kept.n > 8) pool_drop(&kept, next_rand() % kept.n);
    ok = round_once(nb, ni);
    if (live > peak) peak = live;
    if (!ok) break;
  }
  printf("allocator=%s mode=%s rounds=%ld failed=%s failed_size=%zu live=%llu peak_live=%llu "
         "largest_free=%llu largest_free_at_start=%llu committed=%llu small=%zu buffers=%zu images=%zu\n",
         argv[1], steady ? "steady" : "grow", r, ok ? "none" : failed_kind, ok ? (size_t)0 : failed_size,
         (unsigned long long)live, (unsigned long long)peak, (unsigned long long)largest_free(),
         (unsigned long long)free_at_start, (unsigned long long)committed(), smalls.n, buffers.n,
         images.n + kept.n);
  if (getenv("SEED_OOM_REPORT") != NULL && A == &tessera) tsr_report_to(TSR_FORMAT_TEXT, "stderr");
  return 0;
}
