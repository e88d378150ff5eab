/* test_pins.c: tsr_pins names who pins the sparse pages.
 *
 * One function leaves one block in sixteen of its pages live (sparse
 * pages), another keeps every block of another size (full pages).  Under
 * full tracking the first must hold nearly all the sparse pages' bytes,
 * the second next to none, and the shares must add up to the totals.
 * Under sampling the sites become estimates and the totals stay exact.
 */
#include "tsr_criterion.h"

#include "tsr_sites.h"
#include "tsr_test.h"

#define SPARSE_SIZE 64
#define SPARSE_COUNT 40000
#define DENSE_SIZE 48
#define DENSE_COUNT 20000

static void *sparse[SPARSE_COUNT], *dense[DENSE_COUNT];

static TSR_ALLOC_FN void pin_sparse(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(SPARSE_COUNT); i++) {
    sparse[i] = tsr_malloc(SPARSE_SIZE);
    TSR_KEEP(sparse[i]);
  }
}

static TSR_ALLOC_FN void pin_dense(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(DENSE_COUNT); i++) {
    dense[i] = tsr_malloc(DENSE_SIZE);
    TSR_KEEP(dense[i]);
  }
}

static void make_pages(void) {
  pin_sparse();
  pin_dense();
  for (int i = 0; i < SPARSE_COUNT; i++)
    if (i % 16 != 0) tsr_free(sparse[i]);
}

static void drop_pages(void) {
  for (int i = 0; i < SPARSE_COUNT; i += 16) tsr_free(sparse[i]);
  for (int i = 0; i < DENSE_COUNT; i++) tsr_free(dense[i]);
}

/* Is site s's innermost frame in fn rather than in other?  The nearer
 * function start below the return address is the one it lies in. */
static bool site_is(const tsr_pin_t *s, void (*fn)(void), void (*other)(void)) {
  if (s->depth == 0) return false;
  uintptr_t pc = (uintptr_t)s->frames[0], at = (uintptr_t)fn, o = (uintptr_t)other;
  return pc > at && pc - at < 4096 && !(o > at && pc > o);
}

static const tsr_pin_t *find(const tsr_pin_t *pins, size_t n, void (*fn)(void), void (*other)(void)) {
  for (size_t i = 0; i < n; i++)
    if (site_is(&pins[i], fn, other)) return &pins[i];
  return NULL;
}

Test(pins, full_tracking_names_the_site_that_pins_sparse_pages) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  make_pages();
  tsr_pins_t totals;
  static tsr_pin_t pins[4096];
  size_t n = tsr_pins(&totals, pins, 4096);
  cr_assert_gt(n, 0);
  cr_assert_leq(n, 4096);
  cr_assert_gt(totals.pages, 5, "%llu sparse pages", (unsigned long long)totals.pages);
  cr_assert_geq(totals.bytes, totals.pages * 65536);
  cr_assert_lt(totals.live, totals.bytes / 2);
  const tsr_pin_t *s = find(pins, n, pin_sparse, pin_dense), *d = find(pins, n, pin_dense, pin_sparse);
  cr_assert_not_null(s, "no site passes through pin_sparse");
  cr_assert_eq(s->estimated, 0);
  cr_assert_eq(s->blocks, SPARSE_COUNT / 16);
  cr_assert_eq(pins[0].id, s->id, "the first site is not pin_sparse's");
  /* the others (the test runner's, a dense page's last blocks) hold little */
  cr_assert_geq(s->pinned, totals.bytes * 9 / 10, "pin_sparse holds %llu of %llu bytes",
                (unsigned long long)s->pinned, (unsigned long long)totals.bytes);
  if (d != NULL) cr_assert_lt(d->pinned, s->pinned / 10, "pin_dense holds %llu bytes", (unsigned long long)d->pinned);
  uint64_t pinned = 0, idle = 0;
  for (size_t i = 0; i < n; i++) {
    pinned += pins[i].pinned;
    idle += pins[i].idle;
    cr_assert_leq(pins[i].idle, pins[i].pinned);
    if (i) cr_assert_geq(pins[i - 1].pinned, pins[i].pinned, "not sorted at %zu", i);
  }
  cr_assert_leq(pinned, totals.bytes + n);   /* each share rounded once */
  cr_assert_geq(pinned + n, totals.bytes);
  cr_assert_leq(idle, totals.bytes - totals.live + n);
  cr_assert_geq(idle + n, totals.bytes - totals.live);
  drop_pages();
}

