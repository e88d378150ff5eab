/* demo.c: the heap traffic of a multi-threaded key-value cache server.
 *
 * Each worker thread owns a shard of a cache and serves a stream of
 * requests: reads (a small request buffer, then the value is read through),
 * writes (a new value of 32..4095 bytes replaces the old one; half of the
 * old values are handed to the next worker to free, as a server's I/O
 * thread frees what a worker built), deletes, responses built by realloc,
 * and now and then a large buffer of 256 KiB..4 MiB (an upload, a
 * snapshot).  Twice during the run a worker does a bulk import that builds
 * a peak and then frees nine blocks in ten, leaving the tenth scattered
 * across the heap; the second import has larger blocks than the first, so
 * an allocator that cannot reuse or return the memory the first one freed
 * shows it in its peak RSS and in its RSS at the end.
 *
 * Output: which heap served malloc, the work done, a checksum of every
 * value read (a function of the requests only, never of addresses or
 * timing, so it must be the same under every allocator), and the RSS after
 * the last request, before teardown.  Every value is checked when read; a
 * wrong byte ends the run with status 3.
 *
 * Owns nothing of the library: it calls only the standard malloc family,
 * so LD_PRELOAD picks the allocator.
 */
#include "bench.h"

#include <pthread.h>

/* ------------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------- */

typedef struct config_s {
  int threads;          /* workers */
  long ops;             /* requests per worker */
  long keys;            /* keys per shard */
  long peak_mib;        /* MiB per worker in each bulk import */
} config_t;

static config_t cfg = { 4, 1000000, 40000, 48 };

/* ------------------------------------------------------------------------
 * Payloads
 * ---------------------------------------------------------------------- */

/* A buffer filled with one byte; reading it checks every 64th byte and the
 * last one, which touches each cache line the way sending it would. */
static inline unsigned char fill_byte(uint64_t seed) { return (unsigned char)((seed >> 56) | 1); }

static uint64_t read_buffer(const unsigned char *p, size_t len, uint64_t seed) {
  unsigned char b = fill_byte(seed);
  for (size_t i = 0; i < len; i += 64)
    if (p[i] != b) bench_fail("a value changed while it was stored (heap corruption)");
  if (len > 0 && p[len - 1] != b) bench_fail("the end of a value changed (heap corruption)");
  return bench_mix(seed ^ ((uint64_t)len << 40));
}

/* ------------------------------------------------------------------------
 * Cache items and the hand-over queues between workers
 * ---------------------------------------------------------------------- */

typedef struct item_s {
  struct item_s *next;    /* hand-over queue link */
  uint64_t seed;          /* the content is a function of seed and len */
  uint32_t key;
  uint32_t len;           /* bytes in data[] */
  unsigned char data[];
} item_t;

static item_t *item_new(bench_rng_t *r, uint32_t key) {
  size_t size = bench_log_size(r, 32, 4096);
  item_t *it = bench_xmalloc(size);
  it->next = NULL;
  it->seed = bench_rand(r);
  it->key = key;
  it->len = (uint32_t)(size - sizeof(item_t));
  memset(it->data, fill_byte(it->seed), it->len);
  return it;
}

static uint64_t item_read(const item_t *it) {
  return read_buffer(it->data, it->len, it->seed) + it->key;
}

typedef struct queue_s {
  pthread_mutex_t lock;
  item_t *head;           /* items another worker gave us to free */
  char pad[64];
} queue_t;

static queue_t *queues;

static void queue_push(queue_t *q, item_t *it) {
  pthread_mutex_lock(&q->lock);
  it->next = q->head;
  q->head = it;
  pthread_mutex_unlock(&q->lock);
}

/* Free everything handed to q; returns the checksum of what it read. */
static uint64_t queue_drain(queue_t *q, uint64_t *frees) {
  pthread_mutex_lock(&q->lock);
  item_t *it = q->head;
  q->head = NULL;
  pthread_mutex_unlock(&q->lock);
  uint64_t sum = 0;
  while (it != NULL) {
    item_t *next = it->next;
    sum += item_read(it);
    free(it);
    ++*frees;
    it = next;
  }
  return sum;
}

/* ------------------------------------------------------------------------
 * One worker
 * ---------------------------------------------------------------------- */

#define LARGE_RING 3      /* large buffers a worker keeps at once */

typedef struct worker_s {
  int id;
  bench_rng_t rng;
  item_t **shard;         /* cfg.keys slots */
  void **survivors;       /* what the bulk imports kept */
  size_t nsurvivors, survivors_cap;
  unsigned char *large[LARGE_RING];
  size_t large_len[LARGE_RING];
  uint64_t large_seed[LARGE_RING];
  uint64_t sum;           /* checksum of everything read */
  uint64_t allocs, frees; /* counts, also deterministic */
} worker_t;

