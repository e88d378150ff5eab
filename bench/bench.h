/* bench.h: what every workload in bench/ shares: which heap serves malloc,
 * the resident set, a clock, a seeded random generator, the settings the
 * runner passes through the environment, and the lines the runner parses.
 *
 * The workloads call only the standard malloc family (and C++ new/delete)
 * and link no allocator: the runner picks one with LD_PRELOAD, so the same
 * binary runs on every heap.  Everything here is header-only and usable
 * from C and C++.
 *
 * Settings (environment, set by bench/bench.py):
 *   BENCH_SCALE      work multiplier for the speed workloads (default 1)
 *   BENCH_BUDGET_MB  live MiB the fragmentation workloads build (default 64)
 *   BENCH_THREADS    threads of the multi-threaded workloads (default 4)
 *   BENCH_SETTLE_MS  quiet period before the final "settle" phase (default 2000)
 *   BENCH_SECONDS    length of the soak workload (default 4)
 *   BENCH_FAIL_ON    an allocator name: the workload aborts when it runs on
 *                    that heap (the runner's tests use it to check that a
 *                    failing run fails the whole benchmark)
 *
 * Output, one "key: value" per line, then for the fragmentation workloads
 *   phase NAME live_bytes=N rss_bytes=N t_ms=N
 * after every phase: live_bytes is what the workload itself holds (sum of
 * the requested sizes of its live blocks), rss_bytes is the resident set
 * at that moment (bench_rss_bytes: VmRSS, a page mapped twice counted once).
 */
#ifndef TSR_BENCH_H
#define TSR_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#define BENCH_CAST(T, x) reinterpret_cast<T>(x)
#else
#define BENCH_CAST(T, x) ((T)(x))
#endif

/* ------------------------------------------------------------------------
 * The heap: which allocator answers malloc in this process
 * ---------------------------------------------------------------------- */

/* Each preloadable allocator exports a name only it has; tessera is asked
 * whether it owns a fresh block, so a tessera that is present but not
 * serving malloc is not mistaken for the heap. */
static inline const char *bench_heap_name(void) {
  int (*owns)(const void *) = BENCH_CAST(int (*)(const void *), dlsym(RTLD_DEFAULT, "tsr_owns"));
  if (owns != NULL) {
    void *p = malloc(24);
    int ours = owns(p);
    free(p);
    if (ours) return "tessera";
  }
  if (dlsym(RTLD_DEFAULT, "mi_version") != NULL) return "mimalloc";
  if (dlsym(RTLD_DEFAULT, "mallctl") != NULL) return "jemalloc";
  if (dlsym(RTLD_DEFAULT, "tc_version") != NULL) return "tcmalloc";
  return "system";
}

/* ------------------------------------------------------------------------
 * Settings, clock, randomness
 * ---------------------------------------------------------------------- */

static inline double bench_env_num(const char *name, double dflt) {
  const char *s = getenv(name);
  if (s == NULL || *s == 0) return dflt;
  char *end;
  double v = strtod(s, &end);
  if (*end != 0 || v < 0) {
    fprintf(stderr, "bench: %s=%s is not a number >= 0\n", name, s);
    exit(2);
  }
  return v;
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bench_sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static inline uint64_t bench_mix(uint64_t x) {
  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27; x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

typedef struct bench_rng_s { uint64_t s; } bench_rng_t;

static inline uint64_t bench_rand(bench_rng_t *r) { return bench_mix(r->s += 0x9e3779b97f4a7c15ULL); }

/* Uniform in [lo, hi]. */
static inline size_t bench_range(bench_rng_t *r, size_t lo, size_t hi) {
  return lo + (size_t)(bench_rand(r) % (uint64_t)(hi - lo + 1));
}

/* Log-uniform in [lo, hi): as many blocks in [16, 32) as in [512, 1024). */
static inline size_t bench_log_size(bench_rng_t *r, size_t lo, size_t hi) {
  uint64_t x = bench_rand(r);
  size_t span = 0;
  while ((lo << (span + 1)) <= hi) span++;
  if (span == 0) return lo;
  size_t base = lo << (x % span);
  size_t s = base + (size_t)((x >> 16) % base);
  return s < hi ? s : hi - 1;
}

static inline void bench_fail(const char *what) {
  fprintf(stderr, "bench: %s\n", what);
  exit(3);
}

static inline void *bench_xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) bench_fail("out of memory");
  return p;
}

