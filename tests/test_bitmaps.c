/* test_bitmaps.c: pages' free bitmaps as long as their class needs
 * (arena.c, "bitmaps").
 *
 * A span's two bitmaps take a word pair for every 64 blocks of its class:
 * 16 bytes for a span of 4 KiB blocks, 1 KiB for one of 16-byte blocks.
 * They come from the end of an arena's records and then from slots taken
 * for them, and a span given back leaves them for the next span of that
 * length.  The tests count tessera's own metadata (tsr_stats_t.metadata)
 * against what those rules allow, and look for the bitmap slots in the
 * arena map.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include "core/internal.h"   /* a descriptor's size and the slots of an arena */

#define MiB ((size_t)1 << 20)

static tsr_stats_t stats_now(void) {
  tsr_stats_t s = { .size = sizeof s };
  cr_assert_eq(tsr_stats_get(&s), 0);
  return s;
}

/* Allocate `total` bytes in blocks of `size`; their pointers in *out. */
static size_t fill(size_t size, size_t total, void ***out) {
  size_t n = total / size;
  void **p = malloc(n * sizeof *p);
  cr_assert_not_null(p);
  for (size_t i = 0; i < n; i++) {
    p[i] = tsr_malloc(size);
    cr_assert_not_null(p[i], "tsr_malloc(%zu) number %zu", size, i);
  }
  *out = p;
  return n;
}

static void empty(void **p, size_t n) {
  for (size_t i = 0; i < n; i++) tsr_free(p[i]);
  free(p);
}

/* 96 MiB of 4 KiB blocks: the records an arena has whatever it holds (its
 * header and a descriptor for each slot of its window), 16 bytes of
 * bitmaps a span, and a slot of them at the most; 1 KiB a slot (1.6 %)
 * was what every span cost before. */
Test(bitmaps, a_span_takes_what_its_class_needs) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_STATS), 0);
  tsr_free(tsr_malloc(4096));   /* the thread's heap, and the first arena */
  tsr_stats_t before = stats_now();
  void **p;
  size_t n = fill(4096, 96 * MiB, &p);
  tsr_stats_t after = stats_now();
  uint64_t arenas = after.arenas - before.arenas, spans = n / 16;
  uint64_t records = arenas * (TSR_ARENA_SLOTS * sizeof(tsr_page_t) + 4096);
  uint64_t allowed = records + spans * 16 + TSR_SLOT_SIZE;
  uint64_t grew = after.metadata - before.metadata;
  printf("bitmaps: %zu blocks of 4 KiB in %llu arenas: metadata grew %llu KiB, %llu KiB allowed\n", n,
         (unsigned long long)arenas, (unsigned long long)grew / 1024, (unsigned long long)allowed / 1024);
  cr_assert_gt(arenas, 0);
  cr_assert_leq(grew, allowed, "metadata grew by %llu bytes for %llu spans in %llu arenas, %llu allowed",
                (unsigned long long)grew, (unsigned long long)spans, (unsigned long long)arenas,
                (unsigned long long)allowed);
  cr_assert_eq(tsr_check(), 0);
  empty(p, n);
}

typedef struct map_count_s {
  size_t meta_beyond_records;   /* META slots after an arena's first entry */
  size_t entries;
} map_count_t;

static int count_meta(const tsr_map_entry_t *e, void *arg) {
  map_count_t *c = arg;
  c->entries++;
  if (e->state == TSR_SLOT_STATE_META && e->slot > 0) c->meta_beyond_records++;
  return 0;
}

/* 16-byte blocks need 1 KiB of bitmaps a slot: 48 MiB of them fill the
 * records' spare end and take slots, which the map shows as tessera's
 * own and tsr_check accepts.  Given back and taken again, round after
 * round and class after class, the bitmaps come from the free lists:
 * the metadata stops growing after the first round. */
Test(bitmaps, bitmaps_given_back_are_taken_again) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_STATS), 0);
  static const size_t sizes[] = { 16, 4000, 100, 30000, 512 };
  uint64_t first_round = 0;
  for (int round = 0; round < 6; round++) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      void **p;
      size_t n = fill(sizes[k], (sizes[k] == 16 ? 48 : 24) * MiB, &p);
      if (round == 0 && k == 0) {
        map_count_t c = { 0, 0 };
        cr_assert_eq(tsr_map_walk(count_meta, &c), 0);
        cr_assert_geq(c.meta_beyond_records, 1, "no slot of bitmaps in the map (%zu entries)", c.entries);
      }
      cr_assert_eq(tsr_check(), 0, "round %d, %zu-byte blocks", round, sizes[k]);
      empty(p, n);
    }
    uint64_t meta = stats_now().metadata;
    if (round == 0) first_round = meta;
    else cr_assert_leq(meta, first_round, "round %d: metadata %llu bytes, %llu after the first", round,
                       (unsigned long long)meta, (unsigned long long)first_round);
  }
}