static void set_key(worker_t *w, uint32_t key, int hand_over) {
  item_t *old = w->shard[key];
  w->shard[key] = item_new(&w->rng, key);
  w->allocs++;
  if (old == NULL) return;
  if (hand_over) {
    queue_push(&queues[(w->id + 1) % cfg.threads], old);   /* freed by the next worker */
  } else {
    w->sum += item_read(old);
    free(old);
    w->frees++;
  }
}

static void get_key(worker_t *w, uint32_t key) {
  /* the request as it came off the wire */
  size_t n = 16 + bench_rand(&w->rng) % 240;
  char *req = bench_xmalloc(n);
  int len = snprintf(req, n, "GET key:%u", key);
  w->allocs++;
  item_t *it = w->shard[key];
  w->sum += (uint64_t)len + (it != NULL ? item_read(it) : 1);
  free(req);
  w->frees++;
}

/* A response assembled in pieces, growing by realloc. */
static void build_response(worker_t *w) {
  size_t target = 512 + bench_rand(&w->rng) % 16384, cap = 64, used = 0;
  unsigned char *buf = bench_xmalloc(cap);
  w->allocs++;
  while (used < target) {
    size_t piece = 32 + bench_rand(&w->rng) % 480;
    if (used + piece > cap) {
      while (used + piece > cap) cap *= 2;
      buf = realloc(buf, cap);
      if (buf == NULL) bench_fail("out of memory");
    }
    memset(buf + used, (int)(piece & 0xff), piece);
    used += piece;
  }
  w->sum += bench_mix(used + buf[used - 1]);
  free(buf);
  w->frees++;
}

static void large_buffer(worker_t *w) {
  int slot = (int)(bench_rand(&w->rng) % LARGE_RING);
  if (w->large[slot] != NULL) {
    w->sum += read_buffer(w->large[slot], w->large_len[slot], w->large_seed[slot]);
    free(w->large[slot]);
    w->frees++;
  }
  size_t len = bench_log_size(&w->rng, 256 * 1024, 4 * 1024 * 1024);
  w->large_seed[slot] = bench_rand(&w->rng);
  w->large[slot] = bench_xmalloc(len);
  w->large_len[slot] = len;
  memset(w->large[slot], fill_byte(w->large_seed[slot]), len);
  w->allocs++;
}

/* Build a peak of peak_mib MiB in blocks of [lo, hi) bytes, then free nine
 * in ten, in allocation order; the tenth stays until the end. */
static void bulk_import(worker_t *w, size_t lo, size_t hi) {
  size_t budget = (size_t)cfg.peak_mib << 20, total = 0, n = 0, cap = 1024;
  void **blocks = bench_xmalloc(cap * sizeof *blocks);
  while (total < budget) {
    size_t size = bench_log_size(&w->rng, lo, hi);
    if (n == cap) {
      cap *= 2;
      blocks = realloc(blocks, cap * sizeof *blocks);
      if (blocks == NULL) bench_fail("out of memory");
    }
    unsigned char *b = bench_xmalloc(size);
    memset(b, (int)(size & 0xff) | 1, size);
    blocks[n++] = b;
    total += size;
  }
  w->allocs += n;
  for (size_t i = 0; i < n; i++) {
    unsigned char *b = blocks[i];
    w->sum += b[0];
    if (bench_mix(i ^ ((uint64_t)w->id << 32)) % 10 == 0) {
      if (w->nsurvivors == w->survivors_cap) {
        w->survivors_cap = w->survivors_cap ? 2 * w->survivors_cap : 1024;
        w->survivors = realloc(w->survivors, w->survivors_cap * sizeof(void *));
        if (w->survivors == NULL) bench_fail("out of memory");
      }
      w->survivors[w->nsurvivors++] = b;
    } else {
      free(b);
      w->frees++;
    }
  }
  free(blocks);
}

static void serve(worker_t *w, long ops) {
  for (long op = 0; op < ops; op++) {
    uint64_t x = bench_rand(&w->rng);
    /* one request in two goes to the hottest tenth of the keys */
    uint32_t key = (uint32_t)((x >> 32) % (uint64_t)((x & 1) ? cfg.keys / 10 + 1 : cfg.keys));
    unsigned kind = (unsigned)((x >> 8) % 100);
    if (kind < 60) {
      get_key(w, key);
    } else if (kind < 90) {
      set_key(w, key, (int)((x >> 16) & 1));
    } else if (w->shard[key] != NULL) {
      w->sum += item_read(w->shard[key]);
      free(w->shard[key]);
      w->shard[key] = NULL;
      w->frees++;
    }
    if ((op & 15) == 0) build_response(w);
    if ((op & 255) == 0) w->sum += queue_drain(&queues[w->id], &w->frees);
    if (op % 4096 == 4095) large_buffer(w);
  }
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  w->shard = calloc((size_t)cfg.keys, sizeof(item_t *));
  if (w->shard == NULL) bench_fail("out of memory");
  for (long k = 0; k < cfg.keys; k++) set_key(w, (uint32_t)k, 0);
  bulk_import(w, 64, 1024);
  serve(w, cfg.ops / 2);
  bulk_import(w, 512, 4096);
  serve(w, cfg.ops - cfg.ops / 2);
  return NULL;
}

