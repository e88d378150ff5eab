/* pins.c: who pins the pages.
 *
 * Owns tsr_pins and the pins section of the reports.  A size-class heap
 * gives a page back only when its last block is freed, so a page with a
 * few survivors holds all of its memory: after a peak, that memory is the
 * external fragmentation a server sees as RSS it cannot explain.  This
 * names who holds it: for the sparse pages (at most half their blocks
 * live), the allocation sites of the live blocks in them.
 *
 * Shares.  Each live block of a sparse page holds an equal share of the
 * page's bytes (`pinned`) and of its free bytes (`idle`, what would go
 * back if the blocks moved), so the sites' shares add up to the sparse
 * pages' bytes.  A block with a sampled record stands for `weight` blocks
 * of its site, as in the site report; the blocks without a record are
 * what the sites' estimates leave of the exact totals, shown as site 0.
 * Under TESSERA_TRACK=full every figure is exact.
 *
 * Meshable.  Two OS pages at the same offset of two spans of a class
 * whose live blocks sit at different places could share one physical
 * page (Mesh, Powers et al., PLDI 2019, meshes whole 4 KiB spans; a
 * tessera span is 64 KiB or more, far too many blocks for two to miss
 * each other, so the unit is the OS page inside it).  `meshable` counts
 * the bytes pairs of sparse spans would so give back, each span paired
 * with the best of at most MESH_PROBES others after it.  tessera does not
 * mesh yet: the figure says what meshing would save on this heap now.
 */
#include "report.h"

#define MESH_PROBES 64

typedef struct pins_walk_s {
  tsri_pin_t *by_id;          /* indexed by stack id, count + 1 entries */
  uint32_t count;
  const tsr_page_t *page;     /* the page of the last block seen, and what a block of it holds */
  bool sparse;
  double share, idle_share;
  tsri_pin_t all;             /* every block of the sparse pages, weight 1 */
  uint64_t pages, bytes, live;
  const tsr_page_t **seen;    /* the sparse pages met, up to seen_cap */
  size_t nseen, seen_cap;
} pins_walk_t;

/* Live blocks of pg by its bitmaps: the blocks other threads freed and
 * its owner has not collected yet are free too. */
static uint32_t page_live(const tsr_page_t *pg) {
  uint32_t free_blocks = 0;
  for (size_t w = 0; w < ((size_t)pg->capacity + 63) / 64; w++)
    free_blocks += (uint32_t)__builtin_popcountll(atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed) |
                                                  atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed));
  return free_blocks < pg->capacity ? pg->capacity - free_blocks : 0;
}

/* The walk visits a page's blocks one after another, so a page is
 * measured once, at its first block. */
static int pins_visit(const tsri_block_t *b, void *arg) {
  pins_walk_t *w = arg;
  if (b->cls >= TSR_CLASS_COUNT) return 0;
  const tsr_page_t *pg = tsri_page_of(b->pub.ptr);
  if (pg == NULL) return 0;
  if (pg != w->page) {
    w->page = pg;
    uint32_t live = page_live(pg);
    w->sparse = live > 0 && 2 * live <= pg->capacity;
    if (w->sparse) {
      uint64_t bytes = (uint64_t)pg->span_slots * TSR_SLOT_SIZE;
      uint64_t live_bytes = (uint64_t)live * pg->block_size;
      w->share = (double)bytes / live;
      w->idle_share = (double)(bytes - live_bytes) / live;
      w->pages++;
      w->bytes += bytes;
      w->live += live_bytes;
      if (w->nseen < w->seen_cap) w->seen[w->nseen++] = pg;
    }
  }
  if (!w->sparse) return 0;
  w->all.blocks += 1;
  w->all.pinned += w->share;
  w->all.idle += w->idle_share;
  if (b->pub.tracked && b->pub.site != 0 && b->pub.site <= w->count) {
    tsri_pin_t *s = &w->by_id[b->pub.site];
    double weight = b->pub.weight;
    s->blocks += weight;
    s->pinned += weight * w->share;
    s->idle += weight * w->idle_share;
    if (weight != 1.0) s->estimated = true;
  }
  return 0;
}

/* Is block i of pg live?  The blocks other threads freed are free. */
static bool block_live(const tsr_page_t *pg, size_t i) {
  uint64_t free_bits = atomic_load_explicit(tsri_local(pg, i >> 6), memory_order_relaxed) |
                       atomic_load_explicit(tsri_remote(pg, i >> 6), memory_order_relaxed);
  return !((free_bits >> (i & 63)) & 1);
}

/* OS pages that meshing a with b (same class and span) would free: those
 * at an offset where both have live blocks, none at the same place.  Two
 * OS pages at one offset of two spans of a class hold blocks at the same
 * offsets, so their contents fit in one page; an OS page with no live
 * block is trimmed already (page.c) and saves nothing here. */
static size_t mesh_saving(const tsr_page_t *a, const tsr_page_t *b, size_t os_page) {
  size_t saved = 0, span = (size_t)a->span_slots * TSR_SLOT_SIZE;
  for (size_t off = 0; off < span; off += os_page) {
    size_t first = off / a->block_size, last = (off + os_page - 1) / a->block_size;
    if (first >= a->capacity) break;
    if (last >= a->capacity) last = a->capacity - 1;
    bool in_a = false, in_b = false, clash = false;
    for (size_t i = first; i <= last && !clash; i++) {
      bool la = block_live(a, i), lb = block_live(b, i);
      in_a |= la;
      in_b |= lb;
      clash = la && lb;
    }
    if (in_a && in_b && !clash) saved++;
  }
  return saved;
}