Test(pins, sampling_keeps_the_totals_exact) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_SAMPLE), 0);
  make_pages();
  tsr_pins_t totals, again;
  static tsr_pin_t pins[4096];
  size_t n = tsr_pins(&totals, pins, 4096);
  cr_assert_gt(totals.pages, 5);
  for (size_t i = 0; i < n && i < 4096; i++) {
    if (pins[i].id == 0) {
      cr_assert_null(pins[i].frames);
      cr_assert_eq(pins[i].depth, 0);
    } else {
      cr_assert_eq(pins[i].estimated, 1, "site %u from samples is not marked estimated", pins[i].id);
    }
  }
  /* the totals come from the pages, not the records: the same at every level */
  cr_assert_eq(tsr_track_set(TSR_TRACK_STATS), 0);
  tsr_pins(&again, pins, 0);
  cr_assert_eq(again.pages, totals.pages);
  cr_assert_eq(again.bytes, totals.bytes);
  cr_assert_eq(again.live, totals.live);
  drop_pages();
  tsr_pins(&again, pins, 0);
  cr_assert_lt(again.pages, totals.pages, "freeing the survivors left %llu sparse pages",
               (unsigned long long)again.pages);
}

/* Meshable: OS pages at the same offset of two spans of the size whose
 * live blocks miss each other.  Blocks go out in address order, so
 * survivors of every 16th allocation of 64-byte blocks (1024 to a span)
 * sit at the same offsets in every span: nothing to mesh, unless meshing
 * is on, which starts half the spans one block further in (page.c: the
 * phase) for this very pattern.  Survivors drawn at random leave most OS
 * pages meshable with some other span's. */
Test(pins, meshable_counts_pages_whose_live_blocks_miss_each_other) {
  make_pages();
  tsr_pins_t regular;
  tsr_pins(&regular, NULL, 0);
  cr_assert_gt(regular.pages, 5);
  if (regular.mesh_state == TSR_MESH_OFF)
    cr_assert_eq(regular.meshable, 0, "%llu bytes meshable with the same offsets in every span",
                 (unsigned long long)regular.meshable);
  else
    cr_assert_gt(regular.meshable, 0, "nothing meshable with spans at two phases");
  drop_pages();
  uint64_t rng = 7;
  for (int i = 0; i < SPARSE_COUNT; i++) sparse[i] = tsr_malloc(SPARSE_SIZE);
  for (int i = 0; i < SPARSE_COUNT; i++)
    if (tsr_test_rand(&rng) % 16 != 0) {
      tsr_free(sparse[i]);
      sparse[i] = NULL;
    }
  tsr_pins_t random;
  tsr_pins(&random, NULL, 0);
  cr_assert_gt(random.pages, 5);
  cr_assert_gt(random.meshable, random.bytes / 4, "%llu of %llu bytes meshable with survivors at random",
               (unsigned long long)random.meshable, (unsigned long long)random.bytes);
  cr_assert_leq(random.meshable, random.bytes - random.live);
  /* what pairing could save, whether or not meshing (off by default) runs */
  if (getenv("TESSERA_MESH") == NULL) cr_assert_eq(random.mesh_state, TSR_MESH_OFF);
  if (random.mesh_state == TSR_MESH_OFF) {
    cr_assert_eq(random.meshes, 0);
    cr_assert_eq(random.mesh_saved, 0);
  }
  for (int i = 0; i < SPARSE_COUNT; i++) tsr_free(sparse[i]);
}