/* Teardown, after every worker stopped: everything goes back. */
static void worker_release(worker_t *w) {
  for (long k = 0; k < cfg.keys; k++) {
    if (w->shard[k] != NULL) {
      w->sum += item_read(w->shard[k]);
      free(w->shard[k]);
      w->frees++;
    }
  }
  free(w->shard);
  for (size_t i = 0; i < w->nsurvivors; i++) {
    free(w->survivors[i]);
    w->frees++;
  }
  free(w->survivors);
  for (int i = 0; i < LARGE_RING; i++) {
    if (w->large[i] != NULL) {
      w->sum += read_buffer(w->large[i], w->large_len[i], w->large_seed[i]);
      free(w->large[i]);
      w->frees++;
    }
  }
}

/* ------------------------------------------------------------------------
 * The process
 * ---------------------------------------------------------------------- */

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [-t THREADS] [-n OPS] [-k KEYS] [-p MIB] [-q]\n"
          "  -t  worker threads (default 4)\n"
          "  -n  requests per worker (default 1000000)\n"
          "  -k  keys per worker's shard (default 40000)\n"
          "  -p  MiB per worker in each bulk import (default 48)\n"
          "  -q  quick: -n 50000 -k 4000 -p 4, for smoke tests\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "t:n:k:p:q")) != -1) {
    switch (c) {
      case 't': cfg.threads = atoi(optarg); break;
      case 'n': cfg.ops = atol(optarg); break;
      case 'k': cfg.keys = atol(optarg); break;
      case 'p': cfg.peak_mib = atol(optarg); break;
      case 'q': cfg.ops = 50000; cfg.keys = 4000; cfg.peak_mib = 4; break;
      default: usage(argv[0]);
    }
  }
  if (optind != argc || cfg.threads < 1 || cfg.threads > 256 || cfg.ops < 0 ||
      cfg.keys < 10 || cfg.keys > UINT32_MAX || cfg.peak_mib < 0)
    usage(argv[0]);

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);

  queues = bench_xmalloc((size_t)cfg.threads * sizeof *queues);
  worker_t *workers = calloc((size_t)cfg.threads, sizeof *workers);
  pthread_t *tids = bench_xmalloc((size_t)cfg.threads * sizeof *tids);
  if (workers == NULL) bench_fail("out of memory");
  for (int i = 0; i < cfg.threads; i++) {
    pthread_mutex_init(&queues[i].lock, NULL);
    queues[i].head = NULL;
    workers[i].id = i;
    workers[i].rng.s = bench_mix(0x7e55e7a0u + (uint64_t)i);
  }
  for (int i = 0; i < cfg.threads; i++)
    if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0) bench_fail("pthread_create failed");
  for (int i = 0; i < cfg.threads; i++) pthread_join(tids[i], NULL);

  long rss_end = (long)(bench_rss_bytes() / 1024);   /* the heap as the server would carry on with it */

  uint64_t sum = 0, allocs = 0, frees = 0;
  for (int i = 0; i < cfg.threads; i++) {
    workers[i].sum += queue_drain(&queues[i], &workers[i].frees);
    worker_release(&workers[i]);
    sum += workers[i].sum;
    allocs += workers[i].allocs;
    frees += workers[i].frees;
  }
  for (int i = 0; i < cfg.threads; i++) pthread_mutex_destroy(&queues[i].lock);
  free(tids);
  free(workers);
  free(queues);

  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

  printf("heap: %s\n", bench_heap_name());
  printf("threads: %d, requests per thread: %ld, keys per thread: %ld, import MiB: %ld\n",
         cfg.threads, cfg.ops, cfg.keys, cfg.peak_mib);
  printf("allocations: %" PRIu64 ", frees: %" PRIu64 "\n", allocs, frees);
  printf("rss_end_kib: %ld\n", rss_end);
  printf("seconds: %.3f\n", secs);
  printf("checksum: %016" PRIx64 "\n", sum);
  return allocs == frees ? 0 : 4;
}