/* By class, then address. */
static bool page_before(const void *pa, const void *pb) {
  const tsr_page_t *a = *(const tsr_page_t *const *)pa, *b = *(const tsr_page_t *const *)pb;
  return a->cls < b->cls || (a->cls == b->cls && (uintptr_t)a < (uintptr_t)b);
}

/* Bytes that meshing the sparse pages in pairs would give back: sorted by
 * class, each page not yet paired goes with the one of the next
 * MESH_PROBES of its class that frees the most OS pages (pages of a class
 * have one span size). */
static uint64_t meshable_bytes(const tsr_page_t **pages, size_t n) {
  tsri_heap_sort(pages, n, sizeof *pages, page_before);
  size_t os_page = tsri_os_page_size();
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (pages[i] == NULL) continue;
    size_t best = 0, best_j = 0;
    for (size_t j = i + 1; j < n && j <= i + MESH_PROBES; j++) {
      if (pages[j] == NULL) continue;   /* paired already */
      if (pages[j]->cls != pages[i]->cls) break;
      size_t saved = mesh_saving(pages[i], pages[j], os_page);
      if (saved > best) {
        best = saved;
        best_j = j;
      }
    }
    if (best == 0) continue;
    bytes += (uint64_t)best * os_page;
    pages[best_j] = NULL;
  }
  return bytes;
}

/* Most pinned bytes first; equal bytes by stack id. */
static bool pin_before(const void *pa, const void *pb) {
  const tsri_pin_t *a = pa, *b = pb;
  return a->pinned > b->pinned || (a->pinned == b->pinned && a->id < b->id);
}

tsri_pins_t *tsri_pins_collect(void) {
  pins_walk_t w;
  memset(&w, 0, sizeof w);
  w.count = tsri_stack_count();
  w.by_id = tsri_scratch((w.count + 1) * sizeof(tsri_pin_t));
  tsri_pins_t *out = tsri_scratch(sizeof(tsri_pins_t));
  if (w.by_id == NULL || out == NULL) {
    tsri_scratch_free(w.by_id);
    tsri_scratch_free(out);
    return NULL;
  }
  memset(w.by_id, 0, (w.count + 1) * sizeof(tsri_pin_t));
  /* room for every page of every arena: a sparse page is at least a slot */
  size_t arenas = 0;
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) arenas++;
  tsri_unlock(tsri_arena_lock_get());
  w.seen_cap = arenas * TSR_ARENA_SLOTS;
  w.seen = w.seen_cap ? tsri_scratch(w.seen_cap * sizeof *w.seen) : NULL;
  if (w.seen == NULL) w.seen_cap = 0;
  int rc = tsri_meta_walk(pins_visit, &w, false);
  out->meshable = rc == 0 ? meshable_bytes(w.seen, w.nseen) : 0;
  tsri_scratch_free(w.seen);
  if (rc != 0) {
    tsri_scratch_free(w.by_id);
    tsri_scratch_free(out);
    return NULL;
  }
  /* the sites in place, then site 0: what their estimates leave */
  size_t n = 0;
  tsri_pin_t sum;
  memset(&sum, 0, sizeof sum);
  for (uint32_t id = 1; id <= w.count; id++) {
    tsri_pin_t s = w.by_id[id];
    if (s.blocks < 0.5) continue;
    s.id = id;
    sum.blocks += s.blocks;
    sum.pinned += s.pinned;
    sum.idle += s.idle;
    w.by_id[n++] = s;
  }
  tsri_pin_t rest = { 0, false, w.all.blocks - sum.blocks, w.all.pinned - sum.pinned, w.all.idle - sum.idle };
  if (rest.blocks >= 0.5 && rest.pinned > 0) {
    for (size_t i = 0; i < n; i++) rest.estimated |= w.by_id[i].estimated;   /* the rest of estimates */
    w.by_id[n++] = rest;
  }
  tsri_heap_sort(w.by_id, n, sizeof(tsri_pin_t), pin_before);
  out->pins = w.by_id;
  out->count = n;
  out->pages = w.pages;
  out->bytes = w.bytes;
  out->live = w.live;
  return out;
}

void tsri_pins_free(tsri_pins_t *p) {
  if (p == NULL) return;
  tsri_scratch_free(p->pins);
  tsri_scratch_free(p);
}

size_t tsr_pins(tsr_pins_t *totals, tsr_pin_t *out, size_t max) {
  tsri_init();
  tsri_pins_t *p = tsri_pins_collect();
  if (totals != NULL) memset(totals, 0, sizeof *totals);
  if (p == NULL) return 0;
  if (totals != NULL) {
    totals->pages = p->pages;
    totals->bytes = p->bytes;
    totals->live = p->live;
    totals->meshable = p->meshable;
  }
  for (size_t i = 0; i < p->count && i < max; i++) {
    const tsri_pin_t *s = &p->pins[i];
    out[i].id = s->id;
    out[i].depth = s->id ? (uint32_t)tsri_stack_frames(s->id, &out[i].frames) : 0;
    if (s->id == 0) out[i].frames = NULL;
    out[i].blocks = tsri_round_u64(s->blocks);
    out[i].pinned = tsri_round_u64(s->pinned);
    out[i].idle = tsri_round_u64(s->idle);
    out[i].estimated = s->estimated;
  }
  size_t n = p->count;
  tsri_pins_free(p);
  return n;
}
