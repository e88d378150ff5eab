/* test_bitmaps.c: pages' free bitmaps as long as their class needs
 * (arena.c, "bitmaps").
 *
 * A span's two bitmaps take a word pair for every 64 blocks of its class,
 * in whole cache lines: one line for a span of 4 KiB blocks, 1 KiB for one
 * of 16-byte blocks.
 * They come from the end of an arena's records and then from slots taken
 * for them, and a span given back leaves them for the next span of that
 * length.  The tests count the slots of records and bitmaps in the arena
 * map (tsr_map_walk) against what those rules allow.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include "core/internal.h"   /* a descriptor's size and the slots of an arena */

#define MiB ((size_t)1 << 20)

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

/* The arena map's slots of records and bitmaps (kind META), by arena. */
#define ARENAS_MAX 64
typedef struct meta_count_s {
  size_t arenas;                 /* arenas seen: their numbers are below this */
  size_t meta[ARENAS_MAX];       /* META slots of each */
  size_t total;
} meta_count_t;

static int count_meta(const tsr_map_entry_t *e, void *arg) {
  meta_count_t *c = arg;
  cr_assert_lt(e->arena, ARENAS_MAX);
  if (e->arena >= c->arenas) c->arenas = e->arena + 1;
  if (e->state == TSR_SLOT_STATE_META) {
    c->meta[e->arena] += e->slots;
    c->total += e->slots;
  }
  return 0;
}

static meta_count_t meta_now(void) {
  meta_count_t c;
  memset(&c, 0, sizeof c);
  cr_assert_eq(tsr_map_walk(count_meta, &c), 0);
  return c;
}

/* Slots of an arena's records: its header and a descriptor for each slot
 * of its window, whatever it holds. */
#define RECORD_SLOTS ((TSR_ARENA_SLOTS * sizeof(tsr_page_t) + 4096 + TSR_SLOT_SIZE - 1) / TSR_SLOT_SIZE)

/* 96 MiB of 4 KiB blocks: a line of bitmaps a span, which the spare end of
 * each arena's records holds (about 900 lines), so no arena takes a slot
 * for bitmaps; with 1 KiB a slot, as before, a 64 MiB arena's records
 * took 18 slots instead of 3. */
Test(bitmaps, a_span_takes_what_its_class_needs) {
  void **p;
  size_t n = fill(4096, 96 * MiB, &p);
  meta_count_t c = meta_now();
  printf("bitmaps: %zu blocks of 4 KiB in %zu arenas: %zu slots of records and bitmaps, %zu each at most\n", n,
         c.arenas, c.total, (size_t)RECORD_SLOTS);
  cr_assert_geq(c.arenas, 5, "96 MiB in %zu arenas", c.arenas);
  for (size_t i = 0; i < c.arenas; i++)
    cr_assert_leq(c.meta[i], RECORD_SLOTS, "arena %zu: %zu slots of records and bitmaps, %zu at most", i,
                  c.meta[i], (size_t)RECORD_SLOTS);
  cr_assert_eq(tsr_check(), 0);
  empty(p, n);
}

/* 16-byte blocks need 1 KiB of bitmaps a slot: 48 MiB of them fill the
 * records' spare end and take slots, which the map shows as tessera's
 * own and tsr_check accepts.  Given back and taken again, round after
 * round and class after class, the bitmaps come from the free lists:
 * no more slots go to bitmaps after the first round. */
Test(bitmaps, bitmaps_given_back_are_taken_again) {
  static const size_t sizes[] = { 16, 4000, 100, 30000, 512 };
  size_t first_round = 0;
  for (int round = 0; round < 6; round++) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      void **p;
      size_t n = fill(sizes[k], (sizes[k] == 16 ? 48 : 24) * MiB, &p);
      if (round == 0 && k == 0) {
        meta_count_t c = meta_now();
        cr_assert_gt(c.total, c.arenas * RECORD_SLOTS, "no slot of bitmaps in the map (%zu META slots, %zu arenas)",
                     c.total, c.arenas);
      }
      cr_assert_eq(tsr_check(), 0, "round %d, %zu-byte blocks", round, sizes[k]);
      empty(p, n);
    }
    size_t meta = meta_now().total;
    if (round == 0) first_round = meta;
    else cr_assert_eq(meta, first_round, "round %d: %zu slots of records and bitmaps, %zu after the first", round,
                      meta, first_round);
  }
}
