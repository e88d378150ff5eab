/* test_many_large.c: more live large blocks than the kernel allows
 * mappings (issue 18, item 5).
 *
 * Linux caps the mappings of a process at vm.max_map_count (65,530 by
 * default); past it every mmap, munmap of a middle piece and mprotect that
 * would split a mapping fails.  A large block (above 128 KiB) that is a
 * mapping of its own ends a program holding that many.  These tests hold
 * max_map_count + 20,000 blocks of 140 to 170 KB (every third grown by
 * realloc), free every other one and put 300 KB blocks in their place, and
 * check that the process's mappings stay few, that freed memory leaves
 * the resident set, and that the reports still list every block.  Blocks
 * are touched sparsely (first byte, and the last of every eighth) so the
 * resident set stays small.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#define KB 1000
#define MiB ((size_t)1 << 20)

static size_t max_map_count(void) {
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  unsigned long n = 65530;
  if (f != NULL) {
    if (fscanf(f, "%lu", &n) != 1) n = 65530;
    fclose(f);
  }
  return (size_t)n;
}

static size_t maps_now(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 0;
  size_t lines = 0;
  for (int c; (c = fgetc(f)) != EOF;) lines += c == '\n';
  fclose(f);
  return lines;
}

static void touch(char *p, size_t size, size_t i) {
  p[0] = (char)i;
  if (i % 8 == 0) p[size - 1] = (char)i;
}

static void check_touched(const char *p, size_t size, size_t i) {
  cr_assert_eq(p[0], (char)i, "block %zu lost its first byte", i);
  if (i % 8 == 0) cr_assert_eq(p[size - 1], (char)i, "block %zu lost its last byte", i);
}

typedef struct blocks_s {
  char **p;
  size_t *size;
  size_t n;
} blocks_t;

static blocks_t fill(size_t n) {
  blocks_t b = { calloc(n, sizeof(char *)), calloc(n, sizeof(size_t)), n };
  cr_assert(b.p != NULL && b.size != NULL);
  uint64_t rng = 18;
  for (size_t i = 0; i < n; i++) {
    size_t size = 140 * KB + (size_t)(tsr_test_rand(&rng) % (30 * KB));
    b.p[i] = tsr_malloc(size);
    cr_assert_not_null(b.p[i], "block %zu of %zu (%zu bytes) got NULL", i, n, size);
    touch(b.p[i], size, i);
    if (i % 3 == 2) {
      size += 10 * KB + (size_t)(tsr_test_rand(&rng) % (20 * KB));
      b.p[i] = tsr_realloc(b.p[i], size);
      cr_assert_not_null(b.p[i], "realloc of block %zu of %zu (to %zu bytes) got NULL", i, n, size);
      if (i % 8 == 0) b.p[i][size - 1] = (char)i;
    }
    b.size[i] = size;
  }
  return b;
}

static void free_all(blocks_t *b) {
  for (size_t i = 0; i < b->n; i++) tsr_free(b->p[i]);
  free(b->p);
  free(b->size);
}

/* 85,000 blocks and more: about 25 s each under ThreadSanitizer on an idle
 * 2-core machine, past 60 s on a loaded one (the runner's default) */
Test(many_large, past_the_map_count, .timeout = 300) {
  size_t n = max_map_count() + 20000;
  blocks_t b = fill(n);
  size_t maps = maps_now();
  cr_assert_lt(maps, 4096, "%zu large blocks took %zu mappings", n, maps);
  for (size_t i = 0; i < n; i++) {
    check_touched(b.p[i], b.size[i], i);
    cr_assert_geq(tsr_usable_size(b.p[i]), b.size[i]);
  }
  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.large_live, n, "the counters see %zu large blocks of %zu", (size_t)s.large_live, n);
  free_all(&b);
  cr_assert_eq(tsr_check(), 0);
}

Test(many_large, refill_the_holes_with_bigger_blocks, .timeout = 300) {
  size_t n = max_map_count() + 20000;
  blocks_t b = fill(n);
  for (size_t i = 0; i < n; i += 2) {
    tsr_free(b.p[i]);
    b.size[i] = 300 * KB;
    b.p[i] = tsr_malloc(b.size[i]);
    cr_assert_not_null(b.p[i], "300 KB block %zu put in place of a freed one got NULL", i / 2 + 1);
    touch(b.p[i], b.size[i], i);
  }
  size_t maps = maps_now();
  cr_assert_lt(maps, 4096, "%zu large blocks took %zu mappings", n, maps);
  for (size_t i = 0; i < n; i++) check_touched(b.p[i], b.size[i], i);
  free_all(&b);
  cr_assert_eq(tsr_check(), 0);
}

/* Freed large blocks leave the resident set: at once with no purge
 * delay, or at tsr_collect() after it. */
Test(many_large, free_gives_memory_back) {
  if (TSR_TEST_SHADOW) cr_skip_test("the sanitizer's shadow memory moves with ours");
  enum { N = 2000 };
  static char *p[N];
  size_t before = tsr_test_rss();
  for (size_t i = 0; i < N; i++) {
    p[i] = tsr_malloc(160 * KB);
    cr_assert_not_null(p[i]);
    memset(p[i], 1, 160 * KB);
  }
  size_t full = tsr_test_rss();
  cr_assert_gt(full, before + N * 150 * KB, "the blocks are resident");
  for (size_t i = 0; i < N; i++) tsr_free(p[i]);
  tsr_collect();
  size_t after = tsr_test_rss();
  cr_assert_lt(after, before + N * 16 * KB, "RSS %zu MiB before, %zu MiB full, %zu MiB after the free", before / MiB,
               full / MiB, after / MiB);
}

/* The report API lists each large block once, at its address and size,
 * and the address-space report counts their memory as tessera's. */
static int count_region(const tsr_region_t *r, void *arg) {
  uint64_t *ours = arg;
  if (r->tessera) *ours += r->end - r->start;
  return 0;
}

enum { LISTED = 3000 };
static char *listed[LISTED];

static size_t listed_size(size_t i) { return 140 * KB + (i % 7) * 4 * KB; }

/* Counts each block of listed[] the walk visits with its right size. */
static int count_listed(const tsr_block_t *blk, void *arg) {
  size_t *seen = arg;
  for (size_t i = 0; i < LISTED; i++)
    if (blk->ptr == listed[i] && blk->requested == listed_size(i) && blk->usable >= listed_size(i)) seen[i]++;
  return 0;
}

Test(many_large, reports_list_each_block) {
  tsr_track_set(TSR_TRACK_FULL);
  size_t total = 0;
  for (size_t i = 0; i < LISTED; i++) {
    listed[i] = tsr_malloc(listed_size(i));
    cr_assert_not_null(listed[i]);
    total += listed_size(i);
  }
  tsr_stats_t s = tsr_test_stats();
  cr_assert_geq(s.large_live, LISTED);
  uint64_t ours = 0;
  tsr_address_space_t space;
  cr_assert_eq(tsr_address_space(count_region, &ours, &space), 0);
  cr_assert_geq(ours, total, "the address-space report counts %zu bytes as tessera's, the blocks have %zu",
                (size_t)ours, total);
  static size_t seen[LISTED];
  cr_assert_eq(tsr_walk(count_listed, seen), 0);
  for (size_t i = 0; i < LISTED; i++) cr_assert_eq(seen[i], 1, "block %zu was listed %zu times", i, seen[i]);
  for (size_t i = 0; i < LISTED; i++) tsr_free(listed[i]);
  tsr_track_set(TSR_TRACK_SAMPLE);
}