/* ------------------------------------------------------------------------
 * Resident set, without calling malloc
 *
 * VmRSS counts a page once per address it is mapped at, so a physical
 * page that meshing (tessera's TESSERA_MESH, Mesh) maps at two addresses
 * would count twice.  The figure taken is VmRSS less its shared-memory part
 * (RssShmem), plus that part counted once per page (Pss_Shmem of
 * smaps_rollup): for a heap that maps nothing twice it is VmRSS.
 * ---------------------------------------------------------------------- */

/* The file at path into buf (size bytes, NUL-terminated); false when it
 * cannot be read. */
static inline int bench_proc_read(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return 1;
}

/* The number after "key" in text, in KiB, or -1. */
static inline long long bench_proc_kib(const char *text, const char *key) {
  const char *p = strstr(text, key);
  return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static inline uint64_t bench_rss_bytes(void) {
  char status[8192], rollup[4096];
  if (!bench_proc_read("/proc/self/status", status, sizeof status)) return 0;
  long long rss = bench_proc_kib(status, "VmRSS:");
  if (rss < 0) return 0;
  long long shmem = bench_proc_kib(status, "RssShmem:");
  long long pss_shmem = shmem > 0 && bench_proc_read("/proc/self/smaps_rollup", rollup, sizeof rollup)
                            ? bench_proc_kib(rollup, "Pss_Shmem:")
                            : -1;
  if (pss_shmem >= 0 && pss_shmem <= shmem) rss += pss_shmem - shmem;
  return (uint64_t)rss * 1024u;
}

/* ------------------------------------------------------------------------
 * Start, phases, settle, end
 * ---------------------------------------------------------------------- */

static double bench_t0;

/* First call of every workload: names it and the heap, and honours
 * BENCH_FAIL_ON (see the top of this file). */
static inline void bench_start(const char *workload) {
  bench_t0 = bench_now();
  const char *heap = bench_heap_name();
  printf("workload: %s\nheap: %s\n", workload, heap);
  fflush(stdout);
  const char *fail_on = getenv("BENCH_FAIL_ON");
  if (fail_on != NULL && strcmp(fail_on, heap) == 0) {
    fprintf(stderr, "bench: BENCH_FAIL_ON=%s: aborting on purpose\n", fail_on);
    abort();
  }
}

static inline void bench_phase(const char *name, uint64_t live_bytes) {
  printf("phase %s live_bytes=%" PRIu64 " rss_bytes=%" PRIu64 " t_ms=%.0f\n", name, live_bytes,
         bench_rss_bytes(), (bench_now() - bench_t0) * 1000.0);
  fflush(stdout);
}

/* After the work, two quiet periods.  First BENCH_IDLE_MS in which the
 * process makes no call at all (a server with nothing to do): what it gives
 * back then it gives back from a thread of its own, if it has one; phase
 * "idle".  Then BENCH_SETTLE_MS in which it serves a small request every
 * 50 ms (a few blocks of assorted sizes, allocated and freed), because
 * allocators without a background thread (glibc, and jemalloc/tcmalloc as
 * Debian ships them) return memory only from inside their calls, and a
 * server that goes quiet still serves the odd request; phase "settle".
 * The blocks are freed again, so live_bytes does not change. */
static inline void bench_settle(uint64_t live_bytes) {
  long idle = (long)bench_env_num("BENCH_IDLE_MS", 1500);
  if (idle > 0) {
    bench_sleep_ms(idle);
    bench_phase("idle", live_bytes);
  }
  long ms = (long)bench_env_num("BENCH_SETTLE_MS", 2000);
  double end = bench_now() + (double)ms / 1000.0;
  void *tick[32];
  while (bench_now() < end) {
    for (int i = 0; i < 32; i++) {
      tick[i] = bench_xmalloc((size_t)16 << (i % 9));
      memset(tick[i], i, 16);
    }
    for (int i = 0; i < 32; i++) free(tick[i]);
    double left = end - bench_now();
    if (left > 0) bench_sleep_ms(left > 0.05 ? 50 : (long)(left * 1000.0) + 1);
  }
  bench_phase("settle", live_bytes);
}

/* Last call: the work done and the time the workload itself measured. */
static inline void bench_end(uint64_t ops, uint64_t checksum) {
  printf("ops: %" PRIu64 "\nseconds: %.3f\nchecksum: %016" PRIx64 "\n", ops,
         bench_now() - bench_t0, checksum);
  fflush(stdout);
}

#endif
